"""mount(2) and umount2(2) as operations on a MountTree, with Linux's flag
decoding and checks, and the filesystem types the sandbox can create with
their options (tmpfs's size=, nr_inodes=, mode=, uid=, gid=).

Everything here is sentry state: nothing ever mounts anything on the host.
There is one mount namespace and no propagation: MS_SHARED, MS_SLAVE and
MS_PRIVATE are accepted and every mount stays private; MS_UNBINDABLE is
recorded (binding such a mount is EINVAL, recursive binds skip it).
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .inode import Filesystem, fserr
from .path import (MNT_FLAGS, MS_DIRSYNC, MS_LAZYTIME, MS_MANDLOCK, MS_NOATIME, MS_NODIRATIME,
                   MS_RDONLY, MS_RELATIME, MS_STRICTATIME, MS_SYNCHRONOUS, SB_FLAGS, Location,
                   Mount, MountTree)
from .tmpfs import BOGO_INODE_SIZE, TmpFS

MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_SILENT = 0x20, 0x1000, 0x2000, 0x4000, 0x8000
MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 17, 1 << 18, 1 << 19, 1 << 20
MS_NOUSER = 1 << 31
MS_MGC_MSK, MS_MGC_VAL = 0xFFFF0000, 0xC0ED0000
MS_PROPAGATION = MS_UNBINDABLE | MS_PRIVATE | MS_SLAVE | MS_SHARED
MS_ATIME = MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME
MNT_FORCE, MNT_DETACH, MNT_EXPIRE, UMOUNT_NOFOLLOW = 1, 2, 4, 8
UMOUNT_FLAGS = MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW
# superblock flags a remount replaces (Linux's MS_RMT_MASK, minus I_VERSION)
MS_RMT_MASK = MS_RDONLY | MS_SYNCHRONOUS | MS_MANDLOCK | MS_LAZYTIME

PAGE_SIZE = 4096


@dataclass
class Usage:
    """What the kernel's processes hold, for umount's and read-only
    remount's EBUSY: mounts holding a cwd, root, executable or open file,
    and mounts with a file open for writing."""
    held: set = field(default_factory=set)
    writing: set = field(default_factory=set)


# --- options -----------------------------------------------------------

# Words any filesystem's data string may carry: superblock flags (Linux's
# vfs_parse_sb_flag): word -> (set, clear)
_SB_WORDS = {
    b"ro": (MS_RDONLY, 0), b"rw": (0, MS_RDONLY), b"sync": (MS_SYNCHRONOUS, 0),
    b"async": (0, MS_SYNCHRONOUS), b"dirsync": (MS_DIRSYNC, 0), b"mand": (MS_MANDLOCK, 0),
    b"nomand": (0, MS_MANDLOCK), b"lazytime": (MS_LAZYTIME, 0), b"nolazytime": (0, MS_LAZYTIME),
    b"silent": (0, 0), b"verbose": (0, 0),
}


def split_data(data: bytes | None) -> tuple[int, int, list[tuple[bytes, bytes | None]], bytes | None]:
    """A mount(2) data string: (sb flags set, sb flags cleared, the
    filesystem's own key[=value] options, a source= override)."""
    set_, clear, opts, source = 0, 0, [], None
    for item in (data or b"").split(b","):
        if not item:
            continue
        key, eq, value = item.partition(b"=")
        if not eq and key in _SB_WORDS:
            s, c = _SB_WORDS[key]
            set_, clear = (set_ | s) & ~c, (clear | c) & ~s
        elif key == b"source" and eq:
            source = value
        else:
            opts.append((key, value if eq else None))
    return set_, clear, opts, source


def memparse(text: bytes) -> tuple[int, bytes]:
    """Linux's memparse: a number (0x.. hex, 0.. octal) with an optional
    K/M/G/T/P/E suffix; returns (value, what follows)."""
    s = text.decode("ascii", "replace")
    i, base = 0, 10
    if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        i, base = 2, 16
    elif s[:1] == "0":
        base = 8
    j = i
    digits = "0123456789abcdef"[:base]
    while j < len(s) and s[j].lower() in digits:
        j += 1
    value = int(s[i:j], base) if j > i else 0
    if j < len(s) and s[j].upper() in "KMGTPE":
        value <<= 10 * ("KMGTPE".index(s[j].upper()) + 1)
        j += 1
    return value, text[j:]


def _u32(value: bytes | None, base: int = 0) -> int:
    """An fs_param u32 (base 0: 0x hex, 0 octal, else decimal)."""
    try:
        n = int(value.decode("ascii"), base)
    except (AttributeError, ValueError, UnicodeDecodeError):
        raise fserr(errno.EINVAL) from None
    if not 0 <= n < 1 << 32:
        raise fserr(errno.EINVAL)
    return n


def _ram_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 2 << 30


@dataclass
class TmpfsOptions:
    """tmpfs's options (see tmpfs(5)). size and nr_inodes are None when not
    given (tmpfs's defaults: half of RAM, and as many inodes as that has
    pages), 0 for unlimited."""
    size: int | None = None      # bytes, a whole number of pages
    nr_inodes: int | None = None
    mode: int = 0o1777
    uid: int = 0
    gid: int = 0
    extra: list = field(default_factory=list)  # accepted words shown as given (huge=, inode64)

    def text(self) -> bytes:
        """As tmpfs shows them in /proc/*/mounts (defaults left out)."""
        out = []
        if self.size is not None:
            out.append(b"size=%dk" % (self.size // 1024))
        if self.nr_inodes is not None:
            out.append(b"nr_inodes=%d" % self.nr_inodes)
        if self.mode != 0o1777:
            out.append(b"mode=%03o" % self.mode)
        if self.uid:
            out.append(b"uid=%d" % self.uid)
        if self.gid:
            out.append(b"gid=%d" % self.gid)
        return b",".join(out + self.extra)


_TMPFS_HUGE = (b"never", b"always", b"within_size", b"advise", b"deny", b"force")


def parse_tmpfs(opts: list[tuple[bytes, bytes | None]], base: TmpfsOptions | None = None) -> TmpfsOptions:
    """tmpfs's own options; EINVAL for an unknown one or a bad value."""
    o = TmpfsOptions() if base is None else TmpfsOptions(base.size, base.nr_inodes, base.mode,
                                                          base.uid, base.gid, list(base.extra))
    for key, value in opts:
        if key in (b"size", b"nr_blocks", b"nr_inodes", b"mode", b"uid", b"gid", b"huge") and value is None:
            raise fserr(errno.EINVAL)
        if key == b"size":
            n, rest = memparse(value)
            if rest[:1] == b"%":
                n, rest = _ram_bytes() * n // 100, rest[1:]
            if rest:
                raise fserr(errno.EINVAL)
            o.size = (n + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
        elif key == b"nr_blocks":
            n, rest = memparse(value)
            if rest:
                raise fserr(errno.EINVAL)
            o.size = n * PAGE_SIZE
        elif key == b"nr_inodes":
            n, rest = memparse(value)
            if rest:
                raise fserr(errno.EINVAL)
            o.nr_inodes = n
        elif key == b"mode":
            o.mode = _u32(value, 8) & 0o7777
        elif key in (b"uid", b"gid"):
            n = _u32(value)
            if n == 0xFFFFFFFF:
                raise fserr(errno.EINVAL)  # no such id in any namespace
            setattr(o, key.decode(), n)
        elif key == b"huge":
            if value not in _TMPFS_HUGE:
                raise fserr(errno.EINVAL)
            o.extra = [w for w in o.extra if not w.startswith(b"huge=")] + [b"huge=" + value]
        elif key in (b"inode32", b"inode64", b"noswap") and value is None:
            if key not in o.extra:
                o.extra = [w for w in o.extra if w not in (b"inode32", b"inode64")] + [key]
        else:
            raise fserr(errno.EINVAL)
    return o


def make_tmpfs(o: TmpfsOptions) -> TmpFS:
    return TmpFS(mode=o.mode, uid=o.uid, gid=o.gid, max_bytes=o.size, max_inodes=o.nr_inodes)


def _resize_tmpfs(fs: TmpFS, new: TmpfsOptions) -> None:
    """A remount's new limits, with Linux's refusals (EINVAL): a limit on a
    tmpfs mounted unlimited ('Cannot retroactively limit size'), or one
    smaller than what is in use ('Too small a size for current use')."""
    blocks = fs.max_blocks if new.size is None else new.size // PAGE_SIZE
    inodes = fs.max_inodes if new.nr_inodes is None else new.nr_inodes
    used_ispace = fs.max_inodes * BOGO_INODE_SIZE - fs.free_ispace
    if blocks and (not fs.max_blocks or blocks < fs.used_blocks):
        raise fserr(errno.EINVAL)
    if inodes and (not fs.max_inodes or inodes * BOGO_INODE_SIZE < used_ispace):
        raise fserr(errno.EINVAL)
    fs.max_blocks, fs.max_inodes = blocks, inodes
    fs.free_ispace = inodes * BOGO_INODE_SIZE - used_ispace


# --- filesystem types ----------------------------------------------------

class FilesystemTypes:
    """What mount(2) can create, by type name. tmpfs is always there; the
    sandbox adds the ones made from kernel objects: proc and devpts (each
    maker call a new instance), sysfs and devtmpfs (makers returning the
    sandbox's one instance: Linux has one sysfs superblock per network
    namespace and one devtmpfs; a filesystem mounted again keeps its
    superblock). make() parses the key=value options (EINVAL for any the
    type does not take) and returns the filesystem, its options text and
    the parsed options."""
    # accepted and not enforced: every devpts instance shows the sandbox's ptys
    DEVPTS_OPTIONS = (b"newinstance", b"ptmxmode", b"mode", b"gid", b"uid", b"max")
    # known to /proc/filesystems but not mountable from inside: the options
    # they need (lowerdir=, trans=fd) name host objects
    UNSUPPORTED = (b"overlay", b"9p")

    def __init__(self, *, proc: Callable[[], Filesystem] | None = None,
                 sysfs: Callable[[], Filesystem] | None = None,
                 devpts: Callable[[], Filesystem] | None = None,
                 devtmpfs: Callable[[], Filesystem] | None = None):
        self._makers: dict[bytes, Callable] = {b"tmpfs": self._tmpfs}
        for name, make in ((b"proc", proc), (b"sysfs", sysfs), (b"devtmpfs", devtmpfs)):
            if make is not None:
                self._makers[name] = self._no_options(make)
        if devpts is not None:
            self._makers[b"devpts"] = self._devpts(devpts)

    def make(self, name: bytes, opts: list) -> tuple[Filesystem, bytes, object]:
        """(filesystem, options text, parsed options kept for remount)."""
        maker = self._makers.get(name)
        if maker is None:
            raise fserr(errno.EINVAL if name in self.UNSUPPORTED else errno.ENODEV)
        return maker(opts)

    @staticmethod
    def _tmpfs(opts):
        o = parse_tmpfs(opts)
        return make_tmpfs(o), o.text(), o

    @staticmethod
    def _no_options(make):
        def maker(opts):
            if opts:
                raise fserr(errno.EINVAL)
            return make(), b"", None
        return maker

    def _devpts(self, make):
        def maker(opts):
            if any(k not in self.DEVPTS_OPTIONS for k, _ in opts):
                raise fserr(errno.EINVAL)
            return make(), b"", None
        return maker


def reconfigure(m: Mount, opts: list) -> None:
    """A remount's filesystem options: tmpfs may change its limits (mode,
    uid and gid are ignored, as Linux ignores them on remount); other
    types take none."""
    config = m.sb.config
    if config is None and isinstance(m.fs, TmpFS):
        config = TmpfsOptions()  # one the sandbox made with the defaults
    if isinstance(config, TmpfsOptions):
        new = parse_tmpfs(opts, config)
        new.mode, new.uid, new.gid = config.mode, config.uid, config.gid
        if (new.size, new.nr_inodes) != (config.size, config.nr_inodes):
            _resize_tmpfs(m.fs, new)
        m.sb.config, m.sb.options = new, new.text()
    elif opts:
        raise fserr(errno.EINVAL)


# --- mount(2) ------------------------------------------------------------

def mount(tree: MountTree, at: Location, source: bytes | None, fstype: bytes | None, flags: int,
          data: bytes | None, *, privileged: bool, find: Callable[[bytes], Location],
          usage: Callable[[], Usage]) -> None:
    """mount(2) once the target is resolved (following symlinks). find
    resolves the source path of a bind or move as the caller; usage says
    what the kernel's processes hold (only asked for a read-only remount)."""
    if flags & MS_MGC_MSK == MS_MGC_VAL:
        flags &= ~MS_MGC_MSK
    if flags & MS_NOUSER:
        raise fserr(errno.EINVAL)
    if not privileged:
        raise fserr(errno.EPERM)
    mnt_flags = flags & (MNT_FLAGS & ~MS_RELATIME)
    if not flags & MS_NOATIME:
        mnt_flags |= MS_RELATIME
    if flags & MS_STRICTATIME:
        mnt_flags &= ~(MS_RELATIME | MS_NOATIME)
    if flags & MS_REMOUNT and not flags & MS_ATIME:
        mnt_flags = mnt_flags & ~MS_ATIME | at.mount.flags & MS_ATIME  # remount keeps atime
    if flags & MS_REMOUNT:
        _remount(tree, at, flags, mnt_flags, data, usage)
    elif flags & MS_BIND:
        if not source:
            raise fserr(errno.EINVAL)
        src = find(source)
        tree.bind(at, src, recursive=bool(flags & MS_REC))
    elif flags & MS_PROPAGATION:
        _change_type(tree, at, flags)
    elif flags & MS_MOVE:
        if not source:
            raise fserr(errno.EINVAL)
        src = find(source)
        if src.dentry is not src.mount.root:
            raise fserr(errno.EINVAL)
        tree.move(src.mount, at)
    else:
        _new_mount(tree, at, source, fstype, flags, mnt_flags, data)


def _mounted_at(tree: MountTree, at: Location) -> None:
    """The target must be the root of a mount of this namespace."""
    if at.mount.ns is not tree or at.dentry is not at.mount.root:
        raise fserr(errno.EINVAL)


def _remount(tree, at, flags, mnt_flags, data, usage) -> None:
    _mounted_at(tree, at)
    m = at.mount
    if flags & MS_BIND:
        # per-mount flags only; the filesystem and its options stay
        if mnt_flags & MS_RDONLY and not m.flags & MS_RDONLY and m in usage().writing:
            raise fserr(errno.EBUSY)
        m.flags = mnt_flags
        return
    set_, clear, opts, _ = split_data(data)
    sb_flags = (flags & SB_FLAGS | set_) & ~clear
    if sb_flags & MS_RDONLY and not m.sb.flags & MS_RDONLY:
        if any(w.sb is m.sb for w in usage().writing):
            raise fserr(errno.EBUSY)
    reconfigure(m, opts)
    m.sb.flags = m.sb.flags & ~MS_RMT_MASK | sb_flags & MS_RMT_MASK
    m.flags = mnt_flags


def _change_type(tree, at, flags) -> None:
    _mounted_at(tree, at)
    kind = flags & ~(MS_REC | MS_SILENT)
    if kind & (kind - 1) or not kind & MS_PROPAGATION or kind & ~MS_PROPAGATION:
        raise fserr(errno.EINVAL)  # exactly one propagation type
    for m in tree.subtree(at.mount) if flags & MS_REC else [at.mount]:
        m.unbindable = kind == MS_UNBINDABLE


def _new_mount(tree, at, source, fstype, flags, mnt_flags, data) -> None:
    if fstype is None:
        raise fserr(errno.EINVAL)
    if tree.fstypes is None:
        raise fserr(errno.ENODEV)
    set_, clear, opts, source_opt = split_data(data)
    sb_flags = (flags & SB_FLAGS | set_) & ~clear
    fs, text, config = tree.fstypes.make(fstype, opts)
    if at.mount.fs is fs and at.dentry is at.mount.root:
        raise fserr(errno.EBUSY)  # the same superblock on the same mountpoint
    name = source_opt if source_opt is not None else source
    m = tree.mount(at, fs, sb_flags, (name or b"none").decode(errors="surrogateescape"),
                   options=text, config=config)
    m.flags = mnt_flags


# --- umount2(2) ----------------------------------------------------------

def umount(tree: MountTree, loc: Location, flags: int, *, privileged: bool,
           usage: Callable[[], Usage]) -> None:
    """umount2(2) once the target is resolved (flags already checked
    against UMOUNT_FLAGS). MNT_FORCE is ignored: nothing here can hang.
    Unmounting the namespace's root without MNT_DETACH is EBUSY (the
    caller's root is in it); Linux would remount it read-only instead."""
    if not privileged:
        raise fserr(errno.EPERM)
    _mounted_at(tree, loc)
    m = loc.mount
    detach = bool(flags & MNT_DETACH)

    def busy() -> bool:
        return bool(tree.children(m)) or m in usage().held
    if flags & MNT_EXPIRE:
        if flags & (MNT_FORCE | MNT_DETACH) or m.parent is None:
            raise fserr(errno.EINVAL)
        if busy():
            raise fserr(errno.EBUSY)
        if not m.expiry_mark:
            m.expiry_mark = True
            raise fserr(errno.EAGAIN)
    if m.parent is None:
        raise fserr(errno.EINVAL if detach else errno.EBUSY)
    if not detach and busy():
        raise fserr(errno.EBUSY)
    tree.umount(m, detach=detach)
