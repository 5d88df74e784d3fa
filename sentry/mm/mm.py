"""The sentry's model of one guest address space.

The host kernel holds the page tables: every mapping is made by injecting
mmap/mprotect/munmap/mremap into a guest thread, anonymous or private
views of the platform's image store (never a host file). Program images
are mapped from the store; other file-backed private mappings are
anonymous mappings the sentry fills with the file's bytes. The model here
keeps what the host cannot know: which ranges show which file (for
/proc/pid/maps), the program break, the stack, and the platform's
reserved ranges no guest call may touch.
"""
from __future__ import annotations

import bisect
import errno
import itertools
from dataclasses import dataclass

from vfs.inode import fserr

PAGE = 4096
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 1, 2, 3
MAP_TYPE = 0xF
MAP_FIXED, MAP_ANONYMOUS = 0x10, 0x20
MAP_GROWSDOWN, MAP_DENYWRITE, MAP_EXECUTABLE, MAP_LOCKED = 0x100, 0x800, 0x1000, 0x2000
MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK, MAP_STACK = 0x4000, 0x8000, 0x10000, 0x20000
MAP_HUGETLB, MAP_SYNC, MAP_FIXED_NOREPLACE = 0x40000, 0x80000, 0x100000
# Flags passed to the host as they are; everything else is dropped or refused.
HOST_FLAGS = MAP_FIXED | MAP_GROWSDOWN | MAP_NORESERVE | MAP_STACK | MAP_FIXED_NOREPLACE | MAP_LOCKED
TASK_SIZE = 0x7FFF_FFFF_F000
STACK_SIZE = 8 << 20

NR_MMAP, NR_MPROTECT, NR_MUNMAP, NR_MREMAP, NR_MADVISE = 9, 10, 11, 25, 28


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def page_down(n: int) -> int:
    return n & ~(PAGE - 1)


@dataclass
class Label:
    """What a range shows as in /proc/pid/maps."""
    start: int
    end: int
    name: bytes
    offset: int = 0
    dev: int = 0
    ino: int = 0
    shared: bool = False  # MAP_SHARED: futex words in it are keyed by (dev, ino, offset)
    slot: object = None   # the file's shared pages (sentry.mm.filecache.Slot) it maps
    maywrite: bool = True  # a shared file mapping of a file opened read-only may not become writable

    def cut(self, start: int, end: int) -> "Label":
        return Label(start, end, self.name, self.offset + (start - self.start), self.dev, self.ino,
                     self.shared, self.slot, self.maywrite)


_shared_anon_ino = itertools.count(1 << 20)  # shared anonymous mappings' "/dev/zero" inodes


class MemoryManager:
    def __init__(self, reserved: list[tuple[int, int]]):
        self.reserved = list(reserved)
        self.labels: list[Label] = []  # sorted, non-overlapping
        self.brk_start = 0
        self.brk = 0
        self.brk_mapped = 0
        self.stack = (0, 0)
        self.users = 0  # tasks sharing it (CLONE_VM)
        self.arg_range = (0, 0)
        self.env_range = (0, 0)

    def fork(self) -> "MemoryManager":
        new = MemoryManager(self.reserved)
        new.labels = [Label(**vars(l)) for l in self.labels]
        new.brk_start, new.brk, new.brk_mapped = self.brk_start, self.brk, self.brk_mapped
        new.stack, new.arg_range, new.env_range = self.stack, self.arg_range, self.env_range
        return new

    # --- checks ---
    def _check_range(self, addr: int, length: int) -> None:
        if addr & (PAGE - 1) or length <= 0 or addr + length > TASK_SIZE:
            raise fserr(errno.EINVAL)
        for lo, hi in self.reserved:
            if addr < hi and lo < addr + length:
                raise fserr(errno.EINVAL)

    def _overlaps_reserved(self, addr: int, length: int) -> bool:
        return any(addr < hi and lo < addr + length for lo, hi in self.reserved)

    # --- labels ---
    def _unlabel(self, start: int, end: int) -> None:
        out = []
        for l in self.labels:
            if l.end <= start or l.start >= end:
                out.append(l)
                continue
            if l.start < start:
                out.append(l.cut(l.start, start))
            if l.end > end:
                out.append(l.cut(end, l.end))
        self.labels = out

    def label(self, start: int, end: int, name: bytes, offset: int = 0, dev: int = 0, ino: int = 0,
              shared: bool = False, slot=None, maywrite: bool = True) -> None:
        self._unlabel(start, end)
        i = bisect.bisect([l.start for l in self.labels], start)
        self.labels.insert(i, Label(start, end, name, offset, dev, ino, shared, slot, maywrite))

    def labels_in(self, start: int, end: int) -> list[Label]:
        return [l for l in self.labels if l.start < end and start < l.end]

    def label_at(self, addr: int) -> Label | None:
        for l in self.labels:
            if l.start <= addr < l.end:
                return l
        return None

    # --- operations (thread: a stopped platform thread using this mm) ---
    def mmap(self, thread, addr: int, length: int, prot: int, flags: int,
             contents: bytes | None = None, label: tuple | None = None) -> int:
        """Map anonymous memory (filled with `contents` if given) and return
        its address. Host errors come back as OSError."""
        if length <= 0:
            raise fserr(errno.EINVAL)
        length = page_up(length)
        if length > TASK_SIZE:
            raise fserr(errno.ENOMEM)
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            self._check_range(addr, length)
        elif self._overlaps_reserved(page_down(addr), length):
            addr = 0  # a hint into reserved space is ignored, as Linux ignores bad hints
        shared = (flags & MAP_TYPE) in (MAP_SHARED, MAP_SHARED_VALIDATE)
        # Shared mappings are shared anonymous memory on the host: a fork
        # shares it with its parent (a file's copy: writes do not reach the file).
        host_flags = (flags & HOST_FLAGS) | MAP_ANONYMOUS | (MAP_SHARED if shared else MAP_PRIVATE)
        # the host refuses forced writes into read-only shared memory:
        # fill it writable, then drop the write right
        fill_prot = prot | PROT_WRITE if contents and shared else prot
        r = thread.inject(NR_MMAP, addr, length, fill_prot, host_flags, -1, 0)
        if r < 0:
            raise fserr(-r)
        if self._overlaps_reserved(r, length):  # cannot happen: the host keeps reserved pages mapped
            thread.inject(NR_MUNMAP, r, length)
            raise fserr(errno.ENOMEM)
        self._unlabel(r, r + length)
        if contents:
            thread.force_write(r, contents)
            if fill_prot != prot:
                thread.inject(NR_MPROTECT, r, length, prot)
        if shared and label is None:  # named as Linux names it in /proc/pid/maps
            label = (b"/dev/zero (deleted)", 0, 0, next(_shared_anon_ino))
        if label is not None:
            self.label(r, r + length, *label, shared=shared)
        return r

    def map_image(self, thread, addr: int, length: int, prot: int, fd: int, offset: int,
                  shared: bool = False) -> None:
        """Map bytes of one of the platform's memfds (the image store, or
        the file cache's slot of a file) at a fixed address inside a range
        this mm already holds (exec, file mmap). Only a file cache slot is
        ever mapped shared."""
        kind = MAP_SHARED if shared else MAP_PRIVATE
        r = thread.inject(NR_MMAP, addr, length, prot, kind | MAP_FIXED, fd, offset)
        if r < 0:
            raise fserr(-r)

    def munmap(self, thread, addr: int, length: int) -> int:
        self._check_range(addr, page_up(length) if length > 0 else 0)
        r = thread.inject(NR_MUNMAP, addr, page_up(length))
        if r < 0:
            raise fserr(-r)
        self._unlabel(addr, addr + page_up(length))
        return 0

    def mprotect(self, thread, addr: int, length: int, prot: int) -> int:
        if addr & (PAGE - 1):
            raise fserr(errno.EINVAL)
        if length == 0:
            return 0
        self._check_range(addr, page_up(length))
        if prot & PROT_WRITE and any(not l.maywrite for l in self.labels_in(addr, addr + page_up(length))):
            raise fserr(errno.EACCES)  # a shared mapping of a file opened read-only
        r = thread.inject(NR_MPROTECT, addr, page_up(length), prot)
        if r < 0:
            raise fserr(-r)
        return 0

    def madvise(self, thread, addr: int, length: int, advice: int) -> int:
        if addr & (PAGE - 1):
            raise fserr(errno.EINVAL)
        if length == 0:
            return 0
        self._check_range(addr, page_up(length))
        r = thread.inject(NR_MADVISE, addr, length, advice)
        if r < 0:
            raise fserr(-r)
        return 0

    def mremap(self, thread, old: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
        self._check_range(old, max(page_up(old_len), PAGE))
        if flags & 2:  # MREMAP_FIXED
            self._check_range(new_addr, page_up(new_len))
        lab = self.label_at(old)
        if lab is not None and lab.slot is not None and new_len > old_len and \
                lab.offset + (old - lab.start) + page_up(new_len) > lab.slot.capacity:
            raise fserr(errno.ENOMEM)  # it would show bytes past the file's slot
        r = thread.inject(NR_MREMAP, old, old_len, new_len, flags, new_addr)
        if r < 0:
            raise fserr(-r)
        if self._overlaps_reserved(r, page_up(new_len)):
            raise fserr(errno.ENOMEM)
        if r != old:
            self._unlabel(old, old + page_up(old_len))
        self._unlabel(r, r + page_up(new_len))
        if lab is not None:
            moved = lab.cut(old, old + page_up(new_len))
            self.label(r, r + page_up(new_len), moved.name, moved.offset, moved.dev, moved.ino, moved.shared,
                       moved.slot, moved.maywrite)
        return r

    def set_brk(self, thread, addr: int) -> int:
        """brk(2): returns the new break, or the old one on failure."""
        if addr < self.brk_start:
            return self.brk
        end = page_up(addr)
        if end > self.brk_mapped:
            r = thread.inject(NR_MMAP, self.brk_mapped, end - self.brk_mapped,
                              PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
            if r < 0 or r != self.brk_mapped:
                return self.brk
            self.label(self.brk_start, end, b"[heap]")
            self.brk_mapped = end
        elif end < self.brk_mapped:
            thread.inject(NR_MUNMAP, end, self.brk_mapped - end)
            self._unlabel(end, self.brk_mapped)
            self.brk_mapped = end
        self.brk = addr
        return addr

    # --- /proc/pid/maps ---
    def maps_text(self, host_maps: str) -> bytes:
        """The guest's view of the host's maps of its process: platform
        pages hidden, anonymous ranges named from the labels."""
        out = []
        for line in host_maps.splitlines():
            parts = line.split(None, 5)
            if len(parts) < 5:
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5].strip() if len(parts) > 5 else ""
            if self._overlaps_reserved(lo, hi - lo) or name == "[stack]":
                continue
            perms = parts[1]
            if name in ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]"):
                out.append((lo, hi, perms, 0, 0, 0, name.encode()))
                continue
            # split [lo, hi) by labels
            pos = lo
            for l in self.labels:
                if l.end <= pos or l.start >= hi:
                    continue
                if l.start > pos:
                    out.append((pos, l.start, perms, 0, 0, 0, b""))
                    pos = l.start
                s, e = max(pos, l.start), min(hi, l.end)
                out.append((s, e, perms, l.offset + (s - l.start), l.dev, l.ino, l.name))
                pos = e
            if pos < hi:
                stack = self.stack[0] <= pos < self.stack[1]
                out.append((pos, hi, perms, 0, 0, 0, b"[stack]" if stack else b""))
        lines = []
        for lo, hi, perms, off, dev, ino, name in out:
            head = f"{lo:08x}-{hi:08x} {perms} {off:08x} {dev >> 8:02x}:{dev & 0xff:02x} {ino}"
            lines.append(head.encode() + (b" " * max(1, 73 - len(head)) + name if name else b"") + b"\n")
        return b"".join(lines)
