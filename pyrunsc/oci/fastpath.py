"""The commands containerd and conmon run on every container (create,
start, delete, kill, state), answered without click (and but for create,
without the sentry): each is a new
Python process, and the imports were most of its time. Anything this
parser does not recognise exactly goes to the full command line (cli.py),
which gives the same results and the help and errors for everything else."""
from __future__ import annotations

import sys

from .options import RuntimeOptions

# global flags: those taking a value, and switches (runc's and ours)
_VALUED = {"--root", "--log", "--log-format", "--platform", "--network", "--debug-log", "--overlay",
           "--rootless", "--criu", "--strace-syscalls", "--strace-log-size"}
_SWITCHES = {"--debug", "--systemd-cgroup", "--strace"}
_COMMANDS = {"start", "delete", "kill", "state", "create"}
_CREATE_VALUED = {"--bundle", "-b", "--pid-file", "--console-socket"}
_CREATE_SWITCHES = {"--no-pivot", "--no-new-keyring"}


def _globals(argv: list[str]) -> tuple[dict, list[str]] | None:
    flags, i = {}, 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name in _SWITCHES and not eq:
            flags[name] = True
            i += 1
        elif name in _VALUED:
            if not eq:
                if i + 1 >= len(argv):
                    return None
                value = argv[i + 1]
                i += 1
            flags[name] = value
            i += 1
        else:
            return None
    return flags, argv[i:]


def _parse(rest: list[str]) -> tuple[str, dict] | None:
    """(command, its arguments) for the shapes containerd and podman send."""
    if not rest or rest[0] not in _COMMANDS:
        return None
    cmd, args = rest[0], rest[1:]
    opts = {"force": False, "all": False, "--bundle": ".", "--pid-file": None, "--console-socket": None}
    positional = []
    it = iter(args)
    for a in it:
        name, eq, value = a.partition("=")
        if cmd == "create" and name in _CREATE_VALUED:
            if not eq:
                value = next(it, None)
                if value is None:
                    return None
            opts["--bundle" if name == "-b" else name] = value
        elif cmd == "create" and a in _CREATE_SWITCHES:
            pass
        elif cmd == "delete" and a in ("--force", "-f"):
            opts["force"] = True
        elif cmd == "kill" and a in ("--all", "-a"):
            opts["all"] = True
        elif a.startswith("-"):
            return None
        else:
            positional.append(a)
    want = {"start": (1, 1), "delete": (1, 1), "state": (1, 1), "kill": (1, 2), "create": (1, 1)}[cmd]
    if not want[0] <= len(positional) <= want[1]:
        return None
    opts["id"] = positional[0]
    opts["signal"] = positional[1] if len(positional) > 1 else "SIGTERM"
    return cmd, opts


def _strace_options(flags: dict) -> tuple:
    """--strace-syscalls as names (False: a bad one) and --strace-log-size
    (None: not a number >= 0)."""
    names = flags.get("--strace-syscalls")
    if names is not None:
        from sentry.strace import syscall_numbers
        try:
            syscall_numbers(names)
        except ValueError:
            names = False
        else:
            names = [n.strip() for n in names.split(",") if n.strip()]
    size = flags.get("--strace-log-size", "1024")
    return names, int(size) if size.isdigit() else None


def run(argv: list[str]) -> bool:
    """Run argv if it is one of the quick commands; False if not ours."""
    parsed = _globals(argv)
    if parsed is None:
        return False
    flags, rest = parsed
    command = _parse(rest)
    if command is None or flags.get("--log-format", "text") not in ("text", "json") \
            or flags.get("--platform", "ptrace") != "ptrace":
        return False
    from . import jsonlite
    from .control import ControlError
    from .hooks import HookError
    from .runtime import Runtime, signal_number
    from .spec import SpecError
    from .state import DEFAULT_ROOT, ContainerError
    cmd, o = command
    strace_syscalls, log_size = _strace_options(flags)
    opts = RuntimeOptions(network=flags.get("--network", "none"), strace=bool(flags.get("--strace")),
                          debug_log=flags.get("--debug-log"), overlay=flags.get("--overlay", "tmpfs"),
                          strace_syscalls=strace_syscalls, strace_log_size=log_size)
    if opts.overlay not in ("tmpfs", "none") or log_size is None or strace_syscalls is False:
        return False  # click says what is wrong
    rt = Runtime(flags.get("--root", DEFAULT_ROOT), flags.get("--log"), flags.get("--log-format", "text"), opts)
    try:
        if cmd == "create":
            import os
            rt.create(o["id"], os.path.abspath(o["--bundle"]), o["--pid-file"], o["--console-socket"])
        elif cmd == "start":
            rt.start(o["id"])
        elif cmd == "kill":
            rt.kill(o["id"], signal_number(o["signal"]), o["all"])
        elif cmd == "state":
            print(jsonlite.dumps(rt.state(o["id"]), indent=2))
        else:
            rt.delete(o["id"], o["force"])
    except (ContainerError, SpecError, ControlError, HookError) as e:
        rt.fail(str(e))
    except OSError as e:
        rt.fail(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    return True


def main() -> None:
    """The pyrunsc command: the quick commands here, the rest through click."""
    if not run(sys.argv[1:]):
        from ..cli import main as cli_main
        cli_main()
    sys.exit(0)
