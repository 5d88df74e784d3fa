"""Can the KVM platform run here? Opens /dev/kvm and asks it, in pure
Python (fcntl.ioctl with numbers built like <asm-generic/ioctl.h>'s
macros), so the answer comes even where the cffi extension is not built.

The checks, in order; the first that fails is the reason:
  the device exists, is a character device, and opens read-write;
  KVM_GET_API_VERSION is 12;
  KVM_CHECK_EXTENSION finds the capabilities the VM core uses (REQUIRED);
  KVM_GET_VCPU_MMAP_SIZE answers; KVM_CREATE_VM and KVM_CREATE_VCPU work.
Facts also record what kind of KVM this is (kvm-pvm, nested under a
hypervisor), read from /sys/module, /proc/cpuinfo and the kernel log.
"""
from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import stat

from ..probe import ProbeResult

DEFAULT_PATH = "/dev/kvm"
API_VERSION = 12  # KVM_API_VERSION in <linux/kvm.h>; the only stable one

# <asm-generic/ioctl.h>: nr in bits 0-7, type 8-15, size 16-29, direction 30-31.
IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | type_ << 8 | nr


def _IO(type_: int, nr: int) -> int:
    return _IOC(IOC_NONE, type_, nr, 0)


def _IOW(type_: int, nr: int, size: int) -> int:
    return _IOC(IOC_WRITE, type_, nr, size)


def _IOR(type_: int, nr: int, size: int) -> int:
    return _IOC(IOC_READ, type_, nr, size)


def _IOWR(type_: int, nr: int, size: int) -> int:
    return _IOC(IOC_READ | IOC_WRITE, type_, nr, size)


KVMIO = 0xAE
KVM_GET_API_VERSION = _IO(KVMIO, 0x00)
KVM_CREATE_VM = _IO(KVMIO, 0x01)
KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03)
KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04)
KVM_CREATE_VCPU = _IO(KVMIO, 0x41)

# KVM_CAP_SYNC_REGS answers with a mask of these (<asm/kvm.h>).
KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS, KVM_SYNC_X86_EVENTS = 1, 2, 4

# Capability numbers from <linux/kvm.h>.
CAPS = {
    "KVM_CAP_IRQCHIP": 0,
    "KVM_CAP_HLT": 1,
    "KVM_CAP_USER_MEMORY": 3,
    "KVM_CAP_SET_TSS_ADDR": 4,
    "KVM_CAP_EXT_CPUID": 7,
    "KVM_CAP_NR_VCPUS": 9,
    "KVM_CAP_NR_MEMSLOTS": 10,
    "KVM_CAP_MP_STATE": 14,
    "KVM_CAP_SET_GUEST_DEBUG": 23,
    "KVM_CAP_VCPU_EVENTS": 41,
    "KVM_CAP_XCRS": 56,
    "KVM_CAP_MAX_VCPUS": 66,
    "KVM_CAP_SYNC_REGS": 74,
    "KVM_CAP_READONLY_MEM": 81,
    "KVM_CAP_CHECK_EXTENSION_VM": 105,
    "KVM_CAP_MAX_VCPU_ID": 128,
    "KVM_CAP_IMMEDIATE_EXIT": 136,
}

# What the VM core relies on, each with why and the test its answer must
# pass (KVM_CHECK_EXTENSION returns 0 for "absent", else a count or mask).
REQUIRED = {
    "KVM_CAP_USER_MEMORY": ("guest memory is a memfd the sentry maps too", lambda v: v > 0),
    "KVM_CAP_SYNC_REGS": ("registers travel in the run area, so KVM_RUN is the only ioctl per syscall",
                          lambda v: v & (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)
                          == KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS),
    "KVM_CAP_EXT_CPUID": ("KVM_SET_CPUID2 gives the guest the host's CPUID", lambda v: v > 0),
    "KVM_CAP_XCRS": ("XCR0 is set so guests may use SSE/AVX state", lambda v: v > 0),
    "KVM_CAP_IMMEDIATE_EXIT": ("a watchdog kicks a running vCPU out, so no guest can wedge the sentry",
                               lambda v: v > 0),
}


def _errno_text(e: OSError) -> str:
    name = errno.errorcode.get(e.errno, str(e.errno))
    return f"{name} ({os.strerror(e.errno)})" if e.errno else str(e)


def _ioctl(fd: int, request: int, arg: int, name: str) -> int:
    """fcntl.ioctl with an integer argument; an error names the ioctl."""
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as e:
        raise _KvmError(f"{name}: {_errno_text(e)}") from None


class _KvmError(Exception):
    """An ioctl failed; the message names it and the errno."""


def probe(path: str = DEFAULT_PATH, *, create_vm: bool = True) -> ProbeResult:
    """The KVM platform's verdict for the device at `path`. create_vm also
    creates (and closes) a VM with one vCPU: the cheapest proof that KVM
    accepts us, a few milliseconds."""
    facts: dict = {"device": path}
    result = ProbeResult("kvm", False, "", facts)
    try:
        _probe_device(path, result, create_vm)
    finally:
        facts.update(host_facts())
    return result


def _probe_device(path: str, result: ProbeResult, create_vm: bool) -> None:
    facts = result.facts
    try:
        st = os.stat(path)
    except FileNotFoundError:
        result.reason = f"no {path}"
        return
    except OSError as e:
        result.reason = f"stat {path}: {_errno_text(e)}"
        return
    facts["device_mode"] = stat.filemode(st.st_mode)
    facts["device_owner"] = f"{_user(st.st_uid)}:{_group(st.st_gid)}"
    if not stat.S_ISCHR(st.st_mode):
        result.reason = f"{path} is not a character device ({stat.filemode(st.st_mode)})"
        return
    facts["device_number"] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            result.reason = (f"no permission to open {path} read-write ({stat.filemode(st.st_mode)} "
                             f"{facts['device_owner']}; we are uid {os.geteuid()} gid {os.getegid()})")
        else:
            result.reason = f"open {path}: {_errno_text(e)}"
        return
    try:
        result.reason = _check_kvm(fd, facts, create_vm)
    finally:
        os.close(fd)
    result.usable = not result.reason


def _check_kvm(fd: int, facts: dict, create_vm: bool) -> str:
    """The reason KVM at `fd` cannot serve us, or "" (facts filled in)."""
    try:
        version = _ioctl(fd, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")
    except _KvmError as e:
        return f"{facts['device']} is not a KVM device: {e}"
    facts["api_version"] = version
    if version != API_VERSION:
        return f"KVM API version {version}, need {API_VERSION}"
    try:
        caps = {name: _ioctl(fd, KVM_CHECK_EXTENSION, nr, f"KVM_CHECK_EXTENSION({name})")
                for name, nr in CAPS.items()}
    except _KvmError as e:
        return str(e)
    facts["capabilities"] = caps
    sync = caps["KVM_CAP_SYNC_REGS"]
    facts["sync_regs"] = [n for bit, n in ((KVM_SYNC_X86_REGS, "regs"), (KVM_SYNC_X86_SREGS, "sregs"),
                                           (KVM_SYNC_X86_EVENTS, "events")) if sync & bit]
    # <linux/kvm.h> API doc: no MAX_VCPUS means NR_VCPUS; no NR_VCPUS means 4.
    facts["vcpus_recommended"] = caps["KVM_CAP_NR_VCPUS"] or 4
    facts["vcpus_max"] = caps["KVM_CAP_MAX_VCPUS"] or facts["vcpus_recommended"]
    missing = [f"{name} ({why})" for name, (why, ok) in REQUIRED.items() if not ok(caps[name])]
    if missing:
        return "missing " + "; ".join(missing)
    try:
        facts["vcpu_mmap_size"] = _ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")
        if create_vm:
            _try_vm(fd, facts)
    except _KvmError as e:
        return str(e)
    return ""


def _try_vm(fd: int, facts: dict) -> None:
    """Create a VM and vCPU 0, read the VM's view of the required
    capabilities (it may differ from the system's), and close both."""
    vm = _ioctl(fd, KVM_CREATE_VM, 0, "KVM_CREATE_VM")
    try:
        if facts["capabilities"]["KVM_CAP_CHECK_EXTENSION_VM"]:
            facts["vm_capabilities"] = {
                name: _ioctl(vm, KVM_CHECK_EXTENSION, CAPS[name], f"KVM_CHECK_EXTENSION({name}) on the VM")
                for name in REQUIRED}
        os.close(_ioctl(vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU"))
        facts["create_vm"] = "ok"
    finally:
        os.close(vm)


# --- what kind of KVM this is ----------------------------------------------

def host_facts() -> dict:
    """How this host's KVM is built, from what the kernel shows: the kvm
    modules present, their nesting parameters, whether we ourselves run
    under a hypervisor, and any PVM line in the kernel log."""
    facts: dict = {}
    modules = sorted(m for m in _listdir("/sys/module") if m == "kvm" or m.startswith("kvm_"))
    facts["kvm_modules"] = modules
    for m in ("kvm_intel", "kvm_amd"):
        nested = _read(f"/sys/module/{m}/parameters/nested")
        if nested is not None:
            facts[f"{m}_nested"] = nested
    if "kvm_pvm" in modules:
        facts["kvm_flavour"] = "kvm-pvm (pagetable-based: needs no VMX/SVM, so it runs nested)"
    elif "kvm_intel" in modules or "kvm_amd" in modules:
        facts["kvm_flavour"] = "hardware (" + ", ".join(m for m in modules if m != "kvm") + ")"
    cpuinfo = _read("/proc/cpuinfo") or ""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), [])
    facts["under_hypervisor"] = "hypervisor" in flags  # the cpuinfo flag: we are a guest
    facts["cpu_virtualization"] = [f for f in ("vmx", "svm") if f in flags]
    facts["kernel_log"] = _kernel_log_pvm()
    return facts


def _kernel_log_pvm(limit: int = 100_000) -> str:
    """The first kernel log line mentioning PVM, or why there is none.
    /dev/kmsg gives one record per read; EPIPE means a record was lost
    to the ring's wrap, which we step over."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return f"not readable: {_errno_text(e)}"
    try:
        for _ in range(limit):
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:
                    continue
                return f"read /dev/kmsg: {_errno_text(e)}"
            if not record:
                break
            text = record.decode("utf-8", "replace")
            message = text.split(";", 1)[-1].split("\n", 1)[0]
            if "pvm" in message.lower():
                return message.strip()
    finally:
        os.close(fd)
    return "no PVM line in the kernel log (it may have wrapped)"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None
