"""-p HOSTPORT:GUESTPORT: a host TCP listener whose connections are carried
into the netstack.

The sentry listens on a real socket in the host's network namespace (where
pyrunsc runs). Each accepted connection gets a netstack TCP connection to
the guest port, and a Relay pumps bytes both ways on the kernel's loop:
host fds through k.watch_fd, netstack endpoints through their wait queues.
Each direction holds at most one chunk in flight, so a slow reader on
either side stops the other side's reads (backpressure through the TCP
windows). EOF becomes a half-close on the other side; a reset, or a guest
that refuses the connection, resets the other side.
"""
from __future__ import annotations

import errno
import socket
import struct

from netstack.core import AF_INET, AF_INET6, POLLIN, POLLOUT, WouldBlock
from netstack.tcp.protocol import endpoint as tcp_endpoint

CHUNK = 64 * 1024
ROUNDS = 16            # chunks moved per pump before yielding to the guests
BACKLOG = 128
ACCEPTS = 16           # connections taken per listener wake-up
SOL_SOCKET, SO_LINGER = 1, 13
LINGER_RESET = struct.pack("ii", 1, 0)   # close with RST


class PortForward:
    """One -p: the host listener and its live relays."""

    def __init__(self, k, stack, host: tuple[str, int], guest: tuple[bytes, int]):
        self.k, self.stack = k, stack
        self.guest = guest
        self.relays: set[Relay] = set()
        fam = socket.AF_INET6 if ":" in host[0] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME-WAITs, not a live listener
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(host)
            s.listen(BACKLOG)
        except OSError:
            s.close()
            raise
        self.sock = s
        self.address = s.getsockname()
        self.watch = k.watch_fd(s.fileno(), POLLIN, self._accept)

    def _accept(self, revents: int) -> None:
        for _ in range(ACCEPTS):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ECONNABORTED, EMFILE: that one is lost, the listener stays
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                continue
            conn.setblocking(False)
            try:
                relay = Relay(self, conn)
            except OSError:
                _reset(conn)
                continue
            self.relays.add(relay)
            relay.pump()

    def close(self) -> None:
        if self.sock is None:
            return
        self.k.unwatch_fd(self.watch)
        self.sock.close()
        self.sock = None
        for r in list(self.relays):
            r.abort()


class Relay:
    """One forwarded connection: a host socket and a netstack endpoint."""

    def __init__(self, fwd: PortForward, host: socket.socket):
        self.fwd, self.k, self.host = fwd, fwd.k, host
        addr, port = fwd.guest
        self.ep = tcp_endpoint(fwd.stack, AF_INET if len(addr) == 4 else AF_INET6)
        try:
            self.ep.connect((addr, port))
        except WouldBlock:
            pass
        except OSError:
            self.ep.close()
            raise
        self.connected = False
        self.up = b""           # read from the host, not yet taken by the guest
        self.down = b""         # read from the guest, not yet taken by the host
        self.host_eof = self.guest_eof = False
        self.closed = False
        self.watch = None       # (handle, events) on the host fd
        self.scheduled = False
        self._waiting = ()      # endpoint queues our wake-up is on

    # --- scheduling: all work runs from the loop, never inside a netstack callback ---
    def _wake(self) -> None:
        self._waiting = ()
        if not self.scheduled and not self.closed:
            self.scheduled = True
            self.k.netclock.call_at(0, self._run)

    def _run(self) -> None:
        self.scheduled = False
        self.pump()

    def _on_host(self, revents: int) -> None:
        self.pump()

    def _wait_endpoint(self) -> None:
        if not self._waiting:
            self._waiting = tuple(self.ep.queues())
            for q in self._waiting:
                q.add_waiter(self._wake)

    def _unwait_endpoint(self) -> None:
        for q in self._waiting:
            q.remove_waiter(self._wake)
        self._waiting = ()

    def _watch_host(self, events: int) -> None:
        if self.watch is not None and self.watch[1] == events:
            return
        if self.watch is not None:
            self.k.unwatch_fd(self.watch[0])
            self.watch = None
        if events:
            self.watch = (self.k.watch_fd(self.host.fileno(), events, self._on_host), events)

    # --- moving bytes ---
    def pump(self) -> None:
        if self.closed:
            return
        try:
            if not self.connected:
                self.ep.connect_result()
                self.connected = True
            self._move()
        except WouldBlock:  # still connecting
            self._wait_endpoint()
            self._watch_host(0)
        except OSError:     # refused, reset, timed out: reset the other side too
            self.abort()

    def _move(self) -> None:
        host_events = 0
        ep_wait = False
        for _ in range(ROUNDS):
            progress = False
            # host -> guest
            if self.up:
                try:
                    n = self.ep.send(self.up[:CHUNK])
                    self.up = self.up[n:]
                    progress = n > 0
                except WouldBlock:
                    ep_wait = True
            elif not self.host_eof:
                try:
                    data = self.host.recv(CHUNK)
                except (BlockingIOError, InterruptedError):
                    host_events |= POLLIN
                else:
                    progress = True
                    if data:
                        self.up = data
                    else:
                        self.host_eof = True
                        self.ep.shutdown(socket.SHUT_WR)
            # guest -> host
            if self.down:
                try:
                    n = self.host.send(self.down, socket.MSG_NOSIGNAL)
                    self.down = self.down[n:]
                    progress = n > 0
                except (BlockingIOError, InterruptedError):
                    host_events |= POLLOUT
            elif not self.guest_eof:
                try:
                    data = self.ep.recv(CHUNK)[0]
                except WouldBlock:
                    ep_wait = True
                else:
                    progress = True
                    if data:
                        self.down = data
                    else:
                        self.guest_eof = True
                        self.host.shutdown(socket.SHUT_WR)
            if self.host_eof and self.guest_eof and not self.up and not self.down:
                self.finish()
                return
            if not progress:
                break
            host_events, ep_wait = 0, False
        else:  # moved ROUNDS chunks: let the guests run, then go on
            self._wake()
            return
        self._watch_host(host_events)
        self._unwait_endpoint()
        if ep_wait:
            self._wait_endpoint()

    # --- endings ---
    def _drop(self) -> None:
        self.closed = True
        self._watch_host(0)
        self._unwait_endpoint()
        self.fwd.relays.discard(self)

    def finish(self) -> None:
        """Both directions ended and were delivered: an orderly close."""
        self._drop()
        self.ep.close()
        self.host.close()

    def abort(self) -> None:
        """A reset on either side: reset the other one too."""
        if self.closed:
            return
        self._drop()
        try:
            self.ep.setsockopt(SOL_SOCKET, SO_LINGER, LINGER_RESET)
        except OSError:
            pass
        self.ep.close()
        _reset(self.host)


def _reset(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    except OSError:
        pass
    s.close()
