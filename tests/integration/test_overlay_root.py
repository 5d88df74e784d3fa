"""The root overlay under the real sentry: a host directory seen through
the sandbox's root (the gofer's read-only export below, a tmpfs above) must
behave like a writable copy of it does natively, and the host directory
must not change.

tests/fixtures/overlay.c runs copy-up, whiteouts, renames of lower
directories and files, merged readdir with d_ino/d_type/d_off checks,
xattrs and statfs in a seeded directory; natively it runs in a `cp -a`
copy, in the sandbox in the original (under /var/tmp, which the sandbox
sees at the same path through its root overlay).
"""
import hashlib
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import have, run_do

SEED_FILES = {
    "a/file1": b"hello\n", "a/file2": b"two\n", "a/file3": b"three\n", "a/sub/deep": b"deep\n",
    "b/x": b"ex\n", "b/y": b"why\n", "c/only": b"o", "d/e/f": b"f", "d/g": b"g",
    "t/u/v/w": b"w", "suid": b"#!/bin/sh\n", "xf": b"xattrs", "xf2": b"more xattrs",
    "hard1": b"linked",
    "big": bytes(i * 7 % 251 for i in range(300_000)),
}


def seed(root):
    for path, data in SEED_FILES.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    os.mkdir(os.path.join(root, "empty"))
    os.symlink("a/file1", os.path.join(root, "link"))
    os.link(os.path.join(root, "hard1"), os.path.join(root, "hard2"))
    os.chmod(os.path.join(root, "suid"), 0o4755)
    os.chmod(os.path.join(root, "a/file1"), 0o640)
    os.chown(os.path.join(root, "a/file1"), 1000, 1001)
    os.chmod(os.path.join(root, "d"), 0o750)
    os.setxattr(os.path.join(root, "xf"), b"user.color", b"blue")
    os.setxattr(os.path.join(root, "xf2"), b"user.kept", b"yes")
    # fixed times, so that a copy-up that loses them shows
    for top, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(top, name), ns=(1_111_111_111_000_000_123, 1_222_222_222_000_000_456),
                     follow_symlinks=False)


def snapshot(root):
    """Everything a change could touch: types, modes, owners, sizes, times,
    inode numbers, link counts, contents, link targets, xattrs."""
    out = {}
    for top, dirs, files in os.walk(root):
        for name in sorted(dirs + files) + ["."]:
            full = os.path.normpath(os.path.join(top, name))
            st = os.lstat(full)
            entry = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_ino, st.st_nlink,
                     st.st_mtime_ns, st.st_ctime_ns)
            if os.path.islink(full):
                entry += (os.readlink(full),)
            elif os.path.isfile(full):
                with open(full, "rb") as f:
                    entry += (hashlib.sha256(f.read()).hexdigest(),)
            if not os.path.islink(full):
                entry += (sorted((n, os.getxattr(full, n)) for n in os.listxattr(full)),)
            out[os.path.relpath(full, root)] = entry
    return out


@pytest.fixture
def seeded():
    """(the seeded directory the sandbox works in, a native copy)."""
    if os.geteuid() != 0:
        pytest.skip("seeding sets owners (chown): needs root")
    top = tempfile.mkdtemp(prefix="pyrunsc-overlay-", dir="/var/tmp")
    lower, copy = os.path.join(top, "lower"), os.path.join(top, "copy")
    os.mkdir(lower)
    try:
        seed(lower)
        subprocess.run(["cp", "-a", lower, copy], check=True, timeout=60)
        yield lower, copy
    finally:
        shutil.rmtree(top, ignore_errors=True)


def sections(out: bytes) -> dict:
    parts, name = {}, None
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("== "):
            name = line[3:]
            parts[name] = []
        elif name is not None:
            parts[name].append(line)
    return parts


def test_overlay_matches_native_and_leaves_host_alone(cbin, seeded):
    lower, copy = seeded
    prog = cbin("overlay")
    before = snapshot(lower)
    native = subprocess.run([prog, copy], capture_output=True, timeout=60)
    assert native.returncode == 0, native.stderr
    r = run_do([prog, lower], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    want, got = sections(native.stdout), sections(r.stdout)
    assert list(got) == list(want)
    for name in want:
        assert got[name] == want[name], f"section {name}"
    assert snapshot(lower) == before  # every change stayed in the sandbox


def test_changes_vanish_with_the_sandbox(seeded):
    """A second sandbox sees the host directory as it was."""
    lower, _ = seeded
    script = f"cd {lower} && rm -rf a && mv d d2 && echo x > b/x && ls"
    r = run_do(["/bin/sh", "-c", script])
    assert sorted(r.stdout.decode().split()) == sorted(set(os.listdir(lower)) - {"a", "d"} | {"d2"}), r.stderr
    r = run_do(["/bin/sh", "-c", f"cd {lower} && ls && cat b/x"])
    assert r.stdout.decode().split() == sorted(os.listdir(lower)) + ["ex"], r.stderr


HOST_DIR = "/etc"


@pytest.mark.skipif(not have("busybox"), reason="needs busybox")
def test_mv_of_a_host_directory():
    """`mv /etc /etc2` is a rename (same inode, nothing copied), and
    removing the moved tree inside the sandbox leaves the host's alone."""
    names = sorted(os.listdir(HOST_DIR))
    passwd = open("/etc/passwd", "rb").read()
    ino = os.stat(HOST_DIR).st_ino
    script = ("mv /etc /etc2 && ls /etc2 | head -3 && stat -c %i /etc2 && ls -d /etc 2>&1; "
              "rm -rf /etc2 && ls /etc2 2>&1; echo done")
    r = run_do(["busybox", "sh", "-c", script], timeout=180)
    lines = r.stdout.decode().splitlines()
    assert lines[:3] == [n for n in names if not n.startswith(".")][:3], r.stderr[-2000:]
    assert lines[3] == str(ino)  # a rename, not mv's copy fallback
    assert "No such file" in lines[4] and "No such file" in lines[5] and lines[6] == "done"
    assert sorted(os.listdir(HOST_DIR)) == names and open("/etc/passwd", "rb").read() == passwd


def test_disk_usage_of_the_root():
    """shutil.disk_usage of / counts the image as used (CPython's
    test_shutil asserts used > 0)."""
    code = "import shutil; u = shutil.disk_usage('/'); print(u.used > 0, u.free > 0, u.total >= u.used)"
    r = run_do(["/usr/bin/python3", "-c", code])
    assert r.stdout == b"True True True\n", r.stderr[-2000:]
