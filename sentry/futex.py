"""Futexes: the sentry's wait queues keyed by (address space, address).

Waiters park in the kernel; FUTEX_WAKE ends their futex call with 0, a
timeout with ETIMEDOUT, a signal with EINTR. Shared futexes in MAP_SHARED
memory are keyed by the memory itself, so processes sharing it meet.
"""
from __future__ import annotations

import errno
import struct
import time

from platforms.ptrace.platform import GuestGone
from vfs.inode import fserr

from .syscalls.util import read_timespec_ns
from .waiter import Block, WaitQueue

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE = 0, 1, 2, 3, 4
FUTEX_WAKE_OP, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 5, 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
BITSET_ANY = 0xFFFFFFFF
U32 = struct.Struct("<I")


class Waiter:
    __slots__ = ("task", "bitset", "queue")

    def __init__(self, task, bitset):
        self.task, self.bitset, self.queue = task, bitset, WaitQueue()


def _table(k) -> dict:
    if not hasattr(k, "futexes"):
        k.futexes = {}
    return k.futexes


def _key(t, addr: int, private: bool = False):
    """Private futexes, and shared ones in private memory, meet within one
    address space; shared ones in MAP_SHARED memory meet across processes
    by what the memory is (the mapping's dev, ino and offset), as Linux
    keys them by inode and page."""
    if not private:
        lab = t.tg.mm.label_at(addr)
        if lab is not None and lab.shared:
            return ("shared", lab.dev, lab.ino, lab.offset + (addr - lab.start))
        return ("mm-shared", id(t.tg.mm), addr)  # never meets a private waiter, as in Linux
    return (id(t.tg.mm), addr)


def wake(k, t, addr: int, count: int, bitset: int = BITSET_ANY, private: bool = False) -> int:
    table = _table(k)
    key = _key(t, addr, private)
    waiters = table.get(key, [])
    woken = 0
    keep = []
    for w in waiters:
        if not w.queue:  # its task left (signal, timeout, death)
            continue
        if woken < count and w.bitset & bitset:
            w.queue.notify()
            woken += 1
        else:
            keep.append(w)
    if keep:
        table[key] = keep
    else:
        table.pop(key, None)
    return woken


def futex(k, t, uaddr, op, val, timeout, uaddr2, val3):
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    private = bool(op & FUTEX_PRIVATE_FLAG)
    val &= 0xFFFFFFFF
    if uaddr & 3:
        raise fserr(errno.EINVAL)
    if op & FUTEX_CLOCK_REALTIME and cmd not in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        raise fserr(errno.ENOSYS)
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        bitset = BITSET_ANY if cmd == FUTEX_WAIT else val3 & 0xFFFFFFFF
        if not bitset:
            raise fserr(errno.EINVAL)
        current = U32.unpack(t.thread.read(uaddr, 4))[0]
        if current != val:
            raise fserr(errno.EAGAIN)
        deadline = None
        if timeout:
            ns = read_timespec_ns(t, timeout)
            if cmd == FUTEX_WAIT:
                deadline = time.monotonic_ns() + ns
            elif op & FUTEX_CLOCK_REALTIME:
                deadline = time.monotonic_ns() + (ns - time.time_ns())
            else:
                deadline = ns
        w = Waiter(t, bitset)
        _table(k).setdefault(_key(t, uaddr, private), []).append(w)
        # With a timeout a handled signal ends the wait with EINTR even under
        # SA_RESTART (Linux's restart block); without one it may restart.
        raise Block(w.queue, deadline_ns=deadline, on_timeout=-errno.ETIMEDOUT, result=0,
                    interrupt_result=-errno.EINTR if deadline is not None else None)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        bitset = BITSET_ANY if cmd == FUTEX_WAKE else val3 & 0xFFFFFFFF
        if not bitset:
            raise fserr(errno.EINVAL)
        return wake(k, t, uaddr, val, bitset, private)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        limit = timeout & 0xFFFFFFFF  # val2 travels in the timeout slot
        if val >= 1 << 31 or limit >= 1 << 31:  # negative ints
            raise fserr(errno.EINVAL)
        if cmd == FUTEX_CMP_REQUEUE and U32.unpack(t.thread.read(uaddr, 4))[0] != val3 & 0xFFFFFFFF:
            raise fserr(errno.EAGAIN)
        n = wake(k, t, uaddr, val, private=private)
        table = _table(k)
        src, dst = _key(t, uaddr, private), _key(t, uaddr2, private)
        moved, rest = [], []
        for w in table.get(src, []):
            (moved if len(moved) < limit and w.queue else rest).append(w)
        if rest:
            table[src] = rest
        else:
            table.pop(src, None)
        if moved:
            table.setdefault(dst, []).extend(moved)
        return n + len(moved)  # both report woken plus requeued
    if cmd == FUTEX_WAKE_OP:
        return _wake_op(k, t, uaddr, val, timeout & 0xFFFFFFFF, uaddr2, val3, private)
    raise fserr(errno.ENOSYS)


def _wake_op(k, t, uaddr, nr_wake, nr_wake2, uaddr2, encoded, private):
    op, cmp = (encoded >> 28) & 0xF, (encoded >> 24) & 0xF
    # both arguments are signed 12-bit, the word a signed int (as Linux)
    oparg, cmparg = _s12((encoded >> 12) & 0xFFF), _s12(encoded & 0xFFF)
    if op & 8:
        oparg = 1 << (oparg & 31)
        op &= 7
    old = U32.unpack(t.thread.read(uaddr2, 4))[0]
    new = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(op)
    if new is None:
        raise fserr(errno.ENOSYS)
    t.thread.write(uaddr2, U32.pack(new & 0xFFFFFFFF))
    old = old - (1 << 32) if old >= 1 << 31 else old
    ok = {0: old == cmparg, 1: old != cmparg, 2: old < cmparg, 3: old <= cmparg,
          4: old > cmparg, 5: old >= cmparg}.get(cmp)
    if ok is None:  # the word is already changed, nobody is woken
        raise fserr(errno.ENOSYS)
    n = wake(k, t, uaddr, nr_wake, private=private)
    if ok:
        n += wake(k, t, uaddr2, nr_wake2, private=private)
    return n


def _s12(v: int) -> int:
    return v - 0x1000 if v & 0x800 else v


def clear_child_tid(k, t) -> None:
    """At thread exit: *clear_child_tid = 0 and wake one waiter (pthread_join)."""
    addr = t.clear_child_tid
    if not addr:
        return
    try:
        t.thread.write(addr, U32.pack(0))
    except OSError:
        return
    wake(k, t, addr, 1)


FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x80000000, 0x40000000, 0x3FFFFFFF
ROBUST_LIST_LIMIT = 2048  # as Linux: a looping list cannot hold the kernel


def exit_robust_list(k, t) -> None:
    """At thread death: every robust mutex it still holds is marked
    OWNER_DIED and one waiter is woken, so the next locker gets EOWNERDEAD.
    The list lives in guest memory; a corrupt one is abandoned quietly."""
    head, _ = t.robust_list
    if not head:
        return
    t.robust_list = (0, 0)
    try:
        entry, offset, pending = struct.unpack("<QqQ", t.thread.read(head, 24))
        seen = 0
        while entry != head and seen < ROBUST_LIST_LIMIT:
            nxt = struct.unpack("<Q", t.thread.read(entry & ~1, 8))[0]
            if entry != pending:
                _owner_died(k, t, (entry & ~1) + offset)
            entry, seen = nxt, seen + 1
        if pending:
            _owner_died(k, t, (pending & ~1) + offset)
    except (OSError, GuestGone):
        return


def _owner_died(k, t, addr: int) -> None:
    if addr & 3:
        return
    word = U32.unpack(t.thread.read(addr, 4))[0]
    if word & FUTEX_TID_MASK != t.tid:
        return
    t.thread.write(addr, U32.pack((word & FUTEX_WAITERS) | FUTEX_OWNER_DIED))
    if word & FUTEX_WAITERS:
        wake(k, t, addr, 1)
