"""Docker runs containers with the OCI runtime under test (pyrunsc by default,
PYRUNSC_TEST_OCI_RUNTIME=runc checks the tests against runc).

One dockerd (docker.io 20.10, started here with its own roots, no systemd)
and one imported busybox image serve the whole module; the last test checks
that nothing the runtime started or created is left once the containers are
gone, and the fixture checks that stopping dockerd leaves nothing either.
"""
import json
import os
import shutil
import subprocess
import time
import uuid

import psutil
import pytest

from container_engines import (DOCKER_CLIENT, IMAGE, DockerDaemon, describe, mounts_under,
                               processes_mentioning, runtime_path, runtime_under_test,
                               shim_of, wait_gone, with_descendants)

RUNTIME = runtime_under_test()
# Host processes seen serving containers (shim descendants); all must be gone
# at the end.
SEEN = []


@pytest.fixture(scope="module")
def docker():
    if shutil.which("dockerd") is None or not os.path.exists(DOCKER_CLIENT):
        pytest.skip("dockerd or /usr/bin/docker is not installed (Debian's docker.io)")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    if RUNTIME != "runc" and runtime_path(RUNTIME) is None:
        pytest.fail(f"OCI runtime {RUNTIME!r} not found")
    d = DockerDaemon().start()
    try:
        d.import_image()
        d.baseline_mounts = set(mounts_under(d.dir))
        yield d
    finally:
        daemons = d.daemon_processes()
        d.close()
    assert not os.path.exists(d.dir)
    assert wait_gone(daemons) == [], describe(daemons)
    assert processes_mentioning(d.dir) == [], describe(processes_mentioning(d.dir))
    assert mounts_under(d.dir) == []


def run(docker, *args, **kw):
    """docker run with the runtime under test and no network."""
    return docker.cmd("run", "--runtime", RUNTIME, "--network=none", *args, **kw)


def remember_processes(cid):
    """Note the shim's descendants (runtime, sandbox, gofers, guests) for the
    final check, and return them."""
    shim = shim_of(cid)
    assert shim is not None, f"no containerd shim serves {cid}"
    procs = [p for p in with_descendants([shim]) if p.pid != shim.pid]
    SEEN.extend(procs)
    return shim, procs


def inspect(docker, cid, fmt):
    r = docker.cmd("inspect", "-f", fmt, cid, check=True)
    return r.stdout.strip()


def start_detached(docker, *cmd):
    """`run -d`, named so that a container whose start failed is removed too."""
    name = "pyrunsc-test-" + uuid.uuid4().hex[:12]
    r = run(docker, "-d", "--name", name, IMAGE, *cmd)
    if r.returncode != 0:
        docker.cmd("rm", "-f", name)
    assert r.returncode == 0, r
    return docker.note(r.stdout)


def wait_for_log(docker, cid, text, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = docker.cmd("logs", cid)
        if text in r.stdout:
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in the logs of {cid}: {r!r}")


def test_run_echo(docker):
    r = run(docker, "--rm", IMAGE, "echo", "hi")
    assert r.returncode == 0, r
    assert r.stdout == "hi\n"


def test_run_stdin_pipe(docker):
    r = run(docker, "--rm", "-i", IMAGE, "cat", input="piped through\n")
    assert r.returncode == 0, r
    assert r.stdout == "piped through\n"


# Expected values are Linux's (runc shows the same): the container's init
# ignores signals it has no handler for, even SIGKILL, when they come from
# inside its own pid namespace; a child killed by SIGKILL reports 137.
@pytest.mark.parametrize("cmd,status,out", [
    (["sh", "-c", "exit 3"], 3, ""),
    (["sh", "-c", "kill -9 $$; echo survived"], 0, "survived\n"),
    (["sh", "-c", "sh -c 'kill -9 $$'; echo child=$?"], 0, "child=137\n"),
], ids=["exit3", "init-ignores-own-sigkill", "child-sigkill"])
def test_exit_status(docker, cmd, status, out):
    r = run(docker, "--rm", IMAGE, *cmd)
    assert r.returncode == status, r
    assert r.stdout == out


def test_missing_command_is_127(docker):
    # The docker client maps "executable file not found" / "no such file or
    # directory" in the runtime's create error to 127.
    r = run(docker, "--rm", IMAGE, "no-such-command")
    assert r.returncode == 127, r
    assert "no-such-command" in r.stderr


def test_run_tty(docker):
    r = run(docker, "--rm", "-t", IMAGE, "sh", "-c", "test -t 0 && test -t 1 && echo tty")
    assert r.returncode == 0, r
    assert r.stdout == "tty\r\n"


class TestRunningContainer:
    """exec, exec -t and top against one `docker run -d ... sleep 1000`."""

    @pytest.fixture(scope="class")
    def sleeper(self, docker):
        cid = start_detached(docker, "sleep", "1000")
        try:
            assert inspect(docker, cid, "{{.State.Running}}") == "true"
            remember_processes(cid)
            yield cid
        finally:
            docker.cmd("rm", "-f", cid)

    def test_exec(self, docker, sleeper):
        r = docker.cmd("exec", sleeper, "echo", "x")
        assert r.returncode == 0, r
        assert r.stdout == "x\n"

    def test_exec_status(self, docker, sleeper):
        r = docker.cmd("exec", sleeper, "sh", "-c", "exit 5")
        assert r.returncode == 5, r

    def test_exec_stdin(self, docker, sleeper):
        r = docker.cmd("exec", "-i", sleeper, "cat", input="into exec\n")
        assert r.returncode == 0, r
        assert r.stdout == "into exec\n"

    def test_exec_tty(self, docker, sleeper):
        r = docker.cmd("exec", "-t", sleeper, "sh", "-c", "test -t 0 && echo tty")
        assert r.returncode == 0, r
        assert r.stdout == "tty\r\n"

    def test_top(self, docker, sleeper):
        rows = top_pids(docker, sleeper)
        assert len(rows) == 1, rows
        assert rows == runtime_ps(docker, sleeper)
        # A second process started by exec shows up too, as host pids of
        # this container's own processes: under its shim, none of them a gofer.
        r = docker.cmd("exec", "-d", sleeper, "sleep", "999")
        assert r.returncode == 0, r
        deadline = time.monotonic() + 30
        while len(rows) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = top_pids(docker, sleeper)
        assert len(rows) == 2, rows
        assert rows == runtime_ps(docker, sleeper)
        shim, _ = remember_processes(sleeper)
        served = {p.pid for p in with_descendants([shim])} - {shim.pid}
        assert set(rows) <= served, (rows, describe(with_descendants([shim])))
        for pid in rows:
            assert "gofer" not in " ".join(psutil.Process(pid).cmdline())


def top_pids(docker, cid):
    r = docker.cmd("top", cid)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines and lines[0].split()[:2] == ["UID", "PID"], r
    return sorted(int(line.split()[1]) for line in lines[1:])


def runtime_ps(docker, cid):
    """What the runtime itself reports (`ps --format json`, as containerd asks)."""
    path = runtime_path(RUNTIME)
    cp = subprocess.run([path, "--root", docker.runtime_root, "ps", "--format", "json", cid],
                        capture_output=True, timeout=60)
    assert cp.returncode == 0, cp
    return sorted(json.loads(cp.stdout))


def test_stop_init_without_handler(docker):
    """SIGTERM is ignored by an init with no handler: docker stop waits out
    the grace period, then SIGKILL: 137."""
    cid = start_detached(docker, "sleep", "1000")
    try:
        _, procs = remember_processes(cid)
        t0 = time.monotonic()
        r = docker.cmd("stop", "-t", "3", cid)
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r
        assert elapsed < 30, f"docker stop -t 3 took {elapsed:.1f}s"  # bounds a hang only
        assert inspect(docker, cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
        assert wait_gone(procs) == [], describe(procs)
        r = docker.cmd("rm", cid)
        assert r.returncode == 0, r
        assert cid not in docker.cmd("ps", "-aq", "--no-trunc").stdout
    finally:
        docker.cmd("rm", "-f", cid)


def test_stop_init_with_handler(docker):
    """An init that traps SIGTERM decides its own exit status."""
    cid = start_detached(docker, "sh", "-c", 'trap "exit 7" TERM; echo ready; while :; do sleep 1; done')
    try:
        remember_processes(cid)
        wait_for_log(docker, cid, "ready")
        t0 = time.monotonic()
        r = docker.cmd("stop", "-t", "20", cid)
        assert r.returncode == 0, r
        assert time.monotonic() - t0 < 30  # bounds a hang only
        assert inspect(docker, cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 7"
        assert docker.cmd("rm", cid).returncode == 0
    finally:
        docker.cmd("rm", "-f", cid)


def test_nothing_left_behind(docker):
    """Once every container is removed: no runtime, sandbox, gofer or guest
    process, no state in the runtime's root, no new mount."""
    r = docker.cmd("ps", "-aq")
    assert r.stdout.split() == [], r
    assert wait_gone(SEEN) == [], describe(SEEN)
    daemons = {p.pid for p in docker.daemon_processes()}
    deadline = time.monotonic() + 20
    while True:
        stray = [p for p in with_descendants(processes_mentioning(docker.dir)) if p.pid not in daemons]
        if not stray or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert stray == [], describe(stray)
    root = docker.runtime_root
    assert not os.path.isdir(root) or os.listdir(root) == [], os.listdir(root)
    default_root = os.path.join("/run", RUNTIME)
    if os.path.isdir(default_root):
        assert not set(os.listdir(default_root)) & set(docker.containers)
    assert set(mounts_under(docker.dir)) <= docker.baseline_mounts
