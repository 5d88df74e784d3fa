"""Syscalls on paths: open, stat, access, links, directories, cwd, and
attributes. Path walking and the operations themselves live in vfs."""
from __future__ import annotations

import errno
import struct

from vfs import ops
from vfs.file import O_CLOEXEC, O_CREAT, O_DIRECTORY, O_NOFOLLOW, O_PATH, O_TMPFILE, O_TRUNC
from vfs.inode import fserr, now_ns
from vfs.path import RESOLVE_ALL, RESOLVE_CACHED, RESOLVE_SCOPED

from .. import caps, fifo
from .table import syscall
from .util import (stat_of, AT_EMPTY_PATH, AT_FDCWD, AT_NO_AUTOMOUNT, AT_REMOVEDIR, AT_SYMLINK_FOLLOW,
                   AT_SYMLINK_NOFOLLOW, dir_start, encode_stat, read_path, resolve_at, s32, s64)

UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
AT_EACCESS = 0x200


def _open(k, t, dirfd, path_addr, flags, mode, resolve=0):
    desc = fifo.resume_open(t)  # the re-run of a FIFO open parked for its partner
    if desc is None:
        path = read_path(t, path_addr)
        start = dir_start(k, t, dirfd, path)
        ctx = k.path_context(t)
        if resolve:
            ctx.resolve = resolve
            if resolve & RESOLVE_SCOPED:  # the walk's root is where it starts
                ctx.root = start or _dirfd_location(t, dirfd)
        desc = ops.open_path(k.mounts, ctx, path, flags, mode, t.tg.fs.umask, start)
        fifo.wait_for_partner(t, desc)
    try:
        return t.tg.fdtable.install(desc, cloexec=bool(flags & O_CLOEXEC))
    except OSError:
        desc.impl.release()  # EMFILE: nothing holds the description
        raise


def _dirfd_location(t, dirfd):
    if s32(dirfd) == AT_FDCWD:
        return t.tg.fs.cwd
    loc = t.tg.fdtable.get(s32(dirfd)).location
    if loc is None or not loc.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    return loc


@syscall("open")
def sys_open(k, t, path, flags, mode, *_):
    return _open(k, t, AT_FDCWD, path, flags, mode)


@syscall("openat")
def sys_openat(k, t, dirfd, path, flags, mode, *_):
    return _open(k, t, dirfd, path, flags, mode)


@syscall("creat")
def sys_creat(k, t, path, mode, *_):
    return _open(k, t, AT_FDCWD, path, O_CREAT | 0o1 | 0o1000, mode)


OPEN_HOW_SIZE = 24
# openat2 refuses flags open(2) would ignore (Linux's VALID_OPEN_FLAGS)
VALID_OPEN_FLAGS = 0o37777703
O_PATH_FLAGS = O_DIRECTORY | O_NOFOLLOW | O_PATH | O_CLOEXEC
_O_TMPFILE_BIT = O_TMPFILE & ~O_DIRECTORY


@syscall("openat2", note="every RESOLVE_* flag; RESOLVE_CACHED gives EAGAIN for names not in the dentry cache")
def sys_openat2(k, t, dirfd, path, how, size, *_):
    if size < OPEN_HOW_SIZE:
        raise fserr(errno.EINVAL)
    if size > 4096:
        raise fserr(errno.E2BIG)
    raw = t.thread.read(how, size)
    if any(raw[OPEN_HOW_SIZE:]):
        raise fserr(errno.E2BIG)  # a newer struct's fields we do not know
    flags, mode, resolve = struct.unpack_from("<QQQ", raw)
    # build_open_flags' checks, in its order
    if flags & ~VALID_OPEN_FLAGS or resolve & ~RESOLVE_ALL:
        raise fserr(errno.EINVAL)
    if resolve & RESOLVE_SCOPED == RESOLVE_SCOPED:
        raise fserr(errno.EINVAL)
    creating = flags & (O_CREAT | _O_TMPFILE_BIT)
    if (mode & ~0o7777) if creating else mode:  # a mode only where a file may be made
        raise fserr(errno.EINVAL)
    if flags & O_PATH and flags & ~O_PATH_FLAGS:
        raise fserr(errno.EINVAL)
    if resolve & RESOLVE_CACHED and flags & (O_TRUNC | O_CREAT | _O_TMPFILE_BIT):
        raise fserr(errno.EAGAIN)
    return _open(k, t, dirfd, path, flags, mode, resolve)


def _stat_at(k, t, dirfd, path, buf, flags):
    if flags & AT_EMPTY_PATH and s32(dirfd) != AT_FDCWD and not read_path(t, path):
        st = stat_of(t.tg.fdtable.get(s32(dirfd)))  # pipes and sockets have no location
    else:
        st = resolve_at(k, t, dirfd, path, flags).inode.stat()
    t.thread.write(buf, encode_stat(st))
    return 0


@syscall("stat")
def sys_stat(k, t, path, buf, *_):
    return _stat_at(k, t, AT_FDCWD, path, buf, 0)


@syscall("lstat")
def sys_lstat(k, t, path, buf, *_):
    return _stat_at(k, t, AT_FDCWD, path, buf, AT_SYMLINK_NOFOLLOW)


@syscall("newfstatat")
def sys_newfstatat(k, t, dirfd, path, buf, flags, *_):
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | 0x800):
        raise fserr(errno.EINVAL)
    return _stat_at(k, t, dirfd, path, buf, flags)


STATX_BASIC = 0x7FF
STATX_MNT_ID = 0x1000
STATX__RESERVED = 0x80000000
AT_STATX_SYNC_TYPE = 0x6000  # FORCE_SYNC | DONT_SYNC: one or the other
STATX_FLAGS = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE


@syscall("statx")
def sys_statx(k, t, dirfd, path, flags, mask, buf, *_):
    if flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE or mask & STATX__RESERVED \
            or flags & ~STATX_FLAGS:
        raise fserr(errno.EINVAL)
    if flags & AT_EMPTY_PATH and s32(dirfd) != AT_FDCWD and not read_path(t, path):
        desc = t.tg.fdtable.get(s32(dirfd))
        st, mnt_id = stat_of(desc), desc.location.mount.id if desc.location else 0
    else:
        loc = resolve_at(k, t, dirfd, path, flags)
        st, mnt_id = loc.inode.stat(), loc.mount.id

    def ts(ns):
        return struct.pack("<qIi", ns // 10**9, ns % 10**9, 0)
    out = struct.pack("<IIQIIIHHQQQQ", STATX_BASIC | STATX_MNT_ID, st.blksize, 0, st.nlink, st.uid,
                      st.gid, st.mode, 0, st.ino, st.size, st.blocks, 0)
    out += ts(st.atime_ns) + ts(0) + ts(st.ctime_ns) + ts(st.mtime_ns)
    out += struct.pack("<IIIIQ", (st.rdev >> 8) & 0xFFF, st.rdev & 0xFF, 0, st.dev, mnt_id)
    t.thread.write(buf, out.ljust(256, b"\0"))
    return 0


def _access(k, t, dirfd, path, mode, flags):
    if mode & ~7:
        raise fserr(errno.EINVAL)
    loc = resolve_at(k, t, dirfd, path, flags)
    ctx = k.path_context(t)
    if not flags & AT_EACCESS:  # check with the real ids
        creds = t.tg.creds
        ctx.creds = creds.vfs()
        ctx.creds.fsuid, ctx.creds.fsgid = creds.uid, creds.gid
        ctx.creds.cap_effective = caps.for_real_ids(creds)
    ops.access(loc, ctx, mode)
    return 0


@syscall("access")
def sys_access(k, t, path, mode, *_):
    return _access(k, t, AT_FDCWD, path, mode, 0)


@syscall("faccessat")
def sys_faccessat(k, t, dirfd, path, mode, *_):
    return _access(k, t, dirfd, path, mode, 0)


@syscall("faccessat2")
def sys_faccessat2(k, t, dirfd, path, mode, flags, *_):
    if flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise fserr(errno.EINVAL)
    return _access(k, t, dirfd, path, mode, flags)


def _readlink(k, t, dirfd, path_addr, buf, size):
    if s32(size) <= 0:
        raise fserr(errno.EINVAL)
    loc = resolve_at(k, t, dirfd, path_addr, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH, follow=False)
    target = loc.inode.readlink()
    target = target[:size]
    t.thread.write(buf, target)
    return len(target)


@syscall("readlink")
def sys_readlink(k, t, path, buf, size, *_):
    return _readlink(k, t, AT_FDCWD, path, buf, size)


@syscall("readlinkat")
def sys_readlinkat(k, t, dirfd, path, buf, size, *_):
    return _readlink(k, t, dirfd, path, buf, size)


def _pathop(k, t, dirfd, path_addr):
    path = read_path(t, path_addr)
    return path, dir_start(k, t, dirfd, path), k.path_context(t)


@syscall("mkdir")
def sys_mkdir(k, t, path, mode, *_):
    return sys_mkdirat(k, t, AT_FDCWD, path, mode)


@syscall("mkdirat")
def sys_mkdirat(k, t, dirfd, path_addr, mode, *_):
    path, start, ctx = _pathop(k, t, dirfd, path_addr)
    ops.mkdir(k.mounts, ctx, path, mode, t.tg.fs.umask, start)
    return 0


FIFO_NOTE = "a FIFO opens as a sentry pipe shared by every open of the inode (sentry/fifo.py)"


@syscall("mknod", note=FIFO_NOTE)
def sys_mknod(k, t, path, mode, dev, *_):
    return sys_mknodat(k, t, AT_FDCWD, path, mode, dev)


@syscall("mknodat", note=FIFO_NOTE)
def sys_mknodat(k, t, dirfd, path_addr, mode, dev, *_):
    path, start, ctx = _pathop(k, t, dirfd, path_addr)
    ops.mknod(k.mounts, ctx, path, mode, dev, t.tg.fs.umask, start)
    return 0


@syscall("unlink")
def sys_unlink(k, t, path, *_):
    return sys_unlinkat(k, t, AT_FDCWD, path, 0)


@syscall("rmdir")
def sys_rmdir(k, t, path, *_):
    return sys_unlinkat(k, t, AT_FDCWD, path, AT_REMOVEDIR)


@syscall("unlinkat")
def sys_unlinkat(k, t, dirfd, path_addr, flags, *_):
    if flags & ~AT_REMOVEDIR:
        raise fserr(errno.EINVAL)
    path, start, ctx = _pathop(k, t, dirfd, path_addr)
    (ops.rmdir if flags & AT_REMOVEDIR else ops.unlink)(k.mounts, ctx, path, start)
    return 0


@syscall("symlink")
def sys_symlink(k, t, target, path, *_):
    return sys_symlinkat(k, t, target, AT_FDCWD, path)


@syscall("symlinkat")
def sys_symlinkat(k, t, target_addr, dirfd, path_addr, *_):
    target = read_path(t, target_addr)
    path, start, ctx = _pathop(k, t, dirfd, path_addr)
    ops.symlink(k.mounts, ctx, target, path, start)
    return 0


@syscall("link")
def sys_link(k, t, old, new, *_):
    return sys_linkat(k, t, AT_FDCWD, old, AT_FDCWD, new, 0)


@syscall("linkat")
def sys_linkat(k, t, olddirfd, old_addr, newdirfd, new_addr, flags, *_):
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise fserr(errno.EINVAL)
    old = resolve_at(k, t, olddirfd, old_addr, flags & AT_EMPTY_PATH,
                     follow=bool(flags & AT_SYMLINK_FOLLOW))
    path, start, ctx = _pathop(k, t, newdirfd, new_addr)
    ops.link(k.mounts, ctx, old, path, start)
    return 0


@syscall("rename")
def sys_rename(k, t, old, new, *_):
    return sys_renameat2(k, t, AT_FDCWD, old, AT_FDCWD, new, 0)


@syscall("renameat")
def sys_renameat(k, t, od, old, nd, new, *_):
    return sys_renameat2(k, t, od, old, nd, new, 0)


@syscall("renameat2", note="RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT (where the filesystem has them)")
def sys_renameat2(k, t, od, old_addr, nd, new_addr, flags, *_):
    old, ostart, ctx = _pathop(k, t, od, old_addr)
    new = read_path(t, new_addr)
    nstart = dir_start(k, t, nd, new)
    ops.rename(k.mounts, ctx, old, new, ostart, nstart, flags=flags & 0xFFFFFFFF)
    return 0


# --- attributes ---
@syscall("chmod")
def sys_chmod(k, t, path, mode, *_):
    return sys_fchmodat(k, t, AT_FDCWD, path, mode)


@syscall("fchmodat")
def sys_fchmodat(k, t, dirfd, path, mode, *_):
    loc = resolve_at(k, t, dirfd, path)
    ops.setattr(loc, k.path_context(t), mode=mode & 0o7777)
    return 0


@syscall("fchmodat2")
def sys_fchmodat2(k, t, dirfd, path, mode, flags, *_):
    loc = resolve_at(k, t, dirfd, path, flags)
    ops.setattr(loc, k.path_context(t), mode=mode & 0o7777)
    return 0


@syscall("fchmod")
def sys_fchmod(k, t, fd, mode, *_):
    desc = t.tg.fdtable.get(s32(fd))
    if desc.location is None or desc.flags & O_PATH:
        raise fserr(errno.EBADF)
    ops.setattr(desc.location, k.path_context(t), mode=mode & 0o7777)
    return 0


def _chown(k, t, loc, uid, gid):
    changes = {}
    if s32(uid) != -1:
        changes["uid"] = uid & 0xFFFFFFFF
    if s32(gid) != -1:
        changes["gid"] = gid & 0xFFFFFFFF
    if changes:
        ops.setattr(loc, k.path_context(t), **changes)
    return 0


@syscall("chown")
def sys_chown(k, t, path, uid, gid, *_):
    return _chown(k, t, resolve_at(k, t, AT_FDCWD, path), uid, gid)


@syscall("lchown")
def sys_lchown(k, t, path, uid, gid, *_):
    return _chown(k, t, resolve_at(k, t, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW), uid, gid)


@syscall("fchownat")
def sys_fchownat(k, t, dirfd, path, uid, gid, flags, *_):
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise fserr(errno.EINVAL)
    return _chown(k, t, resolve_at(k, t, dirfd, path, flags), uid, gid)


@syscall("fchown")
def sys_fchown(k, t, fd, uid, gid, *_):
    desc = t.tg.fdtable.get(s32(fd))
    if desc.location is None:
        raise fserr(errno.EBADF)
    return _chown(k, t, desc.location, uid, gid)


@syscall("truncate")
def sys_truncate(k, t, path, length, *_):
    if s64(length) < 0:
        raise fserr(errno.EINVAL)
    loc = resolve_at(k, t, AT_FDCWD, path)
    ops.setattr(loc, k.path_context(t), size=length)
    return 0


def _set_times(k, t, loc, atime_ns, mtime_ns, touch=False):
    """touch: both times are 'now' (times NULL or both UTIME_NOW), which
    the owner or anyone who may write can do; explicit times are the owner's."""
    changes = {}
    if atime_ns is not None:
        changes["atime_ns"] = atime_ns
    if mtime_ns is not None:
        changes["mtime_ns"] = mtime_ns
    if changes:
        ops.setattr(loc, k.path_context(t), touch=touch, **changes)
    return 0


def _ts(sec, nsec):
    if nsec == UTIME_NOW:
        return now_ns()
    if nsec == UTIME_OMIT:
        return None
    if not 0 <= nsec < 10**9:
        raise fserr(errno.EINVAL)
    return sec * 10**9 + nsec


@syscall("utimensat")
def sys_utimensat(k, t, dirfd, path_addr, times, flags, *_):
    if path_addr == 0:
        loc = t.tg.fdtable.get(s32(dirfd)).location
        if loc is None:
            raise fserr(errno.EBADF)
    else:
        loc = resolve_at(k, t, dirfd, path_addr, flags)
    if times == 0:
        now = now_ns()
        return _set_times(k, t, loc, now, now, touch=True)
    a_s, a_n, m_s, m_n = struct.unpack("<qqqq", t.thread.read(times, 32))
    return _set_times(k, t, loc, _ts(a_s, a_n), _ts(m_s, m_n), touch=a_n == m_n == UTIME_NOW)


def _utimes(k, t, loc, times):
    if times == 0:
        now = now_ns()
        return _set_times(k, t, loc, now, now, touch=True)
    a_s, a_u, m_s, m_u = struct.unpack("<qqqq", t.thread.read(times, 32))
    return _set_times(k, t, loc, a_s * 10**9 + a_u * 1000, m_s * 10**9 + m_u * 1000)


@syscall("utimes")
def sys_utimes(k, t, path, times, *_):
    return _utimes(k, t, resolve_at(k, t, AT_FDCWD, path), times)


@syscall("futimesat")
def sys_futimesat(k, t, dirfd, path, times, *_):
    return _utimes(k, t, resolve_at(k, t, dirfd, path), times)


@syscall("utime")
def sys_utime(k, t, path, times, *_):
    loc = resolve_at(k, t, AT_FDCWD, path)
    if times == 0:
        now = now_ns()
        return _set_times(k, t, loc, now, now, touch=True)
    a, m = struct.unpack("<qq", t.thread.read(times, 16))
    return _set_times(k, t, loc, a * 10**9, m * 10**9)


# --- working directory, root, umask ---
@syscall("chdir")
def sys_chdir(k, t, path, *_):
    loc = resolve_at(k, t, AT_FDCWD, path)
    return _set_cwd(k, t, loc)


def _set_cwd(k, t, loc):
    if not loc.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    ops.access(loc, k.path_context(t), 1)
    t.tg.fs.cwd = loc
    return 0


@syscall("fchdir")
def sys_fchdir(k, t, fd, *_):
    desc = t.tg.fdtable.get(s32(fd))
    if desc.location is None:
        raise fserr(errno.ENOTDIR)
    return _set_cwd(k, t, desc.location)


@syscall("getcwd")
def sys_getcwd(k, t, buf, size, *_):
    fs = t.tg.fs
    path = k.mounts.path_of(fs.cwd, fs.root) + b"\0"
    if len(path) > size:
        raise fserr(errno.ERANGE)
    t.thread.write(buf, path)
    return len(path)


@syscall("chroot")
def sys_chroot(k, t, path, *_):
    if not caps.task_capable(t, caps.CAP_SYS_CHROOT):
        raise fserr(errno.EPERM)
    loc = resolve_at(k, t, AT_FDCWD, path)
    if not loc.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    t.tg.fs.root = loc
    return 0


@syscall("umask")
def sys_umask(k, t, mask, *_):
    old = t.tg.fs.umask
    t.tg.fs.umask = mask & 0o777
    return old


# --- filesystems ---
def _statfs_bytes(loc) -> bytes:
    sf = loc.mount.fs.statfs()
    # f_flags: ST_VALID, the mount's ST_RDONLY/NOSUID/NODEV/NOEXEC, ST_RELATIME
    flags = 0x20 | (loc.mount.flags & 0xF) | 0x1000
    return struct.pack("<qqQQQQQiiqqq4q", sf.type, sf.bsize, sf.blocks, sf.bfree, sf.bavail,
                       sf.files, sf.ffree, 0, 0, sf.namelen, sf.frsize, flags, 0, 0, 0, 0)


@syscall("statfs")
def sys_statfs(k, t, path, buf, *_):
    t.thread.write(buf, _statfs_bytes(resolve_at(k, t, AT_FDCWD, path)))
    return 0


@syscall("fstatfs")
def sys_fstatfs(k, t, fd, buf, *_):
    desc = t.tg.fdtable.get(s32(fd))
    if desc.location is None:
        raise fserr(errno.ENOSYS)
    t.thread.write(buf, _statfs_bytes(desc.location))
    return 0


@syscall("sync")
def sys_sync(k, t, *_):
    return 0



