"""Interop with the reference 9P2000.L implementation, diod (Debian diod):
our GoferClient and the sentry's GoferFilesystem against diod's server
(reads, listings, writes, changes, locks, xattrs), our server against
diod's own clients (diodls, diodcat, diodload), and our server and diod
answering the same questions about one tree the same way os.* does and
making the same changes to two copies of one tree."""
import errno
import os
import shutil
import socket
import stat as S
import subprocess

import pytest

from vfs.gofer import p9, server_command, server_env
from vfs.gofer.client import GoferClient

DIOD = shutil.which("diod") or "/usr/sbin/diod"
pytestmark = pytest.mark.skipif(not os.path.exists(DIOD), reason="diod not installed")


def no_core_dumps(pid: int) -> None:
    """diod 1.0.24 sometimes crashes (SIGSEGV) when a connection that listed
    xattrs closes; it raises its own core limit at start, so once it
    answers, lower it from outside: no core file in the cwd."""
    import resource
    try:
        resource.prlimit(pid, resource.RLIMIT_CORE, (0, 0))
    except (ProcessLookupError, PermissionError):
        pass


def make_tree(root):
    os.makedirs(os.path.join(root, "dir", "sub"))
    with open(os.path.join(root, "file"), "wb") as f:
        f.write(b"contents of file\n")
    with open(os.path.join(root, "big"), "wb") as f:
        f.write(os.urandom(300_000))
    with open(os.path.join(root, "dir", "inner"), "wb") as f:
        f.write(b"inner\n")
    os.symlink("file", os.path.join(root, "link"))
    os.symlink("/etc/passwd", os.path.join(root, "abs_link"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.chmod(os.path.join(root, "file"), 0o640)
    os.chown(os.path.join(root, "dir", "inner"), 1001, 1002)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("diod-export"))
    make_tree(root)
    return root


class Connection:
    """A client over a socketpair to a server process (diod or ours)."""

    def __init__(self, argv_for_fd, aname: bytes):
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(argv_for_fd(theirs.fileno()), pass_fds=[theirs.fileno()],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=server_env())
        theirs.close()
        self.sock = ours
        try:
            self.client = GoferClient(ours)
            self.msize, self.version = self.client.version()
            no_core_dumps(self.proc.pid)
            self.root = self.client.new_fid()
            self.root_qid = self.client.attach(self.root, uname=b"root", aname=aname, n_uname=0)
        except BaseException:
            self.close()
            raise

    def close(self):
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def diod_argv(tree):
    # -f foreground, -n no auth, -N no user database, -r/-w serve this connected fd
    return lambda fd: [DIOD, "-f", "-n", "-N", "-r", str(fd), "-w", str(fd), "-e", tree,
                       "-c", "/dev/null", "-L", "/dev/null"]


@pytest.fixture(scope="module")
def diod(tree):
    c = Connection(diod_argv(tree), tree.encode())
    yield c
    c.close()


@pytest.fixture(scope="module")
def gofer(tree):
    c = Connection(lambda fd: server_command(fd, tree, False), tree.encode())
    yield c
    c.close()


def observe(conn, tree):
    """What a client learns about every path in the tree."""
    c = conn.client
    out = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        rel = os.path.relpath(dirpath, tree)
        base = [] if rel == "." else [os.fsencode(p) for p in rel.split("/")]
        for name in [None] + dirnames + filenames:
            comps = base + ([os.fsencode(name)] if name else [])
            fid, qids = c.walk(conn.root, comps)
            a = c.getattr(fid)
            seen = {"qid": (a.qid.type, a.qid.path), "walk_qids": [(q.type, q.path) for q in qids],
                    "attr": (a.mode, a.uid, a.gid, a.nlink, a.size, a.rdev, a.blocks,
                             a.atime_sec, a.atime_nsec, a.mtime_sec, a.mtime_nsec, a.ctime_sec, a.ctime_nsec)}
            if S.S_ISLNK(a.mode):
                seen["target"] = c.readlink(fid)
            elif S.S_ISREG(a.mode):
                _, _, fd = c.lopen(fid, os.O_RDONLY)
                if fd is not None:
                    os.close(fd)
                data, off = b"", 0
                while True:
                    chunk = c.read(fid, off, 1 << 20)
                    if not chunk:
                        break
                    data += chunk
                    off += len(chunk)
                seen["data"] = data
            elif S.S_ISDIR(a.mode):
                c.lopen(fid, os.O_RDONLY | os.O_DIRECTORY)
                seen["entries"] = sorted((d.name, d.type, d.qid.path) for d in c.readdir_all(fid)
                                         if d.name not in (b".", b".."))
            c.clunk(fid)
            out[os.path.join(tree, *[os.fsdecode(p) for p in comps])] = seen
    return out


def host_view(tree):
    out = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in [None] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            kind = p9.QTDIR if S.S_ISDIR(st.st_mode) else p9.QTSYMLINK if S.S_ISLNK(st.st_mode) else 0
            seen = {"qid": (kind, st.st_ino),
                    "attr": (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_size, st.st_rdev,
                             st.st_blocks, st.st_atime_ns // 10**9, st.st_atime_ns % 10**9,
                             st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9,
                             st.st_ctime_ns // 10**9, st.st_ctime_ns % 10**9)}
            if S.S_ISLNK(st.st_mode):
                seen["target"] = os.fsencode(os.readlink(path))
            elif S.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    seen["data"] = f.read()
            elif S.S_ISDIR(st.st_mode):
                seen["entries"] = sorted(
                    (os.fsencode(e.name), S.S_IFMT(e.stat(follow_symlinks=False).st_mode) >> 12, e.inode())
                    for e in os.scandir(path))
            out[path] = seen
    return out


def without_walk_qids(view):
    return {p: {k: v for k, v in seen.items() if k != "walk_qids"} for p, seen in view.items()}


def test_our_client_against_diod_matches_os(diod, tree):
    assert diod.version == p9.VERSION and diod.msize <= (1 << 20) + p9.IOHDRSZ
    assert diod.root_qid.type == p9.QTDIR and diod.root_qid.path == os.stat(tree).st_ino
    # read before observing: atime must be settled before the host looks
    observe(diod, tree)
    assert without_walk_qids(observe(diod, tree)) == host_view(tree)


def test_our_server_and_diod_agree(diod, gofer, tree):
    observe(gofer, tree)
    ours, theirs = observe(gofer, tree), observe(diod, tree)
    assert ours == theirs
    assert without_walk_qids(ours) == host_view(tree)
    assert gofer.root_qid == diod.root_qid


def test_errors_agree_with_diod(diod, gofer):
    for conn in (diod, gofer):
        c = conn.client
        with pytest.raises(OSError) as e:
            c.walk(conn.root, [b"missing"])
        assert e.value.errno == errno.ENOENT
        fid, _ = c.walk(conn.root, [b"file"])
        with pytest.raises(OSError) as e:
            c.walk(fid, [b"x"])
        assert e.value.errno == errno.ENOTDIR
        with pytest.raises(OSError) as e:
            c.readlink(fid)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            c.read(fid, 0, 10)  # not opened
        assert e.value.errno in (errno.EBADF, errno.EINVAL)
        c.clunk(fid)
        sf = c.statfs(conn.root)
        assert sf.type == p9.V9FS_MAGIC and sf.namelen == 255


def test_long_walks_and_partial_walks(diod, gofer):
    for conn in (diod, gofer):
        c = conn.client
        n = c.new_fid()
        reply = c.rpc(p9.Twalk(conn.root, n, (b"dir", b"missing", b"x")))
        assert len(reply.qids) == 1  # partial: the first step only
        if conn is gofer:
            with pytest.raises(OSError):
                c.getattr(n)  # newfid unset, as the spec says (diod sets it)
        c.clunk(n) if conn is diod else c._forget_fid(n)
        for _ in range(3):  # the client recovers the fid number either way
            with pytest.raises(FileNotFoundError):
                c.walk(conn.root, [b"dir", b"missing"])
        names = [b"dir", b"sub", b"..", b".."] * 6 + [b"file"]  # two Twalks of MAXWELEM at most
        fid, qids = c.walk(conn.root, names)
        assert len(qids) == 25 and qids[-1].path == conn.client.getattr(fid).qid.path
        assert qids[3] == conn.root_qid
        c.clunk(fid)


def test_dotdot_above_the_export_root(gofer):
    """Our server keeps '..' at the export root. (diod 1.0.24 does not: the
    same walk reaches the host's /; our client never sends it such a walk.)"""
    c = gofer.client
    fid, qids = c.walk(gofer.root, [b".."] * 10)
    assert set(qids) == {gofer.root_qid}
    c.clunk(fid)


def test_diod_listening_on_a_unix_socket(tree, tmp_path):
    """diod's usual mode: a listening socket (here a unix one, no TCP port
    to collide on)."""
    import time
    path = str(tmp_path / "diod.sock")
    proc = subprocess.Popen([DIOD, "-f", "-n", "-N", "-l", path, "-e", tree, "-c", "/dev/null",
                             "-L", "/dev/null"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    sock = socket.socket(socket.AF_UNIX)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                assert time.monotonic() < deadline and proc.poll() is None, "diod did not listen"
                time.sleep(0.02)
        c = GoferClient(sock)
        assert c.version()[1] == p9.VERSION
        no_core_dumps(proc.pid)
        root = c.new_fid()
        assert c.attach(root, uname=b"root", aname=tree.encode(), n_uname=0).path == os.stat(tree).st_ino
        fid, (qid,) = c.walk(root, [b"file"])
        assert qid.path == os.stat(os.path.join(tree, "file")).st_ino
        assert c.getattr(fid).size == os.path.getsize(os.path.join(tree, "file"))
    finally:
        sock.close()
        proc.kill()
        proc.wait()


# --- diod's own clients against our server -----------------------------------

@pytest.fixture
def listener(tmp_path):
    path = str(tmp_path / "gofer.sock")
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(path)
    ls.listen(1)
    ls.settimeout(10)
    yield path, ls
    ls.close()


def run_diod_client(listener, tree, args):
    """Run a diod client against our server: accept its connection and hand
    the connected fd to a gofer process."""
    path, ls = listener
    tool = shutil.which(args[0]) or os.path.join("/usr/sbin", args[0])
    if not os.path.exists(tool):
        pytest.skip(f"{args[0]} not installed")
    cl = subprocess.Popen([tool, "-s", path, "-a", tree, "-t", "10", *args[1:]],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    srv = None
    try:
        conn, _ = ls.accept()
        srv = subprocess.Popen(server_command(conn.fileno(), tree, False), pass_fds=[conn.fileno()],
                               env=server_env())
        conn.close()
        out, err = cl.communicate(timeout=20)
        assert srv.wait(10) == 0
        return cl.returncode, out, err
    finally:
        for p in (cl, srv):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_diodcat_reads_through_our_server(listener, tree):
    rc, out, err = run_diod_client(listener, tree, ["diodcat", "file", "dir/inner", "big"])
    assert rc == 0, err
    want = b""
    for name in ("file", "dir/inner", "big"):
        with open(os.path.join(tree, name), "rb") as f:
            want += f.read()
    assert out == want


def test_diodls_lists_through_our_server(listener, tree):
    rc, out, err = run_diod_client(listener, tree, ["diodls", "dir"])
    assert rc == 0, err
    assert sorted(out.decode().split()) == sorted(os.listdir(os.path.join(tree, "dir")))


def test_diodls_long_shows_host_attributes(listener, tree):
    rc, out, err = run_diod_client(listener, tree, ["diodls", "-l", "dir"])
    assert rc == 0, err
    lines = {line.split()[-1]: line.split() for line in out.decode().splitlines() if line.strip()}
    inner = lines["inner"]
    assert inner[0].startswith("-rw-r--r--") and inner[2:5] == ["1001", "1002", "6"]
    assert lines["sub"][0].startswith("d")


def test_diodcat_cannot_escape_our_server(listener, tree):
    rc, out, err = run_diod_client(listener, tree, ["diodcat", "../../../../etc/passwd"])
    assert rc != 0 and out == b""


# --- read-write: the same changes through diod and through our gofer ---------------

def rw_server(kind, root):
    if kind == "diod":
        return Connection(diod_argv(root), root.encode())
    return Connection(lambda fd: server_command(fd, root, True), root.encode())


def tree_state(root):
    """What a change leaves on the host: names, kinds, modes, sizes,
    contents, link targets, link counts and user xattrs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            item = (S.S_IFMT(st.st_mode), S.S_IMODE(st.st_mode), st.st_nlink, st.st_uid, st.st_gid)
            if S.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    item += (f.read(),)
            if S.S_ISLNK(st.st_mode):
                item += (os.readlink(p),)
            elif not S.S_ISFIFO(st.st_mode):
                item += (sorted((n, os.getxattr(p, n)) for n in os.listxattr(p) if n.startswith("user.")),)
            out[rel] = item
    return out


def apply_changes(conn):
    """One sequence of 9P changes, every message the client sends for them."""
    c, root = conn.client, conn.root
    d, _ = c.walk(root, [])
    qid, _, fd = c.lcreate(d, b"made", os.O_RDWR, 0o640, 0)
    if fd is not None:
        os.close(fd)
    data = bytes(range(256)) * 1000
    off = 0
    while off < len(data):
        off += c.write(d, off, data[off:])
    c.fsync(d)
    c.clunk(d)
    c.mkdir(root, b"sub", 0o750, 0)
    sub, _ = c.walk(root, [b"sub"])
    c.symlink(sub, b"ln", b"../made", 0)
    c.mknod(root, b"pipe", S.S_IFIFO | 0o600, 0, 0, 0)
    made, _ = c.walk(root, [b"made"])
    c.link(sub, made, b"hard")
    c.setattr(made, p9.SETATTR_MODE | p9.SETATTR_SIZE, mode=0o604, size=1000)
    c.xattr_set(made, b"user.tag", b"value")
    c.xattr_set(made, b"user.gone", b"soon")
    c.xattr_set(made, b"user.gone", b"", p9.XATTR_REPLACE)
    moved, _ = c.walk(root, [b"existing"])
    c.rename(moved, sub, b"renamed")
    c.clunk(moved)
    victim, _ = c.walk(root, [b"victim"])
    c.remove(victim)
    c.clunk(made)
    c.clunk(sub)


def fresh_rw_tree(base):
    os.makedirs(base)
    with open(os.path.join(base, "existing"), "wb") as f:
        f.write(b"existing\n")
    with open(os.path.join(base, "victim"), "wb") as f:
        f.write(b"victim\n")
    return base


def test_changes_through_diod_and_through_ours_agree(tmp_path):
    results = {}
    for kind in ("diod", "ours"):
        root = fresh_rw_tree(str(tmp_path / kind))
        conn = rw_server(kind, root)
        try:
            apply_changes(conn)
        finally:
            conn.close()
        results[kind] = tree_state(root)
    assert results["diod"] == results["ours"]
    assert results["ours"]["made"][5] == (bytes(range(256)) * 4)[:1000]
    assert results["ours"]["made"][6] == [("user.tag", b"value")]
    assert results["ours"]["sub/hard"][2] == 2 and "victim" not in results["ours"]


def test_locks_agree_with_diod(tmp_path):
    """Whole-file locks (diod's are flock(2)s; ours are byte-range OFD
    locks, which agree on whole files): two opened fids conflict."""
    W, R, U = p9.LOCK_TYPE_WRLCK, p9.LOCK_TYPE_RDLCK, p9.LOCK_TYPE_UNLCK
    for kind in ("diod", "ours"):
        root = fresh_rw_tree(str(tmp_path / kind))
        conn = rw_server(kind, root)
        try:
            c = conn.client
            fids = []
            for _ in range(2):
                fid, _ = c.walk(conn.root, [b"existing"])
                _, _, fd = c.lopen(fid, os.O_RDWR)
                if fd is not None:
                    os.close(fd)
                fids.append(fid)
            a, b = fids
            seen = [c.lock(a, W, proc_id=1, client_id=b"t"), c.lock(b, W, proc_id=2, client_id=b"t"),
                    c.lock(b, R, proc_id=2, client_id=b"t"), c.getlock(b, W, proc_id=2, client_id=b"t").type,
                    c.lock(a, U, proc_id=1, client_id=b"t"), c.lock(b, W, proc_id=2, client_id=b"t"),
                    c.getlock(a, R, proc_id=1, client_id=b"t").type]
            assert seen == [p9.LOCK_SUCCESS, p9.LOCK_BLOCKED, p9.LOCK_BLOCKED, W, p9.LOCK_SUCCESS,
                            p9.LOCK_SUCCESS, W], kind
        finally:
            conn.close()


def test_xattrs_agree_with_diod(tmp_path):
    for kind in ("diod", "ours"):
        root = fresh_rw_tree(str(tmp_path / kind))
        path = os.path.join(root, "existing")
        os.setxattr(path, "user.from_host", b"h")
        conn = rw_server(kind, root)
        try:
            c = conn.client
            fid, _ = c.walk(conn.root, [b"existing"])
            c.xattr_set(fid, b"user.from_client", b"c" * 3000)
            assert os.getxattr(path, "user.from_client") == b"c" * 3000, kind
            assert c.xattr_get(fid, b"user.from_host") == b"h"
            assert sorted(c.xattr_get(fid, b"").split(b"\0")[:-1]) == [b"user.from_client", b"user.from_host"]
            with pytest.raises(OSError) as e:
                c.xattr_get(fid, b"user.missing")
            assert e.value.errno == errno.ENODATA, kind
            c.xattr_set(fid, b"user.from_host", b"", p9.XATTR_REPLACE)  # size 0: remove
            assert os.listxattr(path) == ["user.from_client"], kind
            c.clunk(fid)
        finally:
            conn.close()


# --- our sentry's filesystem mounted over diod ----------------------------------

def test_sentry_filesystem_mounts_a_diod_export(tmp_path):
    """GoferFilesystem (what the sentry mounts) over diod: the VFS path walk,
    reads (Tread: diod donates no fd), listings, writes, renames, removal
    (diod lacks Tunlinkat/Trenameat: the client falls back as Linux's does)."""
    from vfs.gofer.fs import GoferFilesystem
    from vfs.path import Creds, MountTree, PathContext
    root = fresh_rw_tree(str(tmp_path / "export"))
    make_tree(os.path.join(root, "t"))
    conn = Connection(diod_argv(root), root.encode())
    try:
        fs = GoferFilesystem(conn.client, aname=root.encode(), rw=True, uname=b"root", n_uname=0)
        tree = MountTree(fs)
        ctx = PathContext(tree.root, tree.root, Creds())
        big = tree.resolve(ctx, b"/t/dir/../big").inode
        impl = big.open(os.O_RDONLY)
        assert impl.host_fd is None
        with open(os.path.join(root, "t", "big"), "rb") as f:
            assert impl.pread(1 << 20, 0) == f.read()  # several Treads of msize each
        impl.release()
        assert tree.resolve(ctx, b"/t/link").inode.stat().ino == os.stat(os.path.join(root, "t", "file")).st_ino
        with pytest.raises(FileNotFoundError):
            tree.resolve(ctx, b"/t/abs_link")  # /etc/passwd of the mount, not the host's
        listing = {e.name for e in tree.resolve(ctx, b"/t").inode.readdir()}
        assert listing == {os.fsencode(n) for n in os.listdir(os.path.join(root, "t"))}
        r = fs.root()
        new = r.create(b"new", S.S_IFREG | 0o644, 0, 0)
        impl = new.open(os.O_RDWR)
        payload = os.urandom(200_000)
        assert impl.pwrite(payload, 0) == len(payload)  # several Twrites
        impl.release()
        with open(os.path.join(root, "new"), "rb") as f:
            assert f.read() == payload
        d = r.mkdir(b"d", 0o755, 0, 0)
        r.rename(b"new", d, b"moved")
        assert os.path.exists(os.path.join(root, "d", "moved"))
        with pytest.raises(OSError) as e:
            r.rmdir(b"existing")
        assert e.value.errno == errno.ENOTDIR
        d.unlink(b"moved")
        r.rmdir(b"d")
        r.unlink(b"victim")
        assert sorted(os.listdir(root)) == ["existing", "t"]
    finally:
        conn.close()


# --- more of diod's clients against our server ----------------------------------------

def test_diodcat_with_a_small_msize(listener, tree):
    """diod's client negotiates 4 KiB: our server clamps every Rread."""
    rc, out, err = run_diod_client(listener, tree, ["diodcat", "-m", "4096", "big"])
    assert rc == 0, err
    with open(os.path.join(tree, "big"), "rb") as f:
        assert out == f.read()


def test_diodload_reads_and_writes_through_our_server(tmp_path):
    """diodload: one connection per thread, each a gofer of ours, reading
    'zero' and writing 'null' (regular files here) for a second."""
    root = str(tmp_path / "load")
    os.makedirs(root)
    with open(os.path.join(root, "zero"), "wb") as f:
        f.write(bytes(1 << 20))
    open(os.path.join(root, "null"), "wb").close()
    path = str(tmp_path / "load.sock")
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(path)
    ls.listen(4)
    ls.settimeout(10)
    tool = shutil.which("diodload") or "/usr/sbin/diodload"
    cl = subprocess.Popen([tool, "-s", path, "-n", "2", "-r", "1", "-m", "16384"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    servers = []
    try:
        for _ in range(2):
            conn, _ = ls.accept()
            servers.append(subprocess.Popen(server_command(conn.fileno(), root, True), pass_fds=[conn.fileno()],
                                            env=server_env()))
            conn.close()
        out, err = cl.communicate(timeout=30)
        assert cl.returncode == 0, err
        assert b"No such file" not in err
        assert int(err.split(b"diodload:")[-1].split()[0]) > 0, err  # ops/s
        assert all(s.wait(10) == 0 for s in servers)
        assert 0 < os.path.getsize(os.path.join(root, "null")) <= 16384
    finally:
        ls.close()
        for p in [cl] + servers:
            if p.poll() is None:
                p.kill()
                p.wait()
