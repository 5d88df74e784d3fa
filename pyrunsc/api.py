"""The Python API: pyrunsc.Sandbox runs programs in sandboxes whose kernel
runs in the calling process, with Python syscall hooks.

    with pyrunsc.Sandbox(root="/", network="none") as sb:
        sb.on_syscall("openat", before=lambda call: print(call.path))
        p = sb.run(["/bin/busybox", "cat", "/etc/hostname"], capture_output=True, timeout=10)

Each run() or spawn() boots a fresh sandbox from the Sandbox's settings
(its gofers, kernel and processes live for that one command; files the
command writes to the root stay in that sandbox's overlay, unless
overlay=False or a rw mount writes them through). Hooks added with
on_syscall apply to every later command; they run on the thread running
the kernel, as plain closures over the caller's objects.

run() runs the kernel on the calling thread: booting pins that thread to
one CPU, blocks SIGCHLD in it (the sentry reads it from a signalfd), and
a network may install SIGTERM/SIGHUP handlers; run() puts the thread's
affinity, signal mask and the signal dispositions back when it returns.
Pipes for input and captured output are served by helper threads that
only touch the host pipes (never the kernel), so a guest that writes
much and reads late cannot deadlock. A timeout is a timer thread that
SIGKILLs the guest's first process on the host through a pidfd; the
kernel sees it die and the sandbox ends, so nothing waits on the guest.

spawn() boots on the calling thread and runs the kernel on a thread of
its own (the only thread touching that kernel); SIGCHLD stays blocked in
the calling thread until the process is waited for, so the sentry's
signalfd gets every stop. The kernel reaps with waitpid(-1): while a
sandbox runs, children the caller starts in other threads may be reaped
by it (subprocess then reports them as exited 0).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading

from .network import NetworkConfig, parse_publish
from .sandbox import BindMount, Config, SandboxError, TmpfsMount, parse_bind, parse_tmpfs_spec
from .sandbox import Sandbox as _Assembler

PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT
CompletedProcess = subprocess.CompletedProcess
TimeoutExpired = subprocess.TimeoutExpired
CalledProcessError = subprocess.CalledProcessError
_SAVED_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGIO, signal.SIGWINCH, signal.SIGCHLD)

__all__ = ["Sandbox", "SandboxProcess", "SandboxError", "CompletedProcess", "TimeoutExpired",
           "CalledProcessError", "PIPE", "DEVNULL", "STDOUT"]


def _returncode(status: int) -> int:
    """A wait status as subprocess reports it: the exit code, or -signal."""
    return -(status & 0x7F) if status & 0x7F else (status >> 8) & 0xFF


class _HostState:
    """What booting a sandbox changes in the calling thread and process,
    to be put back: CPU affinity, signal mask, signal dispositions."""

    def __init__(self):
        self.thread = threading.get_ident()
        self.affinity = os.sched_getaffinity(0)
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        self.main = threading.current_thread() is threading.main_thread()
        self.handlers = {s: signal.getsignal(s) for s in _SAVED_SIGNALS}

    def restore_affinity(self) -> None:
        if threading.get_ident() == self.thread:
            try:
                os.sched_setaffinity(0, self.affinity)
            except OSError:
                pass

    def restore_signals(self) -> None:
        if threading.get_ident() != self.thread:
            return  # masks are per thread: only the thread that booted can put its own back
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        if not self.main:
            return  # handlers are set from the main thread only (nothing was installed)
        for sig, old in self.handlers.items():
            if old is not None and signal.getsignal(sig) is not old:
                signal.signal(sig, old)


class _Stdio:
    """The guest's fds 0-2 as host fds: the caller's own, /dev/null, given
    fds or files, or pipes whose other ends the caller gets."""

    def __init__(self, stdin, stdout, stderr):
        self.guest = [None, None, None]   # host fd behind the guest's fd 0-2
        self.ours = [None, None, None]    # our end of a PIPE
        self.opened = []                  # host fds to close at the end
        for fd, spec in enumerate((stdin, stdout, stderr)):
            if fd == 2 and spec == STDOUT:
                self.guest[2] = self.guest[1]
                continue
            self.guest[fd] = self._host_fd(fd, spec)

    def _host_fd(self, fd: int, spec):
        if spec is None:
            try:
                os.fstat(fd)
            except OSError:
                return None  # closed in the caller: closed in the guest
            return fd
        if spec == PIPE:
            r, w = os.pipe2(os.O_CLOEXEC)
            self.opened += [r, w]
            theirs, self.ours[fd] = (r, w) if fd == 0 else (w, r)
            return theirs
        if spec == DEVNULL:
            n = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            self.opened.append(n)
            return n
        if spec == STDOUT:
            raise ValueError("STDOUT is for stderr only")
        if isinstance(spec, int) and not isinstance(spec, bool):
            return spec
        if hasattr(spec, "fileno"):
            if hasattr(spec, "flush"):
                spec.flush()
            return spec.fileno()
        raise TypeError(f"stdio: None, PIPE, DEVNULL, a file descriptor or a file, not {spec!r}")

    def fdtable(self):
        from sentry.fdtable import FDTable
        from vfs.file import O_RDONLY, O_WRONLY, FileDescription, HostFileImpl
        table = FDTable()
        for fd, host in enumerate(self.guest):
            if host is not None:
                table.install_at(fd, FileDescription(HostFileImpl(host), O_RDONLY if fd == 0 else O_WRONLY))
        return table

    def close_guest_ends(self) -> None:
        """After the sandbox: the ends the guest used (readers see EOF,
        a writer EPIPE)."""
        for fd in {fd for fd in self.guest if fd is not None and fd in self.opened}:
            os.close(fd)
            self.opened.remove(fd)

    def close(self) -> None:
        for fd in self.opened:
            try:
                os.close(fd)
            except OSError:
                pass
        self.opened = []


class _Session:
    """One sandbox's life: booted on the calling thread, its first process
    started and its kernel run on the thread that calls run_kernel()."""

    def __init__(self, config: Config, argv: list, stdio: _Stdio):
        if isinstance(argv, (str, bytes, os.PathLike)):
            argv = [argv]
        self.argv = [os.fsdecode(a) for a in argv]
        if not self.argv:
            raise ValueError("argv is empty")
        self.config = config
        self.stdio = stdio
        self.host = _HostState()
        self.box = _Assembler(config)
        self.killed = False
        self.ended = threading.Event()
        self.status = None

    def boot(self) -> None:
        """The filesystems, platform, kernel and network; the program looked
        up. Errors close everything and raise (FileNotFoundError and
        PermissionError for the program, SandboxError otherwise)."""
        from vfs.path import Creds, PathContext
        cfg, box = self.config, self.box
        env = [os.fsencode(e) for e in (cfg.env if cfg.env is not None else
               [f"{k}={v}" for k, v in os.environ.items()])]
        try:
            tree = box.boot()
            ctx = PathContext(tree.root, tree.root, Creds())
            self.cwd = box.working_directory(tree, ctx, cfg.cwd)
            self.env = env
            self.prog = box.find_program(tree, ctx, self.argv[0], env)
        except BaseException as e:
            self.close()
            if isinstance(e, SandboxError) and e.code in (126, 127):
                cls = FileNotFoundError if e.code == 127 else PermissionError
                raise cls(str(e).removeprefix("pyrunsc: ")) from None
            raise

    def run_kernel(self, started: threading.Event | None = None) -> int:
        """Start the first process and run the kernel until it ends: the
        wait status. started is set once the process is loaded (or failed to)."""
        from sentry.kernel import InternalError
        k = self.box.kernel
        k.loop_thread = threading.get_ident()
        try:
            try:
                k.start([os.fsencode(a) for a in self.argv], self.env, self.cwd,
                        self.stdio.fdtable(), filename=self.prog)
            except OSError as e:
                k.shutdown()
                raise OSError(e.errno, f"{self.argv[0]}: {os.strerror(e.errno)}") from None
            finally:
                if started is not None:
                    started.set()
            try:
                self.status = k.run()
            except InternalError as e:
                raise SandboxError(f"pyrunsc: internal error in the sentry: {e}", 70) from e
            return self.status
        finally:
            self.ended.set()

    def kill(self) -> None:
        """From any thread: SIGKILL the first process on the host (through
        a pidfd, so a reused pid is never hit) until the kernel has ended.
        The kernel sees it die and the sandbox ends, whatever the guests do."""
        self.killed = True
        k = self.box.kernel
        while k is not None and not self.ended.is_set() and not k.finished:
            try:
                pid = k.init_tg.tasks[0].thread.pid
                pidfd = os.pidfd_open(pid)
            except (AttributeError, IndexError, OSError):
                pidfd = None   # not started yet, or between host processes (exec)
            if pidfd is not None:
                try:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                except OSError:
                    pass
                finally:
                    os.close(pidfd)
            self.ended.wait(0.05)

    def close(self) -> None:
        """Everything the sandbox holds: gofers, guests, the platform's fds;
        the calling thread's state put back."""
        try:
            self.box.close()
        finally:
            self.host.restore_affinity()
            self.host.restore_signals()


def _drain(fd: int, into: list) -> threading.Thread:
    def read():
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                return
            into.append(data)
    th = threading.Thread(target=read, name="pyrunsc-output", daemon=True)
    th.start()
    return th


def _feed(fd: int, data: bytes) -> threading.Thread:
    def write():
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view[:65536]):]
        except OSError:
            pass   # the guest stopped reading (EPIPE)
        finally:
            os.close(fd)
    th = threading.Thread(target=write, name="pyrunsc-input", daemon=True)
    th.start()
    return th


class Sandbox:
    """Settings for sandboxes, and the syscall hooks they run with.

    root: the host directory served as /; mounts: "HOST:GUEST[:ro|rw]"
    strings or (host, guest[, rw]) tuples; tmpfs: "GUEST[:OPTIONS]"
    strings; network: none, sandbox or host (publish, dns as for `do`);
    env: a mapping or K=V strings (None: the caller's environment); cwd:
    inside the sandbox; platform: ptrace; overlay: writes to the root stay
    in the sandbox; strace: trace lines on stderr."""

    def __init__(self, root: str = "/", *, mounts=(), tmpfs=(), network: str = "none", env=None,
                 cwd: str | None = None, platform: str = "ptrace", overlay: bool = True,
                 publish=(), dns=(), hostname: str = "pyrunsc", strace: bool = False,
                 debug_log: str | None = None):
        from sentry.syscall_hooks import SyscallHooks
        if platform != "ptrace":
            raise ValueError(f"unknown platform {platform!r} (ptrace)")
        if not os.path.isdir(root):
            raise ValueError(f"root {root!r} is not a directory")
        self.root = os.path.realpath(root)
        self.mounts = [self._bind(m) for m in mounts]
        self.tmpfs = [m if isinstance(m, TmpfsMount) else parse_tmpfs_spec(m) for m in tmpfs]
        self.network = NetworkConfig(mode=network, publish=[parse_publish(p) for p in publish], dns=list(dns))
        self.network.validate()
        self.env = self._env(env)
        self.cwd = cwd
        self.overlay = overlay
        self.hostname = hostname
        self.strace = strace
        self.debug_log = debug_log
        self.hooks = SyscallHooks()
        self._procs: list[SandboxProcess] = []

    @staticmethod
    def _bind(m) -> BindMount:
        if isinstance(m, BindMount):
            return m
        if isinstance(m, str):
            return parse_bind(m)
        host, guest, *rest = m
        return parse_bind(f"{host}:{guest}:{'rw' if rest and rest[0] else 'ro'}")

    @staticmethod
    def _env(env) -> list | None:
        if env is None:
            return None
        items = [f"{k}={v}" for k, v in env.items()] if hasattr(env, "items") else list(env)
        for e in items:
            if "=" not in e:
                raise ValueError(f"env: {e!r} is not K=V")
        return items

    # --- context ---
    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Kill and wait for every process spawn() started."""
        for p in list(self._procs):
            p.kill()
            p.wait()

    # --- hooks ---
    def on_syscall(self, names, before=None, after=None):
        """Call before(call) and/or after(call) for each call of the named
        syscalls (a name, a number or a list): see sentry.syscall_hooks.
        Returns the hook (hook.remove() takes it out). Unknown names are a
        ValueError naming close matches."""
        return self.hooks.add(names, before, after)

    @property
    def hook_errors(self) -> list:
        """The callbacks that raised: HookError(callback, syscall, traceback, count)."""
        return list(self.hooks.errors)

    # --- commands ---
    def _config(self, env, cwd) -> Config:
        return Config(root=self.root, cwd=cwd if cwd is not None else self.cwd,
                      env=self._env(env) if env is not None else self.env, strace=self.strace,
                      debug_log=self.debug_log, overlay=self.overlay, mounts=list(self.mounts),
                      tmpfs=list(self.tmpfs), console=False, network=self.network,
                      hostname=os.fsencode(self.hostname), monitors=[self.hooks] if self.hooks else [])

    def run(self, argv, *, input=None, timeout: float | None = None, capture_output: bool = False,
            stdin=None, stdout=None, stderr=None, check: bool = False, text: bool = False,
            encoding: str | None = None, errors: str | None = None, env=None, cwd: str | None = None):
        """Run argv in a fresh sandbox and wait for it, as subprocess.run:
        a CompletedProcess (returncode -N for a signal); TimeoutExpired
        after killing the guest when timeout passes; CalledProcessError
        with check=True and a non-zero status."""
        if capture_output:
            if stdout is not None or stderr is not None:
                raise ValueError("stdout and stderr may not be used with capture_output")
            stdout = stderr = PIPE
        if input is not None:
            if stdin is not None:
                raise ValueError("stdin and input may not both be used")
            stdin = PIPE
        textual = text or encoding is not None or errors is not None
        if textual and isinstance(input, str):
            input = input.encode(encoding or "utf-8", errors or "strict")
        session = _Session(self._config(env, cwd), argv, None)
        session.boot()
        threads, out, err = [], [], []
        try:
            stdio = session.stdio = _Stdio(stdin, stdout, stderr)
        except BaseException:
            session.close()
            raise
        timer = None
        try:
            if stdio.ours[0] is not None:
                fd, stdio.ours[0] = stdio.ours[0], None
                stdio.opened.remove(fd)   # the feeder closes it
                threads.append(_feed(fd, bytes(input or b"")))
            for fd, into in ((1, out), (2, err)):
                if stdio.ours[fd] is not None:
                    threads.append(_drain(stdio.ours[fd], into))
            if timeout is not None:
                timer = threading.Timer(timeout, session.kill)
                timer.daemon = True
                timer.start()
            status = session.run_kernel()
        finally:
            if timer is not None:
                timer.cancel()
            session.close()
            stdio.close_guest_ends()
            for th in threads:
                th.join()
            stdio.close()
            self.hooks.forget_tasks()
        output = self._decode(b"".join(out), textual, encoding, errors) if stdout == PIPE else None
        error = self._decode(b"".join(err), textual, encoding, errors) if stderr == PIPE else None
        if session.killed and timeout is not None:
            raise TimeoutExpired(session.argv, timeout, output=output, stderr=error)
        result = CompletedProcess(session.argv, _returncode(status), output, error)
        if check:
            result.check_returncode()
        return result

    @staticmethod
    def _decode(data: bytes, textual: bool, encoding, errors):
        return data.decode(encoding or "utf-8", errors or "strict") if textual else data

    def spawn(self, argv, *, stdin=None, stdout=None, stderr=None, env=None,
              cwd: str | None = None) -> "SandboxProcess":
        """Start argv in a fresh sandbox whose kernel runs on a thread of its
        own; returns at once with a SandboxProcess (wait, poll, kill; stdin,
        stdout, stderr binary files for PIPE). Hooks run on that thread."""
        session = _Session(self._config(env, cwd), argv, None)
        session.boot()
        try:
            session.stdio = _Stdio(stdin, stdout, stderr)
        except BaseException:
            session.close()
            raise
        proc = SandboxProcess(self, session)
        self._procs.append(proc)
        return proc


class SandboxProcess:
    """A command spawn() started: pid is its pid inside the sandbox (1)."""

    def __init__(self, owner: Sandbox, session: _Session):
        self._owner, self._session = owner, session
        self.args = session.argv
        self.pid = 1
        self.returncode = None
        self._error = None
        self._closed = False
        stdio = session.stdio
        # our ends as files (the guest's ends are closed when it ends)
        self.stdin = os.fdopen(stdio.ours[0], "wb") if stdio.ours[0] is not None else None
        self.stdout = os.fdopen(stdio.ours[1], "rb") if stdio.ours[1] is not None else None
        self.stderr = os.fdopen(stdio.ours[2], "rb") if stdio.ours[2] is not None else None
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                stdio.opened.remove(f.fileno())
        started = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(started,), name="pyrunsc-kernel",
                                        daemon=True)
        self._thread.start()
        session.host.restore_affinity()   # the kernel thread keeps the pinned CPU
        started.wait()
        if self._error is not None and session.box.kernel.init_tg is None:
            self._finish()
            raise self._error

    def _loop(self, started: threading.Event) -> None:
        session = self._session
        try:
            session.run_kernel(started)
        except BaseException as e:
            self._error = e
        finally:
            started.set()
            session.stdio.close_guest_ends()   # the caller's reads of stdout see EOF now

    def poll(self):
        if self.returncode is None and not self._thread.is_alive():
            self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The return code (-N for a signal); TimeoutExpired if it runs on."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutExpired(self.args, timeout)
        self._finish()
        if self._error is not None:
            raise self._error
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the command (the sandbox ends with it); from any thread."""
        if self._thread.is_alive():
            self._session.kill()

    def _finish(self) -> None:
        """Once the kernel thread is done: the sandbox closed, the caller's
        state put back (its signal mask only from the thread that spawned)."""
        if self._closed:
            return
        self._closed = True
        s = self._session
        try:
            s.close()
        finally:
            s.stdio.close_guest_ends()
            s.stdio.close()
            self._owner.hooks.forget_tasks()
            if self in self._owner._procs:
                self._owner._procs.remove(self)
        if s.status is not None:
            self.returncode = _returncode(s.status)

    def __enter__(self) -> "SandboxProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        try:
            self.wait()
        finally:
            for f in (self.stdin, self.stdout, self.stderr):
                if f is not None:
                    f.close()
