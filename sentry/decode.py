"""Symbolic names for syscall argument values, and the decoding of whole
argument lists for strace.

name_of(kind, value) is the small, import-light part other modules use
(coverage reports, syscall hooks): it names an errno, a signal, an ioctl
request, a fcntl command, a prctl option, an address family or a socket
type, and returns the number as text when it has no name. The tables
are x86-64 Linux values (include/uapi/asm-generic/*.h, linux/*.h).
"""
from __future__ import annotations

import errno as _errno
import os
import struct

# errno: Python's table, with the names strace prefers where two share a
# value, and the kernel-internal restart codes a handler may surface.
ERRNO_NAMES = dict(_errno.errorcode)
ERRNO_NAMES.update({_errno.EAGAIN: "EAGAIN", _errno.EDEADLK: "EDEADLK", _errno.EOPNOTSUPP: "EOPNOTSUPP",
                    512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND",
                    515: "ENOIOCTLCMD", 516: "ERESTART_RESTARTBLOCK"})

SIGNAL_NAMES = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
    14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
    20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
    26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
    32: "SIGRTMIN",
}
SIGNAL_NAMES.update({n: f"SIGRT_{n - 32}" for n in range(33, 65)})

IOCTL_NAMES = {
    0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW", 0x5404: "TCSETSF", 0x5405: "TCGETA",
    0x5406: "TCSETA", 0x5407: "TCSETAW", 0x5408: "TCSETAF", 0x5409: "TCSBRK", 0x540A: "TCXONC",
    0x540B: "TCFLSH", 0x540C: "TIOCEXCL", 0x540D: "TIOCNXCL", 0x540E: "TIOCSCTTY",
    0x540F: "TIOCGPGRP", 0x5410: "TIOCSPGRP", 0x5411: "TIOCOUTQ", 0x5412: "TIOCSTI",
    0x5413: "TIOCGWINSZ", 0x5414: "TIOCSWINSZ", 0x5415: "TIOCMGET", 0x5416: "TIOCMBIS",
    0x5417: "TIOCMBIC", 0x5418: "TIOCMSET", 0x5419: "TIOCGSOFTCAR", 0x541A: "TIOCSSOFTCAR",
    0x541B: "FIONREAD", 0x541C: "TIOCLINUX", 0x541D: "TIOCCONS", 0x541E: "TIOCGSERIAL",
    0x541F: "TIOCSSERIAL", 0x5420: "TIOCPKT", 0x5421: "FIONBIO", 0x5422: "TIOCNOTTY",
    0x5423: "TIOCSETD", 0x5424: "TIOCGETD", 0x5425: "TCSBRKP", 0x5427: "TIOCSBRK",
    0x5428: "TIOCCBRK", 0x5429: "TIOCGSID", 0x802C542A: "TCGETS2", 0x402C542B: "TCSETS2",
    0x80045430: "TIOCGPTN", 0x40045431: "TIOCSPTLCK", 0x80045432: "TIOCGDEV", 0x40045436: "TIOCSIG",
    0x5437: "TIOCVHANGUP", 0x80045438: "TIOCGPKT", 0x80045439: "TIOCGPTLCK", 0x80045440: "TIOCGEXCL",
    0x5441: "TIOCGPTPEER", 0x5450: "FIONCLEX", 0x5451: "FIOCLEX", 0x5452: "FIOASYNC",
    0x5456: "TIOCGLCKTRMIOS", 0x5457: "TIOCSLCKTRMIOS", 0x5459: "TIOCSERGETLSR", 0x545D: "TIOCGICOUNT",
    0x5460: "FIOQSIZE",
    0x8901: "FIOSETOWN", 0x8903: "FIOGETOWN", 0x8905: "SIOCATMARK", 0x8906: "SIOCGSTAMP",
    0x8910: "SIOCGIFNAME", 0x8912: "SIOCGIFCONF", 0x8913: "SIOCGIFFLAGS", 0x8914: "SIOCSIFFLAGS",
    0x8915: "SIOCGIFADDR", 0x8916: "SIOCSIFADDR", 0x8919: "SIOCGIFBRDADDR", 0x891B: "SIOCGIFNETMASK",
    0x8921: "SIOCGIFMTU", 0x8922: "SIOCSIFMTU", 0x8927: "SIOCGIFHWADDR", 0x8933: "SIOCGIFINDEX",
    0x1: "FIBMAP", 0x2: "FIGETBSZ", 0x1268: "BLKSSZGET", 0x80081272: "BLKGETSIZE64",
    0x80086601: "FS_IOC_GETFLAGS", 0x40086602: "FS_IOC_SETFLAGS", 0x40049409: "FICLONE",
    0x80045200: "RNDGETENTCNT",
}

FCNTL_NAMES = {
    0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 5: "F_GETLK",
    6: "F_SETLK", 7: "F_SETLKW", 8: "F_SETOWN", 9: "F_GETOWN", 10: "F_SETSIG", 11: "F_GETSIG",
    15: "F_SETOWN_EX", 16: "F_GETOWN_EX", 17: "F_GETOWNER_UIDS", 36: "F_OFD_GETLK",
    37: "F_OFD_SETLK", 38: "F_OFD_SETLKW", 1024: "F_SETLEASE", 1025: "F_GETLEASE",
    1026: "F_NOTIFY", 1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ", 1032: "F_GETPIPE_SZ",
    1033: "F_ADD_SEALS", 1034: "F_GET_SEALS", 1035: "F_GET_RW_HINT", 1036: "F_SET_RW_HINT",
    1037: "F_GET_FILE_RW_HINT", 1038: "F_SET_FILE_RW_HINT",
}

PRCTL_NAMES = {
    1: "PR_SET_PDEATHSIG", 2: "PR_GET_PDEATHSIG", 3: "PR_GET_DUMPABLE", 4: "PR_SET_DUMPABLE",
    5: "PR_GET_UNALIGN", 6: "PR_SET_UNALIGN", 7: "PR_GET_KEEPCAPS", 8: "PR_SET_KEEPCAPS",
    9: "PR_GET_FPEMU", 10: "PR_SET_FPEMU", 11: "PR_GET_FPEXC", 12: "PR_SET_FPEXC",
    13: "PR_GET_TIMING", 14: "PR_SET_TIMING", 15: "PR_SET_NAME", 16: "PR_GET_NAME",
    19: "PR_GET_ENDIAN", 20: "PR_SET_ENDIAN", 21: "PR_GET_SECCOMP", 22: "PR_SET_SECCOMP",
    23: "PR_CAPBSET_READ", 24: "PR_CAPBSET_DROP", 25: "PR_GET_TSC", 26: "PR_SET_TSC",
    27: "PR_GET_SECUREBITS", 28: "PR_SET_SECUREBITS", 29: "PR_SET_TIMERSLACK",
    30: "PR_GET_TIMERSLACK", 31: "PR_TASK_PERF_EVENTS_DISABLE", 32: "PR_TASK_PERF_EVENTS_ENABLE",
    33: "PR_MCE_KILL", 34: "PR_MCE_KILL_GET", 35: "PR_SET_MM", 36: "PR_SET_CHILD_SUBREAPER",
    37: "PR_GET_CHILD_SUBREAPER", 38: "PR_SET_NO_NEW_PRIVS", 39: "PR_GET_NO_NEW_PRIVS",
    40: "PR_GET_TID_ADDRESS", 41: "PR_SET_THP_DISABLE", 42: "PR_GET_THP_DISABLE",
    45: "PR_SET_FP_MODE", 46: "PR_GET_FP_MODE", 47: "PR_CAP_AMBIENT", 50: "PR_SVE_SET_VL",
    51: "PR_SVE_GET_VL", 52: "PR_GET_SPECULATION_CTRL", 53: "PR_SET_SPECULATION_CTRL",
    54: "PR_PAC_RESET_KEYS", 55: "PR_SET_TAGGED_ADDR_CTRL", 56: "PR_GET_TAGGED_ADDR_CTRL",
    57: "PR_SET_IO_FLUSHER", 58: "PR_GET_IO_FLUSHER", 59: "PR_SET_SYSCALL_USER_DISPATCH",
    60: "PR_PAC_SET_ENABLED_KEYS", 61: "PR_PAC_GET_ENABLED_KEYS", 62: "PR_SCHED_CORE",
    63: "PR_SME_SET_VL", 64: "PR_SME_GET_VL", 65: "PR_SET_MDWE", 66: "PR_GET_MDWE",
    0x53564D41: "PR_SET_VMA",
}

FAMILY_NAMES = {
    0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 3: "AF_AX25", 4: "AF_IPX", 5: "AF_APPLETALK",
    6: "AF_NETROM", 7: "AF_BRIDGE", 8: "AF_ATMPVC", 9: "AF_X25", 10: "AF_INET6", 11: "AF_ROSE",
    12: "AF_DECnet", 13: "AF_NETBEUI", 14: "AF_SECURITY", 15: "AF_KEY", 16: "AF_NETLINK",
    17: "AF_PACKET", 18: "AF_ASH", 19: "AF_ECONET", 20: "AF_ATMSVC", 21: "AF_RDS", 22: "AF_SNA",
    23: "AF_IRDA", 24: "AF_PPPOX", 25: "AF_WANPIPE", 26: "AF_LLC", 27: "AF_IB", 28: "AF_MPLS",
    29: "AF_CAN", 30: "AF_TIPC", 31: "AF_BLUETOOTH", 32: "AF_IUCV", 33: "AF_RXRPC", 34: "AF_ISDN",
    35: "AF_PHONET", 36: "AF_IEEE802154", 37: "AF_CAIF", 38: "AF_ALG", 39: "AF_NFC",
    40: "AF_VSOCK", 41: "AF_KCM", 42: "AF_QIPCRTR", 43: "AF_SMC", 44: "AF_XDP", 45: "AF_MCTP",
}

SOCKTYPE_NAMES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
                  5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 10: "SOCK_PACKET"}
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000


def _socktype(value: int) -> str:
    """The type with the SOCK_NONBLOCK/SOCK_CLOEXEC bits socket(2) takes."""
    kind = value & 0xF
    parts = [SOCKTYPE_NAMES.get(kind, str(kind))]
    if value & SOCK_NONBLOCK:
        parts.append("SOCK_NONBLOCK")
    if value & SOCK_CLOEXEC:
        parts.append("SOCK_CLOEXEC")
    rest = value & ~(0xF | SOCK_NONBLOCK | SOCK_CLOEXEC)
    if rest:
        parts.append(hex(rest))
    return "|".join(parts)


NAME_TABLES = {"errno": ERRNO_NAMES, "signal": SIGNAL_NAMES, "ioctl": IOCTL_NAMES,
               "fcntl": FCNTL_NAMES, "prctl": PRCTL_NAMES, "family": FAMILY_NAMES,
               "socktype": SOCKTYPE_NAMES}


def name_of(kind: str, value: int) -> str:
    """The symbolic name of `value` as a `kind` ("errno", "signal", "ioctl",
    "fcntl", "prctl", "family", "socktype"), or the number as text.

    An errno may be given negative (a syscall result). A socket type may
    carry SOCK_NONBLOCK|SOCK_CLOEXEC ("SOCK_STREAM|SOCK_CLOEXEC"). An ioctl
    request is taken as the 32-bit value the kernel compares.
    """
    if kind == "socktype":
        return _socktype(value)
    table = NAME_TABLES.get(kind)
    if table is None:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(NAME_TABLES)}")
    if kind == "errno":
        value = abs(value)
    elif kind == "ioctl":
        value &= 0xFFFFFFFF
    name = table.get(value)
    if name is None:
        return hex(value) if kind == "ioctl" else str(value)
    return name


# --- decoding whole argument lists (strace) ---------------------------------
#
# Each syscall's arguments have a format (SPECS, below; python-ptrace's
# prototypes for the rest). Input formats are decoded when the call
# enters; output formats (a buffer or struct the call fills) show as a
# pointer at entry and are read from guest memory when it has succeeded.


def flags(value: int, bits: tuple, zero: str = "0") -> str:
    """value as NAME|NAME|0xrest from bits ((mask, name), ...)."""
    if value == 0:
        return zero
    parts = []
    for mask, name in bits:
        if value & mask == mask:
            parts.append(name)
            value &= ~mask
    if value:
        parts.append(hex(value))
    return "|".join(parts)


def _bits(**named) -> tuple:
    return tuple((v, k) for k, v in named.items())


OPEN_FLAGS = _bits(O_WRONLY=0o1, O_RDWR=0o2, O_CREAT=0o100, O_EXCL=0o200, O_NOCTTY=0o400, O_TRUNC=0o1000,
                   O_APPEND=0o2000, O_NONBLOCK=0o4000, O_SYNC=0o4010000, O_DSYNC=0o10000, O_ASYNC=0o20000,
                   O_DIRECT=0o40000, O_LARGEFILE=0o100000, O_TMPFILE=0o20200000, O_DIRECTORY=0o200000,
                   O_NOFOLLOW=0o400000, O_NOATIME=0o1000000, O_CLOEXEC=0o2000000, O_PATH=0o10000000)
AT_FLAGS = _bits(AT_SYMLINK_NOFOLLOW=0x100, AT_REMOVEDIR=0x200, AT_SYMLINK_FOLLOW=0x400,
                 AT_NO_AUTOMOUNT=0x800, AT_EMPTY_PATH=0x1000)
MMAP_PROT = _bits(PROT_READ=1, PROT_WRITE=2, PROT_EXEC=4, PROT_GROWSDOWN=0x01000000, PROT_GROWSUP=0x02000000)
MMAP_FLAGS = _bits(MAP_SHARED_VALIDATE=3, MAP_SHARED=1, MAP_PRIVATE=2, MAP_FIXED=0x10, MAP_ANONYMOUS=0x20,
                   MAP_32BIT=0x40, MAP_GROWSDOWN=0x100, MAP_DENYWRITE=0x800, MAP_EXECUTABLE=0x1000,
                   MAP_LOCKED=0x2000, MAP_NORESERVE=0x4000, MAP_POPULATE=0x8000, MAP_NONBLOCK=0x10000,
                   MAP_STACK=0x20000, MAP_HUGETLB=0x40000, MAP_SYNC=0x80000, MAP_FIXED_NOREPLACE=0x100000)
CLONE_FLAGS = _bits(CLONE_VM=0x100, CLONE_FS=0x200, CLONE_FILES=0x400, CLONE_SIGHAND=0x800,
                    CLONE_PIDFD=0x1000, CLONE_PTRACE=0x2000, CLONE_VFORK=0x4000, CLONE_PARENT=0x8000,
                    CLONE_THREAD=0x10000, CLONE_NEWNS=0x20000, CLONE_SYSVSEM=0x40000, CLONE_SETTLS=0x80000,
                    CLONE_PARENT_SETTID=0x100000, CLONE_CHILD_CLEARTID=0x200000, CLONE_DETACHED=0x400000,
                    CLONE_UNTRACED=0x800000, CLONE_CHILD_SETTID=0x1000000, CLONE_NEWCGROUP=0x2000000,
                    CLONE_NEWUTS=0x4000000, CLONE_NEWIPC=0x8000000, CLONE_NEWUSER=0x10000000,
                    CLONE_NEWPID=0x20000000, CLONE_NEWNET=0x40000000, CLONE_IO=0x80000000)
SA_FLAGS = _bits(SA_NOCLDSTOP=1, SA_NOCLDWAIT=2, SA_SIGINFO=4, SA_RESTORER=0x04000000, SA_ONSTACK=0x08000000,
                 SA_RESTART=0x10000000, SA_NODEFER=0x40000000, SA_RESETHAND=0x80000000)
MSG_FLAGS = _bits(MSG_OOB=1, MSG_PEEK=2, MSG_DONTROUTE=4, MSG_CTRUNC=8, MSG_TRUNC=0x20, MSG_DONTWAIT=0x40,
                  MSG_EOR=0x80, MSG_WAITALL=0x100, MSG_ERRQUEUE=0x2000, MSG_NOSIGNAL=0x4000, MSG_MORE=0x8000,
                  MSG_CMSG_CLOEXEC=0x40000000)
WAIT_FLAGS = _bits(WNOHANG=1, WUNTRACED=2, WEXITED=4, WCONTINUED=8, WNOWAIT=0x1000000, __WNOTHREAD=0x20000000,
                   __WALL=0x40000000, __WCLONE=0x80000000)
ACCESS_FLAGS = _bits(R_OK=4, W_OK=2, X_OK=1)
FUTEX_FLAGS = _bits(FUTEX_PRIVATE_FLAG=128, FUTEX_CLOCK_REALTIME=256)
FUTEX_OPS = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE", 4: "FUTEX_CMP_REQUEUE",
             5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI", 7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI",
             9: "FUTEX_WAIT_BITSET", 10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
             12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2"}
SIGHOW = {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"}
WHENCE = {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"}
CLOCKS = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID",
          3: "CLOCK_THREAD_CPUTIME_ID", 4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE",
          6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME", 8: "CLOCK_REALTIME_ALARM",
          9: "CLOCK_BOOTTIME_ALARM", 11: "CLOCK_TAI"}
ARCH_PRCTL = {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS", 0x1004: "ARCH_GET_GS",
              0x1011: "ARCH_GET_CPUID", 0x1012: "ARCH_SET_CPUID"}
SHUT_HOW = {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}
EPOLL_OPS = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}
SOCK_LEVELS = {0: "SOL_IP", 1: "SOL_SOCKET", 6: "SOL_TCP", 17: "SOL_UDP", 41: "SOL_IPV6", 263: "SOL_PACKET",
               270: "SOL_NETLINK"}
RLIMITS = {0: "RLIMIT_CPU", 1: "RLIMIT_FSIZE", 2: "RLIMIT_DATA", 3: "RLIMIT_STACK", 4: "RLIMIT_CORE",
           5: "RLIMIT_RSS", 6: "RLIMIT_NPROC", 7: "RLIMIT_NOFILE", 8: "RLIMIT_MEMLOCK", 9: "RLIMIT_AS",
           10: "RLIMIT_LOCKS", 11: "RLIMIT_SIGPENDING", 12: "RLIMIT_MSGQUEUE", 13: "RLIMIT_NICE",
           14: "RLIMIT_RTPRIO", 15: "RLIMIT_RTTIME"}
FILE_TYPES = {0o140000: "S_IFSOCK", 0o120000: "S_IFLNK", 0o100000: "S_IFREG", 0o60000: "S_IFBLK",
              0o40000: "S_IFDIR", 0o20000: "S_IFCHR", 0o10000: "S_IFIFO"}
AT_FDCWD = -100


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >> 63 else v


def _named(table: dict, v: int) -> str:
    return table.get(v) or str(v)


def file_mode(mode: int) -> str:
    """st_mode: S_IFREG|0644."""
    kind = FILE_TYPES.get(mode & 0o170000)
    perms = f"0{mode & 0o7777:o}"
    return f"{kind}|{perms}" if kind else perms


def _fd_flag(v: int) -> str:
    return flags(v, ((1, "FD_CLOEXEC"),))


def _fcntl_arg(v: int, args: tuple) -> str:
    cmd = args[1] & 0xFFFFFFFF
    if cmd in (2,):                 # F_SETFD
        return _fd_flag(v)
    if cmd == 4:                    # F_SETFL
        return flags(v & 0xFFFFFFFF, OPEN_FLAGS, "O_RDONLY")
    if cmd in (0, 1030, 10, 1031, 1024):   # F_DUPFD*, F_SETSIG, F_SETPIPE_SZ, F_SETLEASE
        return str(_s32(v))
    if cmd in (1, 3, 9, 11, 1025, 1032, 1034):   # the F_GET* take no argument: not shown
        return None
    return hex(v)


def _futex_op(v: int) -> str:
    v &= 0xFFFFFFFF
    op = FUTEX_OPS.get(v & 0x7F, str(v & 0x7F))
    rest = v & ~0x7F
    return op if not rest else f"{op}|{flags(rest, FUTEX_FLAGS)}"


def _socktype_arg(v: int) -> str:
    return name_of("socktype", v & 0xFFFFFFFF)


def _open_flags(v: int) -> str:
    v &= 0xFFFFFFFF
    text = flags(v & ~3, OPEN_FLAGS[2:], "")
    acc = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}.get(v & 3, "O_ACCMODE")
    return f"{acc}|{text}" if text else acc


def _sockflags(v: int) -> str:
    return flags(v & 0xFFFFFFFF, ((SOCK_NONBLOCK, "SOCK_NONBLOCK"), (SOCK_CLOEXEC, "SOCK_CLOEXEC")))


# Scalar formats: value (and all args) -> text; no guest memory.
SCALARS = {
    "int": lambda v, a: str(_s32(v)),
    "fd": lambda v, a: str(_s32(v)),
    "long": lambda v, a: str(_s64(v)),
    "uint": lambda v, a: str(v & 0xFFFFFFFFFFFFFFFF),
    "hex": lambda v, a: hex(v & 0xFFFFFFFFFFFFFFFF) if v else "0",
    "ptr": lambda v, a: "NULL" if v == 0 else hex(v & 0xFFFFFFFFFFFFFFFF),
    "dirfd": lambda v, a: "AT_FDCWD" if _s32(v) == AT_FDCWD else str(_s32(v)),
    "oct": lambda v, a: f"0{v & 0o7777777:o}" if v & 0o7777777 else "0",
    # flags of calls that make fds (pipe2, dup3, eventfd2...): no access mode
    "fd_oflags": lambda v, a: flags(v & 0xFFFFFFFF, OPEN_FLAGS[2:]),
    "open_flags": lambda v, a: _open_flags(v),
    "at_flags": lambda v, a: flags(v & 0xFFFFFFFF, AT_FLAGS),
    "mmap_prot": lambda v, a: flags(v & 0xFFFFFFFF, MMAP_PROT, "PROT_NONE"),
    "mmap_flags": lambda v, a: flags(v & 0xFFFFFFFF, MMAP_FLAGS),
    "clone_flags": lambda v, a: "|".join(x for x in (flags(v & ~0xFF, CLONE_FLAGS, ""),
                                                     name_of("signal", v & 0xFF) if v & 0xFF else "") if x) or "0",
    "msg_flags": lambda v, a: flags(v & 0xFFFFFFFF, MSG_FLAGS),
    "wait_flags": lambda v, a: flags(v & 0xFFFFFFFF, WAIT_FLAGS),
    "access": lambda v, a: flags(v & 0xFFFFFFFF, ACCESS_FLAGS, "F_OK"),
    "sockflags": lambda v, a: _sockflags(v),
    "fdflags": lambda v, a: _fd_flag(v),
    "signal": lambda v, a: name_of("signal", v & 0xFFFFFFFF) if v else "0",
    "ioctl": lambda v, a: name_of("ioctl", v),
    "fcntl": lambda v, a: name_of("fcntl", v & 0xFFFFFFFF),
    "fcntl_arg": _fcntl_arg,
    "prctl": lambda v, a: name_of("prctl", v & 0xFFFFFFFF),
    "family": lambda v, a: name_of("family", v & 0xFFFFFFFF),
    "socktype": lambda v, a: _socktype_arg(v),
    "sighow": lambda v, a: _named(SIGHOW, v & 0xFFFFFFFF),
    "whence": lambda v, a: _named(WHENCE, v & 0xFFFFFFFF),
    "clock": lambda v, a: _named(CLOCKS, _s32(v)),
    "futex_op": lambda v, a: _futex_op(v),
    "arch_prctl": lambda v, a: _named(ARCH_PRCTL, v & 0xFFFFFFFF),
    "shut_how": lambda v, a: _named(SHUT_HOW, v & 0xFFFFFFFF),
    "epoll_op": lambda v, a: _named(EPOLL_OPS, v & 0xFFFFFFFF),
    "sock_level": lambda v, a: _named(SOCK_LEVELS, _s32(v)),
    "rlimit": lambda v, a: _named(RLIMITS, v & 0xFFFFFFFF),
}

O_CREAT, O_TMPFILE = 0o100, 0o20200000


def _cmode(v: int, flags_value: int) -> str | None:
    if flags_value & O_CREAT or flags_value & O_TMPFILE == O_TMPFILE:
        return SCALARS["oct"](v, ())
    return None


# Formats read from guest memory when the call enters (":N" names the
# argument holding a length or count).
INPUTS = {"path", "str", "wbuf", "iov_in", "timespec", "sigset", "sockaddr", "sigaction", "argv", "rlimit_in",
          "clone_args"}
# Formats the call fills: read when it has returned successfully.
OUTPUTS = {"rbuf", "iov_out", "stat", "timespec_out", "sigset_out", "sockaddr_out", "pipefds",
           "sigaction_out", "cstr_out", "wstatus", "rlimit_out", "intp_out", "rem_out"}

_F = "fd"
SPECS = {
    "read": (_F, "rbuf:2", "uint"), "write": (_F, "wbuf:2", "uint"),
    "pread64": (_F, "rbuf:2", "uint", "long"), "pwrite64": (_F, "wbuf:2", "uint", "long"),
    "readv": (_F, "iov_out:2", "int"), "writev": (_F, "iov_in:2", "int"),
    "preadv": (_F, "iov_out:2", "int", "long"), "pwritev": (_F, "iov_in:2", "int", "long"),
    "preadv2": (_F, "iov_out:2", "int", "long", "hex"), "pwritev2": (_F, "iov_in:2", "int", "long", "hex"),
    "open": ("path", "open_flags", "cmode:1"), "openat": ("dirfd", "path", "open_flags", "cmode:2"),
    "creat": ("path", "oct"), "close": (_F,),
    "stat": ("path", "stat"), "lstat": ("path", "stat"), "fstat": (_F, "stat"),
    "newfstatat": ("dirfd", "path", "stat", "at_flags"),
    "statx": ("dirfd", "path", "at_flags", "hex", "ptr"),
    "lseek": (_F, "long", "whence"),
    "mmap": ("ptr", "uint", "mmap_prot", "mmap_flags", _F, "hex"),
    "mprotect": ("ptr", "uint", "mmap_prot"), "munmap": ("ptr", "uint"), "brk": ("ptr",),
    "mremap": ("ptr", "uint", "uint", "hex", "ptr"), "madvise": ("ptr", "uint", "int"),
    "msync": ("ptr", "uint", "hex"), "mlock": ("ptr", "uint"), "munlock": ("ptr", "uint"),
    "rt_sigaction": ("signal", "sigaction", "sigaction_out", "uint"),
    "rt_sigprocmask": ("sighow", "sigset", "sigset_out", "uint"),
    "rt_sigsuspend": ("sigset", "uint"), "rt_sigpending": ("sigset_out", "uint"),
    "rt_sigreturn": (), "sigaltstack": ("ptr", "ptr"),
    "rt_sigtimedwait": ("sigset", "ptr", "timespec", "uint"),
    "ioctl": (_F, "ioctl", "hex"),
    "access": ("path", "access"), "faccessat": ("dirfd", "path", "access"),
    "faccessat2": ("dirfd", "path", "access", "at_flags"),
    "pipe": ("pipefds",), "pipe2": ("pipefds", "fd_oflags"),
    "dup": (_F,), "dup2": (_F, _F), "dup3": (_F, _F, "fd_oflags"),
    "nanosleep": ("timespec", "rem_out"),
    "clock_nanosleep": ("clock", "hex", "timespec", "rem_out"),
    "clock_gettime": ("clock", "timespec_out"), "clock_getres": ("clock", "timespec_out"),
    "clock_settime": ("clock", "timespec"),
    "socket": ("family", "socktype", "int"), "socketpair": ("family", "socktype", "int", "pipefds"),
    "connect": (_F, "sockaddr:2", "uint"), "bind": (_F, "sockaddr:2", "uint"), "listen": (_F, "int"),
    "accept": (_F, "sockaddr_out:2", "intp_out"), "accept4": (_F, "sockaddr_out:2", "intp_out", "sockflags"),
    "getsockname": (_F, "sockaddr_out:2", "intp_out"), "getpeername": (_F, "sockaddr_out:2", "intp_out"),
    "sendto": (_F, "wbuf:2", "uint", "msg_flags", "sockaddr:5", "uint"),
    "recvfrom": (_F, "rbuf:2", "uint", "msg_flags", "sockaddr_out:5", "intp_out"),
    "sendmsg": (_F, "ptr", "msg_flags"), "recvmsg": (_F, "ptr", "msg_flags"),
    "sendmmsg": (_F, "ptr", "uint", "msg_flags"), "recvmmsg": (_F, "ptr", "uint", "msg_flags", "timespec"),
    "shutdown": (_F, "shut_how"),
    "setsockopt": (_F, "sock_level", "int", "ptr", "uint"), "getsockopt": (_F, "sock_level", "int", "ptr", "ptr"),
    "clone": ("clone_flags", "ptr", "ptr", "ptr", "hex"), "clone3": ("clone_args:1", "uint"), "fork": (), "vfork": (),
    "execve": ("path", "argv", "argv"), "execveat": ("dirfd", "path", "argv", "argv", "at_flags"),
    "exit": ("int",), "exit_group": ("int",),
    "wait4": ("int", "wstatus", "wait_flags", "ptr"), "waitid": ("int", "int", "ptr", "wait_flags", "ptr"),
    "kill": ("int", "signal"), "tkill": ("int", "signal"), "tgkill": ("int", "int", "signal"),
    "fcntl": (_F, "fcntl", "fcntl_arg"), "flock": (_F, "int"),
    "fsync": (_F,), "fdatasync": (_F,), "truncate": ("path", "long"), "ftruncate": (_F, "long"),
    "getdents64": (_F, "ptr", "uint"), "getdents": (_F, "ptr", "uint"),
    "getcwd": ("cstr_out", "uint"), "chdir": ("path",), "fchdir": (_F,),
    "rename": ("path", "path"), "renameat": ("dirfd", "path", "dirfd", "path"),
    "renameat2": ("dirfd", "path", "dirfd", "path", "hex"),
    "mkdir": ("path", "oct"), "mkdirat": ("dirfd", "path", "oct"), "rmdir": ("path",),
    "unlink": ("path",), "unlinkat": ("dirfd", "path", "at_flags"),
    "link": ("path", "path"), "linkat": ("dirfd", "path", "dirfd", "path", "at_flags"),
    "symlink": ("path", "path"), "symlinkat": ("path", "dirfd", "path"),
    "readlink": ("path", "rbuf:2", "uint"), "readlinkat": ("dirfd", "path", "rbuf:3", "uint"),
    "chmod": ("path", "oct"), "fchmod": (_F, "oct"), "fchmodat": ("dirfd", "path", "oct"),
    "chown": ("path", "int", "int"), "fchown": (_F, "int", "int"), "lchown": ("path", "int", "int"),
    "fchownat": ("dirfd", "path", "int", "int", "at_flags"),
    "umask": ("oct",), "utimensat": ("dirfd", "path", "ptr", "at_flags"),
    "getrlimit": ("rlimit", "rlimit_out"), "setrlimit": ("rlimit", "rlimit_in"),
    "prlimit64": ("int", "rlimit", "rlimit_in", "rlimit_out"),
    "arch_prctl": ("arch_prctl", "hex"), "prctl": ("prctl", "hex", "hex", "hex", "hex"),
    "set_tid_address": ("ptr",), "set_robust_list": ("ptr", "uint"),
    "futex": ("ptr", "futex_op", "int", "ptr", "ptr", "int"),
    "epoll_create1": ("fd_oflags",), "epoll_ctl": (_F, "epoll_op", _F, "ptr"),
    "epoll_wait": (_F, "ptr", "int", "int"), "epoll_pwait": (_F, "ptr", "int", "int", "sigset", "uint"),
    "eventfd2": ("uint", "fd_oflags"), "timerfd_create": ("clock", "fd_oflags"),
    "signalfd4": (_F, "sigset", "uint", "fd_oflags"),
    "poll": ("ptr", "uint", "int"), "ppoll": ("ptr", "uint", "timespec", "sigset", "uint"),
    "getrandom": ("rbuf:1", "uint", "hex"), "memfd_create": ("str", "hex"),
    "sendfile": (_F, _F, "ptr", "uint"),
    "getpid": (), "getppid": (), "gettid": (), "getuid": (), "geteuid": (), "getgid": (),
    "getegid": (), "getpgrp": (), "setsid": (), "sched_yield": (), "pause": (), "sync": (),
    "getpgid": ("int",), "setpgid": ("int", "int"), "getsid": ("int",),
    "setuid": ("int",), "setgid": ("int",), "uname": ("ptr",), "sysinfo": ("ptr",),
    "chroot": ("path",), "mount": ("path", "path", "str", "hex", "ptr"), "umount2": ("path", "hex"),
    "rseq": ("ptr", "uint", "hex", "hex"),
}

# the syscalls whose result is an address
ADDRESS_RESULTS = {"mmap", "brk", "mremap", "shmat"}

_PTRACE_STRINGS = {"filename", "pathname", "path", "oldname", "newname", "oldpath", "newpath", "target",
                   "linkpath", "specialfile", "library", "dev_name", "dir_name"}
_spec_cache: dict = {}


def _from_prototype(name: str) -> tuple:
    """Formats from python-ptrace's prototype (imported only here)."""
    from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES
    proto = SYSCALL_PROTOTYPES.get(name)
    if proto is None:
        return ("hex",) * 6
    out = []
    for ctype, aname in proto[1]:
        if "char *" in ctype and "*const" not in ctype and aname in _PTRACE_STRINGS:
            out.append("path")
        elif "*" in ctype:
            out.append("ptr")
        elif ctype in ("int", "pid_t", "uid_t", "gid_t", "clockid_t", "timer_t", "key_t", "mqd_t"):
            out.append("int")
        elif ctype in ("unsigned int", "size_t", "unsigned long", "u32", "u64", "umode_t", "qid_t"):
            out.append("oct" if ctype == "umode_t" else "uint")
        elif ctype in ("long", "off_t", "loff_t", "ssize_t"):
            out.append("long")
        else:
            out.append("hex")
    return tuple(out)


def spec(name: str) -> tuple:
    """The (kind, ref) formats of syscall `name`'s arguments."""
    got = _spec_cache.get(name)
    if got is None:
        raw = SPECS.get(name)
        if raw is None:
            raw = _from_prototype(name)
        got = tuple((k, int(r)) if r else (k, -1) for k, _, r in (f.partition(":") for f in raw))
        _spec_cache[name] = got
    return got


_ESCAPES = {ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r", ord("\\"): "\\\\", ord('"'): '\\"',
            0: "\\0"}
_QUOTED = [_ESCAPES.get(b) or (chr(b) if 32 <= b < 127 else f"\\x{b:02x}") for b in range(256)]


def quote(data: bytes, cut: bool = False) -> str:
    """data as a C-like string literal; cut: more followed (shown as ...)."""
    parts = [_QUOTED[b] for b in data]
    if 0 in data:   # a \0 before an octal digit would read as one escape
        for i in range(len(data) - 1):
            if data[i] == 0 and 48 <= data[i + 1] <= 55:
                parts[i] = "\\x00"
    return '"' + "".join(parts) + '"' + ("..." if cut else "")


class Decoder:
    """Renders syscall arguments, reading guest memory through t.thread.
    size: the most bytes of any string or buffer shown (--strace-log-size)."""

    def __init__(self, size: int = 1024):
        if size < 0:
            raise ValueError(f"strace log size must be >= 0, not {size}")
        self.size = size

    def entry(self, t, name: str, args: tuple) -> list:
        """Every argument as the call enters (None: not shown); outputs as
        pointers."""
        return [self._one(t, kind, ref, args[i], args, None) if kind not in OUTPUTS else SCALARS["ptr"](args[i], args)
                for i, (kind, ref) in enumerate(spec(name))]

    def exit(self, t, name: str, args: tuple, result, entered: list | None) -> list:
        """The arguments when the call returns: the entry's text for inputs
        (what the call was given), outputs read now if it succeeded (the
        time left of a sleep: if it was interrupted)."""
        ok = result is not None and result >= 0
        out = []
        for i, (kind, ref) in enumerate(spec(name)):
            if kind in OUTPUTS:
                if kind == "rem_out":
                    filled = result == -_errno.EINTR
                else:   # wait4 with WNOHANG returns 0 without a status
                    filled = ok and (result > 0 or kind != "wstatus")
                out.append(self._one(t, kind, ref, args[i], args, result) if filled and args[i]
                           else SCALARS["ptr"](args[i], args))
            elif entered is not None and i < len(entered):
                out.append(entered[i])
            else:
                out.append(self._one(t, kind, ref, args[i], args, None))
        return out

    def result(self, name: str, result) -> str:
        if result is None:
            return "?"
        if -4096 < result < 0:
            code = -result
            return f"-1 {name_of('errno', code)} ({_strerror(code)})"
        if name in ADDRESS_RESULTS:
            return hex(result & 0xFFFFFFFFFFFFFFFF)
        return str(result)

    # --- one argument ---
    def _one(self, t, kind, ref, v, args, result) -> str | None:
        if kind == "cmode":   # open's mode: shown when its flags create a file
            return _cmode(v, args[ref])
        f = SCALARS.get(kind)
        if f is not None:
            return f(v, args)
        if v == 0:
            return "NULL"
        try:
            return getattr(self, "_" + kind)(t.thread, v, args[ref] if ref >= 0 else None, result)
        except Exception:   # unreadable (or a decoding slip): the raw word, the guest runs on
            return hex(v)

    def _cstr(self, th, addr: int) -> str:
        try:
            return quote(th.read_cstr(addr, min(self.size, 4095) + 1))
        except OSError as e:
            if e.errno != _errno.ENAMETOOLONG:
                raise
            return quote(th.read(addr, min(self.size, 4095)), cut=True)

    def _buf(self, th, addr: int, n: int) -> str:
        n = max(0, n)
        return quote(th.read(addr, min(n, self.size)), cut=n > self.size)

    def _path(self, th, v, n, result):
        return self._cstr(th, v)

    _str = _path
    _cstr_out = _path

    def _wbuf(self, th, v, n, result):
        return self._buf(th, v, n & 0xFFFFFFFFFFFFFFFF)

    def _rbuf(self, th, v, n, result):
        return self._buf(th, v, result)

    def _iovecs(self, th, v, count, total):
        count = _s32(count)
        if count < 0 or count > 1024:
            raise ValueError("bad iovec count")
        raw = th.read(v, 16 * min(count, 64))
        budget, parts = self.size, []
        for i in range(0, len(raw), 16):
            base, length = struct.unpack_from("<QQ", raw, i)
            want = length if total is None else min(length, max(total, 0))
            if total is not None:
                total -= want
            shown = min(want, budget)
            budget -= shown
            data = quote(th.read(base, shown), cut=want > shown) if base else "NULL"
            parts.append(f"{{base={data}, len={length}}}")
        return "[" + ", ".join(parts) + (", ..." if count > 64 else "") + "]"

    def _iov_in(self, th, v, count, result):
        return self._iovecs(th, v, count, None)

    def _iov_out(self, th, v, count, result):
        return self._iovecs(th, v, count, result)

    def _timespec(self, th, v, n, result):
        sec, nsec = struct.unpack("<qq", th.read(v, 16))
        return f"{{sec={sec}, nsec={nsec}}}"

    _timespec_out = _rem_out = _timespec

    def _sigset(self, th, v, n, result):
        return sigset(int.from_bytes(th.read(v, 8), "little"))

    _sigset_out = _sigset

    def _sigaction(self, th, v, n, result):
        handler, fl, restorer, mask = struct.unpack("<QQQQ", th.read(v, 32))
        h = {0: "SIG_DFL", 1: "SIG_IGN"}.get(handler) or hex(handler)
        text = f"{{handler={h}, flags={flags(fl & 0xFFFFFFFF, SA_FLAGS)}"
        if fl & 0x04000000:
            text += f", restorer={hex(restorer)}"
        return text + f", mask={sigset(mask)}}}"

    _sigaction_out = _sigaction

    def _stat(self, th, v, n, result):
        (dev, ino, nlink, mode, uid, gid, _pad, rdev, size, blksize, blocks,
         asec, ansec, msec, mnsec, csec, cnsec) = struct.unpack_from("<QQQIIIIQqqqqqqqqq", th.read(v, 144))
        return (f"{{dev={dev}, ino={ino}, mode={file_mode(mode)}, nlink={nlink}, uid={uid}, gid={gid}, "
                f"rdev={rdev}, size={size}, blksize={blksize}, blocks={blocks}, atime={asec}.{ansec:09d}, "
                f"mtime={msec}.{mnsec:09d}, ctime={csec}.{cnsec:09d}}}")

    def _sockaddr(self, th, v, n, result):
        n = n & 0xFFFFFFFF
        return sockaddr(th.read(v, min(n, 128)))

    def _sockaddr_out(self, th, v, lenp, result):
        if not lenp:
            return hex(v)
        n = int.from_bytes(th.read(lenp, 4), "little")
        return sockaddr(th.read(v, min(n, 128)))

    def _intp_out(self, th, v, n, result):
        return f"[{int.from_bytes(th.read(v, 4), 'little')}]"

    def _clone_args(self, th, v, size, result):
        fl, _pidfd, _ctid, _ptid, sig, stack, stack_size, tls = struct.unpack("<8Q", th.read(v, 64))
        return (f"{{flags={SCALARS['clone_flags'](fl, ())}, exit_signal={SCALARS['signal'](sig, ())}, "
                f"stack={SCALARS['ptr'](stack, ())}, stack_size={stack_size}, tls={SCALARS['ptr'](tls, ())}}}")

    def _pipefds(self, th, v, n, result):
        a, b = struct.unpack("<ii", th.read(v, 8))
        return f"[{a}, {b}]"

    def _wstatus(self, th, v, n, result):
        return wait_status(int.from_bytes(th.read(v, 4), "little"))

    def _rlimit_in(self, th, v, n, result):
        cur, top = struct.unpack("<QQ", th.read(v, 16))
        inf = (1 << 64) - 1
        return "{cur=%s, max=%s}" % tuple("RLIM_INFINITY" if x == inf else str(x) for x in (cur, top))

    _rlimit_out = _rlimit_in

    def _argv(self, th, v, n, result):
        parts = []
        for i in range(33):
            p = int.from_bytes(th.read(v + 8 * i, 8), "little")
            if p == 0:
                break
            if i == 32:
                parts.append("...")
                break
            parts.append(self._cstr(th, p))
        return "[" + ", ".join(parts) + "]"


def joined(parts: list) -> str:
    """Argument texts as shown between the call's parentheses."""
    return ", ".join(p for p in parts if p is not None)


def sigset(mask: int) -> str:
    """[SIGINT SIGTERM], or ~[...] listing the signals not in it when
    most are (a full mask reads ~[])."""
    mask &= 0xFFFFFFFFFFFFFFFF
    if bin(mask).count("1") > 32:
        return "~" + sigset(~mask)
    return "[" + " ".join(name_of("signal", s) for s in range(1, 65) if mask >> (s - 1) & 1) + "]"


def wait_status(s: int) -> str:
    if s & 0x7F == 0:
        return f"{{exited={(s >> 8) & 0xFF}}}"
    if s & 0xFF == 0x7F:
        return f"{{stopped={name_of('signal', (s >> 8) & 0xFF)}}}"
    if s == 0xFFFF:
        return "{continued}"
    if s & 0x7F == 0x7F:   # no status the kernel makes
        return hex(s)
    core = ", core" if s & 0x80 else ""
    return f"{{signaled={name_of('signal', s & 0x7F)}{core}}}"


def sockaddr(raw: bytes) -> str:
    """A struct sockaddr of any family we know; the family and bytes else."""
    if len(raw) < 2:
        return "{}" if not raw else f"{{data={raw.hex()}}}"
    fam = int.from_bytes(raw[:2], "little")
    name = name_of("family", fam)
    if fam == 2 and len(raw) >= 8:
        port = int.from_bytes(raw[2:4], "big")
        return f"{{family={name}, addr={'.'.join(str(b) for b in raw[4:8])}, port={port}}}"
    if fam == 10 and len(raw) >= 24:
        import ipaddress
        port = int.from_bytes(raw[2:4], "big")
        text = f"{{family={name}, addr={ipaddress.IPv6Address(raw[8:24])}, port={port}"
        flow = int.from_bytes(raw[4:8], "big")
        scope = int.from_bytes(raw[24:28], "little") if len(raw) >= 28 else 0
        text += (f", flowinfo={flow}" if flow else "") + (f", scope_id={scope}" if scope else "")
        return text + "}"
    if fam == 1:
        path = raw[2:]
        if path[:1] == b"\0":
            return f"{{family={name}, path=@{quote(path[1:])}}}"
        return f"{{family={name}, path={quote(path.split(bytes(1), 1)[0])}}}"
    if fam == 16 and len(raw) >= 12:
        pid, groups = struct.unpack_from("<II", raw, 4)
        return f"{{family={name}, pid={pid}, groups={groups:#x}}}"
    return f"{{family={name}, data={raw[2:].hex()}}}"


_RESTART_TEXT = {512: "To be restarted if SA_RESTART is set", 513: "To be restarted",
                 514: "To be restarted if no handler", 515: "No ioctl command",
                 516: "Interrupted by signal"}


def _strerror(code: int) -> str:
    return _RESTART_TEXT.get(code) or os.strerror(code)
