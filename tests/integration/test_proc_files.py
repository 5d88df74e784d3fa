"""The /proc, /dev and /sys files issue 4 lists exist in the sandbox, and
the ones with a format programs parse read as Linux's do."""
from conftest import run_do

PROC = ("stat status statm maps smaps cmdline environ comm cwd root exe fd fdinfo/0 mounts mountinfo "
        "limits oom_score_adj ns task").split()
TOP = ("/proc/thread-self /proc/cpuinfo /proc/meminfo /proc/stat /proc/uptime /proc/loadavg /proc/version "
       "/proc/filesystems /proc/mounts /proc/sys/kernel/hostname /proc/sys/kernel/osrelease "
       "/proc/sys/kernel/ostype /proc/sys/kernel/pid_max /proc/sys/kernel/random/uuid "
       "/proc/sys/vm/overcommit_memory /proc/sys/fs/file-max /dev/null /dev/zero /dev/full /dev/random "
       "/dev/urandom /dev/tty /dev/ptmx /dev/pts /dev/shm /dev/fd /dev/stdin /dev/stdout /dev/stderr "
       "/sys/devices/system/cpu/online /sys/devices/system/cpu/possible /sys/devices/system/cpu/present "
       "/sys/fs/cgroup").split()


def test_listed_files_exist():
    paths = [f"/proc/self/{p}" for p in PROC] + TOP
    script = 'for f in "$@"; do [ -e "$f" ] || [ -L "$f" ] || echo "missing $f"; done; echo checked'
    r = run_do(["/bin/sh", "-c", script, "sh", *paths])
    assert r.stdout == b"checked\n", r.stdout


def test_namespace_links_and_smaps():
    script = r"""
import os, re
ns = sorted(os.listdir('/proc/self/ns'))
print(ns == sorted('cgroup ipc mnt net pid pid_for_children time time_for_children user uts'.split()))
links = {n: os.readlink('/proc/self/ns/' + n) for n in ns}
print(all(re.fullmatch(n.replace('_for_children', '') + r':\[\d+\]', l) for n, l in links.items()))
print(links['pid'] == links['pid_for_children'], links['pid'] != links['net'])
maps = open('/proc/self/maps').read().splitlines()
smaps = open('/proc/self/smaps').read().splitlines()
heads = [l for l in smaps if re.match(r'[0-9a-f]+-[0-9a-f]+ ', l)]
print(heads == maps)
sizes = [int(l.split()[1]) for l in smaps if l.startswith('Size:')]
spans = [(int(h.split()[0].split('-')[1], 16) - int(h.split()[0].split('-')[0], 16)) // 1024 for h in heads]
print(sizes == spans, len(sizes) > 5)
"""
    r = run_do(["/usr/bin/python3.11", "-c", script])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [b"True"] * 7
