"""Linux capabilities: numbers and names, the check, and how execve and
the set*id calls transform a process's five sets.

The rules are security/commoncap.c's for files without file
capabilities and with no securebits except KEEP_CAPS (prctl's
PR_SET_KEEPCAPS). Sets are ints, bit N for capability N. Credentials
(sentry/task.py) hold them: cap_effective, cap_permitted,
cap_inheritable, cap_bounding, cap_ambient, and keepcaps.
"""
from __future__ import annotations

import errno

# include/uapi/linux/capability.h
CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_FOWNER = 3
CAP_FSETID = 4
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_LINUX_IMMUTABLE = 9
CAP_NET_BIND_SERVICE = 10
CAP_NET_BROADCAST = 11
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_IPC_LOCK = 14
CAP_IPC_OWNER = 15
CAP_SYS_MODULE = 16
CAP_SYS_RAWIO = 17
CAP_SYS_CHROOT = 18
CAP_SYS_PTRACE = 19
CAP_SYS_PACCT = 20
CAP_SYS_ADMIN = 21
CAP_SYS_BOOT = 22
CAP_SYS_NICE = 23
CAP_SYS_RESOURCE = 24
CAP_SYS_TIME = 25
CAP_SYS_TTY_CONFIG = 26
CAP_MKNOD = 27
CAP_LEASE = 28
CAP_AUDIT_WRITE = 29
CAP_AUDIT_CONTROL = 30
CAP_SETFCAP = 31
CAP_MAC_OVERRIDE = 32
CAP_MAC_ADMIN = 33
CAP_SYSLOG = 34
CAP_WAKE_ALARM = 35
CAP_BLOCK_SUSPEND = 36
CAP_AUDIT_READ = 37
CAP_PERFMON = 38
CAP_BPF = 39
CAP_CHECKPOINT_RESTORE = 40
CAP_LAST_CAP = CAP_CHECKPOINT_RESTORE

NAMES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE")
NUMBERS: dict[str, int] = {name: nr for nr, name in enumerate(NAMES)}

ALL_CAPS = (1 << (CAP_LAST_CAP + 1)) - 1

# What fsuid 0 historically meant (CAP_FS_SET): dropped from the effective
# set when fsuid leaves 0, raised again from the permitted set when it returns.
FS_MASK = sum(1 << c for c in (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
                               CAP_FSETID, CAP_LINUX_IMMUTABLE, CAP_MAC_OVERRIDE, CAP_MKNOD))


def valid(cap: int) -> bool:
    return 0 <= cap <= CAP_LAST_CAP


def parse_names(names) -> int:
    """A set from capability names as config.json spells them ("CAP_CHOWN")."""
    mask = 0
    for name in names:
        nr = NUMBERS.get(name)
        if nr is None:
            raise ValueError(f"unknown capability {name!r}")
        mask |= 1 << nr
    return mask


def names_of(mask: int) -> list[str]:
    return [name for nr, name in enumerate(NAMES) if mask >> nr & 1]


def capable(creds, cap: int) -> bool:
    """The check every privileged operation makes: cap in the effective set."""
    return bool(creds.cap_effective >> cap & 1)


def task_capable(t, cap: int) -> bool:
    """capable() for a task (None: the sandbox itself, which may do anything)."""
    return t is None or bool(t.tg.creds.cap_effective >> cap & 1)


def initial(uid: int, euid: int) -> tuple[int, int]:
    """(effective, permitted) of credentials made from nothing, as if the
    process had been exec'd with these ids and a full bounding set."""
    permitted = ALL_CAPS if uid == 0 or euid == 0 else 0
    return (permitted if euid == 0 else 0), permitted


# --- execve ---
def on_exec(c, file_uid: int | None = None, file_gid: int | None = None,
            no_new_privs: bool = False) -> bool:
    """Transform credentials c for an execve, in place: bprm_fill_uid and
    cap_bprm_creds_from_file for a file without file capabilities.
    file_uid / file_gid: the owner the file's set-user-ID / set-group-ID
    bit grants (None: no such bit, or a nosuid mount). Returns
    secureexec (AT_SECURE)."""
    euid, egid = c.euid, c.egid
    if not no_new_privs:
        if file_uid is not None:
            euid = file_uid
        if file_gid is not None:
            egid = file_gid
    # root (real or effective) gets its bounding and inheritable sets;
    # only an effective root gets them effective
    permitted = c.cap_bounding | c.cap_inheritable if euid == 0 or c.uid == 0 else 0
    effective = euid == 0
    is_setid = euid != c.uid or egid != c.gid
    if (is_setid or permitted & ~c.cap_permitted) and no_new_privs:
        # no new privileges: the ids fall back and nothing is gained
        euid, egid = c.uid, c.gid
        permitted &= c.cap_permitted
    c.euid = c.suid = c.fsuid = euid
    c.egid = c.sgid = c.fsgid = egid
    if is_setid:
        c.cap_ambient = 0
    permitted |= c.cap_ambient
    c.cap_permitted = permitted
    c.cap_effective = permitted if effective else c.cap_ambient
    c.keepcaps = False
    return is_setid or (c.uid != 0 and effective)


# --- set*id ---
def on_setuid(c, old_uid: int, old_euid: int, old_suid: int) -> None:
    """cap_emulate_setxuid, after setuid/setreuid/setresuid changed c's
    ids from (old_uid, old_euid, old_suid)."""
    if 0 in (old_uid, old_euid, old_suid) and 0 not in (c.uid, c.euid, c.suid):
        # the last root id is gone: so are the privileges (unless kept)
        if not c.keepcaps:
            c.cap_permitted = c.cap_effective = 0
        c.cap_ambient = 0
    if old_euid == 0 and c.euid != 0:
        c.cap_effective = 0
    if old_euid != 0 and c.euid == 0:
        c.cap_effective = c.cap_permitted


def on_setfsuid(c, old_fsuid: int) -> None:
    """The file-system capabilities follow fsuid in and out of 0."""
    if old_fsuid == 0 and c.fsuid != 0:
        c.cap_effective &= ~FS_MASK
    elif old_fsuid != 0 and c.fsuid == 0:
        c.cap_effective |= c.cap_permitted & FS_MASK


def for_real_ids(c) -> int:
    """The effective set access(2) checks with (the real ids): the permitted
    set for a real root, nothing otherwise."""
    return c.cap_permitted if c.uid == 0 else 0


# --- capset(2) ---
def capset(c, effective: int, permitted: int, inheritable: int) -> None:
    """cap_capset's rules; raises OSError(EPERM) and changes nothing when
    the new sets are not allowed."""
    if not c.cap_effective >> CAP_SETPCAP & 1 and inheritable & ~(c.cap_inheritable | c.cap_permitted):
        raise OSError(errno.EPERM, "new inheritable capability not permitted")
    if inheritable & ~(c.cap_inheritable | c.cap_bounding):
        raise OSError(errno.EPERM, "new inheritable capability outside the bounding set")
    if permitted & ~c.cap_permitted:
        raise OSError(errno.EPERM, "permitted set may only shrink")
    if effective & ~permitted:
        raise OSError(errno.EPERM, "effective set must be within the permitted set")
    c.cap_effective, c.cap_permitted, c.cap_inheritable = effective, permitted, inheritable
    c.cap_ambient &= permitted & inheritable


# --- prctl(2) ---
PR_GET_KEEPCAPS, PR_SET_KEEPCAPS = 7, 8
PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
PR_GET_SECUREBITS = 27
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_LOWER, PR_CAP_AMBIENT_CLEAR_ALL = 1, 2, 3, 4
SECBIT_KEEP_CAPS = 1 << 4
PRCTL_OPTIONS = frozenset((PR_GET_KEEPCAPS, PR_SET_KEEPCAPS, PR_CAPBSET_READ, PR_CAPBSET_DROP,
                           PR_GET_SECUREBITS, PR_CAP_AMBIENT))


def prctl(c, option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """The capability options of prctl (PRCTL_OPTIONS); raises OSError."""
    if option == PR_GET_KEEPCAPS:
        return int(c.keepcaps)
    if option == PR_SET_KEEPCAPS:
        if arg2 > 1:
            raise OSError(errno.EINVAL, "keepcaps is 0 or 1")
        c.keepcaps = bool(arg2)
        return 0
    if option == PR_GET_SECUREBITS:
        return SECBIT_KEEP_CAPS if c.keepcaps else 0
    if option == PR_CAPBSET_READ:
        if not valid(arg2):
            raise OSError(errno.EINVAL, "no such capability")
        return c.cap_bounding >> arg2 & 1
    if option == PR_CAPBSET_DROP:
        if not capable(c, CAP_SETPCAP):
            raise OSError(errno.EPERM, "needs CAP_SETPCAP")
        if not valid(arg2):
            raise OSError(errno.EINVAL, "no such capability")
        c.cap_bounding &= ~(1 << arg2)
        return 0
    if option == PR_CAP_AMBIENT:
        if arg2 == PR_CAP_AMBIENT_CLEAR_ALL:
            if arg3 or arg4 or arg5:
                raise OSError(errno.EINVAL, "unused arguments must be 0")
            c.cap_ambient = 0
            return 0
        if not valid(arg3) or arg4 or arg5:
            raise OSError(errno.EINVAL, "no such capability")
        bit = 1 << arg3
        if arg2 == PR_CAP_AMBIENT_IS_SET:
            return int(bool(c.cap_ambient & bit))
        if arg2 == PR_CAP_AMBIENT_RAISE:
            if not c.cap_permitted & c.cap_inheritable & bit:
                raise OSError(errno.EPERM, "ambient needs permitted and inheritable")
            c.cap_ambient |= bit
            return 0
        if arg2 == PR_CAP_AMBIENT_LOWER:
            c.cap_ambient &= ~bit
            return 0
        raise OSError(errno.EINVAL, "unknown PR_CAP_AMBIENT operation")
    raise OSError(errno.EINVAL, "not a capability option")


# --- signals ---
SIGCONT = 18


def may_signal(sender_tg, target_tg, sig: int) -> bool:
    """check_kill_permission for a signal from a user process: its own
    process, matching ids (real or effective of the sender against real or
    saved of the target), CAP_KILL, or SIGCONT within the session."""
    if sender_tg is target_tg:
        return True
    s, r = sender_tg.creds, target_tg.creds
    if s.euid in (r.suid, r.uid) or s.uid in (r.suid, r.uid):
        return True
    if s.cap_effective >> CAP_KILL & 1:
        return True
    return sig == SIGCONT and sender_tg.sid == target_tg.sid
