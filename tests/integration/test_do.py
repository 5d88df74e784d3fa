"""pyrunsc do: real programs under the real sentry, compared with native runs."""
import os
import subprocess
import sys

import pytest

from conftest import run_do

SHELL_PIPELINE = "ls / | sort | head -3; grep ^ID= /etc/os-release"
PY_SCRIPT = ("import json, os\n"
             "d = '/usr/lib/python3.11/json'\n"
             "print(json.dumps(sorted(os.listdir(d))))\n"
             "print(os.path.isdir(d), len(os.environ) > 0)\n")


def native(args):
    return subprocess.run(args, capture_output=True, timeout=60, cwd="/")


def test_echo(strace):
    r = run_do(["/bin/echo", "hello"], strace=strace)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello\n"
    if strace:
        assert b"write(" in r.stderr and b"execve(" not in r.stdout


def test_exit_status(strace):
    assert run_do(["/bin/sh", "-c", "exit 7"], strace=strace).returncode == 7


def test_killed_by_signal(strace, cbin):
    """pyrunsc exits 128+N when init dies of signal N. As a pid namespace's
    init, it ignores even a SIGKILL sent from inside (Linux does too: see
    test_pidns_init.py); its children do not, and a fault kills init."""
    r = run_do(["/bin/sh", "-c", "kill -9 $$; echo survived; sh -c 'kill -9 $$'; echo $?"], strace=strace)
    assert r.returncode == 0 and r.stdout == b"survived\n137\n", r.stderr
    r = run_do([cbin("pidns_init"), "fault"], strace=strace)
    assert r.returncode == 139, r.stderr


def test_shell_pipeline_matches_native(strace):
    r = run_do(["/bin/sh", "-c", SHELL_PIPELINE], strace=strace)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native(["/bin/sh", "-c", SHELL_PIPELINE]).stdout
    if strace:
        for name in (b"execve(", b"pipe", b"wait4(", b"getdents64("):
            assert name in r.stderr, name


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3.11"), reason="needs Debian's python3.11")
def test_python_matches_native(strace):
    args = ["/usr/bin/python3.11", "-c", PY_SCRIPT]
    r = run_do(args, strace=strace, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout == native(args).stdout
    if strace:
        assert b"openat(" in r.stderr and b"mmap(" in r.stderr


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static")
def test_static_busybox(strace):
    r = run_do(["/bin/busybox", "sh", "-c", "echo $((1+2)); seq 3 | busybox wc -l"], strace=strace)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [b"3", b"3"]


def test_writes_stay_in_sandbox(strace):
    assert not os.path.exists("/etc/probe")
    r = run_do(["/bin/sh", "-c", "echo x > /etc/probe && cat /etc/probe"], strace=strace)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"x\n"
    assert not os.path.exists("/etc/probe")


def test_pid_namespace_and_proc(strace):
    script = "echo $$; ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '; echo; ls /proc/self/fd | tr '\\n' ' '"
    r = run_do(["/bin/sh", "-c", script], strace=strace)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "1"
    pids = [int(p) for p in lines[1].split()]
    assert 1 in pids and all(p < 10 for p in pids)  # sandbox processes only
    assert lines[2].split() == ["0", "1", "2", "3"]  # ls's own fds: stdio and its directory


def test_missing_program():
    r = run_do(["/no/such/program"])
    assert r.returncode == 127
    assert b"pyrunsc: /no/such/program: No such file or directory" in r.stderr


def test_not_executable(tmp_path):
    r = run_do(["/etc/passwd"])
    assert r.returncode == 126
    assert b"Permission denied" in r.stderr


def test_unimplemented_syscall_logged(tmp_path, cbin):
    log = tmp_path / "debug.log"
    r = run_do(["/bin/sh", "-c", "true"], do_opts=["--debug-log", str(log)])
    assert r.returncode == 0
    assert log.exists()


def _session_processes(sid):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(pid))
    return found


def test_internal_error_kills_everything(tmp_path):
    env = dict(os.environ, PYRUNSC_TEST_CRASH_IN="getppid")
    tmp_before = set(os.listdir("/tmp"))
    p = subprocess.Popen([sys.executable, "-m", "pyrunsc.cli", "do", "--", "/bin/sh", "-c",
                          "sleep 100 & /bin/sh -c 'echo $PPID'; wait"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/",
                         start_new_session=True)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 70
    assert b"internal error" in err and b"getppid" in err and b"Traceback" in err
    assert _session_processes(p.pid) == []  # no guest, gofer or sentry left
    assert set(os.listdir("/tmp")) - tmp_before == set()


def test_large_tree_walk_matches_native():
    """More files than the gofer may hold open at once: the dentry cache is
    pruned and host fds are released."""
    script = "find /usr/lib -type f | wc -l; du -s /usr/share/doc"
    r = run_do(["/bin/sh", "-c", script], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native(["/bin/sh", "-c", script]).stdout
