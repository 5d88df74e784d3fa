"""pyrunsc as an OCI runtime, driven directly with runc's command line
(no Docker): a busybox bundle, the container lifecycle, exec, ps, pause,
bad bundles, and nothing left behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psutil
import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ("sh", "echo", "sleep", "true", "false", "cat", "ps", "ls", "id", "hostname", "env", "mount",
           "grep", "test", "kill", "wc", "head", "tty", "stty")

pytestmark = pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")


def pyrunsc(*args, root, check=True, timeout=60, **kw):
    p = subprocess.run(["pyrunsc", "--root", root, *args], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"pyrunsc {' '.join(args)}: {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def rootfs():
    d = tempfile.mkdtemp(prefix="pyrunsc-oci-rootfs-", dir="/var/tmp")
    os.makedirs(f"{d}/bin")
    shutil.copy(BUSYBOX, f"{d}/bin/busybox")
    for a in APPLETS:
        os.symlink("busybox", f"{d}/bin/{a}")
    for sub in ("proc", "dev", "sys", "tmp", "etc", "root"):
        os.makedirs(f"{d}/{sub}")
    with open(f"{d}/etc/passwd", "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def env(rootfs):
    """A runtime root and a bundle whose config.json `pyrunsc spec` wrote."""
    base = tempfile.mkdtemp(prefix="pyrunsc-oci-", dir="/var/tmp")
    root, bundle = f"{base}/state", f"{base}/bundle"
    os.makedirs(bundle)
    os.symlink(rootfs, f"{bundle}/rootfs")
    pyrunsc("spec", "--bundle", bundle, root=root)
    yield root, bundle
    for cid in os.listdir(root) if os.path.isdir(root) else ():
        pyrunsc("delete", "--force", cid, root=root, check=False)
    shutil.rmtree(base, ignore_errors=True)


def set_process(bundle, args, terminal=False, **extra):
    path = f"{bundle}/config.json"
    with open(path) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = args
    cfg["process"]["terminal"] = terminal
    cfg["process"].update(extra.pop("process", {}))
    cfg.update(extra)
    with open(path, "w") as f:
        json.dump(cfg, f)


def sandbox_pids(root):
    """Host processes that belong to sandboxes under root: the sandbox
    processes (their state dirs) and everything below them."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(root in a for a in p.info["cmdline"] or ()):
                found.append(p.pid)
        except psutil.Error:
            pass
    return found


def create(root, bundle, cid):
    """create with files as stdio (the container keeps them: its stdio)."""
    out, err = f"{bundle}/{cid}.out", f"{bundle}/{cid}.err"
    with open(out, "w") as f, open(err, "w") as e:
        p = subprocess.run(["pyrunsc", "--root", root, "create", "--bundle", bundle,
                            "--pid-file", f"{bundle}/{cid}.pid", cid],
                           stdin=subprocess.DEVNULL, stdout=f, stderr=e, timeout=60)
    p.stderr = open(err).read()
    return p, out


def state(root, cid):
    return json.loads(pyrunsc("state", cid, root=root).stdout)


def wait_status(root, cid, status, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(root, cid)["status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{cid} never became {status}: {state(root, cid)}")


def test_lifecycle(env):
    root, bundle = env
    set_process(bundle, ["sh", "-c", "echo started $$; hostname; exec sleep 1000"], hostname="box1")
    p, out = create(root, bundle, "c1")
    assert p.returncode == 0, p.stderr
    pid = int(open(f"{bundle}/c1.pid").read())
    st = state(root, "c1")
    assert st["status"] == "created" and st["pid"] == pid and st["id"] == "c1"
    assert st["bundle"] == bundle and st["ociVersion"].startswith("1.")
    assert open(out).read() == ""  # created: init has not run
    pyrunsc("start", "c1", root=root)
    wait_status(root, "c1", "running")
    deadline = time.monotonic() + 10
    while "box1" not in open(out).read() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open(out).read() == "started 1\nbox1\n"  # init is pid 1 inside, with the bundle's hostname
    pids = json.loads(pyrunsc("ps", "--format", "json", "c1", root=root).stdout)
    assert len(pids) == 1 and psutil.Process(pids[0]).ppid() == pid  # a host pid, the sentry's child
    table = pyrunsc("ps", "c1", root=root).stdout.splitlines()
    assert table[0].split()[:2] == ["UID", "PID"] and len(table) == 2
    listed = json.loads(pyrunsc("list", "--format", "json", root=root).stdout)
    assert [(c["id"], c["status"]) for c in listed] == [("c1", "running")]
    pyrunsc("pause", "c1", root=root)
    assert state(root, "c1")["status"] == "paused"
    pyrunsc("resume", "c1", root=root)
    assert state(root, "c1")["status"] == "running"
    # SIGTERM: init has no handler, so it is ignored (pid-namespace init)
    pyrunsc("kill", "c1", "TERM", root=root)
    time.sleep(0.5)
    assert state(root, "c1")["status"] == "running"
    d = pyrunsc("delete", "c1", root=root, check=False)
    assert d.returncode == 1 and "not stopped" in d.stderr
    pyrunsc("kill", "c1", "KILL", root=root)
    wait_status(root, "c1", "stopped")
    k = pyrunsc("kill", "c1", "KILL", root=root, check=False)
    assert k.returncode == 1 and "container not running" in k.stderr
    pyrunsc("delete", "c1", root=root)
    assert not os.path.exists(f"{root}/c1")
    s = pyrunsc("state", "c1", root=root, check=False)
    assert s.returncode == 1 and "container does not exist" in s.stderr
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_run_exit_status_and_spec(env):
    root, bundle = env
    set_process(bundle, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    p = subprocess.run(["pyrunsc", "--root", root, "run", "--bundle", bundle, "r1"], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (p.returncode, p.stdout) == (3, "out\n") and "err\n" in p.stderr
    assert not os.path.exists(f"{root}/r1")  # run removes it


def test_run_with_terminal(env):
    """The default spec has terminal: true: run relays a pty of its own."""
    root, bundle = env
    set_process(bundle, ["sh", "-c", "tty; test -t 0 && echo is-a-tty"], terminal=True)
    p = subprocess.run(["pyrunsc", "--root", root, "run", "--bundle", bundle, "t1"], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert p.stdout.replace(b"\r\n", b"\n") == b"/dev/pts/0\nis-a-tty\n"


def test_exec_and_wait(env):
    root, bundle = env
    set_process(bundle, ["sleep", "1000"])
    assert create(root, bundle, "e1")[0].returncode == 0
    pyrunsc("start", "e1", root=root)
    p = pyrunsc("exec", "e1", "sh", "-c", "echo in $$; ps -o pid,comm | wc -l; exit 5", root=root, check=False)
    assert p.returncode == 5 and p.stdout.startswith("in 2\n"), p
    # detached: a waiter process relays the exit status and stays until then
    proc = f"{bundle}/proc.json"
    with open(proc, "w") as f:
        json.dump({"args": ["sh", "-c", "sleep 0.3; exit 4"], "cwd": "/", "env": ["PATH=/bin"]}, f)
    pyrunsc("exec", "--process", proc, "--detach", "--pid-file", f"{bundle}/exec.pid", "e1", root=root)
    waiter = int(open(f"{bundle}/exec.pid").read())
    assert psutil.pid_exists(waiter)
    pyrunsc("kill", "e1", "KILL", root=root)
    w = pyrunsc("wait", "e1", root=root, check=False)
    assert w.returncode == 137 and json.loads(w.stdout)["exitStatus"] == 137
    pyrunsc("delete", "e1", root=root)


def test_exec_signal_reaches_process(env):
    root, bundle = env
    set_process(bundle, ["sleep", "1000"])
    assert create(root, bundle, "s1")[0].returncode == 0
    pyrunsc("start", "s1", root=root)
    pidfile = f"{bundle}/exec.pid"
    proc = f"{bundle}/proc.json"
    with open(proc, "w") as f:
        json.dump({"args": ["sleep", "1000"], "cwd": "/"}, f)
    # the process keeps exec's stdio: no pipes the test would wait on
    subprocess.run(["pyrunsc", "--root", root, "exec", "--process", proc, "--detach", "--pid-file", pidfile, "s1"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=True)
    waiter = psutil.Process(int(open(pidfile).read()))
    assert len(json.loads(pyrunsc("ps", "--format", "json", "s1", root=root).stdout)) == 2
    os.kill(waiter.pid, signal.SIGTERM)  # what containerd does to an exec's pid
    waiter.wait(10) if waiter.ppid() == os.getpid() else None
    deadline = time.monotonic() + 10
    while len(json.loads(pyrunsc("ps", "--format", "json", "s1", root=root).stdout)) != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pyrunsc("delete", "--force", "s1", root=root)


def test_console_socket(env):
    """terminal: true sends the pty master over --console-socket (SCM_RIGHTS)."""
    root, bundle = env
    set_process(bundle, ["sh", "-c", "test -t 0 && echo tty-ok; read line; echo got:$line"], terminal=True)
    sock_path = f"{bundle}/console.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    p = subprocess.Popen(["pyrunsc", "--root", root, "create", "--bundle", bundle, "--console-socket",
                          sock_path, "cs1"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    srv.settimeout(30)
    conn, _ = srv.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    conn.close()
    srv.close()
    assert p.wait(60) == 0, p.stderr.read()
    master = fds[0]
    pyrunsc("start", "cs1", root=root)
    os.write(master, b"hello\n")
    data = b""
    deadline = time.monotonic() + 20
    while b"got:hello" not in data and time.monotonic() < deadline:
        try:
            data += os.read(master, 1024)
        except OSError:
            break
    os.close(master)
    assert b"tty-ok" in data and b"got:hello" in data, data
    pyrunsc("delete", "--force", "cs1", root=root)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: os.unlink(f"{b}/config.json"), "config.json"),
    (lambda b: open(f"{b}/config.json", "w").write("{not json"), "config.json"),
    (lambda b: _edit(b, ociVersion="2.0.0"), "ociVersion"),
    (lambda b: _edit(b, root={"path": "../../etc"}), "root"),
])
def test_bad_bundle_leaves_nothing(env, mutate, message):
    root, bundle = env
    mutate(bundle)
    log = f"{bundle}/log.json"
    p = subprocess.run(["pyrunsc", "--root", root, "--log", log, "--log-format", "json", "create",
                        "--bundle", bundle, "--pid-file", f"{bundle}/bad.pid", "bad"], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 1
    assert len(p.stderr.strip().splitlines()) == 1 and message in p.stderr
    entry = json.loads(open(log).read().splitlines()[-1])
    assert entry["level"] == "error" and message in entry["msg"] and entry["time"]
    assert not os.path.exists(f"{bundle}/bad.pid") and not os.path.exists(f"{root}/bad")
    assert sandbox_pids(root) == []


def test_failed_create_leaves_nothing(env):
    """A missing program fails create with runc's wording (Docker maps it
    to 127) and leaves no sandbox, gofer or state behind."""
    root, bundle = env
    set_process(bundle, ["no-such-program"])
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    p, _ = create(root, bundle, "m1")
    assert p.returncode == 1 and 'exec: "no-such-program": executable file not found in $PATH' in p.stderr
    assert not os.path.exists(f"{root}/m1")
    time.sleep(0.2)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_unknown_container(env):
    root, _ = env
    for cmd in (["state", "nope"], ["start", "nope"], ["kill", "nope", "KILL"], ["delete", "nope"]):
        p = pyrunsc(*cmd, root=root, check=False)
        assert p.returncode == 1 and "container does not exist" in p.stderr, (cmd, p.stderr)


def _edit(bundle, **keys):
    with open(f"{bundle}/config.json") as f:
        cfg = json.load(f)
    cfg.update(keys)
    with open(f"{bundle}/config.json", "w") as f:
        json.dump(cfg, f)


def test_hooks(env):
    """Each hook kind runs at its point with the state on stdin; a failing
    create-time hook fails create and leaves nothing."""
    root, bundle = env
    log = f"{bundle}/hooks.log"
    script = f"{bundle}/hook.sh"
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\n{{ echo \"$1 $(cat)\"; }} >> {log}\n")
    os.chmod(script, 0o755)
    hooks = {kind: [{"path": script, "args": ["hook.sh", kind]}]
             for kind in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                          "poststop")}
    set_process(bundle, ["sleep", "1000"], hooks=hooks)
    assert create(root, bundle, "h1")[0].returncode == 0
    pid = int(open(f"{bundle}/h1.pid").read())
    seen = [line.split(" ", 1) for line in open(log).read().splitlines()]
    assert [k for k, _ in seen] == ["prestart", "createRuntime", "createContainer"]
    for _, text in seen:
        st = json.loads(text)
        assert (st["id"], st["pid"], st["bundle"]) == ("h1", pid, bundle)
    pyrunsc("start", "h1", root=root)
    pyrunsc("delete", "--force", "h1", root=root)
    kinds = [line.split(" ", 1)[0] for line in open(log).read().splitlines()]
    assert kinds == ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
    assert json.loads(open(log).read().splitlines()[-1].split(" ", 1)[1])["status"] == "stopped"

    hooks["createRuntime"] = [{"path": "/bin/false"}]
    set_process(bundle, ["sleep", "1000"], hooks=hooks)
    p, _ = create(root, bundle, "h2")
    assert p.returncode == 1 and "createRuntime hook /bin/false exited with status 1" in p.stderr
    assert not os.path.exists(f"{root}/h2") and sandbox_pids(root) == []


def test_failed_start_leaves_nothing_running(env):
    root, bundle = env
    set_process(bundle, ["sleep", "1000"], hooks={"startContainer": [{"path": "/bin/false"}]})
    assert create(root, bundle, "f1")[0].returncode == 0
    pid = int(open(f"{bundle}/f1.pid").read())
    p = pyrunsc("start", "f1", root=root, check=False)
    assert p.returncode == 1 and "startContainer hook /bin/false exited with status 1" in p.stderr
    assert state(root, "f1")["status"] == "stopped"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    pyrunsc("delete", "f1", root=root)


def test_sandbox_flags_and_events(env):
    """Global flags change the sandbox (as daemon.json runtimeArgs do);
    events --stats reports the sandbox's processes and syscalls."""
    root, bundle = env
    debug = f"{bundle}/debug.log"
    set_process(bundle, ["sleep", "1000"])
    with open(f"{bundle}/out", "w") as f:
        p = subprocess.run(["pyrunsc", "--root", root, "--strace", f"--debug-log={debug}", "--network", "none",
                            "create", "--bundle", bundle, "g1"], stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                           timeout=60)
    assert p.returncode == 0
    pyrunsc("start", "g1", root=root)
    ev = json.loads(pyrunsc("events", "--stats", "g1", root=root).stdout)
    assert ev["type"] == "stats" and ev["id"] == "g1"
    assert ev["data"]["pids"]["current"] == 1 and ev["data"]["syscalls"] > 0
    deadline = time.monotonic() + 10
    while "clock_nanosleep" not in open(debug).read():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pyrunsc("delete", "--force", "g1", root=root)
    bad = pyrunsc("--network", "bogus", "create", "--bundle", bundle, "g2", root=root, check=False)
    assert bad.returncode == 1 and "--network" in bad.stderr and not os.path.exists(f"{root}/g2")


def test_ps_tree_and_event_counters(env):
    """ps --format tree draws the sandbox's own processes under their
    parents; events --stats counts tasks and syscalls by name."""
    root, bundle = env
    set_process(bundle, ["sh", "-c", "sleep 1000 & sleep 1001 & wait"])
    with open(f"{bundle}/out", "w") as f:   # the sandbox keeps create's stdio: not a pipe we wait on
        p = subprocess.run(["pyrunsc", "--root", root, "create", "--bundle", bundle, "t1"],
                           stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=60)
    assert p.returncode == 0, open(f"{bundle}/out").read()
    pyrunsc("start", "t1", root=root)
    try:
        deadline = time.monotonic() + 20
        while True:
            tree = pyrunsc("ps", "--format", "tree", "t1", root=root).stdout
            if tree.count("\\_ sleep") == 2:
                break
            assert time.monotonic() < deadline, tree
            time.sleep(0.05)
        lines = tree.splitlines()
        assert lines[0].split() == ["PID", "PPID", "HOST", "PID", "THR", "S", "COMMAND"]
        rows = [line.split(None, 5) for line in lines[1:]]
        assert rows[0][:2] == ["1", "0"] and rows[0][5] == "sh -c sleep 1000 & sleep 1001 & wait"
        children = [r for r in rows[1:]]
        assert sorted(r[5] for r in children) == ["\\_ sleep 1000", "\\_ sleep 1001"]
        assert all(r[1] == "1" for r in children)
        host_pids = json.loads(pyrunsc("ps", "--format", "json", "t1", root=root).stdout)
        assert sorted(int(r[2]) for r in rows) == sorted(host_pids)
        data = json.loads(pyrunsc("events", "--stats", "t1", root=root).stdout)["data"]
        assert data["tasks"] == {"processes": 3, "threads": 3}
        counts = data["syscall_counts"]
        assert counts["clone"] >= 2 and counts["execve"] >= 2 and counts.get("wait4", 0) >= 1
        assert data["syscalls"] >= sum(counts.values())
    finally:
        pyrunsc("delete", "--force", "t1", root=root)
