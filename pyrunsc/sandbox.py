"""Assembling a sandbox: the gofer and the filesystem tree, the platform,
the kernel with its first process, and a clean end."""
from __future__ import annotations

import errno
import fcntl
import os
import stat as S
import sys
from dataclasses import dataclass, field

from platforms.platform import Unsupported
from platforms.ptrace.platform import PtracePlatform
from sentry.console import Console
from sentry.fdtable import FDTable
from sentry.fifo import open_end as open_fifo_end
from sentry.kernel import InternalError, Kernel
from sentry.monitor import chain as monitor_chain
from sentry.procsource import KernelProcSource
from sentry.pty import PtyRegistry
from sentry.syscalls import table as syscall_table
from .network import NetworkConfig, NetworkError, setup_network
from .oci.options import wait_status_to_exit_code
from vfs import ops
from vfs.dev import DevFS, open_device
from vfs.devpts import DevPtsFS
from vfs.file import O_NOCTTY, O_RDONLY, O_RDWR, O_WRONLY, FileDescription, HostFileImpl
from vfs.gofer import launch_gofer
from vfs.inode import fserr
from vfs.mounts import FilesystemTypes, TmpfsOptions, make_tmpfs, parse_tmpfs, split_data
from vfs.overlay import OverlayFS
from vfs.path import (MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_NOSYMFOLLOW,
                      MS_RDONLY, MS_RELATIME, MS_STRICTATIME, Creds, Dentry, Location, MountTree,
                      PathContext)
from vfs.proc import ProcFS
from vfs.sysfs import SysFS
from vfs.tmpfs import TmpFS


@dataclass
class BindMount:
    """--mount HOST:GUEST[:ro|rw]: a host directory or file served by its own gofer."""
    host: str
    guest: bytes
    rw: bool = False


@dataclass
class TmpfsMount:
    """--tmpfs GUEST[:OPTIONS]: mount flags (ro, noexec, ...) and tmpfs options."""
    guest: bytes
    flags: int = MS_NOSUID | MS_NODEV
    options: TmpfsOptions = field(default_factory=TmpfsOptions)


def _guest_path(text: str, spec: str) -> bytes:
    path = os.fsencode(text)
    if not path.startswith(b"/"):
        raise ValueError(f"{spec!r}: {text!r} must be absolute (a path inside the sandbox)")
    if not path.strip(b"/"):
        raise ValueError(f"{spec!r}: cannot mount over the sandbox root (use --root)")
    if len(path) >= 4096 or any(len(c) > 255 for c in path.split(b"/")):
        raise ValueError(f"{spec!r}: name too long")
    return path


def parse_bind(spec: str) -> BindMount:
    """HOST:GUEST[:ro|rw] (ValueError saying what is wrong)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"{spec!r} is not HOST:GUEST[:ro|rw]")
    mode = parts[2] if len(parts) == 3 else "ro"
    if mode not in ("ro", "rw"):
        raise ValueError(f"{spec!r}: unknown option {mode!r} (ro or rw)")
    host = os.path.realpath(parts[0])
    if not os.path.exists(host):
        raise ValueError(f"{spec!r}: {parts[0]}: no such file or directory on the host")
    st = os.stat(host)
    if not (S.S_ISDIR(st.st_mode) or S.S_ISREG(st.st_mode)):
        raise ValueError(f"{spec!r}: {parts[0]} is neither a directory nor a regular file")
    return BindMount(host, _guest_path(parts[1], spec), mode == "rw")


def _served(b: BindMount) -> tuple[tuple[str, bool], bool]:
    """((directory its gofer serves, rw), whether the bind is of that directory)."""
    is_dir = os.path.isdir(b.host)
    return (b.host if is_dir else os.path.dirname(b.host), b.rw), is_dir


# mount(8)'s flag words a --tmpfs may carry besides tmpfs's own options
_FLAG_WORDS = {
    b"ro": (MS_RDONLY, 0), b"rw": (0, MS_RDONLY), b"nosuid": (MS_NOSUID, 0), b"suid": (0, MS_NOSUID),
    b"nodev": (MS_NODEV, 0), b"dev": (0, MS_NODEV), b"noexec": (MS_NOEXEC, 0), b"exec": (0, MS_NOEXEC),
    b"noatime": (MS_NOATIME, 0), b"atime": (0, MS_NOATIME), b"relatime": (MS_RELATIME, 0),
    b"strictatime": (MS_STRICTATIME, 0), b"nodiratime": (MS_NODIRATIME, 0),
    b"nosymfollow": (MS_NOSYMFOLLOW, 0),
}


def parse_tmpfs_spec(spec: str) -> TmpfsMount:
    """GUEST[:OPTIONS], OPTIONS like mount -o: size=64m,mode=1777,noexec."""
    guest, _, text = spec.partition(":")
    m = TmpfsMount(_guest_path(guest, spec))
    rest = []
    for word in os.fsencode(text).split(b","):
        if word in _FLAG_WORDS:
            on, off = _FLAG_WORDS[word]
            m.flags = (m.flags | on) & ~off
        elif word:
            rest.append(word)
    _, _, opts, _ = split_data(b",".join(rest))
    try:
        m.options = parse_tmpfs(opts)
    except OSError:
        raise ValueError(f"{spec!r}: bad tmpfs options {text!r}") from None
    return m


@dataclass
class FsMount:
    """A filesystem of the sandbox's own mounted at guest (OCI config.json
    mounts): proc, sysfs, devtmpfs, devpts, tmpfs, or an empty read-only
    stand-in for the kinds the sandbox has no filesystem for (mqueue,
    cgroup). flags are MS_* words, data the filesystem's options."""
    guest: bytes
    fstype: str
    flags: int = 0
    data: bytes = b""


EMPTY_STANDINS = ("mqueue", "cgroup", "cgroup2")


@dataclass
class Config:
    root: str = "/"
    cwd: str | None = None
    env: list[str] | None = None   # None: the caller's environment
    strace: bool = False
    strace_syscalls: list[str] | None = None   # trace only these (implies strace)
    strace_log_size: int = 1024    # bytes of strings and buffers strace shows
    debug_log: str | None = None
    overlay: bool = True           # writes stay in the sandbox (tmpfs upper); False: rw root
    mounts: list[BindMount] = field(default_factory=list)
    tmpfs: list[TmpfsMount] = field(default_factory=list)
    extra_env: list[str] = field(default_factory=list)
    console: bool = True           # a terminal on stdin gets a sandbox pty (sentry.console)
    network: NetworkConfig = field(default_factory=NetworkConfig)  # --network, -p, --dns
    # OCI bundles: the mounts replace the default set (/proc /dev /dev/pts
    # /dev/shm /sys /tmp); then masked paths are hidden and read-only ones bound read-only
    fs_mounts: list | None = None   # FsMount, BindMount and TmpfsMount, in config order
    root_readonly: bool = False
    masked_paths: list[bytes] = field(default_factory=list)
    readonly_paths: list[bytes] = field(default_factory=list)
    hostname: bytes = b"pyrunsc"
    # more sentry.monitor.SyscallMonitors (coverage, hooks), in order, then
    # strace: it shows the arguments the handler ran with and the result the guest got
    monitors: list = field(default_factory=list)
    platform: str = "ptrace"       # or "kvm" (platforms/kvm: static single-threaded programs)
    kvm_time_limit: float | None = 600.0  # kvm: seconds a run may take (env PYRUNSC_KVM_TIME_LIMIT)


class SandboxError(Exception):
    """A problem the user caused or can fix (exit code in .code)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _pick_cpu() -> int:
    cpus = sorted(os.sched_getaffinity(0))
    try:
        cur = os.sched_getcpu() if hasattr(os, "sched_getcpu") else cpus[0]
    except OSError:
        cur = cpus[0]
    return cur if cur in cpus else cpus[0]




class Sandbox:
    def __init__(self, config: Config):
        self.config = config
        self.gofer = None
        self.gofers = []  # the root's and one per --mount
        self._file_gofers = {}  # (directory, rw) -> the gofer serving files bound from it
        self.platform = None
        self.kernel = None
        self.console = None
        self._console_rdev = None
        self._log = None
        self.network = None  # pyrunsc.network.NetworkHandle
        self.internal_error = None  # the sentry's InternalError that ended run(), if one did
        self._launches = {}  # gofers not yet connected: None (the root's) or (served, is_dir) -> [GoferLaunch]

    def _launch_gofers(self) -> None:
        """Start the root's gofer and every bind mount's at once: each
        sets itself up (a few ms of confinement) while the sentry builds
        the rest. A bind mount's that fails to start is retried, and
        reported, when it is mounted."""
        cfg = self.config
        self._launches[None] = [launch_gofer(cfg.root, rw=not cfg.overlay)]
        mounts = cfg.fs_mounts if cfg.fs_mounts is not None else cfg.mounts
        for b in (m for m in mounts if isinstance(m, BindMount)):
            key = _served(b)
            if key[1] or key not in self._launches:  # files of one directory share a gofer
                try:
                    self._launches.setdefault(key, []).append(launch_gofer(*key[0]))
                except OSError:
                    pass

    def _make_filesystems(self) -> None:
        """The sandbox's own filesystems (no gofer needed)."""
        # procfs reads the kernel's state; the kernel is bound once it exists
        self.proc_source = KernelProcSource(None)
        self.procfs = ProcFS(self.proc_source)
        self.devfs = DevFS()
        self.ptys = PtyRegistry()
        self.sysfs = SysFS(os.cpu_count() or 1)
        ops.device_opener = lambda rdev, flags=O_NOCTTY: self.ptys.open(rdev, flags) or open_device(rdev)
        self.devfs.tty_opener = self.ptys.open_controlling  # /dev/tty
        ops.fifo_opener = open_fifo_end

    def _build_mounts(self) -> MountTree:
        cfg = self.config
        self.gofer = self._launches.pop(None)[0].connect()
        self.gofers.append(self.gofer)
        root_fs = OverlayFS(self.gofer.fs, TmpFS()) if cfg.overlay else self.gofer.fs
        tree = MountTree(root_fs, source="none")
        if cfg.root_readonly:
            tree.root.mount.flags |= MS_RDONLY
        # one sysfs and one devtmpfs superblock, as Linux has per network namespace and system
        tree.fstypes = FilesystemTypes(proc=self._new_procfs, sysfs=lambda: self.sysfs,
                                       devpts=lambda: DevPtsFS(self.ptys), devtmpfs=lambda: self.devfs)
        if cfg.fs_mounts is not None:
            for m in cfg.fs_mounts:  # config order: parents come first there
                self._mount_one(tree, m)
            self._mask(tree)
            return tree
        tree.mount_path(b"/proc", self.procfs, MS_NOSUID | MS_NODEV | MS_NOEXEC, "proc")
        tree.mount_path(b"/dev", self.devfs, MS_NOSUID, "devtmpfs")
        tree.mount_path(b"/dev/pts", DevPtsFS(self.ptys), MS_NOSUID | MS_NOEXEC, "devpts")
        tree.mount_path(b"/dev/shm", TmpFS(), MS_NOSUID | MS_NODEV, "shm")
        tree.mount_path(b"/sys", self.sysfs, MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "sysfs")
        tree.mount_path(b"/tmp", TmpFS(), MS_NOSUID | MS_NODEV, "tmpfs")
        # the user's mounts, parents before what is mounted inside them
        user = sorted(cfg.tmpfs + cfg.mounts, key=lambda m: len(m.guest.strip(b"/").split(b"/")))
        for m in user:
            self._mount_one(tree, m)
        return tree

    def _mount_one(self, tree: MountTree, m) -> None:
        try:
            if isinstance(m, BindMount):
                self._bind_host(tree, m)
                return
            at = self._mountpoint(tree, m.guest, S.S_IFDIR)
            if isinstance(m, TmpfsMount):
                tree.mount(at, make_tmpfs(m.options), m.flags, "tmpfs", options=m.options.text(),
                           config=m.options)
            elif m.fstype in EMPTY_STANDINS:
                tree.mount(at, TmpFS(), m.flags | MS_RDONLY, m.fstype)
            elif m.fstype == "proc" and not any(x.fs is self.procfs for x in tree.mounts):
                tree.mount(at, self.procfs, m.flags, "proc")  # the first proc mount is the sandbox's own
            else:
                _, _, opts, _ = split_data(m.data)
                fs, text, parsed = tree.fstypes.make(m.fstype.encode(), opts)
                tree.mount(at, fs, m.flags, m.fstype, options=text, config=parsed)
        except OSError as e:
            if isinstance(m, BindMount):
                what = f"--mount {m.host}:"
            elif isinstance(m, TmpfsMount):
                what = "--tmpfs"
            else:
                what = f"mount ({m.fstype}) "
            raise SandboxError(f"pyrunsc: {what}{os.fsdecode(m.guest)}: {e.strerror or e}", 125) from None

    def _mask(self, tree: MountTree) -> None:
        """OCI maskedPaths (an empty read-only directory or /dev/null over
        them) and readonlyPaths (bound read-only onto themselves)."""
        ctx = PathContext(tree.root, tree.root, Creds())
        for path in self.config.masked_paths:
            try:
                at = tree.resolve(ctx, path)
            except OSError:
                continue  # nothing there to hide
            if at.inode.is_dir():
                tree.mount(at, TmpFS(), MS_RDONLY, "tmpfs")
            else:
                tree.bind(at, tree.resolve(ctx, b"/dev/null"))
        for path in self.config.readonly_paths:
            try:
                at = tree.resolve(ctx, path)
            except OSError:
                continue
            for m in tree.subtree(tree.bind(at, at, recursive=True)):
                m.flags |= MS_RDONLY

    def _new_procfs(self) -> ProcFS:
        """Another proc mount: the same processes, the same boot."""
        fs = ProcFS(self.proc_source)
        fs.boot_id = self.procfs.boot_id
        return fs

    def _bind_host(self, tree: MountTree, b: BindMount) -> None:
        """--mount: a gofer serving the host directory, or the directory
        holding the host file (the mount shows only that file)."""
        served, is_dir = _served(b)
        # files of one directory share its gofer (Docker binds three: hosts, hostname, resolv.conf)
        gofer = self._file_gofers.get(served) if not is_dir else None
        if gofer is None:
            launched = self._launches.get((served, is_dir))
            gofer = (launched.pop(0) if launched else launch_gofer(*served)).connect()
            self.gofers.append(gofer)
            if not is_dir:
                self._file_gofers[served] = gofer
        root = None if is_dir else Dentry(b"/", None, gofer.fs.root()).child(
            os.fsencode(os.path.basename(b.host)))
        at = self._mountpoint(tree, b.guest, S.S_IFDIR if is_dir else S.S_IFREG)
        tree.mount(at, gofer.fs, 0 if b.rw else MS_RDONLY, "none", root=root)

    def _mountpoint(self, tree: MountTree, path: bytes, kind: int) -> Location:
        """The location to mount on at path, made if missing: in the
        sandbox's own writable layer (the overlay's upper, a tmpfs) when
        the directory holding it has one, else as a placeholder that exists
        only in the mount tree, so nothing is ever made on the host."""
        ctx = PathContext(tree.root, tree.root, Creds())
        try:
            return tree.resolve(ctx, path)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EACCES):
                raise
            refused = e.errno == errno.EACCES  # it exists, hidden (the gofer refused it)
        head, _, name = path.rstrip(b"/").rpartition(b"/")
        parent = self._mountpoint(tree, head or b"/", S.S_IFDIR)
        if not parent.inode.is_dir():
            raise fserr(errno.ENOTDIR)
        host_fs = {g.fs for g in self.gofers}
        if refused or parent.mount.readonly or parent.mount.fs in host_fs:
            return tree.placeholder(parent, name, kind)
        try:
            if kind == S.S_IFDIR:
                parent.inode.mkdir(name, S.S_IFDIR | 0o755, 0, 0)
            else:
                parent.inode.create(name, S.S_IFREG | 0o644, 0, 0)
        except OSError:  # a filesystem that makes no files (proc, sysfs)
            return tree.placeholder(parent, name, kind)
        parent.dentry.forget(name)
        return tree.child_of(ctx, parent, name)

    def _stdio(self) -> FDTable:
        """The guest's fds 0-2: pyrunsc's own, except that terminals become
        the console's pty (the guest never drives the host terminal)."""
        table = FDTable()
        console = None  # one description for all of them, as a login's 0-2 are
        for fd, mode in ((0, O_RDONLY), (1, O_WRONLY), (2, O_WRONLY)):
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            if self.console is not None and os.isatty(fd) and st.st_rdev == self._console_rdev:
                if console is None:
                    console = FileDescription(self.console.replica(), O_RDWR)
                table.install_at(fd, console)
            else:
                table.install_at(fd, FileDescription(HostFileImpl(fd), mode))
        return table

    def _open_console(self) -> None:
        """When stdin is a terminal, the guest gets a sentry pty relayed to
        it; its output goes to the first of stdout, stderr, stdin that is
        the same terminal. Not when pyrunsc runs in the background of that
        terminal: raw mode would stop it (SIGTTOU), so the terminal is
        passed through as it is."""
        if not self.config.console or not os.isatty(0):
            return
        try:
            if os.tcgetpgrp(0) != os.getpgrp():
                return
        except OSError:
            pass  # not our controlling terminal: no job control to mind
        self._console_rdev = os.fstat(0).st_rdev
        out = next((fd for fd in (1, 2, 0) if os.isatty(fd) and os.fstat(fd).st_rdev == self._console_rdev
                    and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY), None)
        self.console = Console(self.kernel, self.ptys, in_fd=0, out_fd=out)

    def find_program(self, tree: MountTree, ctx: PathContext, cmd: str, env: list[bytes]) -> bytes:
        """execvp's PATH search, inside the sandbox."""
        name = os.fsencode(cmd)
        if b"/" in name:
            return name
        path = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for e in env:
            if e.startswith(b"PATH="):
                path = e[5:]
        denied = False
        for d in path.split(b":"):
            cand = (d or b".") + b"/" + name
            try:
                loc = tree.resolve(ctx, cand)
            except OSError:
                continue
            if S.S_ISREG(loc.inode.stat().mode):
                if loc.inode.stat().mode & 0o111:
                    return cand
                denied = True
        if denied:
            raise SandboxError(f"pyrunsc: {cmd}: Permission denied", 126)
        raise SandboxError(f"pyrunsc: {cmd}: No such file or directory", 127)

    def boot(self) -> MountTree:
        """Everything but the first process: the filesystem tree with its
        gofers, the platform on one CPU, the kernel and its network."""
        cfg = self.config
        if cfg.debug_log:
            self._log = open(cfg.debug_log, "a", buffering=1)
        strace = None
        if cfg.strace or cfg.strace_syscalls:  # the decoder is imported only when tracing
            from sentry.strace import Strace
            try:
                strace = Strace(self._log or sys.stderr, cfg.strace_syscalls, cfg.strace_log_size)
            except ValueError as e:
                raise SandboxError(f"pyrunsc: --strace: {e}", 125) from None
        self._launch_gofers()
        self._make_filesystems()
        syscall_table.handlers()  # loads the syscall handlers' modules while the gofers set up
        tree = self._build_mounts()
        cpu = _pick_cpu()
        os.sched_setaffinity(0, {cpu})  # guests inherit it: one CPU for tracer and traced
        self.platform = self._kvm_platform() if cfg.platform == "kvm" else PtracePlatform(cpu=cpu)
        self.kernel = Kernel(self.platform, tree, monitor=monitor_chain([*cfg.monitors, strace]),
                             debug_log=self._log, hostname=cfg.hostname)
        self.proc_source.bind(self.kernel)
        self.ptys.kernel = self.kernel
        try:
            self.network = setup_network(self.kernel, cfg.network)
        except NetworkError as e:
            raise SandboxError(str(e), 125) from None
        return tree

    def _kvm_platform(self):
        """The KVM platform (imported only when asked for), or the reason
        /dev/kvm cannot give it."""
        from platforms.kvm.platform import KvmPlatform
        from platforms.kvm.vm import KvmError, KvmUnusable
        limit = os.environ.get("PYRUNSC_KVM_TIME_LIMIT")
        limit = float(limit) if limit else self.config.kvm_time_limit
        try:
            return KvmPlatform(time_limit=limit)
        except (KvmError, KvmUnusable) as e:
            raise SandboxError(f"pyrunsc: --platform=kvm: {e}", 125) from None

    def working_directory(self, tree: MountTree, ctx: PathContext, wanted: str | None) -> bytes:
        """The first process's cwd: wanted (an error if missing), else
        pyrunsc's own when the sandbox has it, else /."""
        cwd = os.fsencode(wanted or os.getcwd())
        try:
            loc = tree.resolve(ctx, cwd)
            if not loc.inode.is_dir():
                raise NotADirectoryError
        except OSError:
            if wanted:
                raise SandboxError(f"pyrunsc: --cwd {wanted}: No such directory in the sandbox", 125) from None
            cwd = b"/"
        ctx.cwd = tree.resolve(ctx, cwd)
        return cwd

    def run(self, argv: list[str]) -> int:
        cfg = self.config
        env = [os.fsencode(e) for e in (cfg.env if cfg.env is not None else
               [f"{k}={v}" for k, v in os.environ.items()])]
        env += [os.fsencode(e) for e in cfg.extra_env]
        try:
            tree = self.boot()
            ctx = PathContext(tree.root, tree.root, Creds())
            cwd = self.working_directory(tree, ctx, cfg.cwd)
            prog = self.find_program(tree, ctx, argv[0], env)
            self._open_console()
            try:
                self.kernel.start([os.fsencode(a) for a in argv], env, cwd, self._stdio(), filename=prog)
            except OSError as e:
                code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
                raise SandboxError(f"pyrunsc: {argv[0]}: {os.strerror(e.errno)}", code) from None
            if self.console is not None:
                self.console.attach(self.kernel.init_tg)  # init leads the first session
            status = self.kernel.run()
            return wait_status_to_exit_code(status)
        except Unsupported as e:
            print(f"pyrunsc: the {cfg.platform} platform cannot run this program: it needs {e}", file=sys.stderr)
            return 125
        except InternalError as e:
            self.internal_error = e
            import traceback  # only for this report: it costs every sandbox's start 3 ms
            print(f"pyrunsc: internal error in the sentry: {e}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            return 70
        finally:
            self.close()

    def close(self) -> None:
        if self.console is not None:
            self.console.close()  # the host terminal's mode comes back first
            self.console = None
        if self.kernel is not None:
            self.kernel.shutdown()
        elif self.platform is not None:
            self.platform.close()
        if self.network is not None:
            network, self.network = self.network, None
            network.close()  # after the guests are gone: the namespace and tap go too
        for gofer in self.gofers:
            gofer.close()
        self.gofers = []
        for launched in self._launches.values():
            for launch in launched:
                launch.close()
        self._launches = {}
        self.gofer = None
        if self._log is not None:
            self._log.close()
            self._log = None
