"""Memory syscalls: thin wrappers over sentry.mm.MemoryManager."""
from __future__ import annotations

import errno
import stat as S

from vfs.inode import fserr

from ..mm.mm import (MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE, MAP_TYPE,
                     PAGE, PROT_WRITE, page_up)
from ..memfd import WRITE_SEALS
from .table import PARTIAL, syscall
from .util import s32

PROT_MASK = 0x7 | 0x01000000 | 0x02000000  # READ|WRITE|EXEC|GROWSDOWN|GROWSUP


@syscall("mmap", support=PARTIAL,
         note="pages past the end of a file read as zeros (no SIGBUS); a private mapping of a file "
              "never mapped shared shows it as it was when mapped")
def sys_mmap(k, t, addr, length, prot, flags, fd, offset):
    mm = t.tg.mm
    kind = flags & MAP_TYPE
    if kind not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE) or length == 0:
        raise fserr(errno.EINVAL)
    if offset & (PAGE - 1) or prot & ~PROT_MASK:
        raise fserr(errno.EINVAL)
    if _over_as_limit(t, page_up(length)):
        raise fserr(errno.ENOMEM)
    if flags & MAP_ANONYMOUS:
        return mm.mmap(t.thread, addr, length, prot, flags)
    desc = t.tg.fdtable.get(s32(fd))
    if not desc.readable:
        raise fserr(errno.EACCES)
    if kind != MAP_PRIVATE and prot & PROT_WRITE and not desc.writable:
        raise fserr(errno.EACCES)
    inode = desc.inode
    if inode is None:
        raise fserr(errno.ENODEV)
    st = inode.stat()
    if S.S_ISCHR(st.mode) and st.rdev == (1 << 8 | 5):  # /dev/zero: anonymous memory
        return mm.mmap(t.thread, addr, length, prot, flags | MAP_ANONYMOUS)
    if not S.S_ISREG(st.mode):
        raise fserr(errno.ENODEV)
    if desc.location is not None and desc.location.mount.flags & 8 and prot & 4:  # MS_NOEXEC
        raise fserr(errno.EPERM)
    size = page_up(length)
    path = k.mounts.path_of(desc.location, t.tg.fs.root) if desc.location else b""
    label = (path, offset, st.dev, st.ino)
    cache = getattr(k.platform, "file_cache", None)
    if cache is not None and (kind != MAP_PRIVATE or inode.page_cache is not None):
        return _map_slot(t, cache, desc, addr, length, prot, flags, offset, label)
    store = getattr(k.platform, "images", None)
    shown = min(size, page_up(st.size) - offset)  # pages of the file the mapping shows
    if kind == MAP_PRIVATE and store is not None and shown >= STORE_MIN and st.size <= STORE_MAX_FILE:
        off = store.place((st.dev, st.ino, st.size, st.mtime_ns, st.ctime_ns),
                          lambda: _whole_file(desc.impl, st.size), st.size)
        if off is not None:
            r = mm.mmap(t.thread, addr, length, prot, flags | MAP_ANONYMOUS, label=label)
            mm.map_image(t.thread, r, shown, prot, store.fd_in_guest, off + offset)
            return r
    contents = desc.impl.pread(size, offset) if offset < st.size else b""
    return mm.mmap(t.thread, addr, length, prot, flags, contents=contents, label=label)


def _map_slot(t, cache, desc, addr, length, prot, flags, offset, label):
    """A shared mapping of a file (or a private one of a file that has
    shared pages): a view of the file's slot in the file cache."""
    mm = t.tg.mm
    shared = flags & MAP_TYPE != MAP_PRIVATE
    sealed = bool(getattr(desc.inode, "seals", 0) & WRITE_SEALS)  # a memfd's F_SEAL_(FUTURE_)WRITE
    if shared and sealed and prot & PROT_WRITE:
        raise fserr(errno.EPERM)
    slot = cache.slot_for(desc, offset + page_up(length))
    r = mm.mmap(t.thread, addr, length, prot, (flags & ~MAP_TYPE) | MAP_PRIVATE | MAP_ANONYMOUS)
    mm.map_image(t.thread, r, page_up(length), prot, cache.fd_in_guest, slot.base + offset, shared=shared)
    mm.label(r, r + page_up(length), *label, shared=shared, slot=slot,
             maywrite=not shared or (desc.writable and not sealed))
    return r


# Private file mappings of at least STORE_MIN bytes (shared libraries, big
# programs) are views of the platform's image store: the file is read once
# per sandbox, not once per mapping. Smaller ones are cheaper to copy.
STORE_MIN, STORE_MAX_FILE = 16 << 10, 64 << 20


def _whole_file(impl, size: int) -> bytes:
    chunks, off = [], 0
    while off < size:
        chunk = impl.pread(min(size - off, 4 << 20), off)
        if not chunk:
            break
        chunks.append(chunk)
        off += len(chunk)
    return b"".join(chunks)


@syscall("munmap")
def sys_munmap(k, t, addr, length, *_):
    if length == 0:
        raise fserr(errno.EINVAL)
    mm = t.tg.mm
    file_pages = any(l.slot is not None for l in mm.labels_in(addr, addr + page_up(length)))
    r = mm.munmap(t.thread, addr, length)
    if file_pages:
        k.release_file_pages()
    return r


@syscall("mprotect", "pkey_mprotect")
def sys_mprotect(k, t, addr, length, prot, *_):
    if prot & ~PROT_MASK:
        raise fserr(errno.EINVAL)
    return t.tg.mm.mprotect(t.thread, addr, length, prot)


@syscall("madvise", support=PARTIAL, note="MADV_DONTNEED on a file mapping zero-fills instead of re-reading")
def sys_madvise(k, t, addr, length, advice, *_):
    return t.tg.mm.madvise(t.thread, addr, length, advice)


@syscall("mremap")
def sys_mremap(k, t, old, old_len, new_len, flags, new_addr, *_):
    if flags & ~7 or new_len == 0:
        raise fserr(errno.EINVAL)
    if new_len > old_len and _over_as_limit(t, new_len - old_len):
        raise fserr(errno.ENOMEM)
    return t.tg.mm.mremap(t.thread, old, old_len, new_len, flags, new_addr)


@syscall("brk")
def sys_brk(k, t, addr, *_):
    mm = t.tg.mm
    if addr > mm.brk_mapped and _over_as_limit(t, page_up(addr) - mm.brk_mapped):
        return mm.brk
    return mm.set_brk(t.thread, addr)


RLIMIT_AS, RLIM_INFINITY = 9, 0xFFFFFFFFFFFFFFFF


def _over_as_limit(t, more: int) -> bool:
    """RLIMIT_AS: would `more` bytes take the address space past the soft
    limit? The host's count of the process's mappings answers (looked up
    only when a limit is set)."""
    soft = t.tg.rlimits.get(RLIMIT_AS, (RLIM_INFINITY,))[0]
    if soft == RLIM_INFINITY:
        return False
    try:
        with open(f"/proc/{t.thread.pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024 + more > soft
    except OSError:
        pass
    return False


@syscall("msync")
def sys_msync(k, t, addr, length, flags, *_):
    if addr & (PAGE - 1) or flags & ~7 or (flags & 1 and flags & 4):
        raise fserr(errno.EINVAL)
    r = t.thread.inject(26, addr, length, 0)  # the host says ENOMEM for unmapped pages
    if r < 0:
        raise fserr(-r)
    # MS_SYNC and MS_ASYNC alike: the file gets the mapped pages now
    for slot in {l.slot for l in t.tg.mm.labels_in(addr, addr + page_up(length)) if l.slot is not None}:
        slot.writeback()
    return 0


@syscall("mlock", "munlock", "mlock2", "mlockall", "munlockall",
         support=PARTIAL, note="accepted; pages are not pinned")
def sys_mlock(k, t, *_):
    return 0


@syscall("mincore")
def sys_mincore(k, t, addr, length, vec, *_):
    # the host answers for the guest's own pages (ENOMEM for holes)
    if addr & (PAGE - 1):
        raise fserr(errno.EINVAL)
    if t.tg.mm._overlaps_reserved(addr, page_up(length)):
        raise fserr(errno.ENOMEM)
    r = t.thread.inject(27, addr, length, vec)
    if r < 0:
        raise fserr(-r)
    return 0


@syscall("membarrier", support=PARTIAL, note="QUERY and the private/global barriers succeed")
def sys_membarrier(k, t, cmd, flags, *_):
    if cmd == 0:  # MEMBARRIER_CMD_QUERY
        return 1 | 8 | 16
    return 0



