"""sentry/decode.py: symbolic names and argument rendering for --strace,
checked against Python's own tables (errno, signal, fcntl, socket,
termios, os) and by parsing what the decoder prints back."""
import ast
import errno
import fcntl
import ipaddress
import os
import signal
import socket
import struct
import termios

import pytest
from hypothesis import given, strategies as st

from pyrunsc.oci import fastpath
from sentry import decode
from sentry.decode import name_of
from sentry.strace import duration, syscall_numbers
from sentry.syscalls.numbers import SYSCALL_NAMES


def test_errno_names_agree_with_python():
    for code, name in errno.errorcode.items():
        got = name_of("errno", code)
        assert getattr(errno, got) == code, (code, name, got)
        assert name_of("errno", -code) == got   # a syscall result names the same errno
    assert name_of("errno", errno.EAGAIN) == "EAGAIN" and name_of("errno", 512) == "ERESTARTSYS"
    assert name_of("errno", 4000) == "4000"


def test_signal_names_agree_with_python():
    for sig in signal.Signals:
        if sig < signal.SIGRTMIN:
            assert name_of("signal", sig) == sig.name
    assert name_of("signal", 32) == "SIGRTMIN" and name_of("signal", 34) == "SIGRT_2"
    assert name_of("signal", 65) == "65"


@pytest.mark.parametrize("kind,module,prefixes", [
    ("fcntl", fcntl, ("F_",)),
    ("family", socket, ("AF_",)),
    ("ioctl", termios, ("TC", "TIOC", "FIO")),
])
def test_names_agree_with_python_constants(kind, module, prefixes):
    """Every name the decoder knows that Python also defines has Python's
    value (and names with two spellings for one value map to one of them)."""
    checked = 0
    for value, name in getattr(decode, f"{kind.upper()}_NAMES").items():
        if hasattr(module, name) and name.startswith(prefixes):
            assert getattr(module, name) & 0xFFFFFFFF == value, name
            checked += 1
    assert checked >= 5
    for name in dir(module):
        if name.startswith(prefixes) and name.isupper() and isinstance(getattr(module, name), int):
            got = name_of(kind, getattr(module, name))
            if hasattr(module, got):   # (termios also holds tcflush's arguments, not requests)
                assert getattr(module, got) == getattr(module, name), (name, got)


def test_socket_types_with_flags():
    assert name_of("socktype", socket.SOCK_STREAM) == "SOCK_STREAM"
    assert name_of("socktype", socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC) \
        == "SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC"
    assert name_of("socktype", 9) == "9"
    with pytest.raises(ValueError, match="unknown kind"):
        name_of("colour", 1)


def test_prctl_and_unknown_values():
    assert name_of("prctl", 15) == "PR_SET_NAME" and name_of("prctl", 38) == "PR_SET_NO_NEW_PRIVS"
    assert name_of("prctl", 9999) == "9999" and name_of("ioctl", 0xDEAD) == "0xdead"


def _parse_flags(text: str, table: tuple) -> int:
    names = {n: v for v, n in table}
    value = 0
    for part in text.split("|"):
        value |= int(part, 16) if part.startswith("0x") else names[part] if part != "0" else 0
    return value


@given(st.integers(0, 0xFFFFFFFF))
def test_flag_sets_read_back(v):
    """NAME|NAME|0xrest names exactly the bits of the value."""
    for table in (decode.MMAP_PROT, decode.MMAP_FLAGS, decode.CLONE_FLAGS, decode.MSG_FLAGS, decode.AT_FLAGS):
        assert _parse_flags(decode.flags(v, table), table) == v


@given(st.integers(0, 0xFFFFFFFF))
def test_open_flags_read_back(v):
    text = decode.SCALARS["open_flags"](v, ())
    acc, _, rest = text.partition("|")
    value = {"O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_ACCMODE": 3}[acc]
    if rest:
        value |= _parse_flags(rest, decode.OPEN_FLAGS)
    assert value == v


def test_open_flags_match_os():
    assert decode.SCALARS["open_flags"](os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, ()) \
        == "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"
    for name in ("O_APPEND", "O_NONBLOCK", "O_DIRECTORY", "O_NOFOLLOW", "O_PATH", "O_TMPFILE", "O_SYNC",
                 "O_DSYNC", "O_NOATIME", "O_EXCL", "O_DIRECT"):
        assert decode.SCALARS["open_flags"](getattr(os, name), ()) == f"O_RDONLY|{name}"


@given(st.binary(max_size=300))
def test_quoted_strings_read_back(data):
    """The quoting is a valid Python bytes literal of the same bytes."""
    assert ast.literal_eval("b" + decode.quote(data)) == data


@given(st.integers(0, (1 << 64) - 1))
def test_sigsets_read_back(mask):
    text = decode.sigset(mask)
    inverted = text.startswith("~")
    names = text.lstrip("~")[1:-1].split()
    bits = 0
    for n in names:
        nr = next(k for k, v in decode.SIGNAL_NAMES.items() if v == n)
        bits |= 1 << (nr - 1)
    assert (~bits & ((1 << 64) - 1) if inverted else bits) == mask


@given(st.integers(0, 0xFFFF))
def test_wait_status_agrees_with_os(s):
    text = decode.wait_status(s)
    if os.WIFEXITED(s):
        assert text == f"{{exited={os.WEXITSTATUS(s)}}}"
    elif os.WIFSTOPPED(s):
        assert text == f"{{stopped={name_of('signal', os.WSTOPSIG(s))}}}"
    elif os.WIFCONTINUED(s):
        assert text == "{continued}"
    elif os.WIFSIGNALED(s):
        assert text.startswith(f"{{signaled={name_of('signal', os.WTERMSIG(s))}")
        assert text.endswith(", core}") == os.WCOREDUMP(s)
    else:
        assert text == hex(s)


@given(st.binary(min_size=4, max_size=4), st.integers(0, 65535))
def test_sockaddr_in(addr, port):
    raw = struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + addr + bytes(8)
    assert decode.sockaddr(raw) == f"{{family=AF_INET, addr={socket.inet_ntop(socket.AF_INET, addr)}, port={port}}}"


@given(st.binary(min_size=16, max_size=16), st.integers(0, 65535), st.integers(0, 2**32 - 1))
def test_sockaddr_in6(addr, port, scope):
    raw = struct.pack("<H", socket.AF_INET6) + struct.pack(">HI", port, 0) + addr + struct.pack("<I", scope)
    fields = dict(kv.split("=", 1) for kv in decode.sockaddr(raw)[1:-1].split(", "))
    assert fields["family"] == "AF_INET6" and int(fields["port"]) == port
    assert ipaddress.IPv6Address(fields["addr"]).packed == addr
    assert int(fields.get("scope_id", 0)) == scope


def test_sockaddr_unix_and_others():
    path = struct.pack("<H", socket.AF_UNIX) + b"/run/x.sock\0junk"
    assert decode.sockaddr(path) == '{family=AF_UNIX, path="/run/x.sock"}'
    abstract = struct.pack("<H", socket.AF_UNIX) + b"\0name"
    assert decode.sockaddr(abstract) == '{family=AF_UNIX, path=@"name"}'
    nl = struct.pack("<HHII", socket.AF_NETLINK, 0, 7, 1)
    assert decode.sockaddr(nl) == "{family=AF_NETLINK, pid=7, groups=0x1}"
    assert decode.sockaddr(struct.pack("<H", 99) + b"\x01\x02") == "{family=99, data=0102}"


def test_file_modes():
    assert decode.file_mode(0o100644) == "S_IFREG|0644"
    assert decode.file_mode(0o40755) == "S_IFDIR|0755"
    assert decode.file_mode(0o1777) == "01777"


def test_every_spec_names_a_syscall_and_known_formats():
    """The table's keys are x86-64 syscalls and its formats exist (a typo
    would otherwise show up only when a guest made that call)."""
    names = set(SYSCALL_NAMES.values())
    for name, formats in decode.SPECS.items():
        assert name in names, name
        assert len(formats) <= 6
        for kind, ref in decode.spec(name):
            assert kind in decode.SCALARS or kind == "cmode" or hasattr(decode.Decoder, "_" + kind), (name, kind)
            assert ref < len(formats)
    for name in names:   # python-ptrace's prototypes (or six hex words) for the rest
        assert len(decode.spec(name)) <= 6


def test_results():
    d = decode.Decoder()
    assert d.result("read", 5) == "5" and d.result("exit", None) == "?"
    assert d.result("open", -errno.ENOENT) == "-1 ENOENT (No such file or directory)"
    assert d.result("mmap", 0x7F0000001000) == "0x7f0000001000"
    with pytest.raises(ValueError):
        decode.Decoder(-1)


def test_syscall_name_filter():
    assert syscall_numbers("read, write") == {0, 1}
    with pytest.raises(ValueError, match=r"unknown syscall 'opne' \(did you mean .*open"):
        syscall_numbers("read,opne")
    with pytest.raises(ValueError, match="unknown syscall 'zzzzzz'$"):
        syscall_numbers(["zzzzzz"])
    with pytest.raises(ValueError, match="no syscall names"):
        syscall_numbers(",")


def test_durations():
    assert [duration(n) for n in (999, 12_345, 1_234_567, 2_500_000_000)] == ["999ns", "12.3µs", "1.235ms", "2.500s"]


def test_oci_fast_path_strace_flags():
    """The quick OCI parser takes the strace flags; what it cannot vouch
    for goes to the full command line (which names the error)."""
    assert fastpath._strace_options({}) == (None, 1024)
    assert fastpath._strace_options({"--strace-syscalls": "read, write", "--strace-log-size": "64"}) \
        == (["read", "write"], 64)
    assert fastpath._strace_options({"--strace-syscalls": "raed"})[0] is False
    assert fastpath._strace_options({"--strace-log-size": "-3"})[1] is None
