"""/dev and /sys through the real mount tree and path walk."""
import errno
import os
import stat as S

import pytest

from synthetic_world import World
from vfs import ops
from vfs.dev import (FULL_RDEV, NULL_RDEV, RANDOM_RDEV, TTY_RDEV, URANDOM_RDEV, ZERO_RDEV, DevFS,
                     NullImpl, open_device)
from vfs.file import O_RDONLY, O_RDWR, O_WRONLY
from vfs.inode import FileDescriptionImpl
from vfs.sysfs import SysFS


@pytest.fixture
def w():
    return World()


# --- memory devices ----------------------------------------------------------

def test_null_discards_and_reads_eof(w):
    f = w.open(b"/dev/null", O_RDWR)
    assert f.write(b"x" * 10000) == 10000
    assert f.read(100) == b""


def test_zero_reads_zeros_and_swallows_writes(w):
    f = w.open(b"/dev/zero", O_RDWR)
    assert f.read(4096) == bytes(4096)
    assert f.pread(7, 123) == bytes(7)
    assert f.write(b"abc") == 3


def test_full_reads_zeros_and_writes_enospc(w):
    f = w.open(b"/dev/full", O_RDWR)
    assert f.read(16) == bytes(16)
    with pytest.raises(OSError) as e:
        f.write(b"x")
    assert e.value.errno == errno.ENOSPC


@pytest.mark.parametrize("name", [b"/dev/urandom", b"/dev/random"])
def test_random_devices(w, name):
    f = w.open(name, O_RDWR)
    a, b = f.read(64), f.read(64)
    assert len(a) == len(b) == 64 and a != b
    assert f.write(b"entropy?") == 8


def test_huge_reads_are_short_not_huge(w):
    data = w.open(b"/dev/zero").read(1 << 40)
    assert 0 < len(data) <= 1 << 24


def test_device_nodes_stat_like_linux(w):
    expect = {b"null": (1, 3), b"zero": (1, 5), b"full": (1, 7), b"random": (1, 8),
              b"urandom": (1, 9), b"tty": (5, 0)}
    for name, (major, minor) in expect.items():
        st = w.loc(b"/dev/" + name).inode.stat()
        assert S.S_ISCHR(st.mode) and st.mode & 0o777 == 0o666
        assert (os.major(st.rdev), os.minor(st.rdev)) == (major, minor)
        host = os.stat(b"/dev/" + name)  # the same numbers as the host's nodes
        assert (os.major(host.st_rdev), os.minor(host.st_rdev)) == (major, minor)
        assert S.S_IMODE(host.st_mode) == 0o666


def test_tty_without_a_terminal_is_enxio(w):
    with pytest.raises(OSError) as e:
        w.open(b"/dev/tty", O_RDWR)
    assert e.value.errno == errno.ENXIO


def test_tty_opens_through_the_opener(w):
    class Terminal(FileDescriptionImpl):
        seekable = False
    w.devfs.tty_opener = Terminal
    assert isinstance(w.open(b"/dev/tty", O_RDWR).impl, Terminal)
    assert isinstance(DevFS(tty_opener=Terminal).root().lookup(b"tty").open(O_RDWR), Terminal)


# --- open_device: device numbers wherever the node is -----------------------

def test_open_device_by_number():
    assert isinstance(open_device(NULL_RDEV), NullImpl)
    for rdev in (ZERO_RDEV, FULL_RDEV, RANDOM_RDEV, URANDOM_RDEV):
        assert open_device(rdev) is not None
    assert open_device(os.makedev(1, 1)) is None  # /dev/mem: not served
    assert open_device(os.makedev(8, 0)) is None  # a disk
    assert open_device(TTY_RDEV) is None  # needs the sandbox's terminal: DevFS serves it


def test_mknod_null_elsewhere_opens_as_null(w, monkeypatch):
    monkeypatch.setattr(ops, "device_opener", open_device)
    ops.mknod(w.tree, w.root_ctx, b"/home/null", S.S_IFCHR | 0o666, NULL_RDEV, 0)
    f = w.open(b"/home/null", O_RDWR)
    assert f.write(b"gone") == 4 and f.read(10) == b""
    ops.mknod(w.tree, w.root_ctx, b"/home/disk", S.S_IFCHR | 0o666, os.makedev(8, 0), 0)
    with pytest.raises(OSError) as e:
        w.open(b"/home/disk")
    assert e.value.errno == errno.ENXIO


# --- links into /proc --------------------------------------------------------

def test_stdio_links_resolve_through_proc_self_fd(w):
    assert w.readlink(b"/dev/stdin") == b"/proc/self/fd/0"
    assert w.readlink(b"/dev/stdout") == b"/proc/self/fd/1"
    assert w.readlink(b"/dev/stderr") == b"/proc/self/fd/2"
    assert w.readlink(b"/dev/fd") == b"/proc/self/fd"
    assert w.loc(b"/dev/stdin") == w.loc(b"/etc/hosts")  # fd 0 of the current task
    assert w.loc(b"/dev/fd/3") == w.loc(b"/etc/hosts")
    assert w.read(b"/dev/stdin") == b"127.0.0.1 localhost\n"
    assert w.loc(b"/dev/fd").inode.readdir()  # /proc/self/fd itself


def test_directories_and_listing(w):
    names = w.listdir(b"/dev")
    assert set(names) == {b"null", b"zero", b"full", b"random", b"urandom", b"tty", b"fd",
                          b"stdin", b"stdout", b"stderr", b"pts", b"shm", b"ptmx"}
    ptmx = w.loc(b"/dev/ptmx").inode.stat()
    assert S.S_ISCHR(ptmx.mode) and ptmx.rdev == os.makedev(5, 2)
    assert w.loc(b"/dev/shm").inode.stat().mode & 0o7777 == 0o1777
    assert w.listdir(b"/dev/pts") == [] and w.listdir(b"/dev/shm") == []
    w.tree.mount_path(b"/dev/shm", DevFS())  # the sandbox mounts a tmpfs here
    assert b"null" in w.listdir(b"/dev/shm")
    assert w.loc(b"/dev").mount.fs.statfs().type == 0x01021994


def test_dev_refuses_new_files(w):
    with pytest.raises(OSError):
        w.open(b"/dev/newfile", 0o101)


# --- sysfs -------------------------------------------------------------------

def test_sysfs_cpu_lists(w):
    for name in (b"online", b"possible", b"present"):
        assert w.read(b"/sys/devices/system/cpu/" + name) == b"0-1\n"
    cpus = w.listdir(b"/sys/devices/system/cpu")
    assert [n for n in cpus if n.startswith(b"cpu")] == [b"cpu0", b"cpu1"]
    assert w.read(b"/sys/devices/system/cpu/cpu1/online") == b"1\n"
    with open("/sys/devices/system/cpu/online", "rb") as f:  # the host's format
        assert f.read().rstrip(b"\n").replace(b"-", b",").split(b",")[0] == b"0"


def test_sysfs_one_cpu():
    w = World(ncpus=1)
    assert w.read(b"/sys/devices/system/cpu/online") == b"0\n"
    assert [n for n in w.listdir(b"/sys/devices/system/cpu") if n.startswith(b"cpu")] == [b"cpu0"]


def test_sysfs_thp_cgroup_and_top_level(w):
    enabled = w.read(b"/sys/kernel/mm/transparent_hugepage/enabled")
    assert enabled.count(b"[") == 1 and b"never" in enabled
    assert w.read(b"/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") == b"2097152\n"
    assert w.listdir(b"/sys/fs/cgroup") == []
    assert set(w.listdir(b"/sys")) <= set(os.listdir(b"/sys"))


def test_sysfs_is_read_only(w):
    loc = w.loc(b"/sys/devices/system/cpu/online")
    st = loc.inode.stat()
    assert st.mode & 0o777 == 0o444 and st.size == 4096  # like Linux's attributes
    # the mount is read-only as well, but the file itself refuses too
    with pytest.raises(PermissionError):
        loc.inode.open(O_WRONLY)
    with pytest.raises(OSError):
        ops.mkdir(w.tree, w.root_ctx, b"/sys/fs/cgroup/x", 0o755, 0)
    assert SysFS(4).root().lookup(b"devices").lookup(b"system").lookup(b"cpu") \
        .lookup(b"online").open(O_RDONLY).pread(100, 0) == b"0-3\n"
