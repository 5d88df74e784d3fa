"""File change notification: inotify instances and dnotify (fcntl
F_NOTIFY), fed by hooks the VFS calls after each change.

Marks (inotify watches and dnotify registrations) are keyed by the file's
(st_dev, st_ino), so every Inode object that stands for one file (the
overlay and the gofer make one per path; hard links) shares them. `marks`
is empty while nobody watches: every hook site tests it first
(`if inotify.marks: inotify.opened(desc)`), so without watches a hook
costs one truth test.

Events follow Linux's fsnotify: an event on a file goes to the watches of
its parent directory (with the file's name) and then to the file's own
watches; entry events (create, delete, moves) go to the directory only;
IN_MOVE_SELF, IN_DELETE_SELF and the link-count IN_ATTRIB go to the file
only. IN_DELETE_SELF comes when the last link goes, or at the last close
of a description opened while something was watched, if one is still
open then (Linux waits for the last reference to the name).
"""
from __future__ import annotations

import collections
import errno
import itertools
import stat as S
import struct
import weakref

from .inode import FileDescriptionImpl, fserr

IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x1, 0x2, 0x4, 0x8
IN_CLOSE_NOWRITE, IN_OPEN, IN_MOVED_FROM, IN_MOVED_TO = 0x10, 0x20, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_ALL_EVENTS = 0xFFF
IN_UNMOUNT, IN_Q_OVERFLOW, IN_IGNORED = 0x2000, 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK = 0x01000000, 0x02000000, 0x04000000
IN_MASK_CREATE, IN_MASK_ADD, IN_ISDIR, IN_ONESHOT = 0x10000000, 0x20000000, 0x40000000, 0x80000000
ALL_INOTIFY_BITS = (IN_ALL_EVENTS | IN_UNMOUNT | IN_Q_OVERFLOW | IN_IGNORED | IN_ONLYDIR | IN_DONT_FOLLOW
                    | IN_EXCL_UNLINK | IN_MASK_CREATE | IN_MASK_ADD | IN_ISDIR | IN_ONESHOT)
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
# Linux's internal FS_RENAME: a rename within one directory, seen by dnotify only
RENAME = 0x10000000

DN_ACCESS, DN_MODIFY, DN_CREATE, DN_DELETE, DN_RENAME, DN_ATTRIB = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
DN_MULTISHOT = 0x80000000
_DN_EVENTS = ((DN_ACCESS, IN_ACCESS), (DN_MODIFY, IN_MODIFY), (DN_CREATE, IN_CREATE | IN_MOVED_TO),
              (DN_DELETE, IN_DELETE | IN_MOVED_FROM), (DN_ATTRIB, IN_ATTRIB), (DN_RENAME, RENAME))

# /proc/sys/fs/inotify defaults (max_user_watches is sized from RAM on Linux)
MAX_QUEUED_EVENTS, MAX_USER_INSTANCES, MAX_USER_WATCHES = 16384, 128, 65536
FIONREAD, INOTIFY_IOC_SETNEXTWD = 0x541B, 0x40044900
POLLIN = 0x1
EVENT = struct.Struct("<iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
O_ACCMODE, O_PATH = 0o3, 0o10000000

Key = tuple  # (st_dev, st_ino)
marks: dict[Key, list] = {}
_cookies = itertools.count(1)
_instances: collections.Counter = collections.Counter()  # uid -> live instances
_user_watches: collections.Counter = collections.Counter()

# Only kept while marks exist (cleared with the last one):
_open: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # description -> key of its file
_pending_delete: set = set()     # keys whose last link went while a description was open
_unlinked: "weakref.WeakSet" = weakref.WeakSet()  # dentries whose name was removed
_renamed: dict = {}              # key -> (parent inode, name) after a rename


def _key(inode) -> Key | None:
    try:
        st = inode.stat()
    except OSError:
        return None
    return (st.dev, st.ino)


def _add_mark(key: Key, mark) -> None:
    marks.setdefault(key, []).append(mark)


def _drop_mark(key: Key, mark) -> None:
    lst = marks.get(key)
    if lst is None or mark not in lst:
        return
    lst.remove(mark)
    if not lst:
        del marks[key]
        if not marks:
            _open.clear()
            _pending_delete.clear()
            _unlinked.clear()
            _renamed.clear()


def _deliver(mask: int, dir_key: Key | None, name: bytes | None, self_key: Key | None,
             cookie: int = 0, unlinked: bool = False) -> None:
    """One event: to the directory's marks with the name, then to the
    file's own marks without it."""
    if dir_key is not None and dir_key in marks:
        for m in tuple(marks[dir_key]):
            m.handle(mask, name, cookie, unlinked)
    if self_key is not None and self_key in marks:
        for m in tuple(marks[self_key]):
            m.handle(mask, None, cookie, unlinked)


# --- inotify ---
class Watch:
    __slots__ = ("group", "wd", "key", "isdir", "mask", "oneshot", "excl_unlink")

    def __init__(self, group: "Inotify", wd: int, key: Key, isdir: bool):
        self.group, self.wd, self.key, self.isdir = group, wd, key, isdir
        self.mask, self.oneshot, self.excl_unlink = 0, False, False

    def set(self, arg: int, add: bool) -> None:
        if add:
            self.mask |= arg & IN_ALL_EVENTS
            self.oneshot |= bool(arg & IN_ONESHOT)
            self.excl_unlink |= bool(arg & IN_EXCL_UNLINK)
        else:
            self.mask = arg & IN_ALL_EVENTS
            self.oneshot = bool(arg & IN_ONESHOT)
            self.excl_unlink = bool(arg & IN_EXCL_UNLINK)

    def handle(self, mask: int, name, cookie: int, unlinked: bool) -> None:
        if not (self.mask | IN_UNMOUNT) & mask or unlinked and self.excl_unlink:
            return
        self.group.queue_event(self.wd, mask & (IN_ALL_EVENTS | IN_ISDIR | IN_UNMOUNT), cookie, name)
        if self.oneshot:
            self.group.remove(self)

    def destroy(self) -> None:
        """The file is gone (or unmounted): IN_IGNORED ends the watch."""
        self.group.remove(self)


class _Event:
    __slots__ = ("wd", "mask", "name", "data")

    def __init__(self, wd: int, mask: int, cookie: int, name: bytes | None):
        self.wd, self.mask, self.name = wd, mask, name
        padded = b""
        if name:
            # Linux pads the name with NULs to a multiple of sizeof(struct inotify_event)
            padded = name + b"\0" * (16 - len(name) % 16)
        self.data = EVENT.pack(wd, mask, cookie, len(padded)) + padded


class Inotify(FileDescriptionImpl):
    """One inotify instance (what inotify_init returns): its watches and
    its queue of events. `waitqueue` (sentry.waiter.WaitQueue) wakes
    readers and pollers."""
    seekable = False

    def __init__(self, waitqueue, uid: int):
        if _instances[uid] >= MAX_USER_INSTANCES:
            raise fserr(errno.EMFILE)
        _instances[uid] += 1
        self.uid = uid
        self.queue = waitqueue
        self.events: collections.deque[_Event] = collections.deque()
        self.nbytes = 0
        self.overflow_queued = False
        self.watches: dict[int, Watch] = {}
        self.by_key: dict[Key, Watch] = {}
        self.next_wd = 1
        self.closed = False

    def link_name(self) -> bytes:
        return b"anon_inode:inotify"

    # --- watches ---
    def add_watch(self, inode, arg: int) -> int:
        """inotify_add_watch on a resolved, permitted inode."""
        key = _key(inode)
        if key is None:
            raise fserr(errno.ENOENT)
        w = self.by_key.get(key)
        if w is not None:
            if arg & IN_MASK_CREATE:
                raise fserr(errno.EEXIST)
            w.set(arg, add=bool(arg & IN_MASK_ADD))
            return w.wd
        if _user_watches[self.uid] >= MAX_USER_WATCHES:
            raise fserr(errno.ENOSPC)
        w = Watch(self, self._alloc_wd(), key, inode.is_dir())
        w.set(arg, add=False)
        self.watches[w.wd] = w
        self.by_key[key] = w
        _user_watches[self.uid] += 1
        _add_mark(key, w)
        return w.wd

    def _alloc_wd(self) -> int:
        """Like Linux's cyclic idr: the next number after the last one
        given, skipping those in use, wrapping at INT_MAX."""
        wd = self.next_wd
        while wd in self.watches:
            wd = wd + 1 if wd < 0x7FFFFFFF else 1
        self.next_wd = wd + 1 if wd < 0x7FFFFFFF else 1
        return wd

    def rm_watch(self, wd: int) -> None:
        w = self.watches.get(wd)
        if w is None:
            raise fserr(errno.EINVAL)
        self.remove(w)

    def remove(self, w: Watch) -> None:
        if self.watches.pop(w.wd, None) is None:
            return
        del self.by_key[w.key]
        _user_watches[self.uid] -= 1
        _drop_mark(w.key, w)
        self.queue_event(w.wd, IN_IGNORED, 0, None)

    # --- the event queue ---
    def queue_event(self, wd: int, mask: int, cookie: int, name: bytes | None) -> None:
        if self.closed:
            return
        events = self.events
        if len(events) >= MAX_QUEUED_EVENTS:
            if self.overflow_queued:
                return
            self.overflow_queued = True
            ev = _Event(-1, IN_Q_OVERFLOW, 0, None)
        else:
            if events:
                last = events[-1]
                # an event like the last one queued adds nothing (Linux merges them)
                if not last.mask & IN_IGNORED and last.mask == mask and last.wd == wd and last.name == name:
                    return
            ev = _Event(wd, mask, cookie, name)
        events.append(ev)
        self.nbytes += len(ev.data)
        self.queue.notify()

    def pread(self, size, offset):
        events = self.events
        if not events:
            from .file import WouldBlock
            raise WouldBlock(self.queue, POLLIN)
        out = bytearray()
        while events:
            ev = events[0]
            if len(out) + len(ev.data) > size:
                if not out:
                    raise fserr(errno.EINVAL)  # no room for the next event
                break
            events.popleft()
            self.nbytes -= len(ev.data)
            if ev.mask == IN_Q_OVERFLOW:
                self.overflow_queued = False
            out += ev.data
        return bytes(out)

    def readiness(self) -> int:
        return POLLIN if self.events else 0

    def wait_queues(self):
        return (self.queue,)

    def ioctl(self, request, arg, mem):
        if request == FIONREAD:
            mem.write(arg, struct.pack("<i", self.nbytes))
            return 0
        if request == INOTIFY_IOC_SETNEXTWD:
            if not 1 <= arg <= 0x7FFFFFFF:
                raise fserr(errno.EINVAL)
            self.next_wd = arg
            return 0
        raise fserr(errno.ENOTTY)

    def release(self) -> None:
        """The last descriptor closed: watches go without IN_IGNORED."""
        self.closed = True
        for w in list(self.watches.values()):
            self.remove(w)
        self.events.clear()
        _instances[self.uid] -= 1


# --- dnotify ---
class Dnotify:
    """fcntl(F_NOTIFY) of one open directory: `send(fd)` signals the
    owner (the sentry builds it: SIGIO or the F_SETSIG signal)."""
    __slots__ = ("key", "desc", "fd", "mask", "multishot", "send")
    isdir = True

    def __init__(self, key, desc, fd, send):
        self.key, self.desc, self.fd, self.send = key, desc, fd, send
        self.mask, self.multishot = 0, False

    def handle(self, mask: int, name, cookie: int, unlinked: bool) -> None:
        if not self.mask & mask:
            return
        if not self.multishot:
            _drop_mark(self.key, self)
        self.send(self.fd)

    def destroy(self) -> None:
        _drop_mark(self.key, self)


def dnotify(desc, fd: int, arg: int, send) -> None:
    """fcntl(fd, F_NOTIFY, arg). Asking again adds to the events asked
    for; no event bits (0 or DN_MULTISHOT alone) cancels."""
    arg &= 0xFFFFFFFF
    if arg & ~DN_MULTISHOT == 0:
        _dnotify_flush(desc)
        return
    if desc.location is None or not S.S_ISDIR(desc.location.dentry.kind):
        raise fserr(errno.ENOTDIR)
    mask = 0
    for dn, events in _DN_EVENTS:
        if arg & dn:
            mask |= events
    key = _key(desc.inode)
    if key is None:
        raise fserr(errno.ENOENT)
    mark = next((m for m in marks.get(key, ()) if isinstance(m, Dnotify) and m.desc is desc), None)
    if mark is None:
        mark = Dnotify(key, desc, fd, send)
        _add_mark(key, mark)
    mark.fd, mark.send = fd, send
    mark.mask |= mask
    mark.multishot |= bool(arg & DN_MULTISHOT)


def _dnotify_flush(desc) -> None:
    if desc.inode is None:
        return
    key = _key(desc.inode)
    for m in tuple(marks.get(key, ())):
        if isinstance(m, Dnotify) and m.desc is desc:
            _drop_mark(key, m)


# --- hooks: what the VFS reports (call them only `if marks`) ---
def _where(loc, key) -> tuple:
    """(parent inode, name) of an open file now: its latest rename's if
    it was renamed while watched, else its dentry's."""
    moved = _renamed.get(key)
    if moved is not None:
        return moved
    parent = loc.dentry.parent
    if parent is None:  # the root of a mount: no parent to tell
        return None, None
    return parent.inode, loc.dentry.name


def _file_event(loc, inode, mask: int, unlinked: bool = False) -> None:
    key = _key(inode)
    if S.S_ISDIR(loc.dentry.kind):
        mask |= IN_ISDIR
    parent, name = _where(loc, key)
    _deliver(mask, _key(parent) if parent is not None else None, name, key, unlinked=unlinked)


def _desc_event(desc, mask: int) -> None:
    loc = desc.location
    if loc is None or desc.inode is None:
        return
    _file_event(loc, desc.inode, mask, unlinked=loc.dentry in _unlinked)


def opened(desc, truncated: bool = False) -> None:
    """A file was opened (O_PATH descriptions never get here); truncated:
    by O_TRUNC, which Linux reports after the open."""
    if desc.location is None or desc.inode is None:
        return
    key = _key(desc.inode)
    if key is not None:
        _open[desc] = key
    _desc_event(desc, IN_OPEN)
    if truncated:
        _desc_event(desc, IN_MODIFY)


def accessed(desc) -> None:
    """Data was read (or a directory listed)."""
    _desc_event(desc, IN_ACCESS)


def modified(desc) -> None:
    """Data was written."""
    _desc_event(desc, IN_MODIFY)


def closed(desc) -> None:
    """The last reference to an open description went."""
    if desc.inode is None or desc.location is None:
        return
    _dnotify_flush(desc)
    if desc.flags & O_PATH:
        return
    writing = desc.flags & O_ACCMODE in (1, 2)
    _desc_event(desc, IN_CLOSE_WRITE if writing else IN_CLOSE_NOWRITE)
    key = _open.pop(desc, None)
    if key in _pending_delete and key not in _open.values():
        _pending_delete.discard(key)
        _delete_self(key)


def attr_changed(loc, changed) -> None:
    """setattr of loc succeeded; changed names what it set (mode, uid,
    gid, size, atime_ns, mtime_ns; xattr for an extended attribute).
    The event is Linux's fsnotify_change (fsnotify_xattr for xattrs)."""
    mask = 0
    if "uid" in changed or "gid" in changed or "mode" in changed or "xattr" in changed:
        mask |= IN_ATTRIB
    if "size" in changed:
        mask |= IN_MODIFY
    if "atime_ns" in changed and "mtime_ns" in changed:
        mask |= IN_ATTRIB
    elif "atime_ns" in changed:
        mask |= IN_ACCESS
    elif "mtime_ns" in changed:
        mask |= IN_MODIFY
    if mask:
        _file_event(loc, loc.inode, mask)


def created(parent, name: bytes, isdir: bool = False) -> None:
    """name was made in the directory parent (a Location)."""
    _deliver(IN_CREATE | (IN_ISDIR if isdir else 0), _key(parent.inode), name, None)


def linked(parent, name: bytes, inode) -> None:
    """A hard link to inode was made as parent/name."""
    _deliver(IN_ATTRIB, None, None, _key(inode))
    _deliver(IN_CREATE, _key(parent.inode), name, None)


def removed(parent, name: bytes, victim) -> None:
    """unlink or rmdir of parent/name (victim: its Location before)."""
    key = _key(victim.inode)
    isdir = S.S_ISDIR(victim.dentry.kind)
    if not isdir:
        _deliver(IN_ATTRIB, None, None, key)  # its link count changed
    _unlinked.add(victim.dentry)
    if isdir or _no_links(victim.inode):
        _gone(key)
    _deliver(IN_DELETE | (IN_ISDIR if isdir else 0), _key(parent.inode), name, None)


def moved(oparent, oname: bytes, nparent, nname: bytes, victim, target, exchange: bool = False) -> None:
    """rename(oparent/oname -> nparent/nname); target: the Location at
    the new name before, or None. exchange: RENAME_EXCHANGE, two moves."""
    okey, nkey = _key(oparent.inode), _key(nparent.inode)
    if exchange:
        _move(okey, oname, nkey, nname, nparent.inode, victim)
        _move(nkey, nname, okey, oname, oparent.inode, target)
        return
    _move(okey, oname, nkey, nname, nparent.inode, victim, target)
    if target is not None:
        _unlinked.add(target.dentry)
        if S.S_ISDIR(target.dentry.kind) or _no_links(target.inode):
            _gone(_key(target.inode))


def _move(okey, oname, nkey, nname, ndir, victim, target=None) -> None:
    """Linux's fsnotify_move."""
    key = _key(victim.inode)
    isdir = IN_ISDIR if S.S_ISDIR(victim.dentry.kind) else 0
    if okey == nkey:
        _deliver(RENAME | isdir, okey, oname, None)
    cookie = next(_cookies) & 0xFFFFFFFF or next(_cookies)
    _deliver(IN_MOVED_FROM | isdir, okey, oname, None, cookie)
    _deliver(IN_MOVED_TO | isdir, nkey, nname, None, cookie)
    if target is not None:  # its link count drops
        tdir = IN_ISDIR if S.S_ISDIR(target.dentry.kind) else 0
        _deliver(IN_ATTRIB | tdir, None, None, _key(target.inode))
    _deliver(IN_MOVE_SELF, None, None, key)
    if marks and key is not None:
        _renamed[key] = (ndir, nname)


def unmounted(devs) -> None:
    """The filesystems with these st_dev numbers are no longer mounted:
    their watches get IN_UNMOUNT, then IN_IGNORED."""
    # newest inode first, as Linux walks the superblock's inode list
    for key in sorted((k for k in marks if k[0] in devs), key=lambda k: k[1], reverse=True):
        isdir = any(m.isdir for m in marks[key])
        _deliver(IN_UNMOUNT | (IN_ISDIR if isdir else 0), None, None, key)
        _destroy_marks(key)


def _no_links(inode) -> bool:
    try:
        return inode.stat().nlink == 0
    except OSError:
        return True


def _gone(key: Key | None) -> None:
    """The file lost its last link: IN_DELETE_SELF now, or at the last
    close of a description still open on it."""
    if key is None or key not in marks:
        return
    if key in _open.values():
        _pending_delete.add(key)
    else:
        _delete_self(key)


def _delete_self(key: Key) -> None:
    _deliver(IN_DELETE_SELF, None, None, key)
    _destroy_marks(key)


def _destroy_marks(key: Key) -> None:
    for m in tuple(marks.get(key, ())):
        m.destroy()
