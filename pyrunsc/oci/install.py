"""Register pyrunsc as a Docker runtime in daemon.json (`pyrunsc install`,
`pyrunsc uninstall`), like `runsc install`: every other key and runtime is
kept, and the file is replaced atomically (a temporary file renamed, with
the old file's mode and owner), so dockerd never reads half a file."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from .launcher import default_path as default_launcher_path, write_launcher

DEFAULT_CONFIG = "/etc/docker/daemon.json"


class InstallError(Exception):
    """One-line message for the user; the file was left untouched."""


def executable() -> str:
    """The absolute path of the pyrunsc program running now."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0).startswith("pyrunsc") and os.path.isfile(argv0):
        return os.path.realpath(argv0)
    found = shutil.which("pyrunsc")
    if found:
        return os.path.realpath(found)
    return os.path.realpath(argv0)


def _read(path: str, missing_ok: bool) -> dict:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise InstallError(f"{path}: no such file") from None
    except OSError as e:
        raise InstallError(f"{path}: {e.strerror or e}") from None
    if not data.strip():
        return {}   # dockerd takes an empty file for no settings
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:   # JSONDecodeError, bad UTF-8
        raise InstallError(f"{path}: not valid JSON ({e}); left as it is") from None
    if not isinstance(obj, dict):
        raise InstallError(f"{path}: not a JSON object; left as it is")
    runtimes = obj.get("runtimes")
    if runtimes is not None and not isinstance(runtimes, dict):
        raise InstallError(f"{path}: \"runtimes\" is not a JSON object; left as it is")
    return obj


def _write(path: str, obj: dict) -> None:
    """Replace path with obj as JSON: written beside it, then renamed over it."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=".daemon.json.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=4)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except PermissionError:
                pass   # not root: the file stays ours
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def install(config_file: str = DEFAULT_CONFIG, runtime: str = "pyrunsc", path: str | None = None,
            runtime_args=(), launcher: str | None = None) -> str:
    """Add (or replace) the runtime; returns what was done, for the user.
    Without a path, the runtime is a launcher (launcher.py) written at
    launcher, by default beside the pyrunsc program."""
    if not runtime:
        raise InstallError("the runtime name must not be empty")
    target = os.path.realpath(config_file)   # a symlinked daemon.json keeps its link
    obj = _read(target, missing_ok=True)
    if path:
        path = os.path.abspath(path)
    else:
        path = write_program(launcher or default_launcher_path(executable()))
    runtimes = obj.setdefault("runtimes", {})
    runtimes[runtime] = {"path": path, "runtimeArgs": list(runtime_args)}
    try:
        _write(target, obj)
    except OSError as e:
        raise InstallError(f"{config_file}: {e.strerror or e}") from None
    return f"Added runtime {runtime!r} ({path}) with arguments {list(runtime_args)} to {config_file}."


def write_program(path: str) -> str:
    """The launcher written at path; InstallError if it cannot be."""
    try:
        return write_launcher(path)
    except OSError as e:
        raise InstallError(f"cannot write the launcher {path}: {e.strerror or e}") from None
    except subprocess.SubprocessError as e:
        raise InstallError(f"cannot find this Python's import paths: {e}") from None


def uninstall(config_file: str = DEFAULT_CONFIG, runtime: str = "pyrunsc") -> str:
    """Remove the runtime (and "runtimes" if that empties it); returns what was done."""
    target = os.path.realpath(config_file)
    obj = _read(target, missing_ok=False)
    runtimes = obj.get("runtimes") or {}
    if runtime not in runtimes:
        raise InstallError(f"runtime {runtime!r} is not in {config_file}")
    del runtimes[runtime]
    if not runtimes:
        obj.pop("runtimes", None)
    try:
        _write(target, obj)
    except OSError as e:
        raise InstallError(f"{config_file}: {e.strerror or e}") from None
    return f"Removed runtime {runtime!r} from {config_file}."
