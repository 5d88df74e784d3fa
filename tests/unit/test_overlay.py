"""OverlayFS (vfs/overlay.py): unit tests of copy-up, whiteouts, opaque
directories, merged readdir, inode numbers, redirected directory renames
and xattrs, then a differential
test: a random lower tree is made in a host directory and copied into a
TmpFS (the lower layer); random operations run on the overlay and on a
host copy of the lower tree, and every result, the final trees and the
untouched lower layer are compared.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat as S
import tempfile

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import initialize, invariant, rule

from test_tmpfs import DiffMachine, HostDiff, SandboxFS, errno_of, paths
from vfs import ops
from vfs.file import O_APPEND, O_RDONLY, O_RDWR, O_TMPFILE, O_TRUNC, O_WRONLY
from vfs.inode import DT_DIR, DT_LNK, DT_REG
from vfs.overlay import OPAQUE_XATTR, OVERLAYFS_SUPER_MAGIC, REDIRECT_XATTR, UPPER_INO_TAG, OverlayFS
from vfs.tmpfs import TmpFS


# --- building lower layers -------------------------------------------------

def tmpfs_from_host(root: str) -> TmpFS:
    """A TmpFS holding a copy of a host directory: types, modes, owners,
    times, contents, symlink targets."""
    fs = TmpFS(mode=S.S_IMODE(os.stat(root).st_mode))

    def copy(host_dir: str, d):
        for name in sorted(os.listdir(host_dir)):
            full = os.path.join(host_dir, name)
            st = os.lstat(full)
            bname = os.fsencode(name)
            kind = S.S_IFMT(st.st_mode)
            if kind == S.S_IFDIR:
                child = d.mkdir(bname, st.st_mode, st.st_uid, st.st_gid)
                copy(full, child)
            elif kind == S.S_IFREG:
                child = d.create(bname, st.st_mode, st.st_uid, st.st_gid)
                with open(full, "rb") as f:
                    child.write_at(f.read(), 0)
            elif kind == S.S_IFLNK:
                child = d.symlink(bname, os.fsencode(os.readlink(full)), st.st_uid, st.st_gid)
            else:
                child = d.mknod(bname, st.st_mode, st.st_rdev, st.st_uid, st.st_gid)
            child.setattr(mode=None if kind == S.S_IFLNK else S.S_IMODE(st.st_mode),
                          atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns)
    copy(root, fs.root())
    return fs


def snapshot(fs: TmpFS) -> dict:
    """Everything about a TmpFS but atimes (reading through the overlay
    may refresh those, as on Linux); taking it changes nothing."""
    out = {}

    def walk(inode, prefix):
        st = inode.stat()
        entry = [st.copy(atime_ns=0)]
        if S.S_ISDIR(st.mode):
            entry.append([(e.name, e.ino, e.dtype) for e in inode.entries()])
            for e in inode.entries():
                walk(inode.lookup(e.name), prefix + b"/" + e.name)
        elif S.S_ISLNK(st.mode):
            entry.append(inode.readlink())
        elif S.S_ISREG(st.mode):
            entry.append(inode.read_at(st.size, 0))
        out[prefix or b"/"] = entry
    walk(fs.root(), b"")
    return out


def make_lower() -> TmpFS:
    """A small lower layer: dirs, files with set modes and owners, a
    symlink, a fifo, and a few fixed times."""
    fs = TmpFS(mode=0o755)
    root = fs.root()
    etc = root.mkdir(b"etc", 0o755, 0, 0)
    passwd = etc.create(b"passwd", 0o644, 0, 0)
    passwd.write_at(b"root:x:0:0\n", 0)
    secret = etc.create(b"shadow", 0o640, 0, 42)
    secret.write_at(b"hash", 0)
    home = root.mkdir(b"home", 0o755, 0, 0)
    user = home.mkdir(b"user", 0o700, 1000, 1000)
    notes = user.create(b"notes", 0o600, 1000, 1000)
    notes.write_at(b"lower notes", 0)
    user.mkdir(b"deep", 0o750, 1000, 1000).mkdir(b"er", 0o755, 1000, 1000)
    root.symlink(b"motd", b"etc/passwd", 0, 0)
    root.mknod(b"fifo", S.S_IFIFO | 0o644, 0, 0, 0)
    root.create(b"suid", 0o4755, 0, 0).write_at(b"#!", 0)
    for inode in (etc, passwd, secret, home, user, notes, root):
        inode.setattr(atime_ns=111_000, mtime_ns=222_000)
    return fs


@pytest.fixture
def layers():
    """(lower TmpFS, its snapshot, overlay sandbox); the test's end checks
    that the lower layer never changed."""
    lower = make_lower()
    before = snapshot(lower)
    sb = SandboxFS(OverlayFS(lower, TmpFS()))
    yield lower, sb
    assert snapshot(lower) == before


def upper_names(sb, path=b"/"):
    d = sb.fs.upper.root()
    for part in [p for p in path.split(b"/") if p]:
        d = d.lookup(part)
    return [e.name for e in d.readdir()]


# --- reading and copy-up ---------------------------------------------------

def test_reading_lower_files_copies_nothing(layers):
    lower, sb = layers
    assert sb.read("etc/passwd") == b"root:x:0:0\n"
    assert sb.read("motd") == b"root:x:0:0\n"
    assert sorted(sb.listdir("home/user")) == [b"deep", b"notes"]
    sb.stat("home/user/deep/er")
    assert upper_names(sb) == []
    assert sb.inode("etc/passwd").upper is None


def test_write_copies_up_file_and_ancestors(layers):
    lower, sb = layers
    before = sb.stat("home/user/notes")
    sb.write("home/user/notes", b"UPPER", 0)
    assert sb.read("home/user/notes") == b"UPPER notes"
    assert lower.root().lookup(b"home").lookup(b"user").lookup(b"notes").read_at(99, 0) == b"lower notes"
    up_user = sb.fs.upper.root().lookup(b"home").lookup(b"user").stat()
    assert (S.S_IMODE(up_user.mode), up_user.uid, up_user.gid) == (0o700, 1000, 1000)
    # the copied ancestors keep their times, and so does their parent
    up_home = sb.fs.upper.root().lookup(b"home").stat()
    assert (up_home.atime_ns, up_home.mtime_ns) == (111_000, 222_000)
    assert sb.stat("home").mtime_ns == 222_000
    assert upper_names(sb) == [b"home"]
    assert upper_names(sb, b"/home") == [b"user"]
    after = sb.stat("home/user/notes")
    assert (after.mode, after.uid, after.gid, after.ino, after.dev) == \
        (before.mode, before.uid, before.gid, before.ino, before.dev)
    assert after.mtime_ns > before.mtime_ns


def test_copy_up_keeps_mode_owner_times(layers):
    lower, sb = layers
    sb.setattr("etc/shadow", uid=7)  # chown: copy-up, then the change
    st = sb.stat("etc/shadow")
    assert (S.S_IMODE(st.mode), st.uid, st.gid) == (0o640, 7, 42)
    assert (st.atime_ns, st.mtime_ns) == (111_000, 222_000)
    assert sb.read("etc/shadow") == b"hash"
    # set-user-ID survives the copy (a chown would clear it, the copy must not)
    sb.setattr("suid", atime_ns=5)
    assert S.S_IMODE(sb.stat("suid").mode) == 0o4755


def test_symlink_and_special_file_copy_up(layers):
    lower, sb = layers
    sb.setattr("motd", follow=False, uid=3)
    link = sb.inode("motd", follow=False)
    assert link.upper is not None and link.readlink() == b"etc/passwd"
    assert sb.stat("motd", follow=False).uid == 3
    assert sb.inode("etc/passwd").upper is None  # the target stays below
    sb.setattr("fifo", mode=0o600)
    st = sb.stat("fifo")
    assert S.S_ISFIFO(st.mode) and S.S_IMODE(st.mode) == 0o600
    # opening a fifo for writing does not copy anything up
    sb.rename("fifo", "fifo2")
    assert errno_of(lambda: sb.inode("fifo2").open(O_WRONLY)) == ("err", errno.ENXIO)


def test_open_for_write_copies_up_but_not_for_read(layers):
    lower, sb = layers
    sb.close(sb.open("etc/passwd", O_RDONLY))
    assert sb.inode("etc/passwd").upper is None
    sb.close(sb.open("etc/passwd", O_RDWR))
    assert sb.inode("etc/passwd").upper is not None
    assert sb.read("etc/passwd") == b"root:x:0:0\n"


def test_o_trunc_copies_no_data(layers):
    lower, sb = layers
    d = sb.open("etc/passwd", O_WRONLY | O_TRUNC)
    sb.close(d)
    up = sb.inode("etc/passwd").upper
    assert up.stat().size == 0 and up.stat().blocks == 0
    assert sb.stat("etc/passwd").mtime_ns > 222_000  # a truncation is a change


def test_truncate_copies_only_what_stays(layers):
    lower, sb = layers
    sb.truncate("etc/passwd", 4)
    assert sb.read("etc/passwd") == b"root"
    sb.truncate("home/user/notes", 20)
    assert sb.read("home/user/notes") == b"lower notes" + bytes(9)


def test_description_opened_before_copy_up_follows_it(layers):
    lower, sb = layers
    reader = sb.open("etc/passwd", O_RDONLY)
    assert reader.pread(4, 0) == b"root"
    sb.write("etc/passwd", b"ROOT", 0)
    assert reader.pread(4, 0) == b"ROOT"  # as Linux since 4.19
    sb.truncate("etc/passwd", 2)
    assert reader.pread(10, 0) == b"RO" and reader.impl.size() == 2
    sb.close(reader)
    assert sb.read("etc/passwd") == b"RO"


def test_hard_links_are_one_overlay_inode(layers):
    lower, sb = layers
    sb.link("etc/passwd", "home/pw")
    a = sb.inode("etc/passwd")
    assert sb.inode("home/pw") is a
    # also when found afresh after the caches let go
    sb.create("x", b"x")
    sb.link("x", "y")
    fresh = SandboxFS(sb.fs)
    assert fresh.inode("y") is fresh.inode("x")


def test_append_after_copy_up(layers):
    lower, sb = layers
    d = sb.open("etc/passwd", O_WRONLY | O_APPEND)
    d.write(b"user:x:1000\n")
    sb.close(d)
    assert sb.read("etc/passwd") == b"root:x:0:0\nuser:x:1000\n"


# --- identity -----------------------------------------------------------------

def test_same_inode_object_and_number_across_copy_up(layers):
    lower, sb = layers
    obj = sb.inode("home/user/notes")
    ino = obj.stat().ino
    dir_ino = sb.stat("home/user").ino
    assert ino == lower.root().lookup(b"home").lookup(b"user").lookup(b"notes").ino
    sb.write("home/user/notes", b"x")
    assert sb.inode("home/user/notes") is obj
    assert obj.stat().ino == ino and sb.stat("home/user").ino == dir_ino
    # a fresh lookup (the dentry and the overlay's cache dropped) agrees
    fresh = OverlayFS(lower, sb.fs.upper)
    fresh.origin.update(sb.fs.origin)
    st = SandboxFS(fresh).stat("home/user/notes")
    assert st.ino == ino
    # readdir says the same numbers as stat
    for e in sb.inode("home/user").readdir():
        assert e.ino == sb.stat("home/user/" + e.name.decode(), follow=False).ino


def test_st_dev_is_the_overlays_and_new_files_get_distinct_numbers(layers):
    lower, sb = layers
    sb.create("new", b"n")
    sb.mkdir("newdir")
    devs = {sb.stat(p, follow=False).dev for p in ("new", "newdir", "etc", "etc/passwd", "motd")}
    assert devs == {sb.fs.dev}
    assert sb.fs.dev not in (lower.dev, sb.fs.upper.dev)
    lower_inos = {e.ino for e in lower.root().readdir()}
    new = sb.stat("new").ino
    assert new & UPPER_INO_TAG and new not in lower_inos
    assert sb.stat("/").ino == lower.root().ino


def test_hard_link_of_lower_file(layers):
    lower, sb = layers
    sb.link("etc/passwd", "home/pw")
    a, b = sb.stat("etc/passwd"), sb.stat("home/pw")
    assert a.ino == b.ino and a.nlink == b.nlink == 2
    sb.write("home/pw", b"R")
    assert sb.read("etc/passwd") == b"Root:x:0:0\n"
    assert errno_of(lambda: sb.link("etc", "etc2")) == ("err", errno.EPERM)
    assert errno_of(lambda: sb.fs.root().link(b"x", TmpFS().root())) == ("err", errno.EXDEV)


def test_statfs_and_names(layers):
    """Free space is the upper's; the lower layer's use counts as used."""
    lower, sb = layers
    sf = sb.fs.statfs()
    up, low = sb.fs.upper.statfs(), lower.statfs()
    assert sf.type == OVERLAYFS_SUPER_MAGIC == 0x794C7630
    assert (sf.bfree, sf.bavail, sf.ffree, sf.bsize) == (up.bfree, up.bavail, up.ffree, up.bsize)
    lower_used = low.blocks - low.bfree
    assert lower_used > 0 and sf.blocks == up.blocks + lower_used
    assert sf.files == up.files + (low.files - low.ffree)
    # writes use the upper's space
    sb.create("big", b"x" * 40000)
    after = sb.fs.statfs()
    assert after.bfree == sf.bfree - 10 and after.blocks == sf.blocks
    assert sb.fs.name == "overlay"


def test_root_takes_lower_roots_attributes(layers):
    lower, sb = layers
    st = sb.stat("/")
    assert S.S_IMODE(st.mode) == 0o755 and st.mtime_ns == 222_000


# --- whiteouts and opaque directories ----------------------------------------

def test_unlink_lower_file_leaves_a_whiteout(layers):
    lower, sb = layers
    sb.unlink("etc/passwd")
    assert errno_of(lambda: sb.stat("etc/passwd")) == ("err", errno.ENOENT)
    assert sb.listdir("etc") == [b"shadow"]
    wo = sb.fs.upper.root().lookup(b"etc").lookup(b"passwd").stat()
    assert S.S_ISCHR(wo.mode) and wo.rdev == 0
    # a new file takes the whiteout's place
    sb.create("etc/passwd", b"new")
    assert sb.read("etc/passwd") == b"new"
    assert sorted(sb.listdir("etc")) == [b"passwd", b"shadow"]
    # and removing that one whiteouts again
    sb.unlink("etc/passwd")
    assert sb.listdir("etc") == [b"shadow"]
    assert errno_of(lambda: sb.unlink("etc/passwd")) == ("err", errno.ENOENT)


def test_unlink_of_copied_up_file_whiteouts_the_lower_one(layers):
    lower, sb = layers
    sb.write("etc/passwd", b"R")
    sb.unlink("etc/passwd")
    assert errno_of(lambda: sb.stat("etc/passwd")) == ("err", errno.ENOENT)
    up = sb.fs.upper.root().lookup(b"etc").lookup(b"passwd").stat()
    assert S.S_ISCHR(up.mode) and up.rdev == 0


def test_lower_hard_links_share_a_number_until_copy_up():
    lower = make_lower()
    etc = lower.root().lookup(b"etc")
    etc.link(b"passwd2", etc.lookup(b"passwd"))
    sb = SandboxFS(OverlayFS(lower, TmpFS()))
    a, b = sb.stat("etc/passwd"), sb.stat("etc/passwd2")
    assert a.ino == b.ino and a.nlink == 2
    sb.rename("etc/passwd", "etc/passwd2")  # one file: nothing happens
    assert sorted(sb.listdir("etc")) == [b"passwd", b"passwd2", b"shadow"]
    # documented departure: copy-up breaks the link
    sb.write("etc/passwd", b"R")
    assert sb.stat("etc/passwd").nlink == 1
    assert sb.read("etc/passwd2") == b"root:x:0:0\n"


def test_opaque_directory_can_move(layers):
    lower, sb = layers
    sb.rmdir("home/user/deep/er")
    sb.mkdir("home/user/deep/er")  # opaque, upper only
    sb.create("home/user/deep/er/f", b"f")
    sb.rename("home/user/deep/er", "moved")
    assert sb.read("moved/f") == b"f"
    assert sb.listdir("home/user/deep") == []


def test_unlink_upper_only_file_leaves_nothing(layers):
    lower, sb = layers
    sb.create("etc/new")
    sb.unlink("etc/new")
    assert upper_names(sb, b"/etc") == []


def test_unlinked_open_lower_file_stays_readable(layers):
    lower, sb = layers
    d = sb.open("etc/passwd", O_RDONLY)
    inode = sb.inode("etc/passwd")
    sb.unlink("etc/passwd")
    assert d.pread(4, 0) == b"root"
    assert inode.stat().nlink == 0
    assert errno_of(lambda: inode.setattr(mode=0o600)) == ("err", errno.ENOENT)
    sb.close(d)


def test_rmdir_of_lower_directories(layers):
    lower, sb = layers
    assert errno_of(lambda: sb.rmdir("home/user/deep")) == ("err", errno.ENOTEMPTY)
    sb.rmdir("home/user/deep/er")
    sb.rmdir("home/user/deep")  # its upper copy holds only a whiteout: cleared first
    assert sb.listdir("home/user") == [b"notes"]
    assert sb.stat("home/user").nlink == 2
    assert errno_of(lambda: sb.rmdir("etc")) == ("err", errno.ENOTEMPTY)
    sb.unlink("etc/passwd")
    sb.unlink("etc/shadow")
    assert sb.listdir("etc") == []
    sb.rmdir("etc")
    assert b"etc" not in sb.listdir("/")


def test_recreated_directory_is_opaque(layers):
    lower, sb = layers
    sb.unlink("etc/passwd")
    sb.unlink("etc/shadow")
    sb.rmdir("etc")
    sb.mkdir("etc", 0o700)
    assert sb.listdir("etc") == []
    assert errno_of(lambda: sb.stat("etc/passwd")) == ("err", errno.ENOENT)
    up = sb.fs.upper.root().lookup(b"etc")
    assert up.getxattr(OPAQUE_XATTR) == b"y"
    assert S.S_IMODE(sb.stat("etc").mode) == 0o700 and sb.stat("etc").nlink == 2
    sb.create("etc/passwd", b"mine")
    assert sb.listdir("etc") == [b"passwd"] and sb.read("etc/passwd") == b"mine"
    # an overlay mounted afresh over the same layers sees the same
    again = SandboxFS(OverlayFS(lower, sb.fs.upper))
    assert again.listdir("etc") == [b"passwd"]
    assert b"etc" in again.listdir("/")


def test_file_over_whited_out_directory(layers):
    lower, sb = layers
    for p in ("etc/passwd", "etc/shadow"):
        sb.unlink(p)
    sb.rmdir("etc")
    sb.create("etc", b"now a file")
    assert sb.read("etc") == b"now a file"
    assert errno_of(lambda: sb.stat("etc/passwd")) == ("err", errno.ENOTDIR)


def test_merged_readdir(layers):
    lower, sb = layers
    sb.create("etc/hosts", b"127.0.0.1")
    sb.write("etc/passwd", b"R")  # copied up: listed once
    sb.unlink("etc/shadow")
    sb.mkdir("etc/sub")
    entries = {e.name: e for e in sb.inode("etc").readdir()}
    assert sorted(entries) == [b"hosts", b"passwd", b"sub"]
    assert entries[b"sub"].dtype == DT_DIR and entries[b"hosts"].dtype == DT_REG
    root = {e.name: e.dtype for e in sb.inode("/").readdir()}
    assert root[b"motd"] == DT_LNK and root[b"etc"] == DT_DIR
    assert sb.stat("etc").nlink == 3  # merged: 2 + its subdirectories
    assert sb.stat("/").nlink == 4


def test_mknod_whiteout_device_refused(layers):
    lower, sb = layers
    assert errno_of(lambda: sb.mknod("w", S.S_IFCHR | 0o600, 0)) == ("err", errno.EPERM)
    sb.mknod("null", S.S_IFCHR | 0o666, os.makedev(1, 3))
    assert sb.stat("null").rdev == os.makedev(1, 3)
    assert b"null" in sb.listdir("/")


def test_create_errors(layers):
    lower, sb = layers
    for fn, code in [
        (lambda: sb.mkdir("etc"), errno.EEXIST),
        (lambda: sb.create("etc/passwd"), errno.EEXIST),
        (lambda: sb.symlink("x", "motd"), errno.EEXIST),
        (lambda: sb.fs.root().mkdir(b"etc", 0o755, 0, 0), errno.EEXIST),
        (lambda: sb.fs.root().lookup(b"etc").lookup(b"passwd").lookup(b"x"), errno.ENOTDIR),
        (lambda: sb.fs.root().unlink(b"etc"), errno.EISDIR),
        (lambda: sb.fs.root().rmdir(b"motd"), errno.ENOTDIR),
        (lambda: sb.fs.root().unlink(b"nope"), errno.ENOENT),
    ]:
        assert errno_of(fn) == ("err", code)
    assert upper_names(sb) == []  # failed calls copied nothing up


def test_removed_directory_takes_no_entries(layers):
    lower, sb = layers
    er = sb.inode("home/user/deep/er")
    sb.rmdir("home/user/deep/er")
    assert er.readdir() == []
    assert errno_of(lambda: er.create(b"x", S.S_IFREG | 0o644, 0, 0)) == ("err", errno.ENOENT)
    assert errno_of(lambda: er.lookup(b"x")) == ("err", errno.ENOENT)


# --- xattrs -------------------------------------------------------------------

@pytest.fixture
def xattr_layers():
    lower = make_lower()
    etc = lower.root().lookup(b"etc")
    etc.lookup(b"passwd").setxattr(b"user.a", b"1")
    etc.lookup(b"passwd").setxattr(b"trusted.t", b"2")
    etc.setxattr(b"user.dir", b"d")
    sb = SandboxFS(OverlayFS(lower, TmpFS()))
    yield lower, sb
    assert lower.root().lookup(b"etc").lookup(b"passwd").listxattr() == [b"user.a", b"trusted.t"]
    assert lower.root().lookup(b"etc").listxattr() == [b"user.dir"]


def test_xattrs_read_through_without_copy_up(xattr_layers):
    lower, sb = xattr_layers
    pw = sb.inode("etc/passwd")
    assert pw.listxattr() == [b"user.a", b"trusted.t"] and pw.getxattr(b"user.a") == b"1"
    assert errno_of(lambda: pw.getxattr(b"user.none")) == ("err", errno.ENODATA)
    assert errno_of(lambda: pw.removexattr(b"user.none")) == ("err", errno.ENODATA)
    assert upper_names(sb) == []


def test_xattr_changes_copy_up_and_copy_up_keeps_xattrs(xattr_layers):
    lower, sb = xattr_layers
    pw = sb.inode("etc/passwd")
    ino = pw.stat().ino
    pw.setxattr(b"user.b", b"new")
    assert pw.upper is not None and pw.stat().ino == ino
    assert sorted(pw.listxattr()) == [b"trusted.t", b"user.a", b"user.b"]
    pw.removexattr(b"user.a")
    assert sorted(pw.listxattr()) == [b"trusted.t", b"user.b"]
    # a chmod's copy-up brings the xattrs along
    sb.setattr("etc/shadow", mode=0o600)
    assert sb.inode("etc").listxattr() == [b"user.dir"]  # the directory came up with its own
    sb.inode("etc").removexattr(b"user.dir")
    assert sb.inode("etc").listxattr() == []


def test_overlay_xattrs_are_hidden(xattr_layers):
    lower, sb = xattr_layers
    sb.unlink("etc/passwd")
    sb.unlink("etc/shadow")
    sb.rmdir("etc")
    sb.mkdir("etc")  # opaque
    sb.rename("home", "home2")  # redirected
    for d in (sb.inode("etc"), sb.inode("home2")):
        assert d.listxattr() == []
        for name in (OPAQUE_XATTR, REDIRECT_XATTR, b"trusted.overlay.other"):
            assert errno_of(lambda: d.getxattr(name)) == ("err", errno.EOPNOTSUPP)
            assert errno_of(lambda: d.setxattr(name, b"y")) == ("err", errno.EOPNOTSUPP)
            assert errno_of(lambda: d.removexattr(name)) == ("err", errno.EOPNOTSUPP)
    sb.inode("etc").setxattr(b"trusted.overlay", b"not ours")  # no dot: not the overlay's
    assert sb.inode("etc").listxattr() == [b"trusted.overlay"]
    assert sb.listdir("etc") == [] and sorted(sb.listdir("home2")) == [b"user"]


# --- rename --------------------------------------------------------------------

def upper_inode(sb, path):
    d = sb.fs.upper.root()
    for part in [p for p in path.split("/") if p]:
        d = d.lookup(part.encode())
    return d


def assert_d_ino_is_st_ino(sb, path):
    for e in sb.inode(path).readdir():
        assert e.ino == sb.stat(f"{path}/{e.name.decode()}", follow=False).ino, (path, e.name)


def test_rename_of_lower_directory_redirects(layers):
    lower, sb = layers
    ino = sb.stat("etc").ino
    pw_ino = sb.stat("etc/passwd").ino
    sb.rename("etc", "etc2")
    assert sorted(sb.listdir("etc2")) == [b"passwd", b"shadow"]
    assert sb.read("etc2/passwd") == b"root:x:0:0\n"
    assert errno_of(lambda: sb.stat("etc")) == ("err", errno.ENOENT)
    assert b"etc" not in sb.listdir("/") and b"etc2" in sb.listdir("/")
    assert sb.stat("etc2").ino == ino and sb.stat("etc2/passwd").ino == pw_ino
    assert_d_ino_is_st_ino(sb, "/")
    # only the directory itself was copied up; it carries the redirect
    up = upper_inode(sb, "etc2")
    assert up.getxattr(REDIRECT_XATTR) == b"/etc" and up.entries() == []
    wo = upper_inode(sb, "etc").stat()
    assert S.S_ISCHR(wo.mode) and wo.rdev == 0
    assert S.S_IMODE(sb.stat("etc2").mode) == 0o755 and sb.stat("etc2").mtime_ns == 222_000
    # an overlay mounted afresh over the same layers sees the same
    again = SandboxFS(OverlayFS(lower, sb.fs.upper))
    assert sorted(again.listdir("etc2")) == [b"passwd", b"shadow"]
    assert errno_of(lambda: again.stat("etc")) == ("err", errno.ENOENT)
    # changes inside the moved directory copy up into it
    sb.write("etc2/passwd", b"R")
    assert sb.read("etc2/passwd") == b"Root:x:0:0\n"
    assert [e.name for e in up.entries()] == [b"passwd"]
    # the old name is free: a directory made there is empty (opaque)
    sb.mkdir("etc")
    assert sb.listdir("etc") == []
    # and moving back over the empty directory gives the merged one back
    sb.rename("etc2", "etc")
    assert sorted(sb.listdir("etc")) == [b"passwd", b"shadow"]
    assert sb.read("etc/passwd") == b"Root:x:0:0\n" and sb.read("etc/shadow") == b"hash"
    assert sb.stat("etc").ino == ino
    assert errno_of(lambda: sb.stat("etc2")) == ("err", errno.ENOENT)


def test_rename_of_merged_and_nested_lower_directories(layers):
    lower, sb = layers
    sb.write("home/user/notes", b"UPPER")  # home and user are merged now
    sb.rename("home/user", "user")
    assert sorted(sb.listdir("user")) == [b"deep", b"notes"]
    assert sb.read("user/notes") == b"UPPER notes"
    assert sb.listdir("user/deep") == [b"er"] and sb.listdir("home") == []
    assert sb.stat("home").nlink == 2 and sb.stat("user").nlink == 3
    # a lower-only directory reached through the moved one moves too
    sb.rename("user/deep", "deep2")
    assert sb.listdir("deep2") == [b"er"] and sb.listdir("user") == [b"notes"]
    assert upper_inode(sb, "deep2").getxattr(REDIRECT_XATTR) == b"/home/user/deep"
    # the emptied merged parent moves as well, and can go away
    sb.rename("home", "h2")
    assert sb.listdir("h2") == []
    sb.rmdir("h2")
    assert sorted(n for n in sb.listdir("/")) == [b"deep2", b"etc", b"fifo", b"motd", b"suid", b"user"]
    for path in ("/", "user", "deep2"):
        assert_d_ino_is_st_ino(sb, path)
    again = SandboxFS(OverlayFS(lower, sb.fs.upper))
    assert again.listdir("deep2/er") == [] and again.read("user/notes") == b"UPPER notes"
    assert errno_of(lambda: again.stat("home")) == ("err", errno.ENOENT)


def test_rename_lower_directory_over_and_into_others(layers):
    lower, sb = layers
    # over an empty lower directory: the lower one there stays hidden
    sb.rename("etc", "home/user/deep/er")
    assert sorted(sb.listdir("home/user/deep/er")) == [b"passwd", b"shadow"]
    assert errno_of(lambda: sb.rename("home/user/deep/er", "home/user")) == ("err", errno.ENOTEMPTY)
    # into an opaque directory: the moved one still merges with its lower part
    sb.mkdir("new")
    sb.rename("home/user/deep/er", "new/etc")
    assert sorted(sb.listdir("new/etc")) == [b"passwd", b"shadow"]
    assert sb.listdir("home/user/deep") == []
    # removing a moved directory: its lower entries are whited out inside it first
    sb.unlink("new/etc/passwd")
    assert errno_of(lambda: sb.rmdir("new/etc")) == ("err", errno.ENOTEMPTY)
    sb.unlink("new/etc/shadow")
    sb.rmdir("new/etc")
    assert sb.listdir("new") == [] and upper_names(sb, b"/new") == []


def test_rename_exchange(layers):
    lower, sb = layers

    def exchange(a, b):
        ops.rename(sb.tree, sb.ctx, sb._p(a), sb._p(b), flags=ops.RENAME_EXCHANGE)
    # a lower directory and a lower file
    ino_etc, ino_motd = sb.stat("etc").ino, sb.stat("motd", follow=False).ino
    exchange("etc", "motd")
    assert sorted(sb.listdir("motd")) == [b"passwd", b"shadow"]
    assert sb.inode("etc", follow=False).readlink() == b"etc/passwd"
    assert (sb.stat("motd").ino, sb.stat("etc", follow=False).ino) == (ino_etc, ino_motd)
    # two lower directories: each keeps its own lower entries
    exchange("home/user/deep", "motd")
    assert sorted(sb.listdir("home/user/deep")) == [b"passwd", b"shadow"]
    assert sb.listdir("motd") == [b"er"]
    # a new directory and a lower one: the new one must stay empty
    sb.mkdir("new")
    exchange("new", "home/user/deep")
    assert sb.listdir("home/user/deep") == [] and sorted(sb.listdir("new")) == [b"passwd", b"shadow"]
    again = SandboxFS(OverlayFS(lower, sb.fs.upper))
    assert again.listdir("home/user/deep") == [] and again.listdir("motd") == [b"er"]
    assert sorted(again.listdir("new")) == [b"passwd", b"shadow"]
    assert errno_of(lambda: exchange("home", "home/user/notes")) == ("err", errno.EINVAL)
    assert errno_of(lambda: ops.rename(sb.tree, sb.ctx, b"/new", b"/n2", flags=ops.RENAME_WHITEOUT)) \
        == ("err", errno.EINVAL)


def test_tmpfile_and_fallocate(layers):
    lower, sb = layers
    d = ops.open_path(sb.tree, sb.ctx, b"/etc", O_TMPFILE | O_RDWR, 0o600, 0)
    d.write(b"anon")
    assert d.inode.stat().nlink == 0
    ops.link(sb.tree, sb.ctx, d.location, b"/etc/named")
    assert sb.read("etc/named") == b"anon" and sb.inode("etc/named") is d.inode
    sb.close(d)
    # fallocate of a lower file opened for writing: the copy grows
    w = sb.open("etc/passwd", O_RDWR)
    sb.inode("etc/passwd").fallocate(0, 0, 8192)
    assert sb.stat("etc/passwd").size == 8192 and sb.read("etc/passwd").startswith(b"root:x")
    sb.close(w)


def test_rename_errors_keep_linux_order(layers):
    lower, sb = layers
    assert errno_of(lambda: sb.rename("etc", "motd")) == ("err", errno.ENOTDIR)
    assert errno_of(lambda: sb.rename("home", "home/user/x")) == ("err", errno.EINVAL)
    assert errno_of(lambda: sb.rename("home/user/notes", "home")) == ("err", errno.ENOTEMPTY)
    assert errno_of(lambda: sb.rename("etc/passwd", "home")) == ("err", errno.EISDIR)
    assert errno_of(lambda: sb.rename("etc", "home")) == ("err", errno.ENOTEMPTY)
    assert upper_names(sb) == []  # failed renames copied nothing up


def test_rename_of_upper_directory(layers):
    lower, sb = layers
    sb.mkdir("d")
    sb.create("d/f", b"F")
    sb.rename("d", "home/d")
    assert sb.read("home/d/f") == b"F"
    assert errno_of(lambda: sb.stat("d")) == ("err", errno.ENOENT)
    assert sb.stat("home").nlink == 4 and sb.stat("/").nlink == 4


def test_rename_lower_file_leaves_whiteout(layers):
    lower, sb = layers
    obj = sb.inode("etc/passwd")
    ino = obj.stat().ino
    sb.rename("etc/passwd", "home/pw")
    assert sb.read("home/pw") == b"root:x:0:0\n"
    assert errno_of(lambda: sb.stat("etc/passwd")) == ("err", errno.ENOENT)
    assert sb.inode("home/pw") is obj and sb.stat("home/pw").ino == ino
    assert sb.listdir("etc") == [b"shadow"]
    # and back over the whiteout
    sb.rename("home/pw", "etc/passwd")
    assert sorted(sb.listdir("etc")) == [b"passwd", b"shadow"]


def test_rename_over_lower_file_and_dir(layers):
    lower, sb = layers
    sb.create("x", b"X")
    sb.rename("x", "etc/passwd")
    assert sb.read("etc/passwd") == b"X"
    # a new directory moved where a lower directory was becomes opaque
    sb.rmdir("home/user/deep/er")
    sb.mkdir("nd")
    sb.rename("nd", "home/user/deep")
    assert sb.listdir("home/user/deep") == []
    sb.mkdir("nd2")
    sb.rename("nd2", "home/user/deep")
    assert sb.listdir("home/user/deep") == []
    assert sb.fs.upper.root().lookup(b"home").lookup(b"user").lookup(b"deep").getxattr(OPAQUE_XATTR) == b"y"


def test_rename_over_emptied_lower_directory(layers):
    lower, sb = layers
    sb.rmdir("home/user/deep/er")
    sb.mkdir("nd")
    sb.create("nd/in", b"i")
    sb.rename("nd", "home/user/deep")  # deep is empty in the merged view
    assert sb.listdir("home/user/deep") == [b"in"]
    assert errno_of(lambda: sb.stat("home/user/deep/er")) == ("err", errno.ENOENT)


def test_rename_same_file_and_cross_fs(layers):
    lower, sb = layers
    sb.link("etc/passwd", "etc/pw")
    sb.rename("etc/passwd", "etc/pw")
    assert sorted(sb.listdir("etc")) == [b"passwd", b"pw", b"shadow"]
    assert errno_of(lambda: sb.fs.root().rename(b"motd", TmpFS().root(), b"x")) == ("err", errno.EXDEV)


def test_gofer_lower_layer(tmp_path):
    """The deployment: the gofer's read-only export under a TmpFS."""
    gofer_mod = pytest.importorskip("vfs.gofer")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "file").write_bytes(b"from host")
    os.symlink("dir/file", tmp_path / "link")
    try:
        gofer = gofer_mod.start_gofer(str(tmp_path))
    except OSError as e:
        pytest.skip(f"no gofer here: {e}")
    with gofer:
        sb = SandboxFS(OverlayFS(gofer.fs, TmpFS()))
        ino = sb.stat("dir/file").ino
        assert ino == os.stat(tmp_path / "dir" / "file").st_ino
        assert sb.read("link") == b"from host"
        sb.write("dir/file", b"FROM")
        sb.create("dir/new", b"n")
        sb.unlink("link")
        assert sb.read("dir/file") == b"FROM host" and sb.stat("dir/file").ino == ino
        assert sorted(sb.listdir("dir")) == [b"file", b"new"] and sb.listdir("/") == [b"dir"]
        dir_ino = sb.stat("dir").ino
        sb.rename("dir", "dir2")
        assert sorted(sb.listdir("dir2")) == [b"file", b"new"] and sb.listdir("/") == [b"dir2"]
        assert sb.stat("dir2").ino == dir_ino == os.stat(tmp_path / "dir").st_ino
        # a host file's xattrs pass through; the overlay's own stay hidden
        f = sb.inode("dir2/file")
        f.setxattr(b"user.k", b"v")
        assert f.listxattr() == [b"user.k"] and f.getxattr(b"user.k") == b"v"
        assert sb.inode("dir2").listxattr() == []
    assert (tmp_path / "dir" / "file").read_bytes() == b"from host"
    assert sorted(os.listdir(tmp_path / "dir")) == ["file"] and os.path.islink(tmp_path / "link")


# --- differential test against a host copy of the lower tree -------------------

lower_entries = st.lists(
    st.tuples(st.sampled_from(["dir", "dir", "file", "file", "symlink"]), paths,
              st.binary(max_size=20), st.sampled_from([0o755, 0o700, 0o644, 0o600, 0o4755]), paths),
    max_size=14)


def build_host_tree(root: str, entries) -> None:
    for kind, path, data, mode, target in entries:
        full = os.path.join(root, path)
        try:
            if kind == "dir":
                os.mkdir(full)
                os.chmod(full, mode | 0o700)  # root walks it anyway; keep it listable
            elif kind == "file":
                with open(full, "xb") as f:
                    f.write(data)
                os.chmod(full, mode)
            else:
                os.symlink(target, full)
        except OSError:
            pass


class OverlayVsHost(DiffMachine):
    def __init__(self):
        super().__init__()
        self.original = tempfile.mkdtemp(prefix="pyrunsc-overlay-lower-")
        self.host = tempfile.mkdtemp(prefix="pyrunsc-overlay-diff-")

    @initialize(entries=lower_entries)
    def build(self, entries):
        build_host_tree(self.original, entries)
        self.lower = tmpfs_from_host(self.original)
        self.lower_before = snapshot(self.lower)
        shutil.copytree(self.original, self.host, symlinks=True, dirs_exist_ok=True)
        self.diff = HostDiff(SandboxFS(OverlayFS(self.lower, TmpFS())), self.host)

    def ino(self, path, follow=True):
        try:
            return self.diff.sb.stat(path, follow=follow).ino
        except OSError:
            return None

    # copy-up must not change a file's inode number
    @rule(path=paths, data=st.binary(max_size=30), offset=st.integers(0, 60), trunc=st.booleans())
    def write(self, path, data, offset, trunc):
        before = self.ino(path)
        if self.diff.write(path, data, offset, trunc)[0] == "ok":
            assert self.ino(path) == before

    @rule(path=paths, size=st.integers(0, 80))
    def truncate(self, path, size):
        before = self.ino(path)
        if self.diff.truncate(path, size)[0] == "ok":
            assert self.ino(path) == before

    @rule(old=paths, new=paths)
    def rename(self, old, new):
        """A rename keeps the file's inode number, as on the host."""
        before = self.ino(old, follow=False)
        try:  # the new name's directory, found before the rename moves paths about
            new_parent = self.diff.sb.inode(os.path.dirname(new) or "/")
        except OSError:
            new_parent = None
        if self.diff.rename(old, new)[0] == "ok" and new_parent is not None:
            assert new_parent.lookup(os.fsencode(os.path.basename(new))).stat().ino == before

    @rule(data=st.data(), new=paths)
    def rename_lower_dir(self, data, new):
        """Lower directories are the interesting sources (redirects)."""
        dirs = sorted(os.path.relpath(os.path.join(top, d), self.original)
                      for top, subdirs, _ in os.walk(self.original) for d in subdirs
                      if not os.path.islink(os.path.join(top, d)))
        if dirs:
            self.rename(data.draw(st.sampled_from(dirs)), new)

    @invariant()
    def identities_agree(self):
        """Every directory's d_ino is its entries' st_ino; one st_dev."""
        sb = getattr(getattr(self, "diff", None), "sb", None)
        if sb is None:
            return
        pending = [b"/"]
        while pending:
            d = pending.pop()
            for e in sb.inode(d).readdir():
                full = d.rstrip(b"/") + b"/" + e.name
                st = sb.stat(full, follow=False)
                assert (e.ino, st.dev) == (st.ino, sb.fs.dev), full
                if S.S_ISDIR(st.mode):
                    pending.append(full)

    @invariant()
    def trees_match(self):
        if getattr(self, "diff", None) is not None:
            self.diff.compare_trees()

    @invariant()
    def lower_untouched(self):
        if getattr(self, "lower", None) is not None:
            assert snapshot(self.lower) == self.lower_before

    def teardown(self):
        shutil.rmtree(self.original, ignore_errors=True)
        shutil.rmtree(self.host, ignore_errors=True)


OverlayVsHost.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
test_overlay_matches_host_copy = OverlayVsHost.TestCase
