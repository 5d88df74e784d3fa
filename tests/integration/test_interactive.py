"""`pyrunsc do -- /bin/bash -i` driven through a host pty, as a person at a
terminal would: the guest gets the console's sandbox pty (sentry.console),
so line editing, ^C, ^Z and `fg` are decided by the guest's own job
control inside the sandbox."""
import os
import pty
import select
import signal
import sys
import termios
import time

import pytest

from conftest import ROOT

PROMPT = b"PYRUNSC-PROMPT$ "


class Session:
    def __init__(self, argv):
        env = dict(os.environ, PS1=PROMPT.decode(), TERM="dumb", PYTHONPATH=ROOT)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: pyrunsc with the pty as its terminal
            try:
                os.chdir("/")
                os.execvpe(sys.executable, [sys.executable, "-m", "pyrunsc.cli", "do", "--", *argv], env)
            finally:
                os._exit(127)
        self.buf = b""

    def expect(self, marker: bytes, timeout: float = 30) -> bytes:
        """Read until marker; returns what came before it (and consumes it)."""
        end = time.monotonic() + timeout
        while marker not in self.buf:
            left = end - time.monotonic()
            r, _, _ = select.select([self.fd], [], [], max(0, left))
            if not r:
                raise AssertionError(f"timed out waiting for {marker!r}; got {self.buf[-800:]!r}")
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"terminal closed waiting for {marker!r}; got {self.buf[-800:]!r}")
            self.buf += chunk
        before, _, self.buf = self.buf.partition(marker)
        return before

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def run(self, line: bytes) -> bytes:
        self.send(line + b"\n")
        return self.expect(PROMPT)

    def wait(self, timeout: float = 30) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            try:  # keep draining so the child never blocks on output
                os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)
        raise AssertionError("pyrunsc did not exit")

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def bash():
    s = Session(["/bin/bash", "--norc", "--noprofile", "-i"])
    yield s
    s.close()


def test_bash_interactive_job_control(bash):
    mode_before = termios.tcgetattr(bash.fd)
    bash.expect(PROMPT)
    assert b"hi-there" in bash.run(b"echo hi-there")

    # ^C interrupts a foreground job: the shell's prompt comes back at once
    bash.send(b"sleep 100\n")
    time.sleep(1)
    start = time.monotonic()
    bash.send(b"\x03")
    bash.expect(PROMPT, timeout=20)
    assert time.monotonic() - start < 20
    assert b"130" in bash.run(b"echo $?")

    # ^Z stops one; jobs lists it; fg resumes it to completion
    bash.send(b"sh -c 'sleep 1; echo resumed-ok'\n")
    time.sleep(0.5)
    bash.send(b"\x1a")
    assert b"Stopped" in bash.expect(PROMPT)
    assert b"Stopped" in bash.run(b"jobs")
    out = bash.run(b"fg")
    assert b"resumed-ok" in out
    assert b"0" in bash.run(b"echo $?")

    # line editing: readline's backspace and kill-line (^U)
    assert b"abc" in bash.run(b"echo abX\x7fc")
    assert b"kept" in bash.run(b"echo gone\x15echo kept")

    # the guest's terminal is its own: its window size comes from ours
    assert b"rows" not in bash.run(b"stty size")  # answers without error

    bash.send(b"exit\n")
    assert bash.wait() == 0
    assert termios.tcgetattr(bash.fd) == mode_before  # the host terminal's mode came back


def test_console_ctrl_c_reaches_a_busy_guest():
    """A guest spinning on the CPU (no syscalls) still gets ^C: the relay
    thread interrupts the sentry's wait."""
    s = Session(["/usr/bin/python3.11", "-c",
                 "import sys; print('spinning', flush=True)\nwhile True: pass"])
    try:
        s.expect(b"spinning")
        time.sleep(0.5)
        s.send(b"\x03")
        assert s.wait(timeout=20) == 130  # SIGINT's default action, as a shell reports it
    finally:
        s.close()


def test_sigterm_to_pyrunsc_restores_the_terminal(bash):
    mode_before = termios.tcgetattr(bash.fd)
    bash.expect(PROMPT)
    assert termios.tcgetattr(bash.fd) != mode_before  # raw while the guest runs
    os.kill(bash.pid, signal.SIGTERM)
    assert bash.wait() == 128 + signal.SIGTERM
    assert termios.tcgetattr(bash.fd) == mode_before
