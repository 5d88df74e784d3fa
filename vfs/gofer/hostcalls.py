"""The few host calls the gofer needs that Python's os module lacks:
fstatfs (os.statvfs has no f_type), prctl, unshare (os.unshare is 3.12+),
capset, mount/umount2/pivot_root/mount_setattr, chmod and chown of an
O_PATH fd (fchmodat2/fchownat with AT_EMPTY_PATH) and a seccomp filter.
x86-64 / aarch64 Linux layouts; the seccomp filter is x86-64 only.
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_MACHINE = platform.machine()


class _StatfsBuf(ctypes.Structure):
    # struct statfs on 64-bit Linux: every __fsword_t is a long
    _fields_ = [("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long),
                ("f_blocks", ctypes.c_ulong), ("f_bfree", ctypes.c_ulong),
                ("f_bavail", ctypes.c_ulong), ("f_files", ctypes.c_ulong),
                ("f_ffree", ctypes.c_ulong), ("f_fsid", ctypes.c_int * 2),
                ("f_namelen", ctypes.c_long), ("f_frsize", ctypes.c_long),
                ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4)]


@dataclass
class HostStatfs:
    type: int
    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    fsid: int
    namelen: int


def fstatfs(fd: int) -> HostStatfs:
    buf = _StatfsBuf()
    if _libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    fsid = (buf.f_fsid[0] & 0xFFFFFFFF) | (buf.f_fsid[1] & 0xFFFFFFFF) << 32
    return HostStatfs(buf.f_type & 0xFFFFFFFF, buf.f_bsize, buf.f_blocks, buf.f_bfree,
                      buf.f_bavail, buf.f_files, buf.f_ffree, fsid, buf.f_namelen)


def _check(rc: int) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                       ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)))


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags))


_CAP_VERSION_3 = 0x20080522
CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID = 0, 1, 2, 3, 4
CAP_LAST_POSSIBLE = 63


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def limit_capabilities(keep: set[int]) -> None:
    """Drop every capability but `keep` from the bounding set, the ambient
    set and the effective/permitted sets; clear the inheritable set."""
    for cap in range(CAP_LAST_POSSIBLE + 1):
        if cap not in keep:
            try:
                prctl(PR_CAPBSET_DROP, cap)
            except OSError:
                pass  # EINVAL past the kernel's last capability
    try:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass
    mask = sum(1 << c for c in keep)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        part = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = part
        data[i].inheritable = 0
    # capset may only shrink the permitted set; keep ∩ current is what stays
    current = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), current))
    for i in range(2):
        data[i].permitted &= current[i].permitted
        data[i].effective &= current[i].permitted
    _check(_libc.capset(ctypes.byref(header), data))


# --- mounts -----------------------------------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
AT_FDCWD, AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x100, 0x1000, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8

# numbers of calls glibc may not wrap (the newest share one number everywhere)
_NR = {"x86_64": {"pivot_root": 155}, "aarch64": {"pivot_root": 41}}
NR_MOUNT_SETATTR, NR_FCHMODAT2 = 442, 452


def _path(p) -> bytes | None:
    return None if p is None else os.fsencode(p)


def mount(source, target, fstype, flags: int, data=None) -> None:
    _check(_libc.mount(_path(source), _path(target), _path(fstype), ctypes.c_ulong(flags),
                       _path(data)))


def umount2(target, flags: int) -> None:
    _check(_libc.umount2(_path(target), flags))


def _syscall(nr: int, *args) -> int:
    rc = _libc.syscall(ctypes.c_long(nr), *args)
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc


def pivot_root(new_root, put_old) -> None:
    nr = _NR.get(_MACHINE, {}).get("pivot_root")
    if nr is None:
        raise OSError(38, os.strerror(38))
    _syscall(nr, _path(new_root), _path(put_old))


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr_recursive(path, attr_set: int) -> None:
    """Set MOUNT_ATTR_* on the mount at path and every mount below it."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    _syscall(NR_MOUNT_SETATTR, ctypes.c_int(AT_FDCWD), _path(path), ctypes.c_uint(AT_RECURSIVE),
             ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))


def fchmod_path_fd(fd: int, mode: int) -> None:
    """chmod the file an O_PATH fd names (fchmod refuses O_PATH fds)."""
    _syscall(NR_FCHMODAT2, ctypes.c_int(fd), b"", ctypes.c_uint(mode), ctypes.c_int(AT_EMPTY_PATH))


def fchown_path_fd(fd: int, uid: int, gid: int) -> None:
    """lchown of the file an O_PATH fd names; -1 leaves an id as it is."""
    _check(_libc.fchownat(fd, b"", ctypes.c_uint(uid & 0xFFFFFFFF), ctypes.c_uint(gid & 0xFFFFFFFF),
                          AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))


# --- seccomp ------------------------------------------------------------------

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ALLOW = 0x80000000, 0x7FFF0000
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# x86-64 numbers of the calls an allow-list may name
SYSCALLS_X86_64 = {
    "read": 0, "write": 1, "close": 3, "fstat": 5, "lseek": 8, "mmap": 9, "mprotect": 10,
    "munmap": 11, "brk": 12, "rt_sigaction": 13, "rt_sigprocmask": 14, "rt_sigreturn": 15,
    "ioctl": 16, "pread64": 17, "pwrite64": 18, "madvise": 28, "dup": 32, "dup2": 33,
    "getpid": 39, "sendto": 44, "recvfrom": 45, "sendmsg": 46, "recvmsg": 47, "exit": 60,
    "fcntl": 72, "flock": 73, "fsync": 74, "fdatasync": 75, "ftruncate": 77, "getcwd": 79,
    "fchdir": 81, "fchmod": 91, "fchown": 93, "umask": 95, "getuid": 102, "getgid": 104,
    "geteuid": 107, "getegid": 108, "getppid": 110, "fstatfs": 138, "mremap": 25,
    "sched_yield": 24, "gettid": 186, "futex": 202, "getdents64": 217, "clock_gettime": 228,
    "clock_nanosleep": 230, "exit_group": 231, "openat": 257, "mkdirat": 258, "mknodat": 259,
    "fchownat": 260, "newfstatat": 262, "unlinkat": 263, "renameat": 264, "linkat": 265,
    "symlinkat": 266, "readlinkat": 267, "fchmodat": 268, "utimensat": 280, "renameat2": 316,
    "getrandom": 318, "statx": 332, "rseq": 334, "fchmodat2": 452, "fsetxattr": 190,
    "fgetxattr": 193, "flistxattr": 196, "fremovexattr": 199, "close_range": 436,
    "sigaltstack": 131, "prctl": 157, "poll": 7, "ppoll": 271,
}


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06


def seccomp_program(allowed: list[str]) -> bytes:
    """Classic BPF: kill on a foreign arch or an x32 number, allow the
    named calls, kill on anything else."""
    numbers = sorted({SYSCALLS_X86_64[n] for n in allowed})
    prog = [_bpf(_LD_W_ABS, 0, 0, 4),                       # seccomp_data.arch
            _bpf(_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
            _bpf(_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
            _bpf(_LD_W_ABS, 0, 0, 0),                       # seccomp_data.nr
            _bpf(_JGE_K, 0, 1, X32_SYSCALL_BIT),
            _bpf(_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)]
    for nr in numbers:
        prog += [_bpf(_JEQ_K, 0, 1, nr), _bpf(_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    prog.append(_bpf(_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp(allowed: list[str]) -> None:
    """Confine this process (all its threads to come) to the allowed calls.
    Needs no_new_privs or CAP_SYS_ADMIN. x86-64 only (ENOSYS elsewhere)."""
    if _MACHINE != "x86_64":
        raise OSError(38, "seccomp allow-list is x86-64 only")
    code = seccomp_program(allowed)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    _check(_libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER),
                       ctypes.c_void_p(ctypes.addressof(prog)), ctypes.c_ulong(0), ctypes.c_ulong(0)))
