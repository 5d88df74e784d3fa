"""The 9P2000.L wire format: messages, qids, directory entries, framing.

A message on the wire is size[4] type[1] tag[2] followed by its fields,
all little endian; size counts the whole message. A qid is type[1]
version[4] path[8]; a string is len[2] + bytes (kept as bytes here: names
are whatever the host file system holds); data is count[4] + bytes.

Each message is a small record class whose field annotations are wire kinds
(U8 ... U64, QID, STR, DATA, STRS, QIDS); `encode(tag, msg)` and
`decode(buf)` work from those. Decoding anything malformed or truncated
raises P9Error and nothing else, so a server can answer garbage with an
error instead of crashing.

Framing: read_message/send_message move one message (and a donated fd) at
a time, for the client; MessageReader buffers a server's stream so it can
see every request already queued (Tflush cancels one of those).
"""
import array
import os
import socket
import struct
from dataclasses import FrozenInstanceError

VERSION = b"9P2000.L"
NOTAG = 0xFFFF
NOFID = 0xFFFFFFFF
NONUNAME = 0xFFFFFFFF
HEADER_SIZE = 7          # size[4] type[1] tag[2]
IOHDRSZ = 24             # room Twrite/Rread headers need inside msize
MAXWELEM = 16            # names per Twalk
V9FS_MAGIC = 0x01021997  # statfs f_type Linux reports for a 9p mount

# qid.type bits
QTDIR, QTAPPEND, QTEXCL, QTMOUNT = 0x80, 0x40, 0x20, 0x10
QTAUTH, QTTMP, QTSYMLINK, QTFILE = 0x08, 0x04, 0x02, 0x00

# Tgetattr request_mask / Rgetattr valid
GETATTR_MODE, GETATTR_NLINK, GETATTR_UID, GETATTR_GID = 0x1, 0x2, 0x4, 0x8
GETATTR_RDEV, GETATTR_ATIME, GETATTR_MTIME, GETATTR_CTIME = 0x10, 0x20, 0x40, 0x80
GETATTR_INO, GETATTR_SIZE, GETATTR_BLOCKS = 0x100, 0x200, 0x400
GETATTR_BASIC = 0x7FF
GETATTR_BTIME, GETATTR_GEN, GETATTR_DATA_VERSION = 0x800, 0x1000, 0x2000
GETATTR_ALL = 0x3FFF

# Tsetattr valid
SETATTR_MODE, SETATTR_UID, SETATTR_GID, SETATTR_SIZE = 0x1, 0x2, 0x4, 0x8
SETATTR_ATIME, SETATTR_MTIME, SETATTR_CTIME = 0x10, 0x20, 0x40
SETATTR_ATIME_SET, SETATTR_MTIME_SET = 0x80, 0x100

# Tunlinkat flags
AT_REMOVEDIR = 0x200

# Tlock/Tgetlock type, Tlock flags, Rlock status
LOCK_TYPE_RDLCK, LOCK_TYPE_WRLCK, LOCK_TYPE_UNLCK = 0, 1, 2
LOCK_FLAGS_BLOCK, LOCK_FLAGS_RECLAIM = 1, 2
LOCK_SUCCESS, LOCK_BLOCKED, LOCK_ERROR, LOCK_GRACE = 0, 1, 2, 3

# Txattrcreate flags (setxattr(2)'s)
XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_SIZE_MAX = 65536  # the largest value Linux accepts


class P9Error(Exception):
    """Malformed, truncated or unencodable 9P data."""


# --- wire kinds -----------------------------------------------------------

class _Kind:
    fixed = None  # struct format characters for fixed-size kinds


class _Int(_Kind):
    def __init__(self, fmt: str, bits: int):
        self.fixed = fmt
        self.bits = bits

    def __repr__(self):
        return f"U{self.bits}"


class _Qid(_Kind):
    fixed = "BIQ"

    def __repr__(self):
        return "QID"


class _Str(_Kind):
    """len[2] + bytes"""
    def encode(self, out: list, value: bytes) -> None:
        out.append(struct.pack("<H", len(value)))
        out.append(value)

    def decode(self, buf: bytes, pos: int) -> tuple[bytes, int]:
        (n,) = _unpack("<H", buf, pos)
        pos += 2
        return _take(buf, pos, n), pos + n

    def __repr__(self):
        return "STR"


class _Data(_Kind):
    """count[4] + bytes"""
    def encode(self, out: list, value: bytes) -> None:
        out.append(struct.pack("<I", len(value)))
        out.append(value)

    def decode(self, buf: bytes, pos: int) -> tuple[bytes, int]:
        (n,) = _unpack("<I", buf, pos)
        pos += 4
        return _take(buf, pos, n), pos + n

    def __repr__(self):
        return "DATA"


class _Strs(_Kind):
    """nwname[2] + strings (Twalk)"""
    def encode(self, out: list, value) -> None:
        out.append(struct.pack("<H", len(value)))
        for s in value:
            STR.encode(out, s)

    def decode(self, buf: bytes, pos: int) -> tuple[tuple, int]:
        (n,) = _unpack("<H", buf, pos)
        pos += 2
        items = []
        for _ in range(n):
            s, pos = STR.decode(buf, pos)
            items.append(s)
        return tuple(items), pos

    def __repr__(self):
        return "STRS"


class _Qids(_Kind):
    """nwqid[2] + qids (Rwalk)"""
    def encode(self, out: list, value) -> None:
        out.append(struct.pack("<H", len(value)))
        for q in value:
            out.append(_QID_STRUCT.pack(q.type, q.version, q.path))

    def decode(self, buf: bytes, pos: int) -> tuple[tuple, int]:
        (n,) = _unpack("<H", buf, pos)
        pos += 2
        _take(buf, pos, 13 * n)  # bounds check before building anything
        items = tuple(Qid(*_QID_STRUCT.unpack_from(buf, pos + 13 * i)) for i in range(n))
        return items, pos + 13 * n

    def __repr__(self):
        return "QIDS"


U8, U16, U32, U64 = _Int("B", 8), _Int("H", 16), _Int("I", 32), _Int("Q", 64)
QID, STR, DATA, STRS, QIDS = _Qid(), _Str(), _Data(), _Strs(), _Qids()
_QID_STRUCT = struct.Struct("<BIQ")
_HEADER = struct.Struct("<IBH")


def _unpack(fmt: str, buf: bytes, pos: int):
    try:
        return struct.unpack_from(fmt, buf, pos)
    except struct.error:
        raise P9Error("truncated message") from None


def _take(buf: bytes, pos: int, n: int) -> bytes:
    if pos + n > len(buf):
        raise P9Error("truncated message")
    return bytes(buf[pos:pos + n])


class _Record:
    """Equality and repr by the fields its class's __slots__ name, as a
    dataclass's: the codec's records are written out, since making sixty
    dataclasses would cost every sandbox's start a tenth of its import."""
    __slots__ = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None

    def __repr__(self):
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({shown})"


class _Frozen(_Record):
    """A dataclass(frozen=True)'s: hashable, never assigned."""
    __slots__ = ()

    def __hash__(self):
        return hash(self._values())

    def __setattr__(self, name, value):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}")


_set = object.__setattr__


class Qid(_Frozen):
    __slots__ = ("type", "version", "path")

    def __init__(self, type: int, version: int, path: int):
        _set(self, "type", type)
        _set(self, "version", version)
        _set(self, "path", path)


# --- messages -------------------------------------------------------------

class _MessageType(type):
    """Gives each message class __slots__ named by its field annotations
    as the class statement makes it (no second class built per message)."""

    def __new__(mcls, name, bases, ns):
        if bases:
            ns["__slots__"] = tuple(ns.get("__annotations__", ()))
        return super().__new__(mcls, name, bases, ns)


class Message(_Record, metaclass=_MessageType):
    """Base of every message class; TYPE is its 9P type number, FIELDS its
    (name, kind) pairs in wire order; each class's __init__ takes its
    fields in that order."""
    TYPE = 0
    FIELDS = ()
    _plan = ()


MESSAGES: dict[int, type] = {}


def _plan_for(pairs) -> tuple:
    """Group runs of fixed-size fields into one struct (qids count as three
    ints), so a message like Rgetattr is a single unpack."""
    plan, run_fmt, run_fields = [], "", []

    def flush():
        if run_fields:
            plan.append(("fixed", struct.Struct("<" + run_fmt), tuple(run_fields)))

    for name, kind in pairs:
        if kind.fixed is not None:
            run_fmt += kind.fixed
            run_fields.append((name, kind is QID))
        else:
            flush()
            run_fmt, run_fields = "", []
            plan.append(("var", kind, name))
    flush()
    return tuple(plan)


def _add_initializers(classes) -> None:
    """Give each class an __init__ storing its fields, as a dataclass's
    does, all compiled as one source: the codec's sixty classes are made
    at every sandbox's start, and one compile costs a fraction of sixty."""
    src = []
    for i, cls in enumerate(classes):
        names = [name for name, _ in cls.FIELDS]
        src.append(f"def init{i}(self{''.join(', ' + n for n in names)}):\n"
                   + "".join(f"    self.{n} = {n}\n" for n in names) + "    pass\n")
    made: dict = {}
    exec("".join(src), {}, made)
    for i, cls in enumerate(classes):
        init = made[f"init{i}"]
        init.__name__, init.__qualname__ = "__init__", f"{cls.__qualname__}.__init__"
        cls.__init__ = init


def message(type_: int):
    """Class decorator: register a message class (fields from its
    wire-kind annotations; __init__ added once all are declared)."""
    def wrap(cls):
        cls.TYPE = type_
        cls.FIELDS = pairs = tuple(cls.__dict__.get("__annotations__", {}).items())
        cls._plan = _plan_for(pairs)
        MESSAGES[type_] = cls
        return cls
    return wrap


@message(7)
class Rlerror(Message):
    ecode: U32


@message(8)
class Tstatfs(Message):
    fid: U32


@message(9)
class Rstatfs(Message):
    type: U32
    bsize: U32
    blocks: U64
    bfree: U64
    bavail: U64
    files: U64
    ffree: U64
    fsid: U64
    namelen: U32


@message(12)
class Tlopen(Message):
    fid: U32
    flags: U32


@message(13)
class Rlopen(Message):
    qid: QID
    iounit: U32


@message(14)
class Tlcreate(Message):
    fid: U32
    name: STR
    flags: U32
    mode: U32
    gid: U32


@message(15)
class Rlcreate(Message):
    qid: QID
    iounit: U32


@message(16)
class Tsymlink(Message):
    fid: U32
    name: STR
    symtgt: STR
    gid: U32


@message(17)
class Rsymlink(Message):
    qid: QID


@message(18)
class Tmknod(Message):
    dfid: U32
    name: STR
    mode: U32
    major: U32
    minor: U32
    gid: U32


@message(19)
class Rmknod(Message):
    qid: QID


@message(20)
class Trename(Message):
    fid: U32
    dfid: U32
    name: STR


@message(21)
class Rrename(Message):
    pass


@message(22)
class Treadlink(Message):
    fid: U32


@message(23)
class Rreadlink(Message):
    target: STR


@message(24)
class Tgetattr(Message):
    fid: U32
    request_mask: U64


@message(25)
class Rgetattr(Message):
    valid: U64
    qid: QID
    mode: U32
    uid: U32
    gid: U32
    nlink: U64
    rdev: U64
    size: U64
    blksize: U64
    blocks: U64
    atime_sec: U64
    atime_nsec: U64
    mtime_sec: U64
    mtime_nsec: U64
    ctime_sec: U64
    ctime_nsec: U64
    btime_sec: U64
    btime_nsec: U64
    gen: U64
    data_version: U64


@message(26)
class Tsetattr(Message):
    fid: U32
    valid: U32
    mode: U32
    uid: U32
    gid: U32
    size: U64
    atime_sec: U64
    atime_nsec: U64
    mtime_sec: U64
    mtime_nsec: U64


@message(27)
class Rsetattr(Message):
    pass


@message(30)
class Txattrwalk(Message):
    fid: U32
    newfid: U32
    name: STR


@message(31)
class Rxattrwalk(Message):
    size: U64


@message(32)
class Txattrcreate(Message):
    fid: U32
    name: STR
    attr_size: U64
    flags: U32


@message(33)
class Rxattrcreate(Message):
    pass


@message(40)
class Treaddir(Message):
    fid: U32
    offset: U64
    count: U32


@message(41)
class Rreaddir(Message):
    data: DATA  # packed directory entries, see encode_dirents


@message(50)
class Tfsync(Message):
    fid: U32
    datasync: U32  # Linux's client sends it; the 2000.L text shows fid only


@message(51)
class Rfsync(Message):
    pass


@message(52)
class Tlock(Message):
    fid: U32
    type: U8
    flags: U32
    start: U64
    length: U64  # 0: to the end of the file
    proc_id: U32
    client_id: STR


@message(53)
class Rlock(Message):
    status: U8


@message(54)
class Tgetlock(Message):
    fid: U32
    type: U8
    start: U64
    length: U64
    proc_id: U32
    client_id: STR


@message(55)
class Rgetlock(Message):
    type: U8
    start: U64
    length: U64
    proc_id: U32
    client_id: STR


@message(70)
class Tlink(Message):
    dfid: U32
    fid: U32
    name: STR


@message(71)
class Rlink(Message):
    pass


@message(72)
class Tmkdir(Message):
    dfid: U32
    name: STR
    mode: U32
    gid: U32


@message(73)
class Rmkdir(Message):
    qid: QID


@message(74)
class Trenameat(Message):
    olddirfid: U32
    oldname: STR
    newdirfid: U32
    newname: STR


@message(75)
class Rrenameat(Message):
    pass


@message(76)
class Tunlinkat(Message):
    dirfid: U32
    name: STR
    flags: U32


@message(77)
class Runlinkat(Message):
    pass


@message(100)
class Tversion(Message):
    msize: U32
    version: STR


@message(101)
class Rversion(Message):
    msize: U32
    version: STR


@message(102)
class Tauth(Message):
    afid: U32
    uname: STR
    aname: STR
    n_uname: U32


@message(103)
class Rauth(Message):
    aqid: QID


@message(104)
class Tattach(Message):
    fid: U32
    afid: U32
    uname: STR
    aname: STR
    n_uname: U32


@message(105)
class Rattach(Message):
    qid: QID


@message(108)
class Tflush(Message):
    oldtag: U16


@message(109)
class Rflush(Message):
    pass


@message(110)
class Twalk(Message):
    fid: U32
    newfid: U32
    wnames: STRS


@message(111)
class Rwalk(Message):
    qids: QIDS


@message(116)
class Tread(Message):
    fid: U32
    offset: U64
    count: U32


@message(117)
class Rread(Message):
    data: DATA


@message(118)
class Twrite(Message):
    fid: U32
    offset: U64
    data: DATA


@message(119)
class Rwrite(Message):
    count: U32


@message(120)
class Tclunk(Message):
    fid: U32


@message(121)
class Rclunk(Message):
    pass


@message(122)
class Tremove(Message):
    fid: U32


@message(123)
class Rremove(Message):
    pass


_add_initializers(list(MESSAGES.values()))


# --- encoding and decoding ------------------------------------------------

def encode(tag: int, msg: Message) -> bytes:
    """The whole wire message, size field included."""
    out = [b""]
    try:
        for step in msg._plan:
            if step[0] == "fixed":
                values = []
                for name, is_qid in step[2]:
                    v = getattr(msg, name)
                    if is_qid:
                        values += (v.type, v.version, v.path)
                    else:
                        values.append(v)
                out.append(step[1].pack(*values))
            else:
                step[1].encode(out, getattr(msg, step[2]))
        body = b"".join(out)
        return _HEADER.pack(HEADER_SIZE + len(body), msg.TYPE, tag) + body
    except (struct.error, TypeError, AttributeError) as e:
        raise P9Error(f"cannot encode {type(msg).__name__}: {e}") from None


def decode(buf: bytes) -> tuple[int, Message]:
    """(tag, message) from one whole wire message."""
    if len(buf) < HEADER_SIZE:
        raise P9Error("truncated header")
    size, type_, tag = _HEADER.unpack_from(buf, 0)
    if size != len(buf):
        raise P9Error(f"size field {size} but {len(buf)} bytes")
    cls = MESSAGES.get(type_)
    if cls is None:
        raise P9Error(f"unknown message type {type_}")
    return tag, decode_body(cls, buf, HEADER_SIZE)


def decode_body(cls, buf: bytes, pos: int) -> Message:
    values = {}
    for step in cls._plan:
        if step[0] == "fixed":
            st = step[1]
            if pos + st.size > len(buf):
                raise P9Error(f"truncated {cls.__name__}")
            raw = st.unpack_from(buf, pos)
            pos += st.size
            i = 0
            for name, is_qid in step[2]:
                if is_qid:
                    values[name] = Qid(raw[i], raw[i + 1], raw[i + 2])
                    i += 3
                else:
                    values[name] = raw[i]
                    i += 1
        else:
            values[step[2]], pos = step[1].decode(buf, pos)
    if pos != len(buf):
        raise P9Error(f"{len(buf) - pos} trailing bytes after {cls.__name__}")
    return cls(**values)


def peek_header(buf: bytes) -> tuple[int, int, int]:
    """(size, type, tag) of a message whose body may be bad: lets a server
    answer a malformed request with an error carrying the right tag."""
    if len(buf) < HEADER_SIZE:
        raise P9Error("truncated header")
    return _HEADER.unpack_from(buf, 0)


# --- directory entries (Rreaddir data) -----------------------------------

class Dirent(_Frozen):
    __slots__ = ("qid", "offset", "type", "name")

    def __init__(self, qid: Qid, offset: int, type: int, name: bytes):
        _set(self, "qid", qid)
        _set(self, "offset", offset)  # cookie for the Treaddir that continues after this entry
        _set(self, "type", type)      # d_type
        _set(self, "name", name)


_DIRENT_HEAD = struct.Struct("<BIQQBH")  # qid, offset[8], type[1], name len[2]


def dirent_size(name: bytes) -> int:
    return _DIRENT_HEAD.size + len(name)


def encode_dirent(d: Dirent) -> bytes:
    try:
        return _DIRENT_HEAD.pack(d.qid.type, d.qid.version, d.qid.path, d.offset, d.type,
                                 len(d.name)) + d.name
    except (struct.error, AttributeError, TypeError) as e:
        raise P9Error(f"cannot encode dirent: {e}") from None


def encode_dirents(entries) -> bytes:
    return b"".join(encode_dirent(d) for d in entries)


def decode_dirents(data: bytes) -> list[Dirent]:
    out, pos = [], 0
    while pos < len(data):
        if pos + _DIRENT_HEAD.size > len(data):
            raise P9Error("truncated dirent")
        qt, qv, qp, off, dt, n = _DIRENT_HEAD.unpack_from(data, pos)
        pos += _DIRENT_HEAD.size
        name = _take(data, pos, n)
        pos += n
        out.append(Dirent(Qid(qt, qv, qp), off, dt, name))
    return out


# --- framing --------------------------------------------------------------

MAX_DONATED_FDS = 4
_ANC_SPACE = socket.CMSG_SPACE(MAX_DONATED_FDS * array.array("i").itemsize)
_MSG_CTRUNC = int(socket.MSG_CTRUNC)  # socket's is an enum.IntFlag: `flags & it` runs enum code, per message


def _recv_exact(sock: socket.socket, n: int, fds: list | None) -> bytes:
    """n bytes, or b"" at a clean EOF before the first byte. Donated fds
    (SCM_RIGHTS) that arrive on the way are appended to fds; with fds None
    any that arrive are closed."""
    chunks, got = [], 0
    while got < n:
        data, anc, flags, _ = sock.recvmsg(n - got, _ANC_SPACE, socket.MSG_CMSG_CLOEXEC)
        received = _fds_from_ancillary(anc)
        if fds is None or flags & _MSG_CTRUNC:
            for fd in received:
                _close_quietly(fd)
            if flags & _MSG_CTRUNC and fds is not None:
                raise P9Error("too many fds in ancillary data")
        else:
            fds.extend(received)
        if not data:
            if got == 0:
                return b""
            raise P9Error("connection closed inside a message")
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def _fds_from_ancillary(anc) -> list[int]:
    out = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[:len(data) - len(data) % a.itemsize])
            out.extend(a)
    return out


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def read_message(sock: socket.socket, max_size: int, fds: list | None = None) -> bytes | None:
    """One whole message from a stream socket; None at EOF between messages.
    A size below the header or above max_size raises P9Error (the stream
    cannot be trusted after that)."""
    head = _recv_exact(sock, 4, fds)
    if not head:
        return None
    (size,) = struct.unpack("<I", head)
    if size < HEADER_SIZE or size > max_size:
        raise P9Error(f"bad message size {size}")
    rest = _recv_exact(sock, size - 4, fds)
    if len(rest) != size - 4:
        raise P9Error("connection closed inside a message")
    return head + rest


class MessageReader:
    """A server's side of the stream: whole messages, buffered, so it can
    see requests queued behind the one it serves (for Tflush). Any fds a
    peer sends are discarded by the kernel (plain recv, no ancillary
    buffer)."""
    CHUNK = 1 << 16

    def __init__(self, sock: socket.socket, max_size: int):
        self.sock = sock
        self.max_size = max_size
        self._buf = bytearray()
        self._error: P9Error | None = None

    def read(self, wait: bool = True) -> list[bytes] | None:
        """The whole messages available; with wait, block until one is.
        [] when none is ready (wait False), None at EOF between messages.
        Raises P9Error on broken framing, once the messages before the
        break have been returned."""
        while True:
            frames = self._split()
            if frames:
                return frames
            if self._error is not None:
                raise self._error
            try:
                chunk = self.sock.recv(max(self.CHUNK, self._missing()),
                                       0 if wait else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return []
            if not chunk:
                if self._buf:
                    raise P9Error("connection closed inside a message")
                return None
            self._buf += chunk

    def _missing(self) -> int:
        if len(self._buf) < 4:
            return 0
        return struct.unpack_from("<I", self._buf, 0)[0] - len(self._buf)

    def _split(self) -> list[bytes]:
        buf, pos, out = self._buf, 0, []
        while self._error is None and len(buf) - pos >= 4:
            (size,) = struct.unpack_from("<I", buf, pos)
            if size < HEADER_SIZE or size > self.max_size:
                self._error = P9Error(f"bad message size {size}")
                break
            if len(buf) - pos < size:
                break
            out.append(bytes(buf[pos:pos + size]))
            pos += size
        if pos:
            del buf[:pos]
        return out


def send_message(sock: socket.socket, data: bytes, fd: int | None = None) -> None:
    """Send one whole message, with fd as SCM_RIGHTS on its first byte."""
    if fd is None:
        sock.sendall(data)
        return
    sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    if sent < len(data):
        sock.sendall(data[sent:])
