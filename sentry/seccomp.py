"""The guest's own seccomp filters (seccomp(2), prctl(PR_SET_SECCOMP)).

A guest installs classic BPF programs; the sentry checks them as Linux's
verifier does, keeps them on the task (inherited by clone and fork, kept
across exec) and runs every one of them before each of the task's
syscalls. The least permissive verdict wins. This is the guest filtering
itself: the sandbox's own filter (platforms/ptrace) is separate and the
guest can neither see nor loosen it.
"""
from __future__ import annotations

import errno
import struct

from vfs.inode import fserr

from .caps import CAP_SYS_ADMIN, capable

MODE_DISABLED, MODE_STRICT, MODE_FILTER = 0, 1, 2
SET_MODE_STRICT, SET_MODE_FILTER, GET_ACTION_AVAIL = 0, 1, 2
FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW, FLAG_NEW_LISTENER, FLAG_TSYNC_ESRCH = 1, 2, 4, 8, 16

RET_KILL_PROCESS, RET_KILL_THREAD, RET_TRAP, RET_ERRNO = 0x80000000, 0, 0x00030000, 0x00050000
RET_USER_NOTIF, RET_TRACE, RET_LOG, RET_ALLOW = 0x7FC00000, 0x7FF00000, 0x7FFC0000, 0x7FFF0000
ACTION_FULL, DATA = 0xFFFF0000, 0x0000FFFF
AVAILABLE = {RET_KILL_PROCESS, RET_KILL_THREAD, RET_TRAP, RET_ERRNO, RET_TRACE, RET_LOG, RET_ALLOW}

MAX_INSNS, MAX_PATH_INSNS = 4096, 32768
DATA_SIZE = 64  # struct seccomp_data: nr, arch, instruction_pointer, args[6]
STRICT_ALLOWED = {0, 1, 60, 15}  # read, write, exit, rt_sigreturn
AUDIT_ARCH_X86_64 = 0xC000003E
SIGSYS, SYS_SECCOMP = 31, 1

# classic BPF encoding
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
W, IMM, ABS, MEM, LEN = 0x00, 0x00, 0x20, 0x60, 0x80
K, X, A_SRC = 0x00, 0x08, 0x10
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
TAX, TXA = 0x00, 0x80
M32 = 0xFFFFFFFF


class Filter:
    __slots__ = ("insns", "reads_ip", "log")

    def __init__(self, insns: list, log: bool):
        self.insns = insns
        self.log = log
        self.reads_ip = any(c & 7 == LD and c & 0xE0 == ABS and 8 <= k < 16 for c, _, _, k in insns)


# Every instruction code seccomp accepts (no byte/half loads, no MOD,
# no indirect loads): anything else is EINVAL.
ALLOWED_CODES = {
    LD | W | ABS, LD | W | LEN, LDX | W | LEN, LD | IMM, LDX | IMM, LD | MEM, LDX | MEM, ST, STX,
    RET | K, RET | A_SRC, MISC | TAX, MISC | TXA, ALU | 0x80,  # NEG
    *(ALU | op | src for op in (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0) for src in (K, X)),
    JMP | JA, *(JMP | op | src for op in (JEQ, JGT, JGE, JSET) for src in (K, X)),
}


def check_program(raw: bytes) -> list:
    """Decode and verify a sock_filter array as Linux does for seccomp:
    only the instructions seccomp allows, aligned loads inside
    seccomp_data, constant shifts below 32, no division by a constant 0,
    forward jumps inside the program, a return at the end, and no load
    from a scratch slot some path leaves unwritten."""
    n = len(raw) // 8
    if n == 0 or n > MAX_INSNS:
        raise fserr(errno.EINVAL)
    insns = [struct.unpack_from("<HBBI", raw, i * 8) for i in range(n)]
    for pc, (code, jt, jf, k) in enumerate(insns):
        if code not in ALLOWED_CODES:
            raise fserr(errno.EINVAL)
        cls, op = code & 7, code & 0xF0
        if code == LD | W | ABS and (k & 3 or k >= DATA_SIZE):
            raise fserr(errno.EINVAL)
        if code in (LD | MEM, LDX | MEM, ST, STX) and k >= 16:
            raise fserr(errno.EINVAL)
        if cls == ALU and not code & X and (op == 0x30 and k == 0 or op in (0x60, 0x70) and k >= 32):
            raise fserr(errno.EINVAL)
        if cls == JMP and pc + 1 + (k if op == JA else max(jt, jf)) >= n:
            raise fserr(errno.EINVAL)
    if insns[-1][0] & 7 != RET:
        raise fserr(errno.EINVAL)
    _check_scratch_use(insns)
    return insns


def _check_scratch_use(insns) -> None:
    """No load from a scratch slot that some path leaves unwritten (jumps
    only go forward, so one pass in order sees every path)."""
    ALL = 0xFFFF
    valid_at = [ALL] * len(insns)
    valid_at[0] = 0
    valid = ALL
    for pc, (code, jt, jf, k) in enumerate(insns):
        valid &= valid_at[pc]
        cls = code & 7
        if cls in (ST, STX):
            valid |= 1 << k
        elif cls in (LD, LDX) and code & 0xE0 == MEM:
            if not valid & (1 << k):
                raise fserr(errno.EINVAL)
        elif cls == JMP:
            if code & 0xF0 == JA:
                valid_at[pc + 1 + k] &= valid
            else:
                valid_at[pc + 1 + jt] &= valid
                valid_at[pc + 1 + jf] &= valid
            valid = ALL
        elif cls == RET:
            valid = ALL


def run_filter(insns: list, data: bytes) -> int:
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 7
        if cls == LD:
            mode = code & 0xE0
            a = (struct.unpack_from("<I", data, k)[0] if mode == ABS else
                 k if mode == IMM else mem[k] if mode == MEM else DATA_SIZE)
        elif cls == LDX:
            mode = code & 0xE0
            x = k if mode == IMM else mem[k] if mode == MEM else DATA_SIZE
        elif cls == ST:
            mem[k] = a
        elif cls == STX:
            mem[k] = x
        elif cls == ALU:
            op, v = code & 0xF0, (x if code & X else k)
            if op == 0x00:
                a = (a + v) & M32
            elif op == 0x10:
                a = (a - v) & M32
            elif op == 0x20:
                a = (a * v) & M32
            elif op == 0x30:
                if not v:
                    return 0  # division by zero ends the filter with 0 (kill)
                a //= v
            elif op == 0x40:
                a |= v
            elif op == 0x50:
                a &= v
            elif op == 0x60:  # a shift count from X is taken mod 32, as the host's is
                a = (a << (v & 31)) & M32
            elif op == 0x70:
                a >>= v & 31
            elif op == 0x80:
                a = -a & M32
            else:  # XOR (the verifier refused MOD)
                a ^= v
        elif cls == JMP:
            op = code & 0xF0
            if op == JA:
                pc += k
                continue
            v = x if code & X else k
            taken = (a == v if op == JEQ else a > v if op == JGT else a >= v if op == JGE else a & v)
            pc += jt if taken else jf
        elif cls == RET:
            return a if code & 0x18 == A_SRC else k
        else:  # MISC
            if code & 0xF8 == TAX:
                x = a
            else:
                a = x


def _rank(ret: int) -> int:
    """Order of permissiveness: the action as a signed 32-bit number."""
    action = ret & ACTION_FULL
    return action - (1 << 32) if action & 0x80000000 else action


def verdict(t, nr: int, args: tuple) -> int:
    """The combined return value of t's filters for this call."""
    filters = t.seccomp
    ip = 0
    if any(f.reads_ip for f in filters):
        ip = t.thread.get_regs().rip
    data = struct.pack("<iIQ6Q", nr, AUDIT_ARCH_X86_64, ip, *args)
    best = RET_ALLOW
    for f in reversed(filters):  # among equal actions the newest filter's data wins
        ret = run_filter(f.insns, data)
        if _rank(ret) < _rank(best):
            best = ret
    return best


def install(k, t, flags: int, prog_addr: int) -> int:
    """SECCOMP_SET_MODE_FILTER: add a filter to t (or, with TSYNC, to
    every thread of its process)."""
    if flags & ~(FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH):
        raise fserr(errno.EINVAL)
    if flags & FLAG_NEW_LISTENER:
        raise fserr(errno.EINVAL)  # user-space notification: not supported
    if not t.tg.no_new_privs and not capable(t.tg.creds, CAP_SYS_ADMIN):
        raise fserr(errno.EACCES)
    length, ptr = struct.unpack("<H6xQ", t.thread.read(prog_addr, 16))
    if length == 0 or length > MAX_INSNS:
        raise fserr(errno.EINVAL)
    insns = check_program(t.thread.read(ptr, length * 8))
    if t.seccomp == MODE_STRICT:
        raise fserr(errno.EINVAL)
    current = t.seccomp or ()
    if sum(len(f.insns) + 4 for f in current) + len(insns) > MAX_PATH_INSNS:
        raise fserr(errno.ENOMEM)
    stacked = current + (Filter(insns, bool(flags & FLAG_LOG)),)
    if flags & FLAG_TSYNC:
        for other in t.tg.tasks:
            if other is not t and other.seccomp not in (None, current):
                # a sibling whose filters do not descend from ours
                if flags & FLAG_TSYNC_ESRCH:
                    raise fserr(errno.ESRCH)
                return other.tid
        for other in t.tg.tasks:
            other.seccomp = stacked
    else:
        t.seccomp = stacked
    return 0


def enforce(k, t, nr: int, args: tuple):
    """Run t's filters before its syscall. Returns None to let the call
    run, else the result it ends with (the kernel then resumes t with it),
    or False if the task or its process was killed."""
    from . import signals
    if t.seccomp == MODE_STRICT:
        if nr in STRICT_ALLOWED:
            return None
        k.exit_group(t.tg, signals.SIGKILL)
        return False
    ret = verdict(t, nr, args)
    action = ret & ACTION_FULL
    if action in (RET_ALLOW, RET_LOG):
        return None
    if action == RET_ERRNO:
        return -min(ret & DATA, 4095)
    if action in (RET_TRACE, RET_USER_NOTIF):
        return -errno.ENOSYS  # no tracer, no listener
    if action == RET_TRAP:
        # SIGSYS is forced: an ignored or blocked SIGSYS kills instead (init too)
        ip = t.thread.get_regs().rip
        signals.force_signal_to_task(k, t, SIGSYS, info=(SIGSYS, ret & DATA, SYS_SECCOMP, ip,
                                                         (nr & M32) | AUDIT_ARCH_X86_64 << 32))
        return nr if t.alive else False  # the handler sees the call's registers
    if action == RET_KILL_THREAD and len(t.tg.tasks) > 1:
        k.exit_thread(t, 0)
        return False
    k.exit_group(t.tg, k.signal_status(SIGSYS))
    return False


def mode(t) -> int:
    if t.seccomp is None:
        return MODE_DISABLED
    return MODE_STRICT if t.seccomp == MODE_STRICT else MODE_FILTER
