"""One invocation of the runtime: its global flags, its log, and the
container operations the commands share. Neither click nor the sentry's
kernel is imported here: start, kill, state and delete run on every
container (fastpath.py); create imports the kernel in the child it forks."""
from __future__ import annotations

import _signal  # not signal.py, which builds enums: 5 ms of every command
import os
import sys

from . import jsonlite
from .control import ControlError, request
from .hooks import HookChain, hook_state, restore_hooks, run_hooks
from .options import RuntimeOptions
from .state import ContainerError, Store, check_id, kill_quietly, now_rfc3339, wait_gone, write_atomic


class Runtime:
    """The global flags of one invocation."""

    def __init__(self, root: str, log: str | None, log_format: str, opts: RuntimeOptions):
        self.store = Store(root)
        self.log_path, self.log_format = log, log_format
        self.opts = opts

    def log(self, msg: str, level: str = "error") -> None:
        """A line to --log (JSON lines with --log-format json, as containerd
        reads them) and to stderr."""
        if self.log_path:
            try:
                with open(self.log_path, "a") as f:
                    if self.log_format == "json":
                        f.write(jsonlite.dumps({"level": level, "msg": msg, "time": now_rfc3339()}) + "\n")
                    else:
                        f.write(f'time="{now_rfc3339()}" level={level} msg="{msg}"\n')
            except OSError:
                pass
        print(f"pyrunsc: {msg}" if level == "error" else msg, file=sys.stderr)

    def fail(self, msg: str, code: int = 1):
        self.log(msg)
        sys.exit(code)

    # --- containers ---
    def status(self, st) -> str:
        if not st.alive():
            return "stopped"
        try:
            return request(self.store.control_path(st.id), {"op": "state"}, timeout=10)["status"]
        except (ControlError, OSError):
            return "stopped" if not st.alive() else "creating"

    def ask(self, st, msg: dict, fds=()) -> dict:
        if not st.alive():
            raise ContainerError("container not running")
        try:
            return request(self.store.control_path(st.id), msg, fds)
        except ControlError as e:
            if not st.alive():
                raise ContainerError("container not running") from None
            raise ContainerError(str(e)) from None

    def create(self, cid: str, bundle: str, pid_file: str | None, console_socket: str | None) -> int:
        """Fork the sandbox process and wait until it has created the
        container (or failed, leaving nothing). Returns its pid."""
        from .spec import load_bundle
        check_id(cid)
        spec = load_bundle(bundle)
        if spec.process is not None and spec.process.terminal and not console_socket:
            raise ContainerError("process.terminal is set: --console-socket is required")
        self.store.reserve(cid)
        try:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the sandbox process
                code = 1
                try:
                    os.close(r)
                    os.setsid()
                    code = self._sandbox_process(spec, cid, console_socket, w)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                finally:
                    os._exit(code)
            os.close(w)
            with os.fdopen(r, "rb") as f:
                line = f.readline()
            try:
                msg = jsonlite.loads(line) if line else {"ok": False, "error": "the sandbox process died"}
            except ValueError:
                msg = {"ok": False, "error": "the sandbox process died"}
            if not msg.get("ok"):
                os.waitpid(pid, 0)
                raise ContainerError(msg.get("error") or "create failed")
        except BaseException:
            self.store.remove(cid)
            raise
        if pid_file:
            write_atomic(os.path.abspath(pid_file), str(pid))
        return pid

    def _sandbox_process(self, spec, cid: str, console_socket: str | None, ready_fd: int) -> int:
        """The forked child: enter the network namespace and start the
        create-time hooks, then import the sentry while they run."""
        from .netns import join_network
        from .spec import SpecError
        try:
            join_network(spec)
            hooks = HookChain(spec.hooks, hook_state(cid, spec, "creating"))
        except SpecError as e:
            os.write(ready_fd, jsonlite.dumps({"ok": False, "error": str(e)}).encode() + b"\n")
            return 1
        from .server import serve
        return serve(spec, cid, self.store, self.opts, console_socket, ready_fd, self.log, hooks)

    def start(self, cid: str) -> None:
        st = self.store.load(cid)
        with self.store.lock(cid):
            status = self.status(st)
            if status == "stopped":
                raise ContainerError("cannot start a container that has stopped")
            if status != "created":
                raise ContainerError(f"cannot start an already {status} container")
            try:
                self.ask(st, {"op": "start"})
            except ContainerError:
                self._stop_sandbox(st)  # nothing keeps running after a failed start (runsc leaks here)
                raise
            st.started = True
            self.store.save(st)
        run_hooks("poststart", restore_hooks(st.hooks.get("poststart", [])), st.oci("running"), self.log)

    def kill(self, cid: str, sig: int, all_: bool) -> None:
        st = self.store.load(cid)
        if not st.alive():
            raise ContainerError("container not running")
        self.ask(st, {"op": "kill", "signal": sig, "all": all_})

    def _stop_sandbox(self, st) -> None:
        """Kill every guest, so that the sandbox process ends; kill it if it lingers."""
        try:
            self.ask(st, {"op": "kill", "signal": _signal.SIGKILL, "all": True})
        except ContainerError:
            pass
        if not wait_gone(st.pid, st.pid_start, 5):
            kill_quietly(st.pid, _signal.SIGKILL)  # the sentry's guests die with it (EXITKILL)
            wait_gone(st.pid, st.pid_start, 10)

    def state(self, cid: str) -> dict:
        """The OCI state document of a container."""
        st = self.store.load(cid)
        return st.oci(self.status(st))

    def delete(self, cid: str, force: bool) -> None:
        if force and not self.store.exists(cid):
            return  # runc: delete --force of nothing succeeds (Docker sends one after every delete)
        st = self.store.load(cid)
        with self.store.lock(cid):
            if st.alive():
                status = self.status(st)
                if status not in ("created", "stopped") and not force:
                    raise ContainerError(f"cannot delete container {cid} that is not stopped: {status}")
                self._stop_sandbox(st)
            run_hooks("poststop", restore_hooks(st.hooks.get("poststop", [])), st.oci("stopped"), self.log)
            self.store.remove(cid)


def signal_number(text: str) -> int:
    import signal  # names: only kill needs them
    t = text.upper()
    if t.isdigit():
        n = int(t)
        if not 0 < n <= 64:
            raise ContainerError(f"invalid signal {text!r}")
        return n
    if not t.startswith("SIG"):
        t = "SIG" + t
    try:
        return int(getattr(signal.Signals, t))
    except AttributeError:
        if t.startswith("SIGRTMIN+") and t[9:].isdigit():
            return signal.SIGRTMIN + int(t[9:])
        raise ContainerError(f"invalid signal {text!r}") from None
