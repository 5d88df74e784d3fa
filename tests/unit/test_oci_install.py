"""`pyrunsc install` / `uninstall`: pyrunsc as a runtime in Docker's daemon.json
(pyrunsc/oci/install.py, the click commands in pyrunsc/oci/info.py)."""
import json
import os
import stat

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrunsc.oci import info
from pyrunsc.oci.install import InstallError, executable, install, uninstall

OTHER = {
    "log-driver": "json-file",
    "default-runtime": "runc",
    "runtimes": {"runsc": {"path": "/usr/local/bin/runsc", "runtimeArgs": ["--platform=ptrace"]}},
    "storage-opts": ["a", "b"],
}


def write(path, content, mode=0o644):
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    os.chmod(path, mode)


def read(path):
    with open(path) as f:
        return json.load(f)


def only_file(directory):
    """No temporary files left beside daemon.json."""
    return sorted(os.listdir(directory))


def test_install_keeps_other_keys_and_runtimes(tmp_path):
    f = tmp_path / "daemon.json"
    write(f, OTHER)
    msg = install(str(f), "pyrunsc", path="/opt/pyrunsc", runtime_args=["--network=sandbox"])
    assert msg == f"Added runtime 'pyrunsc' (/opt/pyrunsc) with arguments ['--network=sandbox'] to {f}."
    want = json.loads(json.dumps(OTHER))
    want["runtimes"]["pyrunsc"] = {"path": "/opt/pyrunsc", "runtimeArgs": ["--network=sandbox"]}
    assert read(f) == want
    assert only_file(tmp_path) == ["daemon.json"]


def test_install_is_idempotent_and_replaces_args(tmp_path):
    f = tmp_path / "daemon.json"
    write(f, OTHER)
    install(str(f), "pyrunsc", path="/opt/pyrunsc")
    first = f.read_bytes()
    install(str(f), "pyrunsc", path="/opt/pyrunsc")
    assert f.read_bytes() == first
    install(str(f), "pyrunsc", path="/opt/pyrunsc", runtime_args=["--strace"])
    assert read(f)["runtimes"]["pyrunsc"]["runtimeArgs"] == ["--strace"]
    assert read(f)["runtimes"]["runsc"] == OTHER["runtimes"]["runsc"]


def test_install_creates_file_and_directory(tmp_path):
    f = tmp_path / "etc" / "docker" / "daemon.json"
    install(str(f), "x", path="/bin/x")
    assert read(f) == {"runtimes": {"x": {"path": "/bin/x", "runtimeArgs": []}}}
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o644


def test_install_into_empty_file(tmp_path):
    f = tmp_path / "daemon.json"
    write(f, "  \n")
    install(str(f), "x", path="/bin/x")
    assert list(read(f)) == ["runtimes"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664])
def test_install_and_uninstall_keep_the_mode(tmp_path, mode):
    f = tmp_path / "daemon.json"
    write(f, OTHER, mode)
    install(str(f), "pyrunsc", path="/opt/p")
    assert stat.S_IMODE(os.stat(f).st_mode) == mode
    uninstall(str(f), "pyrunsc")
    assert stat.S_IMODE(os.stat(f).st_mode) == mode


def test_install_through_a_symlink_keeps_the_link(tmp_path):
    real = tmp_path / "real.json"
    write(real, {"debug": True})
    link = tmp_path / "daemon.json"
    link.symlink_to(real)
    install(str(link), "pyrunsc", path="/opt/p")
    assert link.is_symlink()
    assert read(real)["debug"] is True and "pyrunsc" in read(real)["runtimes"]


BAD = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('"text"', "not a JSON object"),
    ('{"runtimes": []}', '"runtimes" is not a JSON object'),
    (b'{"a": "\xff"}', "not valid JSON"),
]


@pytest.mark.parametrize("content,expect", BAD)
def test_bad_file_is_refused_and_untouched(tmp_path, content, expect):
    f = tmp_path / "daemon.json"
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content)
    os.chmod(f, 0o600)
    before = (f.read_bytes(), os.stat(f).st_ino, os.stat(f).st_mtime_ns)
    for call in (lambda: install(str(f), "pyrunsc", path="/opt/p"), lambda: uninstall(str(f), "pyrunsc")):
        with pytest.raises(InstallError) as e:
            call()
        assert expect in str(e.value) and str(f) in str(e.value) and "\n" not in str(e.value)
        assert (f.read_bytes(), os.stat(f).st_ino, os.stat(f).st_mtime_ns) == before
    assert only_file(tmp_path) == ["daemon.json"]


def test_uninstall_removes_only_that_runtime(tmp_path):
    f = tmp_path / "daemon.json"
    write(f, OTHER)
    install(str(f), "pyrunsc", path="/opt/p")
    assert uninstall(str(f), "pyrunsc") == f"Removed runtime 'pyrunsc' from {f}."
    assert read(f) == OTHER


def test_uninstall_drops_an_emptied_runtimes_key(tmp_path):
    f = tmp_path / "daemon.json"
    write(f, {"debug": True})
    install(str(f), "pyrunsc", path="/opt/p")
    uninstall(str(f), "pyrunsc")
    assert read(f) == {"debug": True}


def test_uninstall_errors(tmp_path):
    f = tmp_path / "daemon.json"
    with pytest.raises(InstallError, match="no such file"):
        uninstall(str(f), "pyrunsc")
    assert not f.exists()
    for content in (OTHER, {"debug": True}):
        write(f, content)
        before = f.read_bytes()
        with pytest.raises(InstallError, match=r"^runtime 'pyrunsc' is not in .*daemon\.json$"):
            uninstall(str(f), "pyrunsc")
        assert f.read_bytes() == before


def test_default_path_is_an_absolute_executable():
    p = executable()
    assert os.path.isabs(p)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=15)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(other=st.dictionaries(st.text(max_size=10).filter(lambda k: k != "runtimes"), json_values, max_size=5),
       runtimes=st.dictionaries(st.text(max_size=6).filter(lambda k: k != "pyrunsc"), json_values, max_size=3),
       args=st.lists(st.text(max_size=10), max_size=3))
def test_install_uninstall_round_trip(tmp_path, other, runtimes, args):
    f = tmp_path / "daemon.json"
    original = dict(other)
    if runtimes:
        original["runtimes"] = runtimes
    write(f, original)
    install(str(f), "pyrunsc", path="/opt/p", runtime_args=args)
    got = read(f)
    assert got["runtimes"].pop("pyrunsc") == {"path": "/opt/p", "runtimeArgs": args}
    if not got["runtimes"]:
        del got["runtimes"]
    assert got == original
    uninstall(str(f), "pyrunsc")
    assert read(f) == original


# --- the click commands ---

def test_install_command(tmp_path):
    f = tmp_path / "daemon.json"
    write(f, OTHER)
    launcher = tmp_path / "bin" / "pyrunsc-oci"
    launcher.parent.mkdir()
    r = CliRunner().invoke(info.install, ["--runtime", "mine", "--config-file", str(f),
                                          "--launcher", str(launcher), "--", "--network=sandbox", "--strace"])
    assert r.exit_code == 0, r.output
    entry = read(f)["runtimes"]["mine"]
    assert entry["runtimeArgs"] == ["--network=sandbox", "--strace"]
    assert entry["path"] == str(launcher) and os.access(launcher, os.X_OK)
    assert r.output.startswith("Added runtime 'mine'")
    r = CliRunner().invoke(info.uninstall, ["--runtime", "mine", "--config-file", str(f)])
    assert r.exit_code == 0 and r.output == f"Removed runtime 'mine' from {f}.\n"
    assert read(f) == OTHER


def test_commands_report_errors_on_one_line(tmp_path):
    f = tmp_path / "daemon.json"
    write(f, "{broken")
    for cmd, args in ((info.install, []), (info.uninstall, [])):
        r = CliRunner().invoke(cmd, ["--config-file", str(f), *args])
        assert r.exit_code == 1
        assert r.output.startswith("pyrunsc: ") and r.output.count("\n") == 1 and "not valid JSON" in r.output
    assert f.read_text() == "{broken"
    r = CliRunner().invoke(info.uninstall, ["--config-file", str(tmp_path / "none.json")])
    assert r.exit_code == 1 and "no such file" in r.output
