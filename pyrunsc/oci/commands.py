"""runc's command line: what containerd's shim and Podman's conmon call
(create, start, state, kill, delete, exec, ps, pause, resume) and what
users and tools expect beside them (run, list, events, wait)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import click

from .control import Channel, ControlError, send_console
from .hooks import HookError
from .options import DEFAULT_PATH, wait_status_to_exit_code
from .runtime import Runtime, signal_number
from .spec import SpecError, load_bundle, parse_process
from .state import ContainerError, write_atomic


def _runtime(ctx) -> Runtime:
    return ctx.find_root().obj


def _guard(fn):
    """Errors become one line in the log and on stderr, exit 1."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        rt = _runtime(click.get_current_context())
        try:
            return fn(rt, *args, **kwargs)
        except (ContainerError, SpecError, ControlError, HookError) as e:
            rt.fail(str(e))
        except OSError as e:
            rt.fail(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    return wrapper


def register(main: click.Group) -> None:
    for cmd in (create, start, state, kill, delete, exec_, ps, list_, pause, resume, events, wait, run):
        main.add_command(cmd)


@click.command()
@click.option("--bundle", "-b", default=".", help="The bundle directory (config.json, rootfs).")
@click.option("--pid-file", default=None, help="Write the container's pid here.")
@click.option("--console-socket", default=None, help="Unix socket that receives the pty master (terminal: true).")
@click.option("--no-pivot", is_flag=True, hidden=True)
@click.option("--no-new-keyring", is_flag=True, hidden=True)
@click.option("--preserve-fds", type=int, default=0, hidden=True)
@click.argument("container_id")
@_guard
def create(rt, bundle, pid_file, console_socket, no_pivot, no_new_keyring, preserve_fds, container_id):
    """Create a container (its process waits for `start`)."""
    rt.create(container_id, os.path.abspath(bundle), pid_file, console_socket)


@click.command()
@click.argument("container_id")
@_guard
def start(rt, container_id):
    """Run a created container's process."""
    rt.start(container_id)


@click.command()
@click.argument("container_id")
@_guard
def state(rt, container_id):
    """Print the OCI state of a container."""
    click.echo(json.dumps(rt.state(container_id), indent=2))


@click.command()
@click.option("--all", "-a", "all_", is_flag=True, help="Signal every process of the container.")
@click.argument("container_id")
@click.argument("sig", default="SIGTERM")
@_guard
def kill(rt, all_, container_id, sig):
    """Send a signal (name or number) to the container's init."""
    rt.kill(container_id, signal_number(sig), all_)


@click.command()
@click.option("--force", "-f", is_flag=True, help="Kill a running container first.")
@click.argument("container_id")
@_guard
def delete(rt, force, container_id):
    """Remove a container: its processes, sandbox and state."""
    rt.delete(container_id, force)


@click.command()
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json", "tree"]), default="table",
              help="table: the host's ps lines of the container's processes; json: their host pids "
                   "(what containerd reads); tree: the sandbox's own process tree.")
@click.argument("container_id")
@click.argument("ps_args", nargs=-1)
@_guard
def ps(rt, fmt, container_id, ps_args):
    """The container's processes (host pids, so the host's ps shows them)."""
    st = rt.store.load(container_id)
    if fmt == "tree":
        click.echo(process_tree(rt.ask(st, {"op": "processes"})["processes"]), nl=False)
        return
    pids = rt.ask(st, {"op": "ps"})["pids"]
    if fmt == "json":
        click.echo(json.dumps(pids))
        return
    out = subprocess.run(["ps"] + list(ps_args or ["-ef"]), capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    col = lines[0].split().index("PID")
    click.echo(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            click.echo(line)


def process_tree(procs: list[dict]) -> str:
    """The sandbox's processes (pid, ppid, host pid, threads, state,
    command) with each child under its parent, as `ps -ef --forest` draws."""
    by_parent: dict[int, list[dict]] = {}
    pids = {p["pid"] for p in procs}
    for p in procs:
        by_parent.setdefault(p["ppid"] if p["ppid"] in pids else 0, []).append(p)
    lines = [f"{'PID':>5} {'PPID':>5} {'HOST PID':>8} {'THR':>3} S COMMAND"]

    def walk(parent: int, depth: int) -> None:
        for p in sorted(by_parent.get(parent, []), key=lambda p: p["pid"]):
            lead = "    " * (depth - 1) + " \\_ " if depth else ""
            lines.append(f"{p['pid']:>5} {p['ppid']:>5} {p['host_pid']:>8} {p['threads']:>3} "
                         f"{p['state']} {lead}{p['cmd']}")
            walk(p["pid"], depth + 1)
    walk(0, 0)
    return "\n".join(lines) + "\n"


@click.command("list")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--quiet", "-q", is_flag=True, help="Only ids.")
@_guard
def list_(rt, fmt, quiet):
    """List the containers under --root."""
    rows = []
    for cid in rt.store.ids():
        try:
            st = rt.store.load(cid)
        except ContainerError:
            continue
        rows.append(st.oci(rt.status(st)))
    if quiet:
        for r in rows:
            click.echo(r["id"])
    elif fmt == "json":
        click.echo(json.dumps(rows))
    else:
        click.echo(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for r in rows:
            click.echo(f"{r['id']:<20} {r['pid']:<8} {r['status']:<10} {r['bundle']:<40} {r['created']}")


@click.command()
@click.argument("container_id")
@_guard
def pause(rt, container_id):
    """Freeze every process of the container."""
    rt.ask(rt.store.load(container_id), {"op": "pause"})


@click.command()
@click.argument("container_id")
@_guard
def resume(rt, container_id):
    """Thaw a paused container."""
    rt.ask(rt.store.load(container_id), {"op": "resume"})


@click.command()
@click.option("--stats", is_flag=True, help="Print the statistics once and exit.")
@click.option("--interval", default="5s", help="How often to print statistics (default 5s).")
@click.argument("container_id")
@_guard
def events(rt, stats, interval, container_id):
    """Resource statistics of a container's sandbox, as JSON."""
    seconds = float(interval.rstrip("s") or 5)
    while True:
        st = rt.store.load(container_id)
        data = rt.ask(st, {"op": "stats"})["stats"]
        click.echo(json.dumps({"type": "stats", "id": container_id, "data": data}))
        if stats:
            return
        time.sleep(seconds)


@click.command()
@click.argument("container_id")
@_guard
def wait(rt, container_id):
    """Wait for a container to exit; print and return its exit status."""
    st = rt.store.load(container_id)
    while st.alive():
        time.sleep(0.05)
    st = rt.store.load(container_id)
    code = wait_status_to_exit_code(st.exit_status or 0)
    click.echo(json.dumps({"id": container_id, "exitStatus": code}))
    sys.exit(code)


@click.command()
@click.option("--bundle", "-b", default=".", help="The bundle directory.")
@click.option("--pid-file", default=None)
@click.option("--console-socket", default=None)
@click.option("--detach", "-d", is_flag=True, help="Do not wait for the container to exit.")
@click.option("--keep", is_flag=True, help="Keep the container's state after it exits.")
@click.argument("container_id")
@_guard
def run(rt, bundle, pid_file, console_socket, detach, keep, container_id):
    """Create and start a container; without -d, wait for it and exit with its status."""
    from .terminal import ConsoleRelay
    relay = None
    spec = load_bundle(os.path.abspath(bundle))
    if spec.process is not None and spec.process.terminal and not console_socket:
        if detach:
            raise ContainerError("process.terminal with --detach needs --console-socket")
        relay = ConsoleRelay()
        console_socket = relay.path
    try:
        pid = rt.create(container_id, os.path.abspath(bundle), pid_file, console_socket)
        if relay is not None:
            relay.accept()
        try:
            rt.start(container_id)
        except ContainerError:
            rt.delete(container_id, True)
            raise
        if detach:
            return
        if relay is not None:
            relay.run()
        _, status = os.waitpid(pid, 0)
    finally:
        if relay is not None:
            relay.close()
    if not keep:
        rt.delete(container_id, True)
    sys.exit(wait_status_to_exit_code(status) if not os.WIFEXITED(status) else os.WEXITSTATUS(status))


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--process", "-p", "process_file", default=None, help="A JSON process (config.json's process).")
@click.option("--detach", "-d", is_flag=True, help="Return once started; a waiter process relays its exit.")
@click.option("--pid-file", default=None)
@click.option("--console-socket", default=None)
@click.option("--tty", "-t", is_flag=True, help="Give the process a terminal.")
@click.option("--cwd", default=None)
@click.option("--env", "-e", multiple=True)
@click.option("--user", "-u", default=None, help="uid[:gid]")
@click.option("--preserve-fds", type=int, default=0, hidden=True)
@click.argument("container_id")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_guard
def exec_(rt, process_file, detach, pid_file, console_socket, tty, cwd, env, user, preserve_fds,
          container_id, command):
    """Run another process in a running container."""
    from .terminal import ConsoleRelay, run_waiter
    st = rt.store.load(container_id)
    if rt.status(st) not in ("running", "created"):
        raise ContainerError("cannot exec in a stopped container")
    if process_file:
        try:
            with open(process_file) as f:
                obj = json.load(f)
        except (OSError, ValueError) as e:
            raise ContainerError(f"--process {process_file}: {e}") from None
    else:
        if not command:
            raise ContainerError("exec: no command (give COMMAND or --process)")
        obj = {"args": list(command), "cwd": cwd or "/", "terminal": tty,
               "env": list(env) or [DEFAULT_PATH]}
        if user:
            uid, _, gid = user.partition(":")
            obj["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    process = parse_process(obj)  # checked here: errors are the exec's, not the sandbox's
    tty = tty or process.terminal
    relay = None
    if tty and not console_socket:
        if detach:
            raise ContainerError("exec --tty --detach needs --console-socket")
        relay = ConsoleRelay()  # exec in the foreground: our own terminal shows the pty
        console_socket = relay.path
    try:
        replica = None
        if tty:
            master, replica = os.openpty()
            try:
                send_console(console_socket, master)
            finally:
                os.close(master)
            if relay is not None:
                relay.accept()
        ch = Channel.connect(rt.store.control_path(container_id))
        ch.send({"op": "exec", "process": obj, "tty": tty}, [replica] if tty else [0, 1, 2])
        reply = ch.receive()
        if reply is None or not reply.get("ok"):
            raise ContainerError((reply or {}).get("error") or "the sandbox closed the connection")
        if detach:
            pid = os.fork()
            if pid == 0:
                os._exit(run_waiter(ch, replica, detached=True))
            ch.sock.close()
            if pid_file:
                write_atomic(os.path.abspath(pid_file), str(pid))
            return
        code = run_waiter(ch, replica, relay)
    finally:
        if relay is not None:
            relay.close()
    sys.exit(code)
