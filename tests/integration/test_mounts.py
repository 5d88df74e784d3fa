"""Mounts: pyrunsc do --mount/--tmpfs/--overlay, and mount(2)/umount2(2)
inside the sandbox compared with the same programs run natively in a
private mount namespace (`unshare --mount`)."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import pyrunsc_cmd, run_do

BUSYBOX = "/bin/busybox"
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


@pytest.fixture
def hostdir():
    """A host directory for the sandbox to see (under /var/tmp: the
    sandbox's /tmp is its own)."""
    d = tempfile.mkdtemp(prefix="pyrunsc-mounts-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _can_unshare_mounts() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_unshare = pytest.mark.skipif(not _can_unshare_mounts(), reason="needs unshare --mount (root)")


def native_in_mount_ns(args, base):
    """Run args natively in a private mount namespace whose mounts vanish
    with it; base is an empty host directory the program mounts on."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", *args, base],
                          capture_output=True, timeout=60, cwd="/")


def sandboxed(args):
    """Run args in the sandbox with an empty /tmp/base as the last argument."""
    script = 'mkdir /tmp/base && exec "$@" /tmp/base'
    return run_do(["/bin/sh", "-c", script, "sh", *args])


# --- mount(2) and umount2(2) inside -----------------------------------------

@needs_unshare
def test_mount_syscalls_match_native(cbin, hostdir):
    """tmpfs limits and options, ENOSPC, remounts, binds (recursive), move,
    busy and lazy unmounts, MNT_EXPIRE, UMOUNT_NOFOLLOW, propagation types,
    MS_NOEXEC's EACCES, nosymfollow, proc and sysfs, EPERM for a non-root
    caller, and mountinfo's options, roots and parents along the way."""
    prog = cbin("mounts")
    theirs = native_in_mount_ns([prog], hostdir)
    assert theirs.returncode == 0, theirs.stderr
    ours = sandboxed([prog])
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout.decode() == theirs.stdout.decode()
    assert b"-- mountinfo binds" in ours.stdout and b"EPERM" in ours.stdout  # it ran to the end


BUSYBOX_SCRIPT = r"""
B=$1
bb=/bin/busybox
show() { $bb grep " $B" /proc/self/mounts | $bb sed "s| $B| B|"; echo --; }
$bb mount -t tmpfs -o mode=755 base "$B" || exit 1
$bb mkdir $B/a $B/b $B/c
$bb mount -t tmpfs -o size=64k,nr_inodes=100,mode=750 scratch $B/a; echo mount=$?
show
$bb dd if=/dev/zero of=$B/a/big bs=4096 count=32 2>/dev/null; echo dd=$?
$bb ls -l $B/a/big | $bb awk '{print $5}'
$bb mount -o remount,ro $B/a; echo remount=$?
$bb touch $B/a/x 2>/dev/null; echo touch=$?
show
$bb mount --bind $B/a $B/b; echo bind=$?
$bb mount -o remount,rw $B/a; echo remount_rw=$?
$bb mount -o remount,bind,ro $B/b; echo bind_ro=$?
$bb touch $B/a/y; echo touch_a=$?; $bb touch $B/b/z 2>/dev/null; echo touch_b=$?
show
$bb mount -t tmpfs -o noexec,nosuid none $B/c; echo noexec=$?
$bb cp $bb $B/c/bb; $B/c/bb true 2>/dev/null; echo exec=$?
(cd $B/a && $bb umount $B/a 2>/dev/null; echo busy=$?)
$bb umount $B/b; echo umount_b=$?
$bb umount -l $B/a; echo lazy=$?
$bb umount $B/c; echo umount_c=$?
$bb umount $B/c 2>/dev/null; echo again=$?
$bb mount -t nosuchfs none $B/c 2>/dev/null; echo nodev=$?
show
"""


@needs_unshare
@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static")
def test_busybox_mount_and_umount_match_native(hostdir):
    args = [BUSYBOX, "sh", "-c", BUSYBOX_SCRIPT, "sh"]
    theirs = native_in_mount_ns(args, hostdir)
    assert theirs.returncode == 0, theirs.stderr
    ours = sandboxed(args)
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout.decode() == theirs.stdout.decode()
    assert "size=64k,nr_inodes=100,mode=750" in ours.stdout.decode()


def test_mounts_inside_never_reach_the_host(hostdir):
    """A tmpfs mounted inside over a host-backed directory hides it in the
    sandbox only; the host's mount table is untouched."""
    before = open("/proc/self/mountinfo").read()
    r = run_do(["/bin/sh", "-c", f"mount -t tmpfs none {hostdir} && echo in > {hostdir}/f && cat {hostdir}/f "
                                 f"&& grep -c ' {hostdir} ' /proc/self/mounts"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"in\n1\n"
    assert os.listdir(hostdir) == []
    assert hostdir not in open("/proc/self/mountinfo").read() and hostdir not in before


# --- --mount ------------------------------------------------------------------

def test_bind_ro_and_rw(hostdir):
    data = os.path.join(hostdir, "data")
    os.mkdir(data)
    with open(os.path.join(data, "f"), "w") as f:
        f.write("from host\n")
    script = ("cat /mnt/ro/f; echo x > /mnt/ro/g; echo ro=$?; mkdir /mnt/ro/d; "
              "echo y > /mnt/rw/g && mkdir /mnt/rw/d && echo rw=$?; "
              "grep ' /mnt/r[ow] ' /proc/self/mounts")
    r = run_do(["/bin/sh", "-c", script], do_opts=["--mount", f"{data}:/mnt/ro", "--mount", f"{data}:/mnt/rw:rw"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.decode().splitlines() == [
        "from host", "ro=2", "rw=0",
        "none /mnt/ro 9p ro,relatime 0 0", "none /mnt/rw 9p rw,relatime 0 0"]
    assert b"Read-only file system" in r.stderr
    with open(os.path.join(data, "g")) as f:
        assert f.read() == "y\n"
    assert os.path.isdir(os.path.join(data, "d"))


def test_bind_default_is_ro_and_mountpoint_made_inside(hostdir):
    """The mountpoint (missing under the read-only host root) is made in
    the sandbox's overlay, not on the host."""
    guest = os.path.join(hostdir, "made", "here")
    r = run_do(["/bin/sh", "-c", f"ls {guest}; touch {guest}/x"], do_opts=["--mount", f"/etc/default:{guest}"])
    assert r.returncode != 0
    assert sorted(r.stdout.split()) == sorted(os.fsencode(n) for n in os.listdir("/etc/default"))
    assert b"Read-only file system" in r.stderr
    assert os.listdir(hostdir) == []


def test_bind_confines_dotdot_and_symlinks(hostdir):
    """`..` from the mountpoint is the sandbox's parent directory; symlinks
    in the bound directory pointing outside it resolve in the sandbox,
    never on the host (whose /var/tmp a tmpfs hides here)."""
    inside = os.path.join(hostdir, "inside")
    os.mkdir(inside)
    with open(os.path.join(hostdir, "secret"), "w") as f:
        f.write("host secret\n")
    os.symlink("../secret", os.path.join(inside, "rel"))
    os.symlink(os.path.join(hostdir, "secret"), os.path.join(inside, "abs"))
    os.symlink("/", os.path.join(inside, "root"))
    script = ("ls /deep/data/..; cat /deep/data/../secret; cat /deep/data/rel; cat /deep/data/abs; "
              "ls /deep/data/root/deep; echo sandbox > /deep/secret; cat /deep/data/rel")
    r = run_do([BUSYBOX, "sh", "-c", script],
               do_opts=["--mount", f"{inside}:/deep/data:rw", "--tmpfs", "/var/tmp"])
    assert r.stdout == b"data\ndata\nsandbox\n", r.stderr[-2000:]
    assert r.stderr.count(b"No such file or directory") == 3, r.stderr


def test_bind_a_single_file(hostdir):
    path = os.path.join(hostdir, "conf")
    with open(path, "w") as f:
        f.write("one\n")
    with open(os.path.join(hostdir, "sibling"), "w") as f:
        f.write("not shown\n")
    r = run_do(["/bin/sh", "-c", "cat /etc/pyrunsc.conf; echo two >> /etc/pyrunsc.conf; cat /etc/pyrunsc.conf; "
                                 "ls /etc/pyrunsc.conf/.. >/dev/null; grep pyrunsc.conf /proc/self/mountinfo | "
                                 "cut -d' ' -f4,5"],
               do_opts=["--mount", f"{path}:/etc/pyrunsc.conf:rw"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"one\none\ntwo\n/conf /etc/pyrunsc.conf\n"
    with open(path) as f:
        assert f.read() == "one\ntwo\n"
    r = run_do(["/bin/sh", "-c", "echo three >> /etc/pyrunsc.conf"], do_opts=["--mount", f"{path}:/etc/pyrunsc.conf"])
    assert r.returncode != 0 and b"Read-only file system" in r.stderr


def test_umount_a_bind_inside(hostdir):
    with open(os.path.join(hostdir, "f"), "w") as f:
        f.write("x")
    r = run_do(["/bin/sh", "-c", "ls /b; umount /b && ls /b | wc -l"], do_opts=["--mount", f"{hostdir}:/b"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"f\n0\n"


# --- --overlay=none and --tmpfs ------------------------------------------------

@pytest.fixture
def rootfs(hostdir):
    """A minimal root: busybox alone."""
    root = os.path.join(hostdir, "root")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy(BUSYBOX, os.path.join(root, "bin", "busybox"))
    return root


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static")
def test_overlay_none_writes_reach_the_root(rootfs):
    script = "echo hi > /out && mkdir /d && /bin/busybox ln -s out /d/l && /bin/busybox ls /proc/self >/dev/null"
    r = run_do(["/bin/busybox", "sh", "-c", script], do_opts=["--root", rootfs, "--overlay=none"])
    assert r.returncode == 0, r.stderr[-2000:]
    with open(os.path.join(rootfs, "out")) as f:
        assert f.read() == "hi\n"
    assert os.readlink(os.path.join(rootfs, "d", "l")) == "out"
    # the sandbox's own mountpoints (/proc, /dev, /sys, /tmp) were not made on the host
    assert sorted(os.listdir(rootfs)) == ["bin", "d", "out"]


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static")
def test_default_overlay_keeps_writes_in_the_sandbox(rootfs):
    r = run_do(["/bin/busybox", "sh", "-c", "echo hi > /out && /bin/busybox cat /out"], do_opts=["--root", rootfs])
    assert r.returncode == 0 and r.stdout == b"hi\n", r.stderr[-2000:]
    assert sorted(os.listdir(rootfs)) == ["bin"]


def test_tmpfs_option_size_limit():
    script = ("dd if=/dev/zero of=/scratch/f bs=4096 count=20 2>/dev/null; echo dd=$?; "
              "stat -c %s /scratch/f; stat -c %a /scratch; grep ' /scratch ' /proc/self/mounts")
    r = run_do(["/bin/sh", "-c", script], do_opts=["--tmpfs", "/scratch:size=64k,mode=750,noexec"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.decode().splitlines() == [
        "dd=1", "65536", "750", "tmpfs /scratch tmpfs rw,nosuid,nodev,noexec,relatime,size=64k,mode=750 0 0"]


# --- bad input and cleanliness ---------------------------------------------------

@pytest.mark.parametrize("opts, message", [
    (["--mount", "/nonexistent-pyrunsc:/x"], "no such file or directory on the host"),
    (["--mount", "/etc:relative"], "must be absolute"),
    (["--mount", "/etc:/x:rx"], "unknown option 'rx'"),
    (["--mount", "/etc"], "is not HOST:GUEST"),
    (["--mount", "/etc:/"], "cannot mount over the sandbox root"),
    (["--tmpfs", "/x:size=12q"], "bad tmpfs options"),
    (["--tmpfs", "x"], "must be absolute"),
    (["--overlay", "disk"], "'disk' is not one of"),
])
def test_bad_cli_input(opts, message):
    r = subprocess.run(pyrunsc_cmd("do", *opts, "--", "/bin/true"), capture_output=True, timeout=60)
    assert r.returncode == 2
    assert message in r.stderr.decode()


def test_host_path_the_gofer_refuses():
    r = subprocess.run(pyrunsc_cmd("do", "--mount", "/proc/self:/x", "--", "/bin/true"),
                       capture_output=True, timeout=60)
    assert r.returncode == 125
    assert b"--mount /proc/" in r.stderr


def _children(pid):
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out |= {int(p) for p in f.read().split()}
    return out


def test_gofers_are_gone_after_the_run(hostdir):
    """One gofer per --mount besides the root's; all exit with the sandbox."""
    p = subprocess.Popen(pyrunsc_cmd("do", "--mount", f"{hostdir}:/a", "--mount", f"{hostdir}:/b:rw", "--",
                                     "/bin/sh", "-c", "echo ready; read x; echo done"),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    try:
        assert p.stdout.readline() == b"ready\n"
        gofers = []
        for c in _children(p.pid):
            try:
                with open(f"/proc/{c}/cmdline", "rb") as f:
                    if b"vfs.gofer.server" in f.read():
                        gofers.append(c)
            except FileNotFoundError:
                pass
        assert len(gofers) == 3
        out, err = p.communicate(b"go\n", timeout=60)
        assert out == b"done\n", err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    for g in gofers:
        assert not os.path.exists(f"/proc/{g}") or open(f"/proc/{g}/stat").read().split()[2] == "Z"
