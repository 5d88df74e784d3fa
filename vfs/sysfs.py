"""/sys: the little of sysfs that runtimes and libraries read — the CPU
topology lists (glibc's get_nprocs, Go, the JVM), transparent hugepage
settings (allocators, Go) — and an empty /sys/fs/cgroup to mount over.
Everything is read-only; Linux refuses opening a read-only sysfs attribute
for writing with EACCES.
"""
from __future__ import annotations

import errno

from .synthetic import StaticDir, SyntheticFS, constant

SYSFS_MAGIC = 0x62656572
ATTR_SIZE = 4096  # sysfs attributes stat as one page


def cpu_list(n: int) -> str:
    """Linux's cpulist format for CPUs 0..n-1."""
    return "0" if n <= 1 else f"0-{n - 1}"


class SysFS(SyntheticFS):
    name = "sysfs"
    magic = SYSFS_MAGIC

    def __init__(self, ncpus: int):
        super().__init__()
        self.ncpus = max(1, ncpus)
        root = self._root = StaticDir(self, 0o555)
        for name in ("block", "bus", "class", "dev", "firmware", "module", "power"):
            root.subdir(name, 0o755)

        cpu = root.subdir("devices", 0o755).subdir("system", 0o755).subdir("cpu", 0o755)
        for name in ("online", "possible", "present"):
            self._attr(cpu, name, cpu_list(self.ncpus) + "\n")
        self._attr(cpu, "kernel_max", "8191\n")
        for i in range(self.ncpus):
            d = cpu.subdir(f"cpu{i}", 0o755)
            if i:  # cpu0 cannot be hot-unplugged, so it has no "online"
                self._attr(d, "online", "1\n")

        thp = root.subdir("kernel", 0o755).subdir("mm", 0o755).subdir("transparent_hugepage", 0o755)
        self._attr(thp, "enabled", "always [madvise] never\n")
        self._attr(thp, "defrag", "always defer defer+madvise [madvise] never\n")
        self._attr(thp, "hpage_pmd_size", "2097152\n")

        root.subdir("fs", 0o755).subdir("cgroup", 0o755)

    def _attr(self, d: StaticDir, name: str, text: str) -> None:
        d.file(name, constant(text), 0o444, size=ATTR_SIZE, write_open_errno=errno.EACCES)

    def root(self) -> StaticDir:
        return self._root
