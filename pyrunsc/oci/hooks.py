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
import subprocess

from .spec import Hook


class HookError(Exception):
    pass


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


def _run_one(kind: str, hook: Hook, state: dict) -> None:
    argv = hook.args or [hook.path]
    try:
        proc = subprocess.run(argv, executable=hook.path, input=json.dumps(state).encode(),
                              env=dict(e.split("=", 1) for e in hook.env if "=" in e),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=hook.timeout, close_fds=True, cwd="/")
    except subprocess.TimeoutExpired:
        raise HookError(f"{kind} hook {hook.path} timed out after {hook.timeout} s") from None
    except OSError as e:
        raise HookError(f"{kind} hook {hook.path}: {e.strerror or e}") from None
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        raise HookError(f"{kind} hook {hook.path} exited with status {proc.returncode}"
                        + (f": {why[-1]}" if why else ""))
