"""A guest must not reach host files outside its root, nor run i386 syscalls."""
import os
import shutil

from conftest import run_do


def make_root(tmp_path, binary):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_text("host-secret\n")
    (outside / "sub" / "secret").write_text("host-secret-sub\n")
    root.mkdir()
    shutil.copy(binary, root / "prog")
    os.symlink("../outside", root / "up")
    os.symlink(str(outside), root / "abs")
    os.symlink("../outside/sub", root / "updir")
    return root, outside


def test_paths_cannot_leave_root(tmp_path, cbin, strace):
    root, outside = make_root(tmp_path, cbin("escape"))
    r = run_do(["/prog", str(outside / "secret")], do_opts=["--root", str(root), "--cwd", "/"],
               strace=strace)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 9, lines
    for line in lines:
        assert " blocked " in line, line
    assert b"host-secret" not in r.stdout
    if strace:
        assert b'X openat(AT_FDCWD, "/proc/self/root/../../outside/secret", O_RDONLY) = -1 ENOENT' in r.stderr


def test_int80_is_refused(tmp_path, cbin, strace):
    r = run_do([cbin("int80")], strace=strace)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.decode().splitlines()
    assert out == ["int80 -38", "still here -38"]  # -ENOSYS both times, exit(42) never ran
