"""memfd_create(2) files and the file seals of fcntl(2).

A memfd is a regular file of a tmpfs that no mount shows (Linux's internal
shm mount) and no directory names: st_nlink is 0, its mode 0777 (0666
with MFD_NOEXEC_SEAL) whatever the umask, and /proc/PID/fd/N reads
"/memfd:NAME (deleted)". It has a Location on a private mount, so every
fd-based call (fstat, ftruncate, fchmod, mmap, reopening through
/proc/self/fd/N) works on it as on any file.

Seals are the inode's: checked by the inode's own write, truncate, chmod
and fallocate, so they hold whichever description or call gets there.
Ordinary tmpfs files answer F_GET_SEALS with F_SEAL_SEAL as Linux's do
(they are shmem files too); files of other filesystems with EINVAL.
"""
from __future__ import annotations

import errno
import stat as S

from vfs.inode import fserr
from vfs.path import Dentry, Location, Mount
from vfs.tmpfs import PAGE_SIZE, TmpFile, TmpFS

MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB, MFD_NOEXEC_SEAL, MFD_EXEC = 0x1, 0x2, 0x4, 0x8, 0x10
MFD_ALL_FLAGS = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC
MFD_HUGE_BITS = 0x3F << 26  # a huge page size, allowed with MFD_HUGETLB only
NAME_MAX_LEN = 249          # NAME_MAX less "memfd:"

F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8
F_SEAL_FUTURE_WRITE, F_SEAL_EXEC = 0x10, 0x20
ALL_SEALS = 0x3F
WRITE_SEALS = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE
FALLOC_FL_PUNCH_HOLE = 0x2


class MemfdFile(TmpFile):
    """A memfd's inode: a tmpfs file with seals."""

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int, seals: int):
        super().__init__(fs, mode, uid, gid)
        self.seals = seals

    def write_at(self, data: bytes, offset: int) -> int:
        if not data:
            return 0
        if self.seals & WRITE_SEALS:
            raise fserr(errno.EPERM)
        end = offset + len(data)
        if self.seals & F_SEAL_GROW and end > self.length:
            # Linux writes a page at a time and fails at the first piece
            # that would grow the file: whole pages before it are written.
            allowed = (self.length & ~(PAGE_SIZE - 1)) - offset
            if allowed <= 0:
                raise fserr(errno.EPERM)
            data = data[:allowed]
        return super().write_at(data, offset)

    def setattr(self, *, mode=None, uid=None, gid=None, size=None, atime_ns=None, mtime_ns=None) -> None:
        if mode is not None and self.seals & F_SEAL_EXEC and (mode ^ self.mode()) & 0o111:
            raise fserr(errno.EPERM)
        if size is not None and ((size < self.length and self.seals & F_SEAL_SHRINK) or
                                 (size > self.length and self.seals & F_SEAL_GROW)):
            raise fserr(errno.EPERM)
        super().setattr(mode=mode, uid=uid, gid=gid, size=size, atime_ns=atime_ns, mtime_ns=mtime_ns)

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        if mode & FALLOC_FL_PUNCH_HOLE:
            if self.seals & WRITE_SEALS:
                raise fserr(errno.EPERM)
        elif self.seals & F_SEAL_GROW and offset + length > self.length:
            raise fserr(errno.EPERM)
        super().fallocate(mode, offset, length)


class _Store:
    """The private tmpfs every memfd of the sandbox lives on."""

    def __init__(self):
        self.fs = TmpFS(mode=0o1777)
        root = Dentry(b"/", None, self.fs.root())
        self.mount = Mount(self.fs, root, None, None, source="tmpfs")


_store: _Store | None = None


def check_flags(flags: int) -> None:
    """memfd_create's flag checks, in Linux's order."""
    allowed = MFD_ALL_FLAGS | (MFD_HUGE_BITS if flags & MFD_HUGETLB else 0)
    if flags & ~allowed:
        raise fserr(errno.EINVAL)
    if flags & MFD_EXEC and flags & MFD_NOEXEC_SEAL:
        raise fserr(errno.EINVAL)


def create(name: bytes, flags: int, uid: int, gid: int):
    """A new memfd: (impl, Location, inode) for a FileDescription opened
    O_RDWR. name is what the guest passed (at most NAME_MAX_LEN bytes)."""
    global _store
    if flags & MFD_HUGETLB:
        raise fserr(errno.EINVAL)  # no hugetlbfs in the sandbox
    if _store is None:
        _store = _Store()
    if flags & MFD_NOEXEC_SEAL:
        mode, seals = 0o666, F_SEAL_EXEC
    else:
        mode, seals = 0o777, 0 if flags & MFD_ALLOW_SEALING else F_SEAL_SEAL
    inode = MemfdFile(_store.fs, S.S_IFREG | mode, uid, gid, seals)
    impl = inode.open(2)
    inode.drop_link()  # never named: freed with its last open description
    dentry = Dentry(b"memfd:" + name + b" (deleted)", _store.mount.root, inode)
    return impl, Location(_store.mount, dentry), inode


def get_seals(desc) -> int:
    inode = desc.inode
    if isinstance(inode, MemfdFile):
        return inode.seals
    if isinstance(inode, TmpFile):
        return F_SEAL_SEAL  # a tmpfs file made by open(2) is born sealed
    raise fserr(errno.EINVAL)


def add_seals(desc, seals: int, shared_mappings) -> int:
    """F_ADD_SEALS. shared_mappings(inode) says whether some process maps
    the file shared and writably (F_SEAL_WRITE then fails with EBUSY)."""
    if not desc.writable:
        raise fserr(errno.EPERM)
    seals &= 0xFFFFFFFF
    if seals & ~ALL_SEALS:
        raise fserr(errno.EINVAL)
    inode = desc.inode
    have = get_seals(desc)
    if have & F_SEAL_SEAL:
        raise fserr(errno.EPERM)
    if seals & F_SEAL_WRITE and not have & F_SEAL_WRITE and shared_mappings(inode):
        raise fserr(errno.EBUSY)
    if seals & F_SEAL_EXEC and inode.mode() & 0o111:
        # sealing exec on an executable file seals writes too (W^X)
        seals |= F_SEAL_SHRINK | F_SEAL_GROW | WRITE_SEALS
    inode.seals |= seals
    return 0


def shared_mapping_in(groups, inode) -> bool:
    """Does any live process map inode MAP_SHARED with write access
    possible (Linux's i_mmap_writable)? groups: the thread groups."""
    st = inode.stat()
    key = (st.dev, st.ino)
    seen = set()
    for tg in groups:
        mm = tg.mm
        if not tg.tasks or id(mm) in seen:
            continue
        seen.add(id(mm))
        for label in mm.labels:
            if label.shared and (label.dev, label.ino) == key and getattr(label, "maywrite", True):
                return True
    return False
