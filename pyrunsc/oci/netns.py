"""The sandbox process's own network namespace (light: no sentry here,
it is entered before the sentry is imported)."""
from __future__ import annotations

import ctypes
import os

from .spec import Spec, SpecError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def join_network(spec: Spec) -> None:
    """The sandbox process's own network namespace: the one config.json
    names, else a new empty one (so hooks such as Docker's libnetwork find
    a namespace of the container's at /proc/PID/ns/net). The guests' network
    is the netstack's either way."""
    for kind, path in spec.namespaces:
        if kind != "network":
            continue
        if path:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise SpecError(f"network namespace {path}: {e.strerror}") from None
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise SpecError(f"network namespace {path}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(fd)
        elif _libc.unshare(CLONE_NEWNET) != 0:
            raise SpecError(f"new network namespace: {os.strerror(ctypes.get_errno())}")
