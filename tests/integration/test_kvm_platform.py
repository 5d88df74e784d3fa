"""`pyrunsc --platform=kvm do`: static programs run on a vCPU with the
sentry's syscall table and VFS, and what the platform lacks ends the run
with a message naming it, never a hang. Skips where /dev/kvm is unusable."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import FIXTURES, pyrunsc_cmd


def _kvm_unusable_reason():
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm on this host"
    try:
        from platforms.kvm.platform import KvmPlatform
        from platforms.kvm.vm import KvmError, KvmUnusable
    except ImportError as e:
        return f"the kvm extension is not built: {e}"
    try:
        KvmPlatform(mem_size=64 << 20).close()
    except (KvmError, KvmUnusable) as e:
        return f"/dev/kvm unusable: {e}"
    return None


_REASON = _kvm_unusable_reason()
pytestmark = [
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc for the fixtures"),
]


@pytest.fixture(scope="module")
def kbin():
    """Fixtures built under /var/tmp (the sandbox's /tmp is its own):
    -nostdlib ones with raw syscalls, the rest static glibc."""
    out = tempfile.mkdtemp(prefix="pyrunsc-kvm-", dir="/var/tmp")
    os.chmod(out, 0o755)
    built = {}

    def build(name, nostdlib=False):
        if name not in built:
            exe = os.path.join(out, name)
            flags = ["-nostdlib"] if nostdlib else []
            subprocess.run(["gcc", "-O1", "-static", *flags, "-o", exe, os.path.join(FIXTURES, name + ".c")],
                           check=True)
            built[name] = exe
        return built[name]
    yield build
    shutil.rmtree(out, ignore_errors=True)


def kvm_do(args, *, do_opts=(), timeout=60, input=None, env=None):
    return subprocess.run(pyrunsc_cmd("--platform=kvm", "do", *do_opts, "--", *args), capture_output=True,
                          timeout=timeout, input=input, cwd="/", env=dict(os.environ, **(env or {})))


def test_hello_kvm_writes_through_the_sentry_and_exits_3(kbin):
    r = kvm_do([kbin("hello_kvm", nostdlib=True)], do_opts=["--strace"])
    assert r.returncode == 3, r.stderr
    assert r.stdout == b"hello kvm\n"
    # the sentry's write handler ran it (strace is the syscall table's monitor)
    assert b'write(1, "hello kvm\\n", 10) = 10' in r.stderr, r.stderr


def test_checksum_of_a_file_in_the_sandbox_root(kbin):
    root = tempfile.mkdtemp(prefix="pyrunsc-kvmroot-", dir="/var/tmp")
    try:
        os.chmod(root, 0o755)
        os.mkdir(os.path.join(root, "bin"))
        shutil.copy(kbin("kvm_checksum", nostdlib=True), os.path.join(root, "bin", "sum"))
        data = os.urandom(200_000) + b"only in this root"
        with open(os.path.join(root, "payload.bin"), "wb") as f:
            f.write(data)
        h = 2166136261
        for b in data:
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
        r = kvm_do(["/bin/sum", "/payload.bin"], do_opts=["--root", root])
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{len(data)} {h:08x}\n".encode()
        assert kvm_do(["/bin/sum", "/nonexistent"], do_opts=["--root", root]).returncode == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_static_glibc_program_starts_and_uses_stdio_malloc_and_files(kbin):
    fd, data = tempfile.mkstemp(prefix="pyrunsc-kvmdata-", dir="/var/tmp")
    try:
        os.write(fd, b"first line")
        os.close(fd)
        os.chmod(data, 0o644)
        r = kvm_do([kbin("kvm_libc_hello"), data])
    finally:
        os.unlink(data)
    assert (r.returncode, r.stdout) == (0, b"first line|2|x\n"), r.stderr


@pytest.mark.parametrize("case,status", [("segv", 139), ("ud2", 132)])
def test_faults_kill_with_the_linux_signal(kbin, case, status):
    r = kvm_do([kbin("kvm_cases"), case])
    assert r.returncode == status, r.stderr


def test_anonymous_memory_mmap_mprotect_mremap_madvise(kbin):
    r = kvm_do([kbin("kvm_cases"), "mmap"])
    assert (r.returncode, r.stdout) == (0, b"mmap ok 7\n"), r.stderr


def test_sleep_and_stdin_from_the_host(kbin):
    r = kvm_do([kbin("kvm_cases"), "sleep"])
    assert r.returncode == 0 and r.stdout.startswith(b"slept 2"), (r.stdout, r.stderr)
    r = kvm_do([kbin("kvm_cases"), "cat"], input=b"through a host pipe\n")
    assert (r.returncode, r.stdout) == (0, b"through a host pipe\n"), r.stderr


@pytest.mark.parametrize("case,needs", [("fork", b"clone(2)"), ("handler", b"signal handlers")])
def test_what_the_platform_lacks_is_named_and_ends_the_run(kbin, case, needs):
    r = kvm_do([kbin("kvm_cases"), case], timeout=30)
    assert r.returncode == 125
    assert b"the kvm platform cannot run this program: it needs " + needs in r.stderr, r.stderr


def test_a_program_that_never_ends_meets_the_time_limit(kbin):
    r = kvm_do([kbin("kvm_cases"), "spin"], env={"PYRUNSC_KVM_TIME_LIMIT": "1.5"}, timeout=30)
    assert r.returncode == 137
    assert b"time limit (1.5 s)" in r.stderr


def test_getpid_loop_and_pid_1(kbin):
    r = kvm_do([kbin("kvm_cases"), "getpid", "2000"])
    assert (r.returncode, r.stdout) == (0, b"pid 1\n"), r.stderr


def test_unknown_platform_is_refused_by_the_cli():
    r = subprocess.run([sys.executable, "-m", "pyrunsc.cli", "--platform=nope", "do", "--", "true"],
                       capture_output=True, cwd="/")
    assert r.returncode == 2 and b"kvm" in r.stderr


def test_oci_commands_refuse_the_kvm_platform():
    r = subprocess.run([sys.executable, "-m", "pyrunsc.cli", "--platform=kvm", "state", "x"],
                       capture_output=True, cwd="/")
    assert r.returncode == 2 and b"--platform=kvm runs `do`" in r.stderr


def test_a_dynamic_program_loads_its_libraries_by_copy_and_a_shell_meets_fork():
    r = kvm_do(["/bin/echo", "dynamic", "too"])
    assert (r.returncode, r.stdout) == (0, b"dynamic too\n"), r.stderr
    r = kvm_do(["/bin/sh", "-c", "echo builtin; /bin/true"], timeout=30)
    assert r.stdout == b"builtin\n" and r.returncode == 125
    assert b"it needs vfork(2)" in r.stderr or b"it needs clone(2)" in r.stderr or b"it needs fork(2)" in r.stderr
