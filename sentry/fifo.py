"""FIFOs (named pipes): while anything has a FIFO inode open, one sentry
pipe stands behind it, shared by every open of it, as Linux's fifo_open.

Opening the read end waits for a writer and the write end for a reader
(O_NONBLOCK: a reader goes on at once, a writer without readers gets
ENXIO; O_RDWR never waits). A waiting open already counts as an end, so
the partner's open sees it; it ends when the partner's open counter moves
(so a writer that came and went still releases it), or with EINTR (or a
restart) on a signal. The vfs opens the end (vfs.ops.fifo_opener =
open_end); the open syscall parks the task (wait_for_partner) and, when
woken, takes the finished open back (resume_open).
"""
from __future__ import annotations

import errno

from vfs.file import O_ACCMODE, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, FileDescription
from vfs.inode import Stat, fserr

from .pipe import PIPE_BUF, POLLERR, POLLHUP, POLLIN, POLLOUT, Pipe, PipeEnd
from .waiter import Block, WaitQueue


class Fifo(Pipe):
    """The pipe of one FIFO inode, keyed by its (dev, ino)."""

    def __init__(self, key: tuple[int, int]):
        super().__init__()
        self.key = key
        self.r_counter = 0  # read opens so far: a waiting writer waits for it to move
        self.w_counter = 0  # write opens so far
        self.opened = WaitQueue()  # an end opened: waiting opens look at the counters


# FIFOs open now (dropped with their last end: the bytes in them go too)
_fifos: dict[tuple[int, int], Fifo] = {}
# task -> (description, partner counter seen): the FIFO open it is parked in
_waiting: dict = {}


class FifoEnd(PipeEnd):
    """An open FIFO: its read end, write end or both (O_RDWR)."""

    def __init__(self, fifo: Fifo, reading: bool, writing: bool):
        self.pipe = fifo
        self.reading = reading
        self.writing = writing
        if reading:
            fifo.readers += 1
            fifo.r_counter += 1
        if writing:
            fifo.writers += 1
            fifo.w_counter += 1
        # POLLHUP needs a writer gone since; a reader opened with none waits
        # to have seen one (Linux keeps w_counter in the file for this)
        self.hup_after = fifo.w_counter if reading and not writing and not fifo.writers else -1
        _fifos[fifo.key] = fifo
        fifo.opened.notify()

    def wait_queues(self):
        p = self.pipe
        return ((p.readable,) if self.reading else ()) + ((p.writable,) if self.writing else ())

    def readiness(self) -> int:
        p, mask = self.pipe, 0
        if self.reading:
            if p.buf:
                mask |= POLLIN
            if not p.writers and p.w_counter != self.hup_after:
                mask |= POLLHUP
        if self.writing:
            if p.capacity - len(p.buf) >= PIPE_BUF:
                mask |= POLLOUT
            if not p.readers:
                mask |= POLLERR
        return mask

    def reopen(self, flags: int) -> "FifoEnd":
        return open_fifo(self.pipe.key, flags)

    def release(self):
        p = self.pipe
        if self.reading:
            p.readers -= 1
            if not p.readers:
                p.writable.notify()
        if self.writing:
            p.writers -= 1
            if not p.writers:
                p.readable.notify()
        if not p.readers and not p.writers and _fifos.get(p.key) is p:
            del _fifos[p.key]


def open_end(st: Stat, flags: int) -> FifoEnd:
    """vfs.ops.fifo_opener: the end of the FIFO inode (stat st) an open
    with these flags gets. It never waits; wait_for_partner does."""
    return open_fifo((st.dev, st.ino), flags)


def open_fifo(key: tuple[int, int], flags: int) -> FifoEnd:
    _reap()
    fifo = _fifos.get(key) or Fifo(key)
    acc = flags & O_ACCMODE
    if acc == O_RDONLY:
        return FifoEnd(fifo, True, False)
    if acc == O_WRONLY:
        if flags & O_NONBLOCK and not fifo.readers:
            raise fserr(errno.ENXIO)
        return FifoEnd(fifo, False, True)
    if acc == O_RDWR:
        return FifoEnd(fifo, True, True)
    raise fserr(errno.EINVAL)


def wait_for_partner(t, desc: FileDescription) -> None:
    """After a blocking open of one end of a FIFO with nobody at the other:
    park t until a partner opens (Block). Anything else returns at once."""
    end = desc.impl
    if not isinstance(end, FifoEnd) or desc.nonblocking or end.reading == end.writing:
        return
    fifo = end.pipe
    if fifo.writers if end.reading else fifo.readers:
        return
    _waiting[t] = (desc, _partner_opens(end))
    raise Block(fifo.opened, on_interrupt=_abandon)


def resume_open(t) -> FileDescription | None:
    """The re-run of an open parked in wait_for_partner: its description
    once a partner came (Block again until then); None if t waits in none."""
    w = _waiting.get(t)
    if w is None:
        return None
    desc, seen = w
    if _partner_opens(desc.impl) == seen:
        raise Block(desc.impl.pipe.opened, on_interrupt=_abandon)
    del _waiting[t]
    return desc


def _partner_opens(end: FifoEnd) -> int:
    return end.pipe.w_counter if end.reading else end.pipe.r_counter


def _abandon(t) -> None:
    """A signal ended the wait: the end t held goes (Linux: EINTR/restart)."""
    w = _waiting.pop(t, None)
    if w is not None:
        w[0].impl.release()


def _reap() -> None:
    """Ends held by opens whose task died while parked (exit_group,
    SIGKILL) go before anyone counts the ends again."""
    for t in [t for t in _waiting if not t.alive]:
        _abandon(t)
