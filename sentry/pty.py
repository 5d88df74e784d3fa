"""Pseudo-terminals: /dev/ptmx and /dev/pts/N, with the sentry's own line
discipline (canonical mode, echo, ^C/^Z/^\\ as signals to the foreground
process group, CR/NL translation) and Linux's hang-up rules: reading the
master after the last replica closes gives EIO; closing the master hangs
up the replica's session.

Job control as Linux's tty layer does it: a terminal is the controlling
terminal of at most one session (TIOCSCTTY, or a session leader opening
it), TIOCSPGRP picks its foreground group within that session, and a
background process that reads it (or writes with TOSTOP, or changes its
settings) is stopped by SIGTTIN/SIGTTOU (sentry.jobcontrol).
"""
from __future__ import annotations

import errno
import os
import struct

from vfs.file import O_ACCMODE, O_NOCTTY, O_WRONLY, WouldBlock
from vfs.inode import FileDescriptionImpl, fserr

from . import jobcontrol
from .caps import CAP_SYS_ADMIN, capable
from .waiter import WaitQueue

PTMX_RDEV = os.makedev(5, 2)
PTS_MAJOR = 136
TERMIOS = struct.Struct("<IIIIB19s")
WINSIZE = struct.Struct("<HHHH")
I32 = struct.Struct("<i")
# c_iflag, c_oflag, c_lflag bits used here
ICRNL, IXON = 0o400, 0o2000
OPOST, ONLCR = 0o1, 0o4
ISIG, ICANON, ECHO, ECHOE, ECHOK, ECHONL, NOFLSH, TOSTOP, ECHOCTL, ECHOKE, IEXTEN = (
    0o1, 0o2, 0o10, 0o20, 0o40, 0o100, 0o200, 0o400, 0o1000, 0o4000, 0o100000)
VINTR, VQUIT, VERASE, VKILL, VEOF, VTIME, VMIN, VSWTC, VSTART, VSTOP, VSUSP = range(11)
SIGINT, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH = 2, 3, 20, 21, 22, 28
POLLIN, POLLOUT, POLLERR, POLLHUP = 1, 4, 8, 16
DEFAULT_CC = bytes([3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22, 0, 0, 0])
MAX_INPUT = 4096
# ioctls
TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TIOCSCTTY, TIOCGPGRP, TIOCSPGRP, TIOCGWINSZ, TIOCSWINSZ = 0x540E, 0x540F, 0x5410, 0x5413, 0x5414
FIONREAD, TIOCNOTTY, TIOCGSID, TCFLSH, TCXONC, TCSBRK = 0x541B, 0x5422, 0x5429, 0x540B, 0x540A, 0x5409
TCSBRKP, TIOCSBRK, TIOCCBRK = 0x5425, 0x5427, 0x5428
TIOCGPTN, TIOCSPTLCK, TIOCGPTPEER = 0x80045430, 0x40045431, 0x5441


class Terminal:
    def __init__(self, index: int, registry: "PtyRegistry"):
        self.index = index
        self.registry = registry
        self.iflag, self.oflag = ICRNL | IXON, OPOST | ONLCR
        self.cflag = 0o277  # B38400 | CS8 | CREAD
        self.lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN
        self.cc = bytearray(DEFAULT_CC)
        self.winsize = (0, 0, 0, 0)  # as Linux: a new pty has no size until TIOCSWINSZ
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

    # --- job control ---
    def make_ctty(self, tg) -> None:
        """Become the controlling terminal of tg's session (tg leads it); its
        group is in the foreground."""
        self.sid, self.fg_pgid = tg.sid, tg.pgid
        tg.ctty = self
        tg.tty_old_pgrp = 0

    def set_winsize(self, size: tuple) -> None:
        """TIOCSWINSZ (or the host terminal's size, for the console): a
        change signals the foreground group."""
        if size != self.winsize:
            self.winsize = size
            if self.fg_pgid:
                self.registry.signal_group(self.fg_pgid, SIGWINCH)

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
                if not lflag & NOFLSH:  # what was typed but not read is dropped
                    self.line.clear()
                    self.cooked.clear()
                    self.eof_marks = 0
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
    """What both ends share: termios, window size and the job-control
    ioctls, which on either end act on the one terminal (Linux's real_tty:
    a master's TIOCSPGRP sets its replica's foreground group)."""
    seekable = False
    is_pty = True
    is_master = False

    def __init__(self, term: Terminal):
        self.term = term

    def _check(self, k, t, sig: int) -> None:
        if k is not None and t is not None:
            jobcontrol.background_check(k, t, self.term, sig)

    def _common_ioctl(self, k, t, request, arg) -> int:
        """The requests both ends answer; ENOTTY for anything else."""
        term, mem = self.term, t.thread
        if request == TCGETS:
            mem.write(arg, term.termios())
        elif request in (TCSETS, TCSETSW, TCSETSF):
            self._check(k, t, SIGTTOU)  # changing the terminal from the background
            term.set_termios(mem.read(arg, TERMIOS.size))
            if request == TCSETSF:
                term.cooked.clear()
                term.line.clear()
        elif request == TIOCGWINSZ:
            mem.write(arg, WINSIZE.pack(*term.winsize))
        elif request == TIOCSWINSZ:
            term.set_winsize(WINSIZE.unpack(mem.read(arg, 8)))
        elif request in (TCFLSH, TCXONC, TCSBRK, TCSBRKP, TIOCSBRK, TIOCCBRK):
            if not self.is_master:
                self._check(k, t, SIGTTOU)
            if request == TCFLSH:
                if arg not in (0, 1, 2):
                    raise fserr(errno.EINVAL)
                if arg in (0, 2):
                    term.cooked.clear()
                    term.line.clear()
                    term.eof_marks = 0
        else:
            return self._job_ioctl(k, t, request, arg)
        return 0

    def _job_ioctl(self, k, t, request, arg) -> int:
        """TIOCSCTTY, TIOCNOTTY, TIOCGPGRP, TIOCSPGRP, TIOCGSID (Linux's
        tty_jobctrl): a replica answers only a process whose controlling
        terminal it is; a master answers anyone about its replica."""
        term, tg = self.term, t.tg
        own = tg.ctty is term
        if request == TIOCSCTTY:
            return self._set_ctty(k, t, arg)
        if request == TIOCNOTTY:
            if self.is_master or not own:
                raise fserr(errno.ENOTTY)
            if k is not None:
                jobcontrol.disassociate_ctty(k, tg, on_exit=False)
            tg.ctty = None
            return 0
        if request == TIOCGPGRP:
            if not self.is_master and not own:
                raise fserr(errno.ENOTTY)
            t.thread.write(arg, I32.pack(term.fg_pgid))
            return 0
        if request == TIOCSPGRP:
            try:
                self._check(k, t, SIGTTOU)
            except OSError as e:
                if e.errno == errno.EIO:  # an orphaned group may not take it
                    raise fserr(errno.ENOTTY) from None
                raise
            pgid = I32.unpack(t.thread.read(arg, 4))[0]
            if pgid < 0:
                raise fserr(errno.EINVAL)
            if not own or term.sid != tg.sid:
                raise fserr(errno.ENOTTY)  # not the caller's controlling terminal
            if k is None or jobcontrol.session_of_pgrp(k, pgid) != tg.sid:
                raise fserr(errno.EPERM)   # a group of another session
            term.fg_pgid = pgid
            return 0
        if request == TIOCGSID:
            if not self.is_master and not own or not term.sid:
                raise fserr(errno.ENOTTY)
            t.thread.write(arg, I32.pack(term.sid))
            return 0
        raise fserr(errno.ENOTTY)  # not a terminal request

    def _set_ctty(self, k, t, arg: int) -> int:
        """TIOCSCTTY: a session leader without a controlling terminal takes
        this one, unless another session has it (arg 1 lets CAP_SYS_ADMIN steal it)."""
        term, tg = self.term, t.tg
        leader = tg.sid == tg.tgid
        if leader and term.sid == tg.sid:
            return 0
        if not leader or tg.ctty is not None:
            raise fserr(errno.EPERM)
        if term.sid:
            if arg != 1 or not capable(tg.creds, CAP_SYS_ADMIN) or k is None:
                raise fserr(errno.EPERM)
            jobcontrol.session_clear_tty(k, term.sid)
        term.make_ctty(tg)
        return 0


class PtyMaster(PtyEnd):
    is_master = True

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
            r |= POLLHUP  # readable only while data is left (then read gives EIO)
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
            t.thread.write(arg, I32.pack(len(term.output)))
            return 0
        return self._common_ioctl(k, t, request, arg)

    def release(self):
        term = self.term
        term.master_open = False
        term.to_replica.notify()
        term.registry.forget(term)
        jobcontrol.hangup(term.registry.kernel, term)


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

    def _caller(self):
        reg = self.term.registry
        return reg.kernel, reg.caller()

    def pread(self, size, offset):
        if not self.term.master_open:
            return b""  # hung up: end of file
        self._check(*self._caller(), SIGTTIN)
        return self.term.read_input(size)

    def pwrite(self, data, offset):
        if not self.term.master_open:
            raise fserr(errno.EIO)
        if self.term.lflag & TOSTOP:
            self._check(*self._caller(), SIGTTOU)
        self.term.emit(data)
        return len(data)

    def readiness(self) -> int:
        term = self.term
        if not term.master_open:
            return POLLIN | POLLOUT | POLLERR | POLLHUP
        return POLLOUT | (POLLIN if term.cooked or term.eof_marks else 0)

    def wait_queues(self):
        return (self.term.to_replica,)

    def tty_ioctl(self, k, t, request, arg) -> int:
        term = self.term
        if not term.master_open:  # hung up: what Linux's hung-up files answer
            raise fserr(errno.ENOTTY if request == TIOCSPGRP else errno.EIO)
        if request == FIONREAD:
            t.thread.write(arg, I32.pack(len(term.cooked)))
            return 0
        return self._common_ioctl(k, t, request, arg)

    def release(self):
        term = self.term
        term.replicas -= 1
        if term.replicas == 0:
            term.to_master.notify()
            k = term.registry.kernel
            if term.sid and k is not None:
                # the last file on it closed: no process holds it as its terminal
                jobcontrol.session_clear_tty(k, term.sid)


class PtyRegistry:
    """The sandbox's ptys, by index; devpts lists them. `kernel` (set once
    it exists) is who job control asks: the calling task, process groups,
    signals to a foreground group (^C, window changes)."""

    def __init__(self):
        self.terminals: dict[int, Terminal] = {}
        self.devpts = None  # the devpts filesystem listing them (it sets this)
        self.kernel = None

    def signal_group(self, pgid: int, sig: int) -> None:
        if self.kernel is not None:
            self.kernel.signal_process_group(pgid, sig)

    def caller(self):
        """The task making the current call (None before the kernel runs)."""
        return self.kernel.current if self.kernel is not None else None

    def numbers(self) -> list[int]:
        return sorted(self.terminals)

    def new_terminal(self) -> PtyMaster:
        n = 0
        while n in self.terminals:
            n += 1
        term = self.terminals[n] = Terminal(n, self)
        return PtyMaster(term)

    def open(self, rdev: int, flags: int = O_NOCTTY) -> FileDescriptionImpl | None:
        """The device opener for ptmx and pts/N (None: not ours). Opening a
        replica without O_NOCTTY makes it the controlling terminal of a
        session leader that has none, if no session has it."""
        if rdev == PTMX_RDEV:
            return self.new_terminal()
        if os.major(rdev) != PTS_MAJOR:
            return None
        term = self.terminals.get(os.minor(rdev))
        if term is None or not term.master_open or term.locked:
            raise fserr(errno.EIO)
        replica = PtyReplica(term)
        t = self.caller()
        if t is not None and not flags & O_NOCTTY and flags & O_ACCMODE != O_WRONLY:
            tg = t.tg
            if tg.sid == tg.tgid and tg.ctty is None and not term.sid:
                term.make_ctty(tg)
        return replica

    def open_controlling(self) -> FileDescriptionImpl:
        """/dev/tty: the calling process's controlling terminal (ENXIO if it
        has none)."""
        t = self.caller()
        term = t.tg.ctty if t is not None else None
        if term is None:
            raise fserr(errno.ENXIO)
        if not term.master_open:
            raise fserr(errno.EIO)
        return PtyReplica(term)

    def forget(self, term: Terminal) -> None:
        if self.terminals.get(term.index) is term:
            del self.terminals[term.index]
