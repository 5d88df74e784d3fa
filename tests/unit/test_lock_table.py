"""vfs/locks.py on real tmpfs files: the range algebra against a per-byte
model, and the waiting machinery the sentry drives (registration,
deadlock detection, release on close). The behaviour against Linux is
tests/integration/test_locks.py's."""
import errno

import pytest
from hypothesis import given, settings, strategies as st

from vfs.file import O_RDWR, FileDescription, WouldBlock
from vfs.locks import F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX, Lock, LockTable, byte_range
from vfs.tmpfs import TmpFS


def open_new(fs: TmpFS, name: bytes = b"f") -> FileDescription:
    root = fs.root()
    try:
        inode = root.lookup(name)
    except OSError:
        inode = root.create(name, 0o100644, 0, 0)
    return FileDescription(inode.open(O_RDWR), O_RDWR, None, inode).incref()


def code(fn):
    try:
        fn()
    except WouldBlock:
        return "block"
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"


# --- ranges -------------------------------------------------------------

def test_byte_range_follows_linux():
    assert byte_range(0, 5, 0, 0, 0) == (5, OFFSET_MAX)
    assert byte_range(1, -10, 5, 50, 0) == (40, 44)
    assert byte_range(2, -10, 0, 0, 100) == (90, OFFSET_MAX)
    assert byte_range(0, 30, -10, 0, 0) == (20, 29)
    assert code(lambda: byte_range(0, 30, -31, 0, 0)) == "EINVAL"
    assert code(lambda: byte_range(0, -1, 1, 0, 0)) == "EINVAL"
    assert code(lambda: byte_range(3, 0, 1, 0, 0)) == "EINVAL"
    assert code(lambda: byte_range(0, OFFSET_MAX, 2, 0, 0)) == "EOVERFLOW"
    assert code(lambda: byte_range(2, OFFSET_MAX, 0, 0, 1)) == "EOVERFLOW"
    assert byte_range(0, OFFSET_MAX, 1, 0, 0) == (OFFSET_MAX, OFFSET_MAX)


SIZE = 24
ops = st.lists(st.tuples(st.integers(0, 2), st.sampled_from([F_RDLCK, F_WRLCK, F_UNLCK]),
                         st.integers(0, SIZE - 1), st.integers(1, 8)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_ranges_match_a_byte_model(seq):
    """Random set/unlock requests by three owners: each either conflicts
    (EAGAIN, exactly when the byte model says another owner's lock is in
    the way) or leaves every owner's locks as the maximal runs of its
    bytes, merged and split as Linux keeps them."""
    table, fs = LockTable(), TmpFS()
    desc = open_new(fs)
    owners = [object(), object(), object()]
    model = [dict() for _ in owners]  # owner -> {byte: type}
    for who, kind, start, length in seq:
        end = min(start + length, SIZE) - 1
        req = Lock(owners[who], who + 1, kind, start, end)
        blocked = kind != F_UNLCK and any(
            other is not model[who] and any(b in other and (kind == F_WRLCK or other[b] == F_WRLCK)
                                            for b in range(start, end + 1))
            for other in model)
        got = code(lambda: table.set_posix(desc, req, wait=False))
        assert got == ("EAGAIN" if blocked else "ok")
        if not blocked:
            for b in range(start, end + 1):
                if kind == F_UNLCK:
                    model[who].pop(b, None)
                else:
                    model[who][b] = kind
        f = table.files.get(next(iter(table.files), None))
        held = f.posix if f else []
        for i, owner in enumerate(owners):
            runs, b = [], 0
            while b < SIZE:
                if b in model[i]:
                    e = b
                    while e + 1 in model[i] and model[i][e + 1] == model[i][b]:
                        e += 1
                    runs.append((model[i][b], b, e))
                    b = e + 1
                else:
                    b += 1
            assert [(l.type, l.start, l.end) for l in held if l.owner is owner] == runs
        # each owner's locks stay together in the list
        seen = [l.owner for l in held]
        assert all(seen.index(o) + seen.count(o) - 1 == len(seen) - 1 - seen[::-1].index(o)
                   for o in set(seen))
    assert table.holdings.keys() <= set(owners)


# --- waiting --------------------------------------------------------------

def wait_on(table, desc, req):
    """What the sentry does with WouldBlock: register a callback."""
    with pytest.raises(WouldBlock) as info:
        table.set_posix(desc, req, wait=True)
    woken = []
    blocked = info.value.waitable
    blocked.add_waiter(lambda: woken.append(True))
    return blocked, woken


def test_deadlock_needs_a_registered_waiter():
    table, fs = LockTable(), TmpFS()
    desc = open_new(fs)
    a, b = object(), object()
    table.set_posix(desc, Lock(a, 1, F_WRLCK, 0, 0), wait=False)
    table.set_posix(desc, Lock(b, 2, F_WRLCK, 1, 1), wait=False)
    blocked, woken = wait_on(table, desc, Lock(b, 2, F_WRLCK, 0, 0))  # b waits for a
    assert code(lambda: table.set_posix(desc, Lock(a, 1, F_WRLCK, 1, 1), wait=True)) == errno.errorcode[errno.EDEADLK]
    assert code(lambda: table.set_posix(desc, Lock(a, 1, F_WRLCK, 1, 1), wait=False)) == "EAGAIN"
    # OFD requests are never deadlock-checked
    assert code(lambda: table.set_posix(desc, Lock(a, 1, F_WRLCK, 1, 1, ofd=True), wait=True)) == "block"
    blocked.remove_waiter(None)  # b's wait ended (a signal, say): no cycle left
    assert code(lambda: table.set_posix(desc, Lock(a, 1, F_WRLCK, 1, 1), wait=True)) == "block"
    assert not woken


def test_release_on_close_wakes_waiters_and_forgets_the_file():
    table, fs = LockTable(), TmpFS()
    d1, d2 = open_new(fs), open_new(fs)
    owner = object()
    table.set_posix(d1, Lock(owner, 1, F_WRLCK, 0, 9), wait=False)
    _, woken = wait_on(table, d2, Lock(d2, 2, F_RDLCK, 5, 5, ofd=True))
    table.close_fd(d2, object())   # someone else's close: nothing
    assert not woken
    table.close_fd(d2, owner)      # the owner closes any fd of the file
    assert woken == [True]
    assert not table.files and not table.holdings


def test_flock_conversion_is_not_atomic_and_shows_waiters():
    table, fs = LockTable(), TmpFS()
    d1, d2, d3 = open_new(fs), open_new(fs), open_new(fs)
    table.flock(d1, 1, F_RDLCK, wait=False)
    table.flock(d2, 2, F_RDLCK, wait=False)
    assert code(lambda: table.flock(d2, 2, F_WRLCK, wait=False)) == "EAGAIN"
    table.flock(d1, 1, F_WRLCK, wait=False)  # d2's shared lock went
    with pytest.raises(WouldBlock) as info:
        table.flock(d3, 3, F_RDLCK, wait=True)
    woken = []
    info.value.waitable.add_waiter(lambda: woken.append(True))
    lines = table.render_proc().decode().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("1: FLOCK  ADVISORY  WRITE 1 ") and lines[0].endswith(" 0 EOF")
    assert lines[1].startswith("1: -> FLOCK  ADVISORY  READ 3 ")
    table.release_description(d1)  # its last close: d3 tries again
    assert woken == [True]
    assert not table.files and not table.holdings and table.render_proc() == b""
