"""The gofer: a separate process serving a host directory over 9P2000.L
(server.py), the codec (p9.py), the sentry's client (client.py) and the
filesystem the sentry mounts over it (fs.py).

    gofer = start_gofer("/path/to/rootfs")       # read-only by default
    tree = MountTree(gofer.fs)
    ...
    gofer.close()                                 # also done at exit
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import weakref

from .client import GoferClient
from .fs import GoferFilesystem

__all__ = ["Gofer", "GoferClient", "GoferFilesystem", "start_gofer"]

# The directory holding the vfs package: the server runs as
# `python -m vfs.gofer.server` from the checkout as well as when installed.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SHUTDOWN_GRACE = 5.0


def _stop(proc: subprocess.Popen, sock: socket.socket) -> None:
    """Close our end (the server exits at EOF) and reap; kill if it lingers."""
    try:
        sock.close()
    except OSError:
        pass
    if proc.poll() is None:
        try:
            proc.wait(timeout=_SHUTDOWN_GRACE)
        except subprocess.TimeoutExpired:
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


def start_gofer(root: str, rw: bool = False, *, cache: bool = True) -> Gofer:
    """Start a gofer serving root (read-only unless rw) and connect to it."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(server_command(theirs.fileno(), os.fspath(root), rw),
                                pass_fds=[theirs.fileno()], env=server_env(), cwd="/",
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    except BaseException:
        ours.close()
        theirs.close()
        raise
    theirs.close()
    try:
        client = GoferClient(ours)
        client.version()
        fs = GoferFilesystem(client, rw=rw, cache=cache)
    except BaseException as e:
        _stop(proc, ours)
        why = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        proc.stderr.close()
        if why and isinstance(e, OSError):
            raise OSError(e.errno, f"gofer for {root!r} failed: {why}") from e
        raise
    # the server points its stderr at /dev/null once set up; nothing more comes
    proc.stderr.close()
    return Gofer(proc, ours, client, fs)

