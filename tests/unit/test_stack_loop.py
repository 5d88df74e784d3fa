"""netstack.loop.EventLoop: timers in deadline order, cancellation, fd
readers, run_until's predicate and timeout; and a stack running on it."""
import os

from netstack.core import AF_INET, LOOPBACK4, Timer
from netstack.loop import EventLoop
from netstack.stack import Stack
from netstack.udp import UDPEndpoint

MS = 1_000_000


def test_timers_run_in_deadline_order_and_cancel():
    loop = EventLoop()
    now = loop.now_ns()
    fired = []
    loop.call_at(now + 3 * MS, lambda: fired.append(3))
    loop.call_at(now + 1 * MS, lambda: fired.append(1))
    h = loop.call_at(now + 2 * MS, lambda: fired.append(2))
    h.cancel()
    loop.call_later(4 * MS, loop.stop)
    loop.run_forever()
    assert fired == [1, 3]
    assert loop.now_ns() >= now + 4 * MS


def test_run_until_predicate_and_timeout():
    loop = EventLoop()
    box = []
    loop.call_later(2 * MS, lambda: box.append(1))
    assert loop.run_until(lambda: box, timeout=5)
    t0 = loop.now_ns()
    assert not loop.run_until(lambda: False, timeout=0.01)
    assert loop.now_ns() - t0 >= 10 * MS


def test_reader_called_when_readable():
    loop = EventLoop()
    r, w = os.pipe()
    try:
        got = []

        def read():
            got.append(os.read(r, 100))
        loop.add_reader(r, read)
        loop.call_later(2 * MS, lambda: os.write(w, b"ping"))
        assert loop.run_until(lambda: got, timeout=5)
        assert got == [b"ping"]
        loop.remove_reader(r)
        os.write(w, b"more")
        loop.run_for(0.005)
        assert got == [b"ping"]
    finally:
        os.close(r)
        os.close(w)


def test_core_timer_on_event_loop():
    loop = EventLoop()
    hits = []
    t = Timer(loop, lambda: hits.append(loop.now_ns()))
    start = loop.now_ns()
    t.arm_in(2 * MS)
    t.arm_in(4 * MS)            # pushed back: fires once, at the later time
    assert loop.run_until(lambda: hits, timeout=5)
    assert len(hits) == 1 and hits[0] - start >= 4 * MS
    loop.run_for(0.005)
    assert len(hits) == 1


def test_stack_on_event_loop():
    loop = EventLoop()
    stack = Stack.with_loopback(loop)
    r = UDPEndpoint(stack, AF_INET)
    r.bind((LOOPBACK4, 0))
    s = UDPEndpoint(stack, AF_INET)
    s.send(b"hello", 0, r.getsockname())
    assert r.recv(10)[0] == b"hello"
