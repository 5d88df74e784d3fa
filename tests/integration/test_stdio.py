"""Host stdio inside the sandbox: reads that wait never stall other guests,
and tty ioctls are answered from the host terminal."""
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time

from conftest import pyrunsc_cmd, run_do


def test_blocked_stdin_reader_does_not_stall_others():
    p = subprocess.Popen(pyrunsc_cmd("do", "--", "/bin/sh", "-c",
                                     "exec 3<&0; (cat <&3; echo cat-done) & echo other-ran; wait"),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    try:
        first = p.stdout.readline()  # arrives while cat waits on the open, empty stdin
        assert first == b"other-ran\n"
        p.stdin.write(b"typed\n")
        p.stdin.close()
        rest = p.stdout.read()
        assert rest == b"typed\ncat-done\n"
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()
        p.wait()


def test_stdin_pipe_data():
    r = run_do(["/bin/sh", "-c", "tr a-z A-Z"], input=b"hello sandbox\n")
    assert r.returncode == 0 and r.stdout == b"HELLO SANDBOX\n"


def test_tty_ioctls_from_host_terminal():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
    p = subprocess.Popen(pyrunsc_cmd("do", "--", "/bin/sh", "-c", "stty size; test -t 0 && echo tty"),
                         stdin=slave, stdout=slave, stderr=slave, cwd="/")
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the last writer is gone
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()
        os.close(master)
    assert b"33 77" in out and b"tty" in out
