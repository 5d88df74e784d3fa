"""The mount tree and path walking.

A Dentry names an Inode under its parent and caches looked-up children; a
Mount puts a Filesystem's root over a Dentry of its parent mount; a
Location is (mount, dentry), the thing paths resolve to. The walk follows
Linux's rules: symlinks (40 at most, ELOOP), `..` never rises above the
caller's root and crosses mounts upwards, NAME_MAX/PATH_MAX give
ENAMETOOLONG, a trailing slash demands a directory.
"""
from __future__ import annotations

import errno
import itertools
import stat as S
import weakref
from collections import namedtuple
from dataclasses import dataclass

from . import inotify
from .inode import Filesystem, Inode, Stat, fserr

PATH_MAX = 4096
NAME_MAX = 255
MAX_SYMLINKS = 40

# openat2's RESOLVE_* flags: PathContext.resolve restricts the walk with them.
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x01, 0x02, 0x04
RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_CACHED = 0x08, 0x10, 0x20
RESOLVE_SCOPED = RESOLVE_BENEATH | RESOLVE_IN_ROOT  # root is the starting directory
RESOLVE_ALL = 0x3F

# Per-mount flags (mount(2)'s MS_* values); a Mount keeps these in .flags.
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 0x100, 0x400, 0x800, 0x200000
MS_STRICTATIME = 0x1000000  # only asked for: a mount without NOATIME/RELATIME is strictatime
# Superblock flags: shared by every mount of one filesystem instance.
MS_SYNCHRONOUS, MS_MANDLOCK, MS_DIRSYNC, MS_LAZYTIME = 0x10, 0x40, 0x80, 0x2000000
SB_FLAGS = MS_RDONLY | MS_SYNCHRONOUS | MS_MANDLOCK | MS_DIRSYNC | MS_LAZYTIME
MNT_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOSYMFOLLOW | MS_NOATIME \
    | MS_NODIRATIME | MS_RELATIME


def default_atime(flags: int) -> int:
    """relatime unless noatime or strictatime was asked for, as Linux does."""
    if flags & MS_STRICTATIME:
        return flags & ~(MS_STRICTATIME | MS_RELATIME | MS_NOATIME)
    return flags & ~MS_RELATIME if flags & MS_NOATIME else flags | MS_RELATIME

R_OK, W_OK, X_OK = 4, 2, 1


class Dentry:
    """`kind` caches the file type (S_IFMT): an inode never changes type,
    and the walk asks for it at every step."""
    __slots__ = ("name", "parent", "inode", "children", "kind", "mounted", "pinned", "__weakref__")

    def __init__(self, name: bytes, parent: "Dentry | None", inode: Inode):
        self.name = name
        self.parent = parent
        self.inode = inode
        self.children: dict[bytes, Dentry] = {}
        self.kind = S.S_IFMT(inode.stat().mode)
        self.mounted = False  # some mount sits on this dentry: check the mount table
        self.pinned = False   # a mountpoint or its ancestor: never pruned

    def child(self, name: bytes) -> "Dentry":
        d = self.children.get(name)
        if d is None:
            d = Dentry(name, self, self.inode.lookup(name))
            if not self.children:
                _parents.add(self)
            self.children[name] = d
            _cached[0] += 1
        return d

    def forget(self, name: bytes) -> None:
        self.children.pop(name, None)
        namespace_changed()


# Bumped whenever any name changes (create, unlink, rename, mount): the
# walk cache of every MountTree is stale then.
_generation = [0]
# Dentries cached since the last prune. Each may pin a host fd in the gofer,
# so the cache is bounded (see MountTree.prune).
_cached = [0]
MAX_CACHED_DENTRIES = 8192
# Every dentry holding cached children, also those no longer reachable from
# a root but kept alive by an open directory fd: pruning must reach them.
_parents: "weakref.WeakSet[Dentry]" = weakref.WeakSet()


def namespace_changed() -> None:
    _generation[0] += 1


_mount_ids = itertools.count(1)


class Superblock:
    """What every mount of one filesystem instance shares (bind mounts
    too): the superblock flags (MS_RDONLY, MS_SYNCHRONOUS, ...) and the
    filesystem's own options as /proc/*/mounts shows them (b"size=1024k"),
    and those options parsed (for a remount to change)."""
    __slots__ = ("flags", "options", "config")

    def __init__(self, flags: int = 0, options: bytes = b"", config=None):
        self.flags = flags & SB_FLAGS
        self.options = options
        self.config = config


class Mount:
    """A filesystem (or part of one: a bind mount's root is any dentry of
    it) attached at a mountpoint. flags are the per-mount MS_* flags
    (MNT_FLAGS); ns is the MountTree it belongs to, None once unmounted."""

    def __init__(self, fs: Filesystem, root: Dentry, parent: "Mount | None",
                 mountpoint: Dentry | None, flags: int = 0, source: str = "none",
                 sb: Superblock | None = None):
        self.id = next(_mount_ids)
        self.fs = fs
        self.root = root
        self.parent = parent
        self.mountpoint = mountpoint
        self.flags = flags & MNT_FLAGS
        self.source = source
        self.sb = sb if sb is not None else Superblock(flags)
        self.ns: "MountTree | None" = None
        self.unbindable = False
        self.expiry_mark = False  # umount2(MNT_EXPIRE) asked once

    @property
    def readonly(self) -> bool:
        return bool((self.flags | self.sb.flags) & MS_RDONLY)

    def mount_options(self) -> bytes:
        """The per-mount options of mountinfo's sixth field."""
        return b",".join([b"ro" if self.flags & MS_RDONLY else b"rw"] + self._flag_words())

    def super_options(self) -> bytes:
        """The superblock's options (mountinfo's last field)."""
        return b",".join([b"ro" if self.sb.flags & MS_RDONLY else b"rw"] + self._sb_words()
                         + ([self.sb.options] if self.sb.options else []))

    def options(self) -> bytes:
        """/proc/*/mounts' fourth field: both, as Linux's show_vfsmnt joins them."""
        return b",".join([b"ro" if self.readonly else b"rw"] + self._sb_words() + self._flag_words()
                         + ([self.sb.options] if self.sb.options else []))

    def _flag_words(self) -> list[bytes]:
        return [w for bit, w in _MNT_WORDS if self.flags & bit]

    def _sb_words(self) -> list[bytes]:
        return [w for bit, w in _SB_WORDS if self.sb.flags & bit]


_MNT_WORDS = ((MS_NOSUID, b"nosuid"), (MS_NODEV, b"nodev"), (MS_NOEXEC, b"noexec"),
              (MS_NOATIME, b"noatime"), (MS_NODIRATIME, b"nodiratime"), (MS_RELATIME, b"relatime"),
              (MS_NOSYMFOLLOW, b"nosymfollow"))
_SB_WORDS = ((MS_SYNCHRONOUS, b"sync"), (MS_DIRSYNC, b"dirsync"), (MS_MANDLOCK, b"mand"),
             (MS_LAZYTIME, b"lazytime"))


class Location(namedtuple("Location", ("mount", "dentry"))):
    """(mount, dentry): what a path names. A tuple: made at every walk step.
    (collections' namedtuple, not typing's: typing costs a sandbox's start 3 ms.)"""
    __slots__ = ()

    @property
    def inode(self) -> Inode:
        return self.dentry.inode


# The capabilities the VFS checks (bits of cap_effective; numbers from
# linux/capability.h, all of them in sentry/caps.py).
CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID = 0, 1, 2, 3, 4
CAP_SYS_ADMIN, CAP_MKNOD = 21, 27
DAC_OVERRIDE, DAC_READ_SEARCH = 1 << CAP_DAC_OVERRIDE, 1 << CAP_DAC_READ_SEARCH
SEARCH_ANY = DAC_OVERRIDE | DAC_READ_SEARCH  # either searches any directory


@dataclass
class Creds:
    """The part of a task's credentials the VFS checks. cap_effective
    defaults to every capability for fsuid 0, none for others."""
    uid: int = 0
    gid: int = 0
    groups: tuple = ()
    fsuid: int | None = None
    fsgid: int | None = None
    cap_effective: int | None = None

    def __post_init__(self):
        if self.cap_effective is None:
            self.cap_effective = -1 if self.fs_uid == 0 else 0

    @property
    def fs_uid(self) -> int:
        return self.uid if self.fsuid is None else self.fsuid

    @property
    def fs_gid(self) -> int:
        return self.gid if self.fsgid is None else self.fsgid


class PathContext:
    """Who walks: root and cwd to start from, credentials to check.
    `task` is opaque to the VFS; procfs uses it for /proc/self.
    `resolve` holds openat2's RESOLVE_* restrictions (0: none); with
    BENEATH or IN_ROOT the caller makes root the starting directory."""
    __slots__ = ("root", "cwd", "creds", "task", "resolve")

    def __init__(self, root: Location, cwd: Location, creds: Creds, task=None, resolve: int = 0):
        self.root = root
        self.cwd = cwd
        self.creds = creds
        self.task = task
        self.resolve = resolve


def may_access(st, creds: Creds, mask: int) -> bool:
    """generic_permission: Unix permission bits, then the overrides.
    CAP_DAC_OVERRIDE reads and writes anything and executes a directory or
    a file with any x bit; CAP_DAC_READ_SEARCH reads any file and reads or
    searches any directory."""
    if mask == 0:
        return True
    caps = creds.cap_effective
    if caps & DAC_OVERRIDE and (not mask & X_OK or st.mode & 0o111 or S.S_ISDIR(st.mode)):
        return True
    if st.uid == creds.fs_uid:
        bits = (st.mode >> 6) & 7
    elif st.gid == creds.fs_gid or st.gid in creds.groups:
        bits = (st.mode >> 3) & 7
    else:
        bits = st.mode & 7
    if bits & mask == mask:
        return True
    if caps & DAC_READ_SEARCH:
        return not mask & W_OK if S.S_ISDIR(st.mode) else mask == R_OK
    return False


class _Placeholder(Inode):
    """An empty directory (or empty file) standing in for a mountpoint the
    filesystem below does not provide or must not be written to (a host
    directory); only ever covered by a mount."""

    def __init__(self, fs: Filesystem, kind: int = S.S_IFDIR):
        self.fs = fs
        is_dir = kind == S.S_IFDIR
        self._stat = Stat(mode=kind | (0o755 if is_dir else 0o644), ino=0, dev=fs.dev,
                          nlink=2 if is_dir else 1)

    def stat(self) -> Stat:
        return self._stat

    def readdir(self):
        if not S.S_ISDIR(self._stat.mode):
            raise fserr(errno.ENOTDIR)
        return []

    def lookup(self, name):
        raise fserr(errno.ENOENT if S.S_ISDIR(self._stat.mode) else errno.ENOTDIR)


def _pin(d: Dentry | None) -> None:
    """A mountpoint or mount root and its ancestors stay cached: the mount
    table finds mounts by dentry."""
    while d is not None and not d.pinned:
        d.pinned = True
        d = d.parent


def is_below(d: Dentry, ancestor: Dentry) -> bool:
    """d is ancestor or inside it (within one filesystem's dentries)."""
    while d is not None:
        if d is ancestor:
            return True
        d = d.parent
    return False


class MountTree:
    """All mounts of one sandbox (one mount namespace). `mounts` lists them
    in the order /proc/*/mounts shows (creation order); `fstypes` is what
    mount(2) may create (vfs.mounts.FilesystemTypes, set by the sandbox)."""

    def __init__(self, root_fs: Filesystem, flags: int = 0, source: str = "none"):
        root = Dentry(b"/", None, root_fs.root())
        self.root_mount = Mount(root_fs, root, None, None, default_atime(flags), source)
        self.root_mount.ns = self
        # (parent mount id, mountpoint dentry id) -> top mount there
        self._over: dict[tuple[int, int], Mount] = {}
        self.mounts: list[Mount] = [self.root_mount]
        self._root = Location(self.root_mount, self.root_mount.root)
        self._walk_cache: dict = {}
        self._walk_gen = -1
        self.fstypes = None

    @property
    def root(self) -> Location:
        return self._root

    # --- mounting ---
    def mount(self, at: Location, fs: Filesystem, flags: int = 0, source: str = "none", *,
              root: Dentry | None = None, options: bytes = b"", config=None) -> Mount:
        """Attach a filesystem at `at`: from its root directory, or from
        `root`, one of its dentries (a single bound file, say). flags mixes
        per-mount and superblock MS_* flags; options (and config, their
        parsed form) are the filesystem's own, as /proc/*/mounts shows
        them. A filesystem mounted already keeps its superblock."""
        if root is None:
            root = Dentry(at.dentry.name, None, fs.root())
        sb = next((m.sb for m in self.mounts if m.fs is fs), None) or Superblock(flags, options, config)
        return self._attach(Mount(fs, root, None, None, default_atime(flags), source, sb), at)

    def bind(self, at: Location, src: Location, recursive: bool = False) -> Mount:
        """mount --bind (--rbind): src's mount seen from src's dentry, with
        its flags, at `at`; recursive copies the mounts below src too
        (except unbindable ones), as they are before this bind."""
        if src.mount.ns is not self or src.mount.unbindable:
            raise fserr(errno.EINVAL)
        below = self._mounts_below(src.mount, src.dentry) if recursive else []
        if at.mount.ns is not self:
            raise fserr(errno.EINVAL)
        top = self._attach(self._clone(src.mount, src.dentry), at)
        copies = {src.mount: top}
        for c in below:
            copies[c] = self._attach(self._clone(c, c.root), Location(copies[c.parent], c.mountpoint))
        return top

    def _clone(self, m: Mount, root: Dentry) -> Mount:
        return Mount(m.fs, root, None, None, m.flags, m.source, m.sb)

    def _mounts_below(self, m: Mount, d: Dentry) -> list[Mount]:
        """Mounts of this namespace under (m, d), parents before children,
        leaving out unbindable ones and what is below them."""
        found: list[Mount] = []
        members = {m}
        grew = True
        while grew:
            grew = False
            for c in self.mounts:
                if c in members or c.unbindable or c.parent not in members:
                    continue
                if c.parent is m and not is_below(c.mountpoint, d):
                    continue
                members.add(c)
                found.append(c)
                grew = True
        return found

    def _attach(self, m: Mount, at: Location, append: bool = True) -> Mount:
        if at.mount.ns is not self:
            raise fserr(errno.EINVAL)
        if (at.dentry.kind == S.S_IFDIR) != (m.root.kind == S.S_IFDIR):
            raise fserr(errno.ENOTDIR)
        if m.root.kind == S.S_IFLNK:
            raise fserr(errno.EINVAL)
        m.parent, m.mountpoint, m.ns = at.mount, at.dentry, self
        self._over[(at.mount.id, id(at.dentry))] = m
        at.dentry.mounted = True
        _pin(at.dentry)
        _pin(m.root)
        if append:
            self.mounts.append(m)
        namespace_changed()
        return m

    def _detach(self, m: Mount) -> None:
        """Unhook m from its mountpoint."""
        key = (m.parent.id, id(m.mountpoint))
        if self._over.get(key) is m:
            del self._over[key]
            if not any(k[1] == key[1] for k in self._over):
                m.mountpoint.mounted = False
        m.parent = m.mountpoint = None
        namespace_changed()

    def children(self, m: Mount) -> list[Mount]:
        return [c for c in self.mounts if c.parent is m]

    def subtree(self, m: Mount) -> list[Mount]:
        """m and every mount of this namespace below it."""
        out, members = [m], {m}
        grew = True  # parents come before children, except after a move: loop to a fixpoint
        while grew:
            grew = False
            for c in self.mounts:
                if c not in members and c.parent in members:
                    members.add(c)
                    out.append(c)
                    grew = True
        return out

    def umount(self, m: Mount, detach: bool = False) -> None:
        """Take m out of the namespace. Its submounts go with it (the caller
        refuses a plain umount of a mount that has any) and stay attached
        to it, reachable from whatever still holds a location inside, as
        after Linux's lazy umount."""
        if m.ns is not self or m.parent is None:
            raise fserr(errno.EINVAL)
        gone = self.subtree(m)
        self._detach(m)
        for c in gone:
            c.ns = None
            self.mounts.remove(c)
        if inotify.marks:  # watches on filesystems no longer mounted: IN_UNMOUNT
            inotify.unmounted({c.fs.dev for c in gone} - {o.fs.dev for o in self.mounts})

    def move(self, m: Mount, at: Location) -> None:
        """mount --move: m and its submounts to `at` (ELOOP into itself)."""
        if m.ns is not self or m.parent is None or at.mount.ns is not self:
            raise fserr(errno.EINVAL)
        p = at.mount
        while p is not None:
            if p is m:
                raise fserr(errno.ELOOP)
            p = p.parent
        if (at.dentry.kind == S.S_IFDIR) != (m.root.kind == S.S_IFDIR):
            raise fserr(errno.ENOTDIR)
        self._detach(m)
        self._attach(m, at, append=False)

    def placeholder(self, parent: Location, name: bytes, kind: int = S.S_IFDIR) -> Location:
        """A mountpoint that exists only in this tree (see _Placeholder)."""
        d = Dentry(name, parent.dentry, _Placeholder(parent.mount.fs, kind))
        parent.dentry.children[name] = d
        namespace_changed()
        return Location(parent.mount, d)

    def mount_path(self, path: bytes, fs: Filesystem, flags: int = 0, source: str = "none",
                   options: bytes = b"") -> Mount:
        """Mount at an absolute path (set-up time only). A mountpoint the
        filesystem below cannot show (missing, or refused like the host's
        /proc by the gofer) gets a placeholder directory, as a mount covers
        whatever is below it anyway."""
        ctx = PathContext(self.root, self.root, Creds())
        try:
            at = self.resolve(ctx, path)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EACCES):
                raise
            parent, name, _ = self.resolve_parent(ctx, path)
            at = self.placeholder(parent, name)
        return self.mount(at, fs, flags, source, options=options)

    def _cross_down(self, loc: Location) -> Location:
        if not loc.dentry.mounted:
            return loc
        while True:
            m = self._over.get((loc.mount.id, id(loc.dentry)))
            if m is None:
                return loc
            loc = Location(m, m.root)

    def is_mountpoint(self, loc: Location) -> bool:
        return (loc.mount.id, id(loc.dentry)) in self._over

    # --- walking ---
    def parent_of(self, ctx: PathContext, loc: Location) -> Location:
        """`..` of loc as seen from ctx.root. RESOLVE_BENEATH refuses to
        stay at the root (EXDEV), RESOLVE_NO_XDEV to leave a mount."""
        while True:
            if loc == ctx.root or (loc.dentry is loc.mount.root and loc.mount.parent is None):
                if ctx.resolve & RESOLVE_BENEATH:
                    raise fserr(errno.EXDEV)
                return loc
            if loc.dentry is loc.mount.root:
                if ctx.resolve & RESOLVE_NO_XDEV:
                    raise fserr(errno.EXDEV)
                loc = Location(loc.mount.parent, loc.mount.mountpoint)
                continue
            return Location(loc.mount, loc.dentry.parent)

    def child_of(self, ctx: PathContext, loc: Location, name: bytes) -> Location:
        """One step down (no symlink following), checking search permission."""
        if loc.dentry.kind != S.S_IFDIR:
            raise fserr(errno.ENOTDIR)
        # CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH searches any directory: skip the stat
        if not ctx.creds.cap_effective & SEARCH_ANY and not may_access(loc.inode.stat(), ctx.creds, X_OK):
            raise fserr(errno.EACCES)
        if name == b".":
            return loc
        if name == b"..":
            return self.parent_of(ctx, loc)
        d = loc.dentry.children.get(name)
        if d is None:
            if len(name) > NAME_MAX:
                raise fserr(errno.ENAMETOOLONG)
            if ctx.resolve & RESOLVE_CACHED:
                raise fserr(errno.EAGAIN)  # not in the dentry cache: Linux's answer too
            d = loc.dentry.child(name)
        if d.mounted:
            below = self._cross_down(Location(loc.mount, d))
            if ctx.resolve & RESOLVE_NO_XDEV and below.mount is not loc.mount:
                raise fserr(errno.EXDEV)
            return below
        return Location(loc.mount, d)

    def prune(self) -> None:
        """Forget cached dentries, except mountpoints and their ancestors
        (pinned). Anything still in use stays alive through its holders
        (open files, cwds); a later walk makes a fresh dentry for the same
        inode."""
        for d in list(_parents):
            if d.pinned:
                for name in [n for n, c in d.children.items() if not c.pinned]:
                    del d.children[name]
            else:
                d.children.clear()
        _cached[0] = 0
        self._walk_cache.clear()
        namespace_changed()

    def resolve(self, ctx: PathContext, path: bytes, start: Location | None = None,
                follow: bool = True, budget: list | None = None) -> Location:
        """Resolve path to a Location. start is the directory a relative path
        begins at (dirfd), default ctx.cwd."""
        if budget is None:
            if _cached[0] > MAX_CACHED_DENTRIES:
                self.prune()
            # Walk cache: symlink-free walks by root that may search any
            # directory (no permission checks depend on who walks) from the
            # sandbox root, until any name changes.
            creds = ctx.creds
            cacheable = start is None and creds.fs_uid == 0 and creds.cap_effective & SEARCH_ANY \
                and ctx.root == self.root and not ctx.resolve
            if cacheable:
                if self._walk_gen != _generation[0]:
                    self._walk_cache.clear()
                    self._walk_gen = _generation[0]
                key = (path, follow) if path[:1] == b"/" else (path, follow, ctx.cwd)
                hit = self._walk_cache.get(key)
                if hit is not None:
                    return hit
            budget = [MAX_SYMLINKS]
            loc = self.resolve(ctx, path, start, follow, budget)
            if cacheable and budget[0] == MAX_SYMLINKS:
                if len(self._walk_cache) > 4096:
                    self._walk_cache.clear()
                self._walk_cache[key] = loc
            return loc
        if not path:
            raise fserr(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise fserr(errno.ENAMETOOLONG)
        if path[:1] == b"/" and ctx.resolve & RESOLVE_BENEATH:
            raise fserr(errno.EXDEV)  # an absolute path or symlink leaves the start
        loc = ctx.root if path[:1] == b"/" else (start or ctx.cwd)
        comps = [c for c in path.split(b"/") if c]
        must_dir = path.endswith(b"/")
        for i, name in enumerate(comps):
            last = i == len(comps) - 1
            loc = self.child_of(ctx, loc, name)
            if loc.dentry.kind == S.S_IFLNK and (not last or follow or must_dir):
                loc = self._follow(ctx, loc, budget)
        if must_dir and loc.dentry.kind != S.S_IFDIR:
            raise fserr(errno.ENOTDIR)
        return loc

    def _follow(self, ctx: PathContext, link: Location, budget: list) -> Location:
        budget[0] -= 1
        if budget[0] < 0 or link.mount.flags & MS_NOSYMFOLLOW or ctx.resolve & RESOLVE_NO_SYMLINKS:
            raise fserr(errno.ELOOP)
        if ctx.resolve and type(link.inode).follow_link is not Inode.follow_link:
            self._magic_allowed(ctx, link)
        jump = link.inode.follow_link(ctx)
        if jump is not None:
            if ctx.resolve & RESOLVE_NO_XDEV and jump.mount is not link.mount:
                raise fserr(errno.EXDEV)
            return jump
        target = link.inode.readlink()
        if not target:
            raise fserr(errno.ENOENT)
        if target[:1] == b"/" and ctx.resolve & RESOLVE_NO_XDEV and link.mount is not ctx.root.mount:
            raise fserr(errno.EXDEV)
        parent = self.parent_of(ctx, link) if link.dentry is not link.mount.root else link
        return self.resolve(ctx, target, start=parent, follow=True, budget=budget)

    @staticmethod
    def _magic_allowed(ctx: PathContext, link: Location) -> None:
        """A magic link (/proc/self/cwd, /proc/self/fd/N) under openat2's
        restrictions: ELOOP for NO_MAGICLINKS, EXDEV in a scoped walk."""
        if ctx.resolve & RESOLVE_NO_MAGICLINKS:
            raise fserr(errno.ELOOP)
        if ctx.resolve & RESOLVE_SCOPED:
            raise fserr(errno.EXDEV)

    def resolve_parent(self, ctx: PathContext, path: bytes, start: Location | None = None
                       ) -> tuple[Location, bytes, bool]:
        """For creating/removing: the directory holding the last component,
        that component, and whether the path ended in a slash. The last name
        may be b"." or b".." (callers reject those as Linux does), or b"" for
        a path that is only slashes."""
        if not path:
            raise fserr(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise fserr(errno.ENAMETOOLONG)
        trailing = path.endswith(b"/")
        stripped = path.rstrip(b"/")
        if not stripped:
            if ctx.resolve & RESOLVE_BENEATH:
                raise fserr(errno.EXDEV)
            return ctx.root, b"", trailing
        head, _, name = stripped.rpartition(b"/")
        if len(name) > NAME_MAX:
            raise fserr(errno.ENAMETOOLONG)
        if b"/" in stripped:
            parent = self.resolve(ctx, head or b"/", start=start)
        else:
            parent = start or ctx.cwd
        if not parent.inode.is_dir():
            raise fserr(errno.ENOTDIR)
        # Linux's walk needs search permission on the parent for the last
        # component too, "." and ".." included (may_lookup), before any
        # caller looks at the name
        if not ctx.creds.cap_effective & SEARCH_ANY and not may_access(parent.inode.stat(), ctx.creds, X_OK):
            raise fserr(errno.EACCES)
        return parent, name, trailing

    # --- naming ---
    def path_of(self, loc: Location, root: Location) -> bytes:
        """The absolute path of loc as seen from root (getcwd, /proc links).
        A location outside root's subtree reads as its path from the real
        root, like Linux's d_path for an unreachable cwd."""
        return b"/" + b"/".join(reversed(self._names_up(loc, root)[0]))

    def _names_up(self, loc: Location, root: Location) -> tuple[list[bytes], bool]:
        """The names from loc up to root (or to the top), and whether root
        was reached."""
        parts = []
        while loc != root:
            if loc.dentry is loc.mount.root:
                if loc.mount.parent is None:
                    return parts, False
                loc = Location(loc.mount.parent, loc.mount.mountpoint)
                continue
            parts.append(loc.dentry.name)
            loc = Location(loc.mount, loc.dentry.parent)
        return parts, True

    def visible_mounts(self, root: Location) -> list[tuple[Mount, bytes]]:
        """(mount, its path from root) for the mounts a process whose root
        is `root` sees in /proc/self/mounts: those whose root lies at or
        below it, in table order."""
        out = []
        for m in self.mounts:
            parts, reached = self._names_up(Location(m, m.root), root)
            if reached:
                out.append((m, b"/" + b"/".join(reversed(parts))))
        return out

    @staticmethod
    def root_in_fs(m: Mount) -> bytes:
        """The path of m's root inside its filesystem (mountinfo's fourth
        field: / unless a bind mount shows part of it)."""
        parts, d = [], m.root
        while d.parent is not None:
            parts.append(d.name)
            d = d.parent
        return b"/" + b"/".join(reversed(parts))

    def mount_path_of(self, m: Mount) -> bytes:
        if m.parent is None:
            return b"/"
        return self.path_of(Location(m.parent, m.mountpoint), self.root)
