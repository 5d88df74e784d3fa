"""The few host calls the gofer needs that Python's os module lacks:
fstatfs (os.statvfs has no f_type), prctl, unshare (os.unshare is 3.12+)
and capset. x86-64 / aarch64 Linux layouts.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)


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
CLONE_NEWNET = 0x40000000


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
