"""mount(2) and umount2(2): the sandbox's own mount table (vfs.mounts does
the work); never a host mount."""
from __future__ import annotations

import errno
import stat as S

from sentry.caps import CAP_SYS_ADMIN, task_capable
from sentry.task import RUNNING
from vfs import mounts
from vfs.inode import fserr
from vfs.path import Location

from .table import PARTIAL, syscall
from .util import AT_FDCWD, read_path, resolve_at

PAGE_SIZE = 4096


def _string(t, addr: int) -> bytes | None:
    """A mount(2) string argument: NULL is None."""
    return None if addr == 0 else read_path(t, addr)


def _data(t, addr: int) -> bytes | None:
    """The data page: up to a page, cut at its first NUL (Linux copies a
    page and terminates it)."""
    if addr == 0:
        return None
    try:
        return t.thread.read_cstr(addr, PAGE_SIZE)
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise fserr(errno.EFAULT) from None
    return t.thread.read(addr, PAGE_SIZE - 1)


def usage(k) -> mounts.Usage:
    """What live processes hold: cwd, root, executable and open files (a
    mount holding any is busy), and files open for writing (no read-only
    remount under them)."""
    u = mounts.Usage()
    for tg in list(k.pidns.groups.values()):
        if tg.state != RUNNING:
            continue  # a zombie has let go of its files
        for loc in (tg.fs.root, tg.fs.cwd, tg.exe):
            if isinstance(loc, Location):
                u.held.add(loc.mount)
        for desc, _cloexec in tg.fdtable.fds.values():
            if desc.location is not None:
                u.held.add(desc.location.mount)
                if desc.writable and desc.location.dentry.kind == S.S_IFREG:
                    u.writing.add(desc.location.mount)
    return u


@syscall("mount", support=PARTIAL,
         note="sandbox mounts only: tmpfs (size=, nr_inodes=, mode=, uid=, gid=), proc, sysfs, devpts, "
              "devtmpfs; bind (MS_REC), move, remount (MS_BIND too), propagation accepted without "
              "propagation; CAP_SYS_ADMIN only")
def sys_mount(k, t, source, target, fstype, flags, data, *_):
    fstype_s, source_s, data_s = _string(t, fstype), _string(t, source), _data(t, data)
    at = resolve_at(k, t, AT_FDCWD, target)
    ctx = k.path_context(t)
    mounts.mount(k.mounts, at, source_s, fstype_s, flags & 0xFFFFFFFF, data_s,
                 privileged=task_capable(t, CAP_SYS_ADMIN), find=lambda path: k.mounts.resolve(ctx, path),
                 usage=lambda: usage(k))
    return 0


@syscall("umount2", support=PARTIAL, note="MNT_DETACH, MNT_EXPIRE, UMOUNT_NOFOLLOW; MNT_FORCE ignored; "
                                          "CAP_SYS_ADMIN only")
def sys_umount2(k, t, target, flags, *_):
    if flags & ~mounts.UMOUNT_FLAGS & 0xFFFFFFFF:
        raise fserr(errno.EINVAL)
    loc = resolve_at(k, t, AT_FDCWD, target, follow=not flags & mounts.UMOUNT_NOFOLLOW)
    mounts.umount(k.mounts, loc, flags, privileged=task_capable(t, CAP_SYS_ADMIN), usage=lambda: usage(k))
    return 0
