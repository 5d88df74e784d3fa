"""Path operations as the syscalls see them: open with its flags, mkdir,
unlink, rename and friends, with Linux's argument checks, permission
checks and read-only mounts. Filesystems only implement vfs.inode.Inode;
everything that spans a walk and an inode operation lives here.
"""
from __future__ import annotations

import errno
import stat as S

from . import inotify
from .file import (O_ACCMODE, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY,
                   O_TMPFILE, O_TRUNC, O_WRONLY, FileDescription)
from .inode import DT_DIR, DirEntry, FileDescriptionImpl, fserr, now_ns
from .path import (CAP_CHOWN, CAP_FOWNER, CAP_FSETID, CAP_MKNOD, CAP_SYS_ADMIN, R_OK,
                   RESOLVE_NO_XDEV, W_OK, X_OK, Dentry, Location, MountTree, PathContext,
                   may_access)

# Opening device nodes found on any filesystem goes through this hook
# (set by whoever assembles the sandbox: vfs.dev.open_device).
device_opener = None  # (rdev, open flags) -> impl or None: the sandbox's devices
# FIFOs on any filesystem are the sentry's pipes (sentry.fifo.open_end).
fifo_opener = None  # (stat, open flags) -> impl


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
    if S.S_ISFIFO(st.mode) and fifo_opener is not None:
        return fifo_opener(st, flags)
    return loc.inode.open(flags)


def open_path(tree: MountTree, ctx: PathContext, path: bytes, flags: int, mode: int,
              umask: int, start: Location | None = None, _depth: int = 0) -> FileDescription:
    """open(2)/openat(2) minus the fd table."""
    if flags & O_CREAT and flags & O_DIRECTORY and not flags & O_PATH:
        raise fserr(errno.EINVAL)  # Linux >= 6.4 (O_PATH drops O_CREAT)
    if flags & _O_TMPFILE_BIT and not flags & O_PATH:
        return _open_tmpfile(tree, ctx, path, flags, mode, umask, start)
    acc = flags & O_ACCMODE
    if acc == 3 and not flags & O_PATH:
        raise fserr(errno.EINVAL)
    follow = not flags & O_NOFOLLOW
    created = False
    if flags & O_CREAT and not flags & O_PATH:
        parent, name, trailing = tree.resolve_parent(ctx, path, start)
        if name in (b"", b".", b".."):  # an existing directory
            raise fserr(errno.EEXIST if flags & O_EXCL else errno.EISDIR)
        if trailing:
            raise fserr(errno.EISDIR)  # before the lookup, as Linux does
        link = None
        try:
            loc = tree.child_of(ctx, parent, name)
            if flags & O_EXCL:
                raise fserr(errno.EEXIST)
            if loc.dentry.kind == S.S_IFLNK:
                if not follow:
                    raise fserr(errno.ELOOP)
                link = loc
        except FileNotFoundError:
            _may_create_in(parent, ctx)
            parent.inode.create(name, S.S_IFREG | (mode & ~umask & 0o7777),
                                ctx.creds.fs_uid, ctx.creds.fs_gid)
            parent.dentry.forget(name)
            loc = tree.child_of(ctx, parent, name)
            created = True
            if inotify.marks:
                inotify.created(parent, name)
        if link is not None:
            # Linux opens the link body as an O_CREAT path of its own: a
            # trailing slash there is EISDIR, a dangling link creates its
            # target, a missing directory on the way is ENOENT
            if _depth >= 40:
                raise fserr(errno.ELOOP)
            return open_path(tree, ctx, link.inode.readlink(), flags, mode, umask, parent, _depth + 1)
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
    if flags & O_DIRECTORY and not S.S_ISDIR(st.mode):
        raise fserr(errno.ENOTDIR)  # before ELOOP for a symlink, as Linux
    if S.S_ISLNK(st.mode):
        if flags & O_PATH and flags & O_NOFOLLOW:
            return FileDescription(FileDescriptionImpl(), flags, loc, loc.inode)
        raise fserr(errno.ELOOP)
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
        remove_privs(loc.inode, ctx.creds)  # handle_truncate, whatever the size
        _set_size(loc.inode, 0, st.size)
    impl = open_impl(loc, flags, tree)
    desc = FileDescription(impl, flags, loc, loc.inode)
    if inotify.marks:
        inotify.opened(desc, truncated=bool(flags & O_TRUNC) and S.S_ISREG(st.mode) and not created)
    return desc


_O_TMPFILE_BIT = O_TMPFILE & ~O_DIRECTORY


def _open_tmpfile(tree, ctx, path, flags, mode, umask, start) -> FileDescription:
    """O_TMPFILE: an unnamed file in the directory path names; linkat can
    give it a name later unless O_EXCL was given."""
    if flags & (O_TMPFILE | O_CREAT) != O_TMPFILE or flags & O_ACCMODE not in (O_WRONLY, 2):
        raise fserr(errno.EINVAL)
    loc = tree.resolve(ctx, path, start, follow=not flags & O_NOFOLLOW)
    if not loc.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    _may_create_in(loc, ctx)
    inode = loc.inode.tmpfile(S.S_IFREG | (mode & ~umask & 0o7777), ctx.creds.fs_uid,
                              ctx.creds.fs_gid, linkable=not flags & O_EXCL)
    # a dentry of its own, never in the directory's cache: /proc shows "#ino"
    dentry = Dentry(b"#%d" % inode.stat().ino, loc.dentry, inode)
    return FileDescription(inode.open(flags), flags, Location(loc.mount, dentry), inode)


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
    if ctx.resolve & RESOLVE_NO_XDEV:
        raise fserr(errno.EXDEV)  # the pipe or socket lives on a mount of its own
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
    # mkdir keeps only rwx and sticky (setgid comes from the parent only)
    parent.inode.mkdir(name, S.S_IFDIR | (mode & ~umask & 0o1777), ctx.creds.fs_uid, ctx.creds.fs_gid)
    parent.dentry.forget(name)
    if inotify.marks:
        inotify.created(parent, name, isdir=True)


def mknod(tree, ctx, path, mode, rdev, umask, start=None) -> None:
    kind = S.S_IFMT(mode) or S.S_IFREG
    if kind not in (S.S_IFREG, S.S_IFCHR, S.S_IFBLK, S.S_IFIFO, S.S_IFSOCK):
        raise fserr(errno.EINVAL)
    parent, name, _ = _new_name(tree, ctx, path, start)
    _may_create_in(parent, ctx)
    perm = mode & ~umask & 0o7777
    if kind in (S.S_IFCHR, S.S_IFBLK) and not (kind == S.S_IFCHR and rdev == 0) \
            and not _capable(ctx.creds, CAP_MKNOD):
        raise fserr(errno.EPERM)  # devices need CAP_MKNOD (a 0:0 whiteout does not)
    if kind == S.S_IFREG:
        parent.inode.create(name, kind | perm, ctx.creds.fs_uid, ctx.creds.fs_gid)
    else:
        parent.inode.mknod(name, kind | perm, rdev, ctx.creds.fs_uid, ctx.creds.fs_gid)
    parent.dentry.forget(name)
    if inotify.marks:
        inotify.created(parent, name)


def _capable(creds, cap: int) -> bool:
    return bool(creds.cap_effective >> cap & 1)


def _sticky_ok(parent: Location, victim: Location, ctx) -> bool:
    pst = parent.inode.stat()
    if not pst.mode & S.S_ISVTX or ctx.creds.fs_uid == pst.uid:
        return True
    return ctx.creds.fs_uid == victim.inode.stat().uid or _capable(ctx.creds, CAP_FOWNER)


def unlink(tree, ctx, path, start=None) -> None:
    parent, name, trailing = tree.resolve_parent(ctx, path, start)
    if name in (b"", b".", b".."):
        raise fserr(errno.EISDIR if name == b"" else errno.EISDIR)
    # Linux's order (do_unlinkat, may_delete): EROFS, the lookup, a
    # trailing slash, then permission and the sticky bit, then the type
    _check_writable_mount(parent)
    victim = tree.child_of(ctx, parent, name)
    if trailing:
        raise fserr(errno.EISDIR if victim.inode.is_dir() else errno.ENOTDIR)
    _need(parent, ctx, W_OK | X_OK)
    if not _sticky_ok(parent, victim, ctx):
        raise fserr(errno.EPERM)
    if victim.inode.is_dir():
        raise fserr(errno.EISDIR)
    parent.inode.unlink(name)
    parent.dentry.forget(name)
    if inotify.marks:
        inotify.removed(parent, name, victim)


def rmdir(tree, ctx, path, start=None) -> None:
    parent, name, _ = tree.resolve_parent(ctx, path, start)
    if name == b"." or name == b"":
        raise fserr(errno.EINVAL if name == b"." else errno.EBUSY)
    if name == b"..":
        raise fserr(errno.ENOTEMPTY)
    # Linux's order (do_rmdir, may_delete): EROFS, the lookup, permission
    # and the sticky bit, then the type, then mount points
    _check_writable_mount(parent)
    victim = tree.child_of(ctx, parent, name)
    _need(parent, ctx, W_OK | X_OK)
    if not _sticky_ok(parent, victim, ctx):
        raise fserr(errno.EPERM)
    if not victim.inode.is_dir():
        raise fserr(errno.ENOTDIR)
    if tree.is_mountpoint(Location(parent.mount, parent.dentry.child(name))) or victim.dentry is victim.mount.root:
        raise fserr(errno.EBUSY)
    parent.inode.rmdir(name)
    parent.dentry.forget(name)
    if inotify.marks:
        inotify.removed(parent, name, victim)


def symlink(tree, ctx, target: bytes, path, start=None) -> None:
    if not target:
        raise fserr(errno.ENOENT)
    parent, name, trailing = _new_name(tree, ctx, path, start)
    if trailing:
        raise fserr(errno.ENOENT)
    _may_create_in(parent, ctx)
    parent.inode.symlink(name, target, ctx.creds.fs_uid, ctx.creds.fs_gid)
    parent.dentry.forget(name)
    if inotify.marks:
        inotify.created(parent, name)


def _may_hardlink(st, creds) -> bool:
    """fs.protected_hardlinks=1 (Debian's and most distributions' setting):
    only the owner or CAP_FOWNER may link a file that is not a regular file
    the caller can read and write, or that is set-user-ID or setgid-executable."""
    if creds.fs_uid == st.uid or _capable(creds, CAP_FOWNER):
        return True
    if not S.S_ISREG(st.mode) or st.mode & S.S_ISUID:
        return False
    if st.mode & S.S_ISGID and st.mode & S.S_IXGRP:
        return False
    return may_access(st, creds, R_OK | W_OK)


def link(tree, ctx, old: Location, newpath, start=None) -> None:
    parent, name, trailing = _new_name(tree, ctx, newpath, start)
    if trailing:
        raise fserr(errno.ENOENT)  # "new/" names a directory that link cannot make
    if old.inode.is_dir():
        raise fserr(errno.EPERM)
    if parent.mount is not old.mount:
        raise fserr(errno.EXDEV)
    if not _may_hardlink(old.inode.stat(), ctx.creds):
        raise fserr(errno.EPERM)
    _may_create_in(parent, ctx)
    parent.inode.link(name, old.inode)
    parent.dentry.forget(name)
    if inotify.marks:
        inotify.linked(parent, name, old.inode)


RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4


def _is_under(d, ancestor) -> bool:
    """Is dentry d the dentry ancestor or below it?"""
    while d is not None:
        if d is ancestor:
            return True
        d = d.parent
    return False


def rename(tree, ctx, oldpath, newpath, old_start=None, new_start=None, noreplace=False,
           flags: int = 0) -> None:
    """renameat2 with RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT
    (which needs no privilege since Linux 5.8), checked in Linux's order
    (do_renameat2, then vfs_rename's may_delete / may_create)."""
    if noreplace:
        flags |= RENAME_NOREPLACE
    exchange = flags & RENAME_EXCHANGE
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) or \
            (exchange and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT)):
        raise fserr(errno.EINVAL)
    oparent, oname, otrail = tree.resolve_parent(ctx, oldpath, old_start)
    nparent, nname, ntrail = tree.resolve_parent(ctx, newpath, new_start)
    if oparent.mount is not nparent.mount:
        raise fserr(errno.EXDEV)
    if oname in (b"", b".", b".."):
        raise fserr(errno.EBUSY)
    if nname in (b"", b".", b".."):
        raise fserr(errno.EEXIST if flags & RENAME_NOREPLACE else errno.EBUSY)
    _check_writable_mount(oparent)
    victim = tree.child_of(ctx, oparent, oname)
    try:
        target = tree.child_of(ctx, nparent, nname)
    except FileNotFoundError:
        if exchange:
            raise
        target = None
    if target is not None and flags & RENAME_NOREPLACE:
        raise fserr(errno.EEXIST)
    src_dir = victim.inode.is_dir()
    dst_dir = target is not None and target.inode.is_dir()
    if (otrail and not src_dir) or (ntrail and not (dst_dir if exchange else src_dir)):
        raise fserr(errno.ENOTDIR)
    if _is_under(nparent.dentry, victim.dentry):
        raise fserr(errno.EINVAL)  # into its own subtree
    if target is not None and _is_under(oparent.dentry, target.dentry):
        raise fserr(errno.EINVAL if exchange else errno.ENOTEMPTY)
    if target is not None and target.inode is victim.inode:
        return
    _may_delete(oparent, victim, ctx, src_dir)
    if target is None:
        _need(nparent, ctx, W_OK | X_OK)
    else:
        _may_delete(nparent, target, ctx, dst_dir if exchange else src_dir)
    if oparent.dentry is not nparent.dentry:
        # a directory changing parent rewrites its '..': write access to it
        if src_dir:
            _need(victim, ctx, W_OK)
        if exchange and dst_dir:
            _need(target, ctx, W_OK)
    for loc in (victim, target):
        if loc is not None and (loc.dentry is loc.mount.root or tree.is_mountpoint(loc)):
            raise fserr(errno.EBUSY)
    if exchange:
        oparent.inode.exchange(oname, nparent.inode, nname)
    elif flags & RENAME_WHITEOUT:
        oparent.inode.rename_whiteout(oname, nparent.inode, nname, ctx.creds.fs_uid, ctx.creds.fs_gid)
    else:
        oparent.inode.rename(oname, nparent.inode, nname)
    oparent.dentry.forget(oname)
    nparent.dentry.forget(nname)
    if inotify.marks:
        inotify.moved(oparent, oname, nparent, nname, victim, target, exchange=bool(exchange))


def _may_delete(parent: Location, victim: Location, ctx, want_dir: bool) -> None:
    """may_delete(): write+search on the directory, the sticky bit, then
    the type the caller expects."""
    _need(parent, ctx, W_OK | X_OK)
    if not _sticky_ok(parent, victim, ctx):
        raise fserr(errno.EPERM)
    is_dir = victim.inode.is_dir()
    if want_dir and not is_dir:
        raise fserr(errno.ENOTDIR)
    if not want_dir and is_dir:
        raise fserr(errno.EISDIR)


def _in_group(creds, gid: int) -> bool:
    return gid == creds.fs_gid or gid in creds.groups


def setattr(loc: Location, ctx, touch: bool = False, **changes) -> None:
    """chmod/chown/truncate/utimes with setattr_prepare's rules: chown
    with CAP_CHOWN only (an owner may change the group to one of theirs),
    chmod by the owner or CAP_FOWNER (setgid dropped for a non-member
    without CAP_FSETID), explicit times by the owner or CAP_FOWNER (EPERM),
    times set to now (`touch`) by them or a writer (EACCES), truncation by
    a writer, dropping set-ID bits without CAP_FSETID."""
    _check_writable_mount(loc)
    st = loc.inode.stat()
    creds = ctx.creds
    may_chown = _capable(creds, CAP_CHOWN)
    owner = creds.fs_uid == st.uid or _capable(creds, CAP_FOWNER)
    if "uid" in changes and not may_chown and not (creds.fs_uid == st.uid == changes["uid"]):
        raise fserr(errno.EPERM)
    if "gid" in changes and not may_chown and not (
            creds.fs_uid == st.uid and (changes["gid"] == st.gid or _in_group(creds, changes["gid"]))):
        raise fserr(errno.EPERM)
    if "mode" in changes:
        if not owner:
            raise fserr(errno.EPERM)
        if not _in_group(creds, changes.get("gid", st.gid)) and not _capable(creds, CAP_FSETID):
            changes["mode"] &= ~S.S_ISGID
    if "atime_ns" in changes or "mtime_ns" in changes:
        if touch:
            if not owner and not may_access(st, creds, W_OK):
                raise fserr(errno.EACCES)
        elif not owner:
            raise fserr(errno.EPERM)
    if "size" in changes:
        if S.S_ISDIR(st.mode):
            raise fserr(errno.EISDIR)
        if not S.S_ISREG(st.mode):
            raise fserr(errno.EINVAL)
        if not may_access(st, creds, W_OK):
            raise fserr(errno.EACCES)
        if "mode" not in changes and "uid" not in changes and "gid" not in changes:
            kept = _privs_kept(st.mode, creds)
            if kept is not None:
                changes["mode"] = kept
        size = changes.pop("size")
        if changes:
            loc.inode.setattr(**changes)
        _set_size(loc.inode, size, st.size)
        if inotify.marks:
            inotify.attr_changed(loc, ("size", *changes))
        return
    loc.inode.setattr(**changes)
    if inotify.marks:
        inotify.attr_changed(loc, changes)


def _privs_kept(mode: int, creds) -> "int | None":
    """The permission bits a regular file keeps when someone without
    CAP_FSETID writes or truncates it: no set-user-ID, no set-group-ID
    with group exec (should_remove_suid); None: unchanged."""
    if not S.S_ISREG(mode) or _capable(creds, CAP_FSETID):
        return None
    kill = (mode & S.S_ISUID) | (mode & S.S_ISGID if mode & S.S_IXGRP else 0)
    return (mode & 0o7777 & ~kill) if kill else None


def remove_privs(inode, creds) -> None:
    """Before a write by a caller without CAP_FSETID: drop set-ID bits (file_remove_privs)."""
    kept = _privs_kept(inode.stat().mode, creds)
    if kept is not None:
        inode.setattr(mode=kept)


def _set_size(inode, size: int, old: int) -> None:
    inode.setattr(size=size)
    if inode.page_cache is not None:  # mapped MAP_SHARED: the mappings see it too
        inode.page_cache.resized(old, size)


# --- fallocate ---
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_COLLAPSE_RANGE = 0x01, 0x02, 0x08
FALLOC_FL_ZERO_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_UNSHARE_RANGE = 0x10, 0x20, 0x40
FALLOC_FL_WRITE_ZEROES = 0x80
FALLOC_FL_MODE_MASK = (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE |
                       FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_WRITE_ZEROES)
MAX_LFS_FILESIZE = (1 << 63) - 1


def fallocate(desc: FileDescription, file_mode: int, ctx, mode: int, offset: int, length: int) -> None:
    """vfs_fallocate's checks in order, then the filesystem's. file_mode is
    the st_mode of what desc holds (pipes and sockets have no inode)."""
    if offset < 0 or length <= 0:
        raise fserr(errno.EINVAL)
    if mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE):
        raise fserr(errno.EOPNOTSUPP)
    kind = mode & FALLOC_FL_MODE_MASK
    if kind == FALLOC_FL_PUNCH_HOLE:
        if not mode & FALLOC_FL_KEEP_SIZE:
            raise fserr(errno.EOPNOTSUPP)
    elif kind in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_WRITE_ZEROES):
        if mode & FALLOC_FL_KEEP_SIZE:
            raise fserr(errno.EOPNOTSUPP)
    elif kind not in (0, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE):
        raise fserr(errno.EOPNOTSUPP)
    if not desc.writable:
        raise fserr(errno.EBADF)
    if S.S_ISFIFO(file_mode):
        raise fserr(errno.ESPIPE)
    if S.S_ISDIR(file_mode):
        raise fserr(errno.EISDIR)
    if not (S.S_ISREG(file_mode) or S.S_ISBLK(file_mode)) or desc.inode is None:
        raise fserr(errno.ENODEV)
    if offset + length > MAX_LFS_FILESIZE:
        raise fserr(errno.EFBIG)
    inode = desc.inode
    old_size = inode.stat().size
    inode.fallocate(mode, offset, length)
    remove_privs(inode, ctx.creds)
    if inotify.marks:
        inotify.modified(desc)
    cache = inode.page_cache
    if cache is not None:  # mapped MAP_SHARED: the mappings see it too
        if kind == FALLOC_FL_PUNCH_HOLE and hasattr(cache, "punch"):
            cache.punch(offset, length)
        new_size = inode.stat().size
        if new_size != old_size:
            cache.resized(old_size, new_size)


# --- extended attributes ---
XATTR_CREATE, XATTR_REPLACE = 1, 2


def _xattr_permission(loc: Location, ctx, name: bytes, write: bool) -> None:
    """xattr_permission() and the capability hooks: trusted.* needs
    CAP_SYS_ADMIN (else EPERM to write, ENODATA to read), security.* needs
    it to write and nothing to read, user.* lives only on regular files
    and directories (EPERM/ENODATA) and not on others' sticky directories
    (unless CAP_FOWNER); everything else needs the file's read or write
    permission."""
    st = loc.inode.stat()
    creds = ctx.creds
    admin = _capable(creds, CAP_SYS_ADMIN)
    if name.startswith(b"security.") or name.startswith(b"system."):
        if write and name.startswith(b"security.") and not admin:
            raise fserr(errno.EPERM)
        return
    if name.startswith(b"trusted."):
        if not admin:
            raise fserr(errno.EPERM if write else errno.ENODATA)
        return
    if name.startswith(b"user."):
        if not (S.S_ISREG(st.mode) or S.S_ISDIR(st.mode)):
            raise fserr(errno.EPERM if write else errno.ENODATA)
        if write and S.S_ISDIR(st.mode) and st.mode & S.S_ISVTX and creds.fs_uid != st.uid \
                and not _capable(creds, CAP_FOWNER):
            raise fserr(errno.EPERM)
    if not may_access(st, creds, W_OK if write else R_OK):
        raise fserr(errno.EACCES)


def getxattr(loc: Location, ctx, name: bytes) -> bytes:
    _xattr_permission(loc, ctx, name, write=False)
    return loc.inode.getxattr(name)


def setxattr(loc: Location, ctx, name: bytes, value: bytes, flags: int) -> None:
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise fserr(errno.EINVAL)
    _check_writable_mount(loc)
    _xattr_permission(loc, ctx, name, write=True)
    loc.inode.setxattr(name, value, flags)
    if inotify.marks:
        inotify.attr_changed(loc, ("xattr",))


def listxattr(loc: Location, ctx) -> list[bytes]:
    """The names the caller may see: trusted.* only with CAP_SYS_ADMIN."""
    names = loc.inode.listxattr()
    if not _capable(ctx.creds, CAP_SYS_ADMIN):
        names = [n for n in names if not n.startswith(b"trusted.")]
    return names


def removexattr(loc: Location, ctx, name: bytes) -> None:
    _check_writable_mount(loc)
    _xattr_permission(loc, ctx, name, write=True)
    loc.inode.removexattr(name)
    if inotify.marks:
        inotify.attr_changed(loc, ("xattr",))


def access(loc: Location, ctx, mask: int) -> None:
    if mask & W_OK and loc.mount.readonly and not S.S_ISCHR(loc.inode.stat().mode):
        raise fserr(errno.EROFS)
    if not may_access(loc.inode.stat(), ctx.creds, mask & 7):
        raise fserr(errno.EACCES)


__all__ = ["open_path", "mkdir", "mknod", "unlink", "rmdir", "symlink", "link", "rename",
           "setattr", "access", "fallocate", "getxattr", "setxattr", "listxattr", "removexattr",
           "remove_privs", "DirectoryImpl", "now_ns", "X_OK"]
