"""Containers' state on the host: one directory per container under the
runtime root (--root), holding state.json, the control socket and a lock.

A container's status is never stored: a sandbox process that is gone
means stopped; otherwise the sandbox says (created, running, paused).
The sandbox process is identified by pid and start time together, so a
reused pid is not taken for the container."""
from __future__ import annotations

import errno
import fcntl
import os
import select
import time

from . import jsonlite

DEFAULT_ROOT = "/run/pyrunsc"
OCI_VERSION = "1.0.2"
# runc's rule for ids: ASCII letters, digits, _ + - .
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


class ContainerError(Exception):
    """A one-line error for the user (containerd and podman match some texts)."""


def check_id(cid: str) -> None:
    if not cid or not _ID_CHARS.issuperset(cid) or cid in (".", ".."):
        raise ContainerError(f"invalid container id {cid!r}")


def now_rfc3339() -> str:
    """UTC now as Go's RFC3339Nano writes it (what runc puts in "created")."""
    sec, ns = divmod(time.time_ns(), 1_000_000_000)
    frac = f".{ns:09d}".rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + frac + "Z"


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class State:
    """A container's state.json. A plain class, not a dataclass: the quick
    commands load it, and importing dataclasses costs them 20 ms."""
    FIELDS = ("id", "bundle", "rootfs", "pid", "pid_start", "created", "annotations", "started",
              "owner", "exit_status", "hooks")

    def __init__(self, id: str, bundle: str, rootfs: str, pid: int = 0, pid_start: int = 0,
                 created: str = "", annotations: dict | None = None, started: bool = False,
                 owner: str = "root", exit_status: int | None = None, hooks: dict | None = None):
        self.id, self.bundle, self.rootfs = id, bundle, rootfs
        self.pid = pid                  # the sandbox process
        self.pid_start = pid_start      # its start time, against pid reuse
        self.created = created
        self.annotations = annotations or {}
        self.started = started
        self.owner = owner
        self.exit_status = exit_status  # the sandbox writes it as it ends (wait status)
        # poststart and poststop hooks as config.json had them at create
        # (runc too keeps the config of create): {kind: [hook fields]}
        self.hooks = hooks or {}

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def alive(self) -> bool:
        return self.pid > 0 and process_start_time(self.pid) == self.pid_start

    def oci(self, status: str) -> dict:
        """The OCI state document (runtime-spec runtime.md)."""
        out = {"ociVersion": OCI_VERSION, "id": self.id, "status": status,
               "pid": self.pid if status not in ("stopped",) else 0,
               "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
               "owner": self.owner}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


class _Lock:
    """flock on a container's lock file, held for a with-block."""

    def __init__(self, path: str, cid: str):
        self.path, self.cid, self.fd = path, cid, -1

    def __enter__(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise ContainerError(f"container does not exist: {self.cid}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


class Store:
    """The runtime root: containers' directories."""

    def __init__(self, root: str = DEFAULT_ROOT):
        self.root = os.path.abspath(root)

    def dir(self, cid: str) -> str:
        check_id(cid)
        return os.path.join(self.root, cid)

    def control_path(self, cid: str) -> str:
        return os.path.join(self.dir(cid), "control.sock")

    def exists(self, cid: str) -> bool:
        return os.path.isfile(os.path.join(self.dir(cid), "state.json"))

    def reserve(self, cid: str) -> str:
        """Make the container's directory; it must not exist yet."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        d = self.dir(cid)
        try:
            os.mkdir(d, 0o711)
        except FileExistsError:
            raise ContainerError(f"container with id {cid} already exists") from None
        return d

    def load(self, cid: str) -> State:
        try:
            data = jsonlite.read(os.path.join(self.dir(cid), "state.json"))
        except FileNotFoundError:
            raise ContainerError(f"container does not exist: {cid}") from None
        except (OSError, ValueError) as e:
            raise ContainerError(f"container {cid}: unreadable state: {e}") from None
        if not isinstance(data, dict):
            raise ContainerError(f"container {cid}: unreadable state: not a JSON object")
        return State(**{k: v for k, v in data.items() if k in State.FIELDS})

    def save(self, st: State) -> None:
        write_atomic(os.path.join(self.dir(st.id), "state.json"), jsonlite.dumps(st.as_dict()))

    def remove(self, cid: str) -> None:
        """The container's directory and its files (state, lock, socket, and
        temporary files of write_atomic), if there."""
        d = self.dir(cid)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(os.path.join(d, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass  # a concurrent delete

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.isfile(os.path.join(self.root, n, "state.json"))]

    def lock(self, cid: str) -> _Lock:
        """Serializes the commands that change one container (a with-block)."""
        return _Lock(os.path.join(self.dir(cid), "lock"), cid)


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Readers see the old content or the new, never a part."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def wait_gone(pid: int, start: int, timeout: float) -> bool:
    """Wait until the process (pid, start time) is gone or a zombie."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return True   # no such process
    try:
        # the pidfd holds the process it was opened for: if that one has our
        # start time, its becoming readable (exit) is what we wait for
        if process_start_time(pid) != start:
            return True
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise
