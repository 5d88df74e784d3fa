"""TmpFS: a filesystem held in the sentry's memory, as Linux's tmpfs.

Directories keep their children in creation order (readdir order), regular
files keep their bytes in a PageStore (allocated pages only, so a sparse
file costs what it holds), symlinks their target, device nodes, fifos and
sockets only their mode and rdev. The overlay filesystem uses a TmpFS as
its writable upper layer (whiteouts are 0:0 character devices, opaque
directories carry the trusted.overlay.opaque xattr).

Rules followed from Linux (mm/shmem.c and the man pages of the calls):
- st_nlink of a directory is 2 + its subdirectories, 0 once removed;
  st_size of a directory is 20 bytes per entry plus two (BOGO_DIRENT_SIZE).
- Timestamps: a create/link/unlink/rename touches the directories' mtime
  and ctime, a link count change the inode's ctime, a write, fallocate or
  size-changing truncate the file's mtime and ctime, every attribute or
  xattr change the ctime; reads update atime with relatime rules.
- A file unlinked while open keeps its data until the last open
  description is released; only then are its pages given back.
- Space: `max_bytes` (default half of the host's RAM) counts 4 KiB pages of
  file data (and of symlink targets of 128 bytes or more); `max_inodes`
  (default half the host's pages) is spent, as Linux spends it, in
  1024-byte units: one per inode, one per extra hard link, and the bytes
  of xattrs (40 + name + value each). Beyond either, ENOSPC. 0 means no
  limit. Growing a file with truncate makes a hole (no pages).
- xattrs: the security.*, trusted.* and user.* namespaces, listed in
  Linux's order (names descending). Who may touch which namespace is the
  VFS core's business (vfs.ops), not ours.
Permission checks are the VFS core's (vfs.ops), not ours.
"""
from __future__ import annotations

import bisect
import errno
import os
import stat as S

from .file import O_NOATIME
from .inode import (DirEntry, FileDescriptionImpl, Filesystem, Inode, InodeDirImpl, Stat, StatFS,
                    dtype_of, fserr, now_ns)

TMPFS_MAGIC = 0x01021994
PAGE_SIZE = 4096
BOGO_DIRENT_SIZE = 20          # what tmpfs adds to a directory's size per entry
BOGO_INODE_SIZE = 1024         # what an inode (or an extra hard link) costs of max_inodes
MAX_FILE_SIZE = (1 << 63) - 1  # MAX_LFS_FILESIZE on 64-bit Linux
SYMLINK_MAX = PAGE_SIZE - 1    # a target plus its NUL must fit in a page
SHORT_SYMLINK_LEN = 128        # targets (with NUL) up to this need no page
DAY_NS = 24 * 3600 * 10**9     # relatime refreshes an atime older than this

XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_PREFIXES = (b"security.", b"trusted.", b"user.")
POSIX_ACL_XATTRS = (b"system.posix_acl_access", b"system.posix_acl_default")
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def _round_up(n: int) -> int:
    return -(-n // PAGE_SIZE) * PAGE_SIZE


def _round_down(n: int) -> int:
    return n // PAGE_SIZE * PAGE_SIZE


def xattr_space(name: bytes, value: bytes) -> int:
    """What an xattr costs of the inode space (simple_xattr_space)."""
    return 40 + len(name) + len(value)


def _default_pages() -> int:
    """Half of physical memory in pages: tmpfs's default size and inode count."""
    try:
        return os.sysconf("SC_PHYS_PAGES") // 2
    except (OSError, ValueError):
        return (1 << 30) // PAGE_SIZE


class PageStore:
    """A sparse file's bytes: sorted, non-overlapping extents, each a
    page-aligned start and a bytearray of whole pages. Pages outside every
    extent are holes (they read as zeros and cost nothing). A write that
    continues an extent grows it in place, so a file written front to
    back is one bytearray."""
    __slots__ = ("starts", "bufs", "npages")

    def __init__(self):
        self.starts: list[int] = []
        self.bufs: list[bytearray] = []
        self.npages = 0

    def _first_touching(self, lo: int) -> int:
        """Index of the first extent that ends after lo."""
        i = bisect.bisect_right(self.starts, lo) - 1
        if i < 0 or self.starts[i] + len(self.bufs[i]) <= lo:
            i += 1
        return i

    def missing(self, lo: int, hi: int) -> int:
        """Pages of [lo, hi) (page-aligned) not yet allocated."""
        have = 0
        i = self._first_touching(lo)
        while i < len(self.starts) and self.starts[i] < hi:
            s = self.starts[i]
            have += min(hi, s + len(self.bufs[i])) - max(lo, s)
            i += 1
        return (hi - lo - have) // PAGE_SIZE

    def allocate(self, lo: int, hi: int) -> tuple[int, bytearray]:
        """Make [lo, hi) (page-aligned) one allocated run, zero-filled where
        it was a hole; returns (start, buffer) of the extent holding it."""
        starts, bufs = self.starts, self.bufs
        i = bisect.bisect_right(starts, lo) - 1
        if i >= 0 and starts[i] + len(bufs[i]) >= lo:  # overlaps lo, or ends right at it
            base, s, buf = i, starts[i], bufs[i]
            if s + len(buf) >= hi:
                return s, buf
        else:
            base, s, buf = None, lo, bytearray()
            i += 1
        first = i + 1 if base is not None else i
        last = first
        while last < len(starts) and starts[last] < hi:
            last += 1
        before = len(buf)
        for m in range(first, last):  # absorb the extents [lo, hi) reaches
            gap = starts[m] - (s + len(buf))
            if gap > 0:
                buf.extend(bytes(gap))
            buf.extend(bufs[m])
            before += len(bufs[m])
        if s + len(buf) < hi:
            buf.extend(bytes(hi - s - len(buf)))
        self.npages += (len(buf) - before) // PAGE_SIZE
        if base is None:
            starts[first:last] = [s]
            bufs[first:last] = [buf]
        else:
            del starts[first:last]
            del bufs[first:last]
        return s, buf

    def read(self, offset: int, size: int) -> bytes:
        end = offset + size
        i = self._first_touching(offset)
        starts, bufs = self.starts, self.bufs
        if i < len(starts):
            s, b = starts[i], bufs[i]
            if s <= offset and end <= s + len(b):  # one extent holds it all
                return bytes(b[offset - s:end - s])
        out, pos = [], offset
        while pos < end and i < len(starts) and starts[i] < end:
            s, b = starts[i], bufs[i]
            if s > pos:
                out.append(bytes(s - pos))
                pos = s
            stop = min(end, s + len(b))
            out.append(bytes(b[pos - s:stop - s]))
            pos = stop
            i += 1
        if pos < end:
            out.append(bytes(end - pos))
        return b"".join(out)

    def overwrite(self, offset: int, data: bytes) -> bool:
        """Store data at offset if one extent holds all of it (no page to
        allocate: the common rewrite); False otherwise."""
        i = bisect.bisect_right(self.starts, offset) - 1
        if i < 0:
            return False
        s, buf = self.starts[i], self.bufs[i]
        if offset + len(data) > s + len(buf):
            return False
        buf[offset - s:offset - s + len(data)] = data
        return True

    def write(self, offset: int, data: bytes) -> None:
        """Store data at offset, allocating its pages (charge them first)."""
        if self.starts and offset & (PAGE_SIZE - 1) == 0:
            s, buf = self.starts[-1], self.bufs[-1]
            if s + len(buf) == offset:  # appending to the last run: one copy, no zero fill
                buf += data
                pad = -len(data) & (PAGE_SIZE - 1)
                if pad:
                    buf += bytes(pad)
                self.npages += (len(data) + pad) // PAGE_SIZE
                return
        s, buf = self.allocate(_round_down(offset), _round_up(offset + len(data)))
        buf[offset - s:offset - s + len(data)] = data

    def zero(self, lo: int, hi: int) -> None:
        """Zero the allocated bytes of [lo, hi)."""
        i = self._first_touching(lo)
        while i < len(self.starts) and self.starts[i] < hi:
            s, b = self.starts[i], self.bufs[i]
            a, z = max(lo, s), min(hi, s + len(b))
            b[a - s:z - s] = bytes(z - a)
            i += 1

    def free(self, lo: int, hi: int) -> int:
        """Drop the pages of [lo, hi) (page-aligned); returns how many."""
        i = self._first_touching(lo)
        j, keep_s, keep_b, freed = i, [], [], 0
        while j < len(self.starts) and self.starts[j] < hi:
            s, b = self.starts[j], self.bufs[j]
            e = s + len(b)
            freed += min(hi, e) - max(lo, s)
            if e > hi:
                keep_s.append(hi)
                keep_b.append(b[hi - s:])
            if s < lo:
                del b[lo - s:]  # in place: truncation keeps the head
                keep_s.insert(0, s)
                keep_b.insert(0, b)
            j += 1
        self.starts[i:j] = keep_s
        self.bufs[i:j] = keep_b
        self.npages -= freed // PAGE_SIZE
        return freed // PAGE_SIZE

    def extents(self) -> list[tuple[int, int]]:
        """(start, end) of each allocated run, for tests and SEEK_DATA."""
        return [(s, s + len(b)) for s, b in zip(self.starts, self.bufs)]


class TmpFS(Filesystem):
    """One tmpfs instance. mode/uid/gid are its root directory's (tmpfs's
    default root mode is 1777); max_bytes limits file data (rounded up to
    pages), max_inodes the inodes; None takes Linux's defaults, 0 means
    unlimited."""
    name = "tmpfs"
    magic = TMPFS_MAGIC

    def __init__(self, *, mode: int = 0o1777, uid: int = 0, gid: int = 0,
                 max_bytes: int | None = None, max_inodes: int | None = None):
        super().__init__()
        self.max_blocks = _default_pages() if max_bytes is None else _round_up(max_bytes) // PAGE_SIZE
        self.max_inodes = _default_pages() if max_inodes is None else max_inodes
        self.used_blocks = 0
        self.free_ispace = self.max_inodes * BOGO_INODE_SIZE
        self._root = TmpDir(self, S.S_IFDIR | (mode & 0o7777), uid, gid, parent=None)

    def root(self) -> "TmpDir":
        return self._root

    def statfs(self) -> StatFS:
        sf = StatFS(type=self.magic, bsize=PAGE_SIZE, namelen=255, frsize=PAGE_SIZE)
        if self.max_blocks:
            sf.blocks = self.max_blocks
            sf.bfree = sf.bavail = self.max_blocks - self.used_blocks
        if self.max_inodes:
            sf.files = self.max_inodes
            sf.ffree = self.free_ispace // BOGO_INODE_SIZE
        return sf

    # --- accounting ---
    def reserve_ispace(self, amount: int) -> None:
        """Take inode space (an inode, a hard link, an xattr) or ENOSPC."""
        if self.max_inodes:
            if self.free_ispace < amount:
                raise fserr(errno.ENOSPC)
            self.free_ispace -= amount

    def release_ispace(self, amount: int) -> None:
        if self.max_inodes:
            self.free_ispace += amount

    def charge_pages(self, n: int) -> None:
        """Take n pages of data, or ENOSPC (and nothing taken)."""
        if self.max_blocks and self.used_blocks + n > self.max_blocks:
            raise fserr(errno.ENOSPC)
        self.used_blocks += n

    def uncharge_pages(self, n: int) -> None:
        self.used_blocks -= n


class TmpInode(Inode):
    """What every tmpfs inode has: identity, owner, mode, times, xattrs."""

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int, rdev: int = 0):
        fs.reserve_ispace(BOGO_INODE_SIZE)
        self.fs = fs
        self.ino = fs.next_ino()
        self._mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.links = 1  # names pointing here (directories compute theirs)
        self.freed = False
        t = now_ns()
        self.atime_ns = self.mtime_ns = self.ctime_ns = t
        self.xattrs: dict[bytes, bytes] | None = None

    # --- attributes ---
    def nlink(self) -> int:
        return max(self.links, 0)

    def size(self) -> int:
        return 0

    def blocks(self) -> int:
        return 0

    def stat(self) -> Stat:
        return Stat(mode=self._mode, ino=self.ino, dev=self.fs.dev, nlink=self.nlink(),
                    uid=self.uid, gid=self.gid, rdev=self.rdev, size=self.size(),
                    blksize=PAGE_SIZE, blocks=self.blocks(), atime_ns=self.atime_ns,
                    mtime_ns=self.mtime_ns, ctime_ns=self.ctime_ns)

    def mode(self) -> int:
        return self._mode

    def setattr(self, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None,
                atime_ns: int | None = None, mtime_ns: int | None = None) -> None:
        now = now_ns()
        touched = False
        if size is not None:
            # first, so that a failing truncate changes nothing else; the
            # times move even when the size does not (do_truncate)
            self._resize(size)
            self.mtime_ns = now
            touched = True
        if uid is not None or gid is not None:
            if uid is not None:
                self.uid = uid
            if gid is not None:
                self.gid = gid
            if not S.S_ISDIR(self._mode):
                # chown drops set-user-ID, and set-group-ID when it means
                # "setgid" rather than mandatory locking (group exec set)
                kill = S.S_ISUID | (S.S_ISGID if self._mode & S.S_IXGRP else 0)
                self._mode &= ~kill
            touched = True
        if mode is not None:
            self._mode = S.S_IFMT(self._mode) | (mode & 0o7777)
            touched = True
        if atime_ns is not None:
            self.atime_ns = atime_ns
            touched = True
        if mtime_ns is not None:
            self.mtime_ns = mtime_ns
            touched = True
        if touched:
            self.ctime_ns = now

    def _resize(self, size: int) -> bool:
        """Truncate to size; True if the size changed."""
        raise fserr(errno.EISDIR if S.S_ISDIR(self._mode) else errno.EINVAL)

    def touch_atime(self) -> None:
        """relatime: refresh atime if it is older than mtime or ctime, or a day old."""
        now = now_ns()
        if self.atime_ns <= self.mtime_ns or self.atime_ns <= self.ctime_ns or \
                now - self.atime_ns >= DAY_NS:
            self.atime_ns = now

    # --- extended attributes (no permission checks: vfs.ops does those) ---
    @staticmethod
    def _check_xattr_name(name: bytes) -> None:
        """tmpfs's handlers: security., trusted. and user.; a bare prefix is EINVAL."""
        for prefix in XATTR_PREFIXES:
            if name.startswith(prefix):
                if len(name) == len(prefix):
                    raise fserr(errno.EINVAL)
                return
        raise fserr(errno.EOPNOTSUPP)

    def getxattr(self, name: bytes) -> bytes:
        if name in POSIX_ACL_XATTRS:
            raise fserr(errno.ENODATA)  # no ACLs are ever set
        self._check_xattr_name(name)
        if not self.xattrs or name not in self.xattrs:
            raise fserr(errno.ENODATA)
        return self.xattrs[name]

    def setxattr(self, name: bytes, value: bytes, flags: int = 0) -> None:
        self._check_xattr_name(name)
        value = bytes(value)
        old = self.xattrs.get(name) if self.xattrs else None
        self.fs.reserve_ispace(xattr_space(name, value))
        if (flags & XATTR_CREATE and old is not None) or (flags & XATTR_REPLACE and old is None):
            self.fs.release_ispace(xattr_space(name, value))
            raise fserr(errno.EEXIST if old is not None else errno.ENODATA)
        if old is not None:
            self.fs.release_ispace(xattr_space(name, old))
        if self.xattrs is None:
            self.xattrs = {}
        self.xattrs[name] = value
        self.ctime_ns = now_ns()

    def listxattr(self) -> list[bytes]:
        return sorted(self.xattrs or (), reverse=True)

    def removexattr(self, name: bytes) -> None:
        if name in POSIX_ACL_XATTRS:
            raise fserr(errno.ENODATA)
        self._check_xattr_name(name)
        if not self.xattrs or name not in self.xattrs:
            raise fserr(errno.ENODATA)
        self.fs.release_ispace(xattr_space(name, self.xattrs.pop(name)))
        self.ctime_ns = now_ns()

    # --- lifetime ---
    def drop_link(self) -> None:
        """One name fewer; an extra link's inode space goes back at once,
        the inode's own with the last name and the last open description."""
        if self.links > 1:
            self.fs.release_ispace(BOGO_INODE_SIZE)
        self.links -= 1
        self.ctime_ns = now_ns()
        self._maybe_free()

    def _maybe_free(self) -> None:
        if self.links <= 0 and not self.freed:
            self._free()

    def _free(self) -> None:
        """Give back what the inode holds (evict)."""
        self.freed = True
        space = BOGO_INODE_SIZE + sum(xattr_space(n, v) for n, v in (self.xattrs or {}).items())
        self.fs.release_ispace(space)

    def nlink_is_zero(self) -> bool:
        return self.links <= 0


class TmpFile(TmpInode):
    """A regular file: st_size is `length`; its bytes live in a PageStore,
    where holes (never written, truncated away, punched) read as zeros."""

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int):
        super().__init__(fs, S.S_IFREG | (mode & 0o7777), uid, gid)
        self.store = PageStore()
        self.length = 0
        self.opens = 0
        self.linkable = False  # an O_TMPFILE file without O_EXCL may get a name

    def size(self) -> int:
        return self.length

    def blocks(self) -> int:
        return self.store.npages * (PAGE_SIZE // 512)

    def open(self, flags: int) -> "TmpFileImpl":
        return TmpFileImpl(self, flags)

    def read_at(self, size: int, offset: int) -> bytes:
        end = min(offset + size, self.length)
        if offset >= end:
            return b""
        return self.store.read(offset, end - offset)

    def _charge_range(self, lo: int, hi: int) -> None:
        """Charge the pages [lo, hi) needs that it does not have."""
        missing = self.store.missing(_round_down(lo), _round_up(hi))
        if missing:
            self.fs.charge_pages(missing)

    def write_at(self, data: bytes, offset: int) -> int:
        if not data:
            return 0
        if offset >= MAX_FILE_SIZE:
            raise fserr(errno.EFBIG)
        data = data[:MAX_FILE_SIZE - offset]
        end = offset + len(data)
        if not self.store.overwrite(offset, data):
            self._charge_range(offset, end)
            self.store.write(offset, data)
        if end > self.length:
            self.length = end
        self.mtime_ns = self.ctime_ns = now_ns()
        return len(data)

    def _resize(self, size: int) -> bool:
        if size < 0:
            raise fserr(errno.EINVAL)
        if size > MAX_FILE_SIZE:
            raise fserr(errno.EFBIG)
        if size == self.length:
            return False
        if size < self.length:
            self._drop_from(size)
        self.length = size
        return True

    def _drop_from(self, offset: int) -> None:
        """Truncation: free the pages past offset, zero the rest of its page."""
        keep = _round_up(offset)
        self.store.zero(offset, keep)
        self.fs.uncharge_pages(self.store.free(keep, 1 << 64))

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        """shmem_fallocate: allocate (mode 0, KEEP_SIZE) or punch a hole
        (PUNCH_HOLE|KEEP_SIZE). The VFS core has checked the mode, the
        description and offset + length against MAX_FILE_SIZE."""
        if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
            raise fserr(errno.EOPNOTSUPP)
        end = offset + length
        if mode & FALLOC_FL_PUNCH_HOLE:
            lo, hi = _round_up(offset), _round_down(end)
            if lo < hi:
                self.store.zero(offset, lo)
                self.store.zero(hi, end)
                self.fs.uncharge_pages(self.store.free(lo, hi))
            else:
                self.store.zero(offset, end)
        else:
            lo, hi = _round_down(offset), _round_up(end)
            if self.fs.max_blocks and (hi - lo) // PAGE_SIZE > self.fs.max_blocks:
                raise fserr(errno.ENOSPC)  # could never fit: say so before trying
            self._charge_range(lo, hi)
            self.store.allocate(lo, hi)
            if not mode & FALLOC_FL_KEEP_SIZE and end > self.length:
                self.length = end
        self.mtime_ns = self.ctime_ns = now_ns()

    def data_extents(self) -> list[tuple[int, int]]:
        return self.store.extents()

    def _maybe_free(self) -> None:
        if self.links <= 0 and self.opens == 0 and not self.freed:
            self.fs.uncharge_pages(self.store.npages)
            self.store = PageStore()
            self._free()

    def released(self) -> None:
        self.opens -= 1
        self._maybe_free()


class TmpFileImpl(FileDescriptionImpl):
    """An open regular file; it holds the inode, so an unlinked file stays
    readable and writable through it."""
    seekable = True

    def __init__(self, inode: TmpFile, flags: int):
        self.inode = inode
        self.noatime = bool(flags & O_NOATIME)
        inode.opens += 1

    def pread(self, size: int, offset: int) -> bytes:
        if not self.noatime:
            self.inode.touch_atime()
        return self.inode.read_at(size, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return self.inode.write_at(data, offset)

    def size(self) -> int:
        return self.inode.length

    def data_ranges(self, size: int) -> list[tuple[int, int]]:
        """(offset, length) of the runs below size that hold data; the rest
        are holes (SEEK_DATA/SEEK_HOLE, copies that skip holes)."""
        return [(s, min(e, size) - s) for s, e in self.inode.data_extents() if s < size]

    def release(self) -> None:
        if self.inode is not None:
            self.inode.released()
            self.inode = None


class TmpSymlink(TmpInode):
    """A symlink; a target of SHORT_SYMLINK_LEN bytes or more (with its NUL)
    takes a page, as on Linux."""

    def __init__(self, fs: TmpFS, target: bytes, uid: int, gid: int):
        super().__init__(fs, S.S_IFLNK | 0o777, uid, gid)
        self.target = bytes(target)
        self.pages = 0
        if len(self.target) + 1 > SHORT_SYMLINK_LEN:
            try:
                fs.charge_pages(1)
            except OSError:
                self._free()
                raise
            self.pages = 1

    def size(self) -> int:
        return len(self.target)

    def blocks(self) -> int:
        return self.pages * (PAGE_SIZE // 512)

    def readlink(self) -> bytes:
        self.touch_atime()
        return self.target

    def open(self, flags: int) -> FileDescriptionImpl:
        raise fserr(errno.ELOOP)

    def _free(self) -> None:
        self.fs.uncharge_pages(self.pages)
        self.pages = 0
        super()._free()


class TmpSpecial(TmpInode):
    """A fifo, socket or device node: only its mode and rdev are stored.
    Opening one is the sentry's business (vfs.ops device hook, pipes), so
    open() here fails with ENXIO."""

    def __init__(self, fs: TmpFS, mode: int, rdev: int, uid: int, gid: int):
        kind = S.S_IFMT(mode)
        super().__init__(fs, mode, uid, gid, rdev if kind in (S.S_IFCHR, S.S_IFBLK) else 0)


class TmpDir(TmpInode):
    """A directory. `parent` is None for the root and for a removed
    directory; rename uses the chain to refuse moving a directory under
    itself."""

    def __init__(self, fs: TmpFS, mode: int, uid: int, gid: int, parent: "TmpDir | None"):
        super().__init__(fs, mode, uid, gid)
        self.parent = parent
        self.children: dict[bytes, TmpInode] = {}
        self.subdirs = 0
        self.removed = False

    def nlink(self) -> int:
        return 0 if self.removed else 2 + self.subdirs

    def size(self) -> int:
        return BOGO_DIRENT_SIZE * (2 + len(self.children))

    def open(self, flags: int) -> InodeDirImpl:
        return InodeDirImpl(self)

    # --- reading ---
    def lookup(self, name: bytes) -> TmpInode:
        try:
            return self.children[name]
        except KeyError:
            raise fserr(errno.ENOENT, name) from None

    def readdir(self) -> list[DirEntry]:
        self.touch_atime()
        return self.entries()

    def entries(self) -> list[DirEntry]:
        """readdir without the atime update, for the overlay's own looks."""
        return [DirEntry(name, child.ino, dtype_of(child._mode))
                for name, child in self.children.items()]

    # --- making entries ---
    def _check_new(self, name: bytes) -> None:
        if not name or name in (b".", b"..") or b"/" in name:
            raise fserr(errno.EINVAL)
        if self.removed:
            raise fserr(errno.ENOENT)  # creating in a deleted directory
        if name in self.children:
            raise fserr(errno.EEXIST)

    def _owner_for_new(self, mode: int, gid: int) -> tuple[int, int]:
        """A set-group-ID directory passes its group on, and its setgid bit
        to new subdirectories (inode_init_owner)."""
        if self._mode & S.S_ISGID:
            gid = self.gid
            if S.S_ISDIR(mode):
                mode |= S.S_ISGID
        return mode, gid

    def _attach(self, name: bytes, child: TmpInode) -> TmpInode:
        self.children[name] = child
        if isinstance(child, TmpDir):
            self.subdirs += 1
            child.parent = self
        self.mtime_ns = self.ctime_ns = now_ns()
        return child

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> TmpFile:
        self._check_new(name)
        mode, gid = self._owner_for_new(S.S_IFREG | (mode & 0o7777), gid)
        return self._attach(name, TmpFile(self.fs, mode, uid, gid))

    def tmpfile(self, mode: int, uid: int, gid: int, linkable: bool = True) -> TmpFile:
        """O_TMPFILE: a regular file with no name yet (st_nlink 0); it
        lives while open, and linkat may name it if `linkable`."""
        if self.removed:
            raise fserr(errno.ENOENT)
        mode, gid = self._owner_for_new(S.S_IFREG | (mode & 0o7777), gid)
        f = TmpFile(self.fs, mode, uid, gid)
        f.links = 0
        f.linkable = linkable
        return f

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> "TmpDir":
        self._check_new(name)
        mode, gid = self._owner_for_new(S.S_IFDIR | (mode & 0o7777), gid)
        return self._attach(name, TmpDir(self.fs, mode, uid, gid, parent=self))

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> TmpInode:
        kind = S.S_IFMT(mode)
        if kind in (0, S.S_IFREG):
            return self.create(name, mode, uid, gid)
        if kind not in (S.S_IFCHR, S.S_IFBLK, S.S_IFIFO, S.S_IFSOCK):
            raise fserr(errno.EINVAL)
        self._check_new(name)
        mode, gid = self._owner_for_new(kind | (mode & 0o7777), gid)
        return self._attach(name, TmpSpecial(self.fs, mode, rdev, uid, gid))

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> TmpSymlink:
        if not target:
            raise fserr(errno.ENOENT)
        if len(target) > SYMLINK_MAX:
            raise fserr(errno.ENAMETOOLONG)
        self._check_new(name)
        _, gid = self._owner_for_new(S.S_IFLNK, gid)
        return self._attach(name, TmpSymlink(self.fs, target, uid, gid))

    def link(self, name: bytes, target: Inode) -> None:
        if not isinstance(target, TmpInode) or target.fs is not self.fs:
            raise fserr(errno.EXDEV)
        if isinstance(target, TmpDir):
            raise fserr(errno.EPERM)
        self._check_new(name)
        if target.nlink_is_zero() and not getattr(target, "linkable", False):
            raise fserr(errno.ENOENT)  # no linking an unlinked file back in (O_TMPFILE aside)
        if target.links > 0:
            self.fs.reserve_ispace(BOGO_INODE_SIZE)  # each extra name costs an inode
        if isinstance(target, TmpFile):
            target.linkable = False  # an O_TMPFILE file gets one chance
        target.links = max(target.links, 0) + 1
        target.ctime_ns = now_ns()
        self._attach(name, target)

    # --- removing entries ---
    def _detach(self, name: bytes) -> TmpInode:
        child = self.children.pop(name)
        if isinstance(child, TmpDir):
            self.subdirs -= 1
        self.mtime_ns = self.ctime_ns = now_ns()
        return child

    @staticmethod
    def _forget(child: TmpInode) -> None:
        """child lost a name (unlink, or replaced by rename)."""
        if isinstance(child, TmpDir):
            child.removed = True
            child.parent = None
            child.ctime_ns = now_ns()
            child.links = 0
            child._maybe_free()
        else:
            child.drop_link()

    def unlink(self, name: bytes) -> None:
        child = self.lookup(name)
        if isinstance(child, TmpDir):
            raise fserr(errno.EISDIR)
        self._forget(self._detach(name))

    def rmdir(self, name: bytes) -> None:
        child = self.lookup(name)
        if not isinstance(child, TmpDir):
            raise fserr(errno.ENOTDIR)
        if child.children:
            raise fserr(errno.ENOTEMPTY)
        self._forget(self._detach(name))

    def is_ancestor_of(self, d: "TmpDir | None") -> bool:
        """Is self d or above it?"""
        while d is not None:
            if d is self:
                return True
            d = d.parent
        return False

    def _rename_checks(self, name: bytes, new_dir: Inode, new_name: bytes
                       ) -> "tuple[TmpInode, TmpInode | None] | None":
        """rename(2)'s checks in Linux's order: the source moving under
        itself, the target holding the source, the same-file no-op (None),
        the type checks, emptiness. Returns (source, target or None)."""
        if not isinstance(new_dir, TmpDir) or new_dir.fs is not self.fs:
            raise fserr(errno.EXDEV)
        src = self.lookup(name)
        if new_dir.removed:
            raise fserr(errno.ENOENT)
        if not new_name or new_name in (b".", b"..") or b"/" in new_name:
            raise fserr(errno.EINVAL)
        src_is_dir = isinstance(src, TmpDir)
        if src_is_dir and src.is_ancestor_of(new_dir):
            raise fserr(errno.EINVAL)
        target = new_dir.children.get(new_name)
        if isinstance(target, TmpDir) and target.is_ancestor_of(self):
            raise fserr(errno.ENOTEMPTY)  # over a directory holding the source
        if target is src:
            return None  # two names of one file: rename does nothing
        if target is not None:
            target_is_dir = isinstance(target, TmpDir)
            if src_is_dir and not target_is_dir:
                raise fserr(errno.ENOTDIR)
            if target_is_dir and not src_is_dir:
                raise fserr(errno.EISDIR)
            if target_is_dir and target.children:
                raise fserr(errno.ENOTEMPTY)
        return src, target

    def _move(self, name: bytes, new_dir: "TmpDir", new_name: bytes, target) -> TmpInode:
        if target is not None:
            self._forget(new_dir._detach(new_name))
        src = self._detach(name)
        new_dir._attach(name=new_name, child=src)
        src.ctime_ns = now_ns()
        return src

    def rename(self, name: bytes, new_dir: Inode, new_name: bytes) -> None:
        checked = self._rename_checks(name, new_dir, new_name)
        if checked is not None:
            self._move(name, new_dir, new_name, checked[1])

    def rename_whiteout(self, name: bytes, new_dir: Inode, new_name: bytes, uid: int, gid: int) -> None:
        """RENAME_WHITEOUT: rename, leaving a 0:0 character device (an
        overlay whiteout) under the old name. The whiteout is made first,
        so running out of inodes changes nothing."""
        checked = self._rename_checks(name, new_dir, new_name)
        if checked is None:
            return
        mode, gid = self._owner_for_new(S.S_IFCHR, gid)
        whiteout = TmpSpecial(self.fs, mode, 0, uid, gid)
        self._move(name, new_dir, new_name, checked[1])
        self._attach(name, whiteout)

    def exchange(self, name: bytes, new_dir: Inode, new_name: bytes) -> None:
        """RENAME_EXCHANGE: swap two existing entries of any types. Each
        name keeps its place in readdir order."""
        if not isinstance(new_dir, TmpDir) or new_dir.fs is not self.fs:
            raise fserr(errno.EXDEV)
        a = self.lookup(name)
        b = new_dir.lookup(new_name)
        a_dir, b_dir = isinstance(a, TmpDir), isinstance(b, TmpDir)
        if (a_dir and a.is_ancestor_of(new_dir)) or (b_dir and b.is_ancestor_of(self)):
            raise fserr(errno.EINVAL)
        if a is b:
            return
        self.children[name], new_dir.children[new_name] = b, a
        if a_dir != b_dir:
            self.subdirs += b_dir - a_dir
            new_dir.subdirs += a_dir - b_dir
        if a_dir:
            a.parent = new_dir
        if b_dir:
            b.parent = self
        now = now_ns()
        for inode in (self, new_dir):
            inode.mtime_ns = inode.ctime_ns = now
        a.ctime_ns = b.ctime_ns = now
