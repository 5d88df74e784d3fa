"""The runtime's own side of terminals and exec'd processes.

ConsoleRelay is the console socket `run` and `exec` make for themselves
when the process wants a terminal and no --console-socket was given:
they receive the pty master and relay it to their own stdin and stdout.
run_waiter is what stays of `exec`: it passes its signals on to the
process in the sandbox and exits with the process's status."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import termios
import threading
import tty

from .options import wait_status_to_exit_code
from .control import Channel, ControlError

# what a waiter passes on (SIGKILL and SIGSTOP cannot be caught: a killed
# waiter closes its connection and the sandbox kills the process)
_FORWARD = [s for s in range(1, 32) if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD,
                                                   signal.SIGWINCH, signal.SIGHUP, signal.SIGPIPE)]


class ConsoleRelay:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pyrunsc-console-")
        self.path = os.path.join(self.dir, "console.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(60)
        self.master = -1
        self.saved = None

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        if not fds:
            raise ControlError("no pty master came on the console socket")
        self.master = fds[0]

    def start(self) -> None:
        """Relay in the background: our stdin to the master, the master to stdout."""
        if os.isatty(0):
            self.saved = termios.tcgetattr(0)
            try:
                import fcntl
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8)))
            except OSError:
                pass
            tty.setraw(0, termios.TCSANOW)
        threading.Thread(target=self._copy, args=(0, self.master), daemon=True).start()
        self.out = threading.Thread(target=self._copy, args=(self.master, 1), daemon=True)
        self.out.start()

    @staticmethod
    def _copy(src: int, dst: int) -> None:
        while True:
            try:
                data = os.read(src, 65536)
            except OSError:
                return
            if not data:
                return
            try:
                os.write(dst, data)
            except OSError:
                return

    def run(self) -> None:
        """Relay until the pty's other side is gone."""
        self.start()
        self.out.join()

    def close(self) -> None:
        if self.saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
            self.saved = None
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        self.listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_waiter(ch: Channel, replica: int | None, relay: ConsoleRelay | None = None, *,
               detached: bool = False) -> int:
    """Wait for the exec'd process's exit on ch, passing signals on; the
    exit code is the process's (128+N if signal N killed it). detached:
    the waiter `exec --detach` leaves behind, whose pid the caller holds."""
    ch.sock.settimeout(None)  # as long as the process lives
    if detached:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)  # the process has its own copies: EOF must not wait for us
        os.close(devnull)
    if replica is not None and detached:
        try:
            os.setsid()
            import fcntl
            fcntl.ioctl(replica, termios.TIOCSCTTY, 0)  # a resize of the master reaches us
            signal.signal(signal.SIGWINCH, lambda *_: _send(ch, {"op": "resize"}))
        except OSError:
            pass
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for sig in _FORWARD:
        try:
            signal.signal(sig, lambda n, _f: _send(ch, {"op": "signal", "signal": n}))
        except (OSError, ValueError):
            pass
    if relay is not None:
        if replica is not None:
            os.close(replica)
        relay.start()
    try:
        while True:
            msg = ch.receive()
            if msg is None:
                return 255  # the sandbox went away: status unknown
            if "exit" in msg:
                if relay is not None:
                    relay.out.join(2)
                return wait_status_to_exit_code(int(msg["exit"]))
    except (OSError, ControlError):
        return 255
    finally:
        sys.stdout.flush()


def _send(ch: Channel, msg: dict) -> None:
    try:
        ch.send(msg)
    except OSError:
        pass
