"""Wait queues: how a parked task learns that what it waits for changed.

A blocking syscall handler raises Block(queue); the kernel parks the task
on that queue and re-runs the syscall when the queue is notified. Objects
that tasks wait on (pipes, child exits, futex words, host fds) own a
WaitQueue.
"""
from __future__ import annotations


class WaitQueue:
    __slots__ = ("_waiters",)

    def __init__(self):
        self._waiters: list = []

    def add_waiter(self, callback) -> None:
        self._waiters.append(callback)

    def remove_waiter(self, callback) -> None:
        try:
            self._waiters.remove(callback)
        except ValueError:
            pass

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for cb in waiters:
            cb()

    def __bool__(self) -> bool:
        return bool(self._waiters)


class Block(Exception):
    """Raised by a syscall handler that must wait. The kernel parks the task
    until one of `queues` is notified, the deadline (time.monotonic_ns) is
    reached, or a signal interrupts it; then the handler runs again.
    `host_fd`/`host_events` name a host fd the event loop must poll."""

    def __init__(self, *queues: WaitQueue, deadline_ns: int | None = None,
                 host_fd: int | None = None, host_events: int = 0, on_timeout=None,
                 result=None, host_fds: tuple = (), interruptible: bool = True,
                 interrupt_result: int | None = None, on_interrupt=None):
        super().__init__()
        self.queues = queues
        self.deadline_ns = deadline_ns
        self.host_fd = host_fd
        self.host_events = host_events
        self.on_timeout = on_timeout  # result to return instead of re-running
        self.result = result          # if set: the syscall is done, wake returns this
        self.interruptible = interruptible        # may a signal end the wait?
        self.interrupt_result = interrupt_result  # what it then returns (None: EINTR/restart)
        self.on_interrupt = on_interrupt          # called with the task when a signal ends it
        # every host fd to poll: ((fd, events), ...)
        self.host_fds = tuple(host_fds) + (((host_fd, host_events),) if host_fd is not None else ())
