"""Helpers shared by syscall handlers: guest memory codecs and fd/path
argument decoding."""
from __future__ import annotations

import errno
import struct

from vfs.inode import Stat, fserr
from vfs.path import Location

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_SYMLINK_FOLLOW = 0x100, 0x200, 0x400
AT_NO_AUTOMOUNT, AT_EMPTY_PATH = 0x800, 0x1000
PATH_MAX = 4096

STAT = struct.Struct("<QQQIIIIQqqqqqqqqq24x")
U64 = struct.Struct("<Q")
I32 = struct.Struct("<i")


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def s64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def read_path(t, addr: int) -> bytes:
    if addr == 0:
        raise fserr(errno.EFAULT)
    try:
        return t.thread.read_cstr(addr, PATH_MAX)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise fserr(errno.ENAMETOOLONG) from None
        raise fserr(errno.EFAULT) from None


def read_str_array(t, addr: int, limit_total: int = 2 << 20) -> list[bytes]:
    """argv/envp: a NULL-terminated array of string pointers."""
    out, total = [], 0
    if addr == 0:
        return out
    while True:
        ptr = U64.unpack(t.thread.read(addr + 8 * len(out), 8))[0]
        if ptr == 0:
            return out
        try:
            s = t.thread.read_cstr(ptr, 128 * 1024 + 1)
        except OSError as e:
            raise fserr(errno.E2BIG if e.errno == errno.ENAMETOOLONG else errno.EFAULT) from None
        total += len(s) + 1
        if total > limit_total:
            raise fserr(errno.E2BIG)
        out.append(s)


def encode_stat(st: Stat) -> bytes:
    """struct stat bytes. Filesystems that cache a Stat hand out the same
    object until the file changes (they replace it, never mutate it), so the
    packed form is kept on it."""
    packed = st.__dict__.get("_packed")
    if packed is None:
        packed = st.__dict__["_packed"] = _pack_stat(st)
    return packed


def _pack_stat(st: Stat) -> bytes:
    return STAT.pack(st.dev, st.ino, st.nlink, st.mode, st.uid, st.gid, 0, st.rdev, st.size,
                     st.blksize, st.blocks,
                     st.atime_ns // 10**9, st.atime_ns % 10**9,
                     st.mtime_ns // 10**9, st.mtime_ns % 10**9,
                     st.ctime_ns // 10**9, st.ctime_ns % 10**9)


def dir_start(k, t, dirfd: int, path: bytes) -> Location | None:
    """The Location a relative path starts from (None: the cwd)."""
    dirfd = s32(dirfd)
    if path[:1] == b"/" or dirfd == AT_FDCWD:
        return None
    desc = t.tg.fdtable.get(dirfd)
    if desc.location is None:
        raise fserr(errno.ENOTDIR)
    if path and not desc.location.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    return desc.location


def resolve_at(k, t, dirfd: int, path_addr: int, flags: int = 0, follow: bool = True) -> Location:
    """Resolve (dirfd, path) with AT_EMPTY_PATH and AT_SYMLINK_NOFOLLOW."""
    path = read_path(t, path_addr)
    if not path:
        if flags & AT_EMPTY_PATH:
            dirfd = s32(dirfd)
            if dirfd == AT_FDCWD:
                return t.tg.fs.cwd
            desc = t.tg.fdtable.get(dirfd)
            if desc.location is None:
                raise fserr(errno.EBADF)
            return desc.location
        raise fserr(errno.ENOENT)
    start = None if path[0] == 0x2F or dirfd & 0xFFFFFFFF == 0xFFFFFF9C else dir_start(k, t, dirfd, path)
    return k.mounts.resolve(k.path_context(t), path, start=start,
                            follow=follow and not flags & AT_SYMLINK_NOFOLLOW)


def stat_of(desc) -> Stat:
    """fstat of an open description: its inode's, or the object's own
    (pipes, host stdio, sockets)."""
    if desc.inode is not None:
        return desc.inode.stat()
    own = getattr(desc.impl, "stat", None)
    if own is not None:
        return own()
    link = getattr(desc.impl, "link_name", None)
    if link is not None and link().startswith(b"anon_inode:"):
        # eventfd, epoll, pidfd...: Linux gives them all one inode, mode 0600, no type
        return Stat(mode=0o600, ino=ANON_INODE_INO, dev=ANON_INODE_DEV, nlink=1)
    raise fserr(errno.EBADF)


ANON_INODE_DEV, ANON_INODE_INO = 0xE, 1


TIMESPEC = struct.Struct("<qq")


def read_timespec_ns(t, addr: int) -> int:
    """A struct timespec from guest memory as nanoseconds (EINVAL if bad)."""
    sec, nsec = TIMESPEC.unpack(t.thread.read(addr, 16))
    if sec < 0 or not 0 <= nsec < 10**9:
        raise fserr(errno.EINVAL)
    return sec * 10**9 + nsec


def install_pair(t, addr: int, a, b, cloexec: bool) -> int:
    """Install two new descriptions (pipe, socketpair) and store their fds
    as int[2] at addr; if that faults, neither stays open (EFAULT)."""
    table = t.tg.fdtable
    fa = table.install(a, cloexec=cloexec)
    fb = table.install(b, cloexec=cloexec)
    try:
        t.thread.write(addr, struct.pack("<ii", fa, fb))
    except OSError:
        table.close(fa)
        table.close(fb)
        raise fserr(errno.EFAULT) from None
    return 0
