"""OCI hooks: host programs run at points of a container's life, given the
container's state on stdin (runtime-spec config.md#posix-platform-hooks).

prestart, createRuntime and createContainer run while `create` builds the
sandbox; startContainer when `start` runs, before the container's process
runs; poststart after it started; poststop when `delete` removes it. All
run on the host: the sandbox's namespaces are the sentry's own, there is
no host namespace a hook could enter (a departure for createContainer and
startContainer, which runc runs inside the container's mount namespace).
A failing hook fails the step, except poststart and poststop, which are
logged (as runc does)."""
from __future__ import annotations

import _signal  # signal.py's C half: signal.py builds enums, 5 ms before the hook could start
import os
import select
import time

from . import jsonlite

_CHUNK = 65536


class HookError(Exception):
    pass


def hook_state(cid: str, spec, status: str) -> dict:
    """The state a hook reads on stdin; the pid is the sandbox process's
    (the caller's own: hooks run in it)."""
    out = {"ociVersion": "1.0.2", "id": cid, "status": status, "pid": os.getpid(), "bundle": spec.bundle}
    if spec.annotations:
        out["annotations"] = spec.annotations
    return out


def run_hooks(kind: str, hooks: list, state: dict, log=None) -> None:
    """Run hooks (spec.Hook) one after the other."""
    for hook in hooks:
        try:
            _run_one(kind, hook, state)
        except HookError as e:
            if kind in ("poststart", "poststop"):
                if log is not None:
                    log(f"warning: {e}")
                continue
            raise


def stored_hooks(hooks: list) -> list[dict]:
    """spec.Hook objects as state.json keeps them (for start and delete)."""
    return [{"path": h.path, "args": h.args, "env": h.env, "timeout": h.timeout} for h in hooks]


def restore_hooks(entries: list) -> list:
    """stored_hooks' output as spec.Hook objects again."""
    if not entries:
        return []
    from .spec import Hook
    return [Hook(**e) for e in entries]


class HookChain:
    """The create-time hooks (prestart, createRuntime, createContainer, in
    that order), the first started at once so that it runs while the
    sandbox is built (Docker's libnetwork hook takes a tenth of a second),
    the rest after it; wait() raises HookError for the first that fails."""

    def __init__(self, hooks: dict, state: dict):
        self.todo = [(kind, h) for kind in ("prestart", "createRuntime", "createContainer")
                     for h in hooks.get(kind, [])]
        self.state = state
        self.first = None
        if self.todo:
            kind, hook = self.todo.pop(0)
            try:
                self.first = (kind, hook, _Run(hook, state))
            except HookError as e:
                self.first = (kind, hook, e)

    def wait(self) -> None:
        if self.first is not None:
            kind, hook, run = self.first
            self.first = None
            if isinstance(run, HookError):
                raise HookError(f"{kind} {run}")
            run.finish(kind)
        while self.todo:
            kind, hook = self.todo.pop(0)
            _run_one(kind, hook, self.state)

    def abandon(self) -> None:
        """create failed: a hook still running is killed and reaped."""
        self.todo = []
        if self.first is not None and not isinstance(self.first[2], HookError):
            self.first[2].kill()
        self.first = None


class _Run:
    """One hook's process: state on its stdin, stdout and stderr kept for
    the error message. Forked and exec'd here rather than by subprocess,
    whose import (12 ms) would delay Docker's prestart hook at each create."""

    def __init__(self, hook, state: dict):
        self.hook = hook
        state_json = jsonlite.dumps(state).encode()
        env = dict(e.split("=", 1) for e in hook.env if "=" in e)
        pipes = [os.pipe() for _ in range(3)]          # stdin, stdout, stderr
        err_r, err_w = os.pipe2(os.O_CLOEXEC)          # exec's failure, as an errno
        try:
            self.pid = os.fork()
        except OSError as e:
            for fd in [*sum(pipes, ()), err_r, err_w]:
                os.close(fd)
            raise HookError(f"hook {hook.path}: {e.strerror or e}") from None
        if self.pid == 0:
            _exec_child(hook, env, pipes, err_w)
        os.close(err_w)
        for n, (r, w) in enumerate(pipes):
            os.close(w if n else r)   # ours: stdin's write end, the others' read ends
        self.stdin, self.stdout, self.stderr = pipes[0][1], pipes[1][0], pipes[2][0]
        failed = os.read(err_r, 16)
        os.close(err_r)
        if failed:
            self._reap()
            self._close()
            raise HookError(f"hook {hook.path}: {os.strerror(int(failed))}")
        self.started = time.monotonic()
        self.out = self.err = b""
        self.pending = memoryview(state_json)
        self._feed()

    def _feed(self) -> None:
        """Write what the pipe takes of the state now, without waiting: a
        hook reads its stdin first (Docker's does), and must not wait for
        finish() while the sandbox is built."""
        os.set_blocking(self.stdin, False)
        try:
            while self.pending:
                self.pending = self.pending[os.write(self.stdin, self.pending[:_CHUNK]):]
        except BlockingIOError:
            return
        except BrokenPipeError:
            self.pending = self.pending[:0]   # the hook does not read its stdin
        os.close(self.stdin)
        self.stdin = -1

    def finish(self, kind: str) -> None:
        """Feed stdin, collect output, wait; HookError if it failed or timed out."""
        hook = self.hook
        deadline = None if hook.timeout is None else self.started + hook.timeout
        out = {self.stdout: bytearray(), self.stderr: bytearray()}
        try:
            while out or self.stdin >= 0:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                readable, writable, _ = select.select(
                    list(out), [self.stdin] if self.stdin >= 0 else [], [], wait)
                if not readable and not writable:
                    self.kill()
                    raise HookError(f"{kind} hook {hook.path} timed out after {hook.timeout} s")
                if writable:
                    self._feed()
                for fd in readable:
                    chunk = os.read(fd, _CHUNK)
                    if chunk:
                        out[fd] += chunk
                    else:
                        setattr(self, "out" if fd == self.stdout else "err", bytes(out.pop(fd)))
            status = self._reap()
        finally:
            self._close()
        if status != 0:
            why = (self.err or self.out).decode(errors="replace").strip().splitlines()
            raise HookError(f"{kind} hook {hook.path} exited with status {status}"
                            + (f": {why[-1]}" if why else ""))

    def kill(self) -> None:
        if self.pid > 0:   # never 0: that would be our own process group
            try:
                os.kill(self.pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap()
        self._close()

    def _reap(self) -> int:
        """Its exit code (negative: killed by that signal), once."""
        if self.pid <= 0:
            return -1
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        return os.waitstatus_to_exitcode(status)

    def _close(self) -> None:
        for name in ("stdin", "stdout", "stderr"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


def _exec_child(hook, env: dict, pipes: list, err_w: int) -> None:
    """In the forked child: stdio from the pipes, nothing else open, exec."""
    try:
        for n, (r, w) in enumerate(pipes):
            os.dup2(r if n == 0 else w, n)
        os.closerange(3, err_w)
        os.closerange(err_w + 1, os.sysconf("SC_OPEN_MAX"))
        os.chdir("/")
        for sig in range(1, _signal.NSIG):    # the hook starts with default dispositions
            if sig not in (_signal.SIGKILL, _signal.SIGSTOP):
                try:
                    _signal.signal(sig, _signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
        os.execve(hook.path, hook.args or [hook.path], env)
    except OSError as e:
        os.write(err_w, str(e.errno or 1).encode())
    finally:
        os._exit(127)


def _run_one(kind: str, hook, state: dict) -> None:
    try:
        run = _Run(hook, state)
    except HookError as e:
        raise HookError(f"{kind} {e}") from None
    run.finish(kind)
