"""Extended attributes: the set/get/list/remove families on a path (following
symlinks), an lpath (not following) and an fd. Argument decoding in
Linux's order (fs/xattr.c); permissions and storage are vfs.ops' and the
filesystems'."""
from __future__ import annotations

import errno
from types import SimpleNamespace

from vfs import ops
from vfs.file import O_PATH
from vfs.inode import Inode, fserr
from vfs.path import Location

from .table import PARTIAL, syscall
from .util import AT_FDCWD, AT_SYMLINK_NOFOLLOW, resolve_at, s32, stat_of

XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
XATTR_LIST_MAX = 65536
NOTE = "security./trusted./user. where the filesystem stores them (tmpfs); POSIX ACLs cannot be set"


def _name(t, addr: int) -> bytes:
    """import_xattr_name: 1 to 255 bytes, else ERANGE."""
    if addr == 0:
        raise fserr(errno.EFAULT)
    try:
        name = t.thread.read_cstr(addr, XATTR_NAME_MAX + 1)
    except OSError as e:
        raise fserr(errno.ERANGE if e.errno == errno.ENAMETOOLONG else errno.EFAULT) from None
    if not name:
        raise fserr(errno.ERANGE)
    return name


class _NoXattrs(Inode):
    """A pipe or socket as the xattr calls see it: its file type for the
    namespace checks (user.* is EPERM/ENODATA there), and no xattrs."""

    def __init__(self, st):
        self._st = st

    def stat(self):
        return self._st


def _anonymous_location(desc) -> Location:
    return Location(SimpleNamespace(readonly=False), SimpleNamespace(inode=_NoXattrs(stat_of(desc))))


def _fd_location(t, fd: int):
    """What an fd names, as a function giving its location (called after
    the name is decoded, as Linux orders the errors). O_PATH descriptions
    do not count (EBADF)."""
    desc = t.tg.fdtable.get(s32(fd))
    if desc.flags & O_PATH:
        raise fserr(errno.EBADF)
    return lambda: desc.location if desc.location is not None else _anonymous_location(desc)


def _path_location(k, t, path: int, follow: bool):
    return resolve_at(k, t, AT_FDCWD, path, 0 if follow else AT_SYMLINK_NOFOLLOW)


def _set(k, t, loc_of, name_addr, value, size, flags):
    if flags & ~(ops.XATTR_CREATE | ops.XATTR_REPLACE):
        raise fserr(errno.EINVAL)
    name = _name(t, name_addr)
    if size > XATTR_SIZE_MAX:
        raise fserr(errno.E2BIG)
    data = t.thread.read(value, size) if size else b""
    ops.setxattr(loc_of(), k.path_context(t), name, data, flags)
    return 0


@syscall("setxattr", support=PARTIAL, note=NOTE)
def sys_setxattr(k, t, path, name, value, size, flags, *_):
    return _set(k, t, lambda: _path_location(k, t, path, True), name, value, size, flags)


@syscall("lsetxattr", support=PARTIAL, note=NOTE)
def sys_lsetxattr(k, t, path, name, value, size, flags, *_):
    return _set(k, t, lambda: _path_location(k, t, path, False), name, value, size, flags)


@syscall("fsetxattr", support=PARTIAL, note=NOTE)
def sys_fsetxattr(k, t, fd, name, value, size, flags, *_):
    return _set(k, t, _fd_location(t, fd), name, value, size, flags)


def _get(k, t, loc_of, name_addr, buf, size):
    name = _name(t, name_addr)
    return _reply(t, buf, size, ops.getxattr(loc_of(), k.path_context(t), name), XATTR_SIZE_MAX)


def _reply(t, buf, size, data: bytes, limit: int) -> int:
    """A value or name list to the caller's buffer: size 0 asks the length;
    too small a buffer is ERANGE, past the kernel's limit E2BIG."""
    if size:
        if len(data) > min(size, limit):
            raise fserr(errno.E2BIG if size >= limit else errno.ERANGE)
        t.thread.write(buf, data)
    return len(data)


@syscall("getxattr", support=PARTIAL, note=NOTE)
def sys_getxattr(k, t, path, name, buf, size, *_):
    return _get(k, t, lambda: _path_location(k, t, path, True), name, buf, size)


@syscall("lgetxattr", support=PARTIAL, note=NOTE)
def sys_lgetxattr(k, t, path, name, buf, size, *_):
    return _get(k, t, lambda: _path_location(k, t, path, False), name, buf, size)


@syscall("fgetxattr", support=PARTIAL, note=NOTE)
def sys_fgetxattr(k, t, fd, name, buf, size, *_):
    return _get(k, t, _fd_location(t, fd), name, buf, size)


def _list(k, t, loc, buf, size):
    names = ops.listxattr(loc, k.path_context(t))
    return _reply(t, buf, size, b"".join(n + b"\0" for n in names), XATTR_LIST_MAX)


@syscall("listxattr", support=PARTIAL, note=NOTE)
def sys_listxattr(k, t, path, buf, size, *_):
    return _list(k, t, _path_location(k, t, path, True), buf, size)


@syscall("llistxattr", support=PARTIAL, note=NOTE)
def sys_llistxattr(k, t, path, buf, size, *_):
    return _list(k, t, _path_location(k, t, path, False), buf, size)


@syscall("flistxattr", support=PARTIAL, note=NOTE)
def sys_flistxattr(k, t, fd, buf, size, *_):
    return _list(k, t, _fd_location(t, fd)(), buf, size)


def _remove(k, t, loc_of, name_addr):
    name = _name(t, name_addr)
    ops.removexattr(loc_of(), k.path_context(t), name)
    return 0


@syscall("removexattr", support=PARTIAL, note=NOTE)
def sys_removexattr(k, t, path, name, *_):
    return _remove(k, t, lambda: _path_location(k, t, path, True), name)


@syscall("lremovexattr", support=PARTIAL, note=NOTE)
def sys_lremovexattr(k, t, path, name, *_):
    return _remove(k, t, lambda: _path_location(k, t, path, False), name)


@syscall("fremovexattr", support=PARTIAL, note=NOTE)
def sys_fremovexattr(k, t, fd, name, *_):
    return _remove(k, t, _fd_location(t, fd), name)
