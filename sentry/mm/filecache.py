"""Shared pages of files: what a MAP_SHARED mapping of a file shows.

Guest memory is host memory the sentry maps into guest processes; a file
of the sandbox's VFS is not a host file a guest could map. So a file that
is mapped MAP_SHARED gets a *slot*: a range of one host memfd (the file
cache, open in every guest host process at the platform's fd 5) that
holds the file's bytes. Every shared mapping of the file, in any process,
maps the slot MAP_SHARED, so they all see one another's stores, and while
the slot exists it is the file's page cache: the sentry's read(2) and
write(2) of the file go to the slot too (vfs.file.FileDescription asks
`inode.page_cache`), so mappings and system calls agree, as on Linux. A
private mapping of a file that has a slot is a MAP_PRIVATE view of it.

Stores through mappings reach the file itself (written back) on msync,
fsync, when the last mapping of the file goes away, and when the sandbox
ends. Slots are never reused: each gets its own range of the sparse memfd,
its pages are freed (hole punched) when it is released.

Why this is safe: a guest can name no host fd (its syscalls stop in the
sentry); only the sentry's injected mmap names fd 5, with a range inside
the slot of a file the guest opened, with its access checked as for the
file itself. A mapping grown by mremap past its slot is refused.
"""
from __future__ import annotations

import ctypes
import errno
import os

from vfs.inode import fserr

GUEST_FD = 5
PAGE = 4096
SLOT_MIN = 64 << 20    # a slot has room for a file to grow while mapped
MEMFD_SIZE = 1 << 46   # sparse: pages exist only where a slot holds data
CHUNK = 4 << 20
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


def _page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


class Slot:
    __slots__ = ("cache", "inode", "base", "capacity", "writer")

    def __init__(self, cache: "FileCache", inode, base: int, capacity: int):
        self.cache = cache
        self.inode = inode
        self.base = base          # offset of file byte 0 in the memfd
        self.capacity = capacity  # bytes of the memfd set aside for the file
        self.writer = None        # a FileDescription open for writing: the write-back path

    # --- the page cache for the sentry's own reads and writes ---
    def read(self, size: int, offset: int, file_size: int) -> bytes:
        size = max(0, min(size, file_size - offset, self.capacity - offset))
        return os.pread(self.cache.fd, size, self.base + offset) if size else b""

    def write(self, data: bytes, offset: int) -> None:
        end = min(len(data), self.capacity - offset)
        view, done = memoryview(data)[:max(end, 0)], 0
        while done < len(view):
            done += os.pwrite(self.cache.fd, view[done:], self.base + offset + done)

    def resized(self, old: int, new: int) -> None:
        """The file was truncated or extended: bytes past the end read as zeros."""
        start = min(old, new)
        if start < self.capacity:
            tail = _page_up(start) - start
            if tail:
                self.write(bytes(min(tail, self.capacity - start)), start)
            hole = min(self.capacity, max(old, new)) - _page_up(start)
            if hole > 0:
                self.cache.punch(self.base + _page_up(start), _page_up(hole))

    # --- write-back ---
    def writeback(self) -> None:
        """Copy the slot's data pages into the file (through a description
        open for writing; none means no mapping could have written)."""
        if self.writer is None:
            return
        impl = self.writer.impl
        size = min(impl.size(), self.capacity)
        for off, length in self.cache.data_ranges(self.base, size):
            pos = 0
            while pos < length:
                piece = os.pread(self.cache.fd, min(CHUNK, length - pos), self.base + off + pos)
                if not piece:
                    break
                impl.pwrite(piece, off + pos)
                pos += len(piece)
        impl.fsync()


class FileCache:
    fd_in_guest = GUEST_FD

    def __init__(self):
        self.fd = os.memfd_create("pyrunsc-files", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, MEMFD_SIZE)
        self.end = 0
        self.slots: set[Slot] = set()

    def slot_for(self, desc, need: int) -> Slot:
        """The slot of desc's file, made and filled on first use; it has
        room for at least `need` bytes (offset + length of a mapping)."""
        inode = desc.inode
        slot = inode.page_cache
        if slot is None:
            size = desc.impl.size()
            capacity = max(SLOT_MIN, _page_up(2 * max(size, need)))
            if self.end + capacity > MEMFD_SIZE:
                raise fserr(errno.ENOMEM)
            slot = Slot(self, inode, self.end, capacity)
            self.end += capacity
            self._fill(slot, desc.impl, size)
            self.slots.add(slot)
            inode.page_cache = slot
        elif need > slot.capacity:
            raise fserr(errno.ENOMEM)  # the file outgrew its slot while mapped
        if desc.writable and slot.writer is None:
            slot.writer = desc.incref()
        return slot

    def _fill(self, slot: Slot, impl, size: int) -> None:
        """Copy the file in, leaving its holes (and zero chunks) as holes,
        so a sparse 4 GiB file costs little."""
        ranges = impl.data_ranges(size) if hasattr(impl, "data_ranges") else [(0, size)]
        for start, length in ranges:
            off, end = start, min(start + length, size)
            while off < end:
                piece = impl.pread(min(CHUNK, end - off), off)
                if not piece:
                    break
                if piece.count(0) != len(piece):
                    slot.write(piece, off)
                off += len(piece)

    def data_ranges(self, base: int, size: int):
        """(offset, length) of the written pages of [base, base + size)."""
        pos, end = base, base + size
        while pos < end:
            try:
                data = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                return
            if data >= end:
                return
            hole = min(os.lseek(self.fd, data, os.SEEK_HOLE), end)
            yield data - base, hole - data
            pos = hole

    def punch(self, offset: int, length: int) -> None:
        _fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)

    def release(self, slot: Slot) -> None:
        """No mapping shows the slot any more: write it back and free it."""
        try:
            slot.writeback()
        finally:
            self.slots.discard(slot)
            slot.inode.page_cache = None
            self.punch(slot.base, slot.capacity)
            if slot.writer is not None:
                slot.writer.decref()
                slot.writer = None

    def collect(self, mms) -> None:
        """Release the slots no live address space maps."""
        if not self.slots:
            return
        used = {l.slot for mm in mms for l in mm.labels if l.slot is not None}
        for slot in [s for s in self.slots if s not in used]:
            self.release(slot)

    def flush(self) -> None:
        """At the end of the sandbox: every slot's stores reach its file."""
        for slot in list(self.slots):
            self.release(slot)

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = -1


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """Python's os has posix_fallocate but not fallocate's hole punching."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
