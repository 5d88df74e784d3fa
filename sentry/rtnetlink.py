"""NETLINK_ROUTE (rtnetlink(7)): the requests that read the sandbox's
interfaces, addresses, routes and rules, answered from the netstack.

`handle(stack, req)` takes one request message and returns what the kernel
sends back: a list of (type, body) replies, or a Dump (the messages of
a NLM_F_DUMP request and the error its NLMSG_DONE carries); errors the
kernel acks (EOPNOTSUPP, EPERM, EINVAL...) are raised as NetlinkError.
The netlink socket (sentry/netlink.py) frames them.

The answers mimic net/core/rtnetlink.c, net/ipv4/devinet.c and fib,
net/ipv6/addrconf.c and route.c: the same attributes in the same order, the
routing tables Linux derives from the addresses (local and broadcast routes
in the local table, prefix routes in main), and with NETLINK_GET_STRICT_CHK
the same validation of dump requests. Changing anything is refused:
EPERM without CAP_NET_ADMIN (Linux checks that first), else EOPNOTSUPP,
except an RTM_NEWLINK/SETLINK that asks for what already holds
(`ip link set lo up`), which succeeds.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from .netdevice import (AF_INET, AF_INET6, AF_UNSPEC, IFF_CHANGEABLE, Device, broadcast4,
                        by_index, by_name, devices)

# netlink framing
NLMSG_HDR = struct.Struct("<IHHII")       # len, type, flags, seq, pid
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN, NLMSG_MIN_TYPE = 1, 2, 3, 4, 16
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_ECHO = 0x1, 0x2, 0x4, 0x8
NLM_F_DUMP_INTR, NLM_F_DUMP_FILTERED = 0x10, 0x20
NLM_F_ROOT, NLM_F_MATCH, NLM_F_DUMP = 0x100, 0x200, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLA_HDR = struct.Struct("<HH")
NLA_TYPE_MASK = 0x3FFF                    # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
RTM_NEWNETCONF, RTM_GETNETCONF = 80, 82
RTM_MAX = 123
RTNL_KIND_GET = 2

IFINFOMSG = struct.Struct("<BxHiII")      # family, type, index, flags, change
IFADDRMSG = struct.Struct("<BBBBi")       # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("<BBBBBBBBI")       # family, dst_len, src_len, tos, table, protocol, scope, type, flags
FIB_RULE_HDR = struct.Struct("<BBBBBBBBI")  # family, dst_len, src_len, tos, table, res1, res2, action, flags
NDMSG_SIZE = 12
NDA_DST, NTF_PROXY = 1, 0x8
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_QDISC, IFLA_STATS = 1, 2, 3, 4, 5, 6, 7
IFLA_MASTER, IFLA_PROTINFO, IFLA_TXQLEN, IFLA_MAP, IFLA_OPERSTATE, IFLA_LINKMODE = 10, 12, 13, 14, 16, 17
IFLA_LINKINFO, IFLA_STATS64, IFLA_GROUP, IFLA_EXT_MASK, IFLA_PROMISCUITY = 18, 23, 27, 29, 30
IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES, IFLA_CARRIER, IFLA_CARRIER_CHANGES = 31, 32, 33, 35
IFLA_PROTO_DOWN, IFLA_GSO_MAX_SEGS, IFLA_GSO_MAX_SIZE, IFLA_XDP = 39, 40, 41, 43
IFLA_TARGET_NETNSID, IFLA_CARRIER_UP_COUNT, IFLA_CARRIER_DOWN_COUNT = 46, 47, 48
IFLA_MIN_MTU, IFLA_MAX_MTU, IFLA_ALT_IFNAME, IFLA_GRO_MAX_SIZE = 50, 51, 53, 58
IFLA_TSO_MAX_SIZE, IFLA_TSO_MAX_SEGS, IFLA_ALLMULTI = 59, 60, 61
IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE, IFLA_MAX_PACING_OFFLOAD_HORIZON = 63, 64, 66
IFLA_NETNS_IMMUTABLE, IFLA_HEADROOM, IFLA_TAILROOM = 67, 68, 69
IFLA_XDP_ATTACHED = 2
IFLA_INET6_FLAGS, IFLA_INET6_CONF, IFLA_INET6_STATS, IFLA_INET6_CACHEINFO = 1, 2, 3, 5
IFLA_INET6_ICMP6STATS, IFLA_INET6_TOKEN, IFLA_INET6_ADDR_GEN_MODE = 6, 7, 8
IFLA_AF_SPEC, IFLA_INET_CONF = 26, 1
IF_READY = 0x80000000
RTEXT_FILTER_SKIP_STATS = 1 << 3
IF_OPER_UNKNOWN, IF_OPER_DOWN, IF_OPER_UP = 0, 2, 6
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 4, 6, 8
IFA_TARGET_NETNSID, IFA_PROTO = 10, 11
IFA_F_PERMANENT = 0x80
IFAPROT_KERNEL_LO = 1
INFINITY_LIFE = 0xFFFFFFFF
RTA_DST, RTA_SRC, RTA_IIF, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 2, 3, 4, 5, 6, 7
RTA_CACHEINFO, RTA_TABLE, RTA_MARK, RTA_PREF, RTA_UID = 12, 15, 16, 20, 25
RTA_IP_PROTO, RTA_SPORT, RTA_DPORT = 27, 28, 29
RT_TABLE_UNSPEC, RT_TABLE_COMPAT, RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL = 0, 252, 253, 254, 255
RTPROT_UNSPEC, RTPROT_KERNEL, RTPROT_BOOT = 0, 2, 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST = 1, 2, 3, 5
RTM_F_NOTIFY, RTM_F_CLONED, RTM_F_PREFIX, RTM_F_LOOKUP_TABLE, RTM_F_FIB_MATCH = 0x100, 0x200, 0x800, 0x1000, 0x2000
RTCF_BROADCAST, RTCF_LOCAL = 0x10000000, 0x80000000
FRA_PRIORITY, FRA_SUPPRESS_PREFIXLEN, FRA_TABLE, FRA_PROTOCOL = 6, 14, 15, 21
FR_ACT_TO_TBL = 1
IP6_RT_PRIO_ADDRCONF, IP6_RT_PRIO_USER = 256, 1024
NETCONFA_IFINDEX, NETCONFA_FORWARDING, NETCONFA_RP_FILTER, NETCONFA_MC_FORWARDING = 1, 2, 3, 4
NETCONFA_PROXY_NEIGH, NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN, NETCONFA_BC_FORWARDING = 5, 6, 8
NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT = -1, -2
IFNAMSIZ = 16

# rtnl_link_stats64's fields, in order (rtnl_link_stats: the first 24, as u32)
STATS_FIELDS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
                "rx_dropped", "tx_dropped", "multicast", "collisions", "rx_length_errors",
                "rx_over_errors", "rx_crc_errors", "rx_frame_errors", "rx_fifo_errors",
                "rx_missed_errors", "tx_aborted_errors", "tx_carrier_errors", "tx_fifo_errors",
                "tx_heartbeat_errors", "tx_window_errors", "rx_compressed", "tx_compressed",
                "rx_nohandler", "rx_otherhost_dropped")


class NetlinkError(Exception):
    """A request the kernel answers with NLMSG_ERROR: errno and the
    extended-ack text Linux gives (None when it gives none)."""

    def __init__(self, errno_: int, text: str | None = None):
        super().__init__(errno_, text)
        self.errno = errno_
        self.text = text


@dataclass
class Dump:
    """A dump's answer: messages [(type, body)], the flags each carries
    beside NLM_F_MULTI, and the errno NLMSG_DONE reports (0 for success)
    with its flags (None: the messages' own). `done_inline`: the dump
    function ends in the call that emits the last messages, so NLMSG_DONE
    shares their batch (IPv6's and the rules' dumps); others return once
    more and NLMSG_DONE comes alone."""
    messages: list = field(default_factory=list)
    flags: int = 0
    error: int = 0
    text: str | None = None
    done_flags: int | None = None
    done_inline: bool = False


@dataclass
class Request:
    type: int
    flags: int
    seq: int
    body: bytes                 # the message after its header
    strict: bool = False        # NETLINK_GET_STRICT_CHK
    privileged: bool = False    # CAP_NET_ADMIN
    uid: int = 0
    boot_cs: int = 0            # centiseconds from boot to now, for cache info stamps
    warning: str | None = None  # an extended-ack text set along the way (NL_SET_ERR_MSG)


# --------------------------------------------------------------------------
# attributes
# --------------------------------------------------------------------------

def nla(atype: int, data: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    n = NLA_HDR.size + len(data)
    return NLA_HDR.pack(n, atype) + data + bytes(-n % 4)


def u8(atype, v):
    return nla(atype, struct.pack("<B", v))


def u16(atype, v):
    return nla(atype, struct.pack("<H", v))


def u32(atype, v):
    return nla(atype, struct.pack("<I", v & 0xFFFFFFFF))


def cstr(atype, s: bytes):
    return nla(atype, s + b"\0")


LEFTOVER = "bytes leftover after parsing attributes"


def parse_attrs(data: bytes, strict: bool = False, req: "Request | None" = None) -> dict[int, bytes]:
    """nla_parse: {type: payload}, the last of a repeated type winning. A
    truncated attribute ends the walk: strict parsing (NL_VALIDATE_STRICT)
    refuses the leftover bytes; the liberal one only notes it in the
    extended ack, where a later error without a text of its own shows it."""
    out: dict[int, bytes] = {}
    off = 0
    while off + NLA_HDR.size <= len(data):
        ln, atype = NLA_HDR.unpack_from(data, off)
        if ln < NLA_HDR.size or off + ln > len(data):
            break
        out[atype & NLA_TYPE_MASK] = data[off + NLA_HDR.size:off + ln]
        off += (ln + 3) & ~3
    if off < len(data):
        if strict:
            raise NetlinkError(errno.EINVAL, LEFTOVER)
        if req is not None:
            req.warning = LEFTOVER
    return out


def _attr_u32(attrs: dict, atype: int) -> int | None:
    v = attrs.get(atype)
    if v is None:
        return None
    if len(v) < 4:
        raise NetlinkError(errno.ERANGE, "Attribute failed policy validation")
    return struct.unpack_from("<I", v)[0]


def _attr_name(attrs: dict, atype: int) -> bytes | None:
    """An interface name attribute (NLA_STRING, at most IFNAMSIZ-1 bytes)."""
    v = attrs.get(atype)
    if v is None:
        return None
    name = v.split(b"\0", 1)[0]
    if len(name) > IFNAMSIZ - 1:
        raise NetlinkError(errno.ERANGE, "Attribute failed policy validation")
    return name


def _only(attrs: dict, allowed: tuple, text: str) -> None:
    for atype in attrs:
        if atype not in allowed:
            raise NetlinkError(errno.EINVAL, text)


# --------------------------------------------------------------------------
# links
# --------------------------------------------------------------------------

def _stats64(dev: Device) -> bytes:
    return struct.pack("<25Q", *(dev.stat(f) & 0xFFFFFFFFFFFFFFFF for f in STATS_FIELDS))


def _stats32(dev: Device) -> bytes:
    return struct.pack("<24I", *(dev.stat(f) & 0xFFFFFFFF for f in STATS_FIELDS[:24]))


def _operstate(dev: Device) -> int:
    if not dev.up:
        return IF_OPER_DOWN
    return IF_OPER_UNKNOWN if dev.loopback else IF_OPER_UP


def link_message(dev: Device, ext_mask: int = 0, boot_cs: int = 0) -> bytes:
    """rtnl_fill_ifinfo: an RTM_NEWLINK body."""
    lo = dev.loopback
    a = [cstr(IFLA_IFNAME, dev.name), u32(IFLA_TXQLEN, dev.txqlen), u8(IFLA_OPERSTATE, _operstate(dev)),
         u8(IFLA_LINKMODE, 0)]
    if lo:
        a.append(u8(IFLA_NETNS_IMMUTABLE, 1))     # loopback cannot leave its namespace
    a += [u32(IFLA_MTU, dev.mtu), u32(IFLA_MIN_MTU, 0 if lo else 68), u32(IFLA_MAX_MTU, 0 if lo else 65535),
          u32(IFLA_GROUP, 0), u32(IFLA_PROMISCUITY, 0), u32(IFLA_ALLMULTI, 0), u32(IFLA_NUM_TX_QUEUES, 1),
          u32(IFLA_GSO_MAX_SEGS, 65535), u32(IFLA_GSO_MAX_SIZE, 65536), u32(IFLA_GRO_MAX_SIZE, 65536),
          u32(IFLA_GSO_IPV4_MAX_SIZE, 65536), u32(IFLA_GRO_IPV4_MAX_SIZE, 65536),
          u32(IFLA_TSO_MAX_SIZE, 524280 if lo else 65536), u32(IFLA_TSO_MAX_SEGS, 65535),
          u32(IFLA_MAX_PACING_OFFLOAD_HORIZON, 0), u32(IFLA_NUM_RX_QUEUES, 1), u8(IFLA_CARRIER, int(dev.up)),
          u32(IFLA_CARRIER_CHANGES, 0), u32(IFLA_CARRIER_UP_COUNT, 0), u32(IFLA_CARRIER_DOWN_COUNT, 0),
          u16(IFLA_HEADROOM, 0), u16(IFLA_TAILROOM, 0), u8(IFLA_PROTO_DOWN, 0)]
    if dev.hwaddr:
        a += [nla(IFLA_ADDRESS, dev.hwaddr), nla(IFLA_BROADCAST, dev.broadcast_hw)]
    if not ext_mask & RTEXT_FILTER_SKIP_STATS:
        a += [nla(IFLA_STATS64, _stats64(dev)), nla(IFLA_STATS, _stats32(dev))]
    a += [nla(IFLA_XDP, u8(IFLA_XDP_ATTACHED, 0)), cstr(IFLA_QDISC, b"noqueue"),
          nla(IFLA_AF_SPEC, nla(AF_INET, nla(IFLA_INET_CONF, _inet_conf(dev)))
              + nla(AF_INET6, _inet6_info(dev, boot_cs))),
          nla(IFLA_MAP, bytes(32))]
    return IFINFOMSG.pack(AF_UNSPEC, dev.arptype, dev.index, dev.flags, 0) + b"".join(a)


# IPV4_DEVCONF_* and DEVCONF_* (IPv6) as a fresh namespace has them;
# the values that differ between loopback and other devices are patched in.
_INET_CONF = (0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10000, 1000,
              0, 0, 0, 0, 1)
_IPV4_DEVCONF_NOXFRM, _IPV4_DEVCONF_NOPOLICY = 14, 15
_INET6_CONF = (0, 64, 0, 1, 1, 1, 1, -1, 4000, 1000, -1, 604800, 86400, 3, 600, 16, 0, 1, 1, 1, 60000, 0,
               0, 0, 0, 0, 0, -1, 0, 0, 10000, 1000, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 3600000, 0, 0, 1, 0,
               0, 0, 0, 0, 1024, 0, 65535, -1, 1, 0, 0, 0)
_DEVCONF_MTU6, _DEVCONF_USE_TEMPADDR, _DEVCONF_ACCEPT_DAD = 2, 10, 27
IPSTATS_MIB_MAX, ICMP6_MIB_MAX = 38, 7


def _inet_conf(dev: Device) -> bytes:
    conf = list(_INET_CONF)
    if not dev.loopback:
        conf[_IPV4_DEVCONF_NOXFRM] = conf[_IPV4_DEVCONF_NOPOLICY] = 0
    return struct.pack(f"<{len(conf)}i", *conf)


def _inet6_info(dev: Device, boot_cs: int) -> bytes:
    """inet6_fill_ifla6_attrs: flags, cache info, configuration, (zero)
    statistics, token and address generation mode."""
    conf = list(_INET6_CONF)
    conf[_DEVCONF_MTU6] = dev.mtu
    if not dev.loopback:
        conf[_DEVCONF_USE_TEMPADDR], conf[_DEVCONF_ACCEPT_DAD] = 0, 1
    stats = struct.pack(f"<{IPSTATS_MIB_MAX}Q", IPSTATS_MIB_MAX, *([0] * (IPSTATS_MIB_MAX - 1)))
    icmp6 = struct.pack(f"<{ICMP6_MIB_MAX}Q", ICMP6_MIB_MAX, *([0] * (ICMP6_MIB_MAX - 1)))
    return (u32(IFLA_INET6_FLAGS, IF_READY)
            + nla(IFLA_INET6_CACHEINFO, struct.pack("<IIII", 65535, boot_cs, 30000, 1000))
            + nla(IFLA_INET6_CONF, struct.pack(f"<{len(conf)}i", *conf))
            + nla(IFLA_INET6_STATS, stats) + nla(IFLA_INET6_ICMP6STATS, icmp6)
            + nla(IFLA_INET6_TOKEN, bytes(16)) + u8(IFLA_INET6_ADDR_GEN_MODE, 0))


def link6_message(dev: Device, boot_cs: int) -> bytes:
    """inet6_fill_ifinfo: the IPv6 view of a link (an AF_INET6 RTM_GETLINK dump)."""
    a = [cstr(IFLA_IFNAME, dev.name)]
    if dev.hwaddr:
        a.append(nla(IFLA_ADDRESS, dev.hwaddr))
    a += [u32(IFLA_MTU, dev.mtu), u8(IFLA_OPERSTATE, _operstate(dev)), nla(IFLA_PROTINFO, _inet6_info(dev, boot_cs))]
    return IFINFOMSG.pack(AF_INET6, dev.arptype, dev.index, dev.flags, 0) + b"".join(a)


def _getlink(stack, req: Request, family: int):
    body = req.body
    if req.flags & NLM_F_DUMP:
        if family == AF_INET6:
            return _dump_links6(stack, req)
        attrs = {}
        if req.strict:
            if len(body) < IFINFOMSG.size:
                return Dump(error=errno.EINVAL, text="Invalid header for link dump")
            _fam, itype, index, flags, change = IFINFOMSG.unpack_from(body)
            if body[1] or itype or flags or change:
                return Dump(error=errno.EINVAL, text="Invalid values in header for link dump request")
            if index:
                return Dump(error=errno.EINVAL, text="Filter by device index not supported for link dumps")
            try:
                attrs = parse_attrs(body[IFINFOMSG.size:], strict=True)
                _only(attrs, (IFLA_TARGET_NETNSID, IFLA_EXT_MASK, IFLA_MASTER, IFLA_LINKINFO),
                      "Unsupported attribute in link dump request")
            except NetlinkError as e:
                return Dump(error=e.errno, text=e.text)
        elif len(body) >= IFINFOMSG.size:
            attrs = parse_attrs(body[IFINFOMSG.size:], req=req)
        try:
            ext = _attr_u32(attrs, IFLA_EXT_MASK) or 0
            master = _attr_u32(attrs, IFLA_MASTER) or 0
        except NetlinkError as e:
            if req.strict:
                return Dump(error=e.errno, text=e.text)
            ext = master = 0              # a bad filter is ignored, as the legacy parse does
        # the sandbox's links have no master and no link kind: such filters match none
        if master or IFLA_LINKINFO in attrs:
            return Dump(flags=NLM_F_DUMP_FILTERED)
        return Dump([(RTM_NEWLINK, link_message(d, ext, req.boot_cs)) for d in devices(stack)])
    # rtnl_getlink: one link by index or name
    if len(body) < IFINFOMSG.size:
        raise NetlinkError(errno.EINVAL, "Invalid header for get link")
    _fam, itype, index, flags, change = IFINFOMSG.unpack_from(body)
    if req.strict:
        if body[1] or itype or flags or change:
            raise NetlinkError(errno.EINVAL, "Invalid values in header for get link request")
        attrs = parse_attrs(body[IFINFOMSG.size:], strict=True)
        _only(attrs, (IFLA_IFNAME, IFLA_ALT_IFNAME, IFLA_EXT_MASK, IFLA_TARGET_NETNSID),
              "Unsupported attribute in get link request")
    else:
        attrs = parse_attrs(body[IFINFOMSG.size:], req=req)
    ext = _attr_u32(attrs, IFLA_EXT_MASK) or 0
    name = _attr_name(attrs, IFLA_IFNAME) or _attr_name(attrs, IFLA_ALT_IFNAME)
    if index > 0:
        dev = by_index(stack, index)
    elif name is not None:
        dev = by_name(stack, name)
    else:
        raise NetlinkError(errno.EINVAL)
    if dev is None:
        raise NetlinkError(errno.ENODEV)
    return [(RTM_NEWLINK, link_message(dev, ext, req.boot_cs))]


def _dump_links6(stack, req: Request) -> Dump:
    if req.strict:
        body = req.body
        if len(body) < IFINFOMSG.size:
            return Dump(error=errno.EINVAL, text="Invalid header for link dump")
        if len(body) > IFINFOMSG.size:
            return Dump(error=errno.EINVAL, text="Invalid data after header")
        _fam, itype, index, flags, change = IFINFOMSG.unpack_from(body)
        if body[1] or itype or index or flags or change:
            return Dump(error=errno.EINVAL, text="Invalid values in header for link dump request")
    return Dump([(RTM_NEWLINK, link6_message(d, req.boot_cs)) for d in devices(stack)], done_inline=True)


def _changelink(stack, req: Request):
    """RTM_NEWLINK/SETLINK by a privileged caller: only a change to what
    already holds is accepted."""
    body = req.body
    if len(body) < IFINFOMSG.size:
        raise NetlinkError(errno.EINVAL)
    _fam, _itype, index, flags, change = IFINFOMSG.unpack_from(body)
    attrs = parse_attrs(body[IFINFOMSG.size:], strict=req.strict)
    name = _attr_name(attrs, IFLA_IFNAME)
    if index > 0:
        dev = by_index(stack, index)
    elif name is not None:
        dev = by_name(stack, name)
    else:
        dev = None
    if dev is None:
        if req.type == RTM_NEWLINK and req.flags & NLM_F_CREATE:
            raise NetlinkError(errno.EOPNOTSUPP)   # no link kinds to create
        raise NetlinkError(errno.ENODEV)
    if flags or change:
        want = (flags & change) | (dev.flags & ~change) if change else flags
        if (want ^ dev.flags) & IFF_CHANGEABLE:
            raise NetlinkError(errno.EOPNOTSUPP)
    same = {IFLA_IFNAME: lambda v: _attr_name(attrs, IFLA_IFNAME) == dev.name,
            IFLA_MTU: lambda v: _attr_u32(attrs, IFLA_MTU) == dev.mtu,
            IFLA_TXQLEN: lambda v: _attr_u32(attrs, IFLA_TXQLEN) == dev.txqlen,
            IFLA_GROUP: lambda v: _attr_u32(attrs, IFLA_GROUP) == 0,
            IFLA_EXT_MASK: lambda v: True}
    for atype, v in attrs.items():
        check = same.get(atype)
        if check is None or not check(v):
            raise NetlinkError(errno.EOPNOTSUPP)
    return []


# --------------------------------------------------------------------------
# addresses
# --------------------------------------------------------------------------

def _scope4(addr: bytes) -> int:
    if addr[0] == 127:
        return RT_SCOPE_HOST
    if addr[:2] == b"\xa9\xfe":          # 169.254/16
        return RT_SCOPE_LINK
    return RT_SCOPE_UNIVERSE


def _scope6(addr: bytes) -> int:
    if addr == bytes(15) + b"\x01":
        return RT_SCOPE_HOST
    if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80:   # fe80::/10
        return RT_SCOPE_LINK
    return RT_SCOPE_UNIVERSE


def _addr6_rank(addr: bytes) -> int:
    """ipv6_addr_scope's value, by which addrconf keeps a device's list
    (global 0x00 before host 0x10 before link 0x20)."""
    return {RT_SCOPE_UNIVERSE: 0x00, RT_SCOPE_HOST: 0x10, RT_SCOPE_LINK: 0x20}[_scope6(addr)]


def _cacheinfo(stamp_cs: int) -> bytes:
    return struct.pack("<IIII", INFINITY_LIFE, INFINITY_LIFE, stamp_cs, stamp_cs)


def addr4_message(dev: Device, addr: bytes, plen: int) -> bytes:
    """inet_fill_ifaddr."""
    a = [nla(IFA_ADDRESS, addr), nla(IFA_LOCAL, addr)]
    brd = broadcast4(dev, addr, plen)
    if brd is not None:
        a.append(nla(IFA_BROADCAST, brd))
    a += [cstr(IFA_LABEL, dev.name), u32(IFA_FLAGS, IFA_F_PERMANENT), nla(IFA_CACHEINFO, _cacheinfo(0))]
    return IFADDRMSG.pack(AF_INET, plen, IFA_F_PERMANENT, _scope4(addr), dev.index) + b"".join(a)


def addr6_message(dev: Device, addr: bytes, plen: int) -> bytes:
    """inet6_fill_ifaddr."""
    a = [nla(IFA_ADDRESS, addr), nla(IFA_CACHEINFO, _cacheinfo(0)), u32(IFA_FLAGS, IFA_F_PERMANENT)]
    if dev.loopback:
        a.append(u8(IFA_PROTO, IFAPROT_KERNEL_LO))
    return IFADDRMSG.pack(AF_INET6, plen, IFA_F_PERMANENT, _scope6(addr), dev.index) + b"".join(a)


def addresses(stack, family: int, index: int = 0) -> list:
    """[(type, body)] of every address of `family` (AF_UNSPEC: IPv4 then
    IPv6, rtnl_dump_all's order), device by device."""
    out = []
    devs = [d for d in devices(stack) if not index or d.index == index]
    if family in (AF_UNSPEC, AF_INET):
        for d in devs:
            out += [(RTM_NEWADDR, addr4_message(d, a, p)) for a, p in d.addrs4()]
    if family in (AF_UNSPEC, AF_INET6):
        for d in devs:
            six = sorted(d.addrs6(), key=lambda ap: _addr6_rank(ap[0]))
            out += [(RTM_NEWADDR, addr6_message(d, a, p)) for a, p in six]
    return out


def _getaddr(stack, req: Request, family: int):
    body = req.body
    if family not in (AF_INET, AF_INET6):
        family = AF_UNSPEC                # no handler of its own: rtnl_dump_all
    if not req.flags & NLM_F_DUMP:
        return _getaddr_one(stack, req, family)
    index = 0
    flags = 0
    if req.strict:
        prefix = {AF_INET: "ipv4: ", AF_INET6: "ipv6: "}.get(family, "ipv4: ")
        if len(body) < IFADDRMSG.size:
            return Dump(error=errno.EINVAL, text=prefix + "Invalid header for address dump request")
        _fam, plen, aflags, scope, index = IFADDRMSG.unpack_from(body)
        if plen or aflags or scope:
            return Dump(error=errno.EINVAL, text=prefix + "Invalid values in header for address dump request")
        try:
            attrs = parse_attrs(body[IFADDRMSG.size:], strict=True)
            _only(attrs, (IFA_TARGET_NETNSID,), prefix + "Unsupported attribute in dump request")
        except NetlinkError as e:
            return Dump(error=e.errno, text=e.text)
        if index:
            flags = NLM_F_DUMP_FILTERED
            if by_index(stack, index) is None:
                return Dump(flags=flags, error=errno.ENODEV)
    return Dump(addresses(stack, family, index), flags, done_inline=family == AF_INET6)


def _getaddr_one(stack, req: Request, family: int):
    """inet6_rtm_getaddr (IPv4 has no single-address get: EOPNOTSUPP)."""
    if family != AF_INET6:
        raise NetlinkError(errno.EOPNOTSUPP)
    body = req.body
    if len(body) < IFADDRMSG.size:
        raise NetlinkError(errno.EINVAL, "ipv6: Invalid header for get address request" if req.strict else None)
    _fam, plen, aflags, scope, index = IFADDRMSG.unpack_from(body)
    attrs = parse_attrs(body[IFADDRMSG.size:], strict=req.strict, req=req)
    if req.strict:
        if plen or aflags or scope:
            raise NetlinkError(errno.EINVAL, "ipv6: Invalid values in header for get address request")
        _only(attrs, (IFA_ADDRESS, IFA_LOCAL, IFA_TARGET_NETNSID),
              "ipv6: Unsupported attribute in get address request")
    want = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if want is None or len(want) < 16:
        raise NetlinkError(errno.EINVAL)
    for d in devices(stack):
        if index and d.index != index:
            continue
        for a, p in d.addrs6():
            if a == want[:16]:
                return [(RTM_NEWADDR, addr6_message(d, a, p))]
    raise NetlinkError(errno.EADDRNOTAVAIL)


# --------------------------------------------------------------------------
# routes
# --------------------------------------------------------------------------

@dataclass
class FibEntry:
    family: int
    table: int
    dst: bytes                  # the prefix, host bits clear
    dst_len: int
    type: int
    protocol: int
    scope: int
    dev: Device
    prefsrc: bytes | None = None
    gateway: bytes | None = None
    priority: int | None = None

    def key(self):
        """The order Linux's dumps walk a table in: IPv4's trie by prefix
        (the longer first for one prefix); IPv6's fib6 tree in post-order
        (a covering prefix after what it covers, ::/0 last)."""
        bits = bin(int.from_bytes(self.dst, "big"))[2:].zfill(len(self.dst) * 8)
        if self.family == AF_INET:
            return (bits, -self.dst_len)
        return (bits[:self.dst_len] + "2", self.priority or 0)


def _mask(addr: bytes, plen: int) -> bytes:
    n = len(addr) * 8
    m = ((1 << n) - 1) ^ ((1 << (n - plen)) - 1)
    return (int.from_bytes(addr, "big") & m).to_bytes(len(addr), "big")


def fib(stack) -> list[FibEntry]:
    """The routing tables as Linux would hold them for the stack's
    addresses (fib_add_ifaddr, addrconf) and its configured routes."""
    out: list[FibEntry] = []
    seen = set()

    def add(e: FibEntry) -> None:
        k = (e.family, e.table, e.dst, e.dst_len, e.type, e.dev.index, e.gateway)
        if k not in seen:
            seen.add(k)
            out.append(e)

    devs = [d for d in devices(stack) if d.up]
    for d in devs:
        for addr, plen in d.addrs4():
            add(FibEntry(AF_INET, RT_TABLE_LOCAL, addr, 32, RTN_LOCAL, RTPROT_KERNEL, RT_SCOPE_HOST, d, addr))
            prefix = _mask(addr, plen)
            if prefix != bytes(4) and (prefix != addr or plen < 32):
                if d.loopback:
                    add(FibEntry(AF_INET, RT_TABLE_LOCAL, prefix, plen, RTN_LOCAL, RTPROT_KERNEL,
                                 RT_SCOPE_HOST, d, addr))
                else:
                    add(FibEntry(AF_INET, RT_TABLE_MAIN, prefix, plen, RTN_UNICAST, RTPROT_KERNEL,
                                 RT_SCOPE_LINK, d, addr))
                if plen < 31:
                    last = (int.from_bytes(prefix, "big") | ((1 << (32 - plen)) - 1)).to_bytes(4, "big")
                    add(FibEntry(AF_INET, RT_TABLE_LOCAL, last, 32, RTN_BROADCAST, RTPROT_KERNEL,
                                 RT_SCOPE_LINK, d, addr))
        six = d.addrs6()
        for addr, plen in six:
            add(FibEntry(AF_INET6, RT_TABLE_LOCAL, addr, 128, RTN_LOCAL, RTPROT_KERNEL, RT_SCOPE_UNIVERSE, d,
                         priority=0))
            if not d.loopback and plen < 128:
                add(FibEntry(AF_INET6, RT_TABLE_MAIN, _mask(addr, plen), plen, RTN_UNICAST, RTPROT_KERNEL,
                             RT_SCOPE_UNIVERSE, d, priority=IP6_RT_PRIO_ADDRCONF))
        if six and not d.loopback:
            add(FibEntry(AF_INET6, RT_TABLE_LOCAL, b"\xff" + bytes(15), 8, RTN_MULTICAST, RTPROT_KERNEL,
                         RT_SCOPE_UNIVERSE, d, priority=IP6_RT_PRIO_ADDRCONF))
    # routes configured on the stack; those the addresses imply are already in
    derived = {(e.family, e.dst, e.dst_len, e.dev.index) for e in out}
    by_idx = {d.index: d for d in devs}
    for dst, plen, gw, nic in getattr(stack, "routes", ()):
        dev = by_idx.get(getattr(nic, "index", nic))
        if dev is None:
            continue
        fam = AF_INET if len(dst) == 4 else AF_INET6
        dst = _mask(bytes(dst), plen)
        if gw is None and (fam, dst, plen, dev.index) in derived:
            continue
        if fam == AF_INET:
            add(FibEntry(fam, RT_TABLE_MAIN, dst, plen, RTN_UNICAST, RTPROT_BOOT,
                         RT_SCOPE_LINK if gw is None else RT_SCOPE_UNIVERSE, dev, gateway=gw))
        else:
            add(FibEntry(fam, RT_TABLE_MAIN, dst, plen, RTN_UNICAST, RTPROT_BOOT, RT_SCOPE_UNIVERSE, dev,
                         gateway=gw, priority=IP6_RT_PRIO_USER))
    return out


def tables(entries: list[FibEntry], family: int) -> list[FibEntry]:
    """One family's entries in dump order: main, then local."""
    fam = [e for e in entries if e.family == family]
    return sorted(fam, key=lambda e: (e.table != RT_TABLE_MAIN, e.table, e.key()))


def route_message(e: FibEntry, flags: int = 0) -> bytes:
    """fib_dump_info (IPv4) and rt6_fill_node (IPv6)."""
    table = e.table if e.table < 256 else RT_TABLE_COMPAT
    a = [u32(RTA_TABLE, e.table)]
    if e.dst_len:
        a.append(nla(RTA_DST, e.dst))
    if e.family == AF_INET:
        if e.priority:
            a.append(u32(RTA_PRIORITY, e.priority))
        if e.prefsrc is not None:
            a.append(nla(RTA_PREFSRC, e.prefsrc))
        if e.gateway is not None:
            a.append(nla(RTA_GATEWAY, e.gateway))
        a.append(u32(RTA_OIF, e.dev.index))
    else:
        a.append(u32(RTA_PRIORITY, e.priority or 0))
        if e.gateway is not None:
            a.append(nla(RTA_GATEWAY, e.gateway))
        a += [u32(RTA_OIF, e.dev.index), nla(RTA_CACHEINFO, bytes(32)), u8(RTA_PREF, 0)]
    head = RTMSG.pack(e.family, e.dst_len, 0, 0, table, e.protocol, e.scope, e.type, flags)
    return head + b"".join(a)


def _getroute(stack, req: Request, family: int):
    if not req.flags & NLM_F_DUMP:
        return _route_get(stack, req, family)
    fams = (family,) if family in (AF_INET, AF_INET6) else (AF_INET, AF_INET6)
    body = req.body
    table = protocol = oif = rflags = 0
    filter_set = False
    if req.strict:
        if len(body) < RTMSG.size:
            return Dump(error=errno.EINVAL, text="Invalid header for FIB dump request")
        _f, dst_len, src_len, tos, table, protocol, scope, rtype, rflags = RTMSG.unpack_from(body)
        if dst_len or src_len or tos or scope or rtype:
            return Dump(error=errno.EINVAL, text="Invalid values in header for FIB dump request")
        if rflags & ~(RTM_F_CLONED | RTM_F_PREFIX):
            return Dump(error=errno.EINVAL, text="Invalid flags for FIB dump request")
        try:
            attrs = parse_attrs(body[RTMSG.size:], strict=True)
            _only(attrs, (RTA_TABLE, RTA_OIF), "Unsupported attribute in dump request")
            table = _attr_u32(attrs, RTA_TABLE) or table
            oif = _attr_u32(attrs, RTA_OIF) or 0
        except NetlinkError as e:
            return Dump(error=e.errno, text=e.text)
        if oif and by_index(stack, oif) is None:
            return Dump(error=errno.ENODEV)
        filter_set = bool(rflags or protocol or table or oif)
    elif len(body) >= RTMSG.size:
        rflags = RTMSG.unpack_from(body)[8] & (RTM_F_CLONED | RTM_F_PREFIX)
    # answer_flags (on NLMSG_DONE) say a filter was given; with strict
    # checking the route cache is not dumped, which marks every route too
    done_flags = NLM_F_DUMP_FILTERED if filter_set else 0
    flags = NLM_F_DUMP_FILTERED if req.strict else 0
    if rflags & RTM_F_PREFIX or (filter_set and rflags & RTM_F_CLONED):
        return Dump(flags=flags, done_flags=done_flags)   # no prefix routes, no route cache
    entries = fib(stack)
    out = []
    for fam in fams:
        if table and table not in (RT_TABLE_MAIN, RT_TABLE_LOCAL):
            if len(fams) == 1:
                name = "ipv4" if fam == AF_INET else "ipv6"
                return Dump(flags=flags, done_flags=done_flags, error=errno.ENOENT,
                            text=f"{name}: FIB table does not exist")
            continue
        for e in tables(entries, fam):
            if table and e.table != table or protocol and e.protocol != protocol or oif and e.dev.index != oif:
                continue
            out.append((RTM_NEWROUTE, route_message(e)))
    return Dump(out, flags, done_flags=done_flags)


def lookup(entries: list[FibEntry], dst: bytes) -> FibEntry | None:
    """The entry a packet to dst uses: the local table first, then main
    (the default rules' order), longest prefix first."""
    fam = AF_INET if len(dst) == 4 else AF_INET6
    for table in (RT_TABLE_LOCAL, RT_TABLE_MAIN):
        best = None
        for e in entries:
            if e.family == fam and e.table == table and _mask(dst, e.dst_len) == e.dst:
                if best is None or e.dst_len > best.dst_len or \
                        e.dst_len == best.dst_len and (e.priority or 0) < (best.priority or 0):
                    best = e
        if best is not None:
            return best
    return None


def _route_get(stack, req: Request, family: int):
    """RTM_GETROUTE without NLM_F_DUMP: `ip route get`."""
    if family not in (AF_INET, AF_INET6):
        raise NetlinkError(errno.EOPNOTSUPP)
    body = req.body
    alen = 4 if family == AF_INET else 16
    name = "ipv4: " if family == AF_INET else "ipv6: "
    if len(body) < RTMSG.size:
        raise NetlinkError(errno.EINVAL, name + "Invalid header for route get request" if req.strict else None)
    _f, dst_len, src_len, tos, table, protocol, scope, rtype, rflags = RTMSG.unpack_from(body)
    if req.strict:
        if (src_len and src_len != alen * 8) or (dst_len and dst_len != alen * 8) or tos or table \
                or protocol or scope or rtype:
            raise NetlinkError(errno.EINVAL, name + "Invalid values in header for route get request")
        if rflags & ~(RTM_F_NOTIFY | RTM_F_LOOKUP_TABLE | RTM_F_FIB_MATCH):
            raise NetlinkError(errno.EINVAL, name + "Unsupported rtm_flags for route get request")
        attrs = parse_attrs(body[RTMSG.size:], strict=True)
        _only(attrs, (RTA_IIF, RTA_OIF, RTA_SRC, RTA_DST, RTA_IP_PROTO, RTA_SPORT, RTA_DPORT, RTA_MARK, RTA_UID),
              name + "Unsupported attribute in route get request")
    else:
        attrs = parse_attrs(body[RTMSG.size:], req=req)
    dst = attrs.get(RTA_DST, bytes(alen))[:alen].ljust(alen, b"\0")
    src = attrs.get(RTA_SRC)
    entries = fib(stack)
    devs = devices(stack)
    loop = next((d for d in devs if d.loopback), None)
    if family == AF_INET and dst == bytes(4) and loop is not None:
        # ip_route_output_key_hash: no destination means this host, through lo
        e = FibEntry(AF_INET, RT_TABLE_MAIN, dst, 32, RTN_LOCAL, RTPROT_UNSPEC, RT_SCOPE_HOST, loop,
                     prefsrc=bytes((127, 0, 0, 1)))
    else:
        e = lookup(entries, dst)
    if e is None:
        raise NetlinkError(errno.ENETUNREACH)
    if family == AF_INET:
        # without custom rules Linux keeps local and main in one trie: main answers
        e = FibEntry(**{**e.__dict__, "table": RT_TABLE_MAIN})
    if rflags & RTM_F_FIB_MATCH:
        return [(RTM_NEWROUTE, route_message(e))]
    loop = loop or e.dev
    out_dev = loop if e.type in (RTN_LOCAL, RTN_BROADCAST) and family == AF_INET else e.dev
    if family == AF_INET:
        prefsrc = e.prefsrc
        if prefsrc is None:
            four = e.dev.addrs4()
            prefsrc = four[0][0] if four else None
        rt_flags = {RTN_LOCAL: RTCF_LOCAL, RTN_BROADCAST: RTCF_LOCAL | RTCF_BROADCAST}.get(e.type, 0)
        tid = e.table
        a = [u32(RTA_TABLE, tid), nla(RTA_DST, dst)]
        if src is not None:
            a.append(nla(RTA_SRC, src[:4]))
        a.append(u32(RTA_OIF, out_dev.index))
        if prefsrc is not None and (src is None or src[:4] != prefsrc):
            a.append(nla(RTA_PREFSRC, prefsrc))
        if e.gateway is not None:
            a.append(nla(RTA_GATEWAY, e.gateway))
        a += [u32(RTA_UID, req.uid), nla(RTA_CACHEINFO, bytes(32))]
        head = RTMSG.pack(AF_INET, 32, 32 if src is not None else 0, 0, tid if tid < 256 else RT_TABLE_COMPAT,
                          RTPROT_UNSPEC, RT_SCOPE_UNIVERSE, e.type, (rt_flags | RTM_F_CLONED) & 0xFFFFFFFF)
        return [(RTM_NEWROUTE, head + b"".join(a))]
    # IPv6: the route itself, with the source the lookup picked
    src6 = src[:16] if src is not None else bytes(16)
    pref = dst if e.type == RTN_LOCAL else next((a for a, _p in e.dev.addrs6()), None)
    a = [u32(RTA_TABLE, e.table), nla(RTA_DST, dst), nla(RTA_SRC, src6)]
    if pref is not None:
        a.append(nla(RTA_PREFSRC, pref))
    a.append(u32(RTA_PRIORITY, e.priority or 0))
    if e.gateway is not None:
        a.append(nla(RTA_GATEWAY, e.gateway))
    a += [u32(RTA_OIF, e.dev.index), nla(RTA_CACHEINFO, bytes(32)), u8(RTA_PREF, 0)]
    head = RTMSG.pack(AF_INET6, 128, 128, 0, e.table, e.protocol, RT_SCOPE_UNIVERSE, e.type, 0)
    return [(RTM_NEWROUTE, head + b"".join(a))]


# --------------------------------------------------------------------------
# rules and neighbours
# --------------------------------------------------------------------------

# the default policy rules: (priority, table) per family
# (the multicast routing families have one rule each, listed in an AF_UNSPEC dump)
RTNL_FAMILY_IPMR, RTNL_FAMILY_IP6MR = 128, 129
DEFAULT_RULES = {AF_INET: ((0, RT_TABLE_LOCAL), (32766, RT_TABLE_MAIN), (32767, RT_TABLE_DEFAULT)),
                 RTNL_FAMILY_IPMR: ((32767, RT_TABLE_DEFAULT),),
                 RTNL_FAMILY_IP6MR: ((32767, RT_TABLE_MAIN),),
                 AF_INET6: ((0, RT_TABLE_LOCAL), (32766, RT_TABLE_MAIN))}


def rule_message(family: int, priority: int, table: int) -> bytes:
    a = [u32(FRA_TABLE, table), u32(FRA_SUPPRESS_PREFIXLEN, 0xFFFFFFFF), u8(FRA_PROTOCOL, RTPROT_KERNEL)]
    if priority:
        a.append(u32(FRA_PRIORITY, priority))
    return FIB_RULE_HDR.pack(family, 0, 0, 0, table, 0, 0, FR_ACT_TO_TBL, 0) + b"".join(a)


def _getrule(stack, req: Request, family: int):
    if not req.flags & NLM_F_DUMP:
        raise NetlinkError(errno.EOPNOTSUPP)
    body = req.body
    if req.strict:
        if len(body) < FIB_RULE_HDR.size:
            return Dump(error=errno.EINVAL, text="Invalid header for fib rule dump request")
        if any(body[1:FIB_RULE_HDR.size]):
            return Dump(error=errno.EINVAL, text="Invalid values in header for fib rule dump request")
        if len(body) > FIB_RULE_HDR.size:
            return Dump(error=errno.EINVAL, text="Invalid attributes after fib rule header")
    fams = (family,) if family in DEFAULT_RULES else tuple(DEFAULT_RULES)
    return Dump([(RTM_NEWRULE, rule_message(f, p, tb)) for f in fams for p, tb in DEFAULT_RULES[f]],
                done_inline=True)


def _getneigh(stack, req: Request, family: int):
    """No neighbour entries are shown: an empty dump, and a get checked
    as neigh_valid_get_req does, then ENOENT."""
    body = req.body
    if req.flags & NLM_F_DUMP:
        if req.strict and len(body) < NDMSG_SIZE:
            return Dump(error=errno.EINVAL, text="Invalid header for neighbor dump request")
        return Dump()
    if len(body) < NDMSG_SIZE:
        raise NetlinkError(errno.EINVAL, "Invalid header for neighbor get request")
    fam, pad1, pad2, index, state, nflags, ntype = struct.unpack_from("<BBHiHBB", body)
    if pad1 or pad2 or state or ntype:
        raise NetlinkError(errno.EINVAL, "Invalid values in header for neighbor get request")
    if nflags & ~NTF_PROXY:
        raise NetlinkError(errno.EINVAL, "Invalid flags in header for neighbor get request")
    if not nflags & NTF_PROXY and not index:
        raise NetlinkError(errno.EINVAL, "No device specified")
    attrs = parse_attrs(body[NDMSG_SIZE:], strict=True)
    if fam not in (AF_INET, AF_INET6):
        raise NetlinkError(errno.EAFNOSUPPORT, "Unsupported family in header for neighbor get request")
    for atype, v in attrs.items():
        if atype != NDA_DST:
            raise NetlinkError(errno.EINVAL, "Unsupported attribute in neighbor get request")
        if len(v) != (4 if fam == AF_INET else 16):
            raise NetlinkError(errno.EINVAL, "Invalid network address in neighbor get request")
    if index and by_index(stack, index) is None:
        raise NetlinkError(errno.ENODEV, "Unknown device ifindex")
    if NDA_DST not in attrs:
        raise NetlinkError(errno.EINVAL, "Network address not specified")
    raise NetlinkError(errno.ENOENT, "Neighbour entry not found")


# --------------------------------------------------------------------------
# per-device IP configuration (netconf): nothing forwards, nothing filters
# --------------------------------------------------------------------------

def netconf_message(family: int, index: int) -> bytes:
    """inet_netconf_fill_devconf / inet6_netconf_fill_devconf (NETCONFA_ALL)."""
    a = [u32(NETCONFA_IFINDEX, index), u32(NETCONFA_FORWARDING, 0)]
    if family == AF_INET:
        a += [u32(NETCONFA_RP_FILTER, 0), u32(NETCONFA_MC_FORWARDING, 0), u32(NETCONFA_BC_FORWARDING, 0)]
    else:
        a.append(u32(NETCONFA_MC_FORWARDING, 0))
    a += [u32(NETCONFA_PROXY_NEIGH, 0), u32(NETCONFA_IGNORE_ROUTES_WITH_LINKDOWN, 0)]
    return struct.pack("<B3x", family) + b"".join(a)


def _getnetconf(stack, req: Request, family: int):
    fams = (family,) if family in (AF_INET, AF_INET6) else (AF_INET, AF_INET6)
    body = req.body
    name = "ipv6: " if family == AF_INET6 else "ipv4: "
    if req.flags & NLM_F_DUMP:
        if req.strict:
            if len(body) < 1:
                return Dump(error=errno.EINVAL, text=name + "Invalid header for netconf dump request")
            if len(body) > 4:
                return Dump(error=errno.EINVAL, text=name + "Invalid data after header in netconf dump request")
        indexes = [d.index for d in devices(stack)] + [NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT]
        return Dump([(RTM_NEWNETCONF, netconf_message(f, i)) for f in fams for i in indexes])
    if family not in (AF_INET, AF_INET6):
        raise NetlinkError(errno.EOPNOTSUPP)
    index = _attr_u32(parse_attrs(body[4:], strict=req.strict), NETCONFA_IFINDEX)
    if index is None:
        raise NetlinkError(errno.EINVAL)
    index = index - (1 << 32) if index & 0x80000000 else index
    if index not in (NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT) and by_index(stack, index) is None:
        raise NetlinkError(errno.ENODEV)
    return [(RTM_NEWNETCONF, netconf_message(family, index))]


_GETTERS = {RTM_GETLINK: _getlink, RTM_GETADDR: _getaddr, RTM_GETROUTE: _getroute,
            RTM_GETNEIGH: _getneigh, RTM_GETRULE: _getrule, RTM_GETNETCONF: _getnetconf}


def handle(stack, req: Request):
    """rtnetlink_rcv_msg: replies [(type, body)], a Dump, or NetlinkError."""
    if req.type > RTM_MAX:
        raise NetlinkError(errno.EOPNOTSUPP)
    if len(req.body) < 1:
        return []                         # "all the messages must have at least 1 byte length"
    family = req.body[0]
    kind = (req.type - NLMSG_MIN_TYPE) & 3
    if kind != RTNL_KIND_GET:
        if not req.privileged:
            raise NetlinkError(errno.EPERM)
        if req.type in (RTM_NEWLINK, RTM_SETLINK):
            return _changelink(stack, req)
        raise NetlinkError(errno.EOPNOTSUPP)
    getter = _GETTERS.get(req.type)
    if getter is None:
        raise NetlinkError(errno.EOPNOTSUPP)
    try:
        answer = getter(stack, req, family)
    except NetlinkError as e:
        if e.text is None:
            e.text = req.warning
        raise
    if isinstance(answer, Dump) and answer.error and answer.text is None:
        answer.text = req.warning
    return answer
