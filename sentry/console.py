"""The console: when pyrunsc's own stdin is a terminal, the guest gets a
pty of the sentry's, not the host's terminal.

The host terminal is put in raw mode and bytes are relayed: what the user
types feeds the sentry pty's line discipline, so ^C, ^Z and ^\\ become
signals to the guest's foreground process group, decided inside the
sandbox by the guest's own job control (setpgid, tcsetpgrp), and the
pty's output goes to the host terminal. A host window change (SIGWINCH)
becomes TIOCSWINSZ on the pty, which signals the guest's foreground group.

A thread reads the host terminal, so a guest busy on the CPU still gets
its ^C: the thread hands the bytes to the kernel loop (which alone touches
the pty) through Kernel.poke(), and interrupts the loop's waitpid with a
signal. The host terminal's mode is restored on every way out.
"""
from __future__ import annotations

import collections
import fcntl
import os
import signal
import termios
import threading
import tty

from .kernel import WAKE_SIGNAL
from .pty import PTMX_RDEV, VMIN, VTIME, WINSIZE, PtyReplica



class Console:
    def __init__(self, kernel, registry, in_fd: int = 0, out_fd: int | None = 1, *, host_signals: bool = True):
        """host_signals: handle SIGWINCH, SIGTERM and SIGHUP in this process
        (`pyrunsc do`); an OCI sandbox, serving several consoles, handles
        them itself and calls on_winch."""
        self.k, self.in_fd, self.out_fd = kernel, in_fd, out_fd
        self.host_signals = host_signals
        self.master = registry.open(PTMX_RDEV)
        self.term = self.master.term
        self.term.locked = False
        self.inbox: collections.deque = collections.deque()
        self.winch = False
        self.saved_mode = None
        self.old_handlers = {}
        self.closed = False
        self._resize()

    def replica(self):
        """A new description of the guest's side (for fds 0-2 and /dev/tty)."""
        return PtyReplica(self.term)

    def attach(self, init_tg) -> None:
        """Become the controlling terminal of the first session (init's), put
        the host terminal in raw mode and start relaying. The sandbox pty
        takes the host terminal's control characters (its erase, kill,
        interrupt... keys), as script(1) and ssh do."""
        self.term.make_ctty(init_tg)
        self.saved_mode = termios.tcgetattr(self.in_fd)
        cc = self.saved_mode[6]
        for i in range(min(len(cc), len(self.term.cc))):
            if isinstance(cc[i], bytes) and i not in (VTIME, VMIN):
                self.term.cc[i] = cc[i][0]
        tty.setraw(self.in_fd, termios.TCSANOW)
        if self.host_signals:
            self.old_handlers[WAKE_SIGNAL] = signal.signal(WAKE_SIGNAL, lambda *_: None)
            self.old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, self.on_winch)
            for sig in (signal.SIGTERM, signal.SIGHUP):  # unwind (restoring the terminal), not just die
                self.old_handlers[sig] = signal.signal(sig, self._on_terminate)
        self.k.on_poke.append(self.pump)
        self._watch_output()
        threading.Thread(target=self._read_host, name="pyrunsc-console", daemon=True).start()

    # --- host -> pty (the reader thread, then the loop) ---
    def _read_host(self) -> None:
        while not self.closed:
            try:
                data = os.read(self.in_fd, 4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            self.inbox.append(data)
            self._wake()
            if not data:
                return

    def _wake(self) -> None:
        if not self.closed:
            self.k.poke_from_thread()

    @staticmethod
    def _on_terminate(sig, _frame) -> None:
        raise SystemExit(128 + sig)

    def on_winch(self, *_) -> None:
        self.winch = True
        self.k.poke()

    def pump(self) -> None:
        """In the loop: feed what the user typed, apply a window change."""
        while self.inbox:
            data = self.inbox.popleft()
            if not data:  # the host terminal hung up: so does the guest's
                if self.term.master_open:
                    self.master.release()
                continue
            if not self.term.master_open:
                continue
            self.master.pwrite(data, 0)
        if self.winch:
            self.winch = False
            self._resize()

    def _resize(self) -> None:
        """The sandbox pty takes the host terminal's size (a change signals
        the guest's foreground group)."""
        try:
            size = WINSIZE.unpack(fcntl.ioctl(self.in_fd, termios.TIOCGWINSZ, bytes(8)))
        except OSError:
            return
        self.term.set_winsize(size)

    # --- pty -> host ---
    def _watch_output(self) -> None:
        self.term.to_master.add_waiter(self._flush)

    def _flush(self) -> None:
        out = self.term.output
        if self.out_fd is None:  # no terminal to show it on (stdout and stderr redirected)
            out.clear()
        while out and not self.closed:
            try:
                n = os.write(self.out_fd, out)
            except InterruptedError:
                continue
            except OSError:  # the host terminal is gone: output has nowhere to go
                out.clear()
                break
            del out[:n]
        if not self.closed:
            self._watch_output()

    def close(self) -> None:
        if self.closed:
            return
        self._flush()
        self.closed = True
        if self.pump in self.k.on_poke:
            self.k.on_poke.remove(self.pump)
        if self.saved_mode is not None:
            try:
                termios.tcsetattr(self.in_fd, termios.TCSADRAIN, self.saved_mode)
            except termios.error:
                pass
        for sig, old in self.old_handlers.items():
            signal.signal(sig, old)
