"""A small sandbox for testing the synthetic filesystems without a sentry:
a root filesystem (TmpFS when it exists, else the tiny MiniFS below), /proc
over an in-test ProcSource of plain dataclasses, /dev and /sys."""
from __future__ import annotations

import errno
import stat as S
from dataclasses import dataclass, field

from vfs import ops
from vfs.dev import DevFS
from vfs.file import O_RDONLY
from vfs.inode import DirEntry, FileDescriptionImpl, Filesystem, Inode, Stat, dtype_of, fserr
from vfs.path import MS_NODEV, MS_NOEXEC, MS_NOSUID, Creds, Location, MountTree, PathContext
from vfs.proc import ProcFS
from vfs.sysfs import SysFS


# --- a root filesystem -----------------------------------------------------

class MiniFS(Filesystem):
    """Directories, regular files and device nodes in memory; just enough
    to mount on and to point fds at."""
    name = "minifs"

    def __init__(self):
        super().__init__()
        self._root = MiniInode(self, S.S_IFDIR | 0o755)

    def root(self):
        return self._root


class _MiniFileImpl(FileDescriptionImpl):
    def __init__(self, inode):
        self.inode = inode

    def pread(self, size, offset):
        return bytes(self.inode.data[offset:offset + size])

    def pwrite(self, data, offset):
        self.inode.data[offset:offset + len(data)] = data
        return len(data)

    def size(self):
        return len(self.inode.data)


class MiniInode(Inode):
    def __init__(self, fs, mode, rdev=0, uid=0, gid=0):
        self.fs = fs
        self.ino = fs.next_ino()
        self._mode, self.rdev, self.uid, self.gid = mode, rdev, uid, gid
        self.children: dict[bytes, MiniInode] = {}
        self.data = bytearray()

    def stat(self):
        return Stat(mode=self._mode, ino=self.ino, dev=self.fs.dev, rdev=self.rdev,
                    uid=self.uid, gid=self.gid, size=len(self.data))

    def lookup(self, name):
        if name not in self.children:
            raise fserr(errno.ENOENT, name)
        return self.children[name]

    def readdir(self):
        return [DirEntry(n, i.ino, dtype_of(i._mode)) for n, i in self.children.items()]

    def _add(self, name, inode):
        if name in self.children:
            raise fserr(errno.EEXIST)
        self.children[name] = inode
        return inode

    def create(self, name, mode, uid, gid):
        return self._add(name, MiniInode(self.fs, mode, uid=uid, gid=gid))

    def mkdir(self, name, mode, uid, gid):
        return self._add(name, MiniInode(self.fs, mode, uid=uid, gid=gid))

    def mknod(self, name, mode, rdev, uid, gid):
        return self._add(name, MiniInode(self.fs, mode, rdev, uid, gid))

    def open(self, flags):
        if S.S_ISREG(self._mode):
            return _MiniFileImpl(self)
        raise fserr(errno.ENXIO)


def root_filesystem() -> Filesystem:
    try:
        from vfs.tmpfs import TmpFS
    except ImportError:
        return MiniFS()
    return TmpFS()


# --- the kernel side of procfs -------------------------------------------

@dataclass
class FakeFd:
    link: bytes
    location: Location | None
    flags: int
    pos: int


@dataclass
class FakeTask:
    world: "World"
    tgid: int
    tid: int
    ppid: int = 1
    pgid: int = 0
    sid: int = 0
    comm: bytes = b"prog"
    state: str = "S"
    uid: int = 0
    gid: int = 0
    argv: list = field(default_factory=lambda: [b"/bin/prog", b"-x"])
    envp: list = field(default_factory=lambda: [b"HOME=/home/user", b"PATH=/bin"])
    exe_loc: Location | None = None
    cwd_loc: Location | None = None
    root_loc: Location | None = None
    fdmap: dict = field(default_factory=dict)
    maps_text: bytes = b""
    start_ns: int = 0

    def threads(self):
        return sorted(t.tid for t in self.world.source.tasks.values() if t.tgid == self.tgid)

    def cmdline(self):
        return b"".join(a + b"\0" for a in self.argv)

    def environ(self):
        return b"".join(e + b"\0" for e in self.envp)

    def exe(self):
        return self.exe_loc

    def cwd(self):
        return self.cwd_loc

    def root(self):
        return self.root_loc

    def fds(self):
        return dict(self.fdmap)

    def maps(self):
        return self.maps_text

    def vm_size_kb(self):
        return sum(int(l.split()[0].split(b"-")[1], 16) - int(l.split()[0].split(b"-")[0], 16)
                   for l in self.maps_text.splitlines()) // 1024

    def vm_rss_kb(self):
        return self.vm_size_kb() // 2

    def start_time_ns(self):
        return self.start_ns

    def signal_masks(self):
        return (0, 0, 1 << 1, 1 << 12, 1 << 14)  # blocked SIGINT, ignored SIGPIPE, caught SIGALRM

    def path_of(self, loc):
        return self.world.tree.path_of(loc, self.root_loc)


class FakeSource:
    def __init__(self, world):
        self.world = world
        self.tasks: dict[int, FakeTask] = {}
        self.current_tid: int | None = None
        self.boot_ns = 1_000_000_000
        self.cpus = 2

    def current(self):
        return self.tasks.get(self.current_tid)

    def tgids(self):
        return sorted({t.tgid for t in self.tasks.values()})

    def task(self, pid):
        t = self.tasks.get(pid)
        if t is None:  # a tgid whose leader is gone: any live thread
            t = next((x for x in self.tasks.values() if x.tgid == pid), None)
        return t

    def mounts(self):
        tree = self.world.tree
        return [(m.source.encode(), tree.mount_path_of(m), m.fs.name.encode(),
                 b"ro" if m.readonly else b"rw") for m in tree.mounts]

    def uname(self):
        return (b"Linux", b"sandbox-host", b"6.1.0-pyrunsc", b"#1 SMP PREEMPT_DYNAMIC pyrunsc", b"x86_64")

    def boot_time_ns(self):
        return self.boot_ns

    def ncpus(self):
        return self.cpus

    def mem_total_kb(self):
        return 2048000

    def mem_free_kb(self):
        return 1024000


# A process's maps in Linux's format (the sentry produces the real ones).
SAMPLE_MAPS = (
    b"555555554000-555555556000 r--p 00000000 00:05 12                         /bin/prog\n"
    b"555555556000-55555555a000 r-xp 00002000 00:05 12                         /bin/prog\n"
    b"55555555a000-55555555c000 rw-p 00006000 00:05 12                         /bin/prog\n"
    b"55555555c000-55555557d000 rw-p 00000000 00:00 0                          [heap]\n"
    b"7ffff7dd0000-7ffff7df0000 r-xp 00000000 00:05 13                         /lib/libc.so.6\n"
    b"7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]\n"
)


class World:
    """/ (root fs) with /etc/hosts, /bin/prog, /home/user; /proc, /dev, /sys.
    Thread group 100 = {100, 101}, thread group 200 = {200}; 100 is current."""

    def __init__(self, ncpus: int = 2):
        self.tree = MountTree(root_filesystem())
        self.root_ctx = PathContext(self.tree.root, self.tree.root, Creds())
        for d in (b"/etc", b"/bin", b"/home", b"/home/user"):
            ops.mkdir(self.tree, self.root_ctx, d, 0o755, 0)
        for path, data in ((b"/etc/hosts", b"127.0.0.1 localhost\n"), (b"/bin/prog", b"\x7fELF")):
            f = ops.open_path(self.tree, self.root_ctx, path, 0o102, 0o755, 0)  # O_CREAT|O_RDWR
            f.write(data)
        self.source = FakeSource(self)
        self.procfs = ProcFS(self.source)
        self.devfs = DevFS()
        self.sysfs = SysFS(ncpus)
        self.tree.mount_path(b"/proc", self.procfs, MS_NOSUID | MS_NODEV | MS_NOEXEC, "proc")
        self.tree.mount_path(b"/dev", self.devfs, MS_NOSUID, "devtmpfs")
        self.tree.mount_path(b"/sys", self.sysfs, MS_NOSUID | MS_NODEV | MS_NOEXEC | 1, "sysfs")

        root = self.tree.root
        hosts = self.loc(b"/etc/hosts")
        fds = {
            0: FakeFd(b"/etc/hosts", hosts, O_RDONLY, 0),
            1: FakeFd(b"pipe:[7]", None, 1, 0),
            2: FakeFd(b"pipe:[7]", None, 1, 0),
            3: FakeFd(b"/etc/hosts", hosts, 0o2000002, 5),  # O_RDWR|O_CLOEXEC, at offset 5
        }
        common = dict(exe_loc=self.loc(b"/bin/prog"), cwd_loc=self.loc(b"/home/user"),
                      root_loc=root, maps_text=SAMPLE_MAPS)
        self.add(FakeTask(self, 100, 100, ppid=1, pgid=100, sid=100, fdmap=fds,
                          start_ns=self.source.boot_ns + 2_500_000_000, **common))
        self.add(FakeTask(self, 100, 101, ppid=1, pgid=100, sid=100, comm=b"worker", fdmap=fds,
                          **common))
        self.add(FakeTask(self, 200, 200, ppid=100, pgid=100, sid=100, comm=b"child", uid=1000,
                          gid=1000, fdmap={0: FakeFd(b"/etc/hosts", hosts, 0, 0)}, **common))
        self.source.current_tid = 100

    def add(self, task: FakeTask) -> FakeTask:
        self.source.tasks[task.tid] = task
        return task

    def ctx(self, uid: int = 0, root: Location | None = None) -> PathContext:
        root = root or self.tree.root
        return PathContext(root, root, Creds(uid=uid, gid=uid))

    def loc(self, path: bytes, **kw) -> Location:
        return self.tree.resolve(self.root_ctx, path, **kw)

    def open(self, path: bytes, flags: int = O_RDONLY, ctx: PathContext | None = None):
        return ops.open_path(self.tree, ctx or self.root_ctx, path, flags, 0o644, 0o022)

    def read(self, path: bytes, ctx: PathContext | None = None) -> bytes:
        f = self.open(path, ctx=ctx)
        out = b""
        while True:
            chunk = f.read(4096)
            if not chunk:
                return out
            out += chunk

    def readlink(self, path: bytes) -> bytes:
        return self.loc(path, follow=False).inode.readlink()

    def listdir(self, path: bytes) -> list[bytes]:
        return [e.name for e in self.loc(path).inode.readdir()]
