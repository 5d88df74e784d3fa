"""Syscall monitors: what watches (and may steer) every guest syscall from
inside the sentry: strace, the coverage recorder, Python syscall hooks.

The kernel holds at most one monitor (Kernel.monitor, None by default:
an unmonitored sandbox pays one attribute test per call); MonitorChain
combines several. For each call the kernel calls, on the loop thread:

* enter(t, nr, args) before the handler, once per call (not again when a
  blocked call is retried). It returns None to run the handler with args;
  a tuple of six ints to run it with those arguments instead (what the
  later monitors, the handler and done() see); or an int, the call's
  result (-errno for an error), in which case the handler is not run.
  enter must not raise: a monitor running user code catches its errors.
* blocked(t, nr, args) when the call parks (it will finish later).
* done(t, nr, args, result, sentry_ns) when it finishes: result is the
  value returned to the guest (0 for a successful execve, as strace shows
  it), or None for a call that does not return (exit, exit_group, a task
  killed during the call); sentry_ns is the
  time the sentry spent in the handler over all its runs (retries of a
  blocked call included, the time parked not). done returns None, or an
  int that replaces the result the guest gets (syscall hooks' after).
"""
from __future__ import annotations


class SyscallMonitor:
    """The interface, doing nothing: subclasses override what they need."""

    def enter(self, t, nr: int, args: tuple):
        return None

    def blocked(self, t, nr: int, args: tuple) -> None:
        pass

    def done(self, t, nr: int, args: tuple, result, sentry_ns: int):
        return None


class MonitorChain(SyscallMonitor):
    """Several monitors in order: each enter sees the arguments the ones
    before it chose; the first that gives a result answers the call (the
    later ones' enter still sees it, and cannot change it), and each done
    sees the result the ones before it left."""

    def __init__(self, monitors: list):
        self.monitors = list(monitors)

    def enter(self, t, nr, args):
        steered = answer = None
        for m in self.monitors:
            r = m.enter(t, nr, args)
            if r is None or answer is not None:
                continue
            if isinstance(r, tuple):
                args = steered = r
            else:
                answer = r
        return answer if answer is not None else steered

    def blocked(self, t, nr, args):
        for m in self.monitors:
            m.blocked(t, nr, args)

    def done(self, t, nr, args, result, sentry_ns):
        # a replaced result is what the later monitors see, and the guest gets
        replaced = None
        for m in self.monitors:
            r = m.done(t, nr, args, result, sentry_ns)
            if r is not None and result is not None:
                result = replaced = r
        return replaced


def chain(monitors: list) -> SyscallMonitor | None:
    """One monitor for the kernel from any number (None for none)."""
    monitors = [m for m in monitors if m is not None]
    if not monitors:
        return None
    return monitors[0] if len(monitors) == 1 else MonitorChain(monitors)
