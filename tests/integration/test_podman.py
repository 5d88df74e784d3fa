"""Podman (4.3, conmon, no daemon) runs containers with the OCI runtime under
test (pyrunsc by default, PYRUNSC_TEST_OCI_RUNTIME=runc checks the tests).

Storage (vfs), run root and tmp dir live in one fresh directory; podman
passes the runtime no --root, so the runtime keeps its state in its default
root. The last test checks nothing is left once the containers are gone.
"""
import os
import shutil
import time
import uuid

import pytest

from container_engines import (IMAGE, PODMAN_ULIMITS, Podman, describe, mounts_under,
                               processes_mentioning, runtime_path, runtime_under_test,
                               shim_of, wait_gone, with_descendants)

RUNTIME = runtime_under_test()
SEEN = []  # host processes seen under conmon; all must be gone at the end


@pytest.fixture(scope="module")
def podman():
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman or conmon is not installed")
    if os.geteuid() != 0:
        pytest.skip("the tests run podman as root")
    path = runtime_path(RUNTIME)
    if path is None:
        pytest.fail(f"OCI runtime {RUNTIME!r} not found")
    p = Podman(path)
    try:
        p.import_image()
        p.baseline_mounts = set(mounts_under(p.dir))
        yield p
    finally:
        p.close()
    assert not os.path.exists(p.dir)
    assert processes_mentioning(p.dir) == [], describe(processes_mentioning(p.dir))


def run(podman, *args, **kw):
    return podman.cmd("run", "--network=none", *PODMAN_ULIMITS, *args, **kw)


def remember_processes(cid):
    conmon = shim_of(cid)
    assert conmon is not None, f"no conmon serves {cid}"
    procs = [p for p in with_descendants([conmon]) if p.pid != conmon.pid]
    SEEN.extend(procs)
    return procs


def inspect(podman, cid, fmt):
    return podman.cmd("inspect", "-f", fmt, cid, check=True).stdout.strip()


def start_detached(podman, *cmd):
    """`run -d`, named so that a container whose start failed is removed too."""
    name = "pyrunsc-test-" + uuid.uuid4().hex[:12]
    r = run(podman, "-d", "--name", name, IMAGE, *cmd)
    if r.returncode != 0:
        podman.cmd("rm", "-f", "-t", "0", name)
    assert r.returncode == 0, r
    return podman.note(r.stdout)


def test_run_echo(podman):
    r = run(podman, "--rm", IMAGE, "echo", "hi")
    assert r.returncode == 0, r
    assert r.stdout == "hi\n"


def test_run_stdin_pipe(podman):
    r = run(podman, "--rm", "-i", IMAGE, "cat", input="piped through\n")
    assert r.returncode == 0, r
    assert r.stdout == "piped through\n"


@pytest.mark.parametrize("cmd,status", [
    (["sh", "-c", "exit 3"], 3),
    (["no-such-command"], 127),  # podman maps "executable file not found" to 127
], ids=["exit3", "missing-command"])
def test_exit_status(podman, cmd, status):
    r = run(podman, "--rm", IMAGE, *cmd)
    assert r.returncode == status, r


def test_run_tty(podman):
    r = run(podman, "--rm", "-t", IMAGE, "sh", "-c", "test -t 0 && test -t 1 && echo tty")
    assert r.returncode == 0, r
    assert r.stdout == "tty\r\n"


class TestRunningContainer:
    @pytest.fixture(scope="class")
    def sleeper(self, podman):
        cid = start_detached(podman, "sleep", "1000")
        try:
            assert inspect(podman, cid, "{{.State.Running}}") == "true"
            remember_processes(cid)
            yield cid
        finally:
            podman.cmd("rm", "-f", "-t", "0", cid)

    def test_exec(self, podman, sleeper):
        r = podman.cmd("exec", sleeper, "echo", "x")
        assert r.returncode == 0, r
        assert r.stdout == "x\n"

    def test_exec_status(self, podman, sleeper):
        assert podman.cmd("exec", sleeper, "sh", "-c", "exit 5").returncode == 5

    def test_exec_stdin(self, podman, sleeper):
        r = podman.cmd("exec", "-i", sleeper, "cat", input="into exec\n")
        assert r.returncode == 0, r
        assert r.stdout == "into exec\n"

    def test_exec_tty(self, podman, sleeper):
        r = podman.cmd("exec", "-t", sleeper, "sh", "-c", "test -t 0 && echo tty")
        assert r.returncode == 0, r
        assert r.stdout == "tty\r\n"


def test_stop_init_without_handler(podman):
    cid = start_detached(podman, "sleep", "1000")
    try:
        procs = remember_processes(cid)
        t0 = time.monotonic()
        r = podman.cmd("stop", "-t", "3", cid)
        assert r.returncode == 0, r
        assert time.monotonic() - t0 < 30  # bounds a hang only
        assert inspect(podman, cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
        assert wait_gone(procs) == [], describe(procs)
        assert podman.cmd("rm", cid).returncode == 0
        assert cid not in podman.cmd("ps", "-aq", "--no-trunc").stdout
    finally:
        podman.cmd("rm", "-f", "-t", "0", cid)


def test_stop_init_with_handler(podman):
    cid = start_detached(podman, "sh", "-c", 'trap "exit 7" TERM; echo ready; while :; do sleep 1; done')
    try:
        remember_processes(cid)
        deadline = time.monotonic() + 60
        while "ready" not in podman.cmd("logs", cid).stdout:
            assert time.monotonic() < deadline, "the trap was never set"
            time.sleep(0.2)
        t0 = time.monotonic()
        r = podman.cmd("stop", "-t", "20", cid)
        assert r.returncode == 0, r
        assert time.monotonic() - t0 < 30  # bounds a hang only
        assert inspect(podman, cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 7"
        assert podman.cmd("rm", cid).returncode == 0
    finally:
        podman.cmd("rm", "-f", "-t", "0", cid)


def test_nothing_left_behind(podman):
    r = podman.cmd("ps", "-aq")
    assert r.stdout.split() == [], r
    assert wait_gone(SEEN) == [], describe(SEEN)
    deadline = time.monotonic() + 20
    while True:
        stray = with_descendants(processes_mentioning(podman.dir))
        if not stray or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert stray == [], describe(stray)
    default_root = os.path.join("/run", RUNTIME)
    if os.path.isdir(default_root):
        assert not set(os.listdir(default_root)) & set(podman.containers), os.listdir(default_root)
    assert set(mounts_under(podman.dir)) <= podman.baseline_mounts
