"""Guest physical memory: one memfd, mapped shared into the sentry and
registered with KVM, so both see the same pages."""
import mmap
import os

from platforms.kvm._kvm import ffi
from platforms.kvm.layout import PAGE


class GuestMemory:
    """Guest RAM: a memfd mapped shared here; `view` is the sentry's window
    on guest physical addresses [0, size)."""

    def __init__(self, size: int):
        if size % PAGE:
            raise ValueError("guest memory size must be page aligned")
        self.size = size
        self.fd = os.memfd_create("pyrunsc-kvm-guest", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        self.view = memoryview(self.map)
        self._buf = ffi.from_buffer(self.map)
        self.host_addr = int(ffi.cast("uintptr_t", self._buf))

    def read(self, pa: int, n: int) -> bytes:
        return bytes(self.view[pa:pa + n])

    def write(self, pa: int, data: bytes) -> None:
        self.view[pa:pa + len(data)] = data

    def poke(self, pa: int, length: int) -> None:
        """Make KVM drop its translations of these pages (needed after a live
        PTE changes on this host): MADV_DONTNEED on our shared mapping fires
        the MMU notifier; the data stays in the memfd."""
        self.map.madvise(mmap.MADV_DONTNEED, pa, length)

    def close(self) -> None:
        if self.fd < 0:
            return
        ffi.release(self._buf)
        self.view.release()
        self.map.close()
        os.close(self.fd)
        self.fd = -1
