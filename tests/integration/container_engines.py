"""Docker and Podman as the tests (and bench/startup.sh) drive them.

Each engine lives in its own fresh /var/tmp/pyrunsc-<engine>-XXXX directory:
dockerd gets its own data root, exec root, pid file, socket and daemon.json
(no systemd here: it is started as a plain process and starts its own
containerd); podman gets its own storage, run root, tmp dir and
containers.conf. `close()` removes every container, stops the daemons by pid,
unmounts what is left under the directory and deletes it.

The OCI runtime under test is named by PYRUNSC_TEST_OCI_RUNTIME (default
"pyrunsc"; "runc" checks the harness and the tests themselves).
"""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import psutil

IMAGE = "pyrunsc-busybox"
DOCKER_CLIENT = "/usr/bin/docker"  # /usr/local/bin/docker is a newer client that 20.10 rejects
BUSYBOX = "/bin/busybox"
BUSYBOX_APPLETS = ("sh", "echo", "sleep", "true", "false", "cat", "ps", "ls", "id",
                   "hostname", "env", "test", "kill", "trap")
RUNSC = "/usr/bin/runsc"
RUNSC_ARGS = ["--platform=ptrace", "--network=none"]
# Podman runs containers with the host's hard limits unless told; this
# host's are above what the runtime may set for an unprivileged init.
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=32768:32768"]
# Left by dockerd/containerd/podman at fixed paths whatever their roots are;
# removed afterwards when they did not exist before.
SYSTEM_DIRS = ("/run/docker", "/run/containerd", "/run/containers", "/run/runc", "/var/lib/containers")
DISPOSABLE_FILES = ("blob-info-cache-v1.boltdb",)


def runtime_under_test():
    return os.environ.get("PYRUNSC_TEST_OCI_RUNTIME", "pyrunsc")


def runtime_path(name):
    """The runtime's executable. pyrunsc is taken beside this Python, not
    from PATH, where a pyenv shim (a shell script needing PYENV_*) may stand."""
    if name == "pyrunsc":
        beside = os.path.join(os.path.dirname(sys.executable), "pyrunsc")
        if os.access(beside, os.X_OK):
            return beside
    found = shutil.which(name)
    return os.path.realpath(found) if found else None


def build_busybox_rootfs(path):
    """A minimal rootfs: static busybox plus links for the applets the tests use."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for applet in BUSYBOX_APPLETS:
        link = os.path.join(path, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")


def rootfs_tar(workdir):
    """The busybox rootfs as a tar stream (bytes), built under workdir."""
    root = os.path.join(workdir, "rootfs")
    build_busybox_rootfs(root)
    return subprocess.run(["tar", "-C", root, "-c", "."], check=True,
                          capture_output=True, timeout=60).stdout


def mounts_under(path):
    """Mount points at or below path, deepest first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].encode().decode("unicode_escape")
            if mnt == path or mnt.startswith(path.rstrip("/") + "/"):
                out.append(mnt)
    return sorted(set(out), key=len, reverse=True)


def unmount_all_under(path):
    for mnt in mounts_under(path):
        subprocess.run(["umount", "-R", mnt], capture_output=True, timeout=30)
    for mnt in mounts_under(path):
        subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=30)


def bound_unix_paths():
    """Paths of the host's bound unix sockets (/proc/net/unix)."""
    with open("/proc/net/unix") as f:
        return {line.split()[7] for line in f.readlines()[1:] if len(line.split()) > 7}


def processes_mentioning(text):
    """Live processes whose command line contains text (not this one)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.pid == os.getpid():
            continue
        cmd = " ".join(p.info["cmdline"] or ())
        if text in cmd:
            found.append(p)
    return found


def describe(procs):
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid}: {' '.join(p.cmdline())[:200]}")
        except psutil.Error:
            pass
    return out


def stop_process(proc, timeout=20):
    """SIGTERM, wait, then SIGKILL one process (a psutil.Process)."""
    try:
        proc.terminate()
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        try:
            proc.kill()
            proc.wait(10)
        except psutil.Error:
            pass
    except psutil.Error:
        pass


def kill_all(procs):
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


def with_descendants(procs):
    out = {}
    for p in procs:
        try:
            out[p.pid] = p
            for c in p.children(recursive=True):
                out[c.pid] = c
        except psutil.Error:
            pass
    return list(out.values())


def decode(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


class Result:
    """A finished engine command: returncode, stdout/stderr as text
    (no newline translation, so a pty's \\r\\n stays visible)."""

    def __init__(self, argv, cp):
        self.argv = argv
        self.returncode = cp.returncode
        self.stdout = decode(cp.stdout)
        self.stderr = decode(cp.stderr)

    def __repr__(self):
        return (f"<{' '.join(self.argv)} -> {self.returncode}\n"
                f"stdout: {self.stdout[-2000:]!r}\nstderr: {self.stderr[-2000:]!r}>")


class _Engine:
    prefix = "pyrunsc-engine-"

    def __init__(self):
        self._system_before = {d for d in SYSTEM_DIRS if os.path.exists(d)}
        self.dir = tempfile.mkdtemp(prefix=self.prefix, dir="/var/tmp")
        os.chmod(self.dir, 0o755)
        self.containers = []  # ids this engine created, for cleanup and checks

    def program(self, path):
        """What the engine is to run for the runtime at path: for pyrunsc,
        the launcher `pyrunsc install` registers (Python without site),
        written by `pyrunsc launcher` into this engine's directory."""
        if os.path.basename(path) != "pyrunsc":
            return path
        launcher = os.path.join(self.dir, "pyrunsc-oci")
        subprocess.run([path, "launcher", launcher], check=True, capture_output=True, timeout=120)
        return launcher

    def base(self):
        raise NotImplementedError

    def env(self):
        return None

    def cmd(self, *args, input=None, timeout=120, check=False):
        argv = self.base() + [str(a) for a in args]
        cp = subprocess.run(argv, input=input.encode() if isinstance(input, str) else input,
                            stdin=None if input is not None else subprocess.DEVNULL,
                            capture_output=True, timeout=timeout, env=self.env())
        r = Result(argv, cp)
        if check and r.returncode != 0:
            raise AssertionError(f"command failed: {r!r}")
        return r

    def import_image(self, workdir=None):
        tar = rootfs_tar(workdir or self.dir)
        self.cmd("import", "-", IMAGE, input=tar, timeout=300, check=True)
        return IMAGE

    def note(self, cid):
        cid = cid.strip()
        self.containers.append(cid)
        return cid

    def remove_all_containers(self):
        r = self.cmd("ps", "-aq", timeout=60)
        ids = r.stdout.split()
        if ids:
            self.cmd("rm", "-f", *ids, timeout=120)

    def _remove_system_dirs(self):
        # Only what we made: empty directories, sockets nobody listens on
        # (of shims we stopped) and the image copier's cache.
        listening = bound_unix_paths()
        for top in SYSTEM_DIRS:
            if top in self._system_before or not os.path.isdir(top):
                continue
            for d, _, files in os.walk(top, topdown=False):
                for f in files:
                    path = os.path.join(d, f)
                    mode = os.lstat(path).st_mode
                    if f in DISPOSABLE_FILES or (stat.S_ISSOCK(mode) and path not in listening):
                        os.unlink(path)
                try:
                    os.rmdir(d)
                except OSError:
                    pass

    def _remove_dir(self):
        # Anything still naming the directory (containerd, shims, conmon, a
        # runtime left behind) holds mounts or files in it.
        kill_all(with_descendants(processes_mentioning(self.dir)))
        unmount_all_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        self._remove_system_dirs()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DockerDaemon(_Engine):
    """dockerd with its own roots; start() returns once the API answers."""
    prefix = "pyrunsc-docker-"

    def __init__(self, runtimes=None, storage_driver=None):
        super().__init__()
        self.data_root = os.path.join(self.dir, "data")
        self.exec_root = os.path.join(self.dir, "exec")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.pidfile = os.path.join(self.dir, "docker.pid")
        self.config = os.path.join(self.dir, "daemon.json")
        self.log = os.path.join(self.dir, "dockerd.log")
        runtimes = runtimes if runtimes is not None else default_docker_runtimes()
        self.runtimes = {name: {**entry, "path": self.program(entry["path"])} for name, entry in runtimes.items()}
        self.storage_driver = storage_driver
        self.proc = None

    # containerd's runc shim keeps every runc-compatible runtime's state
    # here, whatever the runtime is called (measured with docker.io 20.10).
    @property
    def runtime_root(self):
        return os.path.join(self.exec_root, "runtime-runc", "moby")

    def base(self):
        return [DOCKER_CLIENT, "-H", "unix://" + self.sock]

    def env(self):
        env = dict(os.environ)
        env.pop("DOCKER_HOST", None)
        env["DOCKER_CONFIG"] = os.path.join(self.dir, "client")  # no ~/.docker writes
        return env

    def start(self, timeout=90):
        import json
        conf = {"runtimes": self.runtimes, "exec-opts": ["native.cgroupdriver=cgroupfs"]}
        if self.storage_driver:
            conf["storage-driver"] = self.storage_driver
        with open(self.config, "w") as f:
            json.dump(conf, f, indent=1)
        # --ip-forward=false: by default dockerd turns on the host's
        # net.ipv4.ip_forward (for every interface) and leaves it on.
        argv = ["dockerd", "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none",
                "--data-root", self.data_root, "--exec-root", self.exec_root,
                "--pidfile", self.pidfile, "-H", "unix://" + self.sock,
                "--config-file", self.config]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if os.path.exists(self.sock) and self.cmd("version", timeout=20).returncode == 0:
                return self
            time.sleep(0.2)
        tail = self.log_tail()
        self.close()
        raise RuntimeError(f"dockerd did not start:\n{tail}")

    def log_tail(self, n=40):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def daemon_processes(self):
        """dockerd and the containerd it started."""
        out = []
        if self.proc and self.proc.poll() is None:
            p = psutil.Process(self.proc.pid)
            out = [p] + [c for c in p.children() if "containerd" in " ".join(c.cmdline())]
        return out

    def close(self):
        if self.proc is not None:
            try:
                if self.proc.poll() is None:
                    self.remove_all_containers()
            except (subprocess.TimeoutExpired, OSError):
                pass
            containerd = [p for p in self.daemon_processes() if p.pid != self.proc.pid]
            if self.proc.poll() is None:
                stop_process(psutil.Process(self.proc.pid), timeout=30)
            self.proc.wait(5)
            for p in containerd:  # dockerd stops it; this is the fallback
                stop_process(p, timeout=10)
            self.proc = None
        self._remove_dir()


def default_docker_runtimes(extra=()):
    """daemon.json runtimes: pyrunsc, the runtime under test and those named
    in extra (found on PATH), and runsc (ptrace, no network) when installed."""
    runtimes = {}
    for name in ("pyrunsc", runtime_under_test(), *extra):
        if name not in ("runc", "runsc") and runtime_path(name):
            runtimes[name] = {"path": runtime_path(name)}
    if os.path.exists(RUNSC):
        runtimes["runsc"] = {"path": RUNSC, "runtimeArgs": list(RUNSC_ARGS)}
    return runtimes


class Podman(_Engine):
    """podman with its own storage (vfs), run root, tmp dir and containers.conf.
    The runtime gets no --root from podman: it keeps state in its default root."""
    prefix = "pyrunsc-podman-"

    def __init__(self, runtime):
        super().__init__()
        self.runtime = self.program(runtime)
        self.conf = os.path.join(self.dir, "containers.conf")
        with open(self.conf, "w") as f:
            # File locks instead of /dev/shm/libpod_lock; the CNI backend
            # because netavark's run dir is fixed at /run/containers/networks.
            f.write('[engine]\nlock_type = "file"\n'
                    '[network]\nnetwork_backend = "cni"\n'
                    f'network_config_dir = "{self.dir}/netconf"\n')

    def base(self):
        d = self.dir
        return ["podman", "--root", d + "/storage", "--runroot", d + "/run",
                "--tmpdir", d + "/tmp", "--storage-driver", "vfs",
                "--cgroup-manager=cgroupfs", "--events-backend=file",
                "--runtime", self.runtime]

    def env(self):
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = self.conf
        return env

    def close(self):
        try:
            r = self.cmd("ps", "-aq", timeout=60)
            if r.stdout.split():
                self.cmd("rm", "-f", "-t", "0", *r.stdout.split(), timeout=120)
        except (subprocess.TimeoutExpired, OSError):
            pass
        self._remove_dir()


def shim_of(cid):
    """The containerd shim serving container cid (a psutil.Process) or None."""
    for p in processes_mentioning(cid):
        try:
            if "containerd-shim" in p.name() or "conmon" in p.name():
                return p
        except psutil.Error:
            pass
    return None


def wait_gone(procs, timeout=20):
    """The processes of procs still alive after timeout seconds."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while True:
        alive = [p for p in alive if _alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _alive(p):
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
