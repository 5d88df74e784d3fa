"""OverlayFS: a read-only lower filesystem under a writable TmpFS upper,
the sandbox's root (the host's files through the gofer below, the guest's
changes above), after Linux's overlayfs with redirect_dir=on and xino.

- Lookup prefers the upper layer. A name deleted from the lower layer is
  hidden by a whiteout in the upper one (a 0:0 character device, as
  Linux's); a directory removed and made again is opaque (the upper
  directory carries trusted.overlay.opaque=y) so the lower one's entries
  stay hidden. readdir merges upper and lower entries, minus whiteouts,
  each name once; a directory reads its lower listing once and keeps it
  (the lower layer never changes: the gofer's caching assumes the same).
- The lower layer is never changed. The first write, open for writing,
  truncation, attribute or xattr change or hard link of a lower file
  copies it up (data, mode, owner, times, xattrs, symlink target) with
  every ancestor directory not yet in the upper layer; the parent's times
  are kept.
- rename (and RENAME_EXCHANGE) copies up what it moves; RENAME_WHITEOUT
  is EINVAL, as on Linux. Renaming a directory that has a lower part
  copies up that directory alone and renames it in the upper layer,
  where it carries trusted.overlay.redirect=/its/lower/path: lookup then
  merges it with that lower directory, not with whatever the lower layer
  has at its new name (Linux's redirect_dir). The old name gets a
  whiteout. So `mv /etc /etc2` is one rename, not a copy.
- The overlay's own xattrs (trusted.overlay.*) are hidden from listxattr
  and refused (EOPNOTSUPP) to getxattr/setxattr/removexattr, as Linux's.
- An OverlayInode stays the same object across copy-up (the dentry cache
  and open descriptions hold it) and keeps its st_ino; the names of one
  upper file (hard links) share one OverlayInode while it is held, so
  shared mappings and the page cache see one file. An open regular file
  reads and writes whichever layer holds the file now: a description
  opened before a copy-up follows it (Linux since 4.19). Every file shows
  the overlay's st_dev. Inode numbers (Linux's xino): a file from the
  lower layer shows the lower inode number, before and after copy-up or
  a rename; a file made in the upper layer shows UPPER_INO_TAG | its
  upper number, which cannot collide unless the lower filesystem uses
  bit 62 of its inode numbers. readdir's d_ino is stat's st_ino. Which
  lower number an upper inode came from is kept by the overlay
  (`origin`), not in an xattr: a second overlay over the same upper
  layer would show upper numbers for copied-up files.
- statfs: type overlay; free space and free inodes are the upper's (where
  writes go); the totals add what the lower layer uses, so df and
  shutil.disk_usage count the image's files as used. (Linux reports the
  upper filesystem's numbers alone, which for a fresh tmpfs upper say
  nothing is used: CPython's test_shutil would fail on that.)

Departures from Linux:
- statfs, above; and a merged directory's st_nlink counts its
  subdirectories (2 + n, as any other directory) where Linux says 1.
- copying up one name of a lower file with several hard links breaks the
  link: the copy has st_nlink 1 and the other names keep the lower data
  (Linux does the same without index=on).
- a lower file that is deleted while open cannot have its attributes
  changed through that description (ENOENT): there is no name left to
  copy it up to.
- a lower layer without xattr support (EOPNOTSUPP) shows no xattrs
  (ENODATA, an empty list), since the overlay itself supports them.
"""
from __future__ import annotations

import errno
import stat as S
import weakref

from .file import O_ACCMODE, O_NOATIME, O_RDONLY, O_TRUNC, O_WRONLY
from .inode import (DT_CHR, DT_DIR, DirEntry, FileDescriptionImpl, Filesystem, Inode, InodeDirImpl, Stat,
                    StatFS, fserr, now_ns)
from .tmpfs import TmpFS

OVERLAYFS_SUPER_MAGIC = 0x794C7630
PRIVATE_XATTR_PREFIX = b"trusted.overlay."
OPAQUE_XATTR = b"trusted.overlay.opaque"
REDIRECT_XATTR = b"trusted.overlay.redirect"
UPPER_INO_TAG = 1 << 62
COPY_CHUNK = 1 << 20
NO_XATTRS = (errno.EOPNOTSUPP,)  # ENOTSUP is the same number on Linux


def _is_whiteout(upper: Inode) -> bool:
    if not S.S_ISCHR(upper.mode()):
        return False
    return upper.stat().rdev == 0


def _own_xattr(upper: Inode, name: bytes) -> bytes | None:
    try:
        return upper.getxattr(name)
    except OSError:
        return None


def _is_opaque(upper_dir: Inode) -> bool:
    return _own_xattr(upper_dir, OPAQUE_XATTR) == b"y"


def _is_private(name: bytes) -> bool:
    return name.startswith(PRIVATE_XATTR_PREFIX)


def _lookup_or_none(d: Inode, name: bytes) -> Inode | None:
    try:
        return d.lookup(name)
    except FileNotFoundError:
        return None


def _xattr_names(inode: Inode) -> list[bytes]:
    """An inode's xattr names; none where its filesystem has no xattrs."""
    lister = getattr(inode, "listxattr", None)
    if lister is None:
        return []
    try:
        return list(lister())
    except OSError as e:
        if e.errno in NO_XATTRS:
            return []
        raise


class OverlayFS(Filesystem):
    """lower: any Filesystem, only read; upper: a TmpFS that takes every
    change. A fresh upper root takes the lower root's mode, owner and
    times, as if it had been copied up at mount."""
    name = "overlay"
    magic = OVERLAYFS_SUPER_MAGIC

    def __init__(self, lower: Filesystem, upper: TmpFS):
        super().__init__()
        self.lower = lower
        self.upper = upper
        # upper inode number -> the overlay inode number of the lower file
        # it was copied up from, so st_ino survives copy-up and re-lookup
        self.origin: dict[int, int] = {}
        # upper inode number -> the OverlayInode of that upper non-directory,
        # so that its hard links are one object
        self.by_upper: weakref.WeakValueDictionary[int, OverlayInode] = weakref.WeakValueDictionary()
        lower_root, upper_root = lower.root(), upper.root()
        if not upper_root.entries():
            st = lower_root.stat()
            upper_root.setattr(mode=st.mode & 0o7777, uid=st.uid, gid=st.gid,
                               atime_ns=st.atime_ns, mtime_ns=st.mtime_ns)
        self._root = OverlayInode(self, None, b"", upper_root, lower_root, lower_path=b"")

    def root(self) -> "OverlayInode":
        return self._root

    def statfs(self) -> StatFS:
        """Free space is the upper layer's; the totals add the lower
        layer's used blocks and inodes (see the module's notes)."""
        st = self.upper.statfs()
        st.type = self.magic
        try:
            low = self.lower.statfs()
        except OSError:
            return st  # a lower layer that cannot say: the upper's alone
        low_bsize = low.frsize or low.bsize
        used_bytes = max(0, low.blocks - low.bfree) * low_bsize
        st.blocks += -(-used_bytes // (st.frsize or st.bsize))
        st.files += max(0, low.files - low.ffree)
        return st

    def ino_of(self, upper: Inode | None, lower: Inode | None) -> int:
        if lower is not None:
            return lower.stat().ino
        return self.upper_ino(upper.stat().ino)

    def upper_ino(self, upper_ino: int) -> int:
        return self.origin.get(upper_ino, UPPER_INO_TAG | upper_ino)

    def lower_at(self, path: bytes) -> Inode | None:
        """The lower layer's inode at an absolute path (a redirect), None
        if it has none there."""
        inode = self.lower.root()
        for part in path.split(b"/"):
            if not part:
                continue
            if not S.S_ISDIR(inode.mode()):
                return None
            inode = _lookup_or_none(inode, part)
            if inode is None:
                return None
        return inode


class OverlayInode(Inode):
    """One file of the overlay: its upper inode, its lower inode, or both
    (a merged directory). Non-directories drop the lower inode once copied
    up. `parent` and `name` say where it lives, for copy-up; `lower_path`
    where its lower inode is in the lower layer (a renamed directory's
    redirect). A directory remembers its looked-up children weakly so that
    one path keeps one OverlayInode while anyone holds it."""

    def __init__(self, fs: OverlayFS, parent: "OverlayInode | None", name: bytes,
                 upper: Inode | None, lower: Inode | None, opaque: bool = False,
                 lower_path: bytes | None = None):
        self.fs = fs
        self.parent = parent
        self.name = name
        self.upper = upper
        self.lower = lower
        self.lower_path = lower_path
        self.opaque = opaque
        self.removed = False
        self.kind = S.S_IFMT((upper if upper is not None else lower).mode())
        self.ino = fs.ino_of(upper, lower)
        self._children: weakref.WeakValueDictionary[bytes, OverlayInode] = weakref.WeakValueDictionary()
        self._nlink: int | None = None  # cached link count of a merged directory
        self._lower_entries: list[DirEntry] | None = None  # the lower layer never changes
        self._stat_cache: tuple | None = None  # (layer's Stat, ours) while the layer's holds
        if upper is not None and self.kind != S.S_IFDIR:
            fs.by_upper.setdefault(upper.stat().ino, self)  # a link's target keeps its place

    def real(self) -> Inode:
        """The inode that answers for this file now."""
        return self.upper if self.upper is not None else self.lower

    def is_merged(self) -> bool:
        return self.upper is not None and self.lower is not None

    # --- attributes ---
    def stat(self) -> Stat:
        st = self.real().stat()
        cached = self._stat_cache
        if cached is not None and cached[0] is st and not self.removed and self.kind != S.S_IFDIR:
            return cached[1]  # the layer's Stat object is unchanged: so is ours
        nlink = st.nlink
        if self.kind == S.S_IFDIR and self.is_merged():
            if self._nlink is None:
                self._nlink = 2 + sum(1 for e in self._merged_entries(False) if e.dtype == DT_DIR)
            nlink = self._nlink
        elif self.removed and self.upper is None:
            nlink = 0  # a whited-out lower file still open somewhere
        ours = Stat(mode=st.mode, ino=self.ino, dev=self.fs.dev, nlink=nlink, uid=st.uid,
                    gid=st.gid, rdev=st.rdev, size=st.size, blksize=st.blksize,
                    blocks=st.blocks, atime_ns=st.atime_ns, mtime_ns=st.mtime_ns,
                    ctime_ns=st.ctime_ns)
        self._stat_cache = (st, ours)
        return ours

    def mode(self) -> int:
        return self.real().mode()

    def setattr(self, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None,
                atime_ns: int | None = None, mtime_ns: int | None = None) -> None:
        if size is not None and self.upper is None and self.kind == S.S_IFREG:
            # copy only the bytes that survive the truncation
            old_size = self.lower.stat().size
            self.copy_up(data_limit=size)
            if size != old_size and mtime_ns is None:
                mtime_ns = now_ns()  # the copy already has the new size: say it changed
        else:
            self.copy_up()
        self.upper.setattr(mode=mode, uid=uid, gid=gid, size=size, atime_ns=atime_ns,
                           mtime_ns=mtime_ns)

    def readlink(self) -> bytes:
        return self.real().readlink()

    def open(self, flags: int) -> FileDescriptionImpl:
        if self.kind == S.S_IFDIR:
            return InodeDirImpl(self)
        if self.kind != S.S_IFREG:
            return self.real().open(flags)  # devices, fifos: the sentry's; symlinks: ELOOP
        # like Linux, only regular files are copied up for writing
        if flags & O_ACCMODE != O_RDONLY or flags & O_TRUNC:
            self.copy_up()
        return OverlayFileImpl(self, flags)

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        self.copy_up()  # already done by the open for writing, unless removed since
        self.upper.fallocate(mode, offset, length)

    # --- extended attributes: the topmost layer's, the overlay's own hidden ---
    def getxattr(self, name: bytes) -> bytes:
        if _is_private(name):
            raise fserr(errno.EOPNOTSUPP)
        real = self.real()
        try:
            return real.getxattr(name)
        except AttributeError:
            raise fserr(errno.ENODATA) from None
        except OSError as e:
            if real is self.lower and e.errno in NO_XATTRS:
                raise fserr(errno.ENODATA) from None
            raise

    def listxattr(self) -> list[bytes]:
        return [n for n in _xattr_names(self.real()) if not _is_private(n)]

    def setxattr(self, name: bytes, value: bytes, flags: int = 0) -> None:
        if _is_private(name):
            raise fserr(errno.EOPNOTSUPP)
        self.copy_up()
        self.upper.setxattr(name, value, flags)

    def removexattr(self, name: bytes) -> None:
        if _is_private(name):
            raise fserr(errno.EOPNOTSUPP)
        if self.upper is None:
            self.getxattr(name)  # ENODATA without a copy-up, as Linux
        self.copy_up()
        self.upper.removexattr(name)

    # --- copy-up ---
    def copy_up(self, data_limit: int | None = None) -> None:
        """Give this file an upper inode (ancestors first). data_limit
        caps the bytes copied, for a truncation about to follow."""
        if self.upper is not None:
            return
        if self.removed or self.parent is None:
            raise fserr(errno.ENOENT)
        self.parent.copy_up()
        pdir = self.parent.upper
        pst = pdir.stat()
        st = self.lower.stat()
        kind = S.S_IFMT(st.mode)
        if kind == S.S_IFDIR:
            up = pdir.mkdir(self.name, st.mode, st.uid, st.gid)
        elif kind == S.S_IFREG:
            up = pdir.create(self.name, st.mode, st.uid, st.gid)
        elif kind == S.S_IFLNK:
            up = pdir.symlink(self.name, self.lower.readlink(), st.uid, st.gid)
        else:
            up = pdir.mknod(self.name, st.mode, st.rdev, st.uid, st.gid)
        try:
            if kind == S.S_IFREG:
                self._copy_data(up, st.size if data_limit is None else min(st.size, data_limit))
            self._copy_xattrs(up)
        except BaseException:
            (pdir.rmdir if kind == S.S_IFDIR else pdir.unlink)(self.name)
            raise
        # owner first: chown clears set-ID bits, which the mode then restores
        up.setattr(uid=st.uid, gid=st.gid,
                   mode=None if kind == S.S_IFLNK else st.mode & 0o7777,
                   atime_ns=st.atime_ns, mtime_ns=st.mtime_ns)
        pdir.setattr(atime_ns=pst.atime_ns, mtime_ns=pst.mtime_ns)
        up_ino = up.stat().ino
        self.fs.origin[up_ino] = self.ino
        self.upper = up
        if kind != S.S_IFDIR:
            self.lower = None
            self.fs.by_upper[up_ino] = self

    def _copy_data(self, up: Inode, length: int) -> None:
        src = self.lower.open(O_RDONLY | O_NOATIME)
        dst = up.open(O_WRONLY)
        try:
            offset = 0
            while offset < length:
                chunk = src.pread(min(COPY_CHUNK, length - offset), offset)
                if not chunk:
                    break
                offset += dst.pwrite(chunk, offset)
        finally:
            src.release()
            dst.release()

    def _copy_xattrs(self, up: Inode) -> None:
        for name in _xattr_names(self.lower):
            if _is_private(name):
                continue
            try:
                value = self.lower.getxattr(name)
            except OSError as e:
                if e.errno == errno.ENODATA:
                    continue  # gone between list and get
                raise
            up.setxattr(name, value)

    # --- directories: reading ---
    def _require_dir(self) -> None:
        if self.kind != S.S_IFDIR:
            raise fserr(errno.ENOTDIR)

    def _lower_visible(self) -> bool:
        return self.lower is not None and not self.opaque and not self.removed

    def _lower_has(self, name: bytes) -> bool:
        return self._lower_visible() and _lookup_or_none(self.lower, name) is not None

    def _child_lower_path(self, name: bytes) -> bytes:
        return self.lower_path + b"/" + name

    def lookup(self, name: bytes) -> "OverlayInode":
        self._require_dir()
        child = self._children.get(name)
        if child is None:
            child = self._find(name)
            self._children[name] = child
        return child

    def _find(self, name: bytes) -> "OverlayInode":
        if self.removed:
            raise fserr(errno.ENOENT, name)
        upper = lower = None
        opaque = False
        if self.upper is not None:
            upper = _lookup_or_none(self.upper, name)
            if upper is not None:
                if _is_whiteout(upper):
                    raise fserr(errno.ENOENT, name)
                if not S.S_ISDIR(upper.mode()):
                    known = self.fs.by_upper.get(upper.stat().ino)
                    if known is not None and known.upper is upper:
                        return known  # another name of a file already in use
                    return OverlayInode(self.fs, self, name, upper, None)
                opaque = _is_opaque(upper)
                redirect = None if opaque else _own_xattr(upper, REDIRECT_XATTR)
                if redirect is not None:
                    # a moved directory: its lower part is where it came from
                    lower = self.fs.lower_at(redirect)
                    if lower is not None and not S.S_ISDIR(lower.mode()):
                        lower = None
                    return OverlayInode(self.fs, self, name, upper, lower,
                                        lower_path=redirect if lower is not None else None)
        if not opaque and self._lower_visible():
            lower = _lookup_or_none(self.lower, name)
            if upper is not None and lower is not None and not S.S_ISDIR(lower.mode()):
                lower = None  # an upper directory merges only with a lower directory
        if upper is None and lower is None:
            raise fserr(errno.ENOENT, name)
        return OverlayInode(self.fs, self, name, upper, lower, opaque,
                            self._child_lower_path(name) if lower is not None else None)

    def readdir(self) -> list[DirEntry]:
        return self._merged_entries(touch=True)

    def _merged_entries(self, touch: bool) -> list[DirEntry]:
        """Upper entries (without whiteouts), then lower ones not named
        above. touch: a reader's readdir, which updates the upper atime;
        the overlay's own looks (link count, emptiness) do not."""
        self._require_dir()
        if self.removed:
            return []
        entries: list[DirEntry] = []
        seen: set[bytes] = set()
        if self.upper is not None:
            for e in (self.upper.readdir() if touch else self.upper.entries()):
                seen.add(e.name)
                if e.dtype == DT_CHR and _is_whiteout(self.upper.lookup(e.name)):
                    continue
                entries.append(DirEntry(e.name, self.fs.upper_ino(e.ino), e.dtype))
        if self._lower_visible():
            if self._lower_entries is None:
                self._lower_entries = self.lower.readdir()
            entries.extend(e for e in self._lower_entries if e.name not in seen)
        return entries

    # --- directories: changing ---
    def _subdirs_changed(self) -> None:
        """A subdirectory came or went: the link count is counted anew."""
        self._nlink = None

    def _check_free(self, name: bytes) -> None:
        self._require_dir()
        if self.removed:
            raise fserr(errno.ENOENT)
        try:
            self.lookup(name)
        except FileNotFoundError:
            return
        raise fserr(errno.EEXIST)

    def _clear_whiteout(self, name: bytes) -> bool:
        """Copy this directory up and take away a whiteout standing on
        name; True if there was one (the lower layer has name)."""
        self.copy_up()
        existing = _lookup_or_none(self.upper, name)
        if existing is None:
            return False
        self.upper.unlink(name)  # a whiteout: name is not visible
        return True

    def _make(self, name: bytes, make, directory: bool = False) -> "OverlayInode":
        """Create name in the upper layer with make(upper_dir); a directory
        made over a whiteout is opaque. On failure the whiteout is put back."""
        self._check_free(name)
        over_whiteout = self._clear_whiteout(name)
        try:
            up = make(self.upper)
        except BaseException:
            if over_whiteout:
                self._whiteout(name)
            raise
        opaque = directory and over_whiteout
        if opaque:
            up.setxattr(OPAQUE_XATTR, b"y")
        child = OverlayInode(self.fs, self, name, up, None, opaque)
        self._children[name] = child  # (a hard link: link() puts its target here)
        if directory:
            self._subdirs_changed()
        return child

    def _whiteout(self, name: bytes) -> None:
        self.upper.mknod(name, S.S_IFCHR, 0, 0, 0)

    def create(self, name: bytes, mode: int, uid: int, gid: int) -> "OverlayInode":
        return self._make(name, lambda d: d.create(name, mode, uid, gid))

    def mkdir(self, name: bytes, mode: int, uid: int, gid: int) -> "OverlayInode":
        return self._make(name, lambda d: d.mkdir(name, mode, uid, gid), directory=True)

    def mknod(self, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> "OverlayInode":
        if S.S_ISCHR(mode) and rdev == 0:
            raise fserr(errno.EPERM)  # 0:0 is the whiteout; it could never be seen
        return self._make(name, lambda d: d.mknod(name, mode, rdev, uid, gid))

    def symlink(self, name: bytes, target: bytes, uid: int, gid: int) -> "OverlayInode":
        return self._make(name, lambda d: d.symlink(name, target, uid, gid))

    def tmpfile(self, mode: int, uid: int, gid: int, linkable: bool = True) -> "OverlayInode":
        """O_TMPFILE: an unnamed file of the upper layer (Linux since 6.6)."""
        self._require_dir()
        if self.removed:
            raise fserr(errno.ENOENT)
        self.copy_up()
        return OverlayInode(self.fs, None, b"", self.upper.tmpfile(mode, uid, gid, linkable), None)

    def link(self, name: bytes, target: Inode) -> None:
        if not isinstance(target, OverlayInode) or target.fs is not self.fs:
            raise fserr(errno.EXDEV)
        if target.kind == S.S_IFDIR:
            raise fserr(errno.EPERM)
        self._check_free(name)
        target.copy_up()

        def link_in_upper(d: Inode) -> Inode:
            d.link(name, target.upper)
            return d.lookup(name)
        self._make(name, link_in_upper)
        self._children[name] = target  # one object for every name of the file

    def _remove(self, name: bytes, child: "OverlayInode") -> None:
        """Take name away: delete its upper entry, whiteout a lower one."""
        self.copy_up()
        needs_whiteout = self._lower_has(name)
        if child.upper is not None:
            if child.kind == S.S_IFDIR:
                _clear_whiteouts(child.upper)
                self.upper.rmdir(name)
            else:
                self.upper.unlink(name)
            if child.upper.stat().nlink == 0:
                self.fs.origin.pop(child.upper.stat().ino, None)  # child keeps its number
        if needs_whiteout:
            self._whiteout(name)
        child.removed = True
        self._children.pop(name, None)
        if child.kind == S.S_IFDIR:
            self._subdirs_changed()

    def unlink(self, name: bytes) -> None:
        child = self.lookup(name)
        if child.kind == S.S_IFDIR:
            raise fserr(errno.EISDIR)
        self._remove(name, child)

    def rmdir(self, name: bytes) -> None:
        child = self.lookup(name)
        if child.kind != S.S_IFDIR:
            raise fserr(errno.ENOTDIR)
        if child._merged_entries(False):
            raise fserr(errno.ENOTEMPTY)
        self._remove(name, child)

    def rename(self, name: bytes, new_dir: Inode, new_name: bytes) -> None:
        if not isinstance(new_dir, OverlayInode) or new_dir.fs is not self.fs:
            raise fserr(errno.EXDEV)
        src = self.lookup(name)
        new_dir._require_dir()
        if new_dir.removed:
            raise fserr(errno.ENOENT)
        src_is_dir = src.kind == S.S_IFDIR
        if src_is_dir and _is_ancestor(src, new_dir):
            raise fserr(errno.EINVAL)  # into its own subtree
        try:
            target = new_dir.lookup(new_name)
        except FileNotFoundError:
            target = None
        if target is not None:
            if target.kind == S.S_IFDIR and _is_ancestor(target, self):
                raise fserr(errno.ENOTEMPTY)  # over a directory holding the source
            if target is src or _same_file(src, target):
                return
            if src_is_dir and target.kind != S.S_IFDIR:
                raise fserr(errno.ENOTDIR)
            if not src_is_dir and target.kind == S.S_IFDIR:
                raise fserr(errno.EISDIR)
            if target.kind == S.S_IFDIR and target._merged_entries(False):
                raise fserr(errno.ENOTEMPTY)

        src.copy_up()
        new_dir.copy_up()
        src_lower = self._lower_has(name)
        dst_lower = new_dir._lower_has(new_name)
        existing = _lookup_or_none(new_dir.upper, new_name)
        if existing is not None:
            if target is None:
                new_dir.upper.unlink(new_name)  # a whiteout
            elif target.kind == S.S_IFDIR:
                _clear_whiteouts(existing)  # empty in the merged view: only whiteouts
        if src_is_dir:
            src._moving_to(dst_lower)
        self.upper.rename(name, new_dir.upper, new_name)
        if src_lower:
            self._whiteout(name)

        self._children.pop(name, None)
        if target is not None:
            target.removed = True
        new_dir._children[new_name] = src
        src.parent = new_dir
        src.name = new_name
        if src_is_dir or (target is not None and target.kind == S.S_IFDIR):
            self._subdirs_changed()
            new_dir._subdirs_changed()

    def _moving_to(self, dst_lower: bool) -> None:
        """This upper directory is about to take a name where the lower
        layer has a directory (dst_lower) or not."""
        if self.lower is not None:
            # redirect_dir: a moved directory keeps merging with its own
            # lower directory, wherever it goes
            self.upper.setxattr(REDIRECT_XATTR, self.lower_path or b"/")
        elif dst_lower and not self.opaque:
            # the lower directory there must not show through the moved one
            self.upper.setxattr(OPAQUE_XATTR, b"y")
            self.opaque = True

    def exchange(self, name: bytes, new_dir: Inode, new_name: bytes) -> None:
        """RENAME_EXCHANGE: both copied up and swapped in the upper layer;
        a directory that lands on a name of the lower layer gets what
        rename would give it (a redirect or opaqueness)."""
        if not isinstance(new_dir, OverlayInode) or new_dir.fs is not self.fs:
            raise fserr(errno.EXDEV)
        a = self.lookup(name)
        b = new_dir.lookup(new_name)
        if (a.kind == S.S_IFDIR and _is_ancestor(a, new_dir)) or \
                (b.kind == S.S_IFDIR and _is_ancestor(b, self)):
            raise fserr(errno.EINVAL)
        if a is b or _same_file(a, b):
            return
        a.copy_up()
        b.copy_up()
        if a.kind == S.S_IFDIR:
            a._moving_to(new_dir._lower_has(new_name))
        if b.kind == S.S_IFDIR:
            b._moving_to(self._lower_has(name))
        self.upper.exchange(name, new_dir.upper, new_name)
        self._children[name], new_dir._children[new_name] = b, a
        a.parent, a.name, b.parent, b.name = new_dir, new_name, self, name
        if S.S_IFDIR in (a.kind, b.kind):
            self._subdirs_changed()
            new_dir._subdirs_changed()


class OverlayFileImpl(FileDescriptionImpl):
    """An open regular file: I/O goes to the layer that holds the file
    now, so a description opened on the lower file follows its copy-up
    (reopening the upper file with the same flags)."""
    seekable = True

    def __init__(self, inode: OverlayInode, flags: int):
        self.inode = inode
        self.flags = flags & ~O_TRUNC  # a reopen must not truncate again
        self.real = inode.real()
        self.impl = self.real.open(flags)

    def current(self) -> FileDescriptionImpl:
        real = self.inode.real()
        if real is not self.real:
            fresh = real.open(self.flags)
            self.impl.release()
            self.impl, self.real = fresh, real
        return self.impl

    def pread(self, size: int, offset: int) -> bytes:
        return self.current().pread(size, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return self.current().pwrite(data, offset)

    def size(self) -> int:
        return self.current().size()

    def fsync(self) -> None:
        self.current().fsync()

    def ioctl(self, request: int, arg: int, mem) -> int:
        return self.current().ioctl(request, arg, mem)

    def readiness(self) -> int:
        return self.current().readiness()

    def release(self) -> None:
        if self.impl is not None:
            self.impl.release()
            self.impl = None

    def __getattr__(self, attr: str):
        # what some layers' descriptions offer beyond the interface (data_ranges)
        impl = self.__dict__.get("impl")
        if impl is None:
            raise AttributeError(attr)
        return getattr(impl, attr)


def _is_ancestor(a: OverlayInode, d: OverlayInode | None) -> bool:
    """Is a the directory d or above it?"""
    while d is not None:
        if d is a:
            return True
        d = d.parent
    return False


def _same_file(a: OverlayInode, b: OverlayInode) -> bool:
    """Two names of one file (rename between them does nothing)."""
    if a.upper is not None or b.upper is not None:
        return a.upper is b.upper
    return a.lower is b.lower or a.lower.stat().ino == b.lower.stat().ino


def _clear_whiteouts(upper_dir: Inode) -> None:
    """Empty an upper directory whose merged view is empty: whatever is in
    it is whiteouts."""
    for e in upper_dir.entries():
        upper_dir.unlink(e.name)
