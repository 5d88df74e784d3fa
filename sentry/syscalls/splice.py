"""sendfile, splice, tee, vmsplice and copy_file_range: bytes moved between
descriptions without passing through the guest.

Linux moves page references; we copy bytes, which is all a guest can
observe. Checks follow fs/splice.c and fs/read_write.c in their order. A
transfer that must wait (an empty or full pipe, a full socket) parks on
the object's wait queue before taking anything from its source, and the
call runs again when woken; a transfer does what it can at once and may
return a short count, as Linux's do.
"""
from __future__ import annotations

import errno
import stat as S
import struct

from vfs.file import O_APPEND, O_PATH
from vfs.inode import fserr

from ..pipe import pipe_of
from ..waiter import Block
from .file import blocking_io
from .table import PARTIAL, syscall
from .util import s32, stat_of

SPLICE_F_NONBLOCK = 0x2
SPLICE_F_ALL = 0xF            # MOVE | NONBLOCK | MORE | GIFT
MAX_RW_COUNT = 0x7FFFF000
CHUNK = 64 << 20              # copied per call at most (a short count beyond)
UIO_MAXIOV = 1024
LLONG_MAX = (1 << 63) - 1
SIGPIPE = 13
NULL_RDEV = (1 << 8) | 3  # /dev/null
OFF = struct.Struct("<q")
IOV = struct.Struct("<QQ")


# --- helpers ---
def _fd(t, fd):
    """fdget: an O_PATH descriptor is no file for these calls."""
    desc = t.tg.fdtable.get(s32(fd))
    if desc.flags & O_PATH:
        raise fserr(errno.EBADF)
    return desc


def _read_off(t, addr: int) -> int:
    return OFF.unpack(t.thread.read(addr, 8))[0]


def _write_off(t, addr: int, value: int) -> None:
    t.thread.write(addr, OFF.pack(value))


def _verify_area(pos: int, count: int) -> None:
    """rw_verify_area: a negative position, or one the count would carry
    past the largest offset, is EINVAL."""
    if count > LLONG_MAX or pos < 0 or pos + count > LLONG_MAX:
        raise fserr(errno.EINVAL)


def _wait(nonblock: bool, queue):
    if nonblock:
        raise fserr(errno.EAGAIN)
    raise Block(queue)


def _broken(k, t):
    """Writing to a pipe nobody reads: SIGPIPE, then EPIPE."""
    from ..signals import send_signal_to_task
    send_signal_to_task(k, t, SIGPIPE)
    return fserr(errno.EPIPE)


def _wait_for_data(pipe, nonblock: bool) -> bool:
    """Until the pipe holds bytes: False if it is empty for good (no writers)."""
    if pipe.buf:
        return True
    if pipe.writers == 0:
        return False
    _wait(nonblock, pipe.readable)


def _wait_for_room(k, t, pipe, nonblock: bool) -> int:
    if pipe.readers == 0:
        raise _broken(k, t)
    room = pipe.room()
    if room == 0:
        _wait(nonblock, pipe.writable)
    return room


def _check_splice_source(desc) -> None:
    """Directories, /dev/null and anonymous-inode objects (eventfd, epoll,
    timerfd, signalfd...) have no splice_read: EINVAL, as pipes for sendfile."""
    if desc.inode is not None:
        st = desc.inode.stat()
        if S.S_ISDIR(st.mode) or (S.S_ISCHR(st.mode) and st.rdev == NULL_RDEV):
            raise fserr(errno.EINVAL)
    if pipe_of(desc.impl) is not None:
        raise fserr(errno.EINVAL)
    namer = getattr(desc.impl, "link_name", None)
    if desc.location is None and namer is not None and namer().startswith(b"anon_inode:"):
        raise fserr(errno.EINVAL)


def _read_source(desc, pos: int, n: int, nonblock: bool) -> bytes:
    """Up to n bytes of a file at pos, or from a stream (a socket, a
    terminal): those are taken, so callers ask no more than fits."""
    if desc.impl.seekable:
        return desc.pread(n, pos)
    return blocking_io(desc, lambda: desc.read(n), nonblock)


def _write_dest(desc, data: bytes, pos: int, nonblock: bool) -> int:
    if desc.impl.seekable:
        return desc.pwrite(data, pos)
    return blocking_io(desc, lambda: desc.write(data), nonblock)


# --- sendfile ---
@syscall("sendfile", note="from a file (or a socket into a pipe); at most 64 MiB a call")
def sys_sendfile(k, t, out_fd, in_fd, offset_ptr, count, *_):
    src = _fd(t, in_fd)
    if not src.readable:
        raise fserr(errno.EBADF)
    pos = _read_off(t, offset_ptr) if offset_ptr else (src.offset if src.impl.seekable else 0)
    n = 0
    try:
        if offset_ptr and not src.impl.seekable:
            raise fserr(errno.ESPIPE)
        _verify_area(pos, count)
        n = _sendfile(k, t, src, _fd(t, out_fd), pos, min(count, MAX_RW_COUNT, CHUNK))
    finally:
        if offset_ptr:  # written back whatever happened, as Linux does
            _write_off(t, offset_ptr, pos + n)
    if n and not offset_ptr and src.impl.seekable:
        src.offset = pos + n
    return n


def _sendfile(k, t, src, dst, pos: int, count: int) -> int:
    if not dst.writable:
        raise fserr(errno.EBADF)
    opipe = pipe_of(dst.impl)
    if opipe is not None:
        room = _wait_for_room(k, t, opipe, dst.nonblocking)
        if count == 0:
            return 0
        _check_splice_source(src)
        return opipe.put(_read_source(src, pos, min(count, room), dst.nonblocking))
    if dst.flags & O_APPEND:
        raise fserr(errno.EINVAL)
    # without a pipe in between the source must be seekable: nothing read is lost
    if not src.impl.seekable:
        raise fserr(errno.EINVAL)
    if count == 0:
        return 0
    _check_splice_source(src)
    data = _read_source(src, pos, count, False)
    if not data:
        return 0
    n = _write_dest(dst, data, dst.offset, False)
    if dst.impl.seekable:
        dst.offset += n
    return n


# --- splice ---
@syscall("splice", note="pipe room is counted in bytes (Linux counts page slots)")
def sys_splice(k, t, fd_in, off_in, fd_out, off_out, length, flags):
    if length == 0:
        return 0
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise fserr(errno.EINVAL)
    src, dst = _fd(t, fd_in), _fd(t, fd_out)
    ipipe, opipe = pipe_of(src.impl), pipe_of(dst.impl)
    if (ipipe is not None and off_in) or (opipe is not None and off_out):
        raise fserr(errno.ESPIPE)
    pos_out = _read_off(t, off_out) if off_out else None
    pos_in = _read_off(t, off_in) if off_in else None
    if not src.readable or not dst.writable:
        raise fserr(errno.EBADF)
    nonblock = bool(flags & SPLICE_F_NONBLOCK)
    if ipipe is not None and opipe is not None:
        if ipipe is opipe:
            raise fserr(errno.EINVAL)
        return _pipe_to_pipe(k, t, ipipe, opipe, length, nonblock or src.nonblocking or dst.nonblocking,
                             consume=True)
    if ipipe is not None:
        if pos_out is not None and not dst.impl.seekable:
            raise fserr(errno.EINVAL)
        pos = pos_out if pos_out is not None else dst.offset
        if dst.flags & O_APPEND:
            raise fserr(errno.EINVAL)
        if dst.impl.seekable:
            _verify_area(pos, length)
        n = _pipe_to_file(ipipe, dst, pos, length, nonblock or src.nonblocking)
        if pos_out is not None:
            _write_off(t, off_out, pos + n)
        elif dst.impl.seekable:
            dst.offset = pos + n
        return n
    if opipe is not None:
        if pos_in is not None and not src.impl.seekable:
            raise fserr(errno.EINVAL)
        pos = pos_in if pos_in is not None else src.offset
        nonblock = nonblock or dst.nonblocking
        room = _wait_for_room(k, t, opipe, nonblock)
        n = min(length, room)
        if src.impl.seekable:
            _verify_area(pos, n)
        _check_splice_source(src)
        n = opipe.put(_read_source(src, pos, min(n, MAX_RW_COUNT, CHUNK), nonblock))
        if pos_in is not None:
            _write_off(t, off_in, pos + n)
        elif src.impl.seekable:
            src.offset = pos + n
        return n
    raise fserr(errno.EINVAL)


def _pipe_to_file(ipipe, dst, pos: int, length: int, nonblock: bool) -> int:
    """What the pipe holds, up to length, written to dst; only what dst
    took leaves the pipe."""
    if not _wait_for_data(ipipe, nonblock):
        return 0
    data = ipipe.peek(min(length, CHUNK))
    n = _write_dest(dst, data, pos, False)  # a socket waits unless it is O_NONBLOCK
    ipipe.take(n)
    return n


def _pipe_to_pipe(k, t, ipipe, opipe, length: int, nonblock: bool, consume: bool) -> int:
    """splice (consume) or tee (copy) between two pipes: wait for bytes in,
    then for room out; move what both allow."""
    has_data = _wait_for_data(ipipe, nonblock)
    room = _wait_for_room(k, t, opipe, nonblock)
    if not has_data:
        return 0
    n = min(length, len(ipipe.buf), room)
    return opipe.put(ipipe.take(n) if consume else ipipe.peek(n))


# --- tee ---
@syscall("tee", note="pipe room is counted in bytes (Linux counts page slots)")
def sys_tee(k, t, fd_in, fd_out, length, flags, *_):
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise fserr(errno.EINVAL)
    if length == 0:
        return 0
    src, dst = _fd(t, fd_in), _fd(t, fd_out)
    if not src.readable or not dst.writable:
        raise fserr(errno.EBADF)
    ipipe, opipe = pipe_of(src.impl), pipe_of(dst.impl)
    if ipipe is None or opipe is None or ipipe is opipe:
        raise fserr(errno.EINVAL)
    nonblock = bool(flags & SPLICE_F_NONBLOCK) or src.nonblocking or dst.nonblocking
    return _pipe_to_pipe(k, t, ipipe, opipe, length, nonblock, consume=False)


# --- vmsplice ---
@syscall("vmsplice", support=PARTIAL,
         note="copies the bytes at the call: later stores to the buffer do not reach the pipe "
              "(Linux maps the pages)")
def sys_vmsplice(k, t, fd, iov, nr_segs, flags, *_):
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise fserr(errno.EINVAL)
    desc = _fd(t, fd)
    if desc.writable:
        to_pipe = True
    elif desc.readable:
        to_pipe = False
    else:
        raise fserr(errno.EBADF)
    vecs = _iovecs(t, iov, nr_segs)
    total = min(sum(n for _, n in vecs), MAX_RW_COUNT)
    if total == 0:
        return 0
    pipe = pipe_of(desc.impl)
    if pipe is None:
        raise fserr(errno.EBADF)
    nonblock = bool(flags & SPLICE_F_NONBLOCK) or desc.nonblocking
    if to_pipe:
        room = _wait_for_room(k, t, pipe, nonblock)
        return pipe.put(_gather(t, vecs, min(total, room, CHUNK)))
    if not _wait_for_data(pipe, nonblock):
        return 0
    n = _scatter(t, vecs, pipe.peek(min(total, CHUNK)))
    pipe.take(n)
    return n


def _iovecs(t, iov: int, n: int) -> list[tuple[int, int]]:
    """import_iovec: at most UIO_MAXIOV segments, none negative."""
    n &= 0xFFFFFFFFFFFFFFFF
    if n > UIO_MAXIOV:
        raise fserr(errno.EINVAL)
    raw = t.thread.read(iov, 16 * n) if n else b""
    vecs = [IOV.unpack_from(raw, 16 * i) for i in range(n)]
    if any(length > LLONG_MAX for _, length in vecs):
        raise fserr(errno.EINVAL)
    return vecs


def _gather(t, vecs, limit: int) -> bytes:
    """Guest bytes up to limit; a fault after some bytes ends the copy there."""
    out = []
    got = 0
    for base, length in vecs:
        n = min(length, limit - got)
        if n <= 0:
            break
        try:
            out.append(t.thread.read(base, n))
        except OSError:
            if got:
                break
            raise fserr(errno.EFAULT) from None
        got += n
    return b"".join(out)


def _scatter(t, vecs, data: bytes) -> int:
    pos = 0
    for base, length in vecs:
        if pos >= len(data):
            break
        piece = data[pos:pos + length]
        try:
            t.thread.write(base, piece)
        except OSError:
            if pos:
                break
            raise fserr(errno.EFAULT) from None
        pos += len(piece)
    return pos


# --- copy_file_range ---
@syscall("copy_file_range", note="regular files on one filesystem; EXDEV across filesystems, as "
                                     "Linux 6.x for filesystems without a copy method of their own")
def sys_copy_file_range(k, t, fd_in, off_in, fd_out, off_out, length, flags):
    src, dst = _fd(t, fd_in), _fd(t, fd_out)
    pos_in = _read_off(t, off_in) if off_in else src.offset
    pos_out = _read_off(t, off_out) if off_out else dst.offset
    if flags & 0xFFFFFFFF:
        raise fserr(errno.EINVAL)
    n = _copy_range(src, pos_in, dst, pos_out, length)
    if n > 0:
        if off_in:
            _write_off(t, off_in, pos_in + n)
        else:
            src.offset = pos_in + n
        if off_out:
            _write_off(t, off_out, pos_out + n)
        else:
            dst.offset = pos_out + n
    return n


def _copy_range(src, pos_in: int, dst, pos_out: int, count: int) -> int:
    """vfs_copy_file_range between regular files: shortened to the end of
    the source, no overlap within one file, one filesystem (EXDEV across
    filesystems, as Linux 6.x for filesystems without their own copy)."""
    st_in, st_out = stat_of(src), stat_of(dst)
    if S.S_ISDIR(st_in.mode) or S.S_ISDIR(st_out.mode):
        raise fserr(errno.EISDIR)
    if not S.S_ISREG(st_in.mode) or not S.S_ISREG(st_out.mode) or src.inode is None or dst.inode is None:
        raise fserr(errno.EINVAL)
    if not src.readable or not dst.writable or dst.flags & O_APPEND:
        raise fserr(errno.EBADF)
    if (pos_in % (1 << 64)) + count >= 1 << 64 or (pos_out % (1 << 64)) + count >= 1 << 64:
        raise fserr(errno.EOVERFLOW)
    count = 0 if pos_in >= st_in.size else min(count, st_in.size - pos_in)
    same = (st_in.dev, st_in.ino) == (st_out.dev, st_out.ino)
    if same and pos_out + count > pos_in and pos_out < pos_in + count:
        raise fserr(errno.EINVAL)
    _verify_area(pos_in, count)
    _verify_area(pos_out, count)
    if count == 0:
        return 0
    if st_in.dev != st_out.dev:
        raise fserr(errno.EXDEV)
    data = src.pread(min(count, MAX_RW_COUNT, CHUNK), pos_in)
    return dst.pwrite(data, pos_out) if data else 0
