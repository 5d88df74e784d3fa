"""The netstack against the host kernel's stack through a tap device: each
test makes a network namespace holding the tap's kernel side (removed at
teardown), runs a Stack on an EthernetLink over the tap on netstack.loop's
EventLoop in this process, and runs host tools (ping, python sockets, curl)
inside the namespace only."""
import os
import select
import sys
import textwrap
import time

import pytest

from netstack import netns
from netstack.core import AF_INET, WouldBlock
from netstack.link.ethernet import EthernetLink
from netstack.loop import EventLoop
from netstack.stack import Stack

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                                reason="needs root and /dev/net/tun")


class World:
    """A namespace with a tap, and the netstack on the tap's fd."""

    def __init__(self, address=True, offload=True):
        # offload: frames carry virtio-net headers and the kernel may send
        # TCP super-frames with partial checksums (the tap completes them)
        self.ns = netns.TapNamespace(offload=offload)
        self.loop = EventLoop()
        self.stack = Stack.with_loopback(self.loop)
        self.link = EthernetLink(self.ns.tap)
        self.nic = self.stack.add_nic(self.link, "tap0")
        self.loop.add_link(self.link)
        self.host, self.peer = self.ns.host_addr, self.ns.peer_addr
        if address:
            self.configure()

    def configure(self):
        self.stack.add_address(self.nic, self.peer, self.ns.prefixlen)

    def drive(self, predicate, timeout=20.0):
        """Run the netstack until predicate() holds; whether it did."""
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                return False
            self.loop.run_until(predicate, 0.02)
        return True

    def wait(self, proc, timeout=30.0):
        """Run the netstack until a host tool exits; its (rc, out, err)."""
        if not self.drive(lambda: proc.poll() is not None, timeout):
            proc.kill()
        out, err = proc.communicate(timeout=10)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def python(self, code, **kw):
        """A Python script in the namespace (host side)."""
        return self.ns.popen([sys.executable, "-c", textwrap.dedent(code)], **kw)

    def close(self):
        self.link.close()       # closes the tap
        self.ns.tap = None
        self.ns.close()


@pytest.fixture(params=["plain", "offload"])
def world(request):
    netns.remove_stale()
    w = World(offload=request.param == "offload")
    try:
        yield w
    finally:
        w.close()
        assert w.ns.name not in netns.list_netns()


def read_line(proc, timeout=10.0):
    """A line from a host tool that needs nothing from the netstack to
    produce it (a server saying it is ready)."""
    r, _, _ = select.select([proc.stdout], [], [], timeout)
    assert r, "host tool did not start"
    return proc.stdout.readline().decode().strip()


def host_mac(w):
    out = w.ns.run(["cat", f"/sys/class/net/{w.ns.tap.name}/address"], check=True).stdout
    return bytes.fromhex(out.strip().replace(":", ""))


def test_host_pings_netstack(world):
    w = world
    rc, out, err = w.wait(w.ns.popen(["ping", "-c", "3", "-i", "0.2", "-W", "5", str(w.ns.peer_ip)]))
    assert rc == 0, out + err
    assert "3 received" in out
    assert w.stack.stats["arp.replies_sent"] >= 1      # the kernel had to ask for our MAC
    neigh = w.ns.run(["ip", "neigh", "show", str(w.ns.peer_ip)]).stdout
    assert w.link.mac.hex(":") in neigh


def test_netstack_resolves_the_host_and_exchanges_udp(world):
    w = world
    from netstack.udp import UDPEndpoint
    echo = w.python(f"""
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("{w.ns.host_ip}", 7000))
        print("ready", flush=True)
        s.settimeout(20)
        for _ in range(2):
            data, peer = s.recvfrom(65536)
            s.sendto(data.upper(), peer)
        print(peer[0], peer[1], flush=True)
    """)
    assert read_line(echo) == "ready"
    ep = UDPEndpoint(w.stack, AF_INET)
    ep.bind((w.peer, 5353))
    got = []

    def recv():
        try:
            got.append(ep.recv(65536))
        except WouldBlock:
            pass
        return len(got) == 2

    ep.send(b"hello host", 0, (w.host, 7000))
    ep.send(b"x" * 3000, 0, (w.host, 7000))       # fragmented both ways
    assert w.drive(recv), dict(w.stack.stats)
    assert [g[0] for g in got] == [b"HELLO HOST", b"X" * 3000]
    assert got[0][2] == (w.host, 7000)
    rc, out, _ = w.wait(echo)
    assert rc == 0 and out.split()[-2:] == [str(w.ns.peer_ip), "5353"]
    n = w.link.arp.cache.get(w.host)
    assert n is not None and n.mac == host_mac(w)
    assert w.stack.stats["arp.requests_sent"] >= 1


def test_host_udp_client_reaches_netstack_server(world):
    w = world
    from netstack.udp import UDPEndpoint
    ep = UDPEndpoint(w.stack, AF_INET)
    ep.bind((bytes(4), 6000))

    def serve():
        while True:
            try:
                data, _, peer = ep.recv(65536)
            except WouldBlock:
                ep.queues()[0].add_waiter(serve)
                return
            ep.send(data[::-1], 0, peer)
    serve()
    client = w.python(f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(10)
        for msg in (b"abc", b"0123456789" * 500):
            s.sendto(msg, ("{w.ns.peer_ip}", 6000))
            data, peer = s.recvfrom(65536)
            assert data == msg[::-1], data[:20]
        # nobody on this port: the netstack answers port unreachable
        # (which Linux reports to a connected socket)
        s.connect(("{w.ns.peer_ip}", 6001))
        s.send(b"?")
        try:
            s.recvfrom(10)
        except ConnectionRefusedError:
            print("refused")
    """)
    rc, out, err = w.wait(client)
    assert rc == 0, err
    assert out.strip() == "refused"


def test_gratuitous_arp_when_address_added(world_noaddr):
    w = world_noaddr
    # accept gratuitous ARP for new neighbours, so the kernel's table shows it
    w.ns.run(["sysctl", "-qw", f"net.ipv4.conf.{w.ns.tap.name}.arp_accept=1"], check=True)
    w.configure()
    assert w.stack.stats["arp.announced"] == 1
    ok = w.drive(lambda: w.link.mac.hex(":") in w.ns.run(["ip", "neigh", "show", str(w.ns.peer_ip)]).stdout,
                 timeout=5)
    assert ok, w.ns.run(["ip", "neigh"]).stdout
    assert w.stack.stats["arp.replies_sent"] == 0      # learned with nobody asking


@pytest.fixture
def world_noaddr():
    netns.remove_stale()
    w = World(address=False)
    try:
        yield w
    finally:
        w.close()
        assert w.ns.name not in netns.list_netns()


MALFORMED = r"""
import socket, struct, sys
ours = bytes.fromhex(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[2], 0))
me = s.getsockname()[4]
src, dst = socket.inet_aton(sys.argv[3]), socket.inet_aton(sys.argv[4])

def csum(b):
    if len(b) % 2: b += b"\0"
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while n >> 16: n = (n & 0xffff) + (n >> 16)
    return ~n & 0xffff

def ip(payload, proto=17, ver_ihl=0x45, total=None, good=True, frag=0):
    total = 20 + len(payload) if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", ver_ihl, 0, total, 1, frag, 64, proto, 0, src, dst)
    c = csum(h) if good else 0x1234
    return h[:10] + struct.pack("!H", c) + h[12:] + payload

def eth(payload, ethertype=0x0800, to=ours, frm=me):
    return to + frm + struct.pack("!H", ethertype) + payload

udp_bad = struct.pack("!HHHH", 1000, 6000, 12, 0xbeef) + b"abcd"
# (a frame shorter than its header cannot be sent: AF_PACKET refuses it)
frames = {
    "eth.vlan_tagged": eth(b"\x00\x01\x08\x00" + ip(b""), 0x8100),
    "eth.not_for_us": eth(ip(b"x"), to=b"\x02\x00\x00\x00\x00\x99"),
    "eth.bad_source": eth(ip(b"x"), frm=b"\x01\x00\x00\x00\x00\x01"),
    "arp.short": eth(b"\x00\x01\x08\x00\x06", 0x0806),
    "arp.unsupported": eth(struct.pack("!HHBBH", 6, 0x0800, 6, 4, 1) + bytes(20), 0x0806),
    "ipv4.short": eth(b"\x45\x00"),
    "ipv4.bad_version": eth(ip(b"x", ver_ihl=0x65)),
    "ipv4.bad_ihl": eth(ip(b"x", ver_ihl=0x43)),
    "ipv4.bad_length": eth(ip(b"x", total=900)),
    "ipv4.bad_checksum": eth(ip(b"x", good=False)),
    "udp.bad_checksum": eth(ip(udp_bad)),
    "ipv6.short": eth(b"\x60\x00", 0x86dd),
    "eth.unknown_ethertype": eth(b"hello", 0x88b5),
    # a fragment that would go past 64 KiB
    "ipv4.frag_too_big": eth(ip(b"y" * 16, frag=8189)),
}
for name, frame in frames.items():
    s.send(frame)
print(" ".join(frames))
"""


def test_malformed_frames_are_dropped_and_counted(world):
    w = world
    rc, out, err = w.wait(w.ns.popen(["ping", "-c", "1", "-W", "5", str(w.ns.peer_ip)]))
    assert rc == 0, out + err
    before = dict(w.stack.stats)
    sender = w.ns.popen([sys.executable, "-c", MALFORMED, w.link.mac.hex(), w.ns.tap.name,
                         str(w.ns.host_ip), str(w.ns.peer_ip)])
    rc, out, err = w.wait(sender)
    assert rc == 0, err
    names = out.split()
    w.drive(lambda: False, timeout=0.3)     # whatever is still in the tap's queue
    grew = {n for n in names if w.stack.stats[n] > before.get(n, 0)}
    # every kind was dropped and counted under its own name (the fragment
    # may be counted by the reassembler under another)
    assert set(names) - grew <= {"ipv4.frag_too_big"}, (set(names) - grew, dict(w.stack.stats))
    rc, out, err = w.wait(w.ns.popen(["ping", "-c", "2", "-i", "0.2", "-W", "5", str(w.ns.peer_ip)]))
    assert rc == 0, out + err         # still alive and answering


HOST6, PEER6 = "fd00:db8:7::1", "fd00:db8:7::2"


def test_ipv6_neighbour_discovery_both_ways(world):
    w = world
    import ipaddress
    from netstack.core import AF_INET6
    from netstack.udp import UDPEndpoint
    w.ns.run(["ip", "-6", "addr", "add", f"{HOST6}/64", "dev", w.ns.tap.name, "nodad"], check=True)
    host6, peer6 = ipaddress.ip_address(HOST6).packed, ipaddress.ip_address(PEER6).packed
    w.stack.add_address(w.nic, peer6, 64)
    assert w.stack.stats["ndp.announced"] == 1
    echo = w.python(f"""
        import socket
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("{HOST6}", 7006))
        print("ready", flush=True)
        s.settimeout(20)
        data, peer = s.recvfrom(100)
        s.sendto(data[::-1], peer)
    """)
    assert read_line(echo) == "ready"
    ep = UDPEndpoint(w.stack, AF_INET6)
    ep.send(b"ping6", 0, (host6, 7006))
    got = []

    def recv():
        try:
            got.append(ep.recv(100)[0])
        except WouldBlock:
            pass
        return bool(got)
    assert w.drive(recv), dict(w.stack.stats)
    assert got == [b"6gnip"]
    assert w.wait(echo)[0] == 0
    n = w.link.ndp.cache.get(host6)
    assert n is not None and n.mac == host_mac(w) and w.stack.stats["ndp.solicits_sent"] >= 1
    rc, out, err = w.wait(w.ns.popen(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "5", PEER6]))
    assert rc == 0, out + err
    assert w.link.mac.hex(":") in w.ns.run(["ip", "-6", "neigh", "show", PEER6]).stdout


def test_unresolvable_neighbour_reports_host_unreachable(world):
    import errno
    from netstack.core import IPPROTO_IP, POLLERR
    from netstack.udp import IP_RECVERR, UDPEndpoint
    w = world
    ghost = w.host[:3] + bytes((99,))       # on the tap's subnet, nobody there
    ep = UDPEndpoint(w.stack, AF_INET)
    # host unreachable is a soft error: Linux reports it to a UDP socket
    # only with IP_RECVERR
    ep.setsockopt(IPPROTO_IP, IP_RECVERR, 1)
    ep.connect((ghost, 9))
    ep.send(b"anyone?")
    assert w.drive(lambda: ep.readiness() & POLLERR, timeout=10), dict(w.stack.stats)
    assert ep.take_error() == errno.EHOSTUNREACH
    assert w.stack.stats["arp.failed"] == 1 and w.stack.stats["arp.requests_sent"] >= 3


# --- TCP over the tap --------------------------------------------------------

class Served:
    """One accepted connection of a netstack server: input, output waiting."""

    def __init__(self, ep):
        self.ep, self.inbuf, self.eof = ep, bytearray(), False
        self.out, self.sent = b"", 0        # what to send, how much of it went

    def pump(self):
        """Read what arrived, send what fits; whether anything moved."""
        moved = False
        while not self.eof:
            try:
                data = self.ep.recv(1 << 16)[0]
            except WouldBlock:
                break
            moved = True
            if not data:
                self.eof = True
            self.inbuf += data
        out = self.out
        while self.sent < len(out):
            try:
                self.sent += self.ep.send(out[self.sent:self.sent + (1 << 16)])
            except WouldBlock:
                break
            moved = True
        return moved

    @property
    def pending(self):
        return len(self.out) - self.sent

    def reply(self, data):
        self.out = self.out[self.sent:] + data
        self.sent = 0


class NetstackServer:
    """A listening netstack TCP endpoint; `respond(conn)` decides what each
    connection answers (sets conn.out, returns True to close when sent).
    step() is called between event loop rounds."""

    def __init__(self, stack, port, respond):
        from netstack.tcp import endpoint
        self.listener = endpoint(stack, AF_INET)
        self.listener.bind((bytes(4), port))
        self.listener.listen(16)
        self.respond = respond
        self.conns = []
        self.finished = []

    def step(self):
        while True:
            try:
                self.conns.append(Served(self.listener.accept()))
            except WouldBlock:
                break
        for c in list(self.conns):
            c.pump()
            if self.respond(c) and not c.pending:
                c.ep.close()
                self.conns.remove(c)
                self.finished.append(c)
                continue
            c.pump()


def http_server(stack, port, body):
    def respond(c):
        if b"\r\n\r\n" in c.inbuf and not getattr(c, "answered", False):
            c.answered = True
            c.reply(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        return getattr(c, "answered", False)
    return NetstackServer(stack, port, respond)


def echo_server(stack, port):
    def respond(c):
        if c.inbuf:
            c.reply(bytes(c.inbuf))
            c.inbuf.clear()
        return c.eof
    return NetstackServer(stack, port, respond)


def serve_until(w, server, proc, timeout=60.0):
    def done():
        server.step()
        return proc.poll() is not None
    if not w.drive(done, timeout):
        proc.kill()
    out, err = proc.communicate(timeout=10)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def test_host_curl_downloads_from_netstack_http_server(world):
    import hashlib
    w = world
    body = os.urandom(3 << 20)
    server = http_server(w.stack, 8080, body)
    curl = w.ns.popen(["sh", "-c", f"curl -sS --max-time 60 http://{w.ns.peer_ip}:8080/file | sha256sum"])
    rc, out, err = serve_until(w, server, curl, timeout=90)
    assert rc == 0, err
    assert out.split()[0] == hashlib.sha256(body).hexdigest(), (out, err, dict(w.stack.stats))
    assert len(server.finished) == 1


def test_host_client_and_netstack_echo_server(world):
    w = world
    srv = echo_server(w.stack, 9001)
    client = w.python(f"""
        import hashlib, os, socket, threading
        data = os.urandom(1 << 20)
        s = socket.create_connection(("{w.ns.peer_ip}", 9001), timeout=30)
        t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        t.start()
        got = bytearray()
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        t.join()
        print(len(got), got == data)
    """)
    rc, out, err = serve_until(w, srv, client)
    assert rc == 0, err
    assert out.split() == [str(1 << 20), "True"], (out, dict(w.stack.stats))


def test_netstack_client_reaches_host_server(world):
    import hashlib
    from netstack.tcp import endpoint
    w = world
    server = w.python(f"""
        import hashlib, socket
        ls = socket.socket()
        ls.bind(("{w.ns.host_ip}", 7100))
        ls.listen(1)
        print("ready", flush=True)
        ls.settimeout(30)
        c, peer = ls.accept()
        got = bytearray()
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            got += b
        reply = hashlib.sha256(got).hexdigest().encode() + b"\\n" + bytes(range(256)) * 8192
        c.sendall(reply)
        c.close()
        print(peer[0], len(got), flush=True)
    """)
    assert read_line(server) == "ready"
    data = os.urandom(1 << 20)
    ep = endpoint(w.stack, AF_INET)
    ep.connect((w.host, 7100))

    def connected():
        try:
            return ep.connect_result() == 0
        except WouldBlock:
            return False
    assert w.drive(connected), dict(w.stack.stats)
    c = Served(ep)
    c.reply(data)
    state = {"shut": False}

    def done():
        c.pump()
        if not c.pending and not state["shut"]:
            ep.shutdown(1)
            state["shut"] = True
        return c.eof
    assert w.drive(done, 60), dict(w.stack.stats)
    ep.close()
    digest, _, rest = bytes(c.inbuf).partition(b"\n")
    assert digest.decode() == hashlib.sha256(data).hexdigest()
    assert rest == bytes(range(256)) * 8192
    rc, out, err = w.wait(server)
    assert rc == 0, err
    assert out.split()[-2:] == [str(w.ns.peer_ip), str(1 << 20)]


# iperf3's control protocol, the server side of a forward (client sends)
# TCP test: state bytes on the control connection, JSON as a 4-byte
# big-endian length and the text; every connection opens with the 37-byte
# cookie (36 characters and a NUL).
PARAM_EXCHANGE, CREATE_STREAMS, TEST_START, TEST_RUNNING = 9, 10, 1, 2
TEST_END, EXCHANGE_RESULTS, DISPLAY_RESULTS, IPERF_DONE = 4, 13, 14, 16
COOKIE = 37


class IperfReceiver:
    """Enough of `iperf3 -s` on the netstack's TCP for `iperf3 -c` to
    complete a TCP test in which the client sends (no -R, no --bidir)."""

    def __init__(self, stack, clock, port=5201):
        from netstack.tcp import endpoint
        self.clock = clock
        self.listener = endpoint(stack, AF_INET)
        self.listener.bind((bytes(4), port))
        self.listener.listen(16)
        self.control = None
        self.cookie = None
        self.streams = []           # data connections, cookie read
        self.pending = []           # data connections before their cookie
        self.state = "cookie"
        self.params = None
        self.received = 0
        self.started = self.ended = None
        self.client_results = None

    @staticmethod
    def _json(buf):
        if len(buf) < 4:
            return None
        n = int.from_bytes(buf[:4], "big")
        if len(buf) < 4 + n:
            return None
        import json
        doc = json.loads(bytes(buf[4:4 + n]))
        del buf[:4 + n]
        return doc

    def _results(self):
        import json
        secs = (self.ended - self.started) / 1e9
        doc = {"cpu_util_total": 0.0, "cpu_util_user": 0.0, "cpu_util_system": 0.0,
               "sender_has_retransmits": -1, "congestion_used": "reno",
               "streams": [{"id": 1 if i == 0 else i + 2, "bytes": s.bytes, "retransmits": -1,
                            "jitter": 0, "errors": 0, "omitted_errors": 0, "packets": 0,
                            "omitted_packets": 0, "start_time": 0, "end_time": secs}
                           for i, s in enumerate(self.streams)]}
        text = json.dumps(doc).encode()
        return len(text).to_bytes(4, "big") + text

    def step(self):
        while True:
            try:
                c = Served(self.listener.accept())
            except WouldBlock:
                break
            c.bytes = 0
            if self.control is None:
                self.control = c
            else:
                self.pending.append(c)
        for c in list(self.pending):
            c.pump()
            if len(c.inbuf) >= COOKIE:
                assert bytes(c.inbuf[:COOKIE]) == self.cookie
                del c.inbuf[:COOKIE]
                self.pending.remove(c)
                self.streams.append(c)
        for c in self.streams:
            c.pump()
            if self.state == "running":
                c.bytes += len(c.inbuf)
                self.received += len(c.inbuf)
            c.inbuf.clear()
        c = self.control
        if c is None:
            return
        c.pump()
        buf = c.inbuf
        if self.state == "cookie" and len(buf) >= COOKIE:
            self.cookie = bytes(buf[:COOKIE])
            del buf[:COOKIE]
            c.reply(bytes((PARAM_EXCHANGE,)))
            self.state = "params"
        if self.state == "params":
            self.params = self._json(buf)
            if self.params is not None:
                c.reply(bytes((CREATE_STREAMS,)))
                self.state = "streams"
        if self.state == "streams" and len(self.streams) == self.params.get("parallel", 1):
            c.reply(bytes((TEST_START, TEST_RUNNING)))
            self.started = self.clock.now_ns()
            self.state = "running"
        if self.state == "running" and buf and buf[0] == TEST_END:
            del buf[:1]
            self.ended = self.clock.now_ns()
            c.reply(bytes((EXCHANGE_RESULTS,)))
            self.state = "results"
        if self.state == "results":
            self.client_results = self._json(buf)
            if self.client_results is not None:
                c.reply(self._results() + bytes((DISPLAY_RESULTS,)))
                self.state = "display"
        if self.state == "display" and buf and buf[0] == IPERF_DONE:
            self.state = "done"
        c.pump()
        if self.state == "done" and c.eof:
            for s in (c, *self.streams):
                s.ep.close()
            self.control, self.streams = None, []
            self.state = "closed"


def test_iperf3_client_against_netstack_receiver(world):
    import json
    w = world
    rx = IperfReceiver(w.stack, w.loop)
    client = w.ns.popen(["iperf3", "-c", str(w.ns.peer_ip), "-t", "2", "-J", "--connect-timeout", "5000"])
    rc, out, err = serve_until(w, rx, client, timeout=60)
    assert rc == 0, (out[-2000:], err)
    report = json.loads(out)
    sent = report["end"]["sum_sent"]["bytes"]
    received = report["end"]["sum_received"]["bytes"]
    assert rx.state in ("display", "done", "closed")
    assert received == rx.received > 0
    # the client stops counting at TEST_END; all of it reached us, and
    # nothing we counted was never sent
    assert received <= sent
    mbit = report["end"]["sum_received"]["bits_per_second"] / 1e6
    print(f"iperf3 -> netstack over the tap ({'offload' if w.ns.offload else 'plain'}): {mbit:.0f} Mbit/s")


def test_tap_device_in_a_namespace_persistent_and_attached(world_noaddr):
    import errno
    import fcntl
    from netstack.link.tap import TUNSETPERSIST, TapDevice
    w = world_noaddr
    home = os.readlink("/proc/thread-self/ns/net")
    dev = TapDevice.open("ptap%d", w.ns.name, persist=True)
    name = dev.name
    assert name.startswith("ptap") and os.readlink("/proc/thread-self/ns/net") == home
    dev.close()
    # made in the namespace, not ours; it outlives its fd
    assert not os.path.exists(f"/sys/class/net/{name}")
    assert w.ns.run(["ip", "link", "show", name]).returncode == 0
    again = TapDevice.open(name, w.ns.name, attach=True)
    try:
        assert again.name == name and again.read_batch() == []
        fcntl.ioctl(again.fd, TUNSETPERSIST, 0)
    finally:
        again.close()
    assert w.ns.run(["ip", "link", "show", name]).returncode != 0
    with pytest.raises(OSError) as e:
        TapDevice.open(name, w.ns.name, attach=True)
    assert e.value.errno == errno.ENODEV
    assert os.readlink("/proc/thread-self/ns/net") == home
