"""The file cache (sentry/mm/filecache.py) is one host memfd, fd 5 of
every guest host process, holding the pages of every file mapped
MAP_SHARED. A guest must not name it, and must not see past its own
file's slot by growing a mapping."""
from conftest import run_do


def test_guest_cannot_name_the_file_cache_fd():
    # fd 5 of the host process is not the guest's: a guest's syscalls never reach the host
    script = ("import os, mmap\n"
              "for f in (lambda: os.read(5, 1), lambda: os.fstat(5), lambda: mmap.mmap(5, 4096)):\n"
              "    try:\n"
              "        f(); print('reached')\n"
              "    except OSError as e:\n"
              "        print(e.errno)\n")
    r = run_do(["/usr/bin/python3.11", "-c", script])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [b"9", b"9", b"9"]  # EBADF


def test_growing_a_shared_mapping_never_shows_another_file(cbin):
    r = run_do([cbin("filecache_escape"), "/tmp"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert b"grow past the slot: Cannot allocate memory" in r.stdout
    assert b"nonzero bytes past the file's page 0, secret seen 0" in r.stdout
