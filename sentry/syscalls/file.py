"""Syscalls on file descriptors: read/write and friends, seek, dup, fcntl,
ioctl, getdents, pipes, close."""
from __future__ import annotations

import errno
import struct

from vfs.file import (O_CLOEXEC, O_NONBLOCK, O_RDONLY, O_WRONLY, SETFL_MASK, FileDescription,
                      WouldBlock)
from vfs.inode import fserr

from ..pipe import new_pipe
from ..waiter import Block
from .table import PARTIAL, syscall
from .util import encode_stat, s32, s64, stat_of

MAX_RW = 0x7FFFF000  # Linux caps one read/write at this many bytes
CHUNK = 64 << 20     # but we copy at most this much per call (a short count)
IOV = struct.Struct("<QQ")
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7
F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG = 8, 9, 10, 11
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ = 1030, 1031, 1032
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
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


def _blocking(desc: FileDescription, op):
    """Run op(); turn WouldBlock into EAGAIN or a parked task."""
    try:
        return op()
    except WouldBlock as wb:
        if desc.nonblocking:
            raise fserr(errno.EAGAIN) from None
        if wb.host_fd is not None:
            raise Block(host_fd=wb.host_fd, host_events=wb.events) from None
        raise Block(wb.waitable) from None


def _readable(t, fd):
    desc = t.tg.fdtable.get(fd)
    if not desc.readable:
        raise fserr(errno.EBADF)
    return desc


def _writable(t, fd):
    desc = t.tg.fdtable.get(fd)
    if not desc.writable:
        raise fserr(errno.EBADF)
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
    data = _blocking(desc, lambda: desc.read(count))
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
    return write_all(t, desc, fetch(done, min(count - done, WINDOW)) if count > done else b"",
                     fetch, count)


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
    data = _blocking(desc, lambda: desc.read(min(sum(l for _, l in vecs), CHUNK)))
    _scatter(t, vecs, data)
    return len(data)


@syscall("writev")
def sys_writev(k, t, fd, iov, iovcnt, *_):
    desc = _writable(t, s32(fd))
    data = _gather(t, _iovecs(t, iov, iovcnt))
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


@syscall("fcntl", support=PARTIAL, note="record locks are accepted and not enforced; F_SETOWN/F_SETSIG recorded only")
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
    if cmd in (F_GETLK, F_OFD_GETLK):
        # struct flock: l_type first; nothing is ever locked against us
        raw = bytearray(t.thread.read(arg, 32))
        raw[0:2] = struct.pack("<h", 2)  # F_UNLCK
        t.thread.write(arg, bytes(raw))
        return 0
    if cmd in (F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW):
        return 0
    if cmd in (F_GETOWN, F_GETSIG):
        return 0
    if cmd in (F_SETOWN, F_SETSIG):
        return 0
    if cmd == F_GETPIPE_SZ:
        return getattr(desc.impl, "capacity", 65536)
    if cmd == F_SETPIPE_SZ:
        return getattr(desc.impl, "set_capacity", lambda n: 65536)(arg)
    if cmd == F_GET_SEALS:
        raise fserr(errno.EINVAL)
    raise fserr(errno.EINVAL)


@syscall("flock", support=PARTIAL, note="accepted, not enforced between processes")
def sys_flock(k, t, fd, op, *_):
    t.tg.fdtable.get(s32(fd))
    if op & ~(1 | 2 | 4 | 8) or not op & 0xB:
        raise fserr(errno.EINVAL)
    return 0


@syscall("ioctl", support=PARTIAL, note="tty ioctls on host stdio; FIONBIO, FIOCLEX, FIONCLEX")
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
    out = bytearray()
    pos = desc.offset
    legacy = t.syscall_nr == 78
    while pos < len(entries):
        e = entries[pos]
        name = e.name + b"\0"
        if legacy:
            # struct linux_dirent: ino, off, reclen, name, pad, type (last byte)
            reclen = (8 + 8 + 2 + len(name) + 1 + 7) & ~7
            rec = struct.pack("<QqH", e.ino, pos + 1, reclen) + name
            rec = rec.ljust(reclen - 1, b"\0") + bytes([e.dtype])
        else:
            reclen = (DIRENT.size + len(name) + 7) & ~7
            rec = (DIRENT.pack(e.ino, pos + 1, reclen, e.dtype) + name).ljust(reclen, b"\0")
        if len(out) + reclen > count:
            if not out:
                raise fserr(errno.EINVAL)
            break
        out += rec
        pos += 1
    desc.offset = pos
    if out:
        t.thread.write(dirp, bytes(out))
    return len(out)


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


@syscall("fsync", "fdatasync")
def sys_fsync(k, t, fd, *_):
    t.tg.fdtable.get(s32(fd)).impl.fsync()
    return 0


@syscall("syncfs")
def sys_syncfs(k, t, fd, *_):
    t.tg.fdtable.get(s32(fd))
    return 0


@syscall("fadvise64", "readahead", "sync_file_range")
def sys_fadvise(k, t, fd, *_):
    t.tg.fdtable.get(s32(fd))
    return 0


@syscall("pipe")
def sys_pipe(k, t, fds, *_):
    return sys_pipe2(k, t, fds, 0)


@syscall("pipe2")
def sys_pipe2(k, t, fds, flags, *_):
    if flags & ~(O_CLOEXEC | O_NONBLOCK | 0o40000):
        raise fserr(errno.EINVAL)
    r_impl, w_impl = new_pipe()
    table = t.tg.fdtable
    nb = flags & O_NONBLOCK
    rfd = table.install(FileDescription(r_impl, O_RDONLY | nb), cloexec=bool(flags & O_CLOEXEC))
    wfd = table.install(FileDescription(w_impl, O_WRONLY | nb), cloexec=bool(flags & O_CLOEXEC))
    try:
        t.thread.write(fds, struct.pack("<ii", rfd, wfd))
    except OSError:
        table.close(rfd)
        table.close(wfd)
        raise fserr(errno.EFAULT) from None
    return 0


@syscall("sendfile")
def sys_sendfile(k, t, out_fd, in_fd, offset_ptr, count, *_):
    src = _readable(t, s32(in_fd))
    dst = _writable(t, s32(out_fd))
    count = min(count, CHUNK)
    if offset_ptr:
        off = struct.unpack("<q", t.thread.read(offset_ptr, 8))[0]
        data = src.pread(count, off)
        t.thread.write(offset_ptr, struct.pack("<q", off + len(data)))
    else:
        data = _blocking(src, lambda: src.read(count))
    if not data:
        return 0
    return _blocking(dst, lambda: dst.write(data))


@syscall("copy_file_range")
def sys_copy_file_range(k, t, fd_in, off_in, fd_out, off_out, length, flags):
    if flags:
        raise fserr(errno.EINVAL)
    src, dst = _readable(t, s32(fd_in)), _writable(t, s32(fd_out))
    length = min(length, CHUNK)
    if off_in:
        oi = struct.unpack("<q", t.thread.read(off_in, 8))[0]
        data = src.pread(length, oi)
        t.thread.write(off_in, struct.pack("<q", oi + len(data)))
    else:
        data = src.read(length)
    if off_out:
        oo = struct.unpack("<q", t.thread.read(off_out, 8))[0]
        n = dst.pwrite(data, oo)
        t.thread.write(off_out, struct.pack("<q", oo + n))
        return n
    return dst.write(data) if data else 0
