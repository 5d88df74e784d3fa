"""`pyrunsc do -- /bin/bash -i` driven through a host pty, as a person at a
terminal would: the guest gets the console's sandbox pty (sentry.console),
so line editing, ^C, ^Z and `fg` are decided by the guest's own job
control inside the sandbox."""
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time

import pytest

from conftest import ROOT

PROMPT = b"PYRUNSC-PROMPT$ "


class Session:
    """pyrunsc in a session of its own on a host pty (pty.fork): it leads
    the session and the pty is its controlling terminal, as in a terminal
    emulator. close() kills the whole process group."""

    def __init__(self, argv, env=None, size=(24, 80)):
        env = dict(os.environ, PS1=PROMPT.decode(), TERM="dumb", PYTHONPATH=ROOT, **(env or {}))
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: pyrunsc with the pty as its terminal
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
                os.chdir("/")
                os.execvpe(sys.executable, [sys.executable, "-m", "pyrunsc.cli", "do", "--", *argv], env)
            finally:
                os._exit(127)
        self.pgid = self.pid
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
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.pid:
            os.waitpid(self.pid, 0)
        if self.fd >= 0:
            os.close(self.fd)

    def group_gone(self, timeout: float = 10) -> bool:
        """Nothing of pyrunsc's is left in its process group."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                os.killpg(self.pgid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False


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


def test_background_jobs_and_the_terminal(bash):
    """Terminal job control inside the sandbox: a background reader stops
    (SIGTTIN), with TOSTOP a background writer stops (SIGTTOU) until fg;
    /dev/tty is the controlling terminal."""
    bash.expect(PROMPT)
    assert b"/dev/pts/0" in bash.run(b"tty")
    bash.run(b"cat &")
    time.sleep(0.5)
    assert b"Stopped" in bash.run(b"jobs")
    bash.run(b"kill -9 %1")
    bash.run(b"stty tostop; echo bg-out &")
    time.sleep(0.5)
    jobs = bash.run(b"jobs")
    assert b"Stopped" in jobs and b"bg-out" not in jobs.replace(b"echo bg-out", b"")
    assert b"\nbg-out" in bash.run(b"fg").replace(b"\r", b"")
    bash.run(b"stty -tostop")
    assert b"via-dev-tty" in bash.run(b"echo via-dev-tty > /dev/tty")
    bash.send(b"exit\n")
    assert bash.wait() == 0


def test_window_size_follows_the_host_terminal():
    s = Session(["/bin/bash", "--norc", "--noprofile", "-i"], size=(33, 101))
    try:
        s.expect(PROMPT)
        assert b"33 101" in s.run(b"stty size")
        fcntl.ioctl(s.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # SIGWINCH to pyrunsc
        deadline = time.monotonic() + 20
        while b"40 120" not in s.run(b"stty size"):
            assert time.monotonic() < deadline, "the guest's pty never took the new size"
            time.sleep(0.2)
        s.send(b"exit\n")
        assert s.wait() == 0
    finally:
        s.close()


def test_sentry_crash_restores_the_terminal():
    """An internal error in the sentry (a syscall handler that raises) ends
    pyrunsc with 70, and the host terminal's mode comes back."""
    s = Session(["/bin/bash", "--norc", "--noprofile", "-i"], env={"PYRUNSC_TEST_CRASH_IN": "sync"})
    try:
        mode_before = termios.tcgetattr(s.fd)
        s.expect(PROMPT)
        s.send(b"sync\n")
        assert s.wait() == 70
        assert termios.tcgetattr(s.fd) == mode_before
        assert s.group_gone()
    finally:
        s.close()


def test_host_hangup_ends_the_sandbox():
    """Closing the host terminal (its master) hangs up pyrunsc's session:
    pyrunsc unwinds and nothing of it is left behind."""
    s = Session(["/bin/bash", "--norc", "--noprofile", "-i"])
    try:
        s.expect(PROMPT)
        s.run(b"sleep 100 &")
        os.close(s.fd)
        s.fd = -1
        pid, status = 0, 0
        deadline = time.monotonic() + 30
        while not pid and time.monotonic() < deadline:
            pid, status = os.waitpid(s.pid, os.WNOHANG)
            time.sleep(0.05)
        assert pid, "pyrunsc outlived its terminal"
        s.pid = 0
        assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGHUP
        assert s.group_gone()
    finally:
        s.close()


def test_in_the_background_the_terminal_is_left_alone():
    """pyrunsc started in a background group of its terminal does not take
    the terminal over (raw mode would stop it with SIGTTOU): the guest's
    output still reaches it and pyrunsc ends normally."""
    pid, fd = pty.fork()
    if pid == 0:  # the session leader, in the foreground; pyrunsc runs behind it
        try:
            os.chdir("/")
            child = os.fork()
            if child == 0:
                os.setpgid(0, 0)
                env = dict(os.environ, PYTHONPATH=ROOT)
                os.execvpe(sys.executable, [sys.executable, "-m", "pyrunsc.cli", "do", "--",
                                            "/bin/sh", "-c", "echo bg-ok; test -t 0 && echo tty"], env)
            os.setpgid(child, child)
            _, status = os.waitpid(child, os.WUNTRACED)
            os._exit(os.waitstatus_to_exitcode(status) if not os.WIFSTOPPED(status) else 99)
        finally:
            os._exit(127)
    s = Session.__new__(Session)
    s.pid, s.fd, s.pgid, s.buf = pid, fd, pid, b""
    try:
        mode_before = termios.tcgetattr(fd)
        s.expect(b"bg-ok")
        s.expect(b"tty")  # the guest's stdin is the host terminal, handed through
        assert s.wait() == 0
        assert termios.tcgetattr(fd) == mode_before
    finally:
        s.close()
