"""What procfs sees of the kernel: vfs.proc's ProcSource and ProcTask
interfaces implemented over tasks and thread groups."""
from __future__ import annotations


import os
from dataclasses import dataclass

from vfs.path import Location

from .hostmem import memory
from .syscalls.misc import RELEASE, VERSION


@dataclass
class ProcFd:
    link: bytes
    location: Location | None
    flags: int
    pos: int
    description: object = None  # for reopening pipes through /proc/self/fd/N


class TaskView:
    """One task as /proc/[pid] shows it."""

    def __init__(self, kernel, task):
        self._k = kernel
        self._t = task
        tg = task.tg
        self.tgid = tg.tgid
        self.tid = task.tid
        self.ppid = tg.parent.tgid if tg.parent is not None else 0
        self.pgid = tg.pgid
        self.sid = tg.sid
        self.comm = task.comm
        self.state = "Z" if tg.state == "Z" else ("S" if task.parked is not None else "R")
        c = tg.creds
        self.uid = c.uid
        self.gid = c.gid
        self.uids = (c.uid, c.euid, c.suid, c.fsuid)
        self.gids = (c.gid, c.egid, c.sgid, c.fsgid)
        self.caps = (c.cap_inheritable, c.cap_permitted, c.cap_effective, c.cap_bounding, c.cap_ambient)
        self.no_new_privs = int(tg.no_new_privs)

    def threads(self) -> list[int]:
        return [t.tid for t in self._t.tg.tasks]

    def cmdline(self) -> bytes:
        return b"".join(a + b"\0" for a in self._t.tg.argv)

    def environ(self) -> bytes:
        return b"".join(a + b"\0" for a in self._t.tg.envp)

    def exe(self) -> Location | None:
        return self._t.tg.exe

    def cwd(self) -> Location:
        return self._t.tg.fs.cwd

    def root(self) -> Location:
        return self._t.tg.fs.root

    def path_of(self, loc: Location) -> bytes:
        return self._k.mounts.path_of(loc, self._t.tg.fs.root)

    def fds(self) -> dict:
        out = {}
        for fd, (desc, _cloexec) in self._t.tg.fdtable.fds.items():
            if desc.location is not None:
                link = self.path_of(desc.location)
            else:
                namer = getattr(desc.impl, "link_name", None)
                link = namer() if namer else b"anon_inode:[unknown]"
            out[fd] = ProcFd(link, desc.location, desc.flags, desc.offset, desc)
        return out

    def maps(self) -> bytes:
        t = self._t
        if not t.alive:
            return b""
        try:
            host = open(f"/proc/{t.thread.pid}/maps").read()
        except OSError:
            return b""
        return t.tg.mm.maps_text(host)

    def vm_size_kb(self) -> int:
        return sum(int(l.split()[0].split(b"-")[1], 16) - int(l.split()[0].split(b"-")[0], 16)
                   for l in self.maps().splitlines() if l) // 1024

    def vm_rss_kb(self) -> int:
        try:
            with open(f"/proc/{self._t.thread.pid}/statm") as f:
                return int(f.read().split()[1]) * 4
        except (OSError, ValueError, IndexError):
            return 0

    def start_time_ns(self) -> int:
        return self._t.tg.start_ns

    def signal_masks(self) -> tuple[int, int, int, int, int]:
        t = self._t
        ignored = caught = 0
        for sig in range(1, 65):
            handler = t.tg.handlers.actions[sig].handler
            if handler == 1:
                ignored |= 1 << (sig - 1)
            elif handler != 0:
                caught |= 1 << (sig - 1)
        return t.pending_signals, t.tg.pending_signals, t.sigmask, ignored, caught


class KernelProcSource:
    def __init__(self, kernel):
        self._k = kernel

    def bind(self, kernel) -> None:
        self._k = kernel

    def current(self):
        t = self._k.current if self._k is not None else None
        return TaskView(self._k, t) if t is not None else None

    def tgids(self) -> list[int]:
        return sorted(tgid for tgid, tg in self._k.pidns.groups.items() if tg.tasks or tg.state == "Z")

    def task(self, pid: int):
        k = self._k
        t = k.pidns.tasks.get(pid)
        if t is None:
            tg = k.pidns.groups.get(pid)
            if tg is None or not tg.tasks:
                return None
            t = tg.tasks[0]
        return TaskView(k, t)

    def mounts(self):
        k = self._k
        out = []
        for m in k.mounts.mounts:
            opts = b"ro" if m.readonly else b"rw"
            out.append((m.source.encode(), k.mounts.mount_path_of(m), m.fs.name.encode(), opts))
        return out

    def uname(self):
        return (b"Linux", self._k.hostname, RELEASE, VERSION, b"x86_64")

    def boot_time_ns(self) -> int:
        return self._k.boot_ns

    def ncpus(self) -> int:
        return os.cpu_count() or 1  # the online CPUs (sysconf), as psutil.cpu_count() counts them

    def mem_total_kb(self) -> int:
        return memory()[0] // 1024

    def mem_free_kb(self) -> int:
        return memory()[1] // 1024

    def net_files(self) -> dict:
        from .procnet import net_files
        return net_files(lambda: self._k)



