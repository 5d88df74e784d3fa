"""The program container engines run as the runtime (`pyrunsc install`
registers it; `pyrunsc launcher PATH` writes one anywhere): pyrunsc with
Python started by `-SE`. containerd runs the runtime four times per
container, and `site` would cost each run every .pth file of the
installation (the editable install's import hook, others' start-up
hooks): 48 ms here, against 9 ms without. -E keeps the caller's
PYTHON* variables out, as runc ignores its caller's settings.

Without site the launcher must say where the packages are: the
directories site gave the Python that wrote it, and the roots of
pyrunsc's own packages. Written again by each `pyrunsc install`, it
follows the installation as the daemon.json entry does."""
from __future__ import annotations

import os
import subprocess
import sys

NAME = "pyrunsc-oci"
_PACKAGES = ("pyrunsc", "sentry", "vfs", "platforms", "netstack")


def default_path(program: str) -> str:
    """Beside the pyrunsc program."""
    return os.path.join(os.path.dirname(program), NAME)


def _sys_path(flags: str, prelude: str = "") -> list[str]:
    """sys.path (after prelude's entries) of a fresh Python started with flags."""
    code = f"import sys\n{prelude}print('\\0'.join(sys.path))"
    out = subprocess.run([sys.executable, flags, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, cwd="/").stdout
    return [p for p in out.rstrip("\n").split("\0") if p]


def import_paths() -> list[str]:
    """The roots of our packages (an editable install finds them by an
    import hook that -S leaves out), then what a normal start of this
    Python adds to sys.path beyond a `-SE` start (site-packages), as a
    fresh interpreter sees them: not this process's path, which a test
    runner or PYTHONPATH may have changed."""
    roots = ("import importlib.util, os\n"
             f"for name in {_PACKAGES!r}:\n"
             "    sys.path.insert(0, os.path.dirname(os.path.dirname(importlib.util.find_spec(name).origin)))\n")
    bare = set(_sys_path("-SE"))
    paths = []
    for p in _sys_path("-E", roots):
        if p not in bare and p not in paths and os.path.isdir(p):
            paths.append(p)
    return paths


def launcher_text() -> str:
    return (f"#!{sys.executable} -SE\n"
            "# pyrunsc for container engines, written by `pyrunsc install` or `pyrunsc launcher`:\n"
            "# Python without site (its .pth files cost every runtime call tens of ms),\n"
            "# so the import paths are listed here. Write it again after moving pyrunsc.\n"
            "import sys\n"
            f"sys.path += {import_paths()!r}\n"
            "from pyrunsc.oci.fastpath import main\n"
            "main()\n")


def write_launcher(path: str) -> str:
    """Write the launcher at path (replacing it whole); its absolute path."""
    path = os.path.abspath(path)
    text = launcher_text()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
