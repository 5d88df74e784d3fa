"""Path operations as the syscalls see them: open with its flags, mkdir,
unlink, rename and friends, with Linux's argument checks, permission
checks and read-only mounts. Filesystems only implement vfs.inode.Inode;
everything that spans a walk and an inode operation lives here.
"""
from __future__ import annotations

import errno
import stat as S

from .file import (O_ACCMODE, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY,
                   O_TMPFILE, O_TRUNC, O_WRONLY, FileDescription)
from .inode import DT_DIR, DirEntry, FileDescriptionImpl, fserr, now_ns
from .path import R_OK, W_OK, X_OK, Location, MountTree, PathContext, may_access

# Opening device nodes found on any filesystem goes through this hook
# (set by whoever assembles the sandbox: vfs.dev.open_device).
device_opener = None  # (rdev, open flags) -> impl or None: the sandbox's devices


class DirectoryImpl(FileDescriptionImpl):
    """An open directory: getdents reads a snapshot of its entries."""
    seekable = True

    def __init__(self, loc: Location, tree: MountTree):
        self.loc = loc
        self.tree = tree

    def readdir(self) -> list[DirEntry]:
        inode = self.loc.inode
        st = inode.stat()
        dot = DirEntry(b".", st.ino, DT_DIR)
        parent = self.loc.dentry.parent or self.loc.dentry
        try:
            pino = parent.inode.stat().ino
        except OSError:
            pino = st.ino
        return [dot, DirEntry(b"..", pino, DT_DIR)] + inode.readdir()

    def pread(self, size, offset):
        raise fserr(errno.EISDIR)

    def pwrite(self, data, offset):
        raise fserr(errno.EISDIR)


def _check_writable_mount(loc: Location) -> None:
    if loc.mount.readonly:
        raise fserr(errno.EROFS)


def _need(loc: Location, ctx: PathContext, mask: int) -> None:
    if not may_access(loc.inode.stat(), ctx.creds, mask):
        raise fserr(errno.EACCES)


def open_impl(loc: Location, flags: int, tree: MountTree) -> FileDescriptionImpl:
    st = loc.inode.stat()
    if S.S_ISDIR(st.mode):
        return DirectoryImpl(loc, tree)
    if S.S_ISCHR(st.mode) or S.S_ISBLK(st.mode):
        if loc.mount.flags & 4:  # MS_NODEV
            raise fserr(errno.EACCES)
        impl = device_opener(st.rdev, flags) if device_opener and S.S_ISCHR(st.mode) else None
        if impl is None:
            try:
                return loc.inode.open(flags)
            except OSError:
                raise fserr(errno.ENXIO) from None
        return impl
    return loc.inode.open(flags)


def open_path(tree: MountTree, ctx: PathContext, path: bytes, flags: int, mode: int,
              umask: int, start: Location | None = None, _depth: int = 0) -> FileDescription:
    """open(2)/openat(2) minus the fd table."""
    if flags & O_TMPFILE == O_TMPFILE:
        raise fserr(errno.EOPNOTSUPP)
    acc = flags & O_ACCMODE
    if acc == 3 and not flags & O_PATH:
        raise fserr(errno.EINVAL)
    follow = not flags & O_NOFOLLOW
    created = False
    if flags & O_CREAT and not flags & O_PATH:
        parent, name, trailing = tree.resolve_parent(ctx, path, start)
        if name in (b"", b".", b".."):
            raise fserr(errno.EISDIR)
        try:
            loc = tree.child_of(ctx, parent, name)
            if flags & O_EXCL:
                raise fserr(errno.EEXIST)
            if loc.dentry.kind == S.S_IFLNK:
                if not follow:
                    raise fserr(errno.ELOOP)
                try:
                    loc = tree.resolve(ctx, path, start)
                except FileNotFoundError:
                    # a dangling symlink: Linux creates its target
                    if _depth >= 40:
                        raise fserr(errno.ELOOP) from None
                    return open_path(tree, ctx, loc.inode.readlink(), flags, mode, umask,
                                     parent, _depth + 1)
        except FileNotFoundError:
            if trailing:
                raise fserr(errno.EISDIR) from None
            _may_create_in(parent, ctx)
            parent.inode.create(name, S.S_IFREG | (mode & ~umask & 0o7777),
                                ctx.creds.fs_uid, ctx.creds.fs_gid)
            parent.dentry.forget(name)
            loc = tree.child_of(ctx, parent, name)
            created = True
        if loc.inode.is_dir():
            raise fserr(errno.EISDIR)
    else:
        try:
            loc = tree.resolve(ctx, path, start, follow=follow)
        except FileNotFoundError:
            reopened = _reopen_magic_link(tree, ctx, path, start, flags)
            if reopened is None:
                raise
            return reopened
    st = loc.inode.stat()
    if S.S_ISLNK(st.mode):
        if flags & O_PATH and flags & O_NOFOLLOW:
            return FileDescription(FileDescriptionImpl(), flags, loc, loc.inode)
        raise fserr(errno.ELOOP)
    if flags & O_DIRECTORY and not S.S_ISDIR(st.mode):
        raise fserr(errno.ENOTDIR)
    if flags & O_PATH:
        return FileDescription(FileDescriptionImpl(), flags, loc, loc.inode)
    if S.S_ISDIR(st.mode) and (acc != O_RDONLY or flags & O_TRUNC):
        raise fserr(errno.EISDIR)
    if not created:
        mask = (R_OK if acc in (O_RDONLY, 2) else 0) | (W_OK if acc in (O_WRONLY, 2) else 0)
        if flags & O_TRUNC:
            mask |= W_OK
        _need(loc, ctx, mask)
        if mask & W_OK and S.S_ISREG(st.mode):
            _check_writable_mount(loc)
    if flags & O_TRUNC and S.S_ISREG(st.mode) and not created:
        loc.inode.setattr(size=0)
    impl = open_impl(loc, flags, tree)
    return FileDescription(impl, flags, loc, loc.inode)


def _reopen_magic_link(tree, ctx, path, start, flags):
    """/proc/<pid>/fd/N naming a pipe or socket has no path to walk to:
    Linux opens the same object anew, and so do we (impl.reopen)."""
    for _ in range(40):  # through ordinary symlinks such as /dev/stdin
        try:
            link = tree.resolve(ctx, path, start, follow=False)
        except OSError:
            return None
        open_fd = getattr(link.inode, "open_fd", None)
        if open_fd is not None:
            break
        if link.dentry.kind != S.S_IFLNK:
            return None
        path, start = link.inode.readlink(), tree.parent_of(ctx, link)
    else:
        return None
    desc = getattr(open_fd(ctx=ctx), "description", None)
    reopen = getattr(desc.impl, "reopen", None) if desc is not None else None
    if reopen is None:
        return None
    return FileDescription(reopen(flags), flags, None, None)


def _new_name(tree, ctx, path, start) -> tuple[Location, bytes, bool]:
    """The directory and name a new file would get: EEXIST if the name is
    taken (or is ".", ".." or the root)."""
    parent, name, trailing = tree.resolve_parent(ctx, path, start)
    if name in (b"", b".", b".."):
        raise fserr(errno.EEXIST)
    try:
        tree.child_of(ctx, parent, name)
    except FileNotFoundError:
        return parent, name, trailing
    raise fserr(errno.EEXIST)


def _may_create_in(parent: Location, ctx) -> None:
    _check_writable_mount(parent)
    _need(parent, ctx, W_OK | X_OK)


def mkdir(tree, ctx, path, mode, umask, start=None) -> None:
    parent, name, _ = _new_name(tree, ctx, path, start)
    _may_create_in(parent, ctx)
    parent.inode.mkdir(name, S.S_IFDIR | (mode & ~umask & 0o7777), ctx.creds.fs_uid, ctx.creds.fs_gid)
    parent.dentry.forget(name)


def mknod(tree, ctx, path, mode, rdev, umask, start=None) -> None:
    kind = S.S_IFMT(mode) or S.S_IFREG
    if kind not in (S.S_IFREG, S.S_IFCHR, S.S_IFBLK, S.S_IFIFO, S.S_IFSOCK):
        raise fserr(errno.EINVAL)
    parent, name, _ = _new_name(tree, ctx, path, start)
    _may_create_in(parent, ctx)
    perm = mode & ~umask & 0o7777
    if kind == S.S_IFREG:
        parent.inode.create(name, kind | perm, ctx.creds.fs_uid, ctx.creds.fs_gid)
    else:
        parent.inode.mknod(name, kind | perm, rdev, ctx.creds.fs_uid, ctx.creds.fs_gid)
    parent.dentry.forget(name)


def _sticky_ok(parent: Location, victim: Location, ctx) -> bool:
    pst = parent.inode.stat()
    if not pst.mode & S.S_ISVTX or ctx.creds.fs_uid == 0:
        return True
    return ctx.creds.fs_uid in (pst.uid, victim.inode.stat().uid)


def unlink(tree, ctx, path, start=None) -> None:
    parent, name, trailing = tree.resolve_parent(ctx, path, start)
    if name in (b"", b".", b".."):
        raise fserr(errno.EISDIR if name == b"" else errno.EISDIR)
    victim = tree.child_of(ctx, parent, name)
    if trailing and not victim.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    if victim.inode.is_dir():
        raise fserr(errno.EISDIR)
    _check_writable_mount(parent)
    _need(parent, ctx, W_OK | X_OK)
    if not _sticky_ok(parent, victim, ctx):
        raise fserr(errno.EPERM)
    parent.inode.unlink(name)
    parent.dentry.forget(name)


def rmdir(tree, ctx, path, start=None) -> None:
    parent, name, _ = tree.resolve_parent(ctx, path, start)
    if name == b"." or name == b"":
        raise fserr(errno.EINVAL if name == b"." else errno.EBUSY)
    if name == b"..":
        raise fserr(errno.ENOTEMPTY)
    victim = tree.child_of(ctx, parent, name)
    if not victim.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    if tree.is_mountpoint(Location(parent.mount, parent.dentry.child(name))) or victim.dentry is victim.mount.root:
        raise fserr(errno.EBUSY)
    _check_writable_mount(parent)
    _need(parent, ctx, W_OK | X_OK)
    if not _sticky_ok(parent, victim, ctx):
        raise fserr(errno.EPERM)
    parent.inode.rmdir(name)
    parent.dentry.forget(name)


def symlink(tree, ctx, target: bytes, path, start=None) -> None:
    if not target:
        raise fserr(errno.ENOENT)
    parent, name, trailing = _new_name(tree, ctx, path, start)
    if trailing:
        raise fserr(errno.ENOENT)
    _may_create_in(parent, ctx)
    parent.inode.symlink(name, target, ctx.creds.fs_uid, ctx.creds.fs_gid)
    parent.dentry.forget(name)


def link(tree, ctx, old: Location, newpath, start=None) -> None:
    parent, name, _ = _new_name(tree, ctx, newpath, start)
    if old.inode.is_dir():
        raise fserr(errno.EPERM)
    if parent.mount is not old.mount:
        raise fserr(errno.EXDEV)
    _may_create_in(parent, ctx)
    parent.inode.link(name, old.inode)
    parent.dentry.forget(name)


def rename(tree, ctx, oldpath, newpath, old_start=None, new_start=None, noreplace=False) -> None:
    oparent, oname, _ = tree.resolve_parent(ctx, oldpath, old_start)
    nparent, nname, _ = tree.resolve_parent(ctx, newpath, new_start)
    if oname in (b"", b".", b"..") or nname in (b"", b".", b".."):
        raise fserr(errno.EBUSY if b"" in (oname, nname) else errno.EINVAL)
    victim = tree.child_of(ctx, oparent, oname)
    if oparent.mount is not nparent.mount:
        raise fserr(errno.EXDEV)
    try:
        target = tree.child_of(ctx, nparent, nname)
    except FileNotFoundError:
        target = None
    if target is not None and noreplace:
        raise fserr(errno.EEXIST)
    if target is not None and target.inode is victim.inode:
        return
    if victim.dentry is victim.mount.root or tree.is_mountpoint(victim):
        raise fserr(errno.EBUSY)
    # moving a directory into its own subtree
    if victim.inode.is_dir():
        d = nparent.dentry
        while d is not None:
            if d is victim.dentry:
                raise fserr(errno.EINVAL)
            d = d.parent
    _check_writable_mount(oparent)
    _need(oparent, ctx, W_OK | X_OK)
    _need(nparent, ctx, W_OK | X_OK)
    oparent.inode.rename(oname, nparent.inode, nname)
    oparent.dentry.forget(oname)
    nparent.dentry.forget(nname)


def setattr(loc: Location, ctx, **changes) -> None:
    _check_writable_mount(loc)
    st = loc.inode.stat()
    creds = ctx.creds
    if "mode" in changes and creds.fs_uid not in (0, st.uid):
        raise fserr(errno.EPERM)
    if ("uid" in changes or "gid" in changes) and creds.fs_uid != 0:
        if changes.get("uid") not in (None, st.uid) or changes.get("gid") not in (None, st.gid, creds.fs_gid):
            raise fserr(errno.EPERM)
    if "size" in changes:
        if S.S_ISDIR(st.mode):
            raise fserr(errno.EISDIR)
        if not S.S_ISREG(st.mode):
            raise fserr(errno.EINVAL)
        if not may_access(st, creds, W_OK):
            raise fserr(errno.EACCES)
    loc.inode.setattr(**changes)


def access(loc: Location, ctx, mask: int) -> None:
    if mask & W_OK and loc.mount.readonly and not S.S_ISCHR(loc.inode.stat().mode):
        raise fserr(errno.EROFS)
    if not may_access(loc.inode.stat(), ctx.creds, mask & 7):
        raise fserr(errno.EACCES)


__all__ = ["open_path", "mkdir", "mknod", "unlink", "rmdir", "symlink", "link", "rename",
           "setattr", "access", "DirectoryImpl", "now_ns", "X_OK"]
