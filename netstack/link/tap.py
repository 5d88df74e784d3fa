"""A tap device: Ethernet frames to and from the host kernel through
/dev/net/tun (IFF_TAP|IFF_NO_PI), on a non-blocking, close-on-exec fd.

The device can be created inside another network namespace: the calling
thread enters it (setns), opens and configures the device (the tun file
belongs to the namespace current at open, the interface to the one
current at TUNSETIFF), then returns to its own namespace. The fd keeps
working from anywhere.

With `vnet_hdr=True` every frame carries a virtio_net_hdr and the kernel
may hand us TCP super-frames (TSO, up to 64 KiB) with a partial checksum;
read_batch completes the checksum so the layers above see ordinary (if
large) packets. Frames we write carry an empty header (no offload asked).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct

from ..wire.checksum import checksum

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
SIOCGIFINDEX = 0x8933
CLONE_NEWNET = 0x40000000
IFNAMSIZ = 16

VNET_HDR_LEN = 10                 # struct virtio_net_hdr (no mergeable buffers)
VNET_F_NEEDS_CSUM = 1
_VNET_EMPTY = bytes(VNET_HDR_LEN)
_vnet_hdr = struct.Struct("<BBHHHH")   # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset

MAX_FRAME = 65536 + VNET_HDR_LEN + 14   # a TSO super-frame at most

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def netns_path(netns: str) -> str:
    """A namespace given by name (`ip netns add NAME`) or by path."""
    return netns if "/" in netns else os.path.join("/run/netns", netns)


class in_netns:
    """Run the with-block's calls on this thread in another network namespace
    (None: stay). setns acts on the calling thread only."""

    def __init__(self, netns: str | None):
        self.netns = netns
        self._home = -1

    def __enter__(self):
        if self.netns is None:
            return self
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(netns_path(self.netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
            finally:
                os.close(target)
        except BaseException:
            os.close(self._home)
            raise
        return self

    def __exit__(self, *exc):
        if self._home >= 0:
            try:
                _setns(self._home)   # failing here would leave the thread astray: let it raise
            finally:
                os.close(self._home)
                self._home = -1


def _ifreq(name: str, flags: int = 0) -> bytes:
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ:
        raise OSError(errno.EINVAL, f"bad interface name {name!r}")
    return struct.pack("16sH22x", raw, flags)


def _interface_exists(name: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s, SIOCGIFINDEX, _ifreq(name))
        except OSError as e:
            if e.errno == errno.ENODEV:
                return False
            raise
    return True


class TapDevice:
    """One queue of a tap interface. `name` is the interface's name."""

    def __init__(self, fd: int, name: str, vnet_hdr: bool = False):
        self.fd = fd
        self.name = name
        self.vnet_hdr = vnet_hdr

    @classmethod
    def open(cls, name: str = "tap%d", netns: str | None = None, *, attach: bool = False,
             persist: bool = False, vnet_hdr: bool = False, offload: int | None = None) -> "TapDevice":
        """Create the tap `name` (a %d pattern lets the kernel number it) in
        `netns` (a name or a path; None: this thread's namespace), or with
        attach=True open an existing persistent one (ENODEV if there is
        none). vnet_hdr: frames carry a virtio_net_hdr; offload: the
        TUN_F_* bits to accept (needs vnet_hdr)."""
        if offload and not vnet_hdr:
            raise OSError(errno.EINVAL, "offloads need vnet_hdr")
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        with in_netns(netns):
            if attach and ("%" in name or not _interface_exists(name)):
                raise OSError(errno.ENODEV, f"no tap device {name!r}")
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                got = fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, flags))
                actual = got[:IFNAMSIZ].split(b"\0", 1)[0].decode()
                if persist:
                    fcntl.ioctl(fd, TUNSETPERSIST, 1)
                if vnet_hdr:
                    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                    fcntl.ioctl(fd, TUNSETOFFLOAD, offload or 0)
            except BaseException:
                os.close(fd)
                raise
        return cls(fd, actual, vnet_hdr)

    def fileno(self) -> int:
        return self.fd

    def read_batch(self, budget: int = 64) -> list:
        """Up to `budget` frames that are waiting (an empty list when none)."""
        frames = []
        read = os.read
        fd = self.fd
        vnet = self.vnet_hdr
        try:
            while len(frames) < budget:
                frame = read(fd, MAX_FRAME)
                if vnet:
                    frame = self._strip_vnet(frame)
                    if frame is None:
                        continue
                frames.append(frame)
        except BlockingIOError:
            pass
        return frames

    @staticmethod
    def _strip_vnet(raw: bytes):
        if len(raw) < VNET_HDR_LEN:
            return None
        flags, _gso, _hl, _gs, start, offset = _vnet_hdr.unpack_from(raw)
        if not flags & VNET_F_NEEDS_CSUM:
            return raw[VNET_HDR_LEN:]
        frame = bytearray(raw[VNET_HDR_LEN:])
        at = start + offset
        if at + 2 > len(frame) or start > len(frame):
            return None
        # the field holds the pseudo-header sum: summing from csum_start
        # over it gives the full sum
        frame[at:at + 2] = checksum(memoryview(frame)[start:]).to_bytes(2, "big")
        return bytes(frame)

    def write(self, frame: bytes) -> bool:
        """Send one frame; False when the kernel would not take it (the
        interface is down, its queue is full)."""
        try:
            if self.vnet_hdr:
                os.writev(self.fd, (_VNET_EMPTY, frame))
            else:
                os.write(self.fd, frame)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
