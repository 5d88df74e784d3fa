"""The stub: a tiny static ELF that guest host processes exec to get a
clean address space.

It is written byte by byte here (no compiler at run time) into a sealed
memfd. Its one page, at a fixed address no guest mapping may touch, holds:
  GADGET  `syscall; int3`: the sentry injects a host syscall by pointing
          rip here and resuming; the int3 stops the thread right after.
  NULLS   eight zero bytes: an empty string and a NULL pointer array, the
          path/argv/envp of the stub's own execveat.
  ENTRY   `int3`: the stub never runs on its own; the sentry takes over at
          the exec stop and loads the guest program.
"""
from __future__ import annotations

import os
import struct

STUB_BASE = 0x6FFF_0000_0000
STUB_SIZE = 0x1000
CODE_OFF = 0x80
GADGET = STUB_BASE + CODE_OFF
NULLS = STUB_BASE + CODE_OFF + 8
ENTRY = STUB_BASE + CODE_OFF + 16

_SYSCALL_INT3 = b"\x0f\x05\xcc"
_INT3 = b"\xcc"


def stub_image() -> bytes:
    code = (_SYSCALL_INT3.ljust(8, _INT3) + b"\0" * 8 + _INT3 * 16)
    size = CODE_OFF + len(code)
    ehdr = struct.pack(
        "<4sBBBBB7xHHIQQQIHHHHHH",
        b"\x7fELF", 2, 1, 1, 0, 0,  # ELFCLASS64, little endian, version, SYSV ABI
        2, 0x3E, 1,                 # ET_EXEC, EM_X86_64, EV_CURRENT
        ENTRY, 64, 0,               # entry, phoff, shoff
        0, 64, 56, 1, 64, 0, 0)     # flags, ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    phdr = struct.pack(
        "<IIQQQQQQ",
        1, 5,                       # PT_LOAD, PF_R | PF_X
        0, STUB_BASE, STUB_BASE,    # offset, vaddr, paddr
        size, size, 0x1000)         # filesz, memsz, align
    image = (ehdr + phdr).ljust(CODE_OFF, b"\0") + code
    assert len(image) == size
    return image


def stub_memfd() -> int:
    """A sealed, executable memfd holding the stub (close-on-exec in the
    sentry; the spawn code makes it fd 3 in each guest)."""
    fd = os.memfd_create("pyrunsc-stub", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, stub_image())
    import fcntl
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd
