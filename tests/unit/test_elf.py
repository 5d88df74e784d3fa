"""The loader's ELF parser against readelf, and against garbage."""
import errno
import os
import re
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from platforms.ptrace.stub import ENTRY, STUB_BASE, stub_image
from sentry.loader import elf
from sentry.loader.exec import _parse_shebang

BINARIES = [p for p in ("/bin/ls", "/usr/bin/python3.11", "/bin/busybox",
                        "/lib64/ld-linux-x86-64.so.2") if os.path.exists(p)]


def readelf(path):
    out = subprocess.run(["readelf", "-lhW", path], capture_output=True, text=True, check=True).stdout
    loads = len(re.findall(r"^\s+LOAD\s", out, re.M))
    interp = re.search(r"Requesting program interpreter: ([^\]]+)\]", out)
    entry = int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", out).group(1), 16)
    return loads, interp.group(1).encode() if interp else None, entry


@pytest.mark.parametrize("path", BINARIES)
def test_parse_matches_readelf(path):
    img = elf.parse(open(path, "rb").read())
    loads, interp, entry = readelf(path)
    assert len(img.segments) == loads
    assert img.interp == interp
    assert img.entry == entry


def test_stub_is_valid_elf(tmp_path):
    data = stub_image()
    img = elf.parse(data)
    assert img.entry == ENTRY and img.lo == STUB_BASE and img.interp is None
    p = tmp_path / "stub"
    p.write_bytes(data)
    assert readelf(str(p))[2] == ENTRY


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_is_enoexec(data):
    with pytest.raises(OSError) as e:
        elf.parse(data)
    assert e.value.errno in (errno.ENOEXEC, errno.EINVAL)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_mutated_binary_never_crashes(pos, junk):
    data = bytearray(open(BINARIES[0], "rb").read()[:4096])
    data[pos:pos + len(junk)] = junk
    try:
        elf.parse(bytes(data))
    except OSError as e:
        assert e.errno in (errno.ENOEXEC, errno.EINVAL)


@pytest.mark.parametrize("line,expect", [
    (b"#!/bin/sh\n", (b"/bin/sh", None)),
    (b"#! /usr/bin/env  python3 -u \n", (b"/usr/bin/env", b"python3 -u")),
    (b"#!/bin/sh -e -x\necho", (b"/bin/sh", b"-e -x")),
    (b"#!\t/bin/awk\t-f\n", (b"/bin/awk", b"-f")),
])
def test_shebang(line, expect):
    assert _parse_shebang(line) == expect


def test_empty_shebang_is_enoexec():
    with pytest.raises(OSError) as e:
        _parse_shebang(b"#!   \n")
    assert e.value.errno == errno.ENOEXEC


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 6), st.sampled_from([1, 2, 3, 4, 5, 7])),
                min_size=1, max_size=5))
def test_protection_runs_match_a_page_by_page_model(raw):
    from sentry.loader.exec import _protection_runs
    spans = [(s * 4096, (s + n) * 4096, p) for s, n, p in raw]
    want = {}
    for s, e, p in spans:
        for page in range(s, e, 4096):
            want[page] = want.get(page, 0) | p
    got = {}
    runs = _protection_runs(spans)
    for (s, e, p), nxt in zip(runs, runs[1:] + [None]):
        assert s < e
        if nxt is not None:
            assert e <= nxt[0] and not (e == nxt[0] and p == nxt[2])  # disjoint, merged
        for page in range(s, e, 4096):
            got[page] = p
    assert got == want
