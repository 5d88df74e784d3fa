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
from dataclasses import dataclass
from typing import NamedTuple

from .inode import Filesystem, Inode, Stat, fserr

PATH_MAX = 4096
NAME_MAX = 255
MAX_SYMLINKS = 40

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8

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


class Mount:
    def __init__(self, fs: Filesystem, root: Dentry, parent: "Mount | None",
                 mountpoint: Dentry | None, flags: int = 0, source: str = "none"):
        self.id = next(_mount_ids)
        self.fs = fs
        self.root = root
        self.parent = parent
        self.mountpoint = mountpoint
        self.flags = flags
        self.source = source

    @property
    def readonly(self) -> bool:
        return bool(self.flags & MS_RDONLY)


class Location(NamedTuple):
    """(mount, dentry): what a path names. A tuple: made at every walk step."""
    mount: Mount
    dentry: Dentry

    @property
    def inode(self) -> Inode:
        return self.dentry.inode


@dataclass
class Creds:
    """The part of a task's credentials the VFS checks."""
    uid: int = 0
    gid: int = 0
    groups: tuple = ()
    fsuid: int | None = None
    fsgid: int | None = None

    @property
    def fs_uid(self) -> int:
        return self.uid if self.fsuid is None else self.fsuid

    @property
    def fs_gid(self) -> int:
        return self.gid if self.fsgid is None else self.fsgid


class PathContext:
    """Who walks: root and cwd to start from, credentials to check.
    `task` is opaque to the VFS; procfs uses it for /proc/self."""
    __slots__ = ("root", "cwd", "creds", "task")

    def __init__(self, root: Location, cwd: Location, creds: Creds, task=None):
        self.root = root
        self.cwd = cwd
        self.creds = creds
        self.task = task


def may_access(st, creds: Creds, mask: int) -> bool:
    """Unix permission bits, with root's override (CAP_DAC_OVERRIDE):
    root may read/write anything and execute if any x bit is set or it is a
    directory."""
    if mask == 0:
        return True
    if creds.fs_uid == 0:
        if mask & X_OK and not S.S_ISDIR(st.mode) and not st.mode & 0o111:
            return False
        return True
    if st.uid == creds.fs_uid:
        bits = (st.mode >> 6) & 7
    elif st.gid == creds.fs_gid or st.gid in creds.groups:
        bits = (st.mode >> 3) & 7
    else:
        bits = st.mode & 7
    return bits & mask == mask


class _MountpointDir(Inode):
    """An empty directory standing in for a mountpoint the filesystem
    below does not provide; only ever covered by a mount."""

    def __init__(self, fs: Filesystem):
        self.fs = fs
        self._stat = Stat(mode=S.S_IFDIR | 0o755, ino=0, dev=fs.dev, nlink=2)

    def stat(self) -> Stat:
        return self._stat

    def readdir(self):
        return []

    def lookup(self, name):
        raise fserr(errno.ENOENT)


class MountTree:
    """All mounts of one sandbox (one mount namespace)."""

    def __init__(self, root_fs: Filesystem, flags: int = 0, source: str = "none"):
        root = Dentry(b"/", None, root_fs.root())
        self.root_mount = Mount(root_fs, root, None, None, flags, source)
        # (parent mount id, mountpoint dentry id) -> top mount there
        self._over: dict[tuple[int, int], Mount] = {}
        self.mounts: list[Mount] = [self.root_mount]
        self._root = Location(self.root_mount, self.root_mount.root)
        self._walk_cache: dict = {}
        self._walk_gen = -1

    @property
    def root(self) -> Location:
        return self._root

    # --- mounting ---
    def mount(self, at: Location, fs: Filesystem, flags: int = 0, source: str = "none") -> Mount:
        if not at.inode.is_dir():
            raise fserr(errno.ENOTDIR)
        m = Mount(fs, Dentry(at.dentry.name, None, fs.root()), at.mount, at.dentry, flags, source)
        self._over[(at.mount.id, id(at.dentry))] = m
        at.dentry.mounted = True
        d = at.dentry
        while d is not None:
            d.pinned = True
            d = d.parent
        namespace_changed()
        self.mounts.append(m)
        return m

    def mount_path(self, path: bytes, fs: Filesystem, flags: int = 0, source: str = "none") -> Mount:
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
            d = Dentry(name, parent.dentry, _MountpointDir(parent.mount.fs))
            parent.dentry.children[name] = d
            at = Location(parent.mount, d)
        return self.mount(at, fs, flags, source)

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
        """`..` of loc as seen from ctx.root."""
        while True:
            if loc == ctx.root:
                return loc
            if loc.dentry is loc.mount.root:
                if loc.mount.parent is None:
                    return loc
                loc = Location(loc.mount.parent, loc.mount.mountpoint)
                continue
            return Location(loc.mount, loc.dentry.parent)

    def child_of(self, ctx: PathContext, loc: Location, name: bytes) -> Location:
        """One step down (no symlink following), checking search permission."""
        if loc.dentry.kind != S.S_IFDIR:
            raise fserr(errno.ENOTDIR)
        # root searches any directory (CAP_DAC_OVERRIDE): skip the stat
        if ctx.creds.fs_uid != 0 and not may_access(loc.inode.stat(), ctx.creds, X_OK):
            raise fserr(errno.EACCES)
        if name == b".":
            return loc
        if name == b"..":
            return self.parent_of(ctx, loc)
        d = loc.dentry.children.get(name)
        if d is None:
            if len(name) > NAME_MAX:
                raise fserr(errno.ENAMETOOLONG)
            d = loc.dentry.child(name)
        if d.mounted:
            return self._cross_down(Location(loc.mount, d))
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
            # Walk cache: symlink-free walks by root (no permission checks
            # depend on who walks) from the sandbox root, until any name changes.
            cacheable = start is None and ctx.creds.fs_uid == 0 and ctx.root == self.root
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
        if budget[0] < 0:
            raise fserr(errno.ELOOP)
        jump = link.inode.follow_link(ctx)
        if jump is not None:
            return jump
        target = link.inode.readlink()
        if not target:
            raise fserr(errno.ENOENT)
        parent = self.parent_of(ctx, link) if link.dentry is not link.mount.root else link
        return self.resolve(ctx, target, start=parent, follow=True, budget=budget)

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
        return parent, name, trailing

    # --- naming ---
    def path_of(self, loc: Location, root: Location) -> bytes:
        """The absolute path of loc as seen from root (getcwd, /proc links).
        A location outside root's subtree reads as its path from the real
        root, like Linux's d_path for an unreachable cwd."""
        parts = []
        while loc != root:
            if loc.dentry is loc.mount.root:
                if loc.mount.parent is None:
                    break
                loc = Location(loc.mount.parent, loc.mount.mountpoint)
                continue
            parts.append(loc.dentry.name)
            loc = Location(loc.mount, loc.dentry.parent)
        return b"/" + b"/".join(reversed(parts))

    def mount_path_of(self, m: Mount) -> bytes:
        if m.parent is None:
            return b"/"
        return self.path_of(Location(m.parent, m.mountpoint), self.root)
