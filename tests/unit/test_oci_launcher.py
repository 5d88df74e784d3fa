"""The launcher container engines run (`pyrunsc launcher`, `pyrunsc
install`): pyrunsc with Python started without site and without the
caller's PYTHON* variables, finding its packages by the paths it lists."""
import json
import os
import subprocess
import sys

from click.testing import CliRunner

from pyrunsc.oci import info
from pyrunsc.oci.launcher import write_launcher


def run(launcher, *args, env=None, cwd="/"):
    return subprocess.run([str(launcher), *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


def test_launcher_runs_quick_and_full_commands(tmp_path):
    launcher = write_launcher(str(tmp_path / "pyrunsc-oci"))
    first = open(launcher).readline()
    assert first == f"#!{sys.executable} -SE\n"
    assert os.access(launcher, os.X_OK)
    # a quick command (fastpath, no click)
    r = run(launcher, "--root", str(tmp_path / "state"), "state", "nothing")
    assert r.returncode == 1 and r.stderr == "pyrunsc: container does not exist: nothing\n", r
    # one that goes to click, and the sentry's packages for `features`
    r = run(launcher, "features")
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["ociVersionMax"]
    r = run(launcher, "--help")
    assert r.returncode == 0 and "Usage:" in r.stdout


def test_launcher_python_has_no_site_and_ignores_pythonpath(tmp_path):
    """-SE: a PYTHONPATH with a pyrunsc of its own is not followed, and
    site (whose .pth files are what the launcher saves) is not imported."""
    fake = tmp_path / "fake" / "pyrunsc"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise SystemExit('the fake pyrunsc was imported')\n")
    launcher = write_launcher(str(tmp_path / "pyrunsc-oci"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))
    r = run(launcher, "--root", str(tmp_path / "state"), "state", "x", env=env)
    assert "fake" not in r.stderr and "does not exist" in r.stderr, r
    # the launcher's own interpreter, asked the same way it is started
    interpreter, flags = first_line(launcher)
    probe = subprocess.run([interpreter, flags, "-c", "import sys; print('site' in sys.modules)"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert probe.stdout == "False\n"


def first_line(launcher):
    line = open(launcher).readline()
    interpreter, flags = line[2:].split()
    return interpreter, flags


def test_launcher_lists_package_roots_not_the_test_runners_path(tmp_path):
    """The listed paths are a fresh interpreter's, not pytest's sys.path."""
    launcher = write_launcher(str(tmp_path / "pyrunsc-oci"))
    text = open(launcher).read()
    line = next(x for x in text.splitlines() if x.startswith("sys.path += "))
    paths = eval(line[len("sys.path += "):])   # a list literal we wrote
    import pyrunsc
    root = os.path.dirname(os.path.dirname(os.path.abspath(pyrunsc.__file__)))
    assert paths[0] == root
    assert not any(p.endswith(os.path.join("tests", "unit")) for p in paths)


def test_launcher_command(tmp_path):
    target = tmp_path / "x" / "pyrunsc-oci"
    target.parent.mkdir()
    r = CliRunner().invoke(info.launcher, [str(target)])
    assert r.exit_code == 0, r.output
    assert r.output == f"{target}\n" and os.access(target, os.X_OK)
    before = target.read_text()
    r = CliRunner().invoke(info.launcher, [str(target)])   # written again, whole
    assert r.exit_code == 0 and target.read_text() == before
    assert sorted(os.listdir(target.parent)) == ["pyrunsc-oci"]


def test_launcher_command_error_is_one_line(tmp_path):
    r = CliRunner().invoke(info.launcher, [str(tmp_path / "missing" / "pyrunsc-oci")])
    assert r.exit_code == 1
    assert r.output.startswith("pyrunsc: cannot write the launcher ") and r.output.count("\n") == 1
    assert not (tmp_path / "missing").exists()
