"""An OCI bundle's config.json, checked and converted (runtime-spec config.md
and config-linux.md). Every problem is a SpecError whose one-line message
names the field; keys we do not read are ignored, as runc ignores them.
JSON null counts as absent (Go's decoder gives the zero value for it)."""
from __future__ import annotations

import os

from sentry.caps import NUMBERS


class SpecError(Exception):
    """One-line message for the user."""


RLIM_INFINITY = 2**64 - 1   # the spec's uint64 "unlimited" (Python's resource module says -1)
_UINT32 = 2**32 - 1

# Linux's capability numbers by the names the spec spells (the sentry's table)
CAPABILITIES: dict[str, int] = NUMBERS
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
RLIMIT_TYPES = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
                "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE",
                "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING",
                "RLIMIT_STACK")
_RLIMIT_NUMBERS = {"RLIMIT_LOCKS": 10}   # the one Python's resource module lacks
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


# Plain classes, not @dataclass: `create` loads the bundle before Docker's
# prestart hook can start, and dataclasses (with inspect, re, ...) costs ~20 ms.

class _Record:
    """__eq__ and __repr__ over the class's _fields, as @dataclass wrote them."""
    _fields: tuple[str, ...] = ()
    __hash__ = None   # mutable and compared by value

    def _values(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{self.__class__.__qualname__}({fields})"


class Rlimit(_Record):
    _fields = ("type", "soft", "hard")

    def __init__(self, type: str, soft: int, hard: int):
        self.type = type      # "RLIMIT_NOFILE"
        self.soft = soft      # 0..2**64-1 (RLIM_INFINITY: unlimited)
        self.hard = hard

    @property
    def resource(self) -> int:
        import resource   # lazy: only the sandbox sets rlimits, not the quick commands
        return _RLIMIT_NUMBERS.get(self.type) or getattr(resource, self.type)


class User(_Record):
    _fields = ("uid", "gid", "additional_gids", "umask")

    def __init__(self, uid: int = 0, gid: int = 0, additional_gids: list[int] | None = None,
                 umask: int | None = None):
        self.uid = uid
        self.gid = gid
        self.additional_gids = [] if additional_gids is None else additional_gids
        self.umask = umask


class Process(_Record):
    _fields = ("args", "env", "cwd", "user", "terminal", "console_size", "rlimits", "no_new_privileges",
               "capabilities", "oom_score_adj")

    def __init__(self, args: list[str], env: list[str] | None = None, cwd: str = "/", user: User | None = None,
                 terminal: bool = False, console_size: tuple[int, int] | None = None,
                 rlimits: list[Rlimit] | None = None, no_new_privileges: bool = False,
                 capabilities: dict[str, list[str]] | None = None, oom_score_adj: int | None = None):
        self.args = args
        self.env = [] if env is None else env
        self.cwd = cwd
        self.user = User() if user is None else user
        self.terminal = terminal
        self.console_size = console_size          # (height, width)
        self.rlimits = [] if rlimits is None else rlimits
        self.no_new_privileges = no_new_privileges
        self.capabilities = {} if capabilities is None else capabilities   # set name -> ["CAP_CHOWN", ...]
        self.oom_score_adj = oom_score_adj


class Mount(_Record):
    _fields = ("destination", "type", "source", "options")

    def __init__(self, destination: str, type: str, source: str, options: list[str] | None = None):
        self.destination = destination
        self.type = type          # "" when the bundle gave none (a bind mount by its options)
        self.source = source      # as written: a relative bind source is relative to the bundle
        self.options = [] if options is None else options


class Hook(_Record):
    _fields = ("path", "args", "env", "timeout")

    def __init__(self, path: str, args: list[str] | None = None, env: list[str] | None = None,
                 timeout: int | None = None):
        self.path = path
        self.args = [] if args is None else args
        self.env = [] if env is None else env
        self.timeout = timeout


class Spec(_Record):
    _fields = ("oci_version", "bundle", "process", "root_path", "root_readonly", "hostname", "domainname",
               "mounts", "namespaces", "masked_paths", "readonly_paths", "sysctl", "annotations", "hooks", "raw")

    def __init__(self, oci_version: str, bundle: str, process: Process | None, root_path: str,
                 root_readonly: bool = False, hostname: str = "", domainname: str = "",
                 mounts: list[Mount] | None = None, namespaces: list[tuple[str, str | None]] | None = None,
                 masked_paths: list[str] | None = None, readonly_paths: list[str] | None = None,
                 sysctl: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
                 hooks: dict[str, list[Hook]] | None = None, raw: dict | None = None):
        self.oci_version = oci_version
        self.bundle = bundle              # absolute bundle directory
        self.process = process
        self.root_path = root_path        # absolute host path
        self.root_readonly = root_readonly
        self.hostname = hostname
        self.domainname = domainname
        self.mounts = [] if mounts is None else mounts
        self.namespaces = [] if namespaces is None else namespaces   # (type, path or None)
        self.masked_paths = [] if masked_paths is None else masked_paths
        self.readonly_paths = [] if readonly_paths is None else readonly_paths
        self.sysctl = {} if sysctl is None else sysctl
        self.annotations = {} if annotations is None else annotations
        self.hooks = {} if hooks is None else hooks
        self.raw = {} if raw is None else raw


# --- typed readers: each takes the value and the field's name for the message ---

def _fail(where: str, problem: str):
    raise SpecError(_one_line(f"{where}: {problem}"))


def _one_line(text: str) -> str:
    """Control characters (a newline in a key or path) escaped: messages stay one line."""
    return text.translate(_CONTROL_ESCAPES)


_CONTROL_ESCAPES = {c: repr(chr(c))[1:-1] for c in (*range(0x20), 0x7f)}   # "\n", "\x00", ...


def _str(v, where: str) -> str:
    if not isinstance(v, str):
        _fail(where, f"must be a string, not {_kind(v)}")
    if "\0" in v:
        _fail(where, "contains a NUL byte")
    try:
        v.encode()
    except UnicodeEncodeError:
        _fail(where, "is not valid UTF-8")
    return v


def _bool(v, where: str) -> bool:
    if not isinstance(v, bool):
        _fail(where, f"must be true or false, not {_kind(v)}")
    return v


def _int(v, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        _fail(where, f"must be an integer, not {_kind(v)}")
    if not lo <= v <= hi:
        _fail(where, f"{v} is out of range {lo}..{hi}")
    return v


def _list(v, where: str) -> list:
    if not isinstance(v, list):
        _fail(where, f"must be an array, not {_kind(v)}")
    return v


def _obj(v, where: str) -> dict:
    if not isinstance(v, dict):
        _fail(where, f"must be an object, not {_kind(v)}")
    return v


def _strs(v, where: str) -> list[str]:
    return [_str(x, f"{where}[{i}]") for i, x in enumerate(_list(v, where))]


def _strmap(v, where: str) -> dict[str, str]:
    return {_str(k, f"{where} key"): _str(x, f"{where}.{k}") for k, x in _obj(v, where).items()}


def _abspath(v, where: str) -> str:
    p = _str(v, where)
    if not p.startswith("/"):
        _fail(where, f"{p!r} is not an absolute path")
    return p


def _kind(v) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(v), type(v).__name__)


def _get(obj: dict, key: str, where: str, read, *args, default=None, required=False):
    """obj[key] read by `read`, or default when absent or null."""
    name = f"{where}.{key}" if where else key
    v = obj.get(key)
    if v is None:
        if required:
            _fail(name, "missing")
        return default
    return read(v, name, *args)


# --- the parts of config.json ---

def _env(v, where: str) -> list[str]:
    env = _strs(v, where)
    for i, e in enumerate(env):
        if "=" not in e or e.startswith("="):
            _fail(f"{where}[{i}]", f"{e!r} is not KEY=VALUE")
    return env


def _user(v, where: str) -> User:
    obj = _obj(v, where)
    gids = _get(obj, "additionalGids", where, _list, default=[])
    return User(uid=_get(obj, "uid", where, _int, 0, _UINT32, default=0),
                gid=_get(obj, "gid", where, _int, 0, _UINT32, default=0),
                additional_gids=[_int(g, f"{where}.additionalGids[{i}]", 0, _UINT32)
                                 for i, g in enumerate(gids)],
                umask=_get(obj, "umask", where, _int, 0, _UINT32))


def _console_size(v, where: str) -> tuple[int, int]:
    obj = _obj(v, where)
    return (_get(obj, "height", where, _int, 0, _UINT32, required=True),
            _get(obj, "width", where, _int, 0, _UINT32, required=True))


def _rlimits(v, where: str) -> list[Rlimit]:
    out: list[Rlimit] = []
    for i, item in enumerate(_list(v, where)):
        name = f"{where}[{i}]"
        obj = _obj(item, name)
        kind = _get(obj, "type", name, _str, required=True)
        if kind not in RLIMIT_TYPES:
            _fail(f"{name}.type", f"unknown rlimit {kind!r}")
        if any(r.type == kind for r in out):
            _fail(f"{name}.type", f"{kind} given twice")
        soft = _get(obj, "soft", name, _int, 0, RLIM_INFINITY, default=0)
        hard = _get(obj, "hard", name, _int, 0, RLIM_INFINITY, default=0)
        if soft > hard:
            _fail(name, f"{kind} soft limit {soft} is above the hard limit {hard}")
        out.append(Rlimit(kind, soft, hard))
    return out


def _capabilities(v, where: str) -> dict[str, list[str]]:
    obj = _obj(v, where)
    out = {}
    for s in CAPABILITY_SETS:
        names = _get(obj, s, where, _strs)
        if names is None:
            continue
        for i, n in enumerate(names):
            if n not in CAPABILITIES:
                _fail(f"{where}.{s}[{i}]", f"unknown capability {n!r}")
        out[s] = names
    return out


def parse_process(obj) -> Process:
    """config.json's process object (also `exec --process FILE`)."""
    where = "process"
    obj = _obj(obj, where)
    args = _get(obj, "args", where, _strs, required=True)
    if not args:
        _fail(f"{where}.args", "must not be empty")
    return Process(
        args=args,
        env=_get(obj, "env", where, _env, default=[]),
        cwd=_get(obj, "cwd", where, _abspath, required=True),
        user=_get(obj, "user", where, _user, default=User()),
        terminal=_get(obj, "terminal", where, _bool, default=False),
        console_size=_get(obj, "consoleSize", where, _console_size),
        rlimits=_get(obj, "rlimits", where, _rlimits, default=[]),
        no_new_privileges=_get(obj, "noNewPrivileges", where, _bool, default=False),
        capabilities=_get(obj, "capabilities", where, _capabilities, default={}),
        oom_score_adj=_get(obj, "oomScoreAdj", where, _int, -1000, 1000))


def _mounts(v, where: str) -> list[Mount]:
    out = []
    for i, item in enumerate(_list(v, where)):
        name = f"{where}[{i}]"
        obj = _obj(item, name)
        out.append(Mount(destination=_get(obj, "destination", name, _abspath, required=True),
                         type=_get(obj, "type", name, _str, default=""),
                         source=_get(obj, "source", name, _str, default=""),
                         options=_get(obj, "options", name, _strs, default=[])))
    return out


def _namespaces(v, where: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for i, item in enumerate(_list(v, where)):
        name = f"{where}[{i}]"
        obj = _obj(item, name)
        kind = _get(obj, "type", name, _str, required=True)
        if kind not in NAMESPACE_TYPES:
            _fail(f"{name}.type", f"unknown namespace type {kind!r}")
        if any(k == kind for k, _ in out):
            _fail(f"{name}.type", f"namespace {kind} given twice")
        path = _get(obj, "path", name, _abspath)
        out.append((kind, path or None))
    return out


def _hooks(v, where: str) -> dict[str, list[Hook]]:
    obj = _obj(v, where)
    out = {}
    for kind in HOOK_KINDS:
        items = _get(obj, kind, where, _list)
        if items is None:
            continue
        hooks = []
        for i, item in enumerate(items):
            name = f"{where}.{kind}[{i}]"
            h = _obj(item, name)
            timeout = _get(h, "timeout", name, _int, 1, 2**31 - 1)
            hooks.append(Hook(path=_get(h, "path", name, _abspath, required=True),
                              args=_get(h, "args", name, _strs, default=[]),
                              env=_get(h, "env", name, _env, default=[]),
                              timeout=timeout))
        out[kind] = hooks
    return out


def _oci_version(v, where: str) -> str:
    version = _str(v, where)
    # the test of re's r"(\d+)(\.|$)" (digits: any Unicode decimal digit; $ also before a final "\n")
    n = 0
    while n < len(version) and version[n].isdecimal():
        n += 1
    if n == 0 or version[n:] not in ("", "\n") and version[n] != ".":
        _fail(where, f"{version!r} is not a version")
    if int(version[n - 1]) != 1 or any(int(d) for d in version[:n - 1]):   # the number is not 1
        _fail(where, f"{version} is not supported (pyrunsc runs runtime-spec 1.x)")
    return version


def _root(v, where: str, bundle: str) -> tuple[str, bool]:
    obj = _obj(v, where)
    path = _get(obj, "path", where, _str, required=True)
    if not path:
        _fail(f"{where}.path", "must not be empty")
    if os.path.isabs(path):
        full = os.path.normpath(path)
    else:
        full = os.path.normpath(os.path.join(bundle, path))
        if full != bundle and not full.startswith(bundle.rstrip("/") + "/"):
            _fail(f"{where}.path", f"{path!r} is outside the bundle")
    if not os.path.isdir(full):
        _fail(f"{where}.path", f"{full} is not an existing directory")
    return full, _get(obj, "readonly", where, _bool, default=False)


def parse_config(obj, bundle: str) -> Spec:
    """A parsed config.json of the bundle directory `bundle` (absolute)."""
    obj = _obj(obj, "config.json")
    version = _get(obj, "ociVersion", "", _oci_version, required=True)
    root = obj.get("root")
    if root is None:
        _fail("root", "missing")
    root_path, readonly = _root(root, "root", bundle)
    linux = _get(obj, "linux", "", _obj, default={})
    return Spec(
        oci_version=version, bundle=bundle,
        process=_get(obj, "process", "", lambda v, w: parse_process(v)),
        root_path=root_path, root_readonly=readonly,
        hostname=_get(obj, "hostname", "", _str, default=""),
        domainname=_get(obj, "domainname", "", _str, default=""),
        mounts=_get(obj, "mounts", "", _mounts, default=[]),
        namespaces=_get(linux, "namespaces", "linux", _namespaces, default=[]),
        masked_paths=_get(linux, "maskedPaths", "linux", _strs, default=[]),
        readonly_paths=_get(linux, "readonlyPaths", "linux", _strs, default=[]),
        sysctl=_get(linux, "sysctl", "linux", _strmap, default={}),
        annotations=_get(obj, "annotations", "", _strmap, default={}),
        hooks=_get(obj, "hooks", "", _hooks, default={}),
        raw=obj)


def load_bundle(bundle: str) -> Spec:
    """Read and check bundle/config.json; SpecError on anything wrong."""
    bundle = os.path.abspath(bundle)
    try:
        return _load(bundle)
    except SpecError as e:
        raise SpecError(_one_line(str(e))) from None


def _load(bundle: str) -> Spec:
    try:
        obj = _read_json(os.path.join(bundle, "config.json"))
    except FileNotFoundError:
        raise SpecError(f"bundle {bundle}: no config.json") from None
    except (OSError, ValueError) as e:   # ValueError: a NUL in the bundle path
        raise SpecError(f"bundle {bundle}: config.json: {getattr(e, 'strerror', None) or e}") from None
    except SpecError as e:
        raise SpecError(f"bundle {bundle}: config.json: {e}") from None
    try:
        return parse_config(obj, bundle)
    except SpecError as e:
        raise SpecError(f"bundle {bundle}: config.json: {e}") from None


def _read_json(path: str):
    """The JSON document in the file at path. OSError, or ValueError for a NUL
    in path, when it cannot be read; SpecError when it is not JSON."""
    with open(path, "rb") as f:
        data = f.read()
    from . import jsonlite   # not json, whose decoder compiles regexes (imports re): ~10 ms
    try:
        return jsonlite.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 (byte {e.start})") from None
    except ValueError as e:
        if hasattr(e, "lineno"):   # the C scanner's own errors are json.JSONDecodeError
            raise SpecError(f"bad JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        raise SpecError(f"bad JSON: {e}") from None
    except RecursionError:
        raise SpecError("nested too deeply") from None


_DEFAULT_MOUNTS = [
    ("/proc", "proc", "proc", None),
    ("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
    ("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
    ("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
    ("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
    ("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
    ("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", "ro"]),
]
_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec(args: list[str] | None = None, terminal: bool = True) -> dict:
    """The config.json `pyrunsc spec` writes: runc's template (runc 1.1 `spec`)."""
    mounts = []
    for dest, kind, source, options in _DEFAULT_MOUNTS:
        m = {"destination": dest, "type": kind, "source": source}
        if options:
            m["options"] = list(options)
        mounts.append(m)
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args else ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {s: list(_DEFAULT_CAPS) for s in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pyrunsc",
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
