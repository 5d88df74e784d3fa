"""Syscall monitors (sentry/monitor.py): the kernel shows every call to
the monitor, which may rewrite its arguments or answer it without the
handler. Each test runs a Sandbox in a child Python (the sandbox pins
its process to one CPU and traces its guests): the guests' stdout is the
child's stderr, and the child prints what its monitor saw on stdout."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRELUDE = f"""
import json, os, sys
sys.path.insert(0, {ROOT!r})
from pyrunsc.sandbox import Config, Sandbox
from sentry.monitor import SyscallMonitor
from sentry.syscalls.table import number, name

report = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)   # the guests' stdout

def run(argv, *monitors):
    return Sandbox(Config(console=False, monitors=list(monitors))).run(argv)
"""


def child(code: str):
    p = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True,
                       timeout=120, cwd="/", stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), p.stderr


def test_monitor_sees_every_call_with_results_and_time():
    got, guest_out = child("""
class Log(SyscallMonitor):
    def __init__(self):
        self.calls, self.parked = [], []
    def blocked(self, t, nr, args):
        self.parked.append(name(nr))
    def done(self, t, nr, args, result, sentry_ns):
        self.calls.append([name(nr), result, sentry_ns])
m = Log()
code = run(["/bin/busybox", "sh", "-c", "echo hi | /bin/busybox cat"], m)
json.dump({"calls": m.calls, "parked": m.parked, "code": code}, report)
""")
    assert got["code"] == 0 and guest_out == "hi\n"
    calls = got["calls"]
    assert ["execve", 0] in [c[:2] for c in calls]   # the pipeline's cat (init's own exec is the loader's)
    assert [c[1] for c in calls if c[0] == "exit_group"] == [None, None, None]   # sh and its two children
    assert any(c[0] == "write" and c[1] == 3 for c in calls)
    assert all(c[2] >= 0 for c in calls) and sum(c[2] for c in calls) > 0
    assert "wait4" in got["parked"]   # the shell waits for its children


def test_monitor_rewrites_arguments_and_answers_calls():
    """enter() returning a tuple changes what the handler gets; returning
    an int is the result, and the handler does not run."""
    got, guest_out = child("""
WRITE, GETPID = number("write"), number("getpid")

class Steer(SyscallMonitor):
    def __init__(self):
        self.seen = []
    def enter(self, t, nr, args):
        if nr == WRITE and args[0] == 1:
            return (2, *args[1:])          # stdout's writes go to stderr
        if nr == GETPID:
            return 4242                    # answered: no handler runs
        return None
    def done(self, t, nr, args, result, sentry_ns):
        if nr in (WRITE, GETPID):
            self.seen.append([name(nr), args[0], result])

class After(SyscallMonitor):   # a second monitor sees the rewritten call
    def __init__(self):
        self.fds = []
    def enter(self, t, nr, args):
        if nr == WRITE:
            self.fds.append(args[0])
m, after = Steer(), After()
code = run(["/bin/busybox", "sh", "-c", "echo out; echo pid=$$"], m, after)
json.dump({"seen": m.seen, "after": after.fds, "code": code}, report)
""")
    assert got["code"] == 0
    # the guests' stdout is the child's stderr: both lines arrive there, written to fd 2
    assert guest_out == "out\npid=4242\n"
    writes = [s for s in got["seen"] if s[0] == "write"]
    assert writes and all(s[1] == 2 for s in writes)
    assert [s[2] for s in got["seen"] if s[0] == "getpid"] == [4242]
    assert got["after"] and set(got["after"]) == {2}
