"""The host's ps (what `docker top` runs) shows each guest host process as
the guest's command: comm (PR_SET_NAME) and argv (PR_SET_MM_MAP) are set
when a program is loaded, at start and at every exec, and follow the
guest's own prctl(PR_SET_NAME)."""
import os
import subprocess
import sys
import time

import psutil
import pytest

from conftest import pyrunsc_cmd


def _comm(proc: psutil.Process) -> str:
    with open(f"/proc/{proc.pid}/comm") as f:
        return f.read().rstrip("\n")


class Sandbox:
    """`pyrunsc do -- argv` in the background, stdin a pipe; stop() ends it
    and checks its host processes are gone."""

    def __init__(self, argv):
        self.p = subprocess.Popen(pyrunsc_cmd("do", "--", *argv), cwd="/", stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
        self.seen = []

    def guests(self):
        """The sandbox's guest host processes: its descendants but the gofer."""
        try:
            kids = psutil.Process(self.p.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen += [c for c in kids if c not in self.seen]  # the gofer too: stop() checks all
        out = []
        for c in kids:
            try:
                if "vfs.gofer.server" not in " ".join(c.cmdline()):
                    out.append(c)
            except psutil.NoSuchProcess:
                pass
        return out

    def wait_for(self, pred, what, timeout=60):
        """The first guest host process for which pred(proc) holds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.p.poll() is None, self.p.stderr.read()[-2000:]
            for g in self.guests():
                try:
                    if pred(g):
                        return g
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.1)
        shown = []
        for g in self.guests():
            try:
                shown.append((g.pid, _comm(g), g.cmdline()))
            except (psutil.NoSuchProcess, OSError):
                pass
        raise AssertionError(f"no guest process {what}; guests: {shown}")

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=30)
        self.p.stdin.close()
        self.p.stderr.close()
        _, alive = psutil.wait_procs(self.seen, timeout=10)
        assert not alive, f"left behind: {alive}"


@pytest.fixture
def sandbox():
    made = []

    def start(argv):
        made.append(Sandbox(argv))
        return made[-1]
    yield start
    for s in made:
        s.stop()


def test_ps_shows_the_guest_command(sandbox):
    s = sandbox(["sleep", "30"])
    g = s.wait_for(lambda p: p.name() == "sleep", "named sleep")
    assert _comm(g) == "sleep"
    argv = g.cmdline()
    assert os.path.basename(argv[0]) == "sleep" and argv[1:] == ["30"], argv


def test_exec_in_the_guest_renames_the_process(sandbox):
    """The same host process shows sh, then, once it execs, sleep."""
    script = "read line; exec sleep 30"
    s = sandbox(["/bin/sh", "-c", script])
    sh = s.wait_for(lambda p: p.cmdline()[1:] == ["-c", script], "running the script")
    assert _comm(sh) == "sh"
    s.p.stdin.write(b"go\n")
    s.p.stdin.flush()
    end = time.monotonic() + 60
    while _comm(sh) != "sleep":
        assert time.monotonic() < end, (_comm(sh), sh.cmdline())
        time.sleep(0.1)
    argv = sh.cmdline()
    assert os.path.basename(argv[0]) == "sleep" and argv[1:] == ["30"], argv
    assert sh.name() == "sleep"


def test_guest_prctl_set_name_reaches_the_host(sandbox):
    """prctl(PR_SET_NAME) by the guest renames its host thread as well; a
    name of 16 bytes or more is cut to 15, as Linux does."""
    code = ("import ctypes, sys, time\n"
            "libc = ctypes.CDLL(None)\n"
            "r = libc.prctl(15, b'renamed-by-guest', 0, 0, 0)\n"
            "buf = ctypes.create_string_buffer(16)\n"
            "libc.prctl(16, buf, 0, 0, 0)\n"
            "print(r, buf.value.decode(), flush=True)\n"
            "time.sleep(30)\n")
    s = sandbox(["/usr/bin/python3", "-c", code])
    g = s.wait_for(lambda p: _comm(p) == "renamed-by-gues", "renamed by the guest")
    assert g.cmdline()[1:] == ["-c", code]


FILTER_PROBE = r"""
import errno, signal, sys
sys.path.insert(0, sys.argv[1])
from platforms.ptrace.platform import (GuestGone, NR_PRCTL, PR_SET_MM, PR_SET_MM_MAP, PR_SET_NAME,
                                       PRCTL_MM_MAP, PtracePlatform)
plat = PtracePlatform()
try:
    for option, arg2 in ((4, 0), (PR_SET_MM, 1), (PR_SET_NAME | 1 << 32, 0)):
        th = plat.new_process()
        # the allowed forms reach the host kernel (which faults on address 0)
        assert th.inject(NR_PRCTL, PR_SET_NAME, 0) == -errno.EFAULT
        assert th.inject(NR_PRCTL, PR_SET_MM, PR_SET_MM_MAP, 0, PRCTL_MM_MAP.size) == -errno.EFAULT
        try:
            r = th.inject(NR_PRCTL, option, arg2)
            print(f"prctl({option:#x}, {arg2}) ran: {r}")
        except GuestGone as gone:
            print(f"prctl({option:#x}, {arg2}) killed by {gone.status & 0x7F}")
finally:
    plat.close()
"""


def test_the_filter_allows_prctl_only_as_injected():
    """The guest host processes' seccomp filter lets prctl through with
    PR_SET_NAME or PR_SET_MM/PR_SET_MM_MAP only (the kernel reads the
    options' low 32 bits, so PR_SET_NAME | 1 << 32 is PR_SET_NAME);
    anything else kills the process with SIGSYS."""
    from conftest import ROOT
    r = subprocess.run([sys.executable, "-c", FILTER_PROBE, ROOT], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout.decode().splitlines() == [
        "prctl(0x4, 0) killed by 31",           # PR_SET_DUMPABLE
        "prctl(0x23, 1) killed by 31",          # PR_SET_MM, PR_SET_MM_START_CODE
        "prctl(0x10000000f, 0) ran: -14",       # the high half is not the option: PR_SET_NAME
    ]
