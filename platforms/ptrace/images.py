"""The image store: one memfd shared by every guest host process (as fd 4),
holding the bytes of files guests exec or map privately.

Copying a program into fresh anonymous memory costs a page fault and a
copy per page at every exec. Instead the sentry writes a file's bytes
here once and maps them MAP_PRIVATE into each guest that needs them: the
host shares the pages until a guest writes one (copy on write).

Why this is safe: the memfd holds only bytes the sentry read for a guest
of this sandbox. Guests cannot name fd 4 themselves (their syscalls stop
in the sentry and never reach the host); only the sentry's injected mmap
does, always MAP_PRIVATE, so no guest write ever reaches the store.

Append-only: placed bytes are never rewritten or freed while the sandbox
lives, since guests' private mappings still read the pages they have not
written. When the store is full, callers fall back to copying.
"""
from __future__ import annotations

import os

GUEST_FD = 4
PAGE = 4096


class ImageStore:
    LIMIT = 1 << 30  # bytes of memfd (sparse until written)
    fd_in_guest = GUEST_FD

    def __init__(self):
        self.fd = os.memfd_create("pyrunsc-images", os.MFD_CLOEXEC)
        self.end = 0
        self.placed: dict = {}  # caller's key (identifies the bytes) -> offset

    def place(self, key, data, size: int = 0) -> int | None:
        """The page-aligned offset of `data` (bytes, or a function giving
        them) in the store, writing it the first time `key` is seen; None
        if the store is full. At least `size` bytes are set aside (zeros
        past the data), so a mapping of `size` bytes never shows another
        file's bytes even if fewer could be read."""
        off = self.placed.get(key)
        if off is not None:
            return off
        if callable(data):
            data = data()
        size = (max(len(data), size) + PAGE - 1) & ~(PAGE - 1)
        if self.end + size > self.LIMIT or not size:
            return None
        off = self.end
        view, done = memoryview(data), 0
        while done < len(data):
            done += os.pwrite(self.fd, view[done:], off + done)
        self.end += size
        os.ftruncate(self.fd, self.end)  # whole pages: no SIGBUS past the data
        self.placed[key] = off
        return off

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = -1
