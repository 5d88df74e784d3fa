"""An OCI bundle's config.json (a parsed spec.Spec) as a sandbox: the
sandbox's Config, and each process's argv, environment and credentials."""
from __future__ import annotations

import os

from sentry.task import Credentials
from vfs.mounts import TmpfsOptions, parse_tmpfs, split_data
from vfs.path import MS_RDONLY

from ..network import NetworkConfig
from ..sandbox import _FLAG_WORDS, BindMount, Config, FsMount, TmpfsMount
from .options import DEFAULT_PATH, RuntimeOptions
from .spec import Process, Spec, SpecError

# mount options that only concern propagation or the host: accepted, no effect
_IGNORED_OPTIONS = {b"private", b"rprivate", b"shared", b"rshared", b"slave", b"rslave",
                    b"unbindable", b"runbindable", b"bind", b"rbind", b"defaults", b"tmpcopyup",
                    b"notmpcopyup", b"copy-symlink", b"idmap", b"ridmap", b"Z", b"z", b"U"}
# kinds the sandbox makes itself (the host never mounts anything)
_OWN_TYPES = {"proc", "sysfs", "devpts", "tmpfs", "mqueue", "cgroup", "cgroup2", "devtmpfs"}


def _split_options(options: list[str]) -> tuple[int, bytes, bool]:
    """(MS_* flags, the filesystem's own options, is a bind)."""
    flags, rest, bind = 0, [], False
    for text in options:
        word = os.fsencode(text)
        if word in (b"bind", b"rbind"):
            bind = True
        elif word in _FLAG_WORDS:
            on, off = _FLAG_WORDS[word]
            flags = (flags | on) & ~off
        elif word not in _IGNORED_OPTIONS:
            rest.append(word)
    return flags, b",".join(rest), bind


def mounts_of(spec: Spec) -> list:
    out = []
    for m in spec.mounts:
        guest = os.fsencode(os.path.normpath(m.destination))
        flags, data, bind = _split_options(m.options)
        if bind or m.type in ("bind", "none", ""):
            if not bind and m.type not in ("bind",):
                raise SpecError(f"mounts: {m.destination}: type {m.type!r} without bind option")
            source = m.source if os.path.isabs(m.source) else os.path.join(spec.bundle, m.source)
            if not os.path.exists(source):
                raise SpecError(f"mounts: {m.destination}: source {m.source}: no such file or directory")
            out.append(BindMount(os.path.realpath(source), guest, rw=not flags & MS_RDONLY))
        elif m.type == "tmpfs" and guest != b"/dev":
            _, _, opts, _ = split_data(data)
            try:
                options = parse_tmpfs(opts) if opts else TmpfsOptions()
            except OSError:
                raise SpecError(f"mounts: {m.destination}: bad tmpfs options {','.join(m.options)!r}") from None
            out.append(TmpfsMount(guest, flags, options))
        elif m.type in _OWN_TYPES:
            # /dev is the sandbox's devtmpfs (its device nodes), whatever the bundle says
            fstype = "devtmpfs" if guest == b"/dev" else m.type
            if fstype == "devtmpfs":
                data = b""
            elif fstype == "devpts":  # newinstance, ptmxmode=, mode=, gid= are taken; nothing else
                data = b",".join(w for w in data.split(b",") if w.split(b"=")[0] in
                                 (b"newinstance", b"ptmxmode", b"mode", b"gid", b"uid", b"max"))
            elif fstype in ("proc", "sysfs", "mqueue", "cgroup", "cgroup2"):
                data = b""
            out.append(FsMount(guest, fstype, flags, data))
        else:
            raise SpecError(f"mounts: {m.destination}: unsupported type {m.type!r}")
    return out


def sandbox_config(spec: Spec, opts: RuntimeOptions) -> Config:
    net = NetworkConfig(mode=opts.network)
    try:
        net.validate()
    except ValueError as e:
        raise SpecError(str(e)) from None
    return Config(
        root=spec.root_path, env=[], strace=opts.strace, debug_log=opts.debug_log, console=False,
        strace_syscalls=opts.strace_syscalls, strace_log_size=opts.strace_log_size,
        overlay=opts.overlay == "tmpfs", network=net, fs_mounts=mounts_of(spec),
        root_readonly=spec.root_readonly,
        masked_paths=[os.fsencode(p) for p in spec.masked_paths],
        readonly_paths=[os.fsencode(p) for p in spec.readonly_paths],
        hostname=os.fsencode(spec.hostname or "pyrunsc"))


def environment(process: Process) -> list[bytes]:
    env = [os.fsencode(e) for e in process.env]
    if not any(e.startswith(b"PATH=") for e in env):
        env.append(os.fsencode(DEFAULT_PATH))  # runc's default when the bundle sets none
    if process.terminal and not any(e.startswith(b"TERM=") for e in env):
        env.append(b"TERM=xterm")
    if not any(e.startswith(b"HOME=") for e in env):
        env.append(b"HOME=/root" if process.user.uid == 0 else b"HOME=/")
    return env


def credentials(process: Process) -> Credentials:
    u = process.user
    creds = Credentials(uid=u.uid, euid=u.uid, suid=u.uid, fsuid=u.uid,
                        gid=u.gid, egid=u.gid, sgid=u.gid, fsgid=u.gid,
                        groups=tuple(u.additional_gids))
    # runc sets them, then execs the program: the exec transformation follows
    creds.set_oci_capabilities(process.capabilities, no_new_privs=process.no_new_privileges)
    return creds


def apply_process_limits(tg, process: Process) -> None:
    """rlimits, no_new_privs and umask of a freshly loaded process."""
    for r in process.rlimits:
        tg.rlimits[r.resource] = (r.soft, r.hard)
    tg.no_new_privs = process.no_new_privileges
    if process.user.umask is not None:
        tg.fs.umask = process.user.umask & 0o777
