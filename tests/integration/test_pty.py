"""Pseudo-terminals: the same pty program natively and in the sandbox."""
import os
import subprocess

from conftest import FIXTURES, run_do

# Passed with -c: the checkout may live under /tmp, which the sandbox hides.
SCRIPT = open(os.path.join(FIXTURES, "pty_sigint.py")).read()


def test_pty_line_discipline_signals_and_hangup():
    native = subprocess.run(["/usr/bin/python3.11", "-c", SCRIPT], capture_output=True, timeout=60)
    r = run_do(["/usr/bin/python3.11", "-c", SCRIPT])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native.stdout
    assert b"master: EIO" in r.stdout and b"child: hello INT True" in r.stdout


def test_devpts_lists_open_ptys():
    script = ("import os, pty; m, s = pty.openpty(); n = os.ttyname(s); "
              "print(n, n.split('/')[-1] in os.listdir('/dev/pts'), os.isatty(s))")
    r = run_do(["/usr/bin/python3.11", "-c", script])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"/dev/pts/0 True True\n"


def test_terminal_job_control_same_as_native(cbin):
    """tests/fixtures/ttyjob.c on a pty of its own: the controlling terminal
    (TIOCSCTTY, by open, TIOCNOTTY, /dev/tty), TIOCSPGRP's checks,
    SIGTTIN/SIGTTOU and EIO from the background, orphaned groups, the
    session leader's exit and the master's hang-up, as Linux does them."""
    prog = cbin("ttyjob")
    native = subprocess.run([prog], capture_output=True, timeout=120)
    assert native.returncode == 0 and b"orphaned with a stopped member: HUP 1 CONT 1" in native.stdout
    r = run_do([prog], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native.stdout
