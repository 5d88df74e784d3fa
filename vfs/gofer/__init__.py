"""The gofer: a separate process serving a host directory over 9P2000.L
(server.py), the codec (p9.py), the sentry's client (client.py) and the
filesystem the sentry mounts over it (fs.py).

    gofer = start_gofer("/path/to/rootfs")       # read-only by default
    tree = MountTree(gofer.fs)
    ...
    gofer.close()                                 # also done at exit

    launch = launch_gofer("/path/to/rootfs")     # it sets itself up meanwhile
    ...
    gofer = launch.connect()
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import threading
import time
import weakref

from .client import GoferClient
from .fs import GoferFilesystem

TYPE_CHECKING = False  # not typing's: importing typing costs a sandbox's start 3 ms
if TYPE_CHECKING:
    import subprocess  # for annotations; see _subprocess

__all__ = ["Gofer", "GoferClient", "GoferFilesystem", "GoferLaunch", "launch_gofer", "start_gofer"]

# The directory holding the vfs package: the server runs as
# `python -m vfs.gofer.server` from the checkout as well as when installed.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SHUTDOWN_GRACE = 5.0


def _subprocess():
    """The subprocess module, imported only where a gofer is exec'd or
    outlives its grace: a forked gofer needs none of it (2 ms a sandbox)."""
    import subprocess
    return subprocess


def _stop(proc: subprocess.Popen, sock: socket.socket) -> None:
    """Close our end (the server exits at EOF) and reap; kill if it lingers."""
    try:
        sock.close()
    except OSError:
        pass
    if proc.poll() is None:
        try:
            proc.wait(timeout=_SHUTDOWN_GRACE)
        except _subprocess().TimeoutExpired:  # evaluated only when wait raised
            proc.kill()
            proc.wait()


class Gofer:
    """A running gofer process and the sentry's side of its connection."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket, client: GoferClient,
                 fs: GoferFilesystem):
        self.proc = proc
        self.client = client
        self.fs = fs
        self._finalizer = weakref.finalize(self, _stop, proc, sock)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        self.fs.drop_open_files()
        self.client.close()
        self._finalizer()

    def __enter__(self) -> "Gofer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def server_command(fd: int, root: str, rw: bool) -> list[str]:
    return [sys.executable, "-m", "vfs.gofer.server", "--fd", str(fd), "--root", root] + (
        ["--rw"] if rw else [])


def server_env() -> dict[str, str]:
    """A minimal environment: only what finds the vfs package."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": _PACKAGE_PARENT + (os.pathsep + path if path else "")}


class ForkedServer:
    """The part of subprocess.Popen a Gofer uses, for a gofer forked from
    this process rather than started as a new interpreter."""

    def __init__(self, pid: int, stderr):
        self.pid, self.stderr, self.returncode = pid, stderr, None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already (the platform's waitpid(-1)), as Popen allows
                self.returncode = 0
                return 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise _subprocess().TimeoutExpired(["gofer"], timeout)
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


_PR_SET_NAME, _PR_SET_MM, _PR_SET_MM_MAP = 15, 35, 14
_MM_MAP = struct.Struct("<11QQII")  # struct prctl_mm_map: 11 bounds, auxv, auxv_size, exe_fd
_shown_argv = None  # the buffer /proc/self/cmdline is pointed at: must live as long as the process


def _show_as(argv: list[str]) -> None:
    """Make a forked gofer look like an exec'd one to the host's ps (and to
    whoever picks gofers by their command line): comm by PR_SET_NAME, argv
    by PR_SET_MM_MAP onto a buffer of ours, every other bound as it is.
    Display only: a kernel that refuses leaves the parent's command line."""
    global _shown_argv
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.sbrk.restype = ctypes.c_void_p
    libc.prctl(_PR_SET_NAME, ctypes.addressof(ctypes.create_string_buffer(b"gofer")), 0, 0, 0)
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    v = [int(x) for x in stat[stat.rindex(b")") + 2:].split()[1:]]  # v[i]: field i + 4 of proc(5)
    field = lambda n: v[n - 4]  # noqa: E731
    _shown_argv = ctypes.create_string_buffer(b"\0".join(os.fsencode(a) for a in argv) + b"\0")
    start = ctypes.addressof(_shown_argv)
    mm_map = ctypes.create_string_buffer(_MM_MAP.pack(
        field(26), field(27), field(45), field(46), field(47), libc.sbrk(0), field(28),
        start, start + len(_shown_argv.raw), field(50), field(51), 0, 0, 0xFFFFFFFF))
    libc.prctl(_PR_SET_MM, _PR_SET_MM_MAP, ctypes.addressof(mm_map), _MM_MAP.size, 0)


def _fork_server(fd: int, root: str, rw: bool) -> ForkedServer:
    """The gofer as a fork of this process: the interpreter and modules
    are there already, which saves a new Python's start-up (a tenth of a
    second per gofer). The child keeps nothing of ours: the server closes
    every other fd and confines itself before serving, as when exec'd."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.dup2(err_w, 2)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGIO, signal.SIGWINCH):
                signal.signal(sig, signal.SIG_DFL)
            from . import server
            _show_as(server_command(fd, root, rw))
            code = server.serve_export(fd, root, rw)
        except BaseException:
            pass
        finally:
            os._exit(code)
    os.close(err_w)
    return ForkedServer(pid, os.fdopen(err_r, "rb"))


class GoferLaunch:
    """A gofer process started but not yet connected to: it sets itself up
    (confinement, seccomp) while the caller does other work. connect()
    waits for it and gives the Gofer; close() ends one never connected."""

    def __init__(self, root: str, rw: bool, proc, sock: socket.socket):
        self.root, self.rw = root, rw
        self._finalizer = weakref.finalize(self, _stop, proc, sock)

    def connect(self, *, cache: bool = True) -> Gofer:
        _, _, (proc, ours), _ = self._finalizer.detach()  # the Gofer's to stop from now on
        try:
            client = GoferClient(ours)
            client.version()
            fs = GoferFilesystem(client, rw=self.rw, cache=cache)
        except BaseException as e:
            _stop(proc, ours)
            why = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            proc.stderr.close()
            if why and isinstance(e, OSError):
                raise OSError(e.errno, f"gofer for {self.root!r} failed: {why}") from e
            raise
        # the server points its stderr at /dev/null once set up; nothing more comes
        proc.stderr.close()
        return Gofer(proc, ours, client, fs)

    def close(self) -> None:
        live = self._finalizer.peek()  # None once connected or closed
        if live is not None:
            _, _, (proc, _sock), _ = live
            self._finalizer()
            proc.stderr.close()


def launch_gofer(root: str, rw: bool = False) -> GoferLaunch:
    """Start a gofer serving root (read-only unless rw), to connect to
    later: forked while this process has one thread, else a new
    interpreter."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if threading.active_count() == 1:
            proc = _fork_server(theirs.fileno(), os.fspath(root), rw)
        else:
            subprocess = _subprocess()
            proc = subprocess.Popen(server_command(theirs.fileno(), os.fspath(root), rw),
                                    pass_fds=[theirs.fileno()], env=server_env(), cwd="/",
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
    except BaseException:
        ours.close()
        theirs.close()
        raise
    theirs.close()
    return GoferLaunch(root, rw, proc, ours)


def start_gofer(root: str, rw: bool = False, *, cache: bool = True) -> Gofer:
    """Start a gofer serving root (read-only unless rw) and connect to it."""
    return launch_gofer(root, rw).connect(cache=cache)
