"""What every runtime command needs and nothing heavy: the global flags
that change sandboxes, and how a wait status becomes an exit code. The
sandbox itself (the sentry) is imported only by the commands that build
one (create, run, exec's in-sandbox half), so that start, kill, state and
delete stay quick: containerd runs them on every container."""
from __future__ import annotations

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RuntimeOptions:
    """The global flags that change sandboxes (also runtimeArgs in daemon.json)."""

    def __init__(self, platform: str = "ptrace", network: str = "none", strace: bool = False,
                 debug_log: str | None = None, overlay: str = "tmpfs", strace_syscalls: list[str] | None = None,
                 strace_log_size: int = 1024):
        self.platform = platform
        self.network = network        # the netstack's mode inside the sandbox
        self.strace = strace
        self.strace_syscalls = strace_syscalls   # names (checked by the parser), None: all
        self.strace_log_size = strace_log_size
        self.debug_log = debug_log
        self.overlay = overlay        # tmpfs: the root's writes stay in memory; none: write through


def wait_status_to_exit_code(status: int) -> int:
    """A shell's rule: the exit code, or 128+N for death by signal N."""
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF
