"""The host's memory totals as /proc/meminfo and sysinfo(2) show them to
guests: MemTotal, and MemAvailable as free memory (what
psutil.virtual_memory() reports as total and available, read here
directly: psutil costs a sandbox a tenth of its import time)."""
from __future__ import annotations


def memory() -> tuple[int, int]:
    """(total, available) in bytes."""
    kb = {}
    with open("/proc/meminfo", "rb") as f:
        for line in f:
            name, _, rest = line.partition(b":")
            if name in (b"MemTotal", b"MemFree", b"MemAvailable"):
                kb[name] = int(rest.split()[0])
    total = kb[b"MemTotal"] * 1024
    avail = kb.get(b"MemAvailable", 0) * 1024
    if not 0 < avail <= total:
        # 0 (a kernel bug psutil estimates around) or above the total (some
        # containers, where psutil takes MemFree too): MemFree
        avail = kb[b"MemFree"] * 1024
    return total, avail
