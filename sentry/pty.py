"""Pseudo-terminals: /dev/ptmx and /dev/pts/N, with the sentry's own line
discipline (canonical mode, echo, ^C/^Z/^\\ as signals to the foreground
process group, CR/NL translation) and Linux's hang-up rules: reading the
master after the last replica closes gives EIO.
"""
from __future__ import annotations

import errno
import os
import struct

from vfs.file import WouldBlock
from vfs.inode import FileDescriptionImpl, fserr

from .waiter import WaitQueue

PTMX_RDEV = os.makedev(5, 2)
PTS_MAJOR = 136
TERMIOS = struct.Struct("<IIIIB19s")
WINSIZE = struct.Struct("<HHHH")
# c_iflag, c_oflag, c_lflag bits used here
ICRNL, IXON = 0o400, 0o2000
OPOST, ONLCR = 0o1, 0o4
ISIG, ICANON, ECHO, ECHOE, ECHOK, ECHONL, TOSTOP, ECHOCTL, ECHOKE, IEXTEN = (
    0o1, 0o2, 0o10, 0o20, 0o40, 0o100, 0o400, 0o1000, 0o4000, 0o100000)
VINTR, VQUIT, VERASE, VKILL, VEOF, VTIME, VMIN, VSWTC, VSTART, VSTOP, VSUSP = range(11)
SIGINT, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH = 2, 3, 20, 21, 22, 28
ERESTARTSYS = 512
POLLIN, POLLOUT, POLLERR, POLLHUP = 1, 4, 8, 16
DEFAULT_CC = bytes([3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22, 0, 0, 0])
MAX_INPUT = 4096
# ioctls
TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TIOCSCTTY, TIOCGPGRP, TIOCSPGRP, TIOCGWINSZ, TIOCSWINSZ = 0x540E, 0x540F, 0x5410, 0x5413, 0x5414
FIONREAD, TIOCNOTTY, TIOCGSID, TCFLSH, TCXONC, TCSBRK = 0x541B, 0x5422, 0x5429, 0x540B, 0x540A, 0x5409
TIOCGPTN, TIOCSPTLCK, TIOCGPTPEER = 0x80045430, 0x40045431, 0x5441


class Terminal:
    def __init__(self, index: int, registry: "PtyRegistry"):
        self.index = index
        self.registry = registry
        self.iflag, self.oflag = ICRNL | IXON, OPOST | ONLCR
        self.cflag = 0o277  # B38400 | CS8 | CREAD
        self.lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN
        self.cc = bytearray(DEFAULT_CC)
        self.winsize = (24, 80, 0, 0)
        self.line = bytearray()    # the line being edited (canonical mode)
        self.cooked = bytearray()  # input the replica may read
        self.eof_marks = 0         # pending ^D ends of input in canonical mode
        self.output = bytearray()  # what the master reads
        self.locked = True
        self.master_open = True
        self.replicas = 0          # open replica descriptions
        self.replica_opened = False
        self.fg_pgid = 0
        self.sid = 0
        self.to_master = WaitQueue()
        self.to_replica = WaitQueue()

    # --- termios ---
    def termios(self) -> bytes:
        return TERMIOS.pack(self.iflag, self.oflag, self.cflag, self.lflag, 0, bytes(self.cc))

    def set_termios(self, raw: bytes) -> None:
        self.iflag, self.oflag, self.cflag, lflag, _line, cc = TERMIOS.unpack(raw)
        if self.lflag & ICANON and not lflag & ICANON:  # leaving canonical mode
            self.cooked += self.line
            self.line.clear()
            self.to_replica.notify()
        self.lflag = lflag
        self.cc = bytearray(cc)

    # --- output: replica -> master ---
    def emit(self, data: bytes) -> None:
        if self.oflag & OPOST and self.oflag & ONLCR:
            data = data.replace(b"\n", b"\r\n")
        self.output += data
        self.to_master.notify()

    def _echo(self, ch: int) -> None:
        if ch < 32 and ch not in (9, 10) and self.lflag & ECHOCTL:
            self.emit(bytes([ord("^"), ch + 64]))
        else:
            self.emit(bytes([ch]))

    # --- input: master -> replica ---
    def receive(self, data: bytes) -> None:
        cc, lflag = self.cc, self.lflag
        for ch in data:
            if self.iflag & ICRNL and ch == 13:
                ch = 10
            if lflag & ISIG and ch in (cc[VINTR], cc[VQUIT], cc[VSUSP]) and ch:
                sig = {cc[VINTR]: SIGINT, cc[VQUIT]: SIGQUIT, cc[VSUSP]: SIGTSTP}[ch]
                if lflag & ECHO:
                    self._echo(ch)
                self.line.clear()
                if self.fg_pgid:
                    self.registry.signal_group(self.fg_pgid, sig)
                continue
            if lflag & ICANON:
                if ch == cc[VERASE] and ch:
                    if self.line:
                        self.line.pop()
                        if lflag & ECHO and lflag & ECHOE:
                            self.emit(b"\b \b")
                    continue
                if ch == cc[VKILL] and ch:
                    if lflag & ECHO and lflag & ECHOKE:
                        self.emit(b"\b \b" * len(self.line))
                    self.line.clear()
                    continue
                if ch == cc[VEOF] and ch:
                    self.cooked += self.line
                    self.line.clear()
                    self.eof_marks += 1
                    self.to_replica.notify()
                    continue
                if len(self.line) < MAX_INPUT:
                    self.line.append(ch)
                if lflag & ECHO or (ch == 10 and lflag & ECHONL):
                    self._echo(ch)
                if ch == 10:
                    self.cooked += self.line
                    self.line.clear()
                    self.to_replica.notify()
            else:
                self.cooked.append(ch)
                if lflag & ECHO:
                    self._echo(ch)
                self.to_replica.notify()

    def read_input(self, size: int) -> bytes:
        if self.lflag & ICANON:
            if not self.cooked:
                if self.eof_marks:
                    self.eof_marks -= 1
                    return b""
                raise WouldBlock(self.to_replica, POLLIN)
            nl = self.cooked.find(b"\n")
            end = min(size, nl + 1 if nl >= 0 else len(self.cooked))
        else:
            if not self.cooked:
                raise WouldBlock(self.to_replica, POLLIN)
            end = min(size, len(self.cooked))
        data = bytes(self.cooked[:end])
        del self.cooked[:end]
        return data


class PtyEnd(FileDescriptionImpl):
    seekable = False
    is_pty = True

    def __init__(self, term: Terminal):
        self.term = term

    def _common_ioctl(self, k, t, request, arg) -> int | None:
        term, mem = self.term, t.thread
        if request == TCGETS:
            mem.write(arg, term.termios())
        elif request in (TCSETS, TCSETSW, TCSETSF):
            term.set_termios(mem.read(arg, TERMIOS.size))
            if request == TCSETSF:
                term.cooked.clear()
                term.line.clear()
        elif request == TIOCGWINSZ:
            mem.write(arg, WINSIZE.pack(*term.winsize))
        elif request == TIOCSWINSZ:
            new = WINSIZE.unpack(mem.read(arg, 8))
            if new != term.winsize:
                term.winsize = new
                if term.fg_pgid:
                    term.registry.signal_group(term.fg_pgid, SIGWINCH)
        elif request in (TCFLSH, TCXONC, TCSBRK):
            if request == TCFLSH and arg in (0, 2):
                term.cooked.clear()
                term.line.clear()
        else:
            return None
        return 0


class PtyMaster(PtyEnd):
    def link_name(self) -> bytes:
        return b"/dev/ptmx"

    def pread(self, size, offset):
        term = self.term
        if not term.output:
            if term.replica_opened and term.replicas == 0:
                raise fserr(errno.EIO)  # hung up: the last replica closed
            raise WouldBlock(term.to_master, POLLIN)
        data = bytes(term.output[:size])
        del term.output[:size]
        return data

    def pwrite(self, data, offset):
        self.term.receive(data)
        return len(data)

    def readiness(self) -> int:
        term = self.term
        r = POLLOUT
        if term.output:
            r |= POLLIN
        if term.replica_opened and term.replicas == 0:
            r |= POLLIN | POLLHUP
        return r

    def wait_queues(self):
        return (self.term.to_master,)

    def tty_ioctl(self, k, t, request, arg) -> int:
        term = self.term
        if request == TIOCGPTN:
            t.thread.write(arg, struct.pack("<I", term.index))
            return 0
        if request == TIOCSPTLCK:
            term.locked = bool(struct.unpack("<i", t.thread.read(arg, 4))[0])
            return 0
        if request == FIONREAD:
            t.thread.write(arg, struct.pack("<i", len(term.output)))
            return 0
        if request == TIOCGPGRP:
            t.thread.write(arg, struct.pack("<i", term.fg_pgid))
            return 0
        r = self._common_ioctl(k, t, request, arg)
        if r is None:
            raise fserr(errno.ENOTTY)
        return r

    def release(self):
        term = self.term
        term.master_open = False
        term.to_replica.notify()
        term.registry.forget(term)


class PtyReplica(PtyEnd):
    def __init__(self, term: Terminal):
        super().__init__(term)
        term.replicas += 1
        term.replica_opened = True

    def link_name(self) -> bytes:
        return b"/dev/pts/%d" % self.term.index

    def stat(self):
        devpts = self.term.registry.devpts
        if devpts is None:
            raise fserr(errno.EBADF)
        return devpts.node_stat(self.term.index)

    def pread(self, size, offset):
        if not self.term.master_open:
            return b""  # hung up: end of file
        self._background_check(SIGTTIN)
        return self.term.read_input(size)

    def pwrite(self, data, offset):
        if not self.term.master_open:
            raise fserr(errno.EIO)
        if self.term.lflag & TOSTOP:
            self._background_check(SIGTTOU)
        self.term.emit(data)
        return len(data)

    def _background_check(self, sig: int) -> None:
        """Job control: a process of a background group of the terminal's
        session that reads it (or writes with TOSTOP, or changes its
        settings) is stopped by SIGTTIN/SIGTTOU and the call restarts
        once it is continued. If the signal is ignored or blocked, a
        write goes ahead and a read fails with EIO; an orphaned group
        gets EIO."""
        term, reg = self.term, self.term.registry
        t = reg.current() if reg.current else None
        if t is None or not term.sid or t.tg.sid != term.sid or not term.fg_pgid or t.tg.pgid == term.fg_pgid:
            return
        act = t.tg.handlers.actions[sig]
        if act.handler == 1 or t.sigmask & (1 << (sig - 1)):  # SIG_IGN or blocked
            if sig == SIGTTIN:
                raise fserr(errno.EIO)
            return
        if reg.orphaned(t.tg.pgid):
            raise fserr(errno.EIO)
        reg.signal_group(t.tg.pgid, sig)
        raise fserr(ERESTARTSYS)  # restarted after SIGCONT, or EINTR if a handler ran

    def readiness(self) -> int:
        term = self.term
        if not term.master_open:
            return POLLIN | POLLHUP
        return POLLOUT | (POLLIN if term.cooked or term.eof_marks else 0)

    def wait_queues(self):
        return (self.term.to_replica,)

    def tty_ioctl(self, k, t, request, arg) -> int:
        term = self.term
        if request in (TCSETS, TCSETSW, TCSETSF, TIOCSPGRP, TCFLSH, TCXONC):
            self._background_check(SIGTTOU)  # changing the terminal from the background
        if request == TIOCSCTTY:
            if term.sid and term.sid != t.tg.sid:
                raise fserr(errno.EPERM)  # another session's controlling terminal
            term.sid = t.tg.sid
            term.fg_pgid = t.tg.pgid
            return 0
        if request == TIOCNOTTY:
            return 0
        if request == TIOCGPGRP:
            if term.sid and term.sid != t.tg.sid:
                raise fserr(errno.ENOTTY)
            t.thread.write(arg, struct.pack("<i", term.fg_pgid or t.tg.pgid))
            return 0
        if request == TIOCSPGRP:
            pgid = struct.unpack("<i", t.thread.read(arg, 4))[0]
            if term.sid and term.sid != t.tg.sid:
                raise fserr(errno.ENOTTY)  # not the caller's controlling terminal
            if pgid < 0:
                raise fserr(errno.EINVAL)
            sid = self.term.registry.pgrp_session(pgid)
            if sid is None:
                raise fserr(errno.ESRCH)
            if sid != t.tg.sid:
                raise fserr(errno.EPERM)  # a group of another session
            term.fg_pgid = pgid
            return 0
        if request == TIOCGSID:
            if not term.sid:
                raise fserr(errno.ENOTTY)
            t.thread.write(arg, struct.pack("<i", term.sid))
            return 0
        if request == FIONREAD:
            t.thread.write(arg, struct.pack("<i", len(term.cooked)))
            return 0
        r = self._common_ioctl(k, t, request, arg)
        if r is None:
            raise fserr(errno.ENOTTY)
        return r

    def release(self):
        term = self.term
        term.replicas -= 1
        if term.replicas == 0:
            term.to_master.notify()


class PtyRegistry:
    """The sandbox's ptys, by index; devpts lists them. signal_group(pgid,
    sig) is the kernel's (for ^C and window changes)."""

    def __init__(self, signal_group=None):
        self.terminals: dict[int, Terminal] = {}
        self.signal_group = signal_group or (lambda pgid, sig: None)
        self.devpts = None  # the devpts filesystem listing them (it sets this)
        self.current = None   # () -> the task making the call (job-control checks)
        self.orphaned = lambda pgid: False  # the kernel's orphaned-group test
        self.pgrp_session = lambda pgid: None  # the session of a process group, if any

    def numbers(self) -> list[int]:
        return sorted(self.terminals)

    def open(self, rdev: int) -> FileDescriptionImpl | None:
        """The device opener for ptmx and pts/N (None: not ours)."""
        if rdev == PTMX_RDEV:
            n = 0
            while n in self.terminals:
                n += 1
            term = self.terminals[n] = Terminal(n, self)
            return PtyMaster(term)
        if os.major(rdev) == PTS_MAJOR:
            term = self.terminals.get(os.minor(rdev))
            if term is None or not term.master_open:
                raise fserr(errno.EIO)
            if term.locked:
                raise fserr(errno.EIO)
            return PtyReplica(term)
        return None

    def forget(self, term: Terminal) -> None:
        if self.terminals.get(term.index) is term:
            del self.terminals[term.index]
