"""Confining the gofer process to its export.

enter_export() gives the process a mount namespace (and a network
namespace) of its own whose root is a recursive bind of the export:
  * every mount is made private first, so nothing propagates either way;
  * the export is bound (with its submounts) over a staging directory,
    then pivot_root makes it / and the old root is detached: no path the
    process can name leads outside the export any more;
  * host pseudo file systems mounted inside the export (proc, sysfs, ...)
    are unmounted from this copy, so even a compromised gofer cannot
    reach /proc/1/root through them; the directories they covered are
    remembered so walks into them still fail with EACCES;
  * every mount of the copy gets nosuid, nodev and noexec, and read-only
    as well unless the export is served read-write.
Without CAP_SYS_ADMIN it tries the same inside a new user namespace that
maps only the caller's ids (pseudo mounts cannot be detached there: the
kernel locks them; walks still refuse them by f_type). Failures leave the
process as it was and are reported, never fatal: the per-walk discipline
in server.py confines on its own.

drop_privileges() keeps only the capabilities file serving needs and sets
no_new_privs; install_filter() then allows only the system calls the
server makes (measured with strace -f -c over the test suite).
"""
from __future__ import annotations

import os
import stat as S

from . import hostcalls as hc

# f_type of host file systems a walk must never enter
PSEUDO_FS_MAGICS = {
    0x9FA0: "proc", 0x62656572: "sysfs", 0x27E0EB: "cgroup", 0x63677270: "cgroup2",
    0x64626720: "debugfs", 0x73636673: "securityfs", 0x74726163: "tracefs",
    0x1CD1: "devpts", 0xCAFE4A11: "bpf", 0x6165676C: "pstore", 0xDE5E81E4: "efivarfs",
    0x62656570: "configfs", 0x65735543: "fusectl", 0x42494E4D: "binfmt_misc",
    0xF97CFF8C: "selinuxfs", 0x43415D53: "smackfs", 0x6E736673: "nsfs",
    0x19800202: "mqueue", 0x50495045: "pipefs", 0x534F434B: "sockfs",
    0x958458F6: "hugetlbfs", 0x0187: "autofs", 0x67596969: "rpc_pipefs", 0x6E667364: "nfsd",
}
# the same by mountinfo type name, plus a few more never worth serving
PSEUDO_FS_TYPES = {
    "proc", "sysfs", "cgroup", "cgroup2", "debugfs", "securityfs", "tracefs", "devpts", "bpf",
    "pstore", "efivarfs", "configfs", "fusectl", "binfmt_misc", "selinuxfs", "smackfs", "nsfs",
    "mqueue", "hugetlbfs", "autofs", "rpc_pipefs", "nfsd",
}
_STAGING_CANDIDATES = ("/tmp", "/mnt", "/var/tmp", "/run", "/media", "/srv", "/opt")
_MAX_UNMOUNTS = 4096


class Confinement:
    """What enter_export achieved, for the server and the tests."""

    def __init__(self):
        self.mount_ns = False      # the export is this process's /
        self.user_ns = False       # done inside a user namespace of our own
        self.net_ns = False
        self.mount_flags = False   # nosuid/nodev/noexec(/ro) on every mount
        self.hidden: set[tuple[int, int]] = set()  # (dev, ino) pseudo fs covered
        self.errors: list[str] = []


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts() -> list[tuple[int, int, str, str]]:
    """(id, parent id, mount point, fs type) of every mount, from mountinfo."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for raw in f.read().decode("utf-8", "surrogateescape").splitlines():
            left, _, right = raw.partition(" - ")
            fields = left.split()
            if len(fields) < 5 or not right:
                continue
            out.append((int(fields[0]), int(fields[1]), _unescape(fields[4]), right.split()[0]))
    return out


def _subtree(mounts, top: int) -> list[tuple[int, int, str, str]]:
    ids, out, grew = {top}, [], True
    while grew:
        grew = False
        for m in mounts:
            if m[1] in ids and m[0] not in ids:
                ids.add(m[0])
                out.append(m)
                grew = True
    return out


def _hide_pseudo_mounts(staging: str, conf: Confinement) -> None:
    """Detach every pseudo file system mounted below the bound export."""
    failed: set[int] = set()
    for _ in range(_MAX_UNMOUNTS):
        mounts = _mounts()
        tops = [m for m in mounts if m[2] == staging]
        if not tops:
            raise OSError(2, "the bound export is missing from mountinfo")
        pseudo = [m for m in _subtree(mounts, tops[-1][0])
                  if m[3] in PSEUDO_FS_TYPES and m[0] not in failed]
        if not pseudo:
            return
        mid, _, point, fstype = pseudo[0]
        try:
            if not _is_pseudo(point):  # covered by another mount: unreachable anyway
                raise OSError(16, "covered by another mount")
            hc.umount2(point, hc.MNT_DETACH)
            st = os.lstat(point)
            if S.S_ISDIR(st.st_mode) or S.S_ISREG(st.st_mode):
                conf.hidden.add((st.st_dev, st.st_ino))
        except OSError as e:
            failed.add(mid)
            conf.errors.append(f"cannot detach {fstype} at {point}: {e.strerror}")


def _is_pseudo(path: str) -> bool:
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return hc.fstatfs(fd).type in PSEUDO_FS_MAGICS
    finally:
        os.close(fd)


def _map_ids_to_themselves(uid: int, gid: int) -> None:
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def _unshare(conf: Confinement) -> None:
    try:
        hc.unshare(hc.CLONE_NEWNS | hc.CLONE_NEWNET)
        conf.net_ns = True
        return
    except OSError as e:
        if e.errno != 1:  # EPERM: not privileged, try a user namespace
            raise
    uid, gid = os.getuid(), os.getgid()
    hc.unshare(hc.CLONE_NEWUSER | hc.CLONE_NEWNS | hc.CLONE_NEWNET)
    conf.user_ns = conf.net_ns = True
    _map_ids_to_themselves(uid, gid)


def enter_export(export: str, rw: bool) -> Confinement:
    """Make the directory export this process's root (see the module
    text). On return the working directory is the new /. The path is
    resolved again inside the new namespace (a bind cannot take a mount of
    another namespace): the caller checks the new / is the directory it
    opened before."""
    conf = Confinement()
    try:
        _unshare(conf)
    except OSError as e:
        conf.errors.append(f"no mount namespace: {e.strerror}")
        try:
            hc.unshare(hc.CLONE_NEWNET)
            conf.net_ns = True
        except OSError:
            pass
        return conf
    try:
        hc.mount(None, "/", None, hc.MS_REC | hc.MS_PRIVATE)
        staging = next(d for d in _STAGING_CANDIDATES if os.path.isdir(d) and not os.path.islink(d))
        # the source is resolved (and the tree copied) before it is attached,
        # so an export that contains the staging directory is copied whole
        hc.mount(export, staging, None, hc.MS_BIND | hc.MS_REC)
        _hide_pseudo_mounts(staging, conf)
        attrs = hc.MOUNT_ATTR_NOSUID | hc.MOUNT_ATTR_NODEV | hc.MOUNT_ATTR_NOEXEC
        try:
            hc.mount_setattr_recursive(staging, attrs | (0 if rw else hc.MOUNT_ATTR_RDONLY))
            conf.mount_flags = True
        except OSError as e:
            conf.errors.append(f"mount attributes not set: {e.strerror}")
        os.chdir(staging)
        try:
            hc.pivot_root(".", ".")
            hc.umount2(".", hc.MNT_DETACH)
        except OSError as e:  # e.g. a ramfs root: a chroot is the next best
            conf.errors.append(f"pivot_root failed ({e.strerror}), chroot instead")
            os.chroot(".")
        os.chdir("/")
        conf.mount_ns = True
    except (OSError, StopIteration) as e:
        conf.errors.append(f"export not made the root: {getattr(e, 'strerror', None) or e}")
    return conf


def read_only_caps() -> set[int]:
    # reading any file and searching any directory, for a sandbox root
    return {hc.CAP_DAC_READ_SEARCH}


def read_write_caps() -> set[int]:
    return {hc.CAP_DAC_READ_SEARCH, hc.CAP_DAC_OVERRIDE, hc.CAP_CHOWN, hc.CAP_FOWNER,
            hc.CAP_FSETID}


def drop_privileges(rw: bool) -> list[str]:
    """no_new_privs and only the capabilities serving needs. Errors returned."""
    errors = []
    try:
        hc.prctl(hc.PR_SET_NO_NEW_PRIVS, 1)
    except OSError as e:
        errors.append(f"no_new_privs: {e.strerror}")
    try:
        hc.limit_capabilities(read_write_caps() if rw else read_only_caps())
    except OSError as e:
        errors.append(f"capabilities: {e.strerror}")
    return errors


# What the server calls once serving: measured by running the gofer tests
# (tests/integration/test_gofer*.py, tests/escape/test_gofer_escape.py)
# with every gofer under `strace -f` and --no-seccomp, and taking the calls
# made after the last set-up call (capset); plus what CPython may need on
# paths the tests do not take (memory returned by madvise, clock_gettime
# when the vDSO falls back, futex, signal delivery, stderr writes).
SERVING_SYSCALLS = [
    # the socket, fds, stderr
    "recvfrom", "sendto", "sendmsg", "write", "close", "fcntl",
    # files
    "openat", "newfstatat", "fstatfs", "lseek", "getdents64", "pread64", "pwrite64",
    "fsync", "fdatasync", "ftruncate", "mkdirat", "mknodat", "symlinkat", "readlinkat",
    "linkat", "unlinkat", "renameat", "fchmod", "fchmodat2", "fchown", "fchownat",
    "utimensat", "fgetxattr", "fsetxattr", "flistxattr", "fremovexattr",
    # the interpreter: allocator, clock, signals, exit
    "mmap", "munmap", "mremap", "madvise", "brk", "futex", "clock_gettime", "rt_sigaction",
    "rt_sigreturn", "exit_group",
]


def install_filter() -> None:
    hc.install_seccomp(SERVING_SYSCALLS)
