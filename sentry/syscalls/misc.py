"""System information, randomness, scheduling, resource limits, prctl,
futex, and the calls we refuse on purpose."""
from __future__ import annotations

import errno
import os
import struct
import time

from vfs.inode import fserr

from .. import caps, futex, sched, seccomp
from ..hostmem import memory
from .time import process_cpu_ns, thread_cpu_ns
from .table import PARTIAL, syscall, unimplemented
from .util import I32, s32

RELEASE = b"6.1.0-pyrunsc"
VERSION = b"#1 SMP PREEMPT_DYNAMIC pyrunsc"
RLIMIT_NOFILE, RLIMIT_STACK, RLIM_INFINITY = 7, 3, 0xFFFFFFFFFFFFFFFF
DEFAULT_RLIMITS = {
    0: (RLIM_INFINITY, RLIM_INFINITY),  # CPU
    1: (RLIM_INFINITY, RLIM_INFINITY),  # FSIZE
    2: (RLIM_INFINITY, RLIM_INFINITY),  # DATA
    3: (8 << 20, RLIM_INFINITY),        # STACK
    4: (0, RLIM_INFINITY),              # CORE
    5: (RLIM_INFINITY, RLIM_INFINITY),  # RSS
    6: (4096, 4096),                    # NPROC
    7: (1024, 4096),                    # NOFILE
    8: (8 << 20, 8 << 20),              # MEMLOCK
    9: (RLIM_INFINITY, RLIM_INFINITY),  # AS
    10: (RLIM_INFINITY, RLIM_INFINITY),  # LOCKS
    11: (4096, 4096),                   # SIGPENDING
    12: (819200, 819200),               # MSGQUEUE
    13: (0, 0), 14: (0, 0),             # NICE, RTPRIO
    15: (RLIM_INFINITY, RLIM_INFINITY),  # RTTIME
}


@syscall("uname")
def sys_uname(k, t, buf, *_):
    fields = [b"Linux", k.hostname, RELEASE, VERSION, b"x86_64", k.domainname]
    t.thread.write(buf, b"".join(f[:64].ljust(65, b"\0") for f in fields))
    return 0


@syscall("sethostname", "setdomainname")
def sys_sethostname(k, t, name, length, *_):
    if not caps.task_capable(t, caps.CAP_SYS_ADMIN):
        raise fserr(errno.EPERM)
    if length > 64:
        raise fserr(errno.EINVAL)
    value = t.thread.read(name, length)
    if t.syscall_nr == 170:
        k.hostname = value
    else:
        k.domainname = value
    return 0


@syscall("getrandom")
def sys_getrandom(k, t, buf, count, flags, *_):
    if flags & ~7:
        raise fserr(errno.EINVAL)
    count = min(count, 32 << 20)
    t.thread.write(buf, os.urandom(count))
    return count


@syscall("sysinfo")
def sys_sysinfo(k, t, info, *_):
    total, available = memory()
    uptime = (time.monotonic_ns() - k.boot_ns) // 10**9
    procs = len(k.pidns.tasks)
    t.thread.write(info, struct.pack("<q3QQQQQQQH6xQQI", uptime, 0, 0, 0, total, available, 0, 0,
                                     0, 0, procs, 0, 0, 1).ljust(112, b"\0"))
    return 0


def _rlimit(t, res):
    if not 0 <= res < 16:
        raise fserr(errno.EINVAL)
    return t.tg.rlimits.get(res, DEFAULT_RLIMITS[res])


def _set_rlimit(t, res, soft, hard):
    cur = _rlimit(t, res)
    if soft > hard:
        raise fserr(errno.EINVAL)
    if hard > cur[1] and not caps.task_capable(t, caps.CAP_SYS_RESOURCE):
        raise fserr(errno.EPERM)
    if res == RLIMIT_NOFILE and hard > 1 << 20:
        raise fserr(errno.EPERM)
    t.tg.rlimits[res] = (soft, hard)
    if res == RLIMIT_NOFILE:
        t.tg.fdtable.limit = soft if soft != RLIM_INFINITY else 1 << 20


@syscall("prlimit64")
def sys_prlimit64(k, t, pid, res, new, old, *_):
    target = t
    if s32(pid):
        tg = k.pidns.groups.get(s32(pid))
        if tg is None or not tg.tasks:
            raise fserr(errno.ESRCH)
        target = tg.tasks[0]
    cur = _rlimit(target, res)
    if new:
        soft, hard = struct.unpack("<QQ", t.thread.read(new, 16))
        _set_rlimit(target, res, soft, hard)
    if old:
        t.thread.write(old, struct.pack("<QQ", *cur))
    return 0


@syscall("getrlimit")
def sys_getrlimit(k, t, res, rlim, *_):
    t.thread.write(rlim, struct.pack("<QQ", *_rlimit(t, res)))
    return 0


@syscall("setrlimit")
def sys_setrlimit(k, t, res, rlim, *_):
    soft, hard = struct.unpack("<QQ", t.thread.read(rlim, 16))
    _set_rlimit(t, res, soft, hard)
    return 0


@syscall("getrusage", support=PARTIAL, note="CPU time is counted as user time; other fields zero")
def sys_getrusage(k, t, who, usage, *_):
    who = s32(who)
    if who == 0:      # RUSAGE_SELF
        ns = process_cpu_ns(t.tg)
    elif who == -1:   # RUSAGE_CHILDREN: waited-for descendants
        ns = t.tg.children_cpu_ns
    elif who == 1:    # RUSAGE_THREAD
        ns = thread_cpu_ns(t)
    else:
        raise fserr(errno.EINVAL)
    utime = struct.pack("<qq", ns // 10**9, (ns % 10**9) // 1000)
    t.thread.write(usage, utime + bytes(144 - len(utime)))
    return 0


# --- scheduling: one virtual CPU set, no real priorities ---
@syscall("sched_yield")
def sys_sched_yield(k, t, *_):
    return 0


@syscall("sched_getaffinity")
def sys_sched_getaffinity(k, t, pid, size, mask, *_):
    nbytes = max(8, (sched.NCPUS + 63) // 64 * 8)
    if size * 8 < sched.NCPUS or size & 7:
        raise fserr(errno.EINVAL)
    victim = _sched_task(k, t, pid)
    t.thread.write(mask, victim.sched.affinity.to_bytes(nbytes, "little"))
    return nbytes


@syscall("sched_setaffinity", support=PARTIAL, note="recorded and reported; guests share the sentry's CPU")
def sys_sched_setaffinity(k, t, pid, size, mask, *_):
    victim = _sched_task(k, t, pid)
    bits = int.from_bytes(t.thread.read(mask, min(size, 128)), "little") if size else 0
    sched.set_affinity(t, victim, bits)
    return 0


def _sched_task(k, t, pid):
    """find_process_by_pid: 0 is the caller, an unknown (or negative) id ESRCH."""
    if s32(pid) < 0:
        raise fserr(errno.ESRCH)
    return sched.target(k, t, s32(pid))


def _param(t, addr) -> int:
    if not addr:
        raise fserr(errno.EINVAL)
    return I32.unpack(t.thread.read(addr, 4))[0]


@syscall("sched_getscheduler")
def sys_sched_getscheduler(k, t, pid, *_):
    s = sched.target(k, t, s32(pid)).sched
    return s.policy | (sched.SCHED_RESET_ON_FORK if s.reset_on_fork else 0)


@syscall("sched_getparam")
def sys_sched_getparam(k, t, pid, param, *_):
    if not param:
        raise fserr(errno.EINVAL)
    victim = sched.target(k, t, s32(pid))
    t.thread.write(param, I32.pack(victim.sched.priority))
    return 0


@syscall("sched_setscheduler", support=PARTIAL, note="recorded and reported; every thread runs alike")
def sys_sched_setscheduler(k, t, pid, policy, param, *_):
    if s32(policy) < 0:
        raise fserr(errno.EINVAL)
    priority = _param(t, param)
    sched.set_scheduler(t, sched.target(k, t, s32(pid)), s32(policy), priority)
    return 0


@syscall("sched_setparam", support=PARTIAL, note="recorded and reported; every thread runs alike")
def sys_sched_setparam(k, t, pid, param, *_):
    priority = _param(t, param)
    victim = sched.target(k, t, s32(pid))
    policy = victim.sched.policy | (sched.SCHED_RESET_ON_FORK if victim.sched.reset_on_fork else 0)
    sched.set_scheduler(t, victim, policy, priority)
    return 0


@syscall("sched_get_priority_max", "sched_get_priority_min")
def sys_sched_prio(k, t, policy, *_):
    lo, hi = sched.priority_range(s32(policy))
    return hi if t.syscall_nr == 146 else lo


PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2


@syscall("getpriority")
def sys_getpriority(k, t, which, who, *_):
    # the raw call returns 20 - nice (1..40) so no result looks like an error
    return max(20 - x.sched.nice for x in _ioprio_targets(k, t, which + 1, who))


@syscall("setpriority", support=PARTIAL, note="nice values are recorded and reported; every thread runs alike")
def sys_setpriority(k, t, which, who, nice, *_):
    for x in _ioprio_targets(k, t, which + 1, who):  # PRIO_* are IOPRIO_WHO_* - 1
        sched.set_nice(t, x, s32(nice))
    return 0


@syscall("getcpu")
def sys_getcpu(k, t, cpu, node, *_):
    if cpu:
        t.thread.write(cpu, bytes(4))
    if node:
        t.thread.write(node, bytes(4))
    return 0


# --- prctl ---
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_SET_NAME, PR_GET_NAME, PR_GET_SECCOMP, PR_SET_SECCOMP = 15, 16, 21, 22
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37


@syscall("prctl", support=PARTIAL, note="names, pdeathsig, dumpable, subreaper, no_new_privs, seccomp, "
         "capability bounding and ambient sets, keepcaps (securebits read-only); others EINVAL")
def sys_prctl(k, t, option, arg2, arg3, arg4, arg5, *_):
    if option in caps.PRCTL_OPTIONS:
        return caps.prctl(t.tg.creds, option, arg2, arg3, arg4, arg5)
    if option == PR_SET_NAME:
        try:
            name = t.thread.read_cstr(arg2, 16)
        except OSError as e:
            if e.errno != errno.ENAMETOOLONG:
                raise
            name = t.thread.read(arg2, 15)  # Linux copies 15 bytes: a longer name is cut
        t.comm = name[:15]
        t.thread.set_name(arg2)  # the host's ps shows it too
        return 0
    if option == PR_GET_NAME:
        t.thread.write(arg2, t.comm[:15].ljust(16, b"\0"))
        return 0
    if option == PR_SET_PDEATHSIG:
        if not 0 <= arg2 <= 64:
            raise fserr(errno.EINVAL)
        t.tg.pdeathsig = arg2
        return 0
    if option == PR_GET_PDEATHSIG:
        t.thread.write(arg2, struct.pack("<i", t.tg.pdeathsig))
        return 0
    if option == PR_SET_DUMPABLE:
        if arg2 not in (0, 1):
            raise fserr(errno.EINVAL)
        t.tg.dumpable = arg2
        return 0
    if option == PR_GET_DUMPABLE:
        return t.tg.dumpable
    if option == PR_SET_NO_NEW_PRIVS:
        if arg2 != 1:
            raise fserr(errno.EINVAL)
        t.tg.no_new_privs = True  # the whole sandbox runs with it anyway
        return 0
    if option == PR_GET_NO_NEW_PRIVS:
        return int(t.tg.no_new_privs)
    if option == PR_GET_SECCOMP:
        return seccomp.mode(t)
    if option == PR_SET_SECCOMP:
        return _set_seccomp(k, t, arg2, 0, arg3)
    if option == PR_SET_CHILD_SUBREAPER:
        t.tg.subreaper = bool(arg2)
        return 0
    if option == PR_GET_CHILD_SUBREAPER:
        t.thread.write(arg2, struct.pack("<i", int(t.tg.subreaper)))
        return 0
    raise fserr(errno.EINVAL)


# --- I/O priorities (recorded; the sandbox's I/O is the sentry's) ---
IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP, IOPRIO_WHO_USER = 1, 2, 3
IOPRIO_CLASS_NONE, IOPRIO_CLASS_RT, IOPRIO_CLASS_IDLE = 0, 1, 3


def _ioprio_targets(k, t, which, who):
    who = s32(who)
    tasks = k.pidns.tasks.values()
    if which == IOPRIO_WHO_PROCESS:
        found = [t] if who == 0 else [x for x in tasks if x.tid == who]
    elif which == IOPRIO_WHO_PGRP:
        pgid = who or t.tg.pgid
        found = [x for x in tasks if x.tg.pgid == pgid]
    elif which == IOPRIO_WHO_USER:
        uid = who if who else t.tg.creds.uid
        found = [x for x in tasks if x.tg.creds.uid == uid]
    else:
        raise fserr(errno.EINVAL)
    if not found:
        raise fserr(errno.ESRCH)
    return found


@syscall("ioprio_set", support=PARTIAL, note="recorded and reported; no effect on I/O")
def sys_ioprio_set(k, t, which, who, ioprio, *_):
    cls, data = (ioprio >> 13) & 0x7, ioprio & 0x1FFF
    if cls > IOPRIO_CLASS_IDLE or data > 7 or ioprio >> 16:
        raise fserr(errno.EINVAL)
    if cls == IOPRIO_CLASS_RT and not (caps.task_capable(t, caps.CAP_SYS_ADMIN)
                                       or caps.task_capable(t, caps.CAP_SYS_NICE)):
        raise fserr(errno.EPERM)
    for x in _ioprio_targets(k, t, which, who):
        x.ioprio = ioprio & 0xFFFF
    return 0


@syscall("ioprio_get")
def sys_ioprio_get(k, t, which, who, *_):
    return max(x.ioprio for x in _ioprio_targets(k, t, which, who))


@syscall("sched_rr_get_interval", support=PARTIAL, note="0: every task is SCHED_OTHER")
def sys_sched_rr_get_interval(k, t, pid, tp, *_):
    if s32(pid) < 0:
        raise fserr(errno.EINVAL)
    if s32(pid) and s32(pid) not in k.pidns.tasks:
        raise fserr(errno.ESRCH)
    t.thread.write(tp, bytes(16))
    return 0


@syscall("restart_syscall")
def sys_restart_syscall(k, t, *_):
    return -errno.EINTR  # no restart block is ever left for a guest to resume


# --- the guest's own seccomp filters ---
def _set_seccomp(k, t, mode, flags, arg):
    """prctl(PR_SET_SECCOMP, mode, prog) and seccomp(op, flags, prog)."""
    if mode == seccomp.MODE_STRICT:
        if flags or t.seccomp not in (None, seccomp.MODE_STRICT):
            raise fserr(errno.EINVAL)
        t.seccomp = seccomp.MODE_STRICT
        return 0
    if mode == seccomp.MODE_FILTER:
        return seccomp.install(k, t, flags, arg)
    raise fserr(errno.EINVAL)


@syscall("seccomp", support=PARTIAL, note="strict and filter modes, TSYNC, LOG; no user-space notification")
def sys_seccomp(k, t, op, flags, args, *_):
    if op == seccomp.GET_ACTION_AVAIL:
        if flags:
            raise fserr(errno.EINVAL)
        action = struct.unpack("<I", t.thread.read(args, 4))[0]
        if action not in seccomp.AVAILABLE:
            raise fserr(errno.EOPNOTSUPP)
        return 0
    if op == seccomp.SET_MODE_STRICT and args:
        raise fserr(errno.EINVAL)
    mode = {seccomp.SET_MODE_STRICT: seccomp.MODE_STRICT, seccomp.SET_MODE_FILTER: seccomp.MODE_FILTER}.get(op)
    return _set_seccomp(k, t, mode, flags, args)


# --- robust lists, rseq, futex ---
@syscall("set_robust_list")
def sys_set_robust_list(k, t, head, length, *_):
    if length != 24:
        raise fserr(errno.EINVAL)
    t.robust_list = (head, length)
    return 0


@syscall("get_robust_list")
def sys_get_robust_list(k, t, pid, head_ptr, len_ptr, *_):
    task = t if s32(pid) == 0 else k.pidns.tasks.get(s32(pid))
    if task is None:
        raise fserr(errno.ESRCH)
    t.thread.write(head_ptr, struct.pack("<Q", task.robust_list[0]))
    t.thread.write(len_ptr, struct.pack("<Q", 24))
    return 0


@syscall("futex", support=PARTIAL, note="WAIT/WAKE/REQUEUE/CMP_REQUEUE/WAKE_OP/WAIT_BITSET/WAKE_BITSET, "
         "private and shared; no PI (ENOSYS: glibc then refuses PTHREAD_PRIO_INHERIT mutexes with ENOTSUP)")
def sys_futex(k, t, uaddr, op, val, timeout, uaddr2, val3):
    return futex.futex(k, t, uaddr, op, val, timeout, uaddr2, val3)


@syscall("personality", support=PARTIAL, note="only PER_LINUX")
def sys_personality(k, t, persona, *_):
    if persona & 0xFFFFFFFF not in (0, 0xFFFFFFFF):
        raise fserr(errno.EINVAL)
    return 0


unimplemented("rseq", errno.ENOSYS, "glibc falls back cleanly")
for _name in ("pivot_root", "swapon", "swapoff", "reboot", "init_module",
              "finit_module", "delete_module", "kexec_load", "kexec_file_load", "acct",
              "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "iopl", "ioperm",
              "quotactl", "lookup_dcookie", "perf_event_open", "bpf", "unshare", "setns",
              "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "vhangup",
              "syslog"):
    unimplemented(_name, errno.EPERM, "privileged or host-reaching: refused inside the sandbox")
