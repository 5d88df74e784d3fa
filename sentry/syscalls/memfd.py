"""memfd_create: the syscall over sentry.memfd (seals are fcntl's)."""
from __future__ import annotations

import errno

from vfs.file import O_LARGEFILE, O_RDWR, FileDescription
from vfs.inode import fserr

from .. import memfd
from .table import PARTIAL, syscall


@syscall("memfd_create", support=PARTIAL,
         note="MFD_HUGETLB gives EINVAL (no hugetlbfs)")
def sys_memfd_create(k, t, uname, flags, *_):
    flags &= 0xFFFFFFFF
    memfd.check_flags(flags)
    try:
        # the name and its NUL must fit in NAME_MAX_LEN + 1 bytes
        name = t.thread.read_cstr(uname, memfd.NAME_MAX_LEN + 1)
    except OSError as e:
        raise fserr(errno.EINVAL if e.errno == errno.ENAMETOOLONG else errno.EFAULT) from None
    creds = t.tg.creds
    impl, loc, inode = memfd.create(name, flags, creds.fsuid, creds.fsgid)
    desc = FileDescription(impl, O_RDWR | O_LARGEFILE, loc, inode)
    try:
        return t.tg.fdtable.install(desc, cloexec=bool(flags & memfd.MFD_CLOEXEC))
    except OSError:
        impl.release()
        raise
