"""inotify_init/init1, inotify_add_watch, inotify_rm_watch, and the
signal side of fcntl(F_NOTIFY): argument checks in Linux's order; the
instances, watches and events live in vfs.inotify."""
from __future__ import annotations

import errno

from vfs import inotify, ops
from vfs.file import O_NONBLOCK, O_PATH, O_RDONLY, FileDescription
from vfs.inode import fserr
from vfs.path import R_OK

from .. import signals
from ..waiter import WaitQueue
from .table import PARTIAL, syscall
from .util import AT_FDCWD, resolve_at, s32

SIGIO = 29
POLL_MSG, SI_SIGIO, SI_KERNEL = 3, -5, 0x80
BAND_MSG = 0x441  # POLLIN | POLLRDNORM | POLLMSG
# signals whose own si_code values would clash with POLL_MSG (Linux's sig_specific_sicodes)
SPECIFIC_SICODES = {4, 5, 7, 8, 11, 17, 31}  # SIGILL SIGTRAP SIGBUS SIGFPE SIGSEGV SIGCHLD SIGSYS


@syscall("inotify_init", support=PARTIAL, note="as inotify_init1")
def sys_inotify_init(k, t, *_):
    return sys_inotify_init1(k, t, 0)


@syscall("inotify_init1", support=PARTIAL,
         note="readv fills its buffers from one read (Linux reads each iovec separately); "
              "lseek gives ESPIPE (Linux: 0)")
def sys_inotify_init1(k, t, flags, *_):
    if flags & ~(inotify.IN_CLOEXEC | inotify.IN_NONBLOCK):
        raise fserr(errno.EINVAL)
    group = inotify.Inotify(WaitQueue(), t.tg.creds.uid)
    desc = FileDescription(group, O_RDONLY | (flags & O_NONBLOCK))
    try:
        return t.tg.fdtable.install(desc, cloexec=bool(flags & inotify.IN_CLOEXEC))
    except OSError:
        group.release()
        raise


def _instance(t, fd) -> inotify.Inotify:
    impl = t.tg.fdtable.get(s32(fd)).impl
    if not isinstance(impl, inotify.Inotify):
        raise fserr(errno.EINVAL)
    return impl


@syscall("inotify_add_watch", support=PARTIAL,
         note="events come from changes made inside the sandbox through its VFS (not from exec's "
              "reads); IN_DELETE_SELF waits only for descriptions opened while something was watched")
def sys_inotify_add_watch(k, t, fd, path_addr, mask, *_):
    mask &= 0xFFFFFFFF
    if not mask & inotify.ALL_INOTIFY_BITS:
        raise fserr(errno.EINVAL)
    desc = t.tg.fdtable.get(s32(fd))
    if mask & inotify.IN_MASK_ADD and mask & inotify.IN_MASK_CREATE:
        raise fserr(errno.EINVAL)
    group = desc.impl
    if not isinstance(group, inotify.Inotify):
        raise fserr(errno.EINVAL)
    loc = resolve_at(k, t, AT_FDCWD, path_addr, follow=not mask & inotify.IN_DONT_FOLLOW)
    if mask & inotify.IN_ONLYDIR and not loc.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    ops.access(loc, k.path_context(t), R_OK)  # watching needs read permission
    return group.add_watch(loc.inode, mask)


@syscall("inotify_rm_watch")
def sys_inotify_rm_watch(k, t, fd, wd, *_):
    _instance(t, fd).rm_watch(s32(wd))
    return 0


def fcntl_notify(k, t, fd: int, desc, arg: int) -> int:
    """fcntl(fd, F_NOTIFY, arg): dnotify on an open directory. Like Linux
    it makes the caller's process the one signalled (F_SETOWN)."""
    if desc.flags & O_PATH:
        raise fserr(errno.EBADF)
    tg = t.tg

    def send(fd_now: int) -> None:
        sig = getattr(desc, "owner_signal", 0)
        if sig:
            code = SI_SIGIO if sig in SPECIFIC_SICODES else POLL_MSG
            info = (sig, 0, code, BAND_MSG, fd_now)
        else:
            sig, info = SIGIO, (SIGIO, 0, SI_KERNEL, 0, 0)
        signals.send_signal_to_group(k, tg, sig, info=info)
    inotify.dnotify(desc, fd, arg, send)
    return 0
