"""A gofer client cannot leave the export: not by '..', not by names with
'/', not through symlinks (absolute, climbing, as a directory component),
not into host pseudo file systems mounted inside the export, and not by
racing a walked name against a host-side swap."""
import errno
import os
import shutil
import socket
import stat as S
import subprocess

import pytest

from vfs.gofer import p9, server_command, server_env, start_gofer
from vfs.gofer.client import GoferClient
from vfs.gofer.fs import GoferFilesystem
from vfs.path import Creds, MountTree, PathContext

SECRET = b"host-secret"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("escape")
    outside, export = base / "outside", base / "export"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_bytes(SECRET + b"\n")
    (outside / "sub" / "secret").write_bytes(SECRET + b"-sub\n")
    (export / "sub" / "deep").mkdir(parents=True)
    (export / "inside").write_bytes(b"inside\n")
    for name in ("mnt_proc", "mnt_sys", "mnt_tmp"):
        (export / name).mkdir()
    (export / "status_file").write_bytes(b"")
    os.symlink("/etc", export / "abs_etc")
    os.symlink("/", export / "abs_root")
    os.symlink("/proc", export / "proc")
    os.symlink("/proc", export / "proc_link")
    os.symlink("../outside", export / "up")
    os.symlink("../../outside/secret", export / "sub" / "climb")
    os.symlink(str(outside / "secret"), export / "abs_secret")
    return str(export), str(outside)


def _mounting_server(export: str, fd: int, rw: bool) -> list[str]:
    """The server in a private mount namespace where the export has /proc
    bound in, a sysfs, a tmpfs and a /proc file bound over a file."""
    script = ('set -e; cd "$1"; mount --bind /proc mnt_proc; mount -t sysfs sysfs mnt_sys; '
              'mount -t tmpfs tmpfs mnt_tmp; echo tmpfs-file > mnt_tmp/t; '
              'mount --bind /proc/self/status status_file; shift; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", export,
            *server_command(fd, export, rw)]


class Served:
    def __init__(self, export: str, rw: bool = False):
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(_mounting_server(export, theirs.fileno(), rw), pass_fds=[theirs.fileno()],
                                     env={**server_env(), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        theirs.close()
        self.sock = ours
        try:
            self.client = GoferClient(ours)
            self.client.version()
            self.fs = GoferFilesystem(self.client, rw=rw)
        except BaseException:
            self.close()
            raise
        self.root_fid = self.fs.root().fid

    def close(self):
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def served(world):
    if not shutil.which("unshare"):
        pytest.skip("unshare(1) missing")
    s = Served(world[0])
    yield s
    s.close()


def walk_err(client, fid, names) -> int:
    with pytest.raises(OSError) as e:
        newfid, _ = client.walk(fid, names)
        client.clunk(newfid)
    return e.value.errno


def test_dotdot_at_root_stays_at_root(served, world):
    c, root = served.client, served.root_fid
    root_qid = c.getattr(root).qid
    fid, qids = c.walk(root, [b".."] * 5)
    assert qids == [root_qid] * 5
    assert c.getattr(fid).qid == root_qid
    c.clunk(fid)
    fid, qids = c.walk(root, [b"..", b"..", b"inside"])
    assert qids[-1].path == os.stat(os.path.join(world[0], "inside")).st_ino
    c.clunk(fid)
    assert walk_err(c, root, [b"..", b"outside"]) == errno.ENOENT
    assert walk_err(c, root, [b"..", b"..", b"outside", b"secret"]) == errno.ENOENT


def test_dotdot_below_root_uses_the_servers_own_tree(served, world):
    c, root = served.client, served.root_fid
    fid, qids = c.walk(root, [b"sub", b"deep", b"..", b"..", b"..", b"..", b"inside"])
    assert qids[-1].path == os.stat(os.path.join(world[0], "inside")).st_ino
    assert qids[1].path == os.stat(os.path.join(world[0], "sub", "deep")).st_ino
    assert qids[2].path == os.stat(os.path.join(world[0], "sub")).st_ino
    c.clunk(fid)


@pytest.mark.parametrize("name", [b"../outside", b"/etc", b"sub/climb", b"sub/..", b".", b"", b"a\0b",
                                  b"inside/", b"/"])
def test_names_with_slash_dot_or_nul_are_refused(served, name):
    c = served.client
    assert walk_err(c, served.root_fid, [name]) == errno.EINVAL
    sub, _ = c.walk(served.root_fid, [b"sub"])
    assert walk_err(c, sub, [name]) == errno.EINVAL
    assert walk_err(c, served.root_fid, [b"sub", name]) == errno.ENOENT  # a walk cut short
    c.clunk(sub)


@pytest.mark.parametrize("link,target,beyond", [
    (b"abs_etc", b"/etc", [b"passwd"]),
    (b"abs_root", b"/", [b"etc", b"passwd"]),
    (b"proc", b"/proc", [b"self", b"environ"]),
    (b"proc_link", b"/proc", [b"1", b"root"]),
    (b"up", b"../outside", [b"secret"]),
    (b"abs_secret", None, []),
])
def test_symlinks_are_never_followed(served, link, target, beyond):
    c, root = served.client, served.root_fid
    fid, (qid,) = c.walk(root, [link])
    assert qid.type == p9.QTSYMLINK
    if target is not None:
        assert c.readlink(fid) == target
    with pytest.raises(OSError) as e:
        c.lopen(fid, os.O_RDONLY)
    assert e.value.errno == errno.EACCES
    if beyond:
        assert walk_err(c, fid, beyond[:1]) == errno.ENOTDIR
        assert walk_err(c, root, [link] + beyond) == errno.ENOENT  # stopped at the link
    c.clunk(fid)


def test_climbing_symlink_below_root(served):
    c, root = served.client, served.root_fid
    fid, qids = c.walk(root, [b"sub", b"climb"])
    assert qids[-1].type == p9.QTSYMLINK
    assert c.readlink(fid) == b"../../outside/secret"
    with pytest.raises(OSError):
        c.lopen(fid, os.O_RDONLY)
    c.clunk(fid)


@pytest.mark.parametrize("name", [b"mnt_proc", b"mnt_sys", b"status_file"])
def test_pseudo_filesystems_inside_the_export_are_refused(served, name):
    c = served.client
    assert walk_err(c, served.root_fid, [name]) == errno.EACCES
    sub, _ = c.walk(served.root_fid, [b"sub", b".."])
    assert walk_err(c, sub, [name]) == errno.EACCES
    c.clunk(sub)


def test_other_mounts_inside_the_export_are_served(served):
    c, root = served.client, served.root_fid
    fid, qids = c.walk(root, [b"mnt_tmp", b"t"])
    assert qids[0].path >> 63 == 1  # another device: numbered apart from the export's inodes
    c.lopen(fid, os.O_RDONLY)
    assert c.read(fid, 0, 100) == b"tmpfs-file\n"
    c.clunk(fid)


def test_sandbox_paths_resolve_inside_the_export(served):
    tree = MountTree(served.fs)
    ctx = PathContext(tree.root, tree.root, Creds())
    for path, code in [(b"/abs_etc/passwd", errno.ENOENT), (b"/abs_root/etc/passwd", errno.ENOENT),
                       (b"/up/secret", errno.ENOENT), (b"/sub/climb", errno.ENOENT),
                       (b"/abs_secret", errno.ENOENT), (b"/proc/self/status", errno.ELOOP),
                       (b"/proc_link/self", errno.ELOOP), (b"/../../outside/secret", errno.ENOENT),
                       (b"/mnt_proc/self/status", errno.EACCES), (b"/mnt_sys/kernel", errno.EACCES)]:
        with pytest.raises(OSError) as e:
            tree.resolve(ctx, path)
        assert e.value.errno == code, path
    loc = tree.resolve(ctx, b"/abs_root/inside")  # "/" is the export's root
    assert loc.inode.open(os.O_RDONLY).pread(100, 0) == b"inside\n"


def test_everything_reachable_is_inside(served, world):
    """Read every file a client can reach: no secret, no foreign inode."""
    export_inodes = {os.lstat(os.path.join(d, n)).st_ino
                     for d, dirs, files in os.walk(world[0]) for n in dirs + files}
    seen = []

    def visit(inode, depth=0):
        for e in inode.readdir():
            try:
                child = inode.lookup(e.name)
            except OSError as err:
                assert err.errno == errno.EACCES  # the pseudo-fs mounts
                continue
            st = child.stat()
            seen.append(e.name)
            if child.is_dir() and depth < 5:
                visit(child, depth + 1)
            elif st.mode & 0o170000 == 0o100000:
                impl = child.open(os.O_RDONLY)
                assert SECRET not in impl.pread(1 << 20, 0)
                impl.release()
            if st.ino >> 63 == 0:
                assert st.ino in export_inodes
    visit(served.fs.root())
    assert b"inside" in seen and b"climb" in seen


def test_host_side_swap_after_walk_is_caught(world):
    """A fid walked to a file, whose name the host then points at a secret,
    must not open the secret (the server re-checks the identity)."""
    export, outside = world
    victim = os.path.join(export, "victim")
    with open(victim, "wb") as f:
        f.write(b"harmless")
    g = start_gofer(export)
    try:
        c = g.client
        fid, _ = c.walk(g.fs.root().fid, [b"victim"])
        os.unlink(victim)
        os.symlink(os.path.join(outside, "secret"), victim)
        with pytest.raises(OSError) as e:
            c.lopen(fid, os.O_RDONLY)
        assert e.value.errno in (errno.ELOOP, errno.ESTALE, errno.ENOENT)
        os.unlink(victim)
        shutil.copy(os.path.join(outside, "secret"), victim)
        with pytest.raises(OSError) as e:
            c.lopen(fid, os.O_RDONLY)
        assert e.value.errno == errno.ESTALE
    finally:
        g.close()
        os.unlink(victim)


def test_rw_server_cannot_be_steered_outside(world, tmp_path):
    export, outside = world
    rw_export = tmp_path / "rw"
    rw_export.mkdir()
    (rw_export / "d").mkdir()
    (rw_export / "f").write_bytes(b"f")
    secret = os.path.join(outside, "secret")
    before = os.lstat(secret)
    passwd_before = os.lstat("/etc/passwd")
    g = start_gofer(str(rw_export), rw=True)
    try:
        c, root = g.client, g.fs.root().fid
        for bad in [lambda: c.renameat(root, b"f", root, b"../escaped"),
                    lambda: c.renameat(root, b"../outside/secret", root, b"stolen"),
                    lambda: c.mkdir(root, b"../made", 0o755, 0),
                    lambda: c.symlink(root, b"sub/evil", b"/etc", 0),
                    lambda: c.unlinkat(root, b"../outside/secret", 0),
                    lambda: c.unlinkat(root, b"..", 0),
                    lambda: c.unlinkat(root, b"..", p9.AT_REMOVEDIR),
                    lambda: c.renameat(root, b"f", root, b".."),
                    lambda: c.renameat(root, b"..", root, b"g"),
                    lambda: c.symlink(root, b"..", b"/", 0),
                    lambda: c.mknod(root, b"..", 0o10644, 0, 0, 0),
                    lambda: c.link(root, c.walk(root, [b"f"])[0], b".."),
                    lambda: c.rename(c.walk(root, [b"f"])[0], root, b".."),
                    lambda: c.lcreate(c.walk(root, [])[0], b"..", os.O_RDWR, 0o644, 0)]:
            with pytest.raises(OSError) as e:
                bad()
            assert e.value.errno == errno.EINVAL
        # a symlink may be made (its text is the sandbox's business) but is never followed
        c.symlink(root, b"evil", secret.encode(), 0)
        c.symlink(root, b"evil_dir", outside.encode(), 0)
        fid, _ = c.walk(root, [b"evil"])
        for bad, code in [(lambda: c.lopen(fid, os.O_RDWR | os.O_TRUNC), errno.EACCES),
                          (lambda: c.setattr(fid, p9.SETATTR_MODE, mode=0o777), errno.EOPNOTSUPP),
                          (lambda: c.setattr(fid, p9.SETATTR_SIZE, size=0), errno.EINVAL),
                          (lambda: c.lcreate(fid, b"x", os.O_RDWR, 0o644, 0), errno.ENOTDIR)]:
            with pytest.raises(OSError) as e:
                bad()
            assert e.value.errno == code
        c.setattr(fid, p9.SETATTR_UID | p9.SETATTR_GID, uid=4242, gid=4242)  # the link itself
        assert os.lstat(rw_export / "evil").st_uid == 4242
        dfid, _ = c.walk(root, [])
        with pytest.raises(OSError) as e:  # O_CREAT on a symlink name: O_NOFOLLOW refuses
            c.lcreate(dfid, b"evil", os.O_RDWR, 0o644, 0)
        assert e.value.errno in (errno.ELOOP, errno.EEXIST)
        c.clunk(dfid)
        c.link(root, fid, b"evil_hard")  # a hard link to the symlink, not its target
        assert os.path.islink(rw_export / "evil_hard")
        with pytest.raises(OSError) as e:
            c.mknod(root, b"disk", 0o60600, 8, 0, 0)
        assert e.value.errno == errno.EPERM
        assert walk_err(c, c.walk(root, [b"evil_dir"])[0], [b"secret"]) == errno.ENOTDIR
        with pytest.raises(OSError):
            c.mkdir(c.walk(root, [b"evil_dir"])[0], b"x", 0o755, 0)
        c.clunk(fid)
    finally:
        g.close()
    after = os.lstat(secret)
    assert (after.st_mode, after.st_uid, after.st_size, after.st_ino) == (
        before.st_mode, before.st_uid, before.st_size, before.st_ino)
    with open(secret, "rb") as f:
        assert f.read() == SECRET + b"\n"
    assert os.lstat("/etc/passwd").st_mode == passwd_before.st_mode
    assert sorted(os.listdir(outside)) == ["secret", "sub"]


# --- side by side with diod: '..' at the export root -------------------------------

DIOD = shutil.which("diod") or "/usr/sbin/diod"


def diod_client(export: str):
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([DIOD, "-f", "-n", "-N", "-r", str(theirs.fileno()), "-w", str(theirs.fileno()),
                             "-e", export, "-c", "/dev/null", "-L", "/dev/null"], pass_fds=[theirs.fileno()],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    theirs.close()
    c = GoferClient(ours)
    c.version()
    import resource  # diod 1.0.24 may crash at close: no core file (it raised its limit at start)
    resource.prlimit(proc.pid, resource.RLIMIT_CORE, (0, 0))
    root = c.new_fid()
    c.attach(root, uname=b"root", aname=export.encode(), n_uname=0)
    return c, root, proc


@pytest.mark.skipif(not os.path.exists(DIOD), reason="diod not installed")
def test_dotdot_diod_escapes_ours_does_not(served, world):
    """The same walk, '..' past the export root then into the host's /etc:
    diod (1.0.24) follows it out and serves /etc/passwd; our gofer keeps
    '..' at the export root and the walk finds nothing."""
    export, outside = world
    depth = len(os.path.realpath(export).strip("/").split("/"))
    walk = [b".."] * (depth + 2) + [b"etc", b"passwd"]
    with open("/etc/passwd", "rb") as f:
        host_passwd = f.read()
    c, root, proc = diod_client(export)
    try:
        fid, qids = c.walk(root, [b".."] * (depth + 2))
        assert qids[-1].path == os.stat("/").st_ino  # diod: the host's root
        c.clunk(fid)
        fid, qids = c.walk(root, walk)
        c.lopen(fid, os.O_RDONLY)
        assert c.read(fid, 0, len(host_passwd)) == host_passwd  # diod: outside the export
        c.clunk(fid)
        fid, _ = c.walk(root, [b"..", os.fsencode(os.path.basename(outside)), b"secret"])
        c.lopen(fid, os.O_RDONLY)
        assert c.read(fid, 0, 100).startswith(SECRET)  # diod: the sibling of the export
        c.clunk(fid)
    finally:
        c.close()
        proc.wait(10)
    ours, ours_root = served.client, served.root_fid
    fid, qids = ours.walk(ours_root, [b".."] * (depth + 2))
    assert set(qids) == {ours.getattr(ours_root).qid}  # ours: the export root, every time
    ours.clunk(fid)
    assert walk_err(ours, ours_root, walk) == errno.ENOENT
    assert walk_err(ours, ours_root, [b"..", os.fsencode(os.path.basename(outside)), b"secret"]) == errno.ENOENT


# --- a host thread swaps a directory for a symlink while the client walks ---------

RENAME_EXCHANGE = 2


def exchange(dir_fd: int, a: str, b: str) -> None:
    """renameat2(RENAME_EXCHANGE): both names always exist, swapped atomically."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(316, dir_fd, a.encode(), dir_fd, b.encode(), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@pytest.fixture
def racing(world):
    """export/race/d flips between a directory (holding a decoy 'secret')
    and a symlink to outside/sub (holding the real one), as fast as a host
    thread can swap them, until the test is done."""
    import threading
    export, outside = world
    race = os.path.join(export, "race")
    os.makedirs(os.path.join(race, "d"))
    with open(os.path.join(race, "d", "secret"), "wb") as f:
        f.write(b"decoy\n")
    os.symlink(os.path.join(outside, "sub"), os.path.join(race, "other"))
    stop = threading.Event()
    swaps = [0]

    def swap():
        fd = os.open(race, os.O_RDONLY | os.O_DIRECTORY)
        try:
            while not stop.is_set():
                exchange(fd, "d", "other")
                swaps[0] += 1
        finally:
            os.close(fd)
    t = threading.Thread(target=swap, daemon=True)
    t.start()
    yield swaps
    stop.set()
    t.join(10)
    shutil.rmtree(race)


def test_symlink_swapped_in_during_walks_never_leads_out(world, racing):
    """Thousands of walks race the swap: each lands on the decoy or fails
    at the symlink; none reads the file outside. Both outcomes must occur,
    so the race was really run."""
    import time
    g = start_gofer(world[0])
    try:
        c, root = g.client, g.fs.root().fid
        outcomes = {"decoy": 0, "refused": 0}
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline or min(outcomes.values()) == 0:
            assert time.monotonic() < deadline + 20, (outcomes, racing)
            # one Twalk of three names, and the same walk in two steps
            for names in ([b"race", b"d", b"secret"], None):
                try:
                    if names:
                        fid, _ = c.walk(root, names)
                    else:
                        dfid, _ = c.walk(root, [b"race", b"d"])
                        try:
                            fid, _ = c.walk(dfid, [b"secret"])
                        finally:
                            c.clunk(dfid)
                except OSError as e:
                    assert e.errno in (errno.ENOENT, errno.ENOTDIR), e
                    outcomes["refused"] += 1
                    continue
                try:
                    _, _, fd = c.lopen(fid, os.O_RDONLY)
                    data = os.pread(fd, 100, 0)
                    os.close(fd)
                except OSError as e:  # the name moved between walk and open
                    assert e.errno in (errno.ESTALE, errno.ENOENT), e
                    outcomes["refused"] += 1
                else:
                    assert SECRET not in data and data == b"decoy\n"
                    outcomes["decoy"] += 1
                finally:
                    c.clunk(fid)
    finally:
        g.close()


def test_sandbox_path_walks_race_the_swap_too(world, racing):
    """The sandbox's own path walk (symlinks resolved in the sandbox's
    namespace, where the link's absolute target does not exist) over an
    uncached gofer filesystem, racing the same swap; a fresh mount tree
    each time, so no dentry cache hides the race."""
    import time
    g = start_gofer(world[0], cache=False)
    try:
        seen = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline or len(seen) < 2:
            assert time.monotonic() < deadline + 20, seen
            tree = MountTree(g.fs)
            ctx = PathContext(tree.root, tree.root, Creds())
            try:
                loc = tree.resolve(ctx, b"/race/d/secret")
                impl = loc.inode.open(os.O_RDONLY)
                data = impl.pread(100, 0)
                impl.release()
            except OSError as e:
                seen.add(e.errno)
                continue
            assert SECRET not in data
            seen.add(data)
    finally:
        g.close()
    assert b"decoy\n" in seen


# --- files the host put in the export -------------------------------------------------

def test_hard_link_to_an_outside_file_is_that_file(world):
    """Documented limit: a hard link the host made inside the export IS the
    outside file (no server can tell one name of an inode from another).
    The gofer serves it; st_nlink shows it has another name. A sandbox
    cannot make such a link itself (Tlink takes names inside the export)."""
    export, outside = world
    link = os.path.join(export, "hard_out")
    os.link(os.path.join(outside, "secret"), link)
    g = start_gofer(export)
    try:
        f = g.fs.root().lookup(b"hard_out")
        st = f.stat()
        assert st.ino == os.stat(os.path.join(outside, "secret")).st_ino and st.nlink == 2
        impl = f.open(os.O_RDONLY)
        assert impl.pread(100, 0) == SECRET + b"\n"
        impl.release()
    finally:
        g.close()
        os.unlink(link)


@pytest.fixture
def specials(world):
    export = world[0]
    d = os.path.join(export, "specials")
    os.mkdir(d)
    os.mknod(os.path.join(d, "mem"), S.S_IFCHR | 0o666, os.makedev(1, 1))    # /dev/mem
    os.mknod(os.path.join(d, "null"), S.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(os.path.join(d, "loop"), S.S_IFBLK | 0o666, os.makedev(7, 0))
    os.mkfifo(os.path.join(d, "fifo"))  # nobody ever writes: an open would block
    yield d
    shutil.rmtree(d)


@pytest.mark.parametrize("rw", [False, True], ids=["ro", "rw"])
def test_device_nodes_and_fifos_are_never_opened(world, specials, rw):
    g = start_gofer(world[0], rw=rw)
    try:
        c = g.client
        c.sock.settimeout(10)  # a blocked server shows up as EIO here, not as a hang
        d = g.fs.root().lookup(b"specials")
        for name in ("mem", "null", "loop", "fifo"):
            host = os.lstat(os.path.join(specials, name))
            inode = d.lookup(name.encode())
            st = inode.stat()
            assert (st.mode, st.rdev) == (host.st_mode, host.st_rdev)
            for flags in (os.O_RDONLY, os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY, os.O_RDWR):
                fid, _ = c.walk(inode.fid, [])
                with pytest.raises(OSError) as e:
                    c.lopen(fid, flags)
                assert e.value.errno == errno.EACCES  # refused before anything is opened
                c.clunk(fid)
            assert inode.listxattr() == []
            with pytest.raises(OSError) as e:
                inode.getxattr(b"user.x")
            assert e.value.errno == errno.ENODATA
            if rw:
                inode.setattr(mode=0o600)  # the node itself, without opening it
                assert S.S_IMODE(os.lstat(os.path.join(specials, name)).st_mode) == 0o600
                with pytest.raises(OSError) as e:
                    inode.setattr(size=0)
                assert e.value.errno == errno.EINVAL
                with pytest.raises(OSError) as e:
                    inode.setxattr(b"user.x", b"y")
                assert e.value.errno == errno.EPERM
        assert c.getattr(g.fs.root().fid).qid.type == p9.QTDIR  # still serving
    finally:
        g.close()
    assert g.proc.returncode == 0


def test_pseudo_filesystems_are_gone_from_the_gofers_namespace(served):
    """The mounting server bound /proc, a sysfs and a /proc file inside the
    export: the gofer's own mount namespace holds none of them (so not
    even a compromised gofer reaches /proc/1/root), only the tmpfs."""
    pid = served.proc.pid  # unshare and sh exec the server: the same process
    assert "vfs.gofer.server" in open(f"/proc/{pid}/cmdline").read()
    types = [line.split(" - ")[1].split()[0] for line in open(f"/proc/{pid}/mountinfo")]
    assert "tmpfs" in types
    assert not {"proc", "sysfs"} & set(types), types
    root = f"/proc/{pid}/root"
    assert os.listdir(os.path.join(root, "mnt_proc")) == []
    assert os.listdir(os.path.join(root, "mnt_tmp")) == ["t"]
