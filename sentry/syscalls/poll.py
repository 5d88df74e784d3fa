"""poll, ppoll, select, pselect6: readiness of many descriptions at once.

Each description reports readiness() (POLL* bits); to wait, a task parks
on the wait queues its descriptions name (wait_queues()) and on the host
fds behind host-backed ones, and re-checks everything when woken.
"""
from __future__ import annotations

import errno
import struct
import time

from vfs.inode import fserr

from ..signals import with_call_mask
from ..waiter import Block
from .table import syscall
from .util import read_timespec_ns, s32

POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 1, 2, 4, 8, 16, 32
POLLRDNORM, POLLRDBAND, POLLWRNORM, POLLWRBAND = 0x40, 0x80, 0x100, 0x200
ALWAYS = POLLERR | POLLHUP | POLLNVAL
POLLFD = struct.Struct("<ihh")


def _readiness(desc) -> int:
    r = desc.impl.readiness()
    if r & POLLIN:
        r |= POLLRDNORM
    if r & POLLOUT:
        r |= POLLWRNORM
    return r


def _block_for(descs, deadline_ns):
    """descs: (description, the poll events the caller waits for). A host
    fd is polled for those alone: polling a writable fd for POLLOUT when
    the caller wants input would wake the loop at once, forever."""
    queues, host = [], []
    for desc, events in descs:
        qs = getattr(desc.impl, "wait_queues", None)
        if qs is not None:
            queues.extend(qs())
        hfd = getattr(desc.impl, "host_fd", None)
        if hfd is not None:
            want = events & (POLLIN | POLLOUT | POLLPRI)
            if events & (POLLRDNORM | POLLRDBAND):
                want |= POLLIN
            if events & (POLLWRNORM | POLLWRBAND):
                want |= POLLOUT
            host.append((hfd, want))
        more = getattr(desc.impl, "host_fds", None)  # an epoll watching host fds
        if more is not None:
            host.extend(more())
    # a handled signal ends a wait for readiness with EINTR, never a restart
    return Block(*queues, host_fds=host, deadline_ns=deadline_ns, interrupt_result=-errno.EINTR)


def _do_poll(k, t, fds_addr, nfds, deadline_ns):
    if nfds > t.tg.fdtable.limit:
        raise fserr(errno.EINVAL)
    raw = bytearray(t.thread.read(fds_addr, nfds * 8)) if nfds else bytearray()
    table = t.tg.fdtable
    count, descs = 0, []
    for i in range(nfds):
        fd, events, _ = POLLFD.unpack_from(raw, i * 8)
        revents = 0
        if fd >= 0:
            desc = table.fds.get(fd)
            if desc is None:
                revents = POLLNVAL
            else:
                descs.append((desc[0], events))
                revents = _readiness(desc[0]) & (events | ALWAYS)
        if revents:
            count += 1
        struct.pack_into("<h", raw, i * 8 + 6, revents)
    if count or (deadline_ns is not None and time.monotonic_ns() >= deadline_ns):
        if nfds:
            t.thread.write(fds_addr, bytes(raw))
        return count
    raise _block_for(descs, deadline_ns)


def _timeout_deadline(t, ns):
    """The deadline of this call: fixed the first time it runs, so a re-run
    after a wake-up does not extend it."""
    return None if ns is None else t.call_start() + ns


@syscall("poll")
def sys_poll(k, t, fds, nfds, timeout, *_):
    ms = s32(timeout)
    return _do_poll(k, t, fds, nfds, _timeout_deadline(t, None if ms < 0 else ms * 1_000_000))


@syscall("ppoll")
def sys_ppoll(k, t, fds, nfds, tsp, sigmask, sigsetsize, *_):
    ns = None
    if tsp:
        ns = read_timespec_ns(t, tsp)
    deadline = _timeout_deadline(t, ns)
    return _updating_time_left(t, tsp, deadline, 1, lambda: with_call_mask(
        k, t, sigmask, sigsetsize, lambda: _do_poll(k, t, fds, nfds, deadline)))


def _do_select(k, t, nfds, rset, wset, eset, deadline_ns):
    nfds = s32(nfds)
    if nfds < 0 or nfds > t.tg.fdtable.limit:
        raise fserr(errno.EINVAL)
    nbytes = ((nfds + 63) // 64) * 8
    sets = [int.from_bytes(t.thread.read(a, nbytes), "little") if a and nbytes else 0 for a in (rset, wset, eset)]
    table = t.tg.fdtable
    out = [0, 0, 0]
    descs = []
    for fd in range(nfds):
        bit = 1 << fd
        if not (sets[0] | sets[1] | sets[2]) & bit:
            continue
        entry = table.fds.get(fd)
        if entry is None:
            raise fserr(errno.EBADF)
        descs.append((entry[0], (POLLIN if sets[0] & bit else 0) | (POLLOUT if sets[1] & bit else 0)
                      | (POLLPRI if sets[2] & bit else 0)))
        r = _readiness(entry[0])
        if sets[0] & bit and r & (POLLIN | POLLHUP | POLLERR):
            out[0] |= bit
        if sets[1] & bit and r & (POLLOUT | POLLERR):
            out[1] |= bit
        if sets[2] & bit and r & POLLPRI:
            out[2] |= bit
    count = sum(bin(x).count("1") for x in out)
    if count or (deadline_ns is not None and time.monotonic_ns() >= deadline_ns):
        for addr, val in zip((rset, wset, eset), out):
            if addr and nbytes:
                t.thread.write(addr, val.to_bytes(nbytes, "little"))
        return count
    raise _block_for(descs, deadline_ns)


def _time_left(t, addr, deadline_ns, unit=1000) -> None:
    """Linux's select, pselect6 and ppoll write the time left back (a
    timeval, unit 1000, or a timespec, unit 1), on success, timeout and
    EINTR alike; one they cannot write is no error."""
    left = max(0, deadline_ns - time.monotonic_ns())
    try:
        t.thread.write(addr, struct.pack("<qq", left // 10**9, left % 10**9 // unit))
    except OSError:
        pass


def _updating_time_left(t, addr, deadline_ns, unit, run):
    if not addr:
        return run()
    try:
        r = run()
    except Block as b:
        b.on_interrupt = lambda task: _time_left(task, addr, deadline_ns, unit)
        raise
    _time_left(t, addr, deadline_ns, unit)
    return r


@syscall("select")
def sys_select(k, t, nfds, rset, wset, eset, tvp, *_):
    ns = None
    if tvp:
        sec, usec = struct.unpack("<qq", t.thread.read(tvp, 16))
        if sec < 0 or not 0 <= usec < 10**6:
            raise fserr(errno.EINVAL)
        ns = sec * 10**9 + usec * 1000
    deadline = _timeout_deadline(t, ns)
    return _updating_time_left(t, tvp, deadline, 1000,
                               lambda: _do_select(k, t, nfds, rset, wset, eset, deadline))


@syscall("pselect6")
def sys_pselect6(k, t, nfds, rset, wset, eset, tsp, sig_arg, *_):
    ns = None
    if tsp:
        ns = read_timespec_ns(t, tsp)
    mask_addr = size = 0
    if sig_arg:  # struct { const sigset_t *ss; size_t ss_len; }
        mask_addr, size = struct.unpack("<QQ", t.thread.read(sig_arg, 16))
    deadline = _timeout_deadline(t, ns)
    return _updating_time_left(t, tsp, deadline, 1, lambda: with_call_mask(
        k, t, mask_addr, size, lambda: _do_select(k, t, nfds, rset, wset, eset, deadline)))
