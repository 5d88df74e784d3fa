"""Containers' state on the host: one directory per container under the
runtime root (--root), holding state.json, the control socket and a lock.

A container's status is never stored: a sandbox process that is gone
means stopped; otherwise the sandbox says (created, running, paused).
The sandbox process is identified by pid and start time together, so a
reused pid is not taken for the container."""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field

DEFAULT_ROOT = "/run/pyrunsc"
OCI_VERSION = "1.0.2"
_ID = re.compile(r"^[\w+\-.]+$")  # runc's rule: letters, digits, _ + - .


class ContainerError(Exception):
    """A one-line error for the user (containerd and podman match some texts)."""


def check_id(cid: str) -> None:
    if not cid or not _ID.match(cid) or cid in (".", ".."):
        raise ContainerError(f"invalid container id {cid!r}")


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


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


@dataclass
class State:
    id: str
    bundle: str
    rootfs: str
    pid: int = 0                    # the sandbox process
    pid_start: int = 0              # its start time, against pid reuse
    created: str = ""
    annotations: dict = field(default_factory=dict)
    started: bool = False
    owner: str = "root"
    exit_status: int | None = None  # the sandbox writes it as it ends (wait status)

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
            with open(os.path.join(self.dir(cid), "state.json")) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ContainerError(f"container does not exist: {cid}") from None
        except (OSError, ValueError) as e:
            raise ContainerError(f"container {cid}: unreadable state: {e}") from None
        return State(**{k: v for k, v in data.items() if k in State.__dataclass_fields__})

    def save(self, st: State) -> None:
        write_atomic(os.path.join(self.dir(st.id), "state.json"), json.dumps(asdict(st)))

    def remove(self, cid: str) -> None:
        shutil.rmtree(self.dir(cid), ignore_errors=True)

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.isfile(os.path.join(self.root, n, "state.json"))]

    @contextlib.contextmanager
    def lock(self, cid: str):
        """Serializes the commands that change one container."""
        path = os.path.join(self.dir(cid), "lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise ContainerError(f"container does not exist: {cid}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


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
    deadline = time.monotonic() + timeout
    while process_start_time(pid) == start:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise
