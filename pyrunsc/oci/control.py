"""The control socket between the runtime's commands and a sandbox
process: one JSON object per line each way, host fds beside a request
(SCM_RIGHTS). See docs/oci.md for the requests."""
from __future__ import annotations

import _socket  # socket.py's C half: socket.py itself costs the quick commands 6 ms of enum building
import os
import sys

from . import jsonlite

MAX_FDS = 3
MAX_LINE = 1 << 20


SUN_PATH_MAX = 107  # sockaddr_un's path, less its NUL


class ShortPath:
    """A unix socket path sockaddr_un can hold: a long one (Docker's state
    root plus a 64-digit id) is reached through /proc/self/fd of its
    directory, opened while the socket is bound or connected."""

    def __init__(self, path: str):
        self.path, self.fd = path, -1

    def __enter__(self) -> str:
        if len(os.fsencode(self.path)) <= SUN_PATH_MAX:
            return self.path
        self.fd = os.open(os.path.dirname(self.path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self.fd}/{os.path.basename(self.path)}"

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _rights(fds) -> tuple:
    """An SCM_RIGHTS control message carrying fds (C ints)."""
    return (_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
            b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds))


class ControlError(Exception):
    """The sandbox could not be reached or refused the request."""


class Channel:
    """One connection, either side."""

    def __init__(self, sock: _socket.socket):
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []

    @classmethod
    def connect(cls, path: str, timeout: float | None = 30.0) -> "Channel":
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        s.settimeout(timeout)
        try:
            with ShortPath(path) as address:
                s.connect(address)
        except OSError as e:
            s.close()
            raise ControlError(f"sandbox unreachable: {e.strerror or e}") from None
        return cls(s)

    def send(self, msg: dict, fds: list[int] = ()) -> None:
        data = jsonlite.dumps(msg).encode() + b"\n"
        if fds:
            self.sock.sendmsg([data], [_rights(fds)])
        else:
            self.sock.sendall(data)

    def receive(self) -> dict | None:
        """The next message (its fds in self.fds), None at end of stream."""
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise ControlError("control message too long")
            data, anc, _, _ = self.sock.recvmsg(65536, _socket.CMSG_SPACE(MAX_FDS * 4))
            for level, kind, payload in anc:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    self.fds.extend(int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True)
                                    for i in range(0, len(payload) - 3, 4))
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        try:
            msg = jsonlite.loads(line)
        except ValueError:
            raise ControlError("malformed control message") from None
        if not isinstance(msg, dict):
            raise ControlError("malformed control message")
        return msg

    def take_fds(self) -> list[int]:
        fds, self.fds = self.fds, []
        return fds

    def close(self) -> None:
        for fd in self.take_fds():
            try:
                os.close(fd)
            except OSError:
                pass
        self.sock.close()


def request(path: str, msg: dict, fds: list[int] = (), timeout: float | None = 30.0) -> dict:
    """One request and its reply; ControlError if refused or unreachable."""
    ch = Channel.connect(path, timeout)
    try:
        ch.send(msg, fds)
        reply = ch.receive()
    except OSError as e:
        raise ControlError(f"sandbox unreachable: {e.strerror or e}") from None
    finally:
        ch.close()
    if reply is None:
        raise ControlError("the sandbox closed the connection")
    if not reply.get("ok"):
        raise ControlError(reply.get("error") or "refused")
    return reply


def send_console(path: str, fd: int) -> None:
    """A pty master to a --console-socket, as runc sends it (SCM_RIGHTS)."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        with ShortPath(path) as address:
            s.connect(address)
        s.sendmsg([b"/dev/ptmx"], [_rights([fd])])
    except OSError as e:
        raise ControlError(f"console socket {path}: {e.strerror or e}") from None
    finally:
        s.close()
