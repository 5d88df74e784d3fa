"""config.json checking and conversion (pyrunsc/oci/spec.py), `pyrunsc spec`
and `pyrunsc features`."""
import copy
import json
import os
import re
import resource

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrunsc.oci import info
from pyrunsc.oci.spec import (CAPABILITIES, RLIM_INFINITY, RLIMIT_TYPES, SpecError, default_spec,
                              load_bundle, parse_process)


def make_bundle(path, config, rootfs="rootfs"):
    """A bundle directory at path with config (a dict, or raw bytes/str) and a rootfs dir."""
    os.makedirs(os.path.join(path, rootfs), exist_ok=True)
    data = config if isinstance(config, (bytes, str)) else json.dumps(config)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(path, "config.json"), mode) as f:
        f.write(data)
    return str(path)


def error_of(bundle) -> str:
    with pytest.raises(SpecError) as e:
        load_bundle(bundle)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# --- the default spec and the round trip ---

def test_default_spec_loads(tmp_path):
    s = load_bundle(make_bundle(tmp_path, default_spec()))
    assert s.oci_version == "1.0.2-dev"
    assert s.bundle == str(tmp_path)
    assert s.root_path == str(tmp_path / "rootfs") and s.root_readonly
    assert s.hostname == "pyrunsc" and s.domainname == ""
    p = s.process
    assert p.args == ["sh"] and p.terminal and p.cwd == "/"
    assert p.user.uid == 0 and p.user.gid == 0 and p.user.additional_gids == [] and p.user.umask is None
    assert "TERM=xterm" in p.env and any(e.startswith("PATH=") for e in p.env)
    assert p.no_new_privileges
    assert [(r.type, r.soft, r.hard) for r in p.rlimits] == [("RLIMIT_NOFILE", 1024, 1024)]
    assert set(p.capabilities) == {"bounding", "effective", "permitted", "ambient"}
    assert [(m.destination, m.type) for m in s.mounts] == [
        ("/proc", "proc"), ("/dev", "tmpfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"), ("/sys", "sysfs"), ("/sys/fs/cgroup", "cgroup")]
    assert s.namespaces == [(t, None) for t in ("pid", "network", "ipc", "uts", "mount")]
    assert "/proc/kcore" in s.masked_paths and "/proc/sys" in s.readonly_paths
    assert s.hooks == {} and s.sysctl == {} and s.annotations == {}
    assert s.raw == default_spec()


def test_default_spec_args_and_terminal(tmp_path):
    s = load_bundle(make_bundle(tmp_path, default_spec(["/bin/echo", "hi"], terminal=False)))
    assert s.process.args == ["/bin/echo", "hi"] and not s.process.terminal


def full_config():
    """A config.json using every field spec.py reads."""
    c = default_spec(["/bin/true"])
    c["domainname"] = "example.org"
    c["process"].update({
        "user": {"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 0o27},
        "consoleSize": {"height": 25, "width": 80},
        "oomScoreAdj": -500,
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20},
                    {"type": "RLIMIT_CORE", "soft": RLIM_INFINITY, "hard": RLIM_INFINITY}],
    })
    c["process"]["capabilities"]["inheritable"] = ["CAP_CHOWN"]
    c["mounts"].append({"destination": "/data", "type": "bind", "source": "/var/tmp", "options": ["rbind", "ro"]})
    c["mounts"].append({"destination": "/untyped", "source": "src", "options": ["bind"]})
    c["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    c["annotations"] = {"a": "1", "b": ""}
    c["hooks"] = {"createRuntime": [{"path": "/bin/hook", "args": ["hook", "x"], "env": ["A=1"], "timeout": 5}],
                  "poststop": [{"path": "/bin/post"}],
                  "someFutureHook": "ignored"}
    c["unknownTopLevelKey"] = {"anything": [1, 2]}
    return c


def test_full_round_trip(tmp_path):
    s = load_bundle(make_bundle(tmp_path, full_config()))
    p = s.process
    assert (p.user.uid, p.user.gid, p.user.additional_gids, p.user.umask) == (1000, 100, [5, 6], 0o27)
    assert p.console_size == (25, 80) and p.oom_score_adj == -500
    assert [(r.type, r.soft, r.hard) for r in p.rlimits] == [
        ("RLIMIT_NOFILE", 10, 20), ("RLIMIT_CORE", RLIM_INFINITY, RLIM_INFINITY)]
    assert p.capabilities["inheritable"] == ["CAP_CHOWN"]
    assert s.domainname == "example.org"
    data, untyped = s.mounts[-2:]
    assert (data.destination, data.type, data.source, data.options) == ("/data", "bind", "/var/tmp", ["rbind", "ro"])
    assert (untyped.type, untyped.source, untyped.options) == ("", "src", ["bind"])
    assert s.namespaces[-1] == ("user", "/proc/1/ns/user")
    assert s.sysctl == {"net.ipv4.ip_forward": "1"} and s.annotations == {"a": "1", "b": ""}
    h = s.hooks["createRuntime"][0]
    assert (h.path, h.args, h.env, h.timeout) == ("/bin/hook", ["hook", "x"], ["A=1"], 5)
    assert s.hooks["poststop"][0].args == [] and s.hooks["poststop"][0].timeout is None
    assert set(s.hooks) == {"createRuntime", "poststop"}


def test_nulls_count_as_absent(tmp_path):
    c = default_spec()
    c["hostname"] = None
    c["mounts"] = None
    c["process"]["env"] = None
    c["process"]["user"] = None
    c["linux"] = None
    s = load_bundle(make_bundle(tmp_path, c))
    assert s.hostname == "" and s.mounts == [] and s.process.env == [] and s.namespaces == []
    assert s.process.user.uid == 0


def test_no_process_is_allowed(tmp_path):
    c = default_spec()
    del c["process"]
    assert load_bundle(make_bundle(tmp_path, c)).process is None


def test_root_paths(tmp_path):
    bundle = tmp_path / "b"
    c = default_spec()
    c["root"] = {"path": "sub/../rootfs"}
    s = load_bundle(make_bundle(bundle, c))
    assert s.root_path == str(bundle / "rootfs") and not s.root_readonly
    other = tmp_path / "elsewhere"
    other.mkdir()
    c["root"] = {"path": str(other)}   # absolute: anywhere
    assert load_bundle(make_bundle(bundle, c)).root_path == str(other)
    # a relative bundle path is made absolute
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        c["root"] = {"path": "rootfs"}
        assert load_bundle(make_bundle("b", c)).bundle == str(bundle)
    finally:
        os.chdir(cwd)


def test_rlimit_resource_numbers():
    from pyrunsc.oci.spec import Rlimit
    numbers = {t: Rlimit(t, 0, 0).resource for t in RLIMIT_TYPES}
    assert sorted(numbers.values()) == list(range(16))   # Linux's RLIM_NLIMITS
    for t, nr in numbers.items():
        if hasattr(resource, t):
            assert nr == getattr(resource, t)


def test_records_get_fresh_defaults_and_compare_by_value(tmp_path):
    from pyrunsc.oci.spec import Hook, Mount, Process, Spec, User
    a, b = Process(["sh"]), Process(["sh"])
    a.env.append("A=1")
    a.user.additional_gids.append(5)
    a.rlimits.append(None)
    a.capabilities["bounding"] = []
    assert (b.env, b.user.additional_gids, b.rlimits, b.capabilities) == ([], [], [], {})
    assert Mount("/a", "", "s").options is not Mount("/a", "", "s").options
    assert Hook("/h").args is not Hook("/h").args and Hook("/h").env is not Hook("/h").env
    assert User() == User() and User(uid=1) != User() and User() != Hook("/h")
    s1, s2 = Spec("1.0", "/b", None, "/r"), Spec("1.0", "/b", None, "/r")
    assert s1 == s2 and s1.mounts is not s2.mounts and s1.raw is not s2.raw
    assert repr(Mount("/a", "bind", "s")) == "Mount(destination='/a', type='bind', source='s', options=[])"
    bundle = make_bundle(tmp_path, full_config())
    assert load_bundle(bundle) == load_bundle(bundle)


# The checks spec.py makes without re, against the regular expressions they replaced.

@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from(list("0123456789.\nx ") + ["\u0660", "\u0661", "\uff11", "\u00b2"]), max_size=6) |
       st.text(max_size=6))
def test_oci_version_rule_is_the_regex(version):
    from pyrunsc.oci.spec import _oci_version
    if "\0" in version:
        return   # refused earlier as a string
    m = re.match(r"(\d+)(\.|$)", version)
    expect = "is not a version" if m is None else "is not supported" if int(m.group(1)) != 1 else None
    try:
        _oci_version(version, "ociVersion")
        got = None
    except SpecError as e:
        got = "is not a version" if "is not a version" in str(e) else "is not supported"
    assert got == expect


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(max_codepoint=0x200, exclude_categories=["Cs"])))
def test_one_line_escapes_as_the_regex_did(text):
    from pyrunsc.oci.spec import _one_line
    assert _one_line(text) == re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)


# --- every validation error, each with its message ---

def _set(path, value):
    """A mutation of the default config: set (or with value=DEL, delete) path."""
    def mutate(c):
        obj = c
        for k in path[:-1]:
            obj = obj[k]
        if value is DEL:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return mutate


DEL = object()

CASES = [
    ("only unknown keys", lambda c: c.clear() or c.update({"x": 1}), "ociVersion: missing"),
    ("ociVersion missing", _set(["ociVersion"], DEL), "ociVersion: missing"),
    ("ociVersion major 2", _set(["ociVersion"], "2.0.0"), "ociVersion: 2.0.0 is not supported"),
    ("ociVersion major 0", _set(["ociVersion"], "0.5.0"), "ociVersion: 0.5.0 is not supported"),
    ("ociVersion garbage", _set(["ociVersion"], "v1"), "ociVersion: 'v1' is not a version"),
    ("ociVersion a number", _set(["ociVersion"], 1), "ociVersion: must be a string, not a number"),
    ("root missing", _set(["root"], DEL), "root: missing"),
    ("root not object", _set(["root"], "rootfs"), "root: must be an object, not a string"),
    ("root.path missing", _set(["root", "path"], DEL), "root.path: missing"),
    ("root.path empty", _set(["root", "path"], ""), "root.path: must not be empty"),
    ("root.path escapes", _set(["root", "path"], "../rootfs"), "root.path: '../rootfs' is outside the bundle"),
    ("root.path escapes deeper", _set(["root", "path"], "rootfs/../../x"), "is outside the bundle"),
    ("root.path not a dir", _set(["root", "path"], "config.json"), "config.json is not an existing directory"),
    ("root.path missing dir", _set(["root", "path"], "nope"), "nope is not an existing directory"),
    ("root.readonly type", _set(["root", "readonly"], "yes"), "root.readonly: must be true or false, not a string"),
    ("process type", _set(["process"], []), "process: must be an object, not an array"),
    ("args missing", _set(["process", "args"], DEL), "process.args: missing"),
    ("args empty", _set(["process", "args"], []), "process.args: must not be empty"),
    ("args non-string", _set(["process", "args"], ["sh", 3]), "process.args[1]: must be a string, not a number"),
    ("args not a list", _set(["process", "args"], "sh"), "process.args: must be an array, not a string"),
    ("args NUL", _set(["process", "args"], ["s\0h"]), "process.args[0]: contains a NUL byte"),
    ("args surrogate", _set(["process", "args"], ["\ud800"]), "process.args[0]: is not valid UTF-8"),
    ("env not K=V", _set(["process", "env"], ["PATH=/bin", "JUNK"]), "process.env[1]: 'JUNK' is not KEY=VALUE"),
    ("env empty key", _set(["process", "env"], ["=x"]), "process.env[0]: '=x' is not KEY=VALUE"),
    ("env type", _set(["process", "env"], {"A": "1"}), "process.env: must be an array, not an object"),
    ("cwd missing", _set(["process", "cwd"], DEL), "process.cwd: missing"),
    ("cwd relative", _set(["process", "cwd"], "home"), "process.cwd: 'home' is not an absolute path"),
    ("terminal type", _set(["process", "terminal"], 1), "process.terminal: must be true or false, not a number"),
    ("uid negative", _set(["process", "user", "uid"], -1), "process.user.uid: -1 is out of range 0..4294967295"),
    ("uid too big", _set(["process", "user", "uid"], 2**32), "process.user.uid: 4294967296 is out of range"),
    ("uid float", _set(["process", "user", "uid"], 1.5), "process.user.uid: must be an integer, not a number"),
    ("uid bool", _set(["process", "user", "uid"], True), "process.user.uid: must be an integer, not a boolean"),
    ("gid string", _set(["process", "user", "gid"], "0"), "process.user.gid: must be an integer, not a string"),
    ("additionalGids", _set(["process", "user", "additionalGids"], [1, -2]),
     "process.user.additionalGids[1]: -2 is out of range"),
    ("umask type", _set(["process", "user", "umask"], "022"), "process.user.umask: must be an integer"),
    ("user type", _set(["process", "user"], 0), "process.user: must be an object, not a number"),
    ("consoleSize width missing", _set(["process", "consoleSize"], {"height": 1}),
     "process.consoleSize.width: missing"),
    ("consoleSize negative", _set(["process", "consoleSize"], {"height": -1, "width": 1}),
     "process.consoleSize.height: -1 is out of range"),
    ("rlimit unknown", _set(["process", "rlimits"], [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
     "process.rlimits[0].type: unknown rlimit 'RLIMIT_BOGUS'"),
    ("rlimit soft > hard", _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]),
     "process.rlimits[0]: RLIMIT_NOFILE soft limit 2 is above the hard limit 1"),
    ("rlimit twice", _set(["process", "rlimits"], [{"type": "RLIMIT_CPU", "soft": 1, "hard": 1}] * 2),
     "process.rlimits[1].type: RLIMIT_CPU given twice"),
    ("rlimit type missing", _set(["process", "rlimits"], [{"soft": 1, "hard": 1}]),
     "process.rlimits[0].type: missing"),
    ("rlimit over uint64", _set(["process", "rlimits"], [{"type": "RLIMIT_CPU", "soft": 1, "hard": 2**64}]),
     "process.rlimits[0].hard: 18446744073709551616 is out of range"),
    ("capability unknown", _set(["process", "capabilities", "bounding"], ["CAP_KILL", "CAP_FLY"]),
     "process.capabilities.bounding[1]: unknown capability 'CAP_FLY'"),
    ("capabilities old list form", _set(["process", "capabilities"], ["CAP_KILL"]),
     "process.capabilities: must be an object, not an array"),
    ("noNewPrivileges type", _set(["process", "noNewPrivileges"], "true"),
     "process.noNewPrivileges: must be true or false, not a string"),
    ("oomScoreAdj range", _set(["process", "oomScoreAdj"], 1001), "process.oomScoreAdj: 1001 is out of range"),
    ("hostname type", _set(["hostname"], 5), "hostname: must be a string, not a number"),
    ("mounts type", _set(["mounts"], {}), "mounts: must be an array, not an object"),
    ("mount not object", _set(["mounts"], ["/proc"]), "mounts[0]: must be an object, not a string"),
    ("mount destination relative", _set(["mounts", 0, "destination"], "proc"),
     "mounts[0].destination: 'proc' is not an absolute path"),
    ("mount destination missing", _set(["mounts", 1, "destination"], DEL), "mounts[1].destination: missing"),
    ("mount options type", _set(["mounts", 1, "options"], "ro"), "mounts[1].options: must be an array"),
    ("mount options entry", _set(["mounts", 1, "options"], ["ro", None]),
     "mounts[1].options[1]: must be a string, not null"),
    ("linux type", _set(["linux"], []), "linux: must be an object, not an array"),
    ("namespace unknown", _set(["linux", "namespaces", 0, "type"], "pidx"),
     "linux.namespaces[0].type: unknown namespace type 'pidx'"),
    ("namespace duplicate", lambda c: c["linux"]["namespaces"].append({"type": "ipc"}),
     "linux.namespaces[5].type: namespace ipc given twice"),
    ("namespace path relative", _set(["linux", "namespaces", 1, "path"], "netns"),
     "linux.namespaces[1].path: 'netns' is not an absolute path"),
    ("maskedPaths type", _set(["linux", "maskedPaths"], [1]), "linux.maskedPaths[0]: must be a string"),
    ("readonlyPaths type", _set(["linux", "readonlyPaths"], "/proc"), "linux.readonlyPaths: must be an array"),
    ("sysctl value", _set(["linux", "sysctl"], {"kernel.x": 1}), "linux.sysctl.kernel.x: must be a string"),
    ("annotations value", _set(["annotations"], {"k": ["v"]}), "annotations.k: must be a string, not an array"),
    ("hooks type", _set(["hooks"], []), "hooks: must be an object, not an array"),
    ("hook list type", _set(["hooks"], {"prestart": {}}), "hooks.prestart: must be an array, not an object"),
    ("hook path relative", _set(["hooks"], {"poststart": [{"path": "hook"}]}),
     "hooks.poststart[0].path: 'hook' is not an absolute path"),
    ("hook path missing", _set(["hooks"], {"createRuntime": [{"args": []}]}), "hooks.createRuntime[0].path: missing"),
    ("hook timeout zero", _set(["hooks"], {"poststop": [{"path": "/x", "timeout": 0}]}),
     "hooks.poststop[0].timeout: 0 is out of range"),
    ("hook env", _set(["hooks"], {"poststop": [{"path": "/x", "env": ["X"]}]}),
     "hooks.poststop[0].env[0]: 'X' is not KEY=VALUE"),
    ("key with newline", _set(["annotations"], {"a\nb": 1}), "annotations.a\\nb: must be a string"),
]


@pytest.mark.parametrize("mutate,expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_error(tmp_path, mutate, expect):
    c = default_spec()
    mutate(c)
    msg = error_of(make_bundle(tmp_path, c))
    assert msg.startswith(f"bundle {tmp_path}: config.json: ")
    assert expect in msg


def test_missing_config(tmp_path):
    assert error_of(str(tmp_path)) == f"bundle {tmp_path}: no config.json"
    assert error_of(str(tmp_path / "nonexistent")) == f"bundle {tmp_path}/nonexistent: no config.json"


def test_config_is_a_directory(tmp_path):
    (tmp_path / "config.json").mkdir()
    assert "Is a directory" in error_of(str(tmp_path))


def test_bad_json_has_line_and_column(tmp_path):
    msg = error_of(make_bundle(tmp_path, '{\n  "ociVersion": "1.0.0",\n  oops\n}'))
    assert msg.startswith(f"bundle {tmp_path}: config.json: bad JSON at line 3 column 3: ")


def test_not_utf8(tmp_path):
    assert "not UTF-8" in error_of(make_bundle(tmp_path, b'{"ociVersion": "\xff"}'))


@pytest.mark.parametrize("value,kind", [([], "an array"), ("x", "a string"), (3, "a number"), (None, "null")])
def test_not_an_object(tmp_path, value, kind):
    assert error_of(make_bundle(tmp_path, json.dumps(value))).endswith(
        f"config.json: must be an object, not {kind}")


def test_deep_nesting(tmp_path):
    assert "config.json" in error_of(make_bundle(tmp_path, "[" * 100000 + "]" * 100000))


def test_parse_process_for_exec():
    p = parse_process({"args": ["ls", "-l"], "cwd": "/tmp", "env": ["A=1"], "terminal": True,
                       "consoleSize": {"height": 40, "width": 120}, "user": {"uid": 5}})
    assert (p.args, p.cwd, p.env, p.terminal, p.console_size, p.user.uid, p.user.gid) == (
        ["ls", "-l"], "/tmp", ["A=1"], True, (40, 120), 5, 0)
    with pytest.raises(SpecError, match=r"^process\.args: must not be empty$"):
        parse_process({"args": [], "cwd": "/"})
    with pytest.raises(SpecError, match=r"^process: must be an object, not an array$"):
        parse_process([])
    with pytest.raises(SpecError, match=r"^process\.cwd: missing$"):
        parse_process({"args": ["x"]})


# --- random input never raises anything but SpecError ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) |
    st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


def _paths(obj, prefix=()):
    """Every (container, key) position inside obj."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return
    for k, v in items:
        yield prefix + (k,)
        yield from _paths(v, prefix + (k,))


SPEC_PATHS = list(_paths(full_config()))
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_quietly(bundle):
    try:
        s = load_bundle(bundle)
    except SpecError as e:
        assert "\n" not in str(e)
        return None
    return s


@SETTINGS
@given(value=json_values)
def test_random_json_document(tmp_path, value):
    _load_quietly(make_bundle(tmp_path, json.dumps(value)))


@SETTINGS
@given(replacements=st.lists(st.tuples(st.sampled_from(SPEC_PATHS), json_values), min_size=1, max_size=3))
def test_random_values_in_a_valid_config(tmp_path, replacements):
    c = full_config()
    for path, value in replacements:
        obj = c
        try:
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue   # an earlier replacement changed the shape
    s = _load_quietly(make_bundle(tmp_path, c))
    if s is not None:   # whatever loads has the promised types
        assert isinstance(s.root_path, str) and os.path.isabs(s.root_path)
        assert all(isinstance(m.destination, str) and m.destination.startswith("/") for m in s.mounts)
        if s.process is not None:
            assert s.process.args and all(isinstance(a, str) for a in s.process.args)
            assert all(isinstance(g, int) and not isinstance(g, bool) for g in s.process.user.additional_gids)


@SETTINGS
@given(data=st.binary(max_size=64))
def test_random_bytes(tmp_path, data):
    _load_quietly(make_bundle(tmp_path, data))


# --- `pyrunsc spec` and `pyrunsc features` ---

def test_spec_command_writes_a_loadable_bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    r = CliRunner().invoke(info.spec, ["--bundle", str(tmp_path)])
    assert r.exit_code == 0, r.output
    with open(tmp_path / "config.json") as f:
        assert json.load(f) == default_spec()
    assert load_bundle(str(tmp_path)).process.args == ["sh"]


def test_spec_command_refuses_to_overwrite(tmp_path):
    (tmp_path / "config.json").write_text("mine")
    r = CliRunner().invoke(info.spec, ["-b", str(tmp_path), "--rootless"])
    assert r.exit_code == 1
    assert r.output.strip() == "pyrunsc: File config.json exists. Remove it first"
    assert (tmp_path / "config.json").read_text() == "mine"


def test_spec_command_missing_bundle(tmp_path):
    r = CliRunner().invoke(info.spec, ["-b", str(tmp_path / "nope")])
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and "No such file or directory" in r.output


def test_features_command():
    from pyrunsc.oci.assemble import _split_options
    r = CliRunner().invoke(info.features, [])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["ociVersionMin"] == "1.0.0" and doc["ociVersionMax"] == "1.1.0"
    assert doc["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                            "poststop"]
    assert doc["linux"]["capabilities"] == list(CAPABILITIES) and CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert {"pid", "network", "mount", "ipc", "uts", "user", "cgroup"} <= set(doc["linux"]["namespaces"])
    assert doc["annotations"]["io.github.pyrunsc.platform"] == "ptrace"
    # every mount option listed is one assemble takes as a flag or ignores, none it passes on as data
    for opt in doc["mountOptions"]:
        assert _split_options([opt])[1] == b"", opt
    for opt in ("ro", "rw", "nosuid", "nodev", "noexec", "bind", "rbind", "rprivate"):
        assert opt in doc["mountOptions"]


def test_raw_is_the_parsed_json(tmp_path):
    # raw is the parsed JSON, untouched by the checks
    c = full_config()
    s = load_bundle(make_bundle(tmp_path, copy.deepcopy(c)))
    assert s.raw == c
