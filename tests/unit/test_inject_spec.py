"""--inject specs (pyrunsc/inject.py): strace's syntax subset, which calls
a when= expression picks, and one-line errors for bad specs."""
import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrunsc.inject import parse


def test_actions_and_syscall_sets():
    s = parse("write:ENOSPC")
    assert s.syscalls == ("write",) and s.result == -errno.ENOSPC
    assert [n for n in range(1, 6) if s.hits(n)] == [1, 2, 3, 4, 5]   # no when=: every call
    assert parse("write,pwrite64:error=EIO").syscalls == ("write", "pwrite64")
    assert parse("openat:error=2").result == -errno.ENOENT
    assert parse("getpid:retval=42").result == 42
    assert parse("mmap:retval=0x1000").result == 0x1000
    assert parse("1:retval=-1").syscalls == ("1",)   # by number, as strace allows


@given(first=st.integers(1, 40), length=st.none() | st.integers(0, 40), plus=st.booleans(),
       step=st.none() | st.integers(1, 9))
def test_when_picks_the_calls_strace_does(first, length, plus, step):
    """first[..last][+[step]]: a lone N is that call only; N+ every call
    from N; a step counts from first; ..last ends the run."""
    text = str(first)
    last = None if length is None else first + length
    if last is not None:
        text += f"..{last}"
    if plus or step is not None:
        text += "+" + (str(step) if step is not None else "")
    spec = parse(f"write:ENOSPC:when={text}")
    if last is None and not (plus or step is not None):
        expected = {first}
    else:
        stop = last if last is not None else 200
        expected = set(range(first, stop + 1, step or 1))
    assert {n for n in range(1, 201) if spec.hits(n)} == expected


@pytest.mark.parametrize("spec, message", [
    ("write", "is not SYSCALL"),
    ("wrte:ENOSPC", "unknown syscall 'wrte' (did you mean write"),
    ("%file:ENOENT", "only syscall names"),
    ("!write:ENOENT", "only syscall names"),
    ("write:ENOSPACE", "unknown errno 'ENOSPACE' (did you mean ENOSPC"),
    ("write:error=0", "out of range"),
    ("write:when=3", "neither error= nor retval="),
    ("write:ENOSPC:when=0", "count from 1"),
    ("write:ENOSPC:when=5..3", "M >= N"),
    ("write:ENOSPC:when=3+0", "steps from 1"),
    ("write:ENOSPC:when=x", "not N, N+, N+S"),
    ("write:ENOSPC:retval=1", "more than one"),
    ("write:ENOSPC:signal=SIGSEGV", "unknown option 'signal'"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError) as e:
        parse(spec)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(repr(spec))
