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

import json
import os
from typing import TYPE_CHECKING

from .spec import Hook, Spec

if TYPE_CHECKING:
    import subprocess  # imported where hooks run: most runtime commands run none


class HookError(Exception):
    pass


def hook_state(cid: str, spec: Spec, status: str) -> dict:
    """The state a hook reads on stdin; the pid is the sandbox process's
    (the caller's own: hooks run in it)."""
    out = {"ociVersion": "1.0.2", "id": cid, "status": status, "pid": os.getpid(), "bundle": spec.bundle}
    if spec.annotations:
        out["annotations"] = spec.annotations
    return out


def run_hooks(kind: str, hooks: list[Hook], state: dict, log=None) -> None:
    for hook in hooks:
        try:
            _run_one(kind, hook, state)
        except HookError as e:
            if kind in ("poststart", "poststop"):
                if log is not None:
                    log(f"warning: {e}")
                continue
            raise


class HookChain:
    """The create-time hooks (prestart, createRuntime, createContainer, in
    that order), the first started at once so that it runs while the
    sandbox is built (Docker's libnetwork hook takes a tenth of a second),
    the rest after it; wait() raises HookError for the first that fails."""

    def __init__(self, hooks: dict[str, list[Hook]], state: dict):
        self.todo = [(kind, h) for kind in ("prestart", "createRuntime", "createContainer")
                     for h in hooks.get(kind, [])]
        self.state = state
        self.first = None
        if self.todo:
            kind, hook = self.todo.pop(0)
            try:
                self.first = (kind, hook, _start(hook, state))
            except HookError as e:
                self.first = (kind, hook, e)

    def wait(self) -> None:
        if self.first is not None:
            kind, hook, proc = self.first
            self.first = None
            if isinstance(proc, HookError):
                raise HookError(f"{kind} {proc}")
            _finish(kind, hook, proc)
        while self.todo:
            kind, hook = self.todo.pop(0)
            _run_one(kind, hook, self.state)

    def abandon(self) -> None:
        """create failed: a hook still running is killed and reaped."""
        self.todo = []
        if self.first is not None and not isinstance(self.first[2], HookError):
            proc = self.first[2]
            proc.kill()
            proc.communicate()
        self.first = None


def _start(hook: Hook, state: dict) -> "subprocess.Popen":
    import subprocess
    try:
        proc = subprocess.Popen(hook.args or [hook.path], executable=hook.path,
                                env=dict(e.split("=", 1) for e in hook.env if "=" in e),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                close_fds=True, cwd="/")
    except OSError as e:
        raise HookError(f"hook {hook.path}: {e.strerror or e}") from None
    proc.state_json = json.dumps(state).encode()
    return proc


def _finish(kind: str, hook: Hook, proc: "subprocess.Popen") -> None:
    import subprocess
    try:
        out, err = proc.communicate(proc.state_json, timeout=hook.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise HookError(f"{kind} hook {hook.path} timed out after {hook.timeout} s") from None
    if proc.returncode != 0:
        why = (err or out).decode(errors="replace").strip().splitlines()
        raise HookError(f"{kind} hook {hook.path} exited with status {proc.returncode}"
                        + (f": {why[-1]}" if why else ""))


def _run_one(kind: str, hook: Hook, state: dict) -> None:
    try:
        proc = _start(hook, state)
    except HookError as e:
        raise HookError(f"{kind} {e}") from None
    _finish(kind, hook, proc)
