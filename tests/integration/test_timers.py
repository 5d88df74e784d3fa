"""POSIX timers, timerfd and signalfd under the real sentry: a C fixture
run natively and in the sandbox must print the same."""
import subprocess

from conftest import run_do

# Lines that depend on the caller's CAP_WAKE_ALARM and the host's RTC;
# in the sandbox the guest never has the capability.
SANDBOX_ALARM = [b"alarm: timer_create refused", b"alarm: timerfd EPERM"]


def split_alarm(out: bytes):
    lines = out.splitlines()
    return ([l for l in lines if not l.startswith(b"alarm:")],
            [l for l in lines if l.startswith(b"alarm:")])


def test_timers_fixture(cbin, strace):
    prog = cbin("timers", "-pthread")
    native = subprocess.run([prog], capture_output=True, timeout=60)
    assert native.returncode == 0, native.stderr[-2000:]
    r = run_do([prog], strace=strace)
    assert r.returncode == 0, r.stderr[-2000:]
    got, alarm = split_alarm(r.stdout)
    want, _ = split_alarm(native.stdout)
    assert got == want
    assert alarm == SANDBOX_ALARM
    if strace:
        assert b"timer_create(" in r.stderr and b"signalfd4(" in r.stderr
