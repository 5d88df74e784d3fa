"""Syscalls on file descriptors: read/write and friends, seek, dup, fcntl,
ioctl, getdents, pipes, close."""
from __future__ import annotations

import bisect
import errno
import stat as S
import struct
import weakref
from contextlib import contextmanager

from vfs import inotify, locks, ops
from vfs.file import (O_CLOEXEC, O_NONBLOCK, O_PATH, O_RDONLY, O_WRONLY, SETFL_MASK, FileDescription,
                      WouldBlock)
from vfs.inode import fserr

from .. import memfd
from ..caps import CAP_FSETID
from ..signals import SIGPIPE, send_signal_to_task
from ..pipe import new_pipe
from ..waiter import Block
from .inotify import fcntl_notify
from .table import PARTIAL, syscall
from .util import encode_stat, install_pair, s32, s64, stat_of

MAX_RW = 0x7FFFF000  # Linux caps one read/write at this many bytes
CHUNK = 64 << 20     # but we copy at most this much per call (a short count)
IOV = struct.Struct("<QQ")
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7
F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG = 8, 9, 10, 11
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ = 1030, 1031, 1032
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
F_NOTIFY = 1026
FD_CLOEXEC = 1


class GuestMemory:
    """What impl.ioctl gets: the calling task's memory."""
    __slots__ = ("thread",)

    def __init__(self, thread):
        self.thread = thread

    def read(self, addr, n):
        return self.thread.read(addr, n)

    def write(self, addr, data):
        self.thread.write(addr, data)


def blocking_io(desc: FileDescription, op, nonblock: bool = False):
    """Run op(); turn WouldBlock into EAGAIN (a non-blocking description,
    or the call's own non-blocking flag) or a parked task."""
    try:
        return op()
    except WouldBlock as wb:
        if nonblock or desc.nonblocking:
            raise fserr(errno.EAGAIN) from None
        if wb.host_fd is not None:
            raise Block(host_fd=wb.host_fd, host_events=wb.events) from None
        raise Block(wb.waitable) from None


def _readable(t, fd):
    desc = t.tg.fdtable.get(fd)
    if not desc.readable:
        raise fserr(errno.EBADF)
    return desc


FSETID = 1 << CAP_FSETID


def _writable(t, fd):
    desc = t.tg.fdtable.get(fd)
    if not desc.writable:
        raise fserr(errno.EBADF)
    if not t.tg.creds.cap_effective & FSETID and desc.inode is not None:
        ops.remove_privs(desc.inode, t.tg.creds)  # a write drops set-ID bits
    return desc


def write_all(t, desc, data: bytes, fetch=None, total: int = 0) -> int:
    """write(2) semantics for pipes and sockets: a blocking write returns
    only when all of data is written (waiting for room as needed), or with
    the count so far if a signal interrupts it. Progress survives the
    re-runs of the syscall in t.write_done. With `fetch(offset, n)`, data
    is the window of `total` bytes starting at t.write_done, and later
    windows are fetched as the earlier ones are written."""
    done = t.write_done
    if fetch is None:
        total = len(data)
    base = done if fetch is not None else 0  # request offset of data[0]
    while True:
        try:
            done += desc.write(data[done - base:] if done > base else data)
        except WouldBlock as wb:
            if desc.nonblocking:
                t.write_done = 0
                if done:
                    return done
                raise fserr(errno.EAGAIN) from None
            t.write_done = done
            if wb.host_fd is not None:
                raise Block(host_fd=wb.host_fd, host_events=wb.events,
                            interrupt_result=done or None) from None
            raise Block(wb.waitable, interrupt_result=done or None) from None
        if done >= total or desc.impl.seekable:
            t.write_done = 0
            return done
        if fetch is not None and done >= base + len(data):
            base, data = done, fetch(done, min(total - done, WINDOW))


# A blocking write to a pipe or socket is read from the guest a window at a
# time: each wake-up of a parked writer re-reads only what may fit.
WINDOW = 1 << 20


@syscall("read")
def sys_read(k, t, fd, buf, count, *_):
    desc = _readable(t, s32(fd))
    count = min(count, CHUNK)
    data = blocking_io(desc, lambda: desc.read(count))
    if data:
        t.thread.write(buf, data)
    return len(data)


@syscall("write")
def sys_write(k, t, fd, buf, count, *_):
    desc = _writable(t, s32(fd))
    count = min(count, CHUNK)
    if desc.impl.seekable:
        return write_all(t, desc, t.thread.read(buf, count) if count else b"")
    done = t.write_done

    def fetch(off, n):
        return t.thread.read(buf + off, n)
    with _sigpipe(k, t):
        return write_all(t, desc, fetch(done, min(count - done, WINDOW)) if count > done else b"",
                         fetch, count)


@contextmanager
def _sigpipe(k, t):
    """A write to a pipe, FIFO or socket nobody reads: SIGPIPE, then EPIPE."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.EPIPE:
            send_signal_to_task(k, t, SIGPIPE)
        raise


@syscall("pread64")
def sys_pread64(k, t, fd, buf, count, offset, *_):
    desc = _readable(t, s32(fd))
    data = desc.pread(min(count, CHUNK), s64(offset))
    if data:
        t.thread.write(buf, data)
    return len(data)


@syscall("pwrite64")
def sys_pwrite64(k, t, fd, buf, count, offset, *_):
    desc = _writable(t, s32(fd))
    data = t.thread.read(buf, min(count, CHUNK)) if count else b""
    return desc.pwrite(data, s64(offset))


def _iovecs(t, iov, iovcnt):
    if iovcnt > 1024:
        raise fserr(errno.EINVAL)
    raw = t.thread.read(iov, 16 * iovcnt) if iovcnt else b""
    return [IOV.unpack_from(raw, 16 * i) for i in range(iovcnt)]


def _scatter(t, vecs, data: bytes) -> None:
    pos = 0
    for base, length in vecs:
        if pos >= len(data):
            break
        piece = data[pos:pos + length]
        t.thread.write(base, piece)
        pos += len(piece)


def _gather(t, vecs) -> bytes:
    return b"".join(t.thread.read(base, length) for base, length in vecs if length)


@syscall("readv")
def sys_readv(k, t, fd, iov, iovcnt, *_):
    desc = _readable(t, s32(fd))
    vecs = _iovecs(t, iov, iovcnt)
    data = blocking_io(desc, lambda: desc.read(min(sum(l for _, l in vecs), CHUNK)))
    _scatter(t, vecs, data)
    return len(data)


@syscall("writev")
def sys_writev(k, t, fd, iov, iovcnt, *_):
    desc = _writable(t, s32(fd))
    data = _gather(t, _iovecs(t, iov, iovcnt))
    with _sigpipe(k, t):
        return write_all(t, desc, data)


@syscall("preadv", "preadv2")
def sys_preadv(k, t, fd, iov, iovcnt, pos_l, *_):
    desc = _readable(t, s32(fd))
    vecs = _iovecs(t, iov, iovcnt)
    size = min(sum(l for _, l in vecs), CHUNK)
    off = s64(pos_l)
    data = desc.read(size) if off == -1 else desc.pread(size, off)
    _scatter(t, vecs, data)
    return len(data)


@syscall("pwritev", "pwritev2")
def sys_pwritev(k, t, fd, iov, iovcnt, pos_l, *_):
    desc = _writable(t, s32(fd))
    data = _gather(t, _iovecs(t, iov, iovcnt))
    off = s64(pos_l)
    return desc.write(data) if off == -1 else desc.pwrite(data, off)


@syscall("lseek")
def sys_lseek(k, t, fd, offset, whence, *_):
    return t.tg.fdtable.get(s32(fd)).seek(s64(offset), whence)


@syscall("close")
def sys_close(k, t, fd, *_):
    t.tg.fdtable.close(s32(fd))
    return 0


@syscall("close_range")
def sys_close_range(k, t, first, last, flags, *_):
    if flags & ~0x6 or first > last:
        raise fserr(errno.EINVAL)
    t.tg.fdtable.close_range(first, last, cloexec_only=bool(flags & 0x4))
    return 0


@syscall("dup")
def sys_dup(k, t, fd, *_):
    table = t.tg.fdtable
    return table.install(table.get(s32(fd)))


@syscall("dup2")
def sys_dup2(k, t, old, new, *_):
    table = t.tg.fdtable
    desc = table.get(s32(old))
    if old == new:
        return new
    table.install_at(s32(new), desc)
    return new


@syscall("dup3")
def sys_dup3(k, t, old, new, flags, *_):
    if old == new or flags & ~O_CLOEXEC:
        raise fserr(errno.EINVAL)
    table = t.tg.fdtable
    table.install_at(s32(new), table.get(s32(old)), cloexec=bool(flags & O_CLOEXEC))
    return new


@syscall("fcntl", support=PARTIAL, note="record locks (classic and OFD) enforced as Linux; F_SETOWN/F_SETSIG recorded only")
def sys_fcntl(k, t, fd, cmd, arg, *_):
    table = t.tg.fdtable
    fd = s32(fd)
    desc = table.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        return table.install(desc, cloexec=cmd == F_DUPFD_CLOEXEC, start=s32(arg))
    if cmd == F_GETFD:
        return FD_CLOEXEC if table.cloexec(fd) else 0
    if cmd == F_SETFD:
        table.set_cloexec(fd, bool(arg & FD_CLOEXEC))
        return 0
    if cmd == F_GETFL:
        return desc.flags
    if cmd == F_SETFL:
        desc.flags = (desc.flags & ~SETFL_MASK) | (arg & SETFL_MASK)
        return 0
    if cmd in LOCK_CMDS:
        return _record_lock(t, desc, cmd, arg)
    if cmd == F_NOTIFY:
        return fcntl_notify(k, t, fd, desc, arg)
    if cmd == F_SETSIG:  # the signal F_NOTIFY sends (0: SIGIO)
        if not 0 <= s32(arg) <= 64:
            raise fserr(errno.EINVAL)
        desc.owner_signal = s32(arg)
        return 0
    if cmd == F_GETSIG:
        return getattr(desc, "owner_signal", 0)
    if cmd in (F_GETOWN, F_GETSIG):
        return 0
    if cmd in (F_SETOWN, F_SETSIG):
        return 0
    if cmd == F_GETPIPE_SZ:
        return getattr(desc.impl, "capacity", 65536)
    if cmd == F_SETPIPE_SZ:
        return getattr(desc.impl, "set_capacity", lambda n: 65536)(arg)
    if cmd == F_ADD_SEALS:
        return memfd.add_seals(desc, arg, lambda inode: memfd.shared_mapping_in(k.pidns.groups.values(), inode))
    if cmd == F_GET_SEALS:
        return memfd.get_seals(desc)
    raise fserr(errno.EINVAL)


LOCK_CMDS = (F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
FLOCK = struct.Struct("<hh4xqqi4x")  # struct flock (the same as flock64 on x86-64)
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN, LOCK_MAND = 1, 2, 4, 8, 32


def _record_lock(t, desc, cmd, arg):
    """F_GETLK, F_SETLK, F_SETLKW and their OFD forms, checked in Linux's
    order; the locks themselves are vfs.locks'."""
    if desc.flags & O_PATH:
        raise fserr(errno.EBADF)
    raw = t.thread.read(arg, FLOCK.size)
    l_type, whence, start, length, pid = FLOCK.unpack(raw)
    ofd = cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
    testing = cmd in (F_GETLK, F_OFD_GETLK)
    if testing and not ofd and l_type not in (locks.F_RDLCK, locks.F_WRLCK):
        raise fserr(errno.EINVAL)  # F_OFD_GETLK may test F_UNLCK (recent Linux)
    size = desc.inode.stat().size if desc.inode is not None else desc.impl.size()
    first, last = locks.byte_range(whence, start, length, desc.offset, size)
    if l_type not in (locks.F_RDLCK, locks.F_WRLCK, locks.F_UNLCK):
        raise fserr(errno.EINVAL)
    if not testing and (l_type == locks.F_RDLCK and not desc.readable or
                        l_type == locks.F_WRLCK and not desc.writable):
        raise fserr(errno.EBADF)
    if ofd and pid != 0:
        raise fserr(errno.EINVAL)
    req = locks.Lock(desc if ofd else t.tg.fdtable, t.tg.tgid, l_type, first, last, ofd=ofd)
    if testing:
        held = locks.LOCKS.test_posix(desc, req)
        out = bytearray(raw)
        if held is None:
            struct.pack_into("<h", out, 0, locks.F_UNLCK)  # the rest stays as given
        else:
            struct.pack_into("<hh", out, 0, held.type, locks.SEEK_SET)
            struct.pack_into("<qqi", out, 8, held.start,
                             0 if held.end == locks.OFFSET_MAX else held.end - held.start + 1,
                             -1 if held.ofd else held.pid)
        t.thread.write(arg, bytes(out))
        return 0
    try:
        locks.LOCKS.set_posix(desc, req, wait=cmd in (F_SETLKW, F_OFD_SETLKW))
    except WouldBlock as wb:
        raise Block(wb.waitable) from None  # a signal: EINTR, or a restart under SA_RESTART
    return 0


@syscall("flock", note="per open file description, independent of record locks; blocks and converts as Linux")
def sys_flock(k, t, fd, op, *_):
    op &= 0xFFFFFFFF
    if op & LOCK_MAND:
        return 0  # Linux ignores LOCK_MAND requests
    kind = {LOCK_SH: locks.F_RDLCK, LOCK_EX: locks.F_WRLCK, LOCK_UN: locks.F_UNLCK}.get(op & ~LOCK_NB)
    if kind is None:
        raise fserr(errno.EINVAL)
    desc = t.tg.fdtable.get(s32(fd))
    if desc.flags & O_PATH:
        raise fserr(errno.EBADF)
    try:
        locks.LOCKS.flock(desc, t.tg.tgid, kind, wait=not op & LOCK_NB)
    except WouldBlock as wb:
        raise Block(wb.waitable) from None
    return 0


@syscall("ioctl", support=PARTIAL, note="tty ioctls on host stdio; FIONBIO, FIOCLEX, FIONCLEX; on sockets "
                                        "FIONREAD, SIOCOUTQ and the interface requests (SIOCGIF*, SIOCGIFCONF; "
                                        "changes refused: EPERM, or EOPNOTSUPP for root)")
def sys_ioctl(k, t, fd, request, arg, *_):
    table = t.tg.fdtable
    fd = s32(fd)
    desc = table.get(fd)
    request &= 0xFFFFFFFF
    if request not in (0x5421, 0x5451, 0x5450) and getattr(desc.impl, "is_pty", False):
        return desc.impl.tty_ioctl(k, t, request, arg)
    if request == 0x5421:  # FIONBIO
        on = struct.unpack("<i", t.thread.read(arg, 4))[0]
        desc.flags = desc.flags | O_NONBLOCK if on else desc.flags & ~O_NONBLOCK
        return 0
    if request == 0x5451:  # FIOCLEX
        table.set_cloexec(fd, True)
        return 0
    if request == 0x5450:  # FIONCLEX
        table.set_cloexec(fd, False)
        return 0
    if request == 0x540F:  # TIOCGPGRP: the foreground group is the caller's
        if not _is_tty(desc):
            raise fserr(errno.ENOTTY)
        t.thread.write(arg, struct.pack("<i", k.foreground_pgid(t)))
        return 0
    if request == 0x5410:  # TIOCSPGRP
        if not _is_tty(desc):
            raise fserr(errno.ENOTTY)
        k.set_foreground_pgid(struct.unpack("<i", t.thread.read(arg, 4))[0])
        return 0
    if request == 0x5429:  # TIOCGSID
        if not _is_tty(desc):
            raise fserr(errno.ENOTTY)
        t.thread.write(arg, struct.pack("<i", t.tg.sid))
        return 0
    if request == 0x540E:  # TIOCSCTTY
        if not _is_tty(desc):
            raise fserr(errno.ENOTTY)
        return 0
    return desc.impl.ioctl(request, arg, GuestMemory(t.thread))


def _is_tty(desc) -> bool:
    import os
    fd = getattr(desc.impl, "host_fd", None)
    return fd is not None and os.isatty(fd)


@syscall("fstat")
def sys_fstat(k, t, fd, statbuf, *_):
    t.thread.write(statbuf, encode_stat(stat_of(t.tg.fdtable.get(s32(fd)))))
    return 0


DIRENT = struct.Struct("<QqHB")


@syscall("getdents64", "getdents")
def sys_getdents64(k, t, fd, dirp, count, *_):
    desc = t.tg.fdtable.get(s32(fd))
    if desc.location is None or not desc.location.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    if desc.dir_cache is None or desc.offset == 0:
        desc.dir_cache = desc.impl.readdir()
    entries = desc.dir_cache
    pos = desc.offset
    if pos >= len(entries):
        return 0
    blob, ends = _encoded_listing(desc.location.inode, entries, t.syscall_nr == 78)
    start = ends[pos - 1] if pos else 0
    end = bisect.bisect_right(ends, start + count, pos)  # the records that fit
    if end == pos:
        raise fserr(errno.EINVAL)
    desc.offset = end
    if inotify.marks:
        inotify.accessed(desc)
    t.thread.write(dirp, blob[start:ends[end - 1]])
    return ends[end - 1] - start


# A directory's records, encoded once and reused while a new snapshot of
# its entries equals the last one (listing a big directory again costs a
# list comparison, not a struct per entry). d_off is the entry's index + 1.
_listings: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _encoded_listing(inode, entries: list, legacy: bool) -> tuple[bytes, list[int]]:
    try:
        hit = _listings.get(inode)
    except TypeError:  # an inode type that cannot be weakly referenced
        hit = None
    if hit is not None and hit[0] == legacy and hit[1] == entries:
        return hit[2], hit[3]
    recs, ends, total = [], [], 0
    for pos, e in enumerate(entries):
        name = e.name + b"\0"
        if legacy:
            # struct linux_dirent: ino, off, reclen, name, pad, type (last byte)
            reclen = (8 + 8 + 2 + len(name) + 1 + 7) & ~7
            rec = struct.pack("<QqH", e.ino, pos + 1, reclen) + name
            rec = rec.ljust(reclen - 1, b"\0") + bytes([e.dtype])
        else:
            reclen = (DIRENT.size + len(name) + 7) & ~7
            rec = (DIRENT.pack(e.ino, pos + 1, reclen, e.dtype) + name).ljust(reclen, b"\0")
        recs.append(rec)
        total += reclen
        ends.append(total)
    blob = b"".join(recs)
    try:
        _listings[inode] = (legacy, list(entries), blob, ends)
    except TypeError:
        pass
    return blob, ends


@syscall("ftruncate")
def sys_ftruncate(k, t, fd, length, *_):
    desc = t.tg.fdtable.get(s32(fd))
    if not desc.writable or desc.inode is None:
        raise fserr(errno.EINVAL if desc.inode is None else errno.EBADF)
    if s64(length) < 0:
        raise fserr(errno.EINVAL)
    from vfs import ops
    ops.setattr(desc.location, k.path_context(t), size=length)
    return 0


@syscall("fallocate", support=PARTIAL,
         note="tmpfs: allocate, KEEP_SIZE, PUNCH_HOLE (as Linux's tmpfs); filesystems without it EOPNOTSUPP")
def sys_fallocate(k, t, fd, mode, offset, length, *_):
    desc = t.tg.fdtable.get(s32(fd))
    if desc.flags & O_PATH:
        raise fserr(errno.EBADF)
    ops.fallocate(desc, stat_of(desc).mode, k.path_context(t), mode & 0xFFFFFFFF, s64(offset), s64(length))
    return 0


@syscall("fsync", "fdatasync")
def sys_fsync(k, t, fd, *_):
    desc = t.tg.fdtable.get(s32(fd))
    if desc.inode is not None and desc.inode.page_cache is not None:
        desc.inode.page_cache.writeback()  # stores through shared mappings
    desc.impl.fsync()
    return 0


@syscall("syncfs")
def sys_syncfs(k, t, fd, *_):
    t.tg.fdtable.get(s32(fd))
    return 0


POSIX_FADV_NOREUSE = 5  # the highest advice (NORMAL 0 ... NOREUSE 5)


def _file(t, fd):
    """fdget: an O_PATH descriptor is no file here."""
    desc = t.tg.fdtable.get(s32(fd))
    if desc.flags & O_PATH:
        raise fserr(errno.EBADF)
    return desc


def _fadvise(desc, length: int, advice: int) -> int:
    """Advice is only checked: the sentry keeps no page cache to tune."""
    if S.S_ISFIFO(stat_of(desc).mode):
        raise fserr(errno.ESPIPE)
    if length < 0 or not 0 <= advice <= POSIX_FADV_NOREUSE:
        raise fserr(errno.EINVAL)
    return 0


@syscall("fadvise64", note="checks its arguments as Linux; the advice itself changes nothing")
def sys_fadvise(k, t, fd, offset, length, advice, *_):
    return _fadvise(_file(t, fd), s64(length), s32(advice))


@syscall("readahead", note="checks its arguments as Linux; reads nothing ahead")
def sys_readahead(k, t, fd, offset, count, *_):
    desc = _file(t, fd)
    if not desc.readable:
        raise fserr(errno.EBADF)
    if not S.S_ISREG(stat_of(desc).mode) and not S.S_ISBLK(stat_of(desc).mode):
        raise fserr(errno.EINVAL)
    return _fadvise(desc, s64(count), 3)  # POSIX_FADV_WILLNEED


@syscall("sync_file_range", note="checks its arguments as Linux; writes happen at once anyway")
def sys_sync_file_range(k, t, fd, offset, nbytes, flags, *_):
    desc = _file(t, fd)
    offset, end = s64(offset), s64((offset + nbytes) & (1 << 64) - 1)
    if flags & ~7 or offset < 0 or end < 0 or end < offset:
        raise fserr(errno.EINVAL)
    kind = S.S_IFMT(stat_of(desc).mode)
    if kind not in (S.S_IFREG, S.S_IFBLK, S.S_IFDIR, S.S_IFLNK):
        raise fserr(errno.ESPIPE)
    return 0


@syscall("pipe")
def sys_pipe(k, t, fds, *_):
    return sys_pipe2(k, t, fds, 0)


@syscall("pipe2")
def sys_pipe2(k, t, fds, flags, *_):
    if flags & ~(O_CLOEXEC | O_NONBLOCK | 0o40000):
        raise fserr(errno.EINVAL)
    r_impl, w_impl = new_pipe()
    nb = flags & O_NONBLOCK
    return install_pair(t, fds, FileDescription(r_impl, O_RDONLY | nb), FileDescription(w_impl, O_WRONLY | nb),
                        bool(flags & O_CLOEXEC))
