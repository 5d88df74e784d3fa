"""Advisory file locks: POSIX record locks (classic and OFD) and flock(2).

Locks belong to a file, named by its (st_dev, st_ino), so every open of
it meets the same locks. Owners follow Linux:

* a classic record lock (F_SETLK) belongs to the fd table it was set
  through (Linux's files_struct: one per process here). Closing any fd of
  that table on the file drops them all; so does exit. fork does not
  inherit them;
* an OFD record lock (F_OFD_SETLK) and a flock lock belong to the open
  file description and go with its last reference.

Classic and OFD locks share one byte-range list and conflict with each
other; flock locks are a separate whole-file list, independent of them.

A request that must wait raises vfs.file.WouldBlock naming a
BlockedRequest: the sentry parks the task on it and re-runs the call when
the file's locks change. The request is registered (and seen by deadlock
detection and /proc/locks) exactly while the sentry waits on it.
"""
from __future__ import annotations

import errno
import itertools
import os

from .file import WouldBlock
from .inode import fserr

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
OFFSET_MAX = (1 << 63) - 1
MAX_DEADLOCK_STEPS = 10  # Linux's MAX_DEADLK_ITERATIONS

_seq = itertools.count(1)


class Lock:
    """A held lock or a request. end is inclusive (OFFSET_MAX: to EOF);
    flock locks span the whole file."""
    __slots__ = ("owner", "pid", "type", "start", "end", "ofd", "flock", "seq")

    def __init__(self, owner, pid: int, type_: int, start: int = 0, end: int = OFFSET_MAX,
                 ofd: bool = False, flock: bool = False, seq: int | None = None):
        self.owner, self.pid, self.type = owner, pid, type_
        self.start, self.end = start, end
        self.ofd, self.flock = ofd, flock
        self.seq = next(_seq) if seq is None else seq

    def overlaps(self, other: "Lock") -> bool:
        return self.start <= other.end and other.start <= self.end

    def conflicts(self, held: "Lock") -> bool:
        """Would held stop this request? Another owner's lock over part
        of the range, one of the two a write lock."""
        return (held.owner is not self.owner and self.overlaps(held)
                and (held.type == F_WRLCK or self.type == F_WRLCK))

    def piece(self, start: int, end: int, new_seq: bool = False) -> "Lock":
        return Lock(self.owner, self.pid, self.type, start, end, self.ofd, self.flock,
                    None if new_seq else self.seq)


class BlockedRequest:
    """A request waiting for `blocker` to go. The sentry's wait registers
    on it (add_waiter) and unregisters when the wait ends, however it
    ends: a change of the file's locks, a signal, the task's exit."""
    __slots__ = ("file", "table", "request", "blocker", "callback")

    def __init__(self, file: "FileLocks", table: "LockTable", request: Lock, blocker: Lock):
        self.file, self.table = file, table
        self.request, self.blocker = request, blocker
        self.callback = None

    def add_waiter(self, callback) -> None:
        self.callback = callback
        self.file.blocked.append(self)

    def remove_waiter(self, callback) -> None:
        if self in self.file.blocked:
            self.file.blocked.remove(self)
        self.table._drop_if_unused(self.file)


class FileLocks:
    """One file's locks, and the requests waiting on them."""
    __slots__ = ("key", "dev", "ino", "posix", "flocks", "blocked")

    def __init__(self, key, dev: int, ino: int):
        self.key, self.dev, self.ino = key, dev, ino
        # Linux's order: each owner's locks together, sorted by start;
        # a new owner's go at the end (F_GETLK reports the first conflict).
        self.posix: list[Lock] = []
        self.flocks: list[Lock] = []
        self.blocked: list[BlockedRequest] = []

    def wake_all(self) -> None:
        """The locks changed: every waiter tries again."""
        waiting, self.blocked = self.blocked, []
        for b in waiting:
            b.callback()

    def held_by(self, owner) -> bool:
        return any(l.owner is owner for l in self.posix) or any(l.owner is owner for l in self.flocks)

    def first_conflict(self, req: Lock) -> Lock | None:
        for held in self.posix:
            if req.conflicts(held):
                return held
        return None


def byte_range(whence: int, start: int, length: int, offset: int, size: int) -> tuple[int, int]:
    """struct flock's (l_whence, l_start, l_len) as absolute (start, end),
    with Linux's checks. offset: the description's; size: the file's."""
    if whence == SEEK_SET:
        base = 0
    elif whence == SEEK_CUR:
        base = offset
    elif whence == SEEK_END:
        base = size
    else:
        raise fserr(errno.EINVAL)
    if start > OFFSET_MAX - base:
        raise fserr(errno.EOVERFLOW)
    first = base + start
    if first < 0:
        raise fserr(errno.EINVAL)
    if length > 0:
        if length - 1 > OFFSET_MAX - first:
            raise fserr(errno.EOVERFLOW)
        return first, first + length - 1
    if length < 0:  # POSIX-2001: the bytes before start
        if first + length < 0:
            raise fserr(errno.EINVAL)
        return first + length, first - 1
    return first, OFFSET_MAX


def _identity(desc) -> tuple:
    """(key, dev, ino) of the file a description is open on."""
    if desc.inode is not None:
        st = desc.inode.stat()
        return (st.dev, st.ino), st.dev, st.ino
    stat = getattr(desc.impl, "stat", None)  # pipes, sockets: no shared inode here
    try:
        st = stat() if stat is not None else None
    except OSError:
        st = None
    return ("impl", desc.impl), (st.dev if st else 0), (st.ino if st else 0)


class LockTable:
    """Every file's locks, and who holds locks where."""

    def __init__(self):
        self.files: dict[object, FileLocks] = {}
        # owner (fd table or description) -> files it holds locks on: lets
        # close() skip the lookup when the owner holds none.
        self.holdings: dict[object, set[FileLocks]] = {}

    # --- bookkeeping ---
    def _file(self, desc, create: bool) -> FileLocks | None:
        key, dev, ino = _identity(desc)
        f = self.files.get(key)
        if f is None and create:
            f = self.files[key] = FileLocks(key, dev, ino)
        return f

    def _drop_if_unused(self, f: FileLocks) -> None:
        if not (f.posix or f.flocks or f.blocked) and self.files.get(f.key) is f:
            del self.files[f.key]

    def _note_holder(self, f: FileLocks, owner) -> None:
        if f.held_by(owner):
            self.holdings.setdefault(owner, set()).add(f)
        else:
            files = self.holdings.get(owner)
            if files is not None:
                files.discard(f)
                if not files:
                    del self.holdings[owner]
        self._drop_if_unused(f)

    # --- record locks ---
    def test_posix(self, desc, req: Lock) -> Lock | None:
        """F_GETLK: the first lock that would stop req. An F_UNLCK request
        (F_OFD_GETLK only) finds the owner's own lock over the range."""
        f = self._file(desc, create=False)
        if f is None:
            return None
        if req.type == F_UNLCK:
            return next((l for l in f.posix if l.owner is req.owner and l.overlaps(req)), None)
        return f.first_conflict(req)

    def set_posix(self, desc, req: Lock, wait: bool) -> None:
        """F_SETLK/F_SETLKW (and the OFD forms): set or clear req's range
        for its owner, splitting and merging the owner's locks as Linux
        does. A conflict gives EAGAIN, EDEADLK, or a wait (WouldBlock)."""
        f = self._file(desc, create=req.type != F_UNLCK)
        if f is None:
            return
        if req.type != F_UNLCK:
            blocker = f.first_conflict(req)
            if blocker is not None:
                if not wait:
                    raise fserr(errno.EAGAIN)
                if not req.ofd and self._would_deadlock(req.owner, blocker):
                    raise fserr(errno.EDEADLK)
                raise WouldBlock(BlockedRequest(f, self, req, blocker))
        self._replace_range(f, req)
        self._note_holder(f, req.owner)

    def _replace_range(self, f: FileLocks, req: Lock) -> None:
        owner = req.owner
        mine = [l for l in f.posix if l.owner is owner]
        kept: list[Lock] = []
        changed = False
        for l in mine:
            if not l.overlaps(req):
                kept.append(l)
                continue
            changed = True
            if l.start < req.start:
                kept.append(l.piece(l.start, req.start - 1))
            if l.end > req.end:  # the right piece of a split is a new lock
                kept.append(l.piece(req.end + 1, l.end, new_seq=l.start < req.start))
        if req.type != F_UNLCK:
            new = Lock(owner, req.pid, req.type, req.start, req.end, req.ofd)
            touching = [l for l in kept if l.type == new.type
                        and l.end >= new.start - 1 and l.start <= new.end + 1]
            if touching:  # merged into the first same-type neighbour
                new.seq = min(touching, key=lambda l: l.start).seq
                new.start = min(new.start, *(l.start for l in touching))
                new.end = max(new.end, *(l.end for l in touching))
                kept = [l for l in kept if l not in touching]
            kept.append(new)
        kept.sort(key=lambda l: l.start)
        out: list[Lock] = []
        placed = False
        for l in f.posix:
            if l.owner is owner:
                if not placed:
                    out.extend(kept)
                    placed = True
            else:
                out.append(l)
        if not placed:
            out.extend(kept)
        f.posix = out
        if changed:
            f.wake_all()

    def _would_deadlock(self, caller, blocker: Lock) -> bool:
        """Linux's posix_locks_deadlock: follow 'the owner of the lock I
        wait for waits for ...' through classic waiters; reaching the
        caller is a deadlock. OFD waiters are not followed."""
        lock = blocker
        for _ in range(MAX_DEADLOCK_STEPS + 1):
            lock = self._waits_for(lock.owner)
            if lock is None:
                return False
            if lock.owner is caller:
                return True
        return False

    def _waits_for(self, owner) -> Lock | None:
        for f in self.files.values():
            for b in f.blocked:
                if b.request.owner is owner and not b.request.ofd and not b.request.flock:
                    return b.blocker
        return None

    # --- flock(2) ---
    def flock(self, desc, pid: int, type_: int, wait: bool) -> None:
        """Lock or unlock the whole file for the description. Changing a
        held lock's type first drops it (not atomic, as Linux: a failed
        LOCK_NB conversion leaves no lock)."""
        f = self._file(desc, create=type_ != F_UNLCK)
        if f is None:
            return
        for l in f.flocks:
            if l.owner is desc:
                if l.type == type_:
                    return
                f.flocks.remove(l)
                f.wake_all()
                break
        try:
            if type_ == F_UNLCK:
                return
            req = Lock(desc, pid, type_, flock=True)
            for held in f.flocks:
                if held.owner is not desc and (held.type == F_WRLCK or type_ == F_WRLCK):
                    if not wait:
                        raise fserr(errno.EWOULDBLOCK)
                    raise WouldBlock(BlockedRequest(f, self, req, held))
            f.flocks.append(req)
        finally:
            self._note_holder(f, desc)

    # --- release on close and exit ---
    def close_fd(self, desc, owner) -> None:
        """An fd of `owner`'s table on desc's file was closed: the table's
        classic locks on the file go (POSIX's close rule)."""
        files = self.holdings.get(owner)
        if not files:
            return
        f = self._file(desc, create=False)
        if f is not None and f in files:
            self._release(f, owner)

    def release_description(self, desc) -> None:
        """The description's last reference went: its OFD and flock locks go."""
        for f in list(self.holdings.get(desc, ())):
            self._release(f, desc)

    def _release(self, f: FileLocks, owner) -> None:
        f.posix = [l for l in f.posix if l.owner is not owner]
        f.flocks = [l for l in f.flocks if l.owner is not owner]
        f.wake_all()
        self._note_holder(f, owner)

    # --- /proc/locks ---
    def render_proc(self) -> bytes:
        """Linux's /proc/locks: newest lock first, each followed by the
        requests waiting on it."""
        held = [(l, f) for f in self.files.values() for l in f.flocks + f.posix]
        held.sort(key=lambda lf: -lf[0].seq)
        lines = []
        for n, (l, f) in enumerate(held, 1):
            lines.append(_proc_line(n, l, f, ""))
            for other in self.files.values():
                for b in other.blocked:
                    if b.blocker is l:
                        lines.append(_proc_line(n, b.request, f, "-> "))
        return b"".join(lines)


def _proc_line(n: int, l: Lock, f: FileLocks, prefix: str) -> bytes:
    if l.flock:
        kind = "FLOCK  ADVISORY  "
    else:
        kind = ("OFDLCK" if l.ofd else "POSIX ") + " ADVISORY  "
    type_ = "WRITE" if l.type == F_WRLCK else "READ" if l.type == F_RDLCK else "UNLCK"
    pid = -1 if l.ofd else l.pid
    where = "0 EOF" if l.flock else (f"{l.start} EOF" if l.end == OFFSET_MAX else f"{l.start} {l.end}")
    return (f"{n}: {prefix}{kind}{type_} {pid} {os.major(f.dev):02x}:{os.minor(f.dev):02x}:{f.ino} "
            f"{where}\n").encode()


LOCKS = LockTable()  # the sandbox's one table (one sentry per sandbox)
