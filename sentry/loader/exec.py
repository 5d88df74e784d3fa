"""execve: find the program through the VFS, follow `#!`, read the ELF
(and its PT_INTERP), then, in the fresh stub address space, map the
segments and build the initial stack the way Linux does.

prepare() runs before the point of no return and raises OSError with
Linux's errno; load() runs after the stub exec.
"""
from __future__ import annotations

import collections
import errno
import os
import stat as S
import struct
from dataclasses import dataclass

from vfs.file import O_RDONLY
from vfs.inode import fserr
from vfs.path import MS_NOEXEC, X_OK, Location, may_access

from ..mm.mm import (MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PAGE, PROT_READ, PROT_WRITE,
                     STACK_SIZE, page_down, page_up)
from . import elf

BINPRM_BUF_SIZE = 256      # how much of a `#!` line Linux reads
MAX_INTERP_DEPTH = 4       # nested `#!` interpreters before ELOOP
MAX_ARG_STRLEN = 32 * PAGE  # one argv/envp string
RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF


def stack_size(rlimit_soft: int) -> int:
    """The new image's stack: RLIMIT_STACK's soft limit, within 128 KiB
    and 1 GiB (it is reserved at exec, not grown; unlimited gives 64 MiB)."""
    if rlimit_soft == RLIM_INFINITY:
        return 64 << 20
    return page_up(min(max(rlimit_soft, 128 << 10), 1 << 30))


def arg_max(rlimit_soft: int) -> int:
    """All of argv + envp: a quarter of the stack limit, at most 6 MiB and
    at least 128 KiB, as Linux."""
    return max(min(6 << 20, rlimit_soft // 4), 128 << 10)
ET_DYN_BASE_HINT = 0x5555_5555_4000  # where Linux puts PIE programs

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_SYSINFO_EHDR, AT_MINSIGSTKSZ = 23, 25, 26, 31, 33, 51


@dataclass
class Binary:
    loc: Location
    data: bytes
    image: elf.ElfImage
    path: bytes  # as named (for AT_EXECFN and /proc/pid/exe)


@dataclass
class ExecPlan:
    main: Binary
    interp: Binary | None
    argv: list[bytes]
    envp: list[bytes]
    filename: bytes
    stack_size: int = STACK_SIZE
    secure: bool = False        # AT_SECURE: set-ID or capability-raising exec (set by the caller)


def _read_all(loc: Location) -> bytes:
    impl = loc.inode.open(O_RDONLY)
    try:
        chunks, off = [], 0
        while True:
            chunk = impl.pread(1 << 22, off)
            if not chunk:
                break
            chunks.append(chunk)
            off += len(chunk)
        return b"".join(chunks)
    finally:
        impl.release()


class _ImageCache:
    """Programs and interpreters read for exec, by (dev, ino), valid while
    size, mtime and ctime are unchanged (any write changes them). A shell
    loop execs the same few files over and over; reading each anew
    through the gofer cost more than the rest of exec."""
    LIMIT = 256 << 20  # bytes kept

    def __init__(self):
        self.entries: collections.OrderedDict = collections.OrderedDict()
        self.size = 0

    def read(self, loc: Location) -> bytes:
        st = loc.inode.stat()
        key, stamp = (st.dev, st.ino), (st.size, st.mtime_ns, st.ctime_ns)
        hit = self.entries.get(key)
        if hit is not None and hit[0] == stamp:
            self.entries.move_to_end(key)
            return hit[1]
        data = _read_all(loc)
        if hit is not None:
            self.size -= len(self.entries.pop(key)[1])
        if len(data) <= self.LIMIT // 8:
            self.entries[key] = (stamp, data)
            self.size += len(data)
            while self.size > self.LIMIT:
                self.size -= len(self.entries.popitem(last=False)[1][1])
        return data


_images = _ImageCache()


def _open_exec(mounts, ctx, path: bytes, start: Location | None) -> tuple[Location, bytes]:
    loc = mounts.resolve(ctx, path, start=start)
    st = loc.inode.stat()
    if S.S_ISDIR(st.mode) or not S.S_ISREG(st.mode):
        raise fserr(errno.EACCES)
    if loc.mount.flags & MS_NOEXEC or not may_access(st, ctx.creds, X_OK):
        raise fserr(errno.EACCES)
    return loc, _images.read(loc)


def _parse_shebang(data: bytes) -> tuple[bytes, bytes | None]:
    """The interpreter and its one optional argument from a `#!` line."""
    line = data[2:BINPRM_BUF_SIZE]
    nl = line.find(b"\n")
    if nl >= 0:
        line = line[:nl]
    elif len(data) >= BINPRM_BUF_SIZE and line.strip(b" \t"):
        # Linux: a line longer than the buffer must not be truncated silently
        if not line.lstrip(b" \t").split(None, 1)[1:]:
            raise fserr(errno.ENOEXEC)
    line = line.strip(b" \t\0")
    if not line:
        raise fserr(errno.ENOEXEC)
    parts = line.split(None, 1)
    interp = parts[0]
    arg = parts[1].strip(b" \t") if len(parts) > 1 else None
    return interp, arg or None


def check_args(argv: list[bytes], envp: list[bytes], limit: int) -> None:
    total = 0
    for s in argv + envp:
        if len(s) + 1 > MAX_ARG_STRLEN:
            raise fserr(errno.E2BIG)
        total += len(s) + 1 + 8
    if total > limit:
        raise fserr(errno.E2BIG)


def prepare(mounts, ctx, path: bytes, argv: list[bytes], envp: list[bytes],
            start: Location | None = None, stack_rlimit: int = STACK_SIZE) -> ExecPlan:
    check_args(argv, envp, arg_max(stack_rlimit))
    filename = path
    for _depth in range(MAX_INTERP_DEPTH + 1):
        loc, data = _open_exec(mounts, ctx, path, start)
        if data[:2] == b"#!":
            interp, arg = _parse_shebang(data)
            # argv[0] is replaced by interpreter [arg] script-path
            argv = [interp] + ([arg] if arg else []) + [path] + argv[1:]
            path, start = interp, None
            check_args(argv, envp, arg_max(stack_rlimit))
            continue
        if not elf.is_elf(data):
            raise fserr(errno.ENOEXEC)
        image = elf.parse(data)
        main = Binary(loc, data, image, path)
        interp = None
        if image.interp is not None:
            iloc = mounts.resolve(ctx, image.interp)
            if not S.S_ISREG(iloc.inode.stat().mode):
                raise fserr(errno.EACCES)
            idata = _images.read(iloc)
            if not elf.is_elf(idata):
                raise fserr(errno.ELIBBAD)
            iimage = elf.parse(idata)
            if iimage.interp is not None:
                raise fserr(errno.ELIBBAD)
            interp = Binary(iloc, idata, iimage, image.interp)
        return ExecPlan(main, interp, argv, envp, filename, stack_size(stack_rlimit))
    raise fserr(errno.ELOOP)


def _map_image(thread, mm, b: Binary, fixed: bool, hint: int, name: bytes, images) -> int:
    """Map one ELF image; returns the load bias."""
    img = b.image
    lo, hi = img.lo, img.hi
    span = hi - lo
    if fixed:
        base = mm.mmap(thread, lo, span, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    else:
        base = mm.mmap(thread, hint, span, 0, MAP_PRIVATE | MAP_ANONYMOUS)
    bias = base - lo
    st = b.loc.inode.stat()
    spans = [(page_down(seg.vaddr), page_up(seg.vaddr + seg.memsz), seg.prot) for seg in img.segments]
    for seg, (start, end, _) in zip(img.segments, spans):
        mm.label(bias + start, bias + end, name, page_down(seg.offset), st.dev, st.ino)
    store_off = None
    if images is not None and not _pages_shared(spans):
        store_off = images.place((st.dev, st.ino, st.size, st.mtime_ns, st.ctime_ns), b.data)
    if store_off is None:
        _copy_segments(thread, mm, b, bias, spans)
        return bias
    # File pages come from the store; pages past the file's part stay the
    # reservation's anonymous zero pages.
    anon = []
    for seg, (start, end, prot) in zip(img.segments, spans):
        file_end = page_up(seg.vaddr + seg.filesz) if seg.filesz else start
        if seg.filesz:
            mm.map_image(thread, bias + start, file_end - start, prot, images.fd_in_guest,
                         store_off + page_down(seg.offset))
            if seg.memsz > seg.filesz and (seg.vaddr + seg.filesz) & (PAGE - 1):
                # the bss starts inside the last file page: zero its tail
                tail = seg.vaddr + seg.filesz
                thread.force_write(bias + tail, bytes(page_up(tail) - tail))
        if end > file_end:
            anon.append((file_end, end, prot))
    for start, end, prot in _protection_runs(anon):
        mm.mprotect(thread, bias + start, end - start, prot)
    return bias


def _pages_shared(spans) -> bool:
    """Do two segments touch the same page? Then each page's rights are
    the union of both, and the copying path handles it."""
    ordered = sorted(spans)
    return any(a[1] > b[0] for a, b in zip(ordered, ordered[1:]))


def _copy_segments(thread, mm, b: Binary, bias: int, spans) -> None:
    """Write the file's bytes into the anonymous reservation, then set
    protections per run of pages (a page shared by two segments gets both
    segments' rights, as with Linux's overlapping mappings)."""
    data = memoryview(b.data)
    for seg in b.image.segments:
        if seg.filesz:
            thread.force_write(bias + seg.vaddr, data[seg.offset:seg.offset + seg.filesz])
    for start, end, prot in _protection_runs(spans):
        mm.mprotect(thread, bias + start, end - start, prot)


def _protection_runs(spans):
    """(start, end, prot) page spans, possibly overlapping -> disjoint runs
    whose prot is the union of the spans covering them, neighbours with the
    same prot merged. Pages no span covers stay as mapped (PROT_NONE)."""
    cuts = sorted({x for s, e, _ in spans for x in (s, e)})
    runs = []
    for lo, hi in zip(cuts, cuts[1:]):
        covering = [p for s, e, p in spans if s <= lo and hi <= e]
        if not covering:
            continue
        prot = 0
        for p in covering:
            prot |= p
        if runs and runs[-1][1] == lo and runs[-1][2] == prot:
            runs[-1] = (runs[-1][0], hi, prot)
        else:
            runs.append((lo, hi, prot))
    return runs


@dataclass
class Loaded:
    entry: int
    sp: int
    brk: int


def load(thread, mm, plan: ExecPlan, creds, vdso: int, hwcap: int, hwcap2: int,
         minsigstksz: int, exe_path: bytes, images=None) -> Loaded:
    """Map plan's program (and interpreter) into thread's fresh address
    space and build its stack. `images` is the platform's image store
    (None: copy the bytes in)."""
    main = plan.main
    fixed = main.image.type == elf.ET_EXEC
    bias = _map_image(thread, mm, main, fixed, 0 if fixed else ET_DYN_BASE_HINT, exe_path, images)
    entry = bias + main.image.entry
    interp_base = 0
    if plan.interp is not None:
        ibias = _map_image(thread, mm, plan.interp, False, 0, plan.interp.path, images)
        interp_base = ibias + plan.interp.image.lo
        rip = ibias + plan.interp.image.entry
    else:
        rip = entry
    brk = bias + main.image.hi
    mm.brk_start = mm.brk = mm.brk_mapped = brk

    # The stack: reserved whole (not growable); argv/envp/auxv at its top.
    stack_lo = mm.mmap(thread, 0, plan.stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    stack_hi = stack_lo + plan.stack_size
    mm.stack = (stack_lo, stack_hi)

    top = stack_hi - 8
    blob = bytearray()
    def lay(s: bytes) -> int:
        pos = len(blob)
        blob.extend(s)
        return pos
    rand_pos = lay(os.urandom(16))
    plat_pos = lay(b"x86_64\0")
    arg_pos = [lay(s + b"\0") for s in plan.argv]
    env_pos = [lay(s + b"\0") for s in plan.envp]
    execfn_pos = lay(plan.filename + b"\0")
    blob_base = (top - len(blob)) & ~0xF
    mm.arg_range = (blob_base + arg_pos[0], blob_base + (env_pos[0] if env_pos else execfn_pos)) if arg_pos else (0, 0)
    mm.env_range = (blob_base + env_pos[0], blob_base + execfn_pos) if env_pos else (0, 0)
    auxv = [
        (AT_SYSINFO_EHDR, vdso), (AT_MINSIGSTKSZ, minsigstksz), (AT_HWCAP, hwcap),
        (AT_PAGESZ, PAGE), (AT_CLKTCK, 100),
        (AT_PHDR, main.image.phdr_addr(bias)), (AT_PHENT, elf.PHDR.size), (AT_PHNUM, main.image.phnum),
        (AT_BASE, interp_base), (AT_FLAGS, 0), (AT_ENTRY, entry),
        (AT_UID, creds.uid), (AT_EUID, creds.euid), (AT_GID, creds.gid), (AT_EGID, creds.egid),
        (AT_SECURE, int(plan.secure)), (AT_RANDOM, blob_base + rand_pos), (AT_HWCAP2, hwcap2),
        (AT_EXECFN, blob_base + execfn_pos), (AT_PLATFORM, blob_base + plat_pos), (AT_NULL, 0),
    ]
    if not vdso:
        auxv = auxv[1:]
    words = [len(plan.argv)] + [blob_base + p for p in arg_pos] + [0] + \
            [blob_base + p for p in env_pos] + [0]
    for k, v in auxv:
        words += [k, v]
    table = struct.pack(f"<{len(words)}Q", *words)
    sp = (blob_base - len(table)) & ~0xF
    thread.write(sp, table)
    thread.write(blob_base, bytes(blob))
    return Loaded(entry=rip, sp=sp, brk=brk)

