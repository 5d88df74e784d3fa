"""rtnetlink's answers (sentry/rtnetlink.py) for a real netstack Stack:
the messages, routing tables and validation a NETLINK_ROUTE socket gets,
and netlink_rcv_skb's framing (sentry/netlink.messages). What iproute2
and glibc print from them is compared with Linux in
tests/integration/test_netlink.py."""
from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstack.stack import Stack
from sentry import rtnetlink as rt
from sentry.netdevice import IFF_LOWER_UP, IFF_RUNNING, IFF_UP, devices
from sentry.netlink import messages
from tests.unit.netstack_testkit import ManualClock, PairLink

ETH4 = bytes((10, 0, 0, 1))
GW4 = bytes((10, 0, 0, 254))
ETH6 = bytes.fromhex("fd000000000000000000000000000001")
LL6 = bytes.fromhex("fe800000000000000000000000000001")
GW6 = bytes.fromhex("fd0000000000000000000000000000fe")
MAC = bytes.fromhex("020000000001")


class EthLink(PairLink):
    mac = MAC


@pytest.fixture
def stack():
    """lo, and eth0 with 10.0.0.1/24, fd00::1/64, fe80::1/64 and default
    routes through 10.0.0.254 and fd00::fe."""
    s = Stack.with_loopback(ManualClock())
    eth = s.add_nic(EthLink("eth0"))
    s.add_address(eth, ETH4, 24)
    s.add_address(eth, LL6, 64)
    s.add_address(eth, ETH6, 64)
    s.add_route(bytes(4), 0, GW4)
    s.add_route(bytes(16), 0, GW6)
    return s


def req(mtype, body=b"", flags=rt.NLM_F_REQUEST | rt.NLM_F_DUMP, strict=False, privileged=False):
    return rt.Request(mtype, flags, 7, body, strict=strict, privileged=privileged)


def attrs(body, hdr):
    return rt.parse_attrs(body[hdr:])


def dump(stack, mtype, body, **kw) -> rt.Dump:
    d = rt.handle(stack, req(mtype, body, **kw))
    assert isinstance(d, rt.Dump)
    return d


def test_link_dump_lists_every_interface_in_index_order(stack):
    d = dump(stack, rt.RTM_GETLINK, rt.IFINFOMSG.pack(0, 0, 0, 0, 0))
    assert d.error == 0
    infos = [rt.IFINFOMSG.unpack_from(b) for _, b in d.messages]
    assert [(i[1], i[2]) for i in infos] == [(772, 1), (1, 2)]   # ARPHRD_LOOPBACK, ARPHRD_ETHER
    assert all(i[3] & (IFF_UP | IFF_RUNNING | IFF_LOWER_UP) == IFF_UP | IFF_RUNNING | IFF_LOWER_UP
               for i in infos)
    lo, eth = (attrs(b, 16) for _, b in d.messages)
    assert lo[rt.IFLA_IFNAME] == b"lo\0" and eth[rt.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("<I", lo[rt.IFLA_MTU])[0] == 65536
    assert lo[rt.IFLA_ADDRESS] == bytes(6) and eth[rt.IFLA_ADDRESS] == MAC
    assert eth[rt.IFLA_BROADCAST] == b"\xff" * 6
    assert lo[rt.IFLA_QDISC] == b"noqueue\0"
    assert lo[rt.IFLA_OPERSTATE] == bytes([rt.IF_OPER_UNKNOWN]) and eth[rt.IFLA_OPERSTATE] == bytes([rt.IF_OPER_UP])
    assert len(lo[rt.IFLA_STATS64]) == 25 * 8 and len(lo[rt.IFLA_STATS]) == 24 * 4
    # RTEXT_FILTER_SKIP_STATS leaves the counters out
    skip = rt.IFINFOMSG.pack(0, 0, 0, 0, 0) + rt.u32(rt.IFLA_EXT_MASK, rt.RTEXT_FILTER_SKIP_STATS)
    d = dump(stack, rt.RTM_GETLINK, skip)
    assert rt.IFLA_STATS64 not in attrs(d.messages[0][1], 16)


def test_link_get_by_index_or_name(stack):
    by_name = rt.IFINFOMSG.pack(17, 0, 0, 0, 0) + rt.cstr(rt.IFLA_IFNAME, b"eth0")
    [(mtype, body)] = rt.handle(stack, req(rt.RTM_GETLINK, by_name, flags=rt.NLM_F_REQUEST))
    assert mtype == rt.RTM_NEWLINK and rt.IFINFOMSG.unpack_from(body)[2] == 2
    [(_, body)] = rt.handle(stack, req(rt.RTM_GETLINK, rt.IFINFOMSG.pack(0, 0, 1, 0, 0), flags=rt.NLM_F_REQUEST))
    assert attrs(body, 16)[rt.IFLA_IFNAME] == b"lo\0"
    for body, code in ((rt.IFINFOMSG.pack(0, 0, 9, 0, 0), errno.ENODEV),
                       (rt.IFINFOMSG.pack(0, 0, 0, 0, 0) + rt.cstr(rt.IFLA_IFNAME, b"nope"), errno.ENODEV),
                       (rt.IFINFOMSG.pack(0, 0, 0, 0, 0), errno.EINVAL),       # neither index nor name
                       (b"\0" * 8, errno.EINVAL),                              # short ifinfomsg
                       (rt.IFINFOMSG.pack(0, 0, 0, 0, 0) + rt.cstr(rt.IFLA_IFNAME, b"x" * 16), errno.ERANGE)):
        with pytest.raises(rt.NetlinkError) as e:
            rt.handle(stack, req(rt.RTM_GETLINK, body, flags=rt.NLM_F_REQUEST))
        assert e.value.errno == code


def test_addresses_follow_devinet_and_addrconf(stack):
    d = dump(stack, rt.RTM_GETADDR, bytes(8))
    got = []
    for _, body in d.messages:
        fam, plen, flags, scope, index = rt.IFADDRMSG.unpack_from(body)
        got.append((fam, plen, scope, index, attrs(body, 8)))
    assert [(g[0], g[3], g[4][rt.IFA_ADDRESS]) for g in got] == [
        (2, 1, bytes((127, 0, 0, 1))), (2, 2, ETH4),
        (10, 1, bytes(15) + b"\x01"), (10, 2, ETH6), (10, 2, LL6)]   # global before link-local
    lo4, eth4, lo6, eth6, ll6 = (g[4] for g in got)
    assert rt.IFA_BROADCAST not in lo4 and eth4[rt.IFA_BROADCAST] == bytes((10, 0, 0, 255))
    assert eth4[rt.IFA_LABEL] == b"eth0\0" and eth4[rt.IFA_LOCAL] == ETH4
    assert [g[2] for g in got] == [rt.RT_SCOPE_HOST, rt.RT_SCOPE_UNIVERSE, rt.RT_SCOPE_HOST,
                                   rt.RT_SCOPE_UNIVERSE, rt.RT_SCOPE_LINK]
    assert rt.IFA_PROTO in lo6 and rt.IFA_PROTO not in eth6
    # a family asks for its own; strict checking filters by index
    assert len(dump(stack, rt.RTM_GETADDR, struct.pack("<B7x", 10)).messages) == 3
    d = dump(stack, rt.RTM_GETADDR, rt.IFADDRMSG.pack(0, 0, 0, 0, 2), strict=True)
    assert len(d.messages) == 3 and d.flags == rt.NLM_F_DUMP_FILTERED
    assert dump(stack, rt.RTM_GETADDR, rt.IFADDRMSG.pack(0, 0, 0, 0, 9), strict=True).error == errno.ENODEV


def _routes(d):
    out = []
    for _, body in d.messages:
        fam, dst_len, _, _, table, proto, scope, rtype, _ = rt.RTMSG.unpack_from(body)
        a = attrs(body, rt.RTMSG.size)
        out.append((table, rtype, a.get(rt.RTA_DST, b"")[:4].hex() if fam == 2 else a.get(rt.RTA_DST, b"").hex(),
                    dst_len, proto, scope, a.get(rt.RTA_GATEWAY), struct.unpack("<I", a[rt.RTA_OIF])[0]))
    return out


def test_ipv4_tables_are_linuxs(stack):
    d = dump(stack, rt.RTM_GETROUTE, rt.RTMSG.pack(2, 0, 0, 0, 0, 0, 0, 0, 0))
    assert _routes(d) == [
        (254, rt.RTN_UNICAST, "", 0, rt.RTPROT_BOOT, rt.RT_SCOPE_UNIVERSE, GW4, 2),
        (254, rt.RTN_UNICAST, "0a000000", 24, rt.RTPROT_KERNEL, rt.RT_SCOPE_LINK, None, 2),
        (255, rt.RTN_LOCAL, "0a000001", 32, rt.RTPROT_KERNEL, rt.RT_SCOPE_HOST, None, 2),
        (255, rt.RTN_BROADCAST, "0a0000ff", 32, rt.RTPROT_KERNEL, rt.RT_SCOPE_LINK, None, 2),
        (255, rt.RTN_LOCAL, "7f000000", 8, rt.RTPROT_KERNEL, rt.RT_SCOPE_HOST, None, 1),
        (255, rt.RTN_LOCAL, "7f000001", 32, rt.RTPROT_KERNEL, rt.RT_SCOPE_HOST, None, 1),
        (255, rt.RTN_BROADCAST, "7fffffff", 32, rt.RTPROT_KERNEL, rt.RT_SCOPE_LINK, None, 1)]


def test_ipv6_tables_walk_in_post_order(stack):
    d = dump(stack, rt.RTM_GETROUTE, rt.RTMSG.pack(10, 0, 0, 0, 0, 0, 0, 0, 0))
    got = [(r[0], r[1], r[2], r[3]) for r in _routes(d)]
    assert got == [(254, rt.RTN_UNICAST, "fd00" + "0" * 28, 64), (254, rt.RTN_UNICAST, "fe80" + "0" * 28, 64),
                   (254, rt.RTN_UNICAST, "", 0),                 # ::/0 after what it covers
                   (255, rt.RTN_LOCAL, "0" * 31 + "1", 128), (255, rt.RTN_LOCAL, ETH6.hex(), 128),
                   (255, rt.RTN_LOCAL, LL6.hex(), 128), (255, rt.RTN_MULTICAST, "ff" + "0" * 30, 8)]
    prio = [struct.unpack("<I", attrs(b, 12)[rt.RTA_PRIORITY])[0] for _, b in d.messages]
    assert prio == [256, 256, 1024, 0, 0, 0, 256]


def test_route_dump_filters_and_missing_tables(stack):
    main = rt.RTMSG.pack(2, 0, 0, 0, 0, 0, 0, 0, 0) + rt.u32(rt.RTA_TABLE, rt.RT_TABLE_MAIN)
    d = dump(stack, rt.RTM_GETROUTE, main, strict=True)
    assert d.flags == rt.NLM_F_DUMP_FILTERED and {r[0] for r in _routes(d)} == {254}
    # without strict checking the table attribute is not a filter
    assert {r[0] for r in _routes(dump(stack, rt.RTM_GETROUTE, main))} == {254, 255}
    missing = rt.RTMSG.pack(2, 0, 0, 0, 0, 0, 0, 0, 0) + rt.u32(rt.RTA_TABLE, rt.RT_TABLE_DEFAULT)
    d = dump(stack, rt.RTM_GETROUTE, missing, strict=True)
    assert (d.error, d.text) == (errno.ENOENT, "ipv4: FIB table does not exist")
    # AF_UNSPEC dumps every family, skipping a table a family lacks
    both = rt.RTMSG.pack(0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert {rt.RTMSG.unpack_from(b)[0] for _, b in dump(stack, rt.RTM_GETROUTE, both).messages} == {2, 10}
    d = dump(stack, rt.RTM_GETROUTE, both[:12] + rt.u32(rt.RTA_TABLE, 99), strict=True)
    assert d.error == 0 and d.messages == []
    oif = rt.RTMSG.pack(2, 0, 0, 0, 0, 0, 0, 0, 0) + rt.u32(rt.RTA_OIF, 1)
    assert {r[7] for r in _routes(dump(stack, rt.RTM_GETROUTE, oif, strict=True))} == {1}


@pytest.mark.parametrize("mtype, body, text", [
    (rt.RTM_GETLINK, b"\0" * 4, "Invalid header for link dump"),
    (rt.RTM_GETLINK, rt.IFINFOMSG.pack(0, 0, 0, 1, 0), "Invalid values in header for link dump request"),
    (rt.RTM_GETLINK, rt.IFINFOMSG.pack(0, 0, 1, 0, 0), "Filter by device index not supported for link dumps"),
    (rt.RTM_GETLINK, rt.IFINFOMSG.pack(0, 0, 0, 0, 0) + rt.u32(rt.IFLA_MTU, 1),
     "Unsupported attribute in link dump request"),
    (rt.RTM_GETADDR, b"\0" * 4, "ipv4: Invalid header for address dump request"),
    (rt.RTM_GETADDR, struct.pack("<BBBBi", 10, 64, 0, 0, 0), "ipv6: Invalid values in header for address dump request"),
    (rt.RTM_GETROUTE, b"\2\0\0\0", "Invalid header for FIB dump request"),
    (rt.RTM_GETROUTE, rt.RTMSG.pack(2, 24, 0, 0, 0, 0, 0, 0, 0), "Invalid values in header for FIB dump request"),
    (rt.RTM_GETROUTE, rt.RTMSG.pack(2, 0, 0, 0, 0, 0, 0, 0, rt.RTM_F_LOOKUP_TABLE),
     "Invalid flags for FIB dump request"),
    (rt.RTM_GETROUTE, rt.RTMSG.pack(2, 0, 0, 0, 0, 0, 0, 0, 0) + rt.u32(rt.RTA_GATEWAY, 1),
     "Unsupported attribute in dump request"),
    (rt.RTM_GETROUTE, rt.RTMSG.pack(2, 0, 0, 0, 0, 0, 0, 0, 0) + b"\x08\x00\x0f\x00\xfe\x00",
     "bytes leftover after parsing attributes"),
])
def test_strict_dumps_refuse_what_linux_refuses(stack, mtype, body, text):
    d = dump(stack, mtype, body, strict=True)
    assert (d.error, d.text, d.messages) == (errno.EINVAL, text, [])


def test_changes_need_privilege_and_change_nothing(stack):
    up = rt.IFINFOMSG.pack(0, 0, 1, IFF_UP, IFF_UP)
    for mtype in (rt.RTM_NEWLINK, rt.RTM_NEWADDR, rt.RTM_DELROUTE, rt.RTM_NEWROUTE, 120):
        with pytest.raises(rt.NetlinkError) as e:
            rt.handle(stack, req(mtype, up, flags=rt.NLM_F_REQUEST | rt.NLM_F_ACK))
        assert e.value.errno == errno.EPERM
    priv = dict(flags=rt.NLM_F_REQUEST | rt.NLM_F_ACK, privileged=True)
    assert rt.handle(stack, req(rt.RTM_NEWLINK, up, **priv)) == []      # lo is up already
    same_mtu = rt.IFINFOMSG.pack(0, 0, 2, 0, 0) + rt.u32(rt.IFLA_MTU, 1500)
    assert rt.handle(stack, req(rt.RTM_SETLINK, same_mtu, **priv)) == []
    for mtype, body, code in ((rt.RTM_NEWLINK, rt.IFINFOMSG.pack(0, 0, 1, 0, IFF_UP), errno.EOPNOTSUPP),
                              (rt.RTM_NEWLINK, rt.IFINFOMSG.pack(0, 0, 2, 0, 0) + rt.u32(rt.IFLA_MTU, 1400),
                               errno.EOPNOTSUPP),
                              (rt.RTM_NEWLINK, rt.IFINFOMSG.pack(0, 0, 0, 0, 0), errno.ENODEV),
                              (rt.RTM_NEWADDR, rt.IFADDRMSG.pack(2, 24, 0, 0, 1), errno.EOPNOTSUPP)):
        with pytest.raises(rt.NetlinkError) as e:
            rt.handle(stack, req(mtype, body, **priv))
        assert e.value.errno == code
    assert [d.flags & IFF_UP for d in devices(stack)] == [IFF_UP, IFF_UP]
    # what rtnetlink_rcv_msg answers before any handler
    with pytest.raises(rt.NetlinkError) as e:
        rt.handle(stack, req(rt.RTM_MAX + 1, b"\0" * 16))
    assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(rt.NetlinkError) as e:
        rt.handle(stack, req(90, b"\0" * 16))           # a GET kind without a handler here
    assert e.value.errno == errno.EOPNOTSUPP
    assert rt.handle(stack, req(rt.RTM_GETLINK, b"")) == []   # no payload at all: silently accepted


def test_route_get_looks_up_local_then_main(stack):
    def get(dst, fam=2):
        body = rt.RTMSG.pack(fam, len(dst) * 8, 0, 0, 0, 0, 0, 0, 0) + rt.nla(rt.RTA_DST, dst)
        [(_, b)] = rt.handle(stack, req(rt.RTM_GETROUTE, body, flags=rt.NLM_F_REQUEST, strict=True))
        a = attrs(b, rt.RTMSG.size)
        return rt.RTMSG.unpack_from(b)[7], struct.unpack("<I", a[rt.RTA_OIF])[0], a.get(rt.RTA_GATEWAY), \
            a.get(rt.RTA_PREFSRC)
    assert get(bytes((127, 0, 0, 9))) == (rt.RTN_LOCAL, 1, None, bytes((127, 0, 0, 1)))
    assert get(ETH4) == (rt.RTN_LOCAL, 1, None, ETH4)          # local addresses go through lo
    assert get(bytes((10, 0, 0, 255)))[0] == rt.RTN_BROADCAST
    assert get(bytes((10, 0, 0, 7))) == (rt.RTN_UNICAST, 2, None, ETH4)
    assert get(bytes((8, 8, 8, 8))) == (rt.RTN_UNICAST, 2, GW4, ETH4)
    assert get(bytes.fromhex("20010db8" + "0" * 24), 10)[:3] == (rt.RTN_UNICAST, 2, GW6)
    stack.del_route(bytes(4), 0)
    with pytest.raises(rt.NetlinkError) as e:
        get(bytes((8, 8, 8, 8)))
    assert e.value.errno == errno.ENETUNREACH


def test_rules_neighbours_and_netconf(stack):
    rules = dump(stack, rt.RTM_GETRULE, bytes(12))
    got = [(b[0], struct.unpack("<I", attrs(b, 12)[rt.FRA_TABLE])[0]) for _, b in rules.messages]
    assert got == [(2, 255), (2, 254), (2, 253), (128, 253), (129, 254), (10, 255), (10, 254)]
    assert dump(stack, rt.RTM_GETNEIGH, bytes(12)).messages == []
    conf = dump(stack, rt.RTM_GETNETCONF, b"\2\0\0\0").messages
    assert [struct.unpack("<i", attrs(b, 4)[rt.NETCONFA_IFINDEX])[0] for _, b in conf] == [1, 2, -1, -2]


def test_framing_follows_netlink_rcv_skb():
    hdr = rt.NLMSG_HDR
    one = hdr.pack(20, rt.RTM_GETLINK, 1, 5, 0) + b"\0" * 4
    assert [m[1:] for m in messages(one)] == [(rt.RTM_GETLINK, 1, 5)]
    # iproute2 pads requests with zeros: a zero-length header ends the walk
    assert len(list(messages(one + bytes(128)))) == 1
    assert list(messages(one[:15])) == []                          # shorter than a header
    assert list(messages(hdr.pack(64, 18, 1, 1, 0) + bytes(8))) == []   # length past the end
    assert list(messages(hdr.pack(8, 18, 1, 1, 0) + bytes(8))) == []    # length below a header
    # an unaligned length still moves to the next aligned message
    two = hdr.pack(17, 18, 1, 1, 0) + b"\0" * 4 + hdr.pack(16, 3, 0, 2, 0)
    assert [m[3] for m in messages(two)] == [1, 2]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.booleans(), st.booleans())
def test_any_bytes_get_an_answer_or_a_netlink_error(data, strict, privileged):
    s = Stack.with_loopback(ManualClock())
    for msg, mtype, mflags, seq in messages(data):
        try:
            ans = rt.handle(s, rt.Request(mtype, mflags, seq, msg[16:], strict=strict, privileged=privileged))
        except rt.NetlinkError as e:
            assert e.errno > 0
            continue
        replies = ans.messages if isinstance(ans, rt.Dump) else ans
        for rtype, body in replies:
            assert rtype >= 16 and len(body) % 4 == 0
