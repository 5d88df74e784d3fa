"""The guest's own seccomp filters: a fixture of cases, and random classic
BPF programs run by the host kernel and by the sentry's interpreter
(differential: the verdicts, errnos and kill signals must agree)."""
import os
import struct
import subprocess
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import run_do

RET_ALLOW, RET_ERRNO, RET_TRAP, RET_KILL_PROCESS, RET_LOG = 0x7FFF0000, 0x50000, 0x30000, 0x80000000, 0x7FFC0000
LD_ABS, LD_IMM, LD_MEM, LDX_IMM, LDX_MEM, ST, STX = 0x20, 0x00, 0x60, 0x01, 0x61, 0x02, 0x03
ALU, JMP, RET_K, RET_A, TAX, TXA = 0x04, 0x05, 0x06, 0x16, 0x07, 0x87
ALU_OPS = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0]
JMP_OPS = [0x10, 0x20, 0x30, 0x40]


def native(args):
    return subprocess.run(args, capture_output=True, timeout=60)


def test_seccomp_cases(cbin):
    prog = cbin("seccomp")
    r = run_do([prog])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native([prog]).stdout
    assert b"trap: nr 63 (uname 63) code 1 errno 42 arch ok 1" in r.stdout
    assert b"kill case: killed by signal 31" in r.stdout and b"must not print" not in r.stdout


u32 = st.integers(0, 0xFFFFFFFF)
small = st.sampled_from([0, 1, 2, 3, 7, 31, 32, 0x50000, 0xFFF, 0xFFFFFFFF, 110])
# loads from seccomp_data: nr, arch, the argument words (not the instruction pointer)
data_offsets = st.sampled_from([0, 4] + list(range(16, 64, 4)))


@st.composite
def body_insn(draw, remaining):
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return (LD_ABS, 0, 0, draw(data_offsets))
    if kind == 1:
        return (draw(st.sampled_from([LD_IMM, LDX_IMM])), 0, 0, draw(st.one_of(u32, small)))
    if kind == 2:
        return (draw(st.sampled_from([ST, STX, LD_MEM, LDX_MEM])), 0, 0, draw(st.integers(0, 15)))
    if kind in (3, 4, 5):
        op = draw(st.sampled_from(ALU_OPS))
        src = draw(st.sampled_from([0, 8]))
        return (ALU | op | src, 0, 0, draw(st.one_of(small, u32)))
    if kind in (6, 7):
        op = draw(st.sampled_from(JMP_OPS))
        src = draw(st.sampled_from([0, 8]))
        hi = max(0, remaining)
        return (JMP | op | src, draw(st.integers(0, hi)), draw(st.integers(0, hi)), draw(st.one_of(small, u32)))
    if kind == 8:
        return (draw(st.sampled_from([TAX, TXA])), 0, 0, 0)
    return (JMP, 0, 0, draw(st.integers(0, max(0, remaining))))  # JA


@st.composite
def program(draw):
    n = draw(st.integers(0, 12))
    body = []
    for i in range(n):
        # jumps may land anywhere up to the final three instructions
        body.append(draw(body_insn(remaining=n - i - 1 + 2)))
    if draw(st.booleans()):
        tail = [(ALU | 0x50, 0, 0, 0xFFF), (ALU | 0x40, 0, 0, RET_ERRNO), (RET_A, 0, 0, 0)]
    else:
        action = draw(st.sampled_from([RET_ALLOW, RET_LOG, RET_KILL_PROCESS, RET_TRAP, RET_ERRNO | 13,
                                       RET_ERRNO | 5000, 0x12340000]))
        tail = [(RET_A if draw(st.booleans()) else RET_K, 0, 0, action), (RET_K, 0, 0, RET_ALLOW),
                (RET_K, 0, 0, RET_ALLOW)]
    args = draw(st.lists(st.one_of(small, st.integers(0, 2**64 - 1)), min_size=6, max_size=6))
    # the random part judges getppid only: printing and exiting stay allowed
    head = [(LD_ABS, 0, 0, 0), (JMP | 0x10, 1, 0, 110), (RET_K, 0, 0, RET_ALLOW)]
    return head + body + tail, args


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(program(), min_size=30, max_size=30))
def test_random_filters_agree_with_the_host_kernel(cbin, programs):
    runner = cbin("bpf_runner")
    blob = struct.pack("<I", len(programs))
    for insns, args in programs:
        blob += struct.pack("<I", len(insns)) + b"".join(struct.pack("<HBBI", *i) for i in insns)
        blob += struct.pack("<6Q", *args)
    fd, path = tempfile.mkstemp(prefix="pyrunsc-bpf-", dir="/var/tmp")
    try:
        os.write(fd, blob)
        os.close(fd)
        want = native([runner, path])
        r = run_do([runner, path])
        assert r.returncode == want.returncode == 0, r.stderr[-2000:]
        assert r.stdout.decode().splitlines() == want.stdout.decode().splitlines()
    finally:
        os.unlink(path)
