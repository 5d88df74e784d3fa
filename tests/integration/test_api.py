"""The Python API (pyrunsc.Sandbox): run() as subprocess.run with input,
captured output, timeouts and exit statuses; spawn(). The sandboxes run
in this test process, as the API's users run them: every test checks
that the process is left as it was (fds, CPU affinity, signal mask and
handlers, no child process)."""
import errno
import os
import shutil
import signal
import tempfile
import threading
import time

import pytest

import pyrunsc

BUSYBOX = "/bin/busybox"


def _children() -> list:
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            out += open(f"/proc/self/task/{tid}/children").read().split()
        except OSError:
            pass
    return out


def _host_state():
    return {"fds": sorted(os.listdir("/proc/self/fd")), "affinity": os.sched_getaffinity(0),
            "mask": signal.pthread_sigmask(signal.SIG_BLOCK, []),
            "handlers": {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGIO,
                                                          signal.SIGCHLD)},
            "threads": threading.active_count()}


@pytest.fixture
def clean_host():
    """Asserts the test left no fd, child, thread, pinned CPU or signal change."""
    before = _host_state()
    yield
    deadline = time.monotonic() + 5   # helper threads end just after the sandbox
    while threading.active_count() > before["threads"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _host_state() == before
    assert _children() == []


@pytest.fixture
def scratch():
    """A host directory under /var/tmp (the sandbox's /tmp is its own)."""
    d = tempfile.mkdtemp(prefix="pyrunsc-api-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sb(clean_host):
    with pyrunsc.Sandbox(cwd="/") as box:
        yield box


def test_import_pyrunsc_is_light():
    """`import pyrunsc` (every OCI runtime call) loads no sandbox code; the
    API is loaded on first use of pyrunsc.Sandbox."""
    import subprocess
    import sys
    code = ("import sys, pyrunsc; light = 'pyrunsc.api' not in sys.modules and 'sentry.kernel' not in sys.modules;"
            "pyrunsc.Sandbox; print(light, 'pyrunsc.api' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.split() == ["True", "True"]


def test_run_captures_output_and_exit_status(sb):
    p = sb.run([BUSYBOX, "sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True)
    assert (p.returncode, p.stdout, p.stderr) == (3, b"out\n", b"err\n")
    assert p.args == [BUSYBOX, "sh", "-c", "echo out; echo err >&2; exit 3"]
    p = sb.run([BUSYBOX, "sh", "-c", "echo both; echo two >&2"], stdout=pyrunsc.PIPE, stderr=pyrunsc.STDOUT,
               text=True)
    assert p.stdout == "both\ntwo\n" and p.stderr is None


def test_run_input_larger_than_pipes_without_deadlock(sb):
    """A guest that reads everything before writing, and writes more than
    a pipe holds: input is fed and output drained by helper threads."""
    data = os.urandom(1 << 20)
    p = sb.run([BUSYBOX, "sh", "-c", "cat > /tmp/in; cat /tmp/in /tmp/in; wc -c < /tmp/in >&2"],
               input=data, capture_output=True, timeout=60)
    assert p.returncode == 0
    assert p.stdout == data + data
    assert p.stderr.strip() == str(len(data)).encode()
    # a guest that never reads its input: the feeder gets EPIPE, nothing hangs
    p = sb.run([BUSYBOX, "true"], input=data, timeout=60)
    assert p.returncode == 0


def test_run_env_cwd_and_stdio_files(sb, scratch):
    target = os.path.join(scratch, "out.txt")
    with open(target, "wb") as f:
        p = sb.run([BUSYBOX, "sh", "-c", "echo $GREETING; pwd"], env={"GREETING": "hello"}, cwd="/proc",
                   stdout=f, stderr=pyrunsc.DEVNULL)
    assert p.returncode == 0 and p.stdout is None
    assert open(target, "rb").read() == b"hello\n/proc\n"


def test_timeout_kills_the_guest_and_returns(sb):
    for script in ("sleep 30", "while :; do :; done"):   # parked in a call / spinning without calls
        start = time.monotonic()
        with pytest.raises(pyrunsc.TimeoutExpired) as e:
            sb.run([BUSYBOX, "sh", "-c", f"echo started; {script}"], capture_output=True, timeout=1)
        assert time.monotonic() - start < 20
        assert e.value.timeout == 1 and e.value.output == b"started\n"
    # the Sandbox works on after a timeout
    assert sb.run([BUSYBOX, "echo", "again"], capture_output=True).stdout == b"again\n"


def test_check_and_missing_programs(sb):
    with pytest.raises(pyrunsc.CalledProcessError) as e:
        sb.run([BUSYBOX, "false"], check=True)
    assert e.value.returncode == 1
    with pytest.raises(FileNotFoundError, match="no-such-program"):
        sb.run(["no-such-program"])
    with pytest.raises(ValueError, match="stdin and input"):
        sb.run([BUSYBOX, "true"], input=b"", stdin=pyrunsc.DEVNULL)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown platform"):
        pyrunsc.Sandbox(platform="kvm")
    with pytest.raises(ValueError, match="network"):
        pyrunsc.Sandbox(network="bridge")
    with pytest.raises(ValueError, match="HOST:GUEST"):
        pyrunsc.Sandbox(mounts=["/var/tmp"])
    with pytest.raises(ValueError, match="K=V"):
        pyrunsc.Sandbox(env=["NOEQUALS"])


def test_mounts_and_tmpfs(clean_host, scratch):
    with open(os.path.join(scratch, "f"), "wb") as f:
        f.write(b"from the host\n")
    with pyrunsc.Sandbox(mounts=[(scratch, "/data")], tmpfs=["/scratch:size=1m"]) as box:
        p = box.run([BUSYBOX, "sh", "-c", "cat /data/f; echo x > /data/g; echo rc=$?; df -k /scratch | tail -1"],
                    capture_output=True, text=True)
    lines = p.stdout.splitlines()
    assert lines[0] == "from the host" and lines[1] != "rc=0"   # a read-only bind by default
    assert lines[2].split()[1] == "1024"
    assert not os.path.exists(os.path.join(scratch, "g"))


def test_spawn_streams_and_waits(sb):
    proc = sb.spawn([BUSYBOX, "sh", "-c", "echo ready; read line; echo got $line; exit 4"],
                    stdin=pyrunsc.PIPE, stdout=pyrunsc.PIPE)
    assert proc.pid == 1
    assert proc.stdout.readline() == b"ready\n"   # while the sandbox runs on
    assert proc.poll() is None
    proc.stdin.write(b"hello\n")
    proc.stdin.close()
    assert proc.stdout.read() == b"got hello\n"
    assert proc.wait(30) == 4 and proc.returncode == 4
    proc.stdout.close()


def test_spawn_kill_and_wait_timeout(sb):
    proc = sb.spawn([BUSYBOX, "sleep", "60"])
    with pytest.raises(pyrunsc.TimeoutExpired):
        proc.wait(0.2)
    proc.kill()
    assert proc.wait(30) == -9
    # one left running is killed when the Sandbox's context ends (clean_host checks it)
    sb.spawn([BUSYBOX, "sleep", "60"])


def test_run_from_another_thread(clean_host):
    """A thread that is not the main one may run sandboxes too (nothing it
    cannot undo is changed: no signal handler is installed there)."""
    got = []
    with pyrunsc.Sandbox(cwd="/") as box:
        th = threading.Thread(target=lambda: got.append(box.run([BUSYBOX, "echo", "threaded"],
                                                                capture_output=True, timeout=60)))
        th.start()
        th.join(120)
    assert [p.stdout for p in got] == [b"threaded\n"]


def test_a_program_that_cannot_load_is_an_oserror(clean_host, scratch):
    bad = os.path.join(scratch, "bad")
    with open(bad, "wb") as f:
        f.write(b"\x7fELF not really")
    os.chmod(bad, 0o755)
    with pyrunsc.Sandbox(mounts=[f"{scratch}:/bad"]) as box:
        for start in (box.run, box.spawn):
            with pytest.raises(OSError) as e:
                start(["/bad/bad"])
            assert e.value.errno == errno.ENOEXEC
