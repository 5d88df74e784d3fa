"""/proc, synthesized from the kernel's state.

procfs never imports the sentry: the kernel hands ProcFS a ProcSource
(below), and every file is generated from it when opened. Nothing is read
from the host's /proc.

Dentries are cached by the VFS core, so no inode here holds a task: each
one holds the pid numbers from its path (TaskRef) and looks the task up on
every use. A pid that exited gives ENOENT at once; a reused pid shows the
new task, as Linux's revalidation would.
"""
from __future__ import annotations

import errno
import functools
import os
import stat as S
import time
from collections.abc import Callable
from dataclasses import dataclass

from .file import O_ACCMODE, O_RDWR, O_WRONLY
from .inode import DT_DIR, DT_LNK, DT_REG, DirEntry, FileDescriptionImpl, fserr
from .locks import LOCKS
from .path import Location
from .synthetic import (SnapshotImpl, StaticDir, Symlink, SyntheticFS,
                        SyntheticInode, constant, refuse_write_open)

PROC_SUPER_MAGIC = 0x9FA0
USER_HZ = 100  # clock ticks in /proc/[pid]/stat and /proc/stat


# --------------------------------------------------------------------------
# What the kernel provides (interfaces as documentation: nothing checks
# them, and typing.Protocol would cost a sandbox's start 3 ms)
# --------------------------------------------------------------------------

class ProcFd:
    """One open fd of a task."""
    link: bytes                 # readlink text: a path, b"pipe:[N]", b"socket:[N]", b"anon_inode:[eventfd]"
    location: Location | None   # where the magic link jumps; None for pipes, sockets, anon inodes
    flags: int                  # the description's O_* status flags (fdinfo shows them in octal)
    pos: int                    # the description's file offset


class ProcTask:
    """One task (thread) as /proc shows it. Thread-group-wide things (fds,
    maps, cwd, cmdline, ...) are answered for the task's thread group."""
    tgid: int
    tid: int
    ppid: int
    pgid: int
    sid: int
    comm: bytes                 # at most 15 bytes, no newline
    state: str                  # one letter: "R", "S", "D", "T", "t", "Z", "X"
    uid: int
    gid: int
    # Optional (a view without them shows uid/gid four times and root's sets):
    # uids, gids: (real, effective, saved, fs); caps: (inheritable,
    # permitted, effective, bounding, ambient); no_new_privs: 0 or 1.

    def threads(self) -> list[int]:
        """tids of the thread group, ascending."""

    def cmdline(self) -> bytes:
        """argv, each NUL-terminated."""

    def environ(self) -> bytes:
        """envp, each NUL-terminated."""

    def exe(self) -> Location | None:
        """The executable (None once the task has no mm, e.g. a zombie)."""

    def cwd(self) -> Location: ...

    def root(self) -> Location: ...

    def fds(self) -> dict[int, ProcFd]: ...

    def maps(self) -> bytes:
        """The whole /proc/[pid]/maps text."""

    def vm_size_kb(self) -> int: ...

    def vm_rss_kb(self) -> int: ...

    def signal_masks(self) -> tuple[int, int, int, int, int]:
        """(thread pending, process pending, blocked, ignored, caught)."""
        ...

    def start_time_ns(self) -> int:
        """CLOCK_MONOTONIC ns when the task started (same clock as
        ProcSource.boot_time_ns)."""

    def path_of(self, loc: Location) -> bytes:
        """Absolute path of loc as this task sees it (for cwd/exe/root/fd
        readlink text)."""


class ProcSource:
    """The kernel's side of procfs."""

    def current(self) -> ProcTask | None:
        """The task making the current call: /proc/self is its thread group,
        /proc/thread-self is "<tgid>/task/<tid>". None outside any task's
        call (sandbox set-up): /proc/self is then ENOENT and no
        per-caller access checks apply."""

    def tgids(self) -> list[int]:
        """Thread groups visible, ascending."""

    def task(self, pid: int) -> ProcTask | None:
        """By tgid (the group's leader, or a live thread of it) or by tid."""

    def mounts(self) -> list[tuple[bytes, bytes, bytes, bytes]]:
        """(source, mountpoint, fstype, options) per mount, parents first."""

    def uname(self) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """(sysname, nodename, release, version, machine)."""

    def boot_time_ns(self) -> int:
        """CLOCK_MONOTONIC ns at sandbox start."""

    def ncpus(self) -> int: ...

    def mem_total_kb(self) -> int: ...

    def mem_free_kb(self) -> int: ...

    def net_files(self) -> dict:
        """Optional: {name: generate()} of the files under /proc/net."""


# --------------------------------------------------------------------------
# The filesystem and its fixed top level
# --------------------------------------------------------------------------

class ProcFS(SyntheticFS):
    name = "proc"
    magic = PROC_SUPER_MAGIC

    def __init__(self, source: ProcSource):
        super().__init__()
        self.source = source
        self.boot_id = _random_uuid()  # stable for the sandbox's life, like a boot
        self._root = ProcRoot(self)

    def root(self) -> "ProcRoot":
        return self._root

    def task_ino(self, ref: "TaskRef", slot: int) -> int:
        """A stable inode number per (pid, file), far above the static
        entries' small ones: pid in bits 24+, "under task/" in bit 23, the
        file's slot below."""
        return (1 << 62) | (ref.shown << 24) | ((ref.tid is not None) << 23) | slot

    def may_inspect(self, task: ProcTask, uid: int | None = None) -> bool:
        """Linux's ptrace-read check for magic links, maps and environ,
        reduced to credentials: the same uid, or root. `uid` is the
        walker's when the caller knows it, else the current task's."""
        if uid is None:
            cur = self.source.current()
            if cur is None:
                return True
            uid = cur.uid
        return uid == 0 or uid == task.uid


class ProcRoot(StaticDir):
    """/proc: fixed entries, then one directory per thread group. A
    non-leader thread's /proc/<tid> is reachable but not listed, as in Linux."""

    def __init__(self, fs: ProcFS):
        super().__init__(fs, 0o555)
        self.add(b"self", SelfLink(fs))
        self.add(b"thread-self", ThreadSelfLink(fs))
        self.add(b"mounts", Symlink(fs, b"self/mounts"))
        for name, render in ((b"cpuinfo", render_cpuinfo), (b"meminfo", render_meminfo),
                             (b"uptime", render_uptime), (b"loadavg", render_loadavg),
                             (b"stat", render_stat_global), (b"version", render_version),
                             (b"filesystems", render_filesystems), (b"locks", render_locks)):
            # Linux's single-show proc files answer writes with EIO
            self.file(name, functools.partial(render, fs), 0o444, write_errno=errno.EIO)
        _build_sys(fs, self.subdir(b"sys"))
        net_files = getattr(fs.source, "net_files", None)  # the network, when the kernel has one
        files = net_files() if net_files is not None else None
        if files:
            net = self.subdir(b"net")
            for name, generate in files.items():
                net.file(name, generate, 0o444, write_errno=errno.EIO)

    def lookup(self, name: bytes):
        inode = self.entries.get(name)
        if inode is not None:
            return inode
        pid = _parse_number(name)
        if pid is None or self.fs.source.task(pid) is None:
            raise fserr(errno.ENOENT, name)
        return TaskDir(self.fs, TaskRef(pid))

    def readdir(self) -> list[DirEntry]:
        fs = self.fs
        return super().readdir() + [DirEntry(b"%d" % tgid, fs.task_ino(TaskRef(tgid), 0), DT_DIR)
                                    for tgid in fs.source.tgids()]


def _parse_number(name: bytes) -> int | None:
    """A pid or fd as Linux parses one in /proc: decimal, no sign, no
    leading zeros."""
    if not name.isdigit() or (len(name) > 1 and name[:1] == b"0") or len(name) > 10:
        return None
    return int(name)


def _current(fs: ProcFS) -> ProcTask:
    cur = fs.source.current()
    if cur is None:
        raise fserr(errno.ENOENT)
    return cur


class SelfLink(SyntheticInode):
    def __init__(self, fs: ProcFS):
        super().__init__(fs, S.S_IFLNK | 0o777)

    def readlink(self) -> bytes:
        return b"%d" % _current(self.fs).tgid


class ThreadSelfLink(SyntheticInode):
    def __init__(self, fs: ProcFS):
        super().__init__(fs, S.S_IFLNK | 0o777)

    def readlink(self) -> bytes:
        cur = _current(self.fs)
        return b"%d/task/%d" % (cur.tgid, cur.tid)


# --------------------------------------------------------------------------
# /proc/[pid] and /proc/[pid]/task/[tid]
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskRef:
    """Which task an inode under /proc/<pid> shows: `pid` is the number in
    /proc/<pid>, `tid` the one in .../task/<tid> (None outside task/)."""
    pid: int
    tid: int | None = None

    @property
    def shown(self) -> int:
        return self.pid if self.tid is None else self.tid

    def resolve(self, source: ProcSource) -> ProcTask:
        task = source.task(self.pid)
        if task is not None and self.tid is not None:
            thread = source.task(self.tid)
            ok = thread is not None and thread.tid == self.tid and thread.tgid == task.tgid
            task = thread if ok else None
        if task is None:
            raise fserr(errno.ENOENT)
        return task


class TaskNode(SyntheticInode):
    """An inode under /proc/<pid>: owned by the task's uid/gid, and gone
    (ENOENT) once the task is."""

    def __init__(self, fs: ProcFS, ref: TaskRef, slot: int, mode: int, size: int = 0):
        super().__init__(fs, mode, fs.task_ino(ref, slot), size)
        self.ref = ref

    def task(self) -> ProcTask:
        return self.ref.resolve(self.fs.source)

    def owner(self) -> tuple[int, int]:
        t = self.task()
        return t.uid, t.gid

    def inspected_task(self, ctx=None) -> ProcTask:
        t = self.task()
        if not self.fs.may_inspect(t, ctx.creds.fs_uid if ctx is not None else None):
            raise fserr(errno.EACCES)
        return t


class TaskFile(TaskNode):
    """A file generated from the task at open. Linux lets root open these
    for writing and fails each write with EINVAL; files Linux would let
    one write (comm, oom_score_adj) refuse at open with EACCES here, since
    nothing is stored."""

    def __init__(self, fs, ref, slot, render: Callable[[ProcFS, ProcTask], bytes], perm: int,
                 inspect: bool = False):
        super().__init__(fs, ref, slot, S.S_IFREG | perm)
        self.render = render
        self.inspect = inspect

    def open(self, flags: int) -> FileDescriptionImpl:
        refuse_write_open(flags, errno.EACCES if self._mode & 0o200 else None)
        t = self.inspected_task() if self.inspect else self.task()
        return SnapshotImpl(self.render(self.fs, t))


class TaskLink(TaskNode):
    """cwd, root, exe: magic links. readlink shows the path; a walk jumps to
    the Location itself, so it works even where the text would not resolve
    (outside the caller's root, a deleted directory)."""

    def __init__(self, fs, ref, slot, which: str):
        super().__init__(fs, ref, slot, S.S_IFLNK | 0o777)
        self.which = which

    def _target(self, ctx=None) -> tuple[ProcTask, Location]:
        t = self.inspected_task(ctx)
        loc = getattr(t, self.which)()
        if loc is None:
            raise fserr(errno.ENOENT)
        return t, loc

    def readlink(self) -> bytes:
        t, loc = self._target()
        return t.path_of(loc)

    def follow_link(self, ctx) -> Location:
        return self._target(ctx)[1]


FD_LINK_SIZE = 64  # what Linux's fd links stat as


class FdLink(TaskNode):
    """/proc/<pid>/fd/<n>. Jumps to the fd's Location; for a pipe or socket
    (no Location) the walk fails with ENOENT: the sentry, which owns the
    description, may reopen it instead (this inode's `ref` and `fd` say
    which)."""

    def __init__(self, fs, ref, fd: int):
        super().__init__(fs, ref, FD_SLOT | fd, S.S_IFLNK | 0o700, FD_LINK_SIZE)
        self.fd = fd

    def open_fd(self, check: bool = True, ctx=None) -> ProcFd:
        t = self.inspected_task(ctx) if check else self.task()
        f = t.fds().get(self.fd)
        if f is None:
            raise fserr(errno.ENOENT)
        return f

    def stat(self):
        # the link's permission bits show the description's access mode
        acc = self.open_fd(check=False).flags & O_ACCMODE
        perm = {O_WRONLY: 0o300, O_RDWR: 0o700}.get(acc, 0o500)
        return super().stat().copy(mode=S.S_IFLNK | perm)

    def readlink(self) -> bytes:
        return self.open_fd().link

    def follow_link(self, ctx) -> Location:
        loc = self.open_fd(ctx=ctx).location
        if loc is None:
            raise fserr(errno.ENOENT)
        return loc


class FdInfoFile(TaskNode):
    def __init__(self, fs, ref, fd: int):
        super().__init__(fs, ref, FDINFO_SLOT | fd, S.S_IFREG | 0o444)
        self.fd = fd

    def open(self, flags: int) -> FileDescriptionImpl:
        f = self.task().fds().get(self.fd)
        if f is None:
            raise fserr(errno.ENOENT)
        return SnapshotImpl(render_fdinfo(f))


FD_SLOT, FDINFO_SLOT = 1 << 21, 2 << 21
_FD_MASK = FD_SLOT - 1  # fds are below nr_open (2**20)


class FdDir(TaskNode):
    """fd/ (magic links, owner-only like Linux) or fdinfo/ (files)."""

    def __init__(self, fs, ref, slot, info: bool):
        super().__init__(fs, ref, slot, S.S_IFDIR | (0o555 if info else 0o500))
        self.info = info

    def nlink(self) -> int:
        return 2

    def lookup(self, name: bytes):
        fd = _parse_number(name)
        if fd is None or fd > _FD_MASK or fd not in self.task().fds():
            raise fserr(errno.ENOENT, name)
        return (FdInfoFile if self.info else FdLink)(self.fs, self.ref, fd)

    def readdir(self) -> list[DirEntry]:
        slot, dtype = (FDINFO_SLOT, DT_REG) if self.info else (FD_SLOT, DT_LNK)
        return [DirEntry(b"%d" % fd, self.fs.task_ino(self.ref, slot | fd), dtype)
                for fd in sorted(self.task().fds())]


class ThreadListDir(TaskNode):
    """task/: one directory per thread of the group."""

    def __init__(self, fs, ref, slot):
        super().__init__(fs, ref, slot, S.S_IFDIR | 0o555)

    def lookup(self, name: bytes):
        tid = _parse_number(name)
        if tid is None or tid not in self.task().threads():
            raise fserr(errno.ENOENT, name)
        return TaskDir(self.fs, TaskRef(self.ref.pid, tid))

    def readdir(self) -> list[DirEntry]:
        return [DirEntry(b"%d" % tid, self.fs.task_ino(TaskRef(self.ref.pid, tid), 0), DT_DIR)
                for tid in sorted(self.task().threads())]


# One namespace of each kind for the whole sandbox: ns/ links name them
# with fixed inode numbers, like a process that never called unshare.
NAMESPACES = (b"cgroup", b"ipc", b"mnt", b"net", b"pid", b"pid_for_children", b"time",
              b"time_for_children", b"user", b"uts")
NS_SLOT = 3 << 21
_NS_INO = {b"cgroup": 4026531835, b"ipc": 4026531839, b"mnt": 4026531841, b"net": 4026531840,
           b"pid": 4026531836, b"time": 4026531834, b"user": 4026531837, b"uts": 4026531838}


class NsLink(TaskNode):
    """ns/<kind>: readlink says "kind:[inode]" (nothing to setns into)."""

    def __init__(self, fs, ref, index: int):
        super().__init__(fs, ref, NS_SLOT | index, S.S_IFLNK | 0o777)
        self.kind = NAMESPACES[index]

    def readlink(self) -> bytes:
        self.inspected_task()
        base = self.kind.replace(b"_for_children", b"")
        return b"%s:[%d]" % (base, _NS_INO[base])


class NsDir(TaskNode):
    def __init__(self, fs, ref, slot):
        super().__init__(fs, ref, slot, S.S_IFDIR | 0o511)

    def lookup(self, name: bytes):
        if name not in NAMESPACES:
            raise fserr(errno.ENOENT, name)
        return NsLink(self.fs, self.ref, NAMESPACES.index(name))

    def readdir(self) -> list[DirEntry]:
        return [DirEntry(n, self.fs.task_ino(self.ref, NS_SLOT | i), DT_LNK) for i, n in enumerate(NAMESPACES)]


def _file(render, perm=0o444, inspect=False):
    return lambda fs, ref, slot: TaskFile(fs, ref, slot, render, perm, inspect)


def _link(which):
    return lambda fs, ref, slot: TaskLink(fs, ref, slot, which)


class TaskDir(TaskNode):
    """/proc/<pid> or /proc/<pid>/task/<tid>: the same files, except that a
    thread's directory has no task/ of its own."""

    def __init__(self, fs: ProcFS, ref: TaskRef):
        super().__init__(fs, ref, 0, S.S_IFDIR | 0o555)

    def _entries(self):
        for slot, (name, make) in enumerate(TASK_ENTRIES, 1):
            if name == b"task" and self.ref.tid is not None:
                continue
            yield slot, name, make

    def nlink(self) -> int:
        return 5 if self.ref.tid is None else 4  # ., .., fd, fdinfo, task

    def lookup(self, name: bytes):
        self.task()
        for slot, n, make in self._entries():
            if n == name:
                return make(self.fs, self.ref, slot)
        raise fserr(errno.ENOENT, name)

    def readdir(self) -> list[DirEntry]:
        self.task()
        out = []
        for slot, name, make in self._entries():
            kind = S.S_IFMT(make(self.fs, self.ref, slot).mode())
            out.append(DirEntry(name, self.fs.task_ino(self.ref, slot), kind >> 12))
        return out


# --------------------------------------------------------------------------
# Per-task file contents
# --------------------------------------------------------------------------

_STATE_NAMES = {"R": "running", "S": "sleeping", "D": "disk sleep", "T": "stopped",
                "t": "tracing stop", "X": "dead", "Z": "zombie", "P": "parked", "I": "idle"}

CAP_LAST_CAP = 40
ALL_CAPS = (1 << (CAP_LAST_CAP + 1)) - 1
SIGPENDING_LIMIT = 4096
PAGE_KB = 4


def render_cmdline(fs, t: ProcTask) -> bytes:
    return t.cmdline()


def render_environ(fs, t: ProcTask) -> bytes:
    return t.environ()


def render_comm(fs, t: ProcTask) -> bytes:
    return t.comm + b"\n"


def _vm_breakdown(t: ProcTask) -> dict[str, int]:
    """VmData, VmStk, VmExe, VmLib (kB) from the maps text, with Linux's
    definitions: data is private writable non-stack memory; exe is the
    executable's code; lib the rest of the executable mappings."""
    exe = t.exe()
    exe_path = t.path_of(exe) if exe is not None else None
    data = stk = code = exe_code = 0
    for line in t.maps().splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, _, hi = parts[0].partition(b"-")
        kb = (int(hi, 16) - int(lo, 16)) // 1024
        perms = parts[1]
        path = parts[5].strip() if len(parts) > 5 else b""
        if path == b"[stack]":
            stk += kb
        elif perms[1:2] == b"w" and perms[3:4] == b"p":
            data += kb
        if perms[2:3] == b"x":
            code += kb
            if path == exe_path:
                exe_code += kb
    return {"data": data, "stk": stk, "exe": exe_code, "lib": code - exe_code}


def _cpu_mask(n: int) -> str:
    """Linux's %*pb bitmap: hex, comma every 32 bits, width by CPU count."""
    digits = format((1 << n) - 1, "x").rjust((n + 3) // 4, "0")
    groups = []
    while digits:
        groups.insert(0, digits[-8:])
        digits = digits[:-8]
    return ",".join(groups)


def _cpu_list(n: int) -> str:
    return "0" if n <= 1 else f"0-{n - 1}"


def render_status(fs: ProcFS, t: ProcTask) -> bytes:
    vm_size, vm_rss = t.vm_size_kb(), t.vm_rss_kb()
    vm = _vm_breakdown(t)
    fds = t.fds()
    fdsize = 64
    while fds and max(fds) >= fdsize:
        fdsize *= 2
    full = ALL_CAPS if t.uid == 0 else 0
    caps = getattr(t, "caps", None) or (0, full, full, ALL_CAPS, 0)
    uids = getattr(t, "uids", None) or (t.uid,) * 4
    gids = getattr(t, "gids", None) or (t.gid,) * 4
    ncpus = fs.source.ncpus()
    state = t.state
    lines = [
        ("Name", _escape_name(t.comm)),
        ("Umask", "0022"),
        ("State", f"{state} ({_STATE_NAMES.get(state, 'unknown')})"),
        ("Tgid", t.tgid), ("Ngid", 0), ("Pid", t.tid), ("PPid", t.ppid), ("TracerPid", 0),
        ("Uid", "\t".join(map(str, uids))), ("Gid", "\t".join(map(str, gids))),
        ("FDSize", fdsize), ("Groups", " "),
        ("NStgid", t.tgid), ("NSpid", t.tid), ("NSpgid", t.pgid), ("NSsid", t.sid),
        ("Kthread", 0),
    ]
    kb = lambda v: f"{v:8d} kB"
    lines += [
        ("VmPeak", kb(vm_size)), ("VmSize", kb(vm_size)), ("VmLck", kb(0)), ("VmPin", kb(0)),
        ("VmHWM", kb(vm_rss)), ("VmRSS", kb(vm_rss)), ("RssAnon", kb(vm_rss)),
        ("RssFile", kb(0)), ("RssShmem", kb(0)), ("VmData", kb(vm["data"])),
        ("VmStk", kb(vm["stk"])), ("VmExe", kb(vm["exe"])), ("VmLib", kb(vm["lib"])),
        ("VmPTE", kb((vm_size + 511) // 512)), ("VmSwap", kb(0)), ("HugetlbPages", kb(0)),
        ("CoreDumping", 0), ("THP_enabled", 1), ("untag_mask", "0xffffffffffffffff"),
    ] if state != "Z" else []  # a zombie has no mm: Linux omits these lines
    lines += [
        ("Threads", len(t.threads())), ("SigQ", f"0/{SIGPENDING_LIMIT}"),
        *[(name, f"{mask:016x}") for name, mask in
          zip(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"), t.signal_masks())],
        *[(name, f"{mask:016x}") for name, mask in
          zip(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), caps)],
        ("NoNewPrivs", getattr(t, "no_new_privs", 0)), ("Seccomp", 0), ("Seccomp_filters", 0),
        ("Speculation_Store_Bypass", "thread vulnerable"),
        ("SpeculationIndirectBranch", "always enabled"),
        ("Cpus_allowed", _cpu_mask(ncpus)), ("Cpus_allowed_list", _cpu_list(ncpus)),
        ("Mems_allowed", ",".join(["00000000"] * 31 + ["00000001"])),
        ("Mems_allowed_list", "0"),
        ("voluntary_ctxt_switches", 0), ("nonvoluntary_ctxt_switches", 0),
    ]
    return "".join(f"{name}:\t{value}\n" for name, value in lines).encode("utf-8", "surrogateescape")


def _escape_name(comm: bytes) -> str:
    """status's Name: bytes as they are, but newline and backslash escaped
    so the line stays one line (Linux's seq_escape)."""
    return comm.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").decode("utf-8", "surrogateescape")


def _start_ticks(fs: ProcFS, t: ProcTask) -> int:
    return max(0, t.start_time_ns() - fs.source.boot_time_ns()) * USER_HZ // 1_000_000_000


def render_stat(fs: ProcFS, t: ProcTask) -> bytes:
    """The 52 fields of proc(5)'s /proc/[pid]/stat. Times and fault counts
    the sentry does not keep are 0, as are the address fields (Linux shows
    them 0 too to a reader without ptrace access)."""
    zombie = t.state == "Z"
    vsize = 0 if zombie else t.vm_size_kb() * 1024
    rss = 0 if zombie else t.vm_rss_kb() // PAGE_KB
    exit_signal = 17 if t.tid == t.tgid else -1  # SIGCHLD for leaders; threads have none
    fields = [
        t.ppid, t.pgid, t.sid, 0, -1,          # ppid pgrp session tty_nr tpgid
        0x400000,                              # flags: PF_RANDOMIZE
        0, 0, 0, 0,                            # minflt cminflt majflt cmajflt
        0, 0, 0, 0,                            # utime stime cutime cstime
        20, 0, len(t.threads()), 0,            # priority nice num_threads itrealvalue
        _start_ticks(fs, t), vsize, rss, 0xFFFFFFFFFFFFFFFF,  # starttime vsize rss rsslim
        0, 0, 0, 0, 0,                         # startcode endcode startstack kstkesp kstkeip
        0, 0, 0, 0,                            # signal blocked sigignore sigcatch
        0, 0, 0,                               # wchan nswap cnswap
        exit_signal, 0, 0, 0,                  # exit_signal processor rt_priority policy
        0, 0, 0,                               # delayacct_blkio_ticks guest_time cguest_time
        0, 0, 0,                               # start_data end_data start_brk
        0, 0, 0, 0,                            # arg_start arg_end env_start env_end
        0,                                     # exit_code
    ]
    head = b"%d (%s) %s " % (t.tid, t.comm, t.state.encode())
    return head + " ".join(map(str, fields)).encode() + b"\n"


def render_statm(fs: ProcFS, t: ProcTask) -> bytes:
    if t.state == "Z":
        return b"0 0 0 0 0 0 0\n"
    vm = _vm_breakdown(t)
    pages = [t.vm_size_kb(), t.vm_rss_kb(), 0, vm["exe"], 0, vm["data"] + vm["stk"], 0]
    return (" ".join(str(kb // PAGE_KB) for kb in pages) + "\n").encode()


def render_maps(fs, t: ProcTask) -> bytes:
    return t.maps()


def render_smaps(fs, t: ProcTask) -> bytes:
    """maps with each range's size; the residency counters are not
    tracked (the host holds the pages) and read 0."""
    out = []
    for line in t.maps().splitlines(keepends=True):
        lo, hi = (int(x, 16) for x in line.split(None, 1)[0].split(b"-"))
        kb = (hi - lo) // 1024
        perms = line.split()[1]
        flags = " ".join(f for f, c in (("rd", b"r"), ("wr", b"w"), ("ex", b"x")) if c in perms)
        out.append(line)
        out.append((f"Size:           {kb:8d} kB\nKernelPageSize: {4:8d} kB\nMMUPageSize:    {4:8d} kB\n"
                    + "".join(f"{k + ':':16s}{0:8d} kB\n" for k in SMAPS_COUNTERS)
                    + f"THPeligible:    {0:8d}\nVmFlags: {flags} \n").encode())
    return b"".join(out)


SMAPS_COUNTERS = ("Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                  "Private_Dirty", "Referenced", "Anonymous", "KSM", "LazyFree", "AnonHugePages",
                  "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb", "Private_Hugetlb", "Swap",
                  "SwapPss", "Locked")


INFINITY = None
# The sentry's default rlimits (getrlimit answers the same).
_LIMITS = [
    ("Max cpu time", INFINITY, INFINITY, "seconds"),
    ("Max file size", INFINITY, INFINITY, "bytes"),
    ("Max data size", INFINITY, INFINITY, "bytes"),
    ("Max stack size", 8388608, INFINITY, "bytes"),
    ("Max core file size", 0, INFINITY, "bytes"),
    ("Max resident set", INFINITY, INFINITY, "bytes"),
    ("Max processes", 4096, 4096, "processes"),
    ("Max open files", 1024, 4096, "files"),
    ("Max locked memory", 8388608, 8388608, "bytes"),
    ("Max address space", INFINITY, INFINITY, "bytes"),
    ("Max file locks", INFINITY, INFINITY, "locks"),
    ("Max pending signals", SIGPENDING_LIMIT, SIGPENDING_LIMIT, "signals"),
    ("Max msgqueue size", 819200, 819200, "bytes"),
    ("Max nice priority", 0, 0, ""),
    ("Max realtime priority", 0, 0, ""),
    ("Max realtime timeout", INFINITY, INFINITY, "us"),
]


def render_limits(fs, t: ProcTask) -> bytes:
    def lim(v):
        return "unlimited" if v is INFINITY else str(v)
    out = [f"{'Limit':<25} {'Soft Limit':<20} {'Hard Limit':<20} {'Units':<10}\n"]
    for name, soft, hard, unit in _LIMITS:
        out.append(f"{name:<25} {lim(soft):<20} {lim(hard):<20} " + (f"{unit:<10}" if unit else "") + "\n")
    return "".join(out).encode()


def _mangle(field: bytes) -> bytes:
    """Escape what would break the space-separated mount tables (Linux's
    mangle(): space, tab, newline, backslash as octal)."""
    for ch in b"\\ \t\n":
        field = field.replace(bytes([ch]), b"\\%03o" % ch)
    return field


def _task_mounts(t: ProcTask | None):
    """[(mount, mountpoint path)] as the task sees them (vfs.path.MountTree.
    visible_mounts: below its root, paths from its root), or None when its
    root is in no mount tree (a source without one: use source.mounts())."""
    root = t.root() if t is not None else None
    tree = getattr(root.mount, "ns", None) if root is not None else None
    return tree.visible_mounts(root) if tree is not None else None


def render_mounts(fs: ProcFS, t: ProcTask = None) -> bytes:
    """proc(5)'s mounts: source, mountpoint, type, options, 0 0."""
    seen = _task_mounts(t)
    if seen is None:
        rows = fs.source.mounts()
    else:
        rows = [(m.source.encode(errors="surrogateescape"), mp, m.fs.name.encode(), m.options())
                for m, mp in seen]
    return b"".join(b"%s %s %s %s 0 0\n" % (_mangle(src), _mangle(mp), _mangle(fstype), opts)
                    for src, mp, fstype, opts in rows)


def _mount_parent(mounts, i: int) -> int:
    """For a source without a mount tree: the mount that mount i sits on,
    the latest earlier mount whose path contains i's mountpoint (a mount's
    parent comes before it)."""
    mp = mounts[i][1]
    for j in range(i - 1, -1, -1):
        parent = mounts[j][1].rstrip(b"/") + b"/"
        if mp != mounts[j][1] and (mp + b"/").startswith(parent):
            return j
    return i  # the root mount: its own parent, as in a namespace's root


def render_mountinfo(fs: ProcFS, t: ProcTask) -> bytes:
    """proc(5)'s mountinfo: mount id, parent id (the namespace root is its
    own parent), st_dev of the filesystem, the mount's root within it,
    mountpoint, per-mount options, optional fields, -, type, source,
    superblock options."""
    seen = _task_mounts(t)
    if seen is None:
        mounts = fs.source.mounts()
        return b"".join(b"%d %d 0:%d / %s %s - %s %s %s\n" % (
            i + 1, _mount_parent(mounts, i) + 1, 20 + i, _mangle(mp), opts,
            _mangle(fstype), _mangle(src), opts.split(b",")[0])
            for i, (src, mp, fstype, opts) in enumerate(mounts))
    out = []
    for m, mp in seen:
        dev = m.fs.dev
        out.append(b"%d %d %d:%d %s %s %s%s - %s %s %s\n" % (
            m.id, (m.parent or m).id, os.major(dev), os.minor(dev), _mangle(m.ns.root_in_fs(m)),
            _mangle(mp), m.mount_options(), b" unbindable" if m.unbindable else b"",
            _mangle(m.fs.name.encode()), _mangle(m.source.encode(errors="surrogateescape")),
            m.super_options()))
    return b"".join(out)


def render_cgroup(fs, t: ProcTask) -> bytes:
    return b"0::/\n"


def render_oom_score_adj(fs, t: ProcTask) -> bytes:
    return b"0\n"


def render_fdinfo(f: ProcFd) -> bytes:
    mnt_id = ino = 0
    if f.location is not None:
        mnt_id = f.location.mount.id
        try:
            ino = f.location.inode.stat().ino
        except OSError:
            pass
    elif f.link.endswith(b"]") and b":[" in f.link:  # pipe:[N], socket:[N]
        tail = f.link[f.link.index(b":[") + 2:-1]
        ino = int(tail) if tail.isdigit() else 0
    return b"pos:\t%d\nflags:\t0%o\nmnt_id:\t%d\nino:\t%d\n" % (f.pos, f.flags, mnt_id, ino)


# name -> factory(fs, ref, slot); the slot (position from 1) is part of
# the inode number, so append new entries at the end.
TASK_ENTRIES: list[tuple[bytes, Callable]] = [
    (b"task", lambda fs, ref, slot: ThreadListDir(fs, ref, slot)),
    (b"fd", lambda fs, ref, slot: FdDir(fs, ref, slot, info=False)),
    (b"fdinfo", lambda fs, ref, slot: FdDir(fs, ref, slot, info=True)),
    (b"environ", _file(render_environ, 0o400, inspect=True)),
    (b"status", _file(render_status)),
    (b"limits", _file(render_limits)),
    (b"comm", _file(render_comm, 0o644)),
    (b"cmdline", _file(render_cmdline)),
    (b"stat", _file(render_stat)),
    (b"statm", _file(render_statm)),
    (b"maps", _file(render_maps, inspect=True)),
    (b"cwd", _link("cwd")),
    (b"root", _link("root")),
    (b"exe", _link("exe")),
    (b"mounts", _file(render_mounts)),
    (b"mountinfo", _file(render_mountinfo)),
    (b"cgroup", _file(render_cgroup)),
    (b"oom_score_adj", _file(render_oom_score_adj, 0o644)),
    (b"smaps", _file(render_smaps, inspect=True)),
    (b"ns", lambda fs, ref, slot: NsDir(fs, ref, slot)),
]


# --------------------------------------------------------------------------
# Top-level file contents
# --------------------------------------------------------------------------

# Only features every x86-64 CPU of the last 15 years has (x86-64-v2):
# the guest runs on the real CPU and reads CPUID itself, so cpuinfo must
# never claim a feature the CPU lacks; understating is harmless.
CPU_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
             "mmx fxsr sse sse2 ht syscall nx lm constant_tsc rep_good nopl xtopology cpuid "
             "pni ssse3 cx16 sse4_1 sse4_2 popcnt hypervisor lahf_lm")


def render_cpuinfo(fs: ProcFS) -> bytes:
    n = fs.source.ncpus()
    out = []
    for i in range(n):
        out.append(
            f"processor\t: {i}\n"
            "vendor_id\t: GenuineIntel\n"
            "cpu family\t: 6\n"
            "model\t\t: 85\n"
            "model name\t: pyrunsc virtual CPU\n"
            "stepping\t: 7\n"
            "microcode\t: 0x1\n"
            "cpu MHz\t\t: 2600.000\n"
            "cache size\t: 16384 KB\n"
            "physical id\t: 0\n"
            f"siblings\t: {n}\n"
            f"core id\t\t: {i}\n"
            f"cpu cores\t: {n}\n"
            f"apicid\t\t: {i}\n"
            f"initial apicid\t: {i}\n"
            "fpu\t\t: yes\n"
            "fpu_exception\t: yes\n"
            "cpuid level\t: 13\n"
            "wp\t\t: yes\n"
            f"flags\t\t: {CPU_FLAGS}\n"
            "bugs\t\t:\n"
            "bogomips\t: 5200.00\n"
            "clflush size\t: 64\n"
            "cache_alignment\t: 64\n"
            "address sizes\t: 46 bits physical, 48 bits virtual\n"
            "power management:\n\n")
    return "".join(out).encode()


# /proc/meminfo's fields in Linux's order; those the sandbox can answer are
# filled in by render_meminfo, the rest are 0.
MEMINFO_FIELDS = (
    "MemTotal MemFree MemAvailable Buffers Cached SwapCached Active Inactive "
    "Active(anon) Inactive(anon) Active(file) Inactive(file) Unevictable Mlocked "
    "SwapTotal SwapFree Zswap Zswapped Dirty Writeback AnonPages Mapped Shmem "
    "KReclaimable Slab SReclaimable SUnreclaim KernelStack PageTables SecPageTables "
    "NFS_Unstable Bounce WritebackTmp CommitLimit Committed_AS VmallocTotal "
    "VmallocUsed VmallocChunk Percpu AnonHugePages ShmemHugePages ShmemPmdMapped "
    "FileHugePages FilePmdMapped Balloon HugePages_Total HugePages_Free HugePages_Rsvd "
    "HugePages_Surp Hugepagesize Hugetlb DirectMap4k DirectMap2M DirectMap1G").split()


def render_meminfo(fs: ProcFS) -> bytes:
    total, free = fs.source.mem_total_kb(), fs.source.mem_free_kb()
    used = max(0, total - free)
    values = dict.fromkeys(MEMINFO_FIELDS, 0)
    values.update(MemTotal=total, MemFree=free, MemAvailable=free, Active=used,
                  AnonPages=used, **{"Active(anon)": used}, CommitLimit=total // 2,
                  Committed_AS=used, VmallocTotal=34359738367, Hugepagesize=2048,
                  DirectMap2M=total)
    out = []
    for name in MEMINFO_FIELDS:
        unit = "" if name.startswith("HugePages_") else " kB"
        out.append(f"{name + ':':<16}{values[name]:8d}{unit}\n")
    return "".join(out).encode()


def _uptime_ns(fs: ProcFS) -> int:
    return max(0, time.monotonic_ns() - fs.source.boot_time_ns())


def render_uptime(fs: ProcFS) -> bytes:
    up = _uptime_ns(fs) / 1e9
    idle = up * fs.source.ncpus()  # guests here are mostly waiting
    return b"%.2f %.2f\n" % (up, idle)


def _all_tasks(fs: ProcFS) -> list[ProcTask]:
    out = []
    for tgid in fs.source.tgids():
        leader = fs.source.task(tgid)
        if leader is None:
            continue
        for tid in leader.threads():
            t = leader if tid == leader.tid else fs.source.task(tid)
            if t is not None:
                out.append(t)
    return out


def render_loadavg(fs: ProcFS) -> bytes:
    tasks = _all_tasks(fs)
    running = sum(1 for t in tasks if t.state == "R")
    last = max((t.tid for t in tasks), default=0)
    return b"0.00 0.00 0.00 %d/%d %d\n" % (max(running, 1), len(tasks), last)


def render_stat_global(fs: ProcFS) -> bytes:
    """Kernel/system statistics: every CPU reads as idle since boot (the
    sentry keeps no per-CPU accounting)."""
    n = fs.source.ncpus()
    up_ns = _uptime_ns(fs)
    idle = up_ns * USER_HZ // 1_000_000_000
    boot_wall = (time.time_ns() - up_ns) // 1_000_000_000
    tasks = _all_tasks(fs)
    lines = [f"cpu  0 0 0 {idle * n} 0 0 0 0 0 0"]
    lines += [f"cpu{i} 0 0 0 {idle} 0 0 0 0 0 0" for i in range(n)]
    lines += ["intr 0", "ctxt 0", f"btime {boot_wall}",
              f"processes {max((t.tid for t in tasks), default=0)}",
              f"procs_running {max(1, sum(1 for t in tasks if t.state == 'R'))}",
              f"procs_blocked {sum(1 for t in tasks if t.state == 'D')}",
              "softirq 0 0 0 0 0 0 0 0 0 0 0"]
    return ("\n".join(lines) + "\n").encode()


def render_version(fs: ProcFS) -> bytes:
    sysname, _, release, version, _ = fs.source.uname()
    return b"%s version %s (pyrunsc@pyrunsc) (gcc (pyrunsc)) %s\n" % (sysname, release, version)


def render_locks(fs: ProcFS) -> bytes:
    return LOCKS.render_proc()


# What this sandbox can mount (nodev: needs no block device).
FILESYSTEMS = ("sysfs", "tmpfs", "proc", "devtmpfs", "overlay", "9p")


def render_filesystems(fs: ProcFS) -> bytes:
    return "".join(f"nodev\t{name}\n" for name in FILESYSTEMS).encode()


def _random_uuid() -> bytes:
    """A random (version 4) UUID in the text form Linux's random/uuid uses."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()


def _build_sys(fs: ProcFS, sys_dir: StaticDir) -> None:
    """/proc/sys: the sysctls programs read. All read-only; writing is
    refused at open with EACCES, what Linux gives a writer without the
    privilege (a sandbox's root is no host root)."""
    def sysctl(d: StaticDir, name: str, generate: Callable[[], bytes]) -> None:
        d.file(name, generate, 0o644, write_open_errno=errno.EACCES)

    def uname_field(i: int) -> Callable[[], bytes]:
        return lambda: fs.source.uname()[i] + b"\n"

    kernel = sys_dir.subdir("kernel")
    sysctl(kernel, "hostname", uname_field(1))
    sysctl(kernel, "osrelease", uname_field(2))
    sysctl(kernel, "ostype", uname_field(0))
    sysctl(kernel, "version", uname_field(3))
    for name, value in (("pid_max", 4194304), ("ngroups_max", 65536),
                        ("cap_last_cap", CAP_LAST_CAP), ("threads-max", 63704),
                        ("overflowuid", 65534), ("overflowgid", 65534)):
        sysctl(kernel, name, constant(f"{value}\n"))
    random = kernel.subdir("random")
    sysctl(random, "boot_id", lambda: fs.boot_id + b"\n")
    sysctl(random, "uuid", lambda: _random_uuid() + b"\n")  # a new one per read, like Linux
    sysctl(random, "entropy_avail", constant("256\n"))
    sysctl(random, "poolsize", constant("256\n"))

    vm = sys_dir.subdir("vm")
    for name, value in (("overcommit_memory", 0), ("max_map_count", 65530),
                        ("mmap_min_addr", 65536)):
        sysctl(vm, name, constant(f"{value}\n"))

    fs_dir = sys_dir.subdir("fs")
    for name, value in (("file-max", 9223372036854775807), ("nr_open", 1048576)):
        sysctl(fs_dir, name, constant(f"{value}\n"))
