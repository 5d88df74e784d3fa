"""/dev: the memory devices (null, zero, full, random, urandom), /dev/tty,
the fd and stdio symlinks into /proc, and the empty pts/ and shm/
directories the sandbox mounts over.

Device behaviour lives with the device number, not the node: open_device()
serves a node for (1,3) found on any filesystem (a mknod'ed null in a tmpfs)
exactly like /dev/null here. /dev/tty is per sandbox (it needs the
controlling terminal), so it is served by the DevFS that was given a
tty_opener.
"""
from __future__ import annotations

import errno
import os
import stat as S
from collections.abc import Callable

from .inode import FileDescriptionImpl, fserr
from .synthetic import StaticDir, Symlink, SyntheticFS, SyntheticInode

TMPFS_MAGIC = 0x01021994  # devtmpfs reports tmpfs's f_type

MEM_MAJOR, TTYAUX_MAJOR = 1, 5
NULL_RDEV = os.makedev(MEM_MAJOR, 3)
ZERO_RDEV = os.makedev(MEM_MAJOR, 5)
FULL_RDEV = os.makedev(MEM_MAJOR, 7)
RANDOM_RDEV = os.makedev(MEM_MAJOR, 8)
URANDOM_RDEV = os.makedev(MEM_MAJOR, 9)
TTY_RDEV = os.makedev(TTYAUX_MAJOR, 0)
PTMX_RDEV = os.makedev(TTYAUX_MAJOR, 2)  # opened through the sentry's device opener

# Reads are answered in one piece in the sentry's memory; a bigger request
# gets a short read (which read(2) allows and callers loop over) instead of
# a buffer of the guest's chosen size.
MAX_READ = 1 << 24


class NullImpl(FileDescriptionImpl):
    """/dev/null: reads see end of file, writes vanish."""
    def pread(self, size, offset):
        return b""

    def pwrite(self, data, offset):
        return len(data)


class ZeroImpl(FileDescriptionImpl):
    """/dev/zero: endless zeros, writes vanish."""
    def pread(self, size, offset):
        return bytes(min(size, MAX_READ))

    def pwrite(self, data, offset):
        return len(data)


class FullImpl(ZeroImpl):
    """/dev/full: zeros to read, and every write finds the disk full."""
    def pwrite(self, data, offset):
        raise fserr(errno.ENOSPC)


class RandomImpl(FileDescriptionImpl):
    """/dev/random and /dev/urandom: the host's CSPRNG (Linux's /dev/random
    no longer blocks once the pool is initialised). Writes are accepted and
    mixed into nothing, as an unprivileged write adds no entropy credit."""
    def pread(self, size, offset):
        return os.urandom(min(size, MAX_READ))

    def pwrite(self, data, offset):
        return len(data)


_MEMORY_DEVICES: dict[int, type[FileDescriptionImpl]] = {
    NULL_RDEV: NullImpl,
    ZERO_RDEV: ZeroImpl,
    FULL_RDEV: FullImpl,
    RANDOM_RDEV: RandomImpl,
    URANDOM_RDEV: RandomImpl,
}


def open_device(rdev: int, flags: int = 0) -> FileDescriptionImpl | None:
    """An open description for character device rdev wherever its node
    lives, or None for a device this module does not serve (the caller
    decides: ENXIO, or the node's own open). The open flags matter to none
    of these (vfs.ops.device_opener passes them for the ptys)."""
    impl = _MEMORY_DEVICES.get(rdev)
    return impl() if impl is not None else None


class DeviceNode(SyntheticInode):
    """A character device node; opening it opens the device."""

    def __init__(self, fs: "DevFS", rdev: int, perm: int = 0o666):
        super().__init__(fs, S.S_IFCHR | perm)
        self.rdev = rdev

    def stat(self):
        return super().stat().copy(rdev=self.rdev)

    def open(self, flags: int) -> FileDescriptionImpl:
        if self.rdev == TTY_RDEV:
            opener = self.fs.tty_opener
            if opener is None:  # no controlling terminal
                raise fserr(errno.ENXIO)
            return opener()
        impl = open_device(self.rdev)
        if impl is None:
            raise fserr(errno.ENXIO)
        return impl


class DevFS(SyntheticFS):
    """The sandbox's /dev. tty_opener() returns the description for the
    controlling terminal; without one /dev/tty gives ENXIO like Linux for
    a process with no controlling tty."""
    name = "devtmpfs"
    magic = TMPFS_MAGIC

    def __init__(self, tty_opener: Callable[[], FileDescriptionImpl] | None = None):
        super().__init__()
        self.tty_opener = tty_opener
        root = self._root = StaticDir(self, 0o755)
        for name, rdev in ((b"null", NULL_RDEV), (b"zero", ZERO_RDEV), (b"full", FULL_RDEV),
                           (b"random", RANDOM_RDEV), (b"urandom", URANDOM_RDEV),
                           (b"tty", TTY_RDEV), (b"ptmx", PTMX_RDEV)):
            root.add(name, DeviceNode(self, rdev))
        root.add(b"fd", Symlink(self, b"/proc/self/fd"))
        for n, name in enumerate((b"stdin", b"stdout", b"stderr")):
            root.add(name, Symlink(self, b"/proc/self/fd/%d" % n))
        root.subdir(b"pts", 0o755)
        root.subdir(b"shm", 0o1777)

    def root(self) -> StaticDir:
        return self._root
