"""procfs through the real mount tree and path walk, over an in-test
ProcSource. Where real programs parse a file, its shape (field names,
counts, order) is compared with the host's own file of the same name."""
import errno
import os
import re
import stat as S

import pytest

from synthetic_world import World
from vfs import ops
from vfs.file import O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY
from vfs.inode import DT_DIR
from vfs.proc import ProcFS, TaskRef, _mount_parent, _parse_number


@pytest.fixture
def w():
    return World()


def host(path):
    with open(path, "rb") as f:
        return f.read()


def fields(text: bytes) -> dict[str, str]:
    """A "Name:\tvalue" file as a dict (order kept)."""
    out = {}
    for line in text.decode().splitlines():
        if line:
            name, _, value = line.partition(":")
            out[name.rstrip()] = value.strip()
    return out


def assert_same_shape(ours: list, theirs: list, config_dependent: set = frozenset()):
    """Our field names, in order, are the host's, apart from fields that
    depend on the host kernel's configuration."""
    assert not set(ours) - set(theirs) - config_dependent, "fields Linux does not have"
    assert not set(theirs) - set(ours) - config_dependent, "fields we lack"
    common = [n for n in ours if n in theirs]
    assert common == [n for n in theirs if n in ours], "order differs"


# --- self, thread-self, pids -------------------------------------------------

def test_self_and_thread_self_follow_the_calling_task(w):
    assert w.readlink(b"/proc/self") == b"100"
    assert w.readlink(b"/proc/thread-self") == b"100/task/100"
    w.source.current_tid = 101
    assert w.readlink(b"/proc/self") == b"100"
    assert w.readlink(b"/proc/thread-self") == b"100/task/101"
    assert fields(w.read(b"/proc/thread-self/status"))["Pid"] == "101"
    w.source.current_tid = 200
    assert w.loc(b"/proc/self") == w.loc(b"/proc/200")


def test_self_without_a_calling_task_is_enoent(w):
    w.source.current_tid = None
    with pytest.raises(FileNotFoundError):
        w.loc(b"/proc/self/status")


def test_readdir_lists_fixed_entries_and_exactly_the_tgids(w):
    names = w.listdir(b"/proc")
    assert [n for n in names if n.isdigit()] == [b"%d" % p for p in w.source.tgids()] == [b"100", b"200"]
    for fixed in (b"self", b"thread-self", b"mounts", b"cpuinfo", b"meminfo", b"uptime",
                  b"loadavg", b"stat", b"version", b"filesystems", b"sys"):
        assert fixed in names
    entries = {e.name: e for e in w.loc(b"/proc").inode.readdir()}
    assert entries[b"100"].dtype == DT_DIR
    assert entries[b"100"].ino == w.loc(b"/proc/100").inode.stat().ino


def test_non_leader_thread_is_reachable_but_not_listed(w):
    assert b"101" not in w.listdir(b"/proc")
    st = fields(w.read(b"/proc/101/status"))
    assert (st["Pid"], st["Tgid"], st["Name"]) == ("101", "100", "worker")


def test_pid_names_parse_like_linux():
    assert _parse_number(b"100") == 100
    for bad in (b"0100", b"+1", b"-1", b"1a", b"", b"99999999999"):
        assert _parse_number(bad) is None


def test_unknown_pid_is_enoent(w):
    for path in (b"/proc/999", b"/proc/0100", b"/proc/999/status"):
        with pytest.raises(FileNotFoundError):
            w.loc(path)


def test_exited_task_disappears_even_from_cached_dentries(w):
    assert w.read(b"/proc/200/comm") == b"child\n"  # dentries now cached
    del w.source.tasks[200]
    with pytest.raises(FileNotFoundError):
        w.loc(b"/proc/200").inode.stat()
    with pytest.raises(FileNotFoundError):
        w.open(b"/proc/200/comm")
    assert b"200" not in w.listdir(b"/proc")


def test_reused_pid_shows_the_new_task(w):
    w.read(b"/proc/200/comm")
    w.source.tasks[200].comm = b"newcomer"
    assert w.read(b"/proc/200/comm") == b"newcomer\n"


def test_inode_numbers_are_stable_and_distinct(w):
    paths = [b"/proc/100", b"/proc/100/status", b"/proc/100/stat", b"/proc/101/status",
             b"/proc/100/task/101/status", b"/proc/100/task/100/status", b"/proc/200/status",
             b"/proc/100/fd", b"/proc/100/fdinfo/3", b"/proc/uptime", b"/proc/sys/kernel/hostname"]
    inos = [w.loc(p, follow=False).inode.stat().ino for p in paths]
    assert len(set(inos)) == len(inos)
    again = ProcFS(w.source)
    assert again.task_ino(TaskRef(100), 5) == w.procfs.task_ino(TaskRef(100), 5)
    assert w.loc(b"/proc").inode.stat().ino == 1  # Linux's PROC_ROOT_INO


# --- magic links -------------------------------------------------------------

def test_fd_link_reads_as_path_and_jumps_to_the_location(w):
    assert w.readlink(b"/proc/self/fd/3") == b"/etc/hosts"
    assert w.loc(b"/proc/self/fd/3") == w.loc(b"/etc/hosts")
    assert w.read(b"/proc/self/fd/3") == b"127.0.0.1 localhost\n"
    st = w.loc(b"/proc/self/fd/3", follow=False).inode.stat()
    assert S.S_ISLNK(st.mode) and st.mode & 0o777 == 0o700  # read-write description
    assert w.loc(b"/proc/self/fd/0", follow=False).inode.stat().mode & 0o777 == 0o500


def test_fd_link_jumps_even_when_the_text_would_not_resolve(w):
    hosts = w.loc(b"/etc/hosts")
    w.source.tasks[100].fdmap[5] = type(w.source.tasks[100].fdmap[0])(
        b"/etc/hosts (deleted)", hosts, O_RDONLY, 0)
    assert w.loc(b"/proc/self/fd/5") == hosts


def test_pipe_fd_reads_as_pipe_and_cannot_be_walked(w):
    assert w.readlink(b"/proc/self/fd/1") == b"pipe:[7]"
    with pytest.raises(FileNotFoundError):
        w.loc(b"/proc/self/fd/1")


def test_fd_directory_lists_the_fds(w):
    assert w.listdir(b"/proc/self/fd") == [b"0", b"1", b"2", b"3"]
    assert w.listdir(b"/proc/self/fdinfo") == [b"0", b"1", b"2", b"3"]
    with pytest.raises(FileNotFoundError):
        w.loc(b"/proc/self/fd/9", follow=False)
    del w.source.tasks[100].fdmap[3]  # closed after the dentry was cached
    with pytest.raises(FileNotFoundError):
        w.readlink(b"/proc/100/fd/3")


def test_fdinfo_shows_pos_octal_flags_and_mount(w):
    info = fields(w.read(b"/proc/self/fdinfo/3"))
    hosts = w.loc(b"/etc/hosts")
    assert info == {"pos": "5", "flags": "02000002", "mnt_id": str(hosts.mount.id),
                    "ino": str(hosts.inode.stat().ino)}
    assert fields(w.read(b"/proc/self/fdinfo/1"))["ino"] == "7"
    # the same fields, in the same order, as Linux's
    assert list(info) == list(fields(host("/proc/self/fdinfo/0")))[:4]


def test_cwd_exe_root_links(w):
    assert w.readlink(b"/proc/self/cwd") == b"/home/user"
    assert w.readlink(b"/proc/self/exe") == b"/bin/prog"
    assert w.readlink(b"/proc/self/root") == b"/"
    assert w.loc(b"/proc/self/cwd") == w.loc(b"/home/user")
    assert w.read(b"/proc/self/exe") == b"\x7fELF"
    w.source.tasks[100].exe_loc = None
    with pytest.raises(FileNotFoundError):
        w.readlink(b"/proc/self/exe")


def test_root_link_then_dotdot_stays_in_the_sandbox_root(w):
    assert w.loc(b"/proc/self/root/..") == w.tree.root
    assert w.loc(b"/proc/self/root/../../..") == w.tree.root
    # a task chrooted to /home: its root link jumps to /home, and for a
    # caller whose root is /home, .. from there cannot rise above it
    home = w.loc(b"/home")
    w.source.tasks[100].root_loc = home
    inside = w.loc(b"/proc/self/root")
    assert inside == home
    assert w.readlink(b"/proc/self/root") == b"/"  # as the chrooted task sees it
    assert w.tree.resolve(w.ctx(root=home), b"..", start=inside) == home


def test_magic_links_need_ptrace_access(w):
    w.source.current_tid = 200  # uid 1000 looks at root's task 100
    other = w.ctx(uid=1000)
    for path in (b"/proc/100/cwd", b"/proc/100/exe", b"/proc/100/root"):
        with pytest.raises(PermissionError):
            w.readlink(path)  # readlink: the calling task's credentials
        with pytest.raises(PermissionError):
            w.tree.resolve(other, path)  # a walk: the walker's
        assert w.tree.resolve(w.root_ctx, path)
    assert w.readlink(b"/proc/200/cwd") == b"/home/user"  # its own


# --- per-task files ----------------------------------------------------------

def test_status_values(w):
    st = fields(w.read(b"/proc/100/status"))
    assert st["Name"] == "prog"
    assert st["State"] == "S (sleeping)"
    assert (st["Tgid"], st["Pid"], st["PPid"], st["Threads"]) == ("100", "100", "1", "2")
    assert st["Uid"].split() == ["0"] * 4
    assert st["VmSize"] == "%d kB" % w.source.tasks[100].vm_size_kb()
    assert st["VmRSS"] == "%d kB" % w.source.tasks[100].vm_rss_kb()
    assert st["VmStk"] == "132 kB" and st["VmExe"] == "16 kB" and st["VmLib"] == "128 kB"
    assert st["VmData"] == "%d kB" % (8 + 132)  # the binary's data and the heap
    assert st["SigQ"].split("/")[0] == "0"
    assert (st["SigBlk"], st["SigIgn"], st["SigCgt"]) == ("%016x" % 2, "%016x" % 4096, "%016x" % 16384)
    assert st["Cpus_allowed"] == "3" and st["Cpus_allowed_list"] == "0-1"
    assert fields(w.read(b"/proc/200/status"))["Uid"].split() == ["1000"] * 4


def test_status_has_linux_shape(w):
    ours = list(fields(w.read(b"/proc/100/status")))
    theirs = list(fields(host("/proc/self/status")))
    assert_same_shape(ours, theirs, {"x86_Thread_features", "x86_Thread_features_locked",
                                     "Untag", "untag_mask", "Kthread", "Ngid", "THP_enabled",
                                     "SpeculationIndirectBranch", "Seccomp_filters"})
    assert w.read(b"/proc/100/status").count(b"\t") >= len(ours)


def test_zombie_status_and_stat(w):
    w.source.tasks[200].state = "Z"
    st = fields(w.read(b"/proc/200/status"))
    assert st["State"] == "Z (zombie)" and "VmSize" not in st
    assert w.read(b"/proc/200/stat").split()[22:24] == [b"0", b"0"]


def test_stat_has_linux_shape_and_values(w):
    ours = w.read(b"/proc/100/stat")
    theirs = host("/proc/self/stat")
    assert ours.endswith(b"\n")
    head, _, rest = ours.rpartition(b") ")
    assert head == b"100 (prog"
    vals = rest.split()
    assert len(vals) + 2 == len(theirs.rpartition(b") ")[2].split()) + 2 == 52
    assert vals[0] == b"S" and vals[1:4] == [b"1", b"100", b"100"]
    assert int(vals[19]) == 250  # starttime: 2.5 s after boot in clock ticks
    assert int(vals[20]) == w.source.tasks[100].vm_size_kb() * 1024
    assert all(re.fullmatch(rb"-?\d+", v) for v in vals[1:])
    assert w.read(b"/proc/101/stat").split()[37] == b"-1"  # a thread's exit_signal


def test_stat_with_odd_comm_keeps_its_shape(w):
    w.source.tasks[100].comm = b"a) (b c"
    rest = w.read(b"/proc/100/stat").rpartition(b") ")[2]
    assert len(rest.split()) == 50


def test_statm(w):
    vals = [int(v) for v in w.read(b"/proc/100/statm").split()]
    assert len(vals) == len(host("/proc/self/statm").split()) == 7
    t = w.source.tasks[100]
    assert vals[0] == t.vm_size_kb() // 4 and vals[1] == t.vm_rss_kb() // 4


def test_cmdline_environ_comm(w):
    assert w.read(b"/proc/100/cmdline") == b"/bin/prog\0-x\0"
    assert w.read(b"/proc/100/environ") == b"HOME=/home/user\0PATH=/bin\0"
    assert w.read(b"/proc/self/comm") == b"prog\n"


def test_environ_and_maps_are_private(w):
    other = w.ctx(uid=1000)
    w.source.current_tid = 200
    with pytest.raises(PermissionError):  # mode 0400, owned by the task's uid
        w.read(b"/proc/100/environ", ctx=other)
    with pytest.raises(PermissionError):  # ptrace check
        w.read(b"/proc/100/maps", ctx=other)
    assert w.read(b"/proc/100/status", ctx=other)
    with pytest.raises(PermissionError):  # fd/ is dr-x------
        w.tree.resolve(other, b"/proc/100/fd/3")


def test_maps_is_passed_through_in_linux_shape(w):
    line_re = re.compile(rb"^[0-9a-f]+-[0-9a-f]+ [r-][w-][x-][ps] [0-9a-f]{8} [0-9a-f]+:[0-9a-f]+ \d+ *(\S.*)?$")
    for line in host("/proc/self/maps").splitlines():
        assert line_re.match(line), line
    ours = w.read(b"/proc/100/maps")
    assert ours == w.source.tasks[100].maps_text
    assert all(line_re.match(line) for line in ours.splitlines())


def test_task_directory(w):
    assert w.listdir(b"/proc/100/task") == [b"100", b"101"]
    assert w.read(b"/proc/100/task/101/stat").split()[0] == b"101"
    assert w.read(b"/proc/100/task/101/comm") == b"worker\n"
    assert b"task" not in w.listdir(b"/proc/100/task/101")
    assert w.loc(b"/proc/100/task/101/cwd") == w.loc(b"/home/user")
    with pytest.raises(FileNotFoundError):
        w.loc(b"/proc/100/task/200")  # another group's thread
    names = w.listdir(b"/proc/100")
    for n in (b"cmdline", b"environ", b"comm", b"stat", b"statm", b"status", b"exe", b"cwd",
              b"root", b"fd", b"fdinfo", b"maps", b"mounts", b"mountinfo", b"task", b"limits",
              b"cgroup", b"oom_score_adj"):
        assert n in names
    assert set(names) <= set(os.listdir(b"/proc/self"))  # nothing Linux lacks


def test_mounts_and_mountinfo(w):
    mounts = w.read(b"/proc/self/mounts")
    assert w.read(b"/proc/mounts") == mounts
    assert w.readlink(b"/proc/mounts") == b"self/mounts"
    lines = [l.split() for l in mounts.splitlines()]
    assert [l[1] for l in lines] == [b"/", b"/proc", b"/dev", b"/sys"]
    assert lines[3][2:] == [b"sysfs", b"ro,nosuid,nodev,noexec,relatime", b"0", b"0"]
    for ours, theirs in zip(lines, (l.split() for l in host("/proc/self/mounts").splitlines())):
        assert len(ours) == len(theirs) == 6 and ours[4:] == theirs[4:] == [b"0", b"0"]

    info = [l.split() for l in w.read(b"/proc/self/mountinfo").splitlines()]
    ids = {l[4]: l[0] for l in info}
    assert info[1][1] == ids[b"/"] == info[0][1]  # /proc sits on /; / is its own parent
    for ours in info + [l.split() for l in host("/proc/self/mountinfo").splitlines()]:
        sep = ours.index(b"-")
        assert sep >= 6 and len(ours) - sep - 1 == 3
        assert re.fullmatch(rb"\d+:\d+", ours[2])


def test_mount_parents_and_escaping():
    mounts = [(b"none", b"/", b"tmpfs", b"rw"), (b"proc", b"/proc", b"proc", b"rw"),
              (b"x", b"/procfoo", b"tmpfs", b"rw"), (b"y", b"/proc/sys", b"tmpfs", b"rw")]
    assert [_mount_parent(mounts, i) for i in range(4)] == [0, 0, 0, 1]
    from vfs.proc import _mangle
    assert _mangle(b"a b\tc\\d\ne") == b"a\\040b\\011c\\134d\\012e"


def test_limits_has_linux_shape(w):
    ours = w.read(b"/proc/self/limits").decode().splitlines()
    theirs = host("/proc/self/limits").decode().splitlines()
    assert ours[0] == theirs[0]
    assert [l[:26] for l in ours] == [l[:26] for l in theirs]  # the limits' names
    assert [len(l) for l in ours] == [len(l) for l in theirs]  # the column widths


def test_small_files(w):
    assert w.read(b"/proc/self/cgroup") == b"0::/\n"
    assert w.read(b"/proc/self/oom_score_adj") == b"0\n"


# --- access modes and sizes --------------------------------------------------

def test_files_stat_with_size_zero_and_read_from_a_snapshot(w):
    st = w.loc(b"/proc/100/status").inode.stat()
    assert S.S_ISREG(st.mode) and st.size == 0 and st.mode & 0o777 == 0o444
    assert st.uid == 0 and w.loc(b"/proc/200/status").inode.stat().uid == 1000
    f = w.open(b"/proc/100/comm")
    w.source.tasks[100].comm = b"renamed"
    assert f.read(2) == b"pr" and f.read(100) == b"og\n"  # the text at open
    assert f.pread(3, 1) == b"rog"
    assert w.read(b"/proc/100/comm") == b"renamed\n"


def test_writes_fail_like_linux(w):
    f = w.open(b"/proc/100/status", O_RDWR)  # root may open; the write fails
    with pytest.raises(OSError) as e:
        f.write(b"x")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(PermissionError):  # others fail at open on the mode bits
        w.open(b"/proc/200/status", O_WRONLY, ctx=w.ctx(uid=1000))
    for path in (b"/proc/sys/kernel/hostname", b"/proc/self/comm", b"/proc/self/oom_score_adj"):
        for flags in (O_WRONLY, O_WRONLY | O_TRUNC):  # `echo x > file` truncates first
            with pytest.raises(PermissionError):
                w.open(path, flags)
    with pytest.raises(PermissionError):
        ops.setattr(w.loc(b"/proc/self/status"), w.root_ctx, mode=0o777)
    f = w.open(b"/proc/uptime", O_WRONLY)
    with pytest.raises(OSError) as e:
        f.write(b"1")
    assert e.value.errno == errno.EIO
    with pytest.raises(OSError):
        ops.mkdir(w.tree, w.root_ctx, b"/proc/newdir", 0o755, 0)
    with pytest.raises(OSError):
        w.open(b"/proc/newfile", 0o101)


# --- top-level files ---------------------------------------------------------

def test_meminfo_values_and_shape(w):
    ours = fields(w.read(b"/proc/meminfo"))
    assert ours["MemTotal"] == "2048000 kB" and ours["MemFree"] == "1024000 kB"
    assert ours["MemAvailable"] == "1024000 kB"
    assert_same_shape(list(ours), list(fields(host("/proc/meminfo"))),
                      {"Zswap", "Zswapped", "SecPageTables", "Balloon", "Unaccepted", "CmaTotal",
                       "CmaFree", "HardwareCorrupted", "DirectMap1G", "DirectMap4M", "Hugetlb",
                       "ShmemHugePages", "ShmemPmdMapped", "FileHugePages", "FilePmdMapped",
                       "Mlocked", "Percpu", "KReclaimable", "NFS_Unstable", "Bounce",
                       "FileHugePages", "Quicklists", "MmapCopy", "GPUActive", "GPUReclaim"})
    for line in w.read(b"/proc/meminfo").decode().splitlines():
        assert re.fullmatch(r"[\w()]+:\s+\d+( kB)?", line)


def test_cpuinfo_has_one_linux_shaped_block_per_cpu(w):
    blocks = [b for b in w.read(b"/proc/cpuinfo").decode().split("\n\n") if b]
    assert len(blocks) == 2
    theirs = [l.split(":")[0].rstrip() for l in host("/proc/cpuinfo").decode().split("\n\n")[0].splitlines()]
    for i, block in enumerate(blocks):
        ours = [l.split(":")[0].rstrip() for l in block.splitlines()]
        assert_same_shape(ours, theirs, {"TLB size", "vmx flags", "bugs", "microcode"})
        assert fields(block.encode())["processor"] == str(i)
    flags = fields(blocks[0].encode())["flags"].split()
    assert {"sse2", "lm", "cx16"} <= set(flags)
    w.source.cpus = 3
    assert w.read(b"/proc/cpuinfo").count(b"processor\t:") == 3


def test_uptime_loadavg_stat_version(w):
    up, idle = (float(x) for x in w.read(b"/proc/uptime").split())
    assert up > 0 and idle >= 0
    assert re.fullmatch(rb"\d+\.\d\d \d+\.\d\d\n", w.read(b"/proc/uptime"))
    assert re.fullmatch(rb"0\.00 0\.00 0\.00 1/3 200\n", w.read(b"/proc/loadavg"))
    stat = w.read(b"/proc/stat").decode().splitlines()
    assert stat[0].startswith("cpu  ") and [l.split()[0] for l in stat[1:3]] == ["cpu0", "cpu1"]
    theirs = [l.split()[0] for l in host("/proc/stat").decode().splitlines()]
    ours = [l.split()[0] for l in stat]
    assert [n for n in theirs if not n.startswith("cpu")] == [n for n in ours if not n.startswith("cpu")]
    assert len(stat[0].split()) == len(host("/proc/stat").split(b"\n")[0].split())
    assert w.read(b"/proc/version").startswith(b"Linux version 6.1.0-pyrunsc (")
    assert w.read(b"/proc/filesystems").splitlines()[0] == b"nodev\tsysfs"


def test_sysctls(w):
    assert w.read(b"/proc/sys/kernel/hostname") == b"sandbox-host\n"
    assert w.read(b"/proc/sys/kernel/osrelease") == b"6.1.0-pyrunsc\n"
    assert w.read(b"/proc/sys/kernel/ostype") == b"Linux\n"
    assert w.read(b"/proc/sys/kernel/cap_last_cap") == host("/proc/sys/kernel/cap_last_cap")
    boot_id = w.read(b"/proc/sys/kernel/random/boot_id")
    assert boot_id == w.read(b"/proc/sys/kernel/random/boot_id")
    assert w.read(b"/proc/sys/kernel/random/uuid") != w.read(b"/proc/sys/kernel/random/uuid")
    uuid_re = rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n"
    assert re.fullmatch(uuid_re, boot_id)
    for path in (b"kernel/pid_max", b"kernel/ngroups_max", b"vm/overcommit_memory",
                 b"fs/file-max", b"fs/nr_open", b"kernel/version"):
        assert w.read(b"/proc/sys/" + path).endswith(b"\n")
    assert w.loc(b"/proc/sys/kernel/hostname").inode.stat().mode & 0o777 == 0o644


def test_statfs_and_names(w):
    assert w.loc(b"/proc").mount.fs.statfs().type == 0x9FA0
    assert w.loc(b"/proc").mount.fs.name == "proc"
