"""The sandbox process of an OCI container: forked by `create`, it builds
the sandbox, loads the container's init without running it, and serves
the control socket until init exits; its exit status is init's.

The kernel loop runs on the main thread from the start (init held until
`start`). A thread accepts control connections and reads requests; the
loop answers them (Kernel.on_poke), since only it may touch the kernel.
An exec's connection stays open: its process's exit status goes back on
it, signals come in on it, and its closing kills the process."""
from __future__ import annotations

import collections
import errno
import fcntl
import os
import signal
import socket
import struct
import sys
import termios
import threading

from sentry import inet, signals
from sentry.console import Console
from sentry.fdtable import FDTable
from sentry.kernel import WAKE_SIGNAL, InternalError
from sentry.syscalls import table
from vfs.file import O_RDONLY, O_RDWR, O_WRONLY, FileDescription, HostFileImpl
from vfs.path import Creds, PathContext

from ..sandbox import Sandbox, SandboxError
from . import assemble, jsonlite
from .options import RuntimeOptions, wait_status_to_exit_code
from .control import Channel, ControlError, ShortPath, send_console
from .hooks import HookChain, HookError, hook_state, run_hooks, stored_hooks
from .spec import Process, Spec, SpecError, parse_process
from .state import State, Store, now_rfc3339, process_start_time

# Signals sent to the sandbox process itself go to init, as from outside
# its pid namespace (SIGHUP is the console's hang-up: not forwarded).
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class OwnedHostFile(HostFileImpl):
    """A host fd handed to the sandbox for one process (an exec's stdio):
    closed when the last description using it goes."""

    def reopen(self, flags: int) -> "OwnedHostFile":
        return OwnedHostFile(os.dup(self.host_fd))

    def release(self) -> None:
        if self.host_fd >= 0:
            os.close(self.host_fd)
            self.host_fd = -1


def _own_stdio() -> FDTable:
    """The fds create received as init's stdio, moved off 0-2."""
    table = FDTable()
    for fd, mode in ((0, O_RDONLY), (1, O_WRONLY), (2, O_WRONLY)):
        try:
            table.install_at(fd, FileDescription(OwnedHostFile(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)), mode))
        except OSError:
            pass  # closed: the guest has no such fd either
    return table


def _detach_stdio() -> None:
    """The sandbox process keeps none of the caller's stdio: whoever ran
    create (containerd's shim reading its output) must see EOF when create
    exits, and the guests' stdio is theirs alone."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _sysctl_ints(key: str, value: str, count: int) -> list[int]:
    try:
        nums = [int(x) for x in value.split()]
    except ValueError:
        nums = []
    if len(nums) != count:
        raise SpecError(f"sysctl {key}: bad value {value!r}")
    return nums


def _apply_sysctls(sysctl: dict[str, str]) -> None:
    """The sandbox's own sysctls: those the sentry has (Docker sets
    ip_unprivileged_port_start, Podman ping_group_range)."""
    for key, value in sysctl.items():
        if key == "net.ipv4.ping_group_range":
            inet.PING_GROUP_RANGE = tuple(_sysctl_ints(key, value, 2))
        elif key == "net.ipv4.ip_unprivileged_port_start":
            inet.PROT_SOCK = _sysctl_ints(key, value, 1)[0]
        else:
            raise SpecError(f"sysctl {key} is not supported in the sandbox")


class SandboxServer:
    def __init__(self, spec: Spec, cid: str, store: Store, opts: RuntimeOptions,
                 console_socket: str | None, log):
        self.spec, self.cid, self.store, self.opts = spec, cid, store, opts
        self.console_socket = console_socket
        self.log = log                   # log(msg): the runtime's --log and stderr
        self.sandbox: Sandbox | None = None
        self.init = None                 # the init ThreadGroup
        self.started = False
        self.consoles: list[Console] = []
        self.requests = collections.deque()   # (Channel, message) from the accept thread
        self.listener: socket.socket | None = None
        self.execs: dict = {}             # ThreadGroup -> Channel of its exec

    # --- creation ---
    def create(self, hooks: HookChain) -> None:
        """Everything `create` promises, the hooks having been started in
        the sandbox's network namespace; SpecError/SandboxError on failure
        (the caller tears down)."""
        spec = self.spec
        if spec.process is None:
            raise SpecError("config.json: process is required to create a container")
        cfg = assemble.sandbox_config(spec, self.opts)
        self.sandbox = sb = Sandbox(cfg)
        tree = sb.boot()
        _apply_sysctls(spec.sysctl)
        k = sb.kernel
        self.init = self._load(spec.process, tree, hold=True, stdio=None)
        signal.signal(WAKE_SIGNAL, lambda *_: None)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGWINCH, self._on_winch)
        for sig in FORWARDED:
            signal.signal(sig, self._on_forwarded)
        k.on_poke.append(self._serve_requests)
        self._listen()
        try:
            hooks.wait()
        except HookError as e:
            raise SpecError(str(e)) from None

    def _load(self, process: Process, tree, *, hold: bool, stdio, on_exit=None):
        """Load a process (init, or an exec's) into the kernel."""
        sb, k = self.sandbox, self.sandbox.kernel
        env = assemble.environment(process)
        creds = assemble.credentials(process)
        ctx = PathContext(tree.root, tree.root, Creds())
        try:
            cwd = sb.working_directory(tree, ctx, process.cwd or "/")
            prog = sb.find_program(tree, ctx, process.args[0], env)
        except SandboxError as e:
            raise SpecError(self._exec_error(process.args[0], e.code)) from None
        argv = [os.fsencode(a) for a in process.args]   # argv[0] as given (runc's too); prog is found on PATH
        console = None
        if stdio is None:  # init: a terminal of its own, or create's stdio
            if process.terminal:
                console, table = self._terminal(process)
            else:
                table = _own_stdio()
            _detach_stdio()
        else:
            table = stdio
        try:
            if on_exit is None:
                tg = k.start(argv, env, cwd, table, creds, hold=hold, filename=prog)
            else:
                tg = k.spawn(argv, env, cwd, table, creds, on_exit, filename=prog)
        except OSError as e:
            code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            raise SpecError(self._exec_error(process.args[0], code, e.errno)) from None
        assemble.apply_process_limits(tg, process)
        if console is not None:
            console.attach(tg)
            self.consoles.append(console)
        return tg

    @staticmethod
    def _exec_error(cmd: str, code: int, err: int | None = None) -> str:
        """runc's wording, which Docker maps to exit statuses 127 and 126."""
        if code == 127 and "/" not in cmd:
            return f'exec: "{cmd}": executable file not found in $PATH'
        if code == 127:
            return f'exec: "{cmd}": stat {cmd}: no such file or directory'
        why = os.strerror(err).lower() if err else "permission denied"
        return f'exec: "{cmd}": {why}'

    def _terminal(self, process: Process, replica: int | None = None):
        """A sentry pty for the process, relayed to a host pty whose master
        went to the console socket (init) or whose replica came from exec."""
        sb = self.sandbox
        if replica is None:
            if not self.console_socket:
                raise SpecError("process.terminal is set but no --console-socket was given")
            master, replica = os.openpty()
            try:
                send_console(self.console_socket, master)
            except ControlError as e:
                os.close(replica)
                raise SpecError(str(e)) from None
            finally:
                os.close(master)
            self._take_ctty(replica)
        if process.console_size:
            h, w = process.console_size
            fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))
        console = Console(sb.kernel, sb.ptys, in_fd=replica, out_fd=replica, host_signals=False)
        table = FDTable()
        desc = FileDescription(console.replica(), O_RDWR)
        for fd in (0, 1, 2):
            table.install_at(fd, desc)
        return console, table

    @staticmethod
    def _take_ctty(fd: int) -> None:
        """The host pty becomes this process's controlling terminal, so a
        resize by whoever holds the master (containerd) sends us SIGWINCH."""
        try:
            fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
        except OSError:
            pass  # then the guest keeps the size it started with

    def _listen(self) -> None:
        path = self.store.control_path(self.cid)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with ShortPath(path) as address:
            s.bind(address)
        os.chmod(path, 0o600)
        s.listen(16)
        self.listener = s
        threading.Thread(target=self._accept, name="pyrunsc-control", daemon=True).start()

    # --- the control thread ---
    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(Channel(conn),), daemon=True).start()

    def _read(self, ch: Channel) -> None:
        """Requests of one connection, handed to the loop; the end of an
        exec's connection too (its process is then killed)."""
        while True:
            try:
                msg = ch.receive()
            except (OSError, ControlError):
                msg = None
            self.requests.append((ch, msg))
            self.sandbox.kernel.poke_from_thread()
            if msg is None:
                return

    # --- in the loop ---
    def _serve_requests(self) -> None:
        while self.requests:
            ch, msg = self.requests.popleft()
            if msg is None:
                self._hung_up(ch)
                continue
            try:
                reply = self._handle(ch, msg)
            except (SpecError, ControlError, OSError, ValueError, KeyError, TypeError) as e:
                reply = {"ok": False, "error": str(e)}
            if reply is not None and ch is not None:
                try:
                    ch.send(reply)
                except OSError:
                    pass

    def _handle(self, ch: Channel, msg: dict) -> dict | None:
        op = msg.get("op")
        k = self.sandbox.kernel
        if op == "state":
            return {"ok": True, "status": self.status()}
        if op == "start":
            if self.started:
                return {"ok": False, "error": "container already started"}
            try:
                run_hooks("startContainer", self.spec.hooks.get("startContainer", []), self.oci_state("created"))
            except HookError as e:
                return {"ok": False, "error": str(e)}
            self.started = True
            k.release(self.init)
            return {"ok": True}
        if op == "kill":
            sig = int(msg["signal"])
            groups = [g for g in k.pidns.groups.values() if g.state == "R"] if msg.get("all") else [self.init]
            for tg in groups:
                self._signal(tg, sig)
            return {"ok": True}
        if op == "signal":  # from an exec's waiter, to its process
            tg = next((g for g, c in self.execs.items() if c is ch), None)
            if tg is not None:
                self._signal(tg, int(msg["signal"]))
            return None
        if op == "resize":
            tg = next((g for g, c in self.execs.items() if c is ch), None)
            for console in self.consoles:
                if tg is not None and console.term.sid == tg.sid:
                    console.on_winch()
            return None
        if op == "ps":
            return {"ok": True, "pids": self.host_pids()}
        if op == "processes":
            return {"ok": True, "processes": self.processes()}
        if op == "pause":
            k.freeze()
            return {"ok": True}
        if op == "resume":
            k.thaw()
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "stats": self.stats()}
        if op == "exec":
            return self._exec(ch, msg)
        return {"ok": False, "error": f"unknown request {op!r}"}

    def _signal(self, tg, sig: int) -> None:
        if tg.exiting or not tg.tasks:
            return
        signals.send_signal_to_group(self.sandbox.kernel, tg, sig, from_outside=True)

    def _exec(self, ch: Channel, msg: dict) -> dict:
        fds = ch.take_fds()
        process = parse_process(msg["process"])
        tty = bool(msg.get("tty"))
        try:
            if tty:
                if len(fds) != 1:
                    raise ValueError("exec with a terminal takes one fd")
                console, table = self._terminal(process, replica=fds[0])
            else:
                if len(fds) != 3:
                    raise ValueError("exec takes three fds")
                console, table = None, FDTable()
                for fd, host, mode in zip((0, 1, 2), fds, (O_RDONLY, O_WRONLY, O_WRONLY)):
                    table.install_at(fd, FileDescription(OwnedHostFile(host), mode))
                fds = []  # owned by the descriptions now
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

        def exited(status: int) -> None:
            self.execs.pop(tg, None)
            if console is not None:
                console.close()
                self.consoles.remove(console)
                os.close(fds[0])
            try:
                ch.send({"exit": status})
            except OSError:
                pass

        tree = self.sandbox.kernel.mounts
        tg = self._load(process, tree, hold=False, stdio=table, on_exit=exited)
        if console is not None:
            console.attach(tg)
            self.consoles.append(console)
        self.execs[tg] = ch
        return {"ok": True, "pid": tg.tasks[0].thread.pid}

    def _hung_up(self, ch: Channel) -> None:
        """An exec's waiter went away: its process goes too (SIGKILL)."""
        for tg, c in list(self.execs.items()):
            if c is ch:
                self._signal(tg, signal.SIGKILL)
        ch.close()

    def status(self) -> str:
        if self.sandbox.kernel.frozen:
            return "paused"
        return "running" if self.started else "created"

    def host_pids(self) -> list[int]:
        k = self.sandbox.kernel
        return sorted(g.tasks[0].thread.pid for g in k.pidns.groups.values() if g.state == "R" and g.tasks)

    def stats(self) -> dict:
        import psutil  # only `events` asks
        procs = [psutil.Process()]
        procs += procs[0].children(recursive=True)
        cpu = mem = 0
        for p in procs:
            try:
                t = p.cpu_times()
                cpu += int((t.user + t.system) * 1e9)
                mem += p.memory_info().rss
            except psutil.Error:
                pass
        k = self.sandbox.kernel
        groups = [g for g in k.pidns.groups.values() if g.tasks]
        return {"cpu": {"usage": {"total": cpu}}, "memory": {"usage": {"usage": mem}},
                "pids": {"current": len(self.host_pids())},
                "tasks": {"processes": len(groups), "threads": sum(len(g.tasks) for g in groups)},
                "syscalls": k.nsyscalls,
                "syscall_counts": {table.name(nr): n for nr, n in enumerate(k.syscall_counts) if n},
                "unimplemented": {table.name(nr): n for nr, n in k.unimplemented.items()}}

    def processes(self) -> list[dict]:
        """The sandbox's processes as its own pid namespace sees them."""
        k = self.sandbox.kernel
        out = []
        for g in sorted(k.pidns.groups.values(), key=lambda g: g.tgid):
            if not g.tasks:
                continue
            out.append({"pid": g.tgid, "ppid": g.parent.tgid if g.parent is not None else 0,
                        "host_pid": g.tasks[0].thread.pid, "threads": len(g.tasks), "state": g.state,
                        "cmd": " ".join(os.fsdecode(a) for a in g.argv) or os.fsdecode(g.tasks[0].comm)})
        return out

    def oci_state(self, status: str) -> dict:
        return hook_state(self.cid, self.spec, status)

    def _on_winch(self, *_) -> None:
        for console in self.consoles:
            if console.in_fd is not None:
                console.on_winch()
                break  # init's: the one whose host pty is our controlling terminal

    def _on_forwarded(self, sig, _frame) -> None:
        self.requests.append((None, {"op": "kill", "signal": int(sig)}))
        self.sandbox.kernel.poke()

    # --- the life of the sandbox process ---
    def run(self) -> int:
        """Run until init exits; the process's exit code is init's."""
        k = self.sandbox.kernel
        try:
            status = k.run()
        except InternalError as e:
            self.log(f"internal error in the sentry: {e}")
            import traceback  # only for this report: 3 ms of every sandbox's start
            traceback.print_exc(file=sys.stderr)
            status = 70 << 8
        return status

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.store.control_path(self.cid))
            except OSError:
                pass
        for console in self.consoles:
            console.close()
        self.consoles = []
        if self.sandbox is not None:
            self.sandbox.close()


def serve(spec: Spec, cid: str, store: Store, opts: RuntimeOptions, console_socket: str | None,
          ready_fd: int, log, hooks: HookChain) -> int:
    """The forked sandbox process's life from its hooks' start; returns its
    exit code. ready_fd gets one JSON line: {"ok": true} once the container
    is created, or {"ok": false, "error": ...}."""
    server = SandboxServer(spec, cid, store, opts, console_socket, log)

    def ready(msg: dict) -> None:
        try:
            os.write(ready_fd, jsonlite.dumps(msg).encode() + b"\n")
        finally:
            os.close(ready_fd)

    try:
        server.create(hooks)
    except (SpecError, SandboxError, OSError) as e:
        hooks.abandon()
        server.close()
        ready({"ok": False, "error": str(e) if not isinstance(e, OSError) else f"{e.strerror or e}"})
        return 1
    except BaseException as e:
        hooks.abandon()
        server.close()
        ready({"ok": False, "error": f"internal error: {e!r}"})
        raise
    state = State(id=cid, bundle=spec.bundle, rootfs=spec.root_path, pid=os.getpid(),
                  pid_start=process_start_time(os.getpid()) or 0, created=now_rfc3339(),
                  annotations=spec.annotations,
                  hooks={kind: stored_hooks(spec.hooks[kind]) for kind in ("poststart", "poststop")
                         if spec.hooks.get(kind)})
    store.save(state)
    ready({"ok": True})
    status = 0
    try:
        status = server.run()
    finally:
        server.close()
        try:
            st = store.load(cid)
            st.exit_status = status
            store.save(st)
        except Exception:
            pass  # deleted meanwhile (delete --force)
    return wait_status_to_exit_code(status)
