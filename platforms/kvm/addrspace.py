"""One guest address space on the KVM platform: the mmap family the
sentry's memory manager injects (sentry/mm/mm.py), carried out on the VM's
page tables and guest RAM instead of a host process.

A mapping is a Vma (range and protection); its pages get guest RAM only
when first touched (a #PF from the guest, or a sentry read/write), as
fresh zeroed pages. Only anonymous memory exists here: the platform has no
image store or file cache, so the sentry copies file bytes in (private
file mappings; MAP_SHARED file mappings become private copies, see
docs/kvm.md). Results are raw syscall results (-errno), as the host's
would be.
"""
from __future__ import annotations

import bisect
import errno

from platforms.kvm.layout import PAGE

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_FIXED, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x10, 0x20, 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MADV_DONTNEED, MADV_FREE = 4, 8
TASK_SIZE = 0x7FFF_FFFF_F000
MMAP_TOP = 0x7FFF_F000_0000   # top-down placement starts below here, as Linux's mmap_base
MMAP_BOTTOM = 0x1_0000        # vm.mmap_min_addr
NR_MMAP, NR_MPROTECT, NR_MUNMAP, NR_MREMAP, NR_MADVISE, NR_MSYNC, NR_MINCORE = 9, 10, 11, 25, 28, 26, 27
_ZERO = bytes(PAGE)


def _up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


class Vma:
    __slots__ = ("start", "end", "prot")

    def __init__(self, start: int, end: int, prot: int):
        self.start, self.end, self.prot = start, end, prot


class PagePool:
    """Guest RAM pages for programs: a free list over what Vm.alloc hands out."""

    def __init__(self, vm):
        self.vm = vm
        self.free: list[int] = []

    def take(self) -> int:
        pa = self.free.pop() if self.free else self.vm.alloc(PAGE)
        self.vm.mem.view[pa:pa + PAGE] = _ZERO
        return pa

    def give(self, pa: int) -> None:
        self.free.append(pa)


class AddressSpace:
    def __init__(self, vm, pool: PagePool):
        self.vm = vm
        self.pool = pool
        self.vmas: list[Vma] = []    # sorted, non-overlapping
        self.pages: dict[int, int] = {}  # page va -> pa, for pages that have RAM

    # --- lookups ---
    def vma_at(self, va: int) -> Vma | None:
        i = bisect.bisect_right([v.start for v in self.vmas], va) - 1
        if i >= 0 and self.vmas[i].start <= va < self.vmas[i].end:
            return self.vmas[i]
        return None

    def _overlapping(self, start: int, end: int) -> list[Vma]:
        return [v for v in self.vmas if v.start < end and start < v.end]

    def _covered(self, start: int, end: int) -> bool:
        pos = start
        for v in self._overlapping(start, end):
            if v.start > pos:
                return False
            pos = v.end
        return pos >= end

    def _free_range(self, length: int, hint: int) -> int:
        """A free range of length: at hint if it is free, else top-down."""
        if hint and MMAP_BOTTOM <= hint and hint + length <= TASK_SIZE and not self._overlapping(hint, hint + length):
            return hint
        top = MMAP_TOP
        for v in reversed(self.vmas):
            if v.start >= top:
                continue
            if v.end <= top - length:
                return top - length
            top = v.start
        if top - length >= MMAP_BOTTOM:
            return top - length
        return -errno.ENOMEM

    # --- pages ---
    def _drop_pages(self, start: int, end: int) -> None:
        """Take RAM away from [start, end): the PTEs go (with the poke
        that makes KVM see it) and the pages return to the pool."""
        for va in self._pages_in(start, end):
            pa = self.pages.pop(va)
            self.vm.unmap(va, PAGE)
            self.pool.give(pa)

    def _pages_in(self, start: int, end: int) -> list[int]:
        if end - start > 64 * PAGE:
            return sorted(p for p in self.pages if start <= p < end)
        return [p for p in range(start, end, PAGE) if p in self.pages]

    def _map_page(self, va: int, pa: int, prot: int) -> None:
        if prot & 7:
            self.vm.map(va, pa, PAGE, prot)
        else:  # PROT_NONE: the RAM stays ours, the guest sees no page
            self.vm.unmap(va, PAGE)

    def populate(self, va: int) -> int:
        """The RAM page behind the page at va, made on first touch."""
        va &= ~(PAGE - 1)
        pa = self.pages.get(va)
        if pa is None:
            v = self.vma_at(va)
            pa = self.pool.take()
            self.pages[va] = pa
            self._map_page(va, pa, v.prot if v is not None else 0)
        return pa

    def _set_prot(self, start: int, end: int, prot: int) -> None:
        mem = self.vm.mem
        for va in self._pages_in(start, end):
            pa = self.pages[va]
            self._map_page(va, pa, prot)
            mem.poke(pa, PAGE)  # a changed live PTE is seen only after the poke

    # --- the VMA list ---
    def _cut(self, start: int, end: int) -> None:
        """Split VMAs at start and end, then remove the ones inside."""
        out = []
        for v in self.vmas:
            if v.end <= start or v.start >= end:
                out.append(v)
                continue
            if v.start < start:
                out.append(Vma(v.start, start, v.prot))
            if v.end > end:
                out.append(Vma(end, v.end, v.prot))
        self.vmas = out

    def _insert(self, start: int, end: int, prot: int) -> None:
        self._cut(start, end)
        i = bisect.bisect([v.start for v in self.vmas], start)
        self.vmas.insert(i, Vma(start, end, prot))

    # --- the syscalls the memory manager injects ---
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
        if fd != -1 and fd != 0xFFFFFFFFFFFFFFFF and not flags & MAP_ANONYMOUS:
            return -errno.ENODEV  # no host file can back guest memory here
        length = _up(length)
        if length <= 0 or length > TASK_SIZE:
            return -errno.ENOMEM
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            if addr % PAGE or addr + length > TASK_SIZE or addr < MMAP_BOTTOM:
                return -errno.EINVAL if addr % PAGE else -errno.EPERM
            if self._overlapping(addr, addr + length):
                if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED:
                    return -errno.EEXIST
                self._drop_pages(addr, addr + length)
        else:
            addr = self._free_range(length, addr & ~(PAGE - 1))
            if addr < 0:
                return addr
        self._insert(addr, addr + length, prot & 7)
        return addr

    def munmap(self, addr: int, length: int) -> int:
        if addr % PAGE or length <= 0 or addr + length > TASK_SIZE:
            return -errno.EINVAL
        end = addr + _up(length)
        self._drop_pages(addr, end)
        self._cut(addr, end)
        return 0

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        end = addr + _up(length)
        if addr % PAGE:
            return -errno.EINVAL
        if not self._covered(addr, end):
            return -errno.ENOMEM
        self._insert(addr, end, prot & 7)
        self._set_prot(addr, end, prot & 7)
        return 0

    def mremap(self, old: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
        old_len, new_len = _up(old_len), _up(new_len)
        v = self.vma_at(old)
        if old % PAGE or new_len == 0 or v is None or old + old_len > v.end:
            return -errno.EFAULT if v is None else -errno.EINVAL
        prot = v.prot
        if not flags & MREMAP_FIXED:
            if new_len <= old_len:
                if new_len < old_len:
                    self.munmap(old + new_len, old_len - new_len)
                return old
            if not self._overlapping(old + old_len, old + new_len) and old + new_len <= TASK_SIZE:
                self._insert(old + old_len, old + new_len, prot)
                self._insert(old, old + new_len, prot)
                return old
            if not flags & MREMAP_MAYMOVE:
                return -errno.ENOMEM
            dest = self._free_range(new_len, 0)
            if dest < 0:
                return dest
        else:
            if new_addr % PAGE or not flags & MREMAP_MAYMOVE:
                return -errno.EINVAL
            dest = new_addr
            self.munmap(dest, new_len)
        moved = {va: self.pages.pop(va) for va in self._pages_in(old, old + min(old_len, new_len))}
        for va, pa in moved.items():
            self.vm.unmap(va, PAGE)
        self._drop_pages(old, old + old_len)
        self._cut(old, old + old_len)
        self._insert(dest, dest + new_len, prot)
        for va, pa in moved.items():
            self.pages[dest + va - old] = pa
            self._map_page(dest + va - old, pa, prot)
        return dest

    def madvise(self, addr: int, length: int, advice: int) -> int:
        end = addr + _up(length)
        if not self._covered(addr, end):
            return -errno.ENOMEM
        if advice in (MADV_DONTNEED, MADV_FREE):
            self._drop_pages(addr, end)  # the next touch sees zeros, as for private anonymous memory
        return 0

    def mincore(self, addr: int, length: int, vec: int) -> int:
        end = addr + _up(length)
        if addr % PAGE:
            return -errno.EINVAL
        if not self._covered(addr, end):
            return -errno.ENOMEM
        try:
            self.write(vec, bytes(int(p in self.pages) for p in range(addr, end, PAGE)), force=False)
        except OSError:
            return -errno.EFAULT
        return 0

    def msync(self, addr: int, length: int) -> int:
        return 0 if self._covered(addr, addr + _up(length)) else -errno.ENOMEM

    def inject(self, nr: int, args: tuple) -> int:
        a = list(args) + [0] * (6 - len(args))
        if nr == NR_MMAP:
            return self.mmap(a[0], a[1], a[2], a[3], a[4], a[5])
        if nr == NR_MUNMAP:
            return self.munmap(a[0], a[1])
        if nr == NR_MPROTECT:
            return self.mprotect(a[0], a[1], a[2])
        if nr == NR_MREMAP:
            return self.mremap(a[0], a[1], a[2], a[3], a[4])
        if nr == NR_MADVISE:
            return self.madvise(a[0], a[1], a[2])
        if nr == NR_MINCORE:
            return self.mincore(a[0], a[1], a[2])
        if nr == NR_MSYNC:
            return self.msync(a[0], a[1])
        return -errno.ENOSYS

    # --- the sentry's access to guest memory ---
    def _page_for(self, va: int, need: int, force: bool) -> int:
        v = self.vma_at(va) if 0 <= va < TASK_SIZE else None
        if v is None or (not force and (v.prot & need) != need):
            raise OSError(errno.EFAULT, "bad address")
        return self.populate(va)

    def read(self, va: int, n: int) -> bytes:
        out = bytearray()
        view = self.vm.mem.view
        while n > 0:
            chunk = min(n, PAGE - va % PAGE)
            pa = self._page_for(va, PROT_READ, False) + va % PAGE
            out += view[pa:pa + chunk]
            va, n = va + chunk, n - chunk
        return bytes(out)

    def read_cstr(self, va: int, limit: int) -> bytes:
        out = bytearray()
        view = self.vm.mem.view
        while len(out) < limit:
            chunk = min(limit - len(out), PAGE - va % PAGE)
            pa = self._page_for(va, PROT_READ, False) + va % PAGE
            data = bytes(view[pa:pa + chunk])
            nul = data.find(b"\0")
            if nul >= 0:
                return bytes(out + data[:nul])
            out += data
            va += chunk
        return bytes(out)

    def write(self, va: int, data: bytes, force: bool) -> None:
        data = memoryview(data).cast("B")
        view = self.vm.mem.view
        while data:
            chunk = min(len(data), PAGE - va % PAGE)
            pa = self._page_for(va, PROT_WRITE, force) + va % PAGE
            view[pa:pa + chunk] = data[:chunk]
            va, data = va + chunk, data[chunk:]

    def fault(self, address: int, error_code: int) -> bool:
        """A #PF from the guest: True if it was a first touch of a page
        the program may access (now backed; retry the instruction), False
        if it is the program's fault (SIGSEGV)."""
        v = self.vma_at(address) if 0 <= address < TASK_SIZE else None
        if v is None or error_code & 1:  # unmapped, or a protection violation of a present page
            return False
        write, fetch = error_code & 2, error_code & 16
        if (write and not v.prot & PROT_WRITE) or (fetch and not v.prot & PROT_EXEC) or not v.prot & 7:
            return False
        self.populate(address)
        return True

    def release(self) -> None:
        """Give every page back (the process is gone)."""
        self._drop_pages(0, TASK_SIZE)
        self.vmas = []
