"""The kernel's event loop for the KVM platform (Kernel.run hands over here
when its platform is kvm; the ptrace loop is untouched). It lives in the
sentry because it drives the kernel: platforms never import the sentry.

One process, one thread: take the next ready task, settle pending
signals, run the vCPU for at most one slice, and hand what it stopped for
to the same places the ptrace loop does: syscalls to Kernel.syscall (the
one syscall table and VFS), first touches of lazily mapped pages to the
address space, other faults to the signal the Linux kernel would send.
Between slices the loop fires due timers and polls host fds, so sleeping,
blocking reads and the whole-run time limit work without a host process.
"""
from __future__ import annotations

import errno
import select
import sys
import time

from platforms.kvm.events import Fault, Syscall, Timeout
from platforms.kvm.platform import KvmUnsupported
from platforms.kvm.vm import KvmError
from . import signals
from .kernel import InternalError
from .signals import ERESTARTSYS

SLICE = 0.1   # seconds a vCPU runs before the loop looks at timers and host fds again
SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGKILL, SIGSEGV = 4, 5, 7, 8, 9, 11
# Exceptions from ring 3 and the signal Linux sends for each (arch/x86/kernel/traps.c).
FAULT_SIGNALS = {0: SIGFPE, 1: SIGTRAP, 3: SIGTRAP, 4: SIGSEGV, 5: SIGSEGV, 6: SIGILL, 10: SIGSEGV,
                 11: SIGBUS, 12: SIGBUS, 13: SIGSEGV, 14: SIGSEGV, 16: SIGFPE, 17: SIGBUS, 19: SIGFPE}
UNSUPPORTED_SYSCALLS = {56: "clone", 57: "fork", 58: "vfork", 59: "execve", 322: "execveat", 435: "clone3"}


def run(k, plat) -> int:
    deadline = None if plat.time_limit is None else time.monotonic() + plat.time_limit
    ready = k.ready
    try:
        while not k.finished:
            if k.woken:
                k._retry_woken()
                continue
            if k.poked:
                k._run_pokes()
                continue
            if deadline is not None and time.monotonic() >= deadline:
                _time_is_up(k, plat)
                continue
            if not ready:
                _poll_host(k, _wait_ms(k, deadline))
                continue
            entry = t, set_rax, rax, _ = ready.popleft()
            if not t.alive:
                continue
            if k.frozen:
                k.frozen_held.append(entry)
                continue
            if t.tg.stopped:
                t.tg.held.append(entry)
                continue
            if (t.pending_signals | t.tg.pending_signals) & ~t.sigmask or set_rax and rax == -ERESTARTSYS:
                _refuse_handlers(t)
                set_rax, rax = k._signal_before_resume(t, set_rax, rax)
                if not t.alive:
                    continue
            slice_ = SLICE if deadline is None else max(0.001, min(SLICE, deadline - time.monotonic()))
            t.on_cpu = True
            try:
                event = t.thread.resume(set_rax, rax, slice_)
            except KvmError as e:
                raise InternalError(f"running {t} on the kvm platform: {e}") from e
            finally:
                t.on_cpu = False
            kind = type(event)
            if kind is Syscall:
                nr = event.nr
                if nr >= 0x40000000:  # x32 entry: refused as on the ptrace platform
                    ready.append((t, 1, -errno.ENOSYS, 0))
                elif nr in UNSUPPORTED_SYSCALLS:
                    raise KvmUnsupported(f"{UNSUPPORTED_SYSCALLS[nr]}(2) (one process with one thread "
                                         f"per sandbox on the kvm platform), called by {_who(t)}")
                else:
                    k.syscall(t, nr, event.args)
            elif kind is Fault:
                _fault(k, t, event)
            elif kind is Timeout:  # the slice is over: timers and host fds get their turn
                _poll_host(k, 0)
                ready.append((t, 0, 0, 0))
            else:
                raise InternalError(f"{_who(t)} stopped the vCPU with {event} on the kvm platform")
    finally:
        k.shutdown()
    return k.exit_status


def _who(t) -> str:
    return f"{t.comm.decode(errors='replace')} (pid {t.tid})"


def _refuse_handlers(t) -> None:
    sig = signals.next_signal(t)
    if sig and t.tg.handlers.actions[sig].handler not in (signals.SIG_DFL, signals.SIG_IGN):
        raise KvmUnsupported(f"signal handlers (signal {sig} has one in {_who(t)})")


def _fault(k, t, event: Fault) -> None:
    if event.vector == 14 and t.thread.space.fault(event.address, event.error_code):
        k.ready.append((t, 0, 0, 0))  # a first touch: the page is there now, retry
        return
    sig = FAULT_SIGNALS.get(event.vector)
    if sig is None:
        raise InternalError(f"{_who(t)} raised {event.name} at {event.rip:#x}, which the kvm platform "
                            f"does not expect from ring 3")
    where = f" at address {event.address:#x}" if event.address is not None else ""
    k._log_debug(f"{t}: {event.name}{where}, rip {event.rip:#x}: signal {sig}")
    act = t.tg.handlers.actions[sig]
    if act.handler not in (signals.SIG_DFL, signals.SIG_IGN) and not t.sigmask & signals.bit(sig):
        raise KvmUnsupported(f"signal handlers (a handler for signal {sig}, the {event.name} "
                             f"{_who(t)} raised at {event.rip:#x})")
    k.exit_group(t.tg, k.signal_status(sig))  # blocked, ignored or default: the fault kills, as on Linux


def _time_is_up(k, plat) -> None:
    print(f"pyrunsc: the program ran past the kvm platform's time limit ({plat.time_limit:g} s) "
          f"and was killed", file=sys.stderr)
    if k.init_tg is not None and not k.init_tg.exiting:
        k.exit_group(k.init_tg, k.signal_status(SIGKILL))
    k.finished = True


def _wait_ms(k, deadline) -> int:
    """How long the loop may sleep with no task to run: until the next
    timer or the time limit (a program blocked for good meets the limit)."""
    now = time.monotonic_ns()
    waits = []
    if k.timers:
        waits.append(max(0, (k.timers[0][0] - now) // 1_000_000 + 1))
    if deadline is not None:
        waits.append(max(0, int((deadline - time.monotonic()) * 1000) + 1))
    if not waits and not (k.host_waits or k.watches or k.on_poke):
        raise InternalError("no task can run and none waits for anything the kvm loop can wake")
    return min(min(waits), 86_400_000) if waits else -1


def _poll_host(k, timeout_ms: int) -> None:
    """Wait up to timeout_ms (-1: for ever) for host fds the sandbox waits
    on, the poke pipe and timers; run what became due."""
    poller = select.poll()
    if k.on_poke:
        poller.register(k.wake_r, select.POLLIN)
    wanted = k.host_fd_events()
    for fd, ev in wanted.items():
        poller.register(fd, ev | select.POLLHUP | select.POLLERR)
    if wanted or k.on_poke:
        try:
            got = poller.poll(timeout_ms)
        except InterruptedError:
            got = []
    else:
        if timeout_ms > 0:
            time.sleep(timeout_ms / 1000)
        got = []
    for fd, ev in got:
        if fd == k.wake_r:
            continue  # k.poked says it; _run_pokes drains the pipe
        k.host_fd_ready(fd, ev)
    k.fire_due_timers()

