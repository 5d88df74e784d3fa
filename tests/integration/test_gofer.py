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

def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID = 0, 1, 2, 3, 4


@pytest.mark.parametrize("rw", [False, True], ids=["ro", "rw"])
def test_server_is_confined_and_reaped(tree, tmp_path, rw):
    export = str(tmp_path) if rw else tree
    g = start_gofer(export, rw=rw)
    pid = g.pid
    try:
        status = proc_status(pid)
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == "2" and status["Seccomp_filters"] == "1"
        want = {CAP_DAC_READ_SEARCH} | ({CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_FOWNER, CAP_FSETID} if rw else set())
        mask = sum(1 << c for c in want)
        for kind in ("CapEff", "CapPrm", "CapBnd"):
            assert int(status[kind], 16) == mask, kind
        assert int(status["CapInh"], 16) == int(status["CapAmb"], 16) == 0
        for ns in ("net", "mnt"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        # its root is the export: nothing else is there to name
        assert os.stat(f"/proc/{pid}/root").st_ino == os.stat(export).st_ino
        assert sorted(os.listdir(f"/proc/{pid}/root")) == sorted(os.listdir(export))
        assert os.stat(f"/proc/{pid}/root/..").st_ino == os.stat(export).st_ino
        mounts = [line.split() for line in open(f"/proc/{pid}/mountinfo")]
        assert mounts and all(m[4] == "/" or m[4].startswith("/") for m in mounts)
        for m in mounts:
            opts = m[5].split(",")
            assert {"nosuid", "nodev", "noexec"} <= set(opts), m
            assert ("ro" in opts) == (not rw), m
            assert m[m.index("-") + 1] not in ("proc", "sysfs", "cgroup", "cgroup2", "devpts"), m
        targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert len([t for t in targets if t.startswith("socket:")]) == 1
        assert sorted(t for t in targets if not t.startswith("socket:")) == ["/", "/dev/null", "/dev/null",
                                                                              "/dev/null"]
    finally:
        g.close()
    assert g.proc.returncode == 0  # a clean exit under the filter
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_gofer_of_the_host_root_detaches_pseudo_filesystems():
    """The sandbox's default export is the host's /: the gofer's copy of it
    has no /proc, /sys or /dev/pts mounted, and walks there still fail
    (EACCES, shown as placeholders by the sandbox's VFS)."""
    g = start_gofer("/")
    try:
        types = {line.split(" - ")[1].split()[0] for line in open(f"/proc/{g.pid}/mountinfo")}
        assert not types & {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue"}, types
        assert os.listdir(f"/proc/{g.pid}/root/proc") == []
        root = g.fs.root()
        for name in (b"proc", b"sys"):
            with pytest.raises(OSError) as e:
                root.lookup(name)
            assert e.value.errno == errno.EACCES
        etc = root.lookup(b"etc")
        impl = etc.lookup(b"passwd").open(os.O_RDONLY)
        with open("/etc/passwd", "rb") as f:
            assert impl.pread(1 << 16, 0) == f.read()
        impl.release()
        if os.path.exists("/dev/null"):
            null = root.lookup(b"dev").lookup(b"null")
            assert S.S_ISCHR(null.stat().mode)
            with pytest.raises(OSError) as e:
                null.open(os.O_RDONLY)
            assert e.value.errno == errno.EACCES
    finally:
        g.close()
    assert g.proc.returncode == 0


SECCOMP_PROBE = """
import os, resource, socket, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS would dump core
sys.path.insert(0, {root!r})
from vfs.gofer import confine, hostcalls
hostcalls.prctl(hostcalls.PR_SET_NO_NEW_PRIVS, 1)
fd = os.open({path!r}, os.O_RDONLY)
confine.install_filter()
os.write(1, os.pread(fd, 5, 0))  # allowed calls still work
{forbidden}
os.write(1, b"survived")
"""


@pytest.mark.parametrize("forbidden", [
    "os.fork()", "socket.socket()", "os.execv('/bin/true', ['true'])", "os.kill(os.getppid(), 0)",
    "os.chroot('/')", "hostcalls.unshare(hostcalls.CLONE_NEWNS)", "os.setuid(0)",
    "hostcalls.mount(None, '/', None, hostcalls.MS_REC | hostcalls.MS_PRIVATE)",
])
def test_seccomp_filter_kills_on_calls_serving_never_makes(tree, forbidden):
    import subprocess
    import sys
    code = SECCOMP_PROBE.format(root=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                path=os.path.join(tree, "small"), forbidden=forbidden)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert r.stdout == b"hello"
    assert r.returncode == -31  # SIGSYS: killed by the filter


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


# --- extended attributes ---------------------------------------------------------

def test_xattrs_round_trip_with_the_host(rw):
    g, root = rw
    r = g.fs.root()
    f = r.lookup(b"existing")
    path = os.path.join(root, "existing")
    assert f.listxattr() == []
    f.setxattr(b"user.one", b"1")
    f.setxattr(b"user.big", bytes(range(256)) * 14)  # ext4 holds up to a block
    assert os.getxattr(path, "user.one") == b"1"
    assert os.getxattr(path, "user.big") == bytes(range(256)) * 14
    os.setxattr(path, "user.host", b"from the host")
    assert sorted(f.listxattr()) == sorted(os.fsencode(n) for n in os.listxattr(path)) == [
        b"user.big", b"user.host", b"user.one"]
    assert f.getxattr(b"user.host") == b"from the host"
    assert f.getxattr(b"user.big") == bytes(range(256)) * 14
    for action, code in [
        (lambda: f.getxattr(b"user.missing"), errno.ENODATA),
        (lambda: f.setxattr(b"user.one", b"x", os.XATTR_CREATE), errno.EEXIST),
        (lambda: f.setxattr(b"user.new", b"x", os.XATTR_REPLACE), errno.ENODATA),
        (lambda: f.removexattr(b"user.missing"), errno.ENODATA),
        (lambda: f.setxattr(b"user.huge", b"x" * (65536 + 1)), errno.E2BIG),
        (lambda: f.setxattr(b"user." + b"n" * 300, b"x"), errno.ERANGE),
        (lambda: f.getxattr(b"trusted.x"), errno.EOPNOTSUPP),
        (lambda: f.setxattr(b"security.capability", b"x"), errno.EOPNOTSUPP),
        (lambda: f.setxattr(b"user.", b"x"), errno.EOPNOTSUPP),
    ]:
        with pytest.raises(OSError) as e:
            action()
        assert e.value.errno == code
    f.setxattr(b"user.one", b"replaced", os.XATTR_REPLACE)
    assert os.getxattr(path, "user.one") == b"replaced"
    ctime = f.stat().ctime_ns
    f.removexattr(b"user.one")
    assert "user.one" not in os.listxattr(path)
    assert f.stat().ctime_ns >= ctime  # the cached attributes were dropped
    d = r.lookup(b"d")
    d.setxattr(b"user.dir", b"on a directory")
    assert os.getxattr(os.path.join(root, "d"), "user.dir") == b"on a directory"
    assert d.listxattr() == [b"user.dir"]
    # Linux keeps user.* off symlinks and special files: so does the gofer
    r.symlink(b"ln", b"existing", 0, 0)
    r.mknod(b"fifo", S.S_IFIFO | 0o644, 0, 0, 0)
    for name in (b"ln", b"fifo"):
        special = r.lookup(name)
        assert special.listxattr() == []
        with pytest.raises(OSError) as e:
            special.getxattr(b"user.x")
        assert e.value.errno == errno.ENODATA
        with pytest.raises(OSError) as e:
            special.setxattr(b"user.x", b"y")
        assert e.value.errno == errno.EPERM


def test_xattrs_on_a_read_only_export(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    os.setxattr(tmp_path / "f", "user.ro", b"kept")
    os.setxattr(tmp_path / "f", "trusted.hidden", b"root only")
    g = start_gofer(str(tmp_path))
    try:
        f = g.fs.root().lookup(b"f")
        assert f.listxattr() == [b"user.ro"]  # other namespaces are never shown
        assert f.getxattr(b"user.ro") == b"kept"
        for action in (lambda: f.setxattr(b"user.ro", b"changed"), lambda: f.removexattr(b"user.ro")):
            with pytest.raises(OSError) as e:
                action()
            assert e.value.errno == errno.EROFS
        c = g.client  # the server refuses as well, not only the client
        fid, _ = c.walk(g.fs.root().fid, [b"f"])
        with pytest.raises(OSError) as e:
            c.rpc(p9.Txattrcreate(fid, b"user.ro", 3, 0))
        assert e.value.errno == errno.EROFS
        with pytest.raises(OSError) as e:
            c.xattr_get(fid, b"trusted.hidden")
        assert e.value.errno == errno.EOPNOTSUPP
        c.clunk(fid)
    finally:
        g.close()
    assert os.getxattr(tmp_path / "f", "user.ro") == b"kept"


def test_xattr_protocol_details(rw):
    """Txattrcreate's size is a promise: a short value fails at Tclunk and
    stores nothing; writes past it fail; size 0 removes; Tread on an
    xattrwalk fid honours offsets and msize."""
    g, root = rw
    c = g.client
    path = os.path.join(root, "existing")
    fid, _ = c.walk(g.fs.root().fid, [b"existing"])
    x, _ = c.walk(fid, [])
    c.rpc(p9.Txattrcreate(x, b"user.partial", 10, 0))
    assert c.write(x, 0, b"12345") == 5
    with pytest.raises(OSError) as e:
        c.write(x, 7, b"x")  # not where the value continues
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        c.clunk(x)
    assert e.value.errno == errno.EINVAL
    assert "user.partial" not in os.listxattr(path)
    x, _ = c.walk(fid, [])
    c.rpc(p9.Txattrcreate(x, b"user.exact", 3, 0))
    assert c.write(x, 0, b"abcdef") == 3  # clamped to the announced size
    with pytest.raises(OSError) as e:
        c.write(x, 3, b"g")
    assert e.value.errno == errno.ENOSPC
    c.clunk(x)
    assert os.getxattr(path, "user.exact") == b"abc"
    x, _ = c.walk(fid, [])
    with pytest.raises(OSError) as e:
        c.rpc(p9.Txattrcreate(x, b"user.exact", 0, 0xF0))  # unknown flags
    assert e.value.errno == errno.EINVAL
    c.rpc(p9.Txattrcreate(x, b"user.exact", 0, 0))
    c.clunk(x)
    assert "user.exact" not in os.listxattr(path)
    os.setxattr(path, "user.long", b"L" * 3500)  # ext4 holds up to a block
    c.version(msize=1024)  # a new session: fids are gone
    rootfid = c.new_fid()
    c.attach(rootfid)
    fid, _ = c.walk(rootfid, [b"existing"])
    x = c.new_fid()
    assert c.xattrwalk(fid, x, b"user.long") == 3500
    assert c.read(x, 3490, 100) == b"L" * 10
    assert len(c.read(x, 0, 3500)) == 1024 - p9.IOHDRSZ
    c.clunk(x)
    assert c.xattr_get(fid, b"user.long") == b"L" * 3500  # several Treads
    os.removexattr(path, "user.long")  # room for the next (one block for all of them)
    c.xattr_set(fid, b"user.long2", b"M" * 3000)  # several Twrites
    assert os.getxattr(path, "user.long2") == b"M" * 3000
    x = c.new_fid()
    c.xattrwalk(fid, x, b"")
    assert c.read(x, 0, 100).split(b"\0")[:-1] == [os.fsencode(n) for n in os.listxattr(path)]
    with pytest.raises(OSError):
        c.write(x, 0, b"not writable")  # a walk fid reads only
    for misuse in (lambda: c.lopen(x, os.O_RDONLY), lambda: c.walk(x, [], 901),
                   lambda: c.xattrwalk(x, 902, b"")):
        with pytest.raises(OSError) as e:
            misuse()
        assert e.value.errno == errno.EINVAL
    c.clunk(x)


# --- locks -------------------------------------------------------------------------

def opened(c, rootfid, name, flags):
    fid, _ = c.walk(rootfid, [name])
    _, _, fd = c.lopen(fid, flags)
    if fd is not None:
        os.close(fd)
    return fid


def test_locks_conflict_per_open_fid_and_never_block(rw):
    import time
    g, root = rw
    c = g.client
    rootfid = g.fs.root().fid
    a = opened(c, rootfid, b"existing", os.O_RDWR)
    b = opened(c, rootfid, b"existing", os.O_RDWR)
    W, R, U = p9.LOCK_TYPE_WRLCK, p9.LOCK_TYPE_RDLCK, p9.LOCK_TYPE_UNLCK
    assert c.lock(a, W, 0, 5, proc_id=1, client_id=b"guest") == p9.LOCK_SUCCESS
    assert c.lock(b, W, 5, 0, proc_id=2) == p9.LOCK_SUCCESS  # disjoint: bytes 5 to the end
    assert c.lock(b, R, 4, 2, proc_id=2) == p9.LOCK_BLOCKED
    started = time.monotonic()
    assert c.lock(b, W, 0, 1, flags=p9.LOCK_FLAGS_BLOCK) == p9.LOCK_BLOCKED  # answered at once
    assert time.monotonic() - started < 5
    got = c.getlock(b, R, 0, 0, proc_id=2, client_id=b"guest")
    assert (got.type, got.start, got.length, got.proc_id) == (W, 0, 5, 0xFFFFFFFF)
    free = c.getlock(a, W, 0, 5, proc_id=1, client_id=b"guest")  # its own lock: no conflict
    assert (free.type, free.start, free.length, free.client_id) == (U, 0, 5, b"guest")
    # a host process's lock on the same file meets the gofer's
    path = os.path.join(root, "existing")
    with open(path, "r+b") as fh:
        with pytest.raises(OSError):
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 2)
        assert c.lock(a, U, 0, 5) == p9.LOCK_SUCCESS
        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 2)
        assert c.lock(b, R, 2, 1) == p9.LOCK_BLOCKED
        fcntl.lockf(fh, fcntl.LOCK_UN, 1, 2)
    assert c.lock(b, R, 2, 1) == p9.LOCK_SUCCESS
    c.clunk(b)  # closing the fid drops its locks
    assert c.lock(a, W, 0, 0) == p9.LOCK_SUCCESS
    for bad in [lambda: c.lock(a, 7), lambda: c.lock(a, W, 1 << 63), lambda: c.lock(a, W, flags=0x10),
                lambda: c.getlock(a, U)]:
        with pytest.raises(OSError) as e:
            bad()
        assert e.value.errno == errno.EINVAL
    unopened, _ = c.walk(rootfid, [b"existing"])
    with pytest.raises(OSError) as e:
        c.lock(unopened, R)
    assert e.value.errno == errno.EBADF
    c.clunk(unopened)
    c.clunk(a)


def test_locks_on_a_read_only_export(ro):
    c = ro.client
    fid = opened(c, ro.fs.root().fid, b"small", os.O_RDONLY)
    assert c.lock(fid, p9.LOCK_TYPE_RDLCK) == p9.LOCK_SUCCESS
    with pytest.raises(OSError) as e:
        c.lock(fid, p9.LOCK_TYPE_WRLCK)  # the file is open read-only
    assert e.value.errno == errno.EBADF
    assert c.lock(fid, p9.LOCK_TYPE_UNLCK) == p9.LOCK_SUCCESS
    c.clunk(fid)


# --- msize and flush -------------------------------------------------------------

def test_small_msize_splits_writes_reads_and_listings(rw):
    g, root = rw
    c = g.client
    assert c.version(msize=4096) == (4096, p9.VERSION)
    rootfid = c.new_fid()
    c.attach(rootfid)
    fid = opened(c, rootfid, b"existing", os.O_RDWR)
    data = os.urandom(50_000)
    assert c.write(fid, 0, data) == 4096 - p9.IOHDRSZ
    with pytest.raises(OSError):  # a Twrite above msize cannot even be framed
        c.rpc(p9.Twrite(fid, 0, data[:5000]))
    assert c.broken  # the server hung up on it


def test_large_io_through_the_filesystem_with_small_msize(rw):
    g, root = rw
    g.client.version(msize=8192)
    from vfs.gofer.fs import GoferFilesystem
    fs = GoferFilesystem(g.client, rw=True)
    f = fs.root().lookup(b"existing")
    fid, _ = g.client.walk(f.fid, [])
    _, _, fd = g.client.lopen(fid, os.O_RDWR)
    os.close(fd)
    impl = GoferFileImpl(f, fid, None)  # the 9P path, as with a server that donates no fd
    data = os.urandom(100_000)
    assert impl.pwrite(data, 3) == len(data)
    assert impl.pread(200_000, 0) == b"012" + data
    impl.release()
    d = fs.root().lookup(b"d")
    for i in range(200):
        d.create(b"entry-%03d-" % i + b"x" * 60, S.S_IFREG | 0o644, 0, 0)
    assert sorted(e.name for e in d.readdir()) == sorted(os.fsencode(n) for n in os.listdir(os.path.join(root, "d")))


def test_flush_cancels_a_request_still_queued(ro):
    """Requests sent together reach the server as one batch; a Tflush in
    it cancels the earlier request it names, which is never answered."""
    c = ro.client
    s = c.sock
    rootfid = ro.fs.root().fid
    batch = [p9.encode(1, p9.Tgetattr(rootfid, p9.GETATTR_BASIC)),
             p9.encode(2, p9.Twalk(rootfid, 900, (b"small",))),
             p9.encode(3, p9.Tflush(2)),
             p9.encode(4, p9.Tflush(77)),  # nothing pending with that tag
             p9.encode(5, p9.Tgetattr(900, p9.GETATTR_BASIC))]  # fid 900 never made
    s.sendall(b"".join(batch))
    replies = [p9.decode(p9.read_message(s, 1 << 20)) for _ in range(4)]
    assert [t for t, _ in replies] == [1, 3, 4, 5]
    assert isinstance(replies[0][1], p9.Rgetattr)
    assert replies[1][1] == p9.Rflush() and replies[2][1] == p9.Rflush()
    assert replies[3][1] == p9.Rlerror(errno.EBADF)  # the walk never ran
    s.sendall(p9.encode(6, p9.Tflush(1)))  # already answered: just Rflush
    assert p9.decode(p9.read_message(s, 1 << 20)) == (6, p9.Rflush())
    assert S.S_ISDIR(c.getattr(rootfid).mode)


def test_reading_again_reuses_the_donated_fd(tree):
    """A second read-only open of a file costs no round trip (a dup of the
    fd kept from the first), at most OPEN_FD_CACHE fds are kept, none
    leaks, and once the gofer is gone even a cached file gives EIO."""
    from vfs.gofer.fs import OPEN_FD_CACHE
    g = start_gofer(tree)
    try:
        c, root = g.client, g.fs.root()
        small = root.lookup(b"small")
        first = small.open(os.O_RDONLY)
        tag = c._tag
        second = small.open(os.O_RDONLY)
        assert c._tag == tag  # no request went out
        assert second.host_fd != first.host_fd
        assert os.fstat(second.host_fd).st_ino == os.fstat(first.host_fd).st_ino
        first.release()
        assert second.pread(100, 0) == b"hello gofer\n"
        second.release()
        writer_tag = c._tag
        with pytest.raises(OSError):
            small.open(os.O_RDWR)  # not for writing: that asks the (read-only) gofer
        assert c._tag != writer_tag
        before = len(os.listdir("/proc/self/fd"))
        d = root.lookup(b"dir")
        names = [e.name for e in d.readdir() if e.name.startswith(b"many-")]
        for _ in range(2):
            for name in names:
                d.lookup(name).open(os.O_RDONLY).release()
        assert len(g.fs._read_fds) == OPEN_FD_CACHE
        assert len(os.listdir("/proc/self/fd")) <= before + OPEN_FD_CACHE
        g.proc.kill()
        g.proc.wait()
        with pytest.raises(OSError):
            root.lookup(b"zero").stat()  # the first request notices
        for name in (b"small", names[-1]):  # evicted, still cached
            inode = root.lookup(name) if name == b"small" else d.lookup(name)
            with pytest.raises(OSError) as e:
                inode.open(os.O_RDONLY)
            assert e.value.errno == errno.EIO
        assert not g.fs._read_fds
    finally:
        g.close()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_unprivileged_gofer_confines_itself_in_a_user_namespace():
    """Started by a user without capabilities (nobody here), the gofer
    builds the same confinement inside a user namespace of its own."""
    import subprocess
    from vfs.gofer import server_command, server_env
    from vfs.gofer.client import GoferClient
    from vfs.gofer.fs import GoferFilesystem
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK) or open("/proc/sys/user/max_user_namespaces").read().strip() == "0":
        pytest.skip("no system python or no user namespaces")
    import pathlib
    import shutil
    import tempfile
    base = tempfile.mkdtemp(prefix="gofer-nobody-", dir="/var/tmp")  # pytest's tmp is root-only
    os.chmod(base, 0o755)
    export = pathlib.Path(base) / "export"
    export.mkdir()
    (export / "f").write_bytes(b"readable\n")

    def become_nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    ours, theirs = socket.socketpair()
    argv = [python] + server_command(theirs.fileno(), str(export), False)[1:]
    proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()], env=server_env(), preexec_fn=become_nobody, cwd="/",
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    theirs.close()
    try:
        c = GoferClient(ours)
        c.version()
        root = GoferFilesystem(c).root()
        impl = root.lookup(b"f").open(os.O_RDONLY)
        assert impl.pread(100, 0) == b"readable\n"
        impl.release()
        status = proc_status(proc.pid)
        assert status["Uid"].split()[0] == "65534"
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
        for ns in ("user", "mnt", "net"):
            assert os.readlink(f"/proc/{proc.pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        assert os.listdir(f"/proc/{proc.pid}/root") == ["f"]
    finally:
        ours.close()
        try:
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            shutil.rmtree(base)
