"""The real gofer server on a real directory tree: what the client and the
filesystem see equals what os.* says of the same host files."""
import errno
import fcntl
import hashlib
import os
import socket
import stat as S
import struct

import pytest

from vfs.gofer import p9, start_gofer
from vfs.gofer.fs import GoferFileImpl
from vfs.path import Creds, MountTree, PathContext

LARGE = 5 * 1024 * 1024 + 12345


def make_tree(root):
    """Files of every kind the gofer meets, with odd names and owners."""
    os.makedirs(os.path.join(root, "dir/sub/deeper"))
    os.makedirs(os.path.join(root, "empty"))
    with open(os.path.join(root, "small"), "wb") as f:
        f.write(b"hello gofer\n")
    open(os.path.join(root, "zero"), "wb").close()
    with open(os.path.join(root, "large"), "wb") as f:
        f.write(os.urandom(LARGE))
    with open(os.path.join(root, "dir/sub/deeper/leaf"), "wb") as f:
        f.write(b"leaf" * 1000)
    with open(os.path.join(root, "owned"), "wb") as f:
        f.write(b"x")
    os.chown(os.path.join(root, "owned"), 1234, 5678)
    os.chmod(os.path.join(root, "owned"), 0o4751)
    os.link(os.path.join(root, "small"), os.path.join(root, "dir/hardlink"))
    os.symlink("/etc/passwd", os.path.join(root, "abs_link"))
    os.symlink("../small", os.path.join(root, "dir/rel_link"))
    os.symlink("nowhere", os.path.join(root, "dangling"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.mknod(os.path.join(root, "null"), S.S_IFCHR | 0o666, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(root, "sock"))
    sock.close()
    raw = os.fsencode(root)
    with open(os.path.join(raw, b"bad-\xff\xfe-utf8"), "wb") as f:
        f.write(b"odd name")
    with open(os.path.join(root, "ünïcödé ☃"), "wb") as f:
        f.write(b"snow")
    for i in range(300):  # more entries than one Rreaddir holds
        open(os.path.join(root, "dir", f"many-{i:04d}-" + "n" * 100), "wb").close()


def snapshot(root):
    """Everything about a tree that a stray write or chmod would change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in [b"."] + dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = None
            if S.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_nlink, digest)
    return out


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("export"))
    make_tree(root)
    return root


@pytest.fixture(scope="module")
def ro(tree):
    g = start_gofer(tree)
    yield g
    g.close()


@pytest.fixture
def rw(tmp_path):
    root = tmp_path / "rw"
    root.mkdir()
    (root / "existing").write_bytes(b"0123456789")
    (root / "d").mkdir()
    g = start_gofer(str(root), rw=True)
    yield g, str(root)
    g.close()


def all_paths(root):
    """Every path under root, relative, as bytes component lists."""
    out = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        rel = os.path.relpath(dirpath, os.fsencode(root))
        base = [] if rel == b"." else rel.split(b"/")
        out += [base + [n] for n in dirnames + filenames]
    return out


def walk_fs(g, comps):
    inode = g.fs.root()
    for c in comps:
        inode = inode.lookup(c)
    return inode


def fids_open(g):
    return len(os.listdir(f"/proc/{g.pid}/fd"))


# --- differential: walk, getattr, readdir, readlink, read -----------------

def test_getattr_matches_lstat(ro, tree):
    for comps in all_paths(tree) + [[]]:
        host = os.lstat(os.path.join(os.fsencode(tree), *comps))
        st = walk_fs(ro, comps).stat()
        assert (st.mode, st.ino, st.nlink, st.uid, st.gid, st.rdev, st.size, st.blocks, st.blksize) == (
            host.st_mode, host.st_ino, host.st_nlink, host.st_uid, host.st_gid, host.st_rdev,
            host.st_size, host.st_blocks, host.st_blksize), comps
        assert (st.atime_ns, st.mtime_ns, st.ctime_ns) == (
            host.st_atime_ns, host.st_mtime_ns, host.st_ctime_ns), comps
        assert st.dev == ro.fs.dev


def test_walk_qids_match_host(ro, tree):
    c = ro.client
    for comps in all_paths(tree):
        fid, qids = c.walk(ro.fs.root().fid, comps)
        try:
            assert len(qids) == len(comps)
            for i, q in enumerate(qids):
                host = os.lstat(os.path.join(os.fsencode(tree), *comps[:i + 1]))
                assert q.path == host.st_ino
                want = p9.QTDIR if S.S_ISDIR(host.st_mode) else p9.QTSYMLINK if S.S_ISLNK(host.st_mode) else 0
                assert q.type == want
        finally:
            c.clunk(fid)


def test_readdir_matches_scandir(ro, tree):
    for comps in [[]] + [p for p in all_paths(tree) if os.path.isdir(os.path.join(os.fsencode(tree), *p))
                         and not os.path.islink(os.path.join(os.fsencode(tree), *p))]:
        host_dir = os.path.join(os.fsencode(tree), *comps)
        want = {}
        for e in os.scandir(host_dir):
            want[e.name] = (e.inode(), S.S_IFMT(e.stat(follow_symlinks=False).st_mode) >> 12)
        got = {d.name: (d.ino, d.dtype) for d in walk_fs(ro, comps).readdir()}
        assert got == want, comps
    assert len(walk_fs(ro, [b"dir"]).readdir()) > 300


def test_readdir_raw_includes_dot_entries_and_resumes(ro):
    c = ro.client
    fid, _ = c.walk(ro.fs.root().fid, [b"dir"])
    c.lopen(fid, os.O_RDONLY | os.O_DIRECTORY)
    first = c.readdir(fid, 0, 200)
    assert 0 < len(first) < 10  # only what fits in 200 bytes
    entries = c.readdir_all(fid)
    names = [d.name for d in entries]
    assert names[:2] == [b".", b".."] and len(names) == len(set(names))
    rest = c.readdir(fid, first[-1].offset, 1 << 16)
    assert [d.name for d in first + rest][:len(first) + 3] == names[:len(first) + 3]
    with pytest.raises(OSError) as e:
        c.readdir(fid, 0, 10)  # cannot hold one entry
    assert e.value.errno == errno.EINVAL
    c.clunk(fid)


def test_readlink_matches_host(ro, tree):
    for comps in all_paths(tree):
        path = os.path.join(os.fsencode(tree), *comps)
        inode = walk_fs(ro, comps)
        if os.path.islink(path):
            assert inode.readlink() == os.readlink(path)
        else:
            with pytest.raises(OSError) as e:
                inode.readlink()
            assert e.value.errno == errno.EINVAL


def read_all(impl, chunk=1 << 16):
    out, off = [], 0
    while True:
        data = impl.pread(chunk, off)
        if not data:
            return b"".join(out)
        out.append(data)
        off += len(data)


def test_reads_use_donated_read_only_fd(ro, tree):
    for comps in all_paths(tree):
        path = os.path.join(os.fsencode(tree), *comps)
        if not S.S_ISREG(os.lstat(path).st_mode):
            continue
        impl = walk_fs(ro, comps).open(os.O_RDONLY)
        try:
            assert isinstance(impl, GoferFileImpl) and impl.host_fd is not None
            assert fcntl.fcntl(impl.host_fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
            with open(path, "rb") as f:
                assert read_all(impl) == f.read()
            assert impl.size() == os.path.getsize(path)
        finally:
            impl.release()


def test_large_file_random_offsets(ro, tree):
    with open(os.path.join(tree, "large"), "rb") as f:
        host = f.read()
    impl = walk_fs(ro, [b"large"]).open(os.O_RDONLY)
    try:
        for off, n in [(0, 1), (4095, 3), (LARGE - 10, 100), (LARGE, 5), (LARGE + 100, 5),
                       (1 << 20, 3 << 20), (0, LARGE)]:
            assert impl.pread(n, off) == host[off:off + n]
    finally:
        impl.release()


def test_tread_path_without_donated_fd(ro, tree):
    """The 9P read path, used when no fd is donated, reads the same bytes."""
    c = ro.client
    fid, _ = c.walk(ro.fs.root().fid, [b"large"])
    _, _, fd = c.lopen(fid, os.O_RDONLY)
    os.close(fd)
    impl = GoferFileImpl(walk_fs(ro, [b"large"]), fid, None)
    with open(os.path.join(tree, "large"), "rb") as f:
        host = f.read()
    assert impl.pread(LARGE + 10, 0) == host  # several Treads of msize each
    assert impl.pread(100, LARGE - 50) == host[-50:]
    assert impl.size() == LARGE
    impl.fsync()
    impl.release()


def test_special_files_only_getattr(ro):
    for name in (b"fifo", b"null", b"sock"):
        inode = walk_fs(ro, [name])
        assert not S.S_ISREG(inode.stat().mode)
        with pytest.raises(OSError) as e:
            inode.open(os.O_RDONLY)
        assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        walk_fs(ro, [b"abs_link"]).open(os.O_RDONLY)
    assert e.value.errno == errno.EACCES


def test_same_host_file_same_inode_object(ro):
    root = ro.fs.root()
    a = root.lookup(b"dir").lookup(b"sub")
    assert root.lookup(b"dir").lookup(b"sub") is a
    assert root.lookup(b"small") is root.lookup(b"small")


def test_no_fid_leak_per_stat_or_dropped_lookup(ro):
    root = ro.fs.root()
    small = root.lookup(b"small")
    root.stat()
    base = fids_open(ro)
    ro.fs.cache = False
    try:
        for _ in range(200):
            small.stat()
    finally:
        ro.fs.cache = True
    assert fids_open(ro) == base
    d = root.lookup(b"dir")
    for name in [e.name for e in d.readdir()][:150]:
        d.lookup(name).stat()  # nothing keeps these inodes
    root.stat()  # the next request carries the deferred clunks first
    ro.fs.cache = False
    root.stat()
    ro.fs.cache = True
    assert fids_open(ro) <= base + 3


def test_statfs(ro, tree):
    sf = ro.fs.statfs()
    host = os.statvfs(tree)
    assert sf.type == p9.V9FS_MAGIC
    assert (sf.bsize, sf.blocks, sf.files, sf.namelen) == (host.f_bsize, host.f_blocks, host.f_files,
                                                           host.f_namemax)
    assert sf.flags & 1  # read-only


def test_vfs_walk_through_mount_tree(ro, tree):
    """The VFS core resolves symlinks itself, inside the sandbox's root."""
    mt = MountTree(ro.fs)
    ctx = PathContext(mt.root, mt.root, Creds())
    loc = mt.resolve(ctx, b"/dir/rel_link")
    assert loc.inode.stat().ino == os.stat(os.path.join(tree, "small")).st_ino
    loc = mt.resolve(ctx, b"/dir/sub/deeper/../../hardlink")
    assert loc.inode.stat().ino == os.stat(os.path.join(tree, "small")).st_ino
    with pytest.raises(FileNotFoundError):
        mt.resolve(ctx, b"/abs_link")  # /etc/passwd of the sandbox, not the host's


# --- read-only mode ----------------------------------------------------------

def test_read_only_refuses_every_change(tree):
    before = snapshot(tree)
    g = start_gofer(tree)
    try:
        root = g.fs.root()
        small, d = root.lookup(b"small"), root.lookup(b"dir")
        attempts = [
            lambda: root.create(b"new", S.S_IFREG | 0o644, 0, 0),
            lambda: root.mkdir(b"newdir", 0o755, 0, 0),
            lambda: root.symlink(b"newlink", b"small", 0, 0),
            lambda: root.mknod(b"newfifo", S.S_IFIFO | 0o644, 0, 0, 0),
            lambda: root.link(b"newhard", small),
            lambda: root.unlink(b"small"),
            lambda: root.rmdir(b"empty"),
            lambda: root.rename(b"small", d, b"moved"),
            lambda: small.setattr(mode=0o777),
            lambda: small.setattr(size=0),
            lambda: small.setattr(uid=1, gid=1),
            lambda: small.setattr(mtime_ns=0, atime_ns=0),
            lambda: small.open(os.O_WRONLY),
            lambda: small.open(os.O_RDWR),
        ]
        c = g.client
        fid, _ = c.walk(root.fid, [b"small"])
        fid2, _ = c.walk(root.fid, [b"small"])
        dfid, _ = c.walk(root.fid, [])
        attempts += [
            lambda: c.lopen(fid, os.O_RDONLY | os.O_TRUNC),
            lambda: c.lcreate(dfid, b"created", os.O_RDWR, 0o644, 0),
            lambda: c.rename(fid, dfid, b"renamed"),
            lambda: c.renameat(dfid, b"small", dfid, b"renamed"),
            lambda: c.remove(fid2),
        ]
        for attempt in attempts:
            with pytest.raises(OSError) as e:
                attempt()
            assert e.value.errno == errno.EROFS
        # a write through the donated fd fails too: it was opened O_RDONLY
        impl = small.open(os.O_RDONLY)
        with pytest.raises(OSError) as e:
            os.pwrite(impl.host_fd, b"x", 0)
        assert e.value.errno == errno.EBADF
        impl.release()
        c.lopen(fid, os.O_RDONLY)
        with pytest.raises(OSError) as e:
            c.write(fid, 0, b"x")
        assert e.value.errno == errno.EROFS
    finally:
        g.close()
    assert snapshot(tree) == before


# --- read-write mode ---------------------------------------------------------

def host_stat(root, *names):
    return os.lstat(os.path.join(root, *names))


def test_rw_changes_reach_the_host(rw):
    g, root = rw
    r = g.fs.root()
    f = r.create(b"new", S.S_IFREG | 0o640, 0, 0)
    assert S.S_IMODE(host_stat(root, "new").st_mode) == 0o640
    impl = f.open(os.O_RDWR)
    assert impl.host_fd is not None
    assert impl.pwrite(b"written by the sandbox", 0) == 22
    assert impl.pwrite(b"!", 100) == 1
    impl.release()
    with open(os.path.join(root, "new"), "rb") as fh:
        assert fh.read() == b"written by the sandbox" + bytes(78) + b"!"
    assert f.stat().size == 101 == host_stat(root, "new").st_size

    d = r.mkdir(b"made", 0o751, 0, 0)
    assert S.S_ISDIR(host_stat(root, "made").st_mode) and S.S_IMODE(host_stat(root, "made").st_mode) == 0o751
    assert d.stat().ino == host_stat(root, "made").st_ino
    r.symlink(b"ln", b"new", 0, 0)
    assert os.readlink(os.path.join(root, "ln")) == "new"
    r.mknod(b"pipe", S.S_IFIFO | 0o600, 0, 0, 0)
    assert S.S_ISFIFO(host_stat(root, "pipe").st_mode)
    with pytest.raises(OSError) as e:
        r.mknod(b"disk", S.S_IFBLK | 0o600, os.makedev(8, 0), 0, 0)
    assert e.value.errno == errno.EPERM
    d.link(b"hard", f)
    assert host_stat(root, "made", "hard").st_ino == host_stat(root, "new").st_ino
    assert f.stat().nlink == 2

    f.setattr(mode=0o600, uid=4321, gid=8765)
    hs = host_stat(root, "new")
    assert (S.S_IMODE(hs.st_mode), hs.st_uid, hs.st_gid) == (0o600, 4321, 8765)
    assert (f.stat().uid, f.stat().gid) == (4321, 8765)
    f.setattr(size=5)
    assert host_stat(root, "new").st_size == 5
    f.setattr(atime_ns=1_000_000_123, mtime_ns=2_000_000_456)
    hs = host_stat(root, "new")
    assert (hs.st_atime_ns, hs.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    assert f.stat().mtime_ns == 2_000_000_456
    r.lookup(b"pipe").setattr(mode=0o644, mtime_ns=3_000_000_000, atime_ns=3_000_000_000)
    assert S.S_IMODE(host_stat(root, "pipe").st_mode) == 0o644
    assert host_stat(root, "pipe").st_mtime_ns == 3_000_000_000

    r.rename(b"new", d, b"renamed")
    assert not os.path.exists(os.path.join(root, "new"))
    assert d.lookup(b"renamed") is f
    impl = f.open(os.O_RDONLY)  # the server followed the rename
    assert impl.pread(10, 0) == b"writt"
    impl.release()
    d.unlink(b"renamed")
    d.unlink(b"hard")
    r.unlink(b"ln")
    r.rmdir(b"made")
    assert sorted(os.listdir(root)) == ["d", "existing", "pipe"]
    assert sorted(e.name for e in r.readdir()) == [b"d", b"existing", b"pipe"]


def test_rw_errors_come_from_the_host(rw):
    g, root = rw
    r = g.fs.root()
    for action, code in [
        (lambda: r.create(b"existing", S.S_IFREG | 0o644, 0, 0), errno.EEXIST),
        (lambda: r.unlink(b"missing"), errno.ENOENT),
        (lambda: r.unlink(b"d"), errno.EISDIR),
        (lambda: r.rmdir(b"existing"), errno.ENOTDIR),
        (lambda: r.mkdir(b"existing", 0o755, 0, 0), errno.EEXIST),
        (lambda: r.lookup(b"existing").lookup(b"x"), errno.ENOTDIR),
    ]:
        with pytest.raises(OSError) as e:
            action()
        assert e.value.errno == code
    r.lookup(b"d").create(b"inner", S.S_IFREG | 0o644, 0, 0)
    with pytest.raises(OSError) as e:
        r.rmdir(b"d")
    assert e.value.errno == errno.ENOTEMPTY


def test_rw_9p_write_path_and_lcreate(rw):
    g, root = rw
    c = g.client
    rootfid = g.fs.root().fid
    fid, _ = c.walk(rootfid, [])
    qid, _, fd = c.lcreate(fid, b"made-by-lcreate", os.O_RDWR, 0o644, 0)
    assert fd is not None and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
    os.close(fd)
    assert qid.path == host_stat(root, "made-by-lcreate").st_ino
    data = os.urandom(3 * (1 << 20) + 7)
    off = 0
    while off < len(data):
        off += c.write(fid, off, data[off:])
    c.fsync(fid)
    c.fsync(fid, datasync=True)
    with open(os.path.join(root, "made-by-lcreate"), "rb") as fh:
        assert fh.read() == data
    c.clunk(fid)
    fid, _ = c.walk(rootfid, [b"existing"])
    c.remove(fid)
    assert not os.path.exists(os.path.join(root, "existing"))
    fid, _ = c.walk(rootfid, [b"made-by-lcreate"])
    dfid, _ = c.walk(rootfid, [b"d"])
    c.rename(fid, dfid, b"moved")
    assert os.path.exists(os.path.join(root, "d", "moved"))
    c.link(rootfid, fid, b"again")
    assert host_stat(root, "again").st_ino == host_stat(root, "d", "moved").st_ino
    c.setattr(fid, p9.SETATTR_SIZE, size=3)
    assert host_stat(root, "again").st_size == 3
    c.clunk(fid)
    c.clunk(dfid)


def test_statfs_rw_flag(rw):
    g, _ = rw
    assert g.fs.statfs().flags & 1 == 0


# --- the server process --------------------------------------------------------

def test_server_is_confined_and_reaped(tree):
    g = start_gofer(tree)
    pid = g.pid
    try:
        status = open(f"/proc/{pid}/status").read()
        assert "NoNewPrivs:\t1" in status
        cap_eff = int(status.split("CapEff:\t")[1].split()[0], 16)
        assert cap_eff & ~0b110 == 0  # at most DAC override / read-search
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert len([t for t in targets if t.startswith("socket:")]) == 1
        others = [t for t in targets if not t.startswith("socket:") and t != "/dev/null"]
        assert all(t.startswith(tree) for t in others), others
    finally:
        g.close()
    assert g.proc.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_bad_root_fails_without_leftovers(tmp_path):
    import psutil
    before = {p.pid for p in psutil.Process().children()}
    for root in [str(tmp_path / "missing"), "/proc", "/sys"]:
        with pytest.raises(OSError):
            start_gofer(root)
    assert {p.pid for p in psutil.Process().children()} == before


def test_server_answers_garbage_with_errors(tree):
    """Malformed requests get Rlerror on the same tag; the session goes on."""
    g = start_gofer(tree)
    try:
        c = g.client
        s = c.sock
        s.sendall(struct.pack("<IBHI", 11, 110, 42, 7))  # a Twalk cut short
        tag, reply = p9.decode(p9.read_message(s, 1 << 20))
        assert (tag, reply) == (42, p9.Rlerror(errno.EINVAL))
        s.sendall(struct.pack("<IBH", 7, 99, 43))  # unknown type
        assert p9.decode(p9.read_message(s, 1 << 20)) == (43, p9.Rlerror(errno.EOPNOTSUPP))
        s.sendall(p9.encode(44, p9.Rclunk()))  # a reply sent as a request
        assert p9.decode(p9.read_message(s, 1 << 20)) == (44, p9.Rlerror(errno.EOPNOTSUPP))
        for bad in [lambda: c.getattr(999), lambda: c.clunk(999), lambda: c.read(g.fs.root().fid, 0, 1),
                    lambda: c.attach(g.fs.root().fid), lambda: c.xattrwalk(g.fs.root().fid, 77, b"user.x")]:
            with pytest.raises(OSError):
                bad()
        assert S.S_ISDIR(g.fs.root().stat().mode)
        s.sendall(struct.pack("<I", 3))  # framing broken: the server hangs up
        assert s.recv(1) == b""
        assert g.proc.wait(5) == 0
    finally:
        g.close()


def test_version_renegotiation_resets_fids(tree):
    g = start_gofer(tree)
    try:
        c = g.client
        assert c.version(msize=8192) == (8192, p9.VERSION)
        with pytest.raises(OSError) as e:
            c.getattr(g.fs.root().fid)  # every fid went with the old session
        assert e.value.errno == errno.EBADF
        fid = c.new_fid()
        c.attach(fid)
        f2, _ = c.walk(fid, [b"large"])
        c.lopen(f2, os.O_RDONLY)
        assert len(c.read(f2, 0, 1 << 20)) == 8192 - p9.IOHDRSZ
        assert c.rpc(p9.Tversion(8192, b"9P2000.u")).version == b"unknown"
    finally:
        g.close()


def test_uncached_mode_sees_host_changes(tmp_path):
    (tmp_path / "f").write_bytes(b"one")
    g = start_gofer(str(tmp_path), cache=False)
    try:
        root = g.fs.root()
        f = root.lookup(b"f")
        assert f.stat().size == 3
        (tmp_path / "f").write_bytes(b"three")
        assert f.stat().size == 5
        assert root.lookup(b"f") is f  # same host file, same Inode
        os.unlink(tmp_path / "f")
        (tmp_path / "f").write_bytes(b"replaced!")
        g2 = root.lookup(b"f")
        assert g2 is not f and g2.stat().size == 9 and g2.stat().ino == os.stat(tmp_path / "f").st_ino
        (tmp_path / "new").write_bytes(b"")
        assert b"new" in {e.name for e in root.readdir()}
    finally:
        g.close()


def test_cached_mode_keeps_attributes_until_own_change(rw):
    g, root = rw
    r = g.fs.root()
    f = r.lookup(b"existing")
    assert f.stat().size == 10
    with open(os.path.join(root, "existing"), "ab") as fh:
        fh.write(b"behind our back")
    assert f.stat().size == 10  # exclusive cache: the host is assumed untouched
    f.setattr(size=4)
    assert f.stat().size == 4 == host_stat(root, "existing").st_size


def test_client_errors_keep_or_break_the_session_as_they_should(tree):
    g = start_gofer(tree)
    try:
        c, root = g.client, g.fs.root()
        with pytest.raises(OSError) as e:
            c.walk(root.fid, [b"x" * 70000])  # cannot even be encoded
        assert e.value.errno == errno.EINVAL
        assert S.S_ISDIR(c.getattr(root.fid).mode)  # the session is intact
        g.proc.kill()
        g.proc.wait()
        for _ in range(2):
            with pytest.raises(OSError) as e:
                c.getattr(root.fid)
            assert e.value.errno == errno.EIO
    finally:
        g.close()


def test_gofer_dies_with_its_parent(tree):
    """Even a parent that never calls close() leaves no gofer behind."""
    import subprocess
    import sys
    import time
    code = ("import os, sys; sys.path.insert(0, %r); from vfs.gofer import start_gofer; "
            "g = start_gofer(%r); print(g.pid, flush=True); os.kill(os.getpid(), 9)"
            % (os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), tree))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).stdout
    pid = int(out.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    os.kill(pid, 9)
    pytest.fail("the gofer outlived its parent")
