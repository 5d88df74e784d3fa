"""Assembling a sandbox: the gofer and the filesystem tree, the platform,
the kernel with its first process, and a clean end."""
from __future__ import annotations

import errno
import fcntl
import os
import stat as S
import sys
import traceback
from dataclasses import dataclass, field

from platforms.ptrace.platform import PtracePlatform
from sentry.console import Console
from sentry.fdtable import FDTable
from sentry.kernel import InternalError, Kernel
from sentry.procsource import KernelProcSource
from sentry.pty import PtyRegistry
from sentry.strace import Strace
from vfs import ops
from vfs.dev import DevFS, open_device
from vfs.devpts import DevPtsFS
from vfs.file import O_NOCTTY, O_RDONLY, O_RDWR, O_WRONLY, FileDescription, HostFileImpl
from vfs.gofer import start_gofer
from vfs.overlay import OverlayFS
from vfs.path import MS_NODEV, MS_NOEXEC, MS_NOSUID, MountTree, PathContext, Creds
from vfs.proc import ProcFS
from vfs.sysfs import SysFS
from vfs.tmpfs import TmpFS


@dataclass
class Config:
    root: str = "/"
    cwd: str | None = None
    env: list[str] | None = None   # None: the caller's environment
    strace: bool = False
    debug_log: str | None = None
    overlay: bool = True           # writes stay in the sandbox (tmpfs upper)
    extra_env: list[str] = field(default_factory=list)
    console: bool = True           # a terminal on stdin gets a sandbox pty (sentry.console)


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


def wait_status_to_exit_code(status: int) -> int:
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


class Sandbox:
    def __init__(self, config: Config):
        self.config = config
        self.gofer = None
        self.platform = None
        self.kernel = None
        self.console = None
        self._console_rdev = None
        self._log = None

    def _build_mounts(self) -> MountTree:
        self.gofer = start_gofer(self.config.root, rw=not self.config.overlay)
        root_fs = OverlayFS(self.gofer.fs, TmpFS()) if self.config.overlay else self.gofer.fs
        tree = MountTree(root_fs, source="none")
        # procfs reads the kernel's state; the kernel is bound once it exists
        self.proc_source = KernelProcSource(None)
        tree.mount_path(b"/proc", ProcFS(self.proc_source), MS_NOSUID | MS_NODEV | MS_NOEXEC, "proc")
        self.devfs = DevFS()
        tree.mount_path(b"/dev", self.devfs, MS_NOSUID, "devtmpfs")
        self.ptys = PtyRegistry()
        tree.mount_path(b"/dev/pts", DevPtsFS(self.ptys), MS_NOSUID | MS_NOEXEC, "devpts")
        tree.mount_path(b"/dev/shm", TmpFS(), MS_NOSUID | MS_NODEV, "shm")
        tree.mount_path(b"/sys", SysFS(os.cpu_count() or 1), MS_NOSUID | MS_NODEV | MS_NOEXEC | 1, "sysfs")
        tree.mount_path(b"/tmp", TmpFS(), MS_NOSUID | MS_NODEV, "tmpfs")
        ops.device_opener = lambda rdev, flags=O_NOCTTY: self.ptys.open(rdev, flags) or open_device(rdev)
        self.devfs.tty_opener = self.ptys.open_controlling  # /dev/tty
        return tree

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

    def _find_program(self, tree: MountTree, ctx: PathContext, cmd: str, env: list[bytes]) -> bytes:
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

    def run(self, argv: list[str]) -> int:
        cfg = self.config
        env = [os.fsencode(e) for e in (cfg.env if cfg.env is not None else
               [f"{k}={v}" for k, v in os.environ.items()])]
        env += [os.fsencode(e) for e in cfg.extra_env]
        try:
            if cfg.debug_log:
                self._log = open(cfg.debug_log, "a", buffering=1)
            tree = self._build_mounts()
            cpu = _pick_cpu()
            os.sched_setaffinity(0, {cpu})  # guests inherit it: one CPU for tracer and traced
            self.platform = PtracePlatform(cpu=cpu)
            strace = Strace(self._log or sys.stderr) if cfg.strace else None
            self.kernel = Kernel(self.platform, tree, strace=strace, debug_log=self._log)
            self.proc_source.bind(self.kernel)
            self.ptys.kernel = self.kernel
            ctx = PathContext(tree.root, tree.root, Creds())
            cwd = os.fsencode(cfg.cwd or os.getcwd())
            try:
                loc = tree.resolve(ctx, cwd)
                if not loc.inode.is_dir():
                    raise NotADirectoryError
            except OSError:
                if cfg.cwd:
                    raise SandboxError(f"pyrunsc: --cwd {cfg.cwd}: No such directory in the sandbox", 125) from None
                cwd = b"/"
            ctx.cwd = tree.resolve(ctx, cwd)
            prog = self._find_program(tree, ctx, argv[0], env)
            self._open_console()
            try:
                self.kernel.start([prog] + [os.fsencode(a) for a in argv[1:]], env, cwd, self._stdio())
            except OSError as e:
                code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
                raise SandboxError(f"pyrunsc: {argv[0]}: {os.strerror(e.errno)}", code) from None
            if self.console is not None:
                self.console.attach(self.kernel.init_tg)  # init leads the first session
            status = self.kernel.run()
            return wait_status_to_exit_code(status)
        except InternalError as e:
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
        if self.gofer is not None:
            self.gofer.close()
            self.gofer = None
        if self._log is not None:
            self._log.close()
            self._log = None
