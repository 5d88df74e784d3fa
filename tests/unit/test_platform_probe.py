"""The platform probes (platforms/kvm/probe.py, platforms/ptrace/probe.py)
against this host, and `pyrunsc platforms`. Nothing is faked: where the
host lacks /dev/kvm the probe must say so, and the tests check that."""
from __future__ import annotations

import errno
import json
import mmap
import os
import shutil
import stat
import subprocess

import pytest
from click.testing import CliRunner

from platforms.kvm import probe as kvm_probe
from platforms.probe import ProbeResult
from platforms.ptrace import probe as ptrace_probe
from pyrunsc.cli import main as cli_main
from pyrunsc.platforms_cli import SUPPORTS, platforms as platforms_command

KVM = "/dev/kvm"
KVM_H = "/usr/include/linux/kvm.h"


def _kvm_open_errno():
    """None when /dev/kvm opens read-write here, else the errno."""
    try:
        os.close(os.open(KVM, os.O_RDWR | os.O_CLOEXEC))
        return None
    except OSError as e:
        return e.errno


# --- ioctl numbers ---------------------------------------------------------

@pytest.fixture(scope="module")
def header_values(tmp_path_factory):
    """The macros of <linux/kvm.h> as the C compiler computes them."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to read <linux/kvm.h> with")
    if not os.path.exists(KVM_H):
        pytest.skip(f"no {KVM_H}")
    names = ["KVMIO", "KVM_API_VERSION", "KVM_GET_API_VERSION", "KVM_CREATE_VM", "KVM_CHECK_EXTENSION",
             "KVM_GET_VCPU_MMAP_SIZE", "KVM_CREATE_VCPU", "KVM_SYNC_X86_REGS", "KVM_SYNC_X86_SREGS",
             "KVM_SYNC_X86_EVENTS", "KVM_SET_USER_MEMORY_REGION", "KVM_GET_REGS", "KVM_GET_SUPPORTED_CPUID",
             *kvm_probe.CAPS]
    sizes = ["struct kvm_userspace_memory_region", "struct kvm_regs", "struct kvm_cpuid2"]
    d = tmp_path_factory.mktemp("kvmh")
    src = d / "kvmh.c"
    lines = [f'    printf("{n} %llu\\n", (unsigned long long)({n}));' for n in names]
    lines += [f'    printf("sizeof {s} %zu\\n", sizeof({s}));' for s in sizes]
    src.write_text("#include <stdio.h>\n#include <linux/kvm.h>\nint main(void)\n{\n"
                   + "\n".join(lines) + "\n    return 0;\n}\n")
    exe = d / "kvmh"
    subprocess.run([cc, "-o", str(exe), str(src)], check=True, capture_output=True, timeout=60)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=10).stdout
    return {k: int(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines())}


def test_ioctl_numbers_equal_the_header(header_values):
    h = header_values
    assert kvm_probe.KVMIO == h["KVMIO"]
    assert kvm_probe.API_VERSION == h["KVM_API_VERSION"]
    for name in ("KVM_GET_API_VERSION", "KVM_CREATE_VM", "KVM_CHECK_EXTENSION", "KVM_GET_VCPU_MMAP_SIZE",
                 "KVM_CREATE_VCPU"):
        assert getattr(kvm_probe, name) == h[name], name
    for name in ("KVM_SYNC_X86_REGS", "KVM_SYNC_X86_SREGS", "KVM_SYNC_X86_EVENTS"):
        assert getattr(kvm_probe, name) == h[name], name
    for name, nr in kvm_probe.CAPS.items():
        assert nr == h[name], name


def test_ioctl_encoding_with_sizes_and_directions(header_values):
    """_IOW, _IOR and _IOWR put size and direction where the kernel's do."""
    h = header_values
    io = kvm_probe
    assert io._IOW(io.KVMIO, 0x46, h["sizeof struct kvm_userspace_memory_region"]) \
        == h["KVM_SET_USER_MEMORY_REGION"]
    assert io._IOR(io.KVMIO, 0x81, h["sizeof struct kvm_regs"]) == h["KVM_GET_REGS"]
    assert io._IOWR(io.KVMIO, 0x05, h["sizeof struct kvm_cpuid2"]) == h["KVM_GET_SUPPORTED_CPUID"]


# --- the kvm probe ---------------------------------------------------------

def test_kvm_probe_agrees_with_the_host():
    r = kvm_probe.probe()
    assert isinstance(r, ProbeResult) and r.platform == "kvm"
    assert r.usable == (r.reason == "")
    json.dumps(r.as_dict())  # facts are JSON-friendly
    if not os.path.exists(KVM):
        assert (r.usable, r.reason) == (False, f"no {KVM}")
        return
    err = _kvm_open_errno()
    if err in (errno.EACCES, errno.EPERM):
        assert r.reason.startswith(f"no permission to open {KVM}"), r.reason
        return
    if err is not None:
        assert r.reason.startswith(f"open {KVM}: {errno.errorcode[err]}"), r.reason
        return
    if not r.usable:  # opens, but lacks something: the reason names it
        assert r.reason.startswith(("missing KVM_CAP_", "KVM API version", "KVM_")), r.reason
        return
    f = r.facts
    assert f["api_version"] == 12
    for name, (why, ok) in kvm_probe.REQUIRED.items():
        assert ok(f["capabilities"][name]), name
        assert ok(f.get("vm_capabilities", f["capabilities"])[name]), name
    assert {"regs", "sregs"} <= set(f["sync_regs"])
    assert f["vcpu_mmap_size"] >= mmap.PAGESIZE and f["vcpu_mmap_size"] % mmap.PAGESIZE == 0
    assert f["vcpus_max"] >= f["vcpus_recommended"] >= 1
    assert f["create_vm"] == "ok"
    assert f["device_mode"].startswith("c")


def test_kvm_probe_without_creating_a_vm():
    r = kvm_probe.probe(create_vm=False)
    assert "create_vm" not in r.facts and "vm_capabilities" not in r.facts
    assert r.usable or not kvm_probe.probe().usable  # fewer checks never fail where all pass


def test_missing_device(tmp_path):
    path = str(tmp_path / "kvm")
    r = kvm_probe.probe(path)
    assert (r.usable, r.reason) == (False, f"no {path}")
    assert r.facts["device"] == path
    assert "kvm_modules" in r.facts  # host facts come even when the device does not


def test_a_regular_file_is_not_a_device(tmp_path):
    path = tmp_path / "kvm"
    path.write_bytes(b"")
    os.chmod(path, 0)
    r = kvm_probe.probe(str(path))
    assert not r.usable
    assert r.reason == f"{path} is not a character device (----------)"


def test_a_char_device_that_is_not_kvm():
    r = kvm_probe.probe("/dev/null")
    assert not r.usable
    assert r.reason == "/dev/null is not a KVM device: KVM_GET_API_VERSION: ENOTTY (Inappropriate ioctl for device)"


def test_no_permission():
    """Someone without access to /dev/kvm is told so (root: checked in a
    child that drops to nobody)."""
    if not os.path.exists(KVM):
        pytest.skip(f"no {KVM} here")
    st = os.stat(KVM)
    if os.geteuid() != 0:
        if _kvm_open_errno() not in (errno.EACCES, errno.EPERM):
            pytest.skip(f"{KVM} opens for us and we cannot drop privileges")
        reason = kvm_probe.probe(create_vm=False).reason
    else:
        if st.st_mode & 0o006:
            pytest.skip(f"{KVM} is open to everyone ({stat.filemode(st.st_mode)})")
        reason = _probe_as_nobody()
    assert reason.startswith(f"no permission to open {KVM} read-write ({stat.filemode(st.st_mode)} "), reason
    assert f"we are uid {65534 if os.geteuid() == 0 else os.geteuid()}" in reason


def _probe_as_nobody() -> str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(w, kvm_probe.probe(create_vm=False).reason.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_required_capability_checks():
    sync = kvm_probe.REQUIRED["KVM_CAP_SYNC_REGS"][1]
    assert sync(3) and sync(7)
    assert not sync(0) and not sync(1) and not sync(4)
    assert not kvm_probe.REQUIRED["KVM_CAP_IMMEDIATE_EXIT"][1](0)


# --- the ptrace probe ------------------------------------------------------

def test_ptrace_probe_agrees_with_the_host():
    r = ptrace_probe.probe()
    assert r.platform == "ptrace" and r.usable == (r.reason == "")
    json.dumps(r.as_dict())
    try:
        __import__("platforms.ptrace._ptrace")
    except ImportError:
        assert "extension is not built" in r.reason
        return
    if r.usable:
        assert r.facts["live_check"] == "ok"
        assert r.facts["sysemu_stop"].startswith("syscall ")  # its getppid (110), stopped, never run
    else:
        assert r.reason, r.facts


def test_ptrace_probe_without_the_live_check():
    r = ptrace_probe.probe(live=False)
    assert "live_check" not in r.facts
    if r.usable:
        assert r.facts["extension"] == "built"


# --- pyrunsc platforms -----------------------------------------------------

def test_cli_json():
    res = CliRunner().invoke(platforms_command, ["--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["platforms"]
    assert [row["platform"] for row in rows] == ["ptrace", "kvm"]
    kvm = rows[1]
    assert kvm["supports"] == SUPPORTS["kvm"]
    assert kvm["usable"] == kvm_probe.probe().usable
    assert set(kvm) == {"platform", "usable", "reason", "facts", "supports"}


def test_cli_table_names_the_reason(tmp_path):
    fake = str(tmp_path / "nokvm")
    res = CliRunner().invoke(platforms_command, ["--kvm-device", fake])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["PLATFORM", "USABLE", "SUPPORTS"]
    kvm_row = next(i for i, line in enumerate(lines) if line.startswith("kvm "))
    assert lines[kvm_row].split()[1] == "no"
    assert SUPPORTS["kvm"] in lines[kvm_row]
    assert lines[kvm_row + 1].strip() == f"why not: no {fake}"


def test_cli_table_on_this_host():
    res = CliRunner().invoke(platforms_command, [])
    assert res.exit_code == 0, res.output
    kvm = kvm_probe.probe()
    row = next(line for line in res.output.splitlines() if line.startswith("kvm "))
    assert row.split()[1] == ("yes" if kvm.usable else "no")
    if kvm.usable:
        assert "API 12" in res.output and "why not" not in res.output.split("kvm ", 1)[1]


def test_registered_in_the_main_cli(tmp_path):
    res = CliRunner().invoke(cli_main, ["--root", str(tmp_path), "platforms", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["platforms"][0]["platform"] == "ptrace"
