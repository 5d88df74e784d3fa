"""ELF64 header parsing for the loader: what to map where.

Only what execve needs: the file header, PT_LOAD segments, PT_INTERP and
PT_PHDR. Malformed files raise ENOEXEC (or EINVAL for an impossible
layout), never anything else.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from vfs.inode import fserr

ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK = 1, 3, 6, 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
MAX_PHNUM = 1024  # Linux refuses more than 64 KiB of program headers


@dataclass
class Segment:
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    @property
    def prot(self) -> int:
        # PF_R/PF_W/PF_X -> PROT_READ/PROT_WRITE/PROT_EXEC
        return ((self.flags & PF_R) and 1) | ((self.flags & PF_W) and 2) | ((self.flags & PF_X) and 4)


@dataclass
class ElfImage:
    type: int
    entry: int
    phoff: int
    phnum: int
    segments: list[Segment]
    interp: bytes | None
    phdr_vaddr: int | None

    @property
    def lo(self) -> int:
        return min(s.vaddr for s in self.segments) & ~0xFFF

    @property
    def hi(self) -> int:
        return (max(s.vaddr + s.memsz for s in self.segments) + 0xFFF) & ~0xFFF

    def phdr_addr(self, bias: int) -> int:
        """Where the program headers are in memory (AT_PHDR)."""
        if self.phdr_vaddr is not None:
            return bias + self.phdr_vaddr
        for s in self.segments:
            if s.offset <= self.phoff < s.offset + s.filesz:
                return bias + s.vaddr + (self.phoff - s.offset)
        return 0


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def parse(data: bytes) -> ElfImage:
    if len(data) < EHDR.size or not is_elf(data):
        raise fserr(errno.ENOEXEC)
    (ident, etype, machine, _version, entry, phoff, _shoff, _flags, _ehsize,
     phentsize, phnum, _shentsize, _shnum, _shstrndx) = EHDR.unpack_from(data)
    if ident[4] != 2 or ident[5] != 1:  # ELFCLASS64, little endian
        raise fserr(errno.ENOEXEC)
    if etype not in (ET_EXEC, ET_DYN) or machine != EM_X86_64:
        raise fserr(errno.ENOEXEC)
    if phentsize != PHDR.size or not 0 < phnum <= MAX_PHNUM or phoff + phnum * PHDR.size > len(data):
        raise fserr(errno.ENOEXEC)
    segments, interp, phdr_vaddr = [], None, None
    for i in range(phnum):
        ptype, pflags, off, vaddr, _paddr, filesz, memsz, _align = PHDR.unpack_from(data, phoff + i * PHDR.size)
        if ptype == PT_LOAD:
            if filesz > memsz or off + filesz > len(data) or (off - vaddr) & 0xFFF:
                raise fserr(errno.EINVAL if filesz > memsz else errno.ENOEXEC)
            if memsz:
                segments.append(Segment(vaddr, memsz, off, filesz, pflags))
        elif ptype == PT_INTERP:
            if interp is not None or filesz < 2 or filesz > 4096 or off + filesz > len(data):
                raise fserr(errno.ENOEXEC)
            raw = data[off:off + filesz]
            if raw[-1:] != b"\0":
                raise fserr(errno.ENOEXEC)
            interp = raw[:-1]
        elif ptype == PT_PHDR:
            phdr_vaddr = vaddr
    if not segments:
        raise fserr(errno.ENOEXEC)
    img = ElfImage(etype, entry, phoff, phnum, segments, interp, phdr_vaddr)
    if img.hi > 0x7FFF_FFFF_F000:
        raise fserr(errno.EINVAL)
    return img
