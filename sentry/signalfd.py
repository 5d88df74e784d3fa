"""signalfd: pending signals read as struct signalfd_siginfo records.

A signalfd has no signals of its own: like Linux, reads and readiness
look at the pending signals of whichever task reads or polls it (its own,
then its process's), restricted to the fd's mask. Queuing a signal
notifies the process's tg.signalfd_queue, which waiting readers and
pollers park on.
"""
from __future__ import annotations

import errno
import itertools
import struct

from vfs.file import WouldBlock
from vfs.inode import FileDescriptionImpl, Stat, fserr

from . import signals
from .waiter import WaitQueue

POLLIN = 1
RECORD = 128
SIGINFO_KILL = struct.Struct("<iii4xII")          # signo errno code | pid uid
SIGNALFD_SIGINFO = struct.Struct("<IiiIIiIIIIiiQQQQHHiQI28x")
SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV, SIGCHLD, SIGPOLL, SIGSYS = 4, 5, 7, 8, 11, 17, 29, 31
SI_TIMER, SI_SIGIO, SI_KERNEL = -2, -5, 0x80
# Signal-specific si_code ranges (positive codes) and their siginfo layouts
FAULT, CHLD, POLL, SYS, TIMER, RT, KILL = range(7)
SPECIFIC = {SIGILL: (11, FAULT), SIGTRAP: (6, FAULT), SIGBUS: (5, FAULT), SIGFPE: (15, FAULT),
            SIGSEGV: (10, FAULT), SIGCHLD: (6, CHLD), SIGPOLL: (6, POLL), SIGSYS: (2, SYS)}
_ino = itertools.count(1)


def _layout(signo: int, code: int) -> int:
    """Which union member of siginfo is filled, as Linux decides it."""
    if 0 < code < SI_KERNEL:
        limit, layout = SPECIFIC.get(signo, (0, KILL))
        if code <= limit:
            return layout
        return POLL if code <= 6 else KILL
    if code == SI_TIMER:
        return TIMER
    if code == SI_SIGIO:
        return POLL
    return RT if code < 0 else KILL


def to_signalfd_siginfo(info: tuple) -> bytes:
    """A 128-byte siginfo (as signals.encode_siginfo makes it) recast as
    the fields of struct signalfd_siginfo."""
    raw = signals.encode_siginfo(info)
    signo, err, code, pid, uid = SIGINFO_KILL.unpack_from(raw)
    f = dict(pid=0, uid=0, fd=0, tid=0, band=0, overrun=0, status=0, int_=0, ptr=0,
             utime=0, stime=0, addr=0, addr_lsb=0, syscall=0, call_addr=0, arch=0)
    layout = _layout(signo, code)
    if layout in (KILL, RT, CHLD):
        f["pid"], f["uid"] = pid, uid
    if layout in (RT, TIMER):
        f["ptr"] = struct.unpack_from("<Q", raw, 24)[0]
        f["int_"] = struct.unpack_from("<i", raw, 24)[0]
    if layout == TIMER:
        f["tid"], f["overrun"] = struct.unpack_from("<II", raw, 16)
    elif layout == POLL:
        f["band"] = struct.unpack_from("<q", raw, 16)[0] & 0xFFFFFFFF
        f["fd"] = struct.unpack_from("<i", raw, 24)[0]
    elif layout == FAULT:
        f["addr"] = struct.unpack_from("<Q", raw, 16)[0]
        f["addr_lsb"] = struct.unpack_from("<H", raw, 24)[0]
    elif layout == CHLD:
        f["status"], f["utime"], f["stime"] = struct.unpack_from("<i4xqq", raw, 24)
        f["utime"] &= 0xFFFFFFFFFFFFFFFF
        f["stime"] &= 0xFFFFFFFFFFFFFFFF
    elif layout == SYS:
        f["call_addr"], f["syscall"], f["arch"] = struct.unpack_from("<QiI", raw, 16)
    return SIGNALFD_SIGINFO.pack(signo & 0xFFFFFFFF, err, code, f["pid"], f["uid"], f["fd"], f["tid"],
                                 f["band"], f["overrun"], 0, f["status"], f["int_"], f["ptr"],
                                 f["utime"], f["stime"], f["addr"], f["addr_lsb"], 0, f["syscall"],
                                 f["call_addr"], f["arch"])


def signal_queue(tg) -> WaitQueue:
    """The wait queue signal senders notify for tg (made on first use)."""
    if tg.signalfd_queue is None:
        tg.signalfd_queue = WaitQueue()
    return tg.signalfd_queue


class SignalFD(FileDescriptionImpl):
    seekable = False

    def __init__(self, k, mask: int):
        self.k = k
        self.mask = mask & ~signals.UNBLOCKABLE
        self.ino = next(_ino)

    def link_name(self) -> bytes:
        return b"anon_inode:[signalfd]"

    def stat(self) -> Stat:
        return Stat(mode=0o600, ino=self.ino)  # an anonymous inode: no file type

    def set_mask(self, mask: int) -> None:
        self.mask = mask & ~signals.UNBLOCKABLE
        t = self.k.current
        if t is not None:  # pollers of the caller's process look again
            signal_queue(t.tg).notify()

    def pread(self, size, offset):
        if size < RECORD:
            raise fserr(errno.EINVAL)
        k = self.k
        t = k.current
        out = []
        while len(out) < size // RECORD:
            got = signals.dequeue(t, self.mask)
            if got is None:
                break
            out.append(to_signalfd_siginfo(got[1]))
        if not out:
            raise WouldBlock(signal_queue(t.tg), POLLIN)
        return b"".join(out)

    def readiness(self) -> int:
        t = self.k.current
        if t is None:
            return 0
        return POLLIN if (t.pending_signals | t.tg.pending_signals) & self.mask else 0

    def wait_queues(self):
        t = self.k.current
        return (signal_queue(t.tg),) if t is not None else ()
