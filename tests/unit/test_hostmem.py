"""The host's figures the sandbox shows (meminfo, sysinfo, the CPU count
in cpuinfo and stat) are what psutil reports, read without it."""
import psutil

from sentry.hostmem import memory
from sentry.procsource import KernelProcSource


def test_memory_is_psutils_total_and_available():
    total, available = memory()
    vm = psutil.virtual_memory()
    assert total == vm.total
    # available moves between the two reads; both are MemAvailable here
    assert abs(available - vm.available) < total // 20
    assert 0 < available <= total


def test_cpu_count_is_psutils():
    assert KernelProcSource(None).ncpus() == psutil.cpu_count()
