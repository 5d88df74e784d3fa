"""Capability sets (sentry/caps.py) and the VFS's use of them: the
execve and set*id transformations, capset and prctl rules, kill
permission, and DAC overrides, each against Linux's rules
(security/commoncap.c, kernel/capability.c, fs/namei.c)."""
import errno

import pytest

from sentry import caps
from sentry.task import Credentials
from vfs import path as vpath
from vfs.inode import Stat
from vfs.path import R_OK, W_OK, X_OK, Creds, may_access

ALL = caps.ALL_CAPS
B = lambda *cs: sum(1 << c for c in cs)  # noqa: E731
DOCKER_DEFAULT = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                  "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                  "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def user(uid, **kw):
    return Credentials(uid=uid, euid=uid, suid=uid, fsuid=uid, gid=uid, egid=uid, sgid=uid, fsgid=uid, **kw)


def sets(c):
    return (c.cap_effective, c.cap_permitted, c.cap_inheritable, c.cap_bounding, c.cap_ambient)


# --- names ---
def test_numbers_and_names():
    assert caps.CAP_LAST_CAP == 40 == caps.NUMBERS["CAP_CHECKPOINT_RESTORE"]
    assert len(caps.NAMES) == 41 and ALL == (1 << 41) - 1
    mask = caps.parse_names(DOCKER_DEFAULT)
    assert mask == 0xa80425fb  # runc/Docker's default set as the kernel prints it (CapEff)
    assert sorted(caps.names_of(mask)) == sorted(DOCKER_DEFAULT)
    with pytest.raises(ValueError, match="CAP_NOPE"):
        caps.parse_names(["CAP_CHOWN", "CAP_NOPE"])


def test_vfs_numbers_agree():
    for name in ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
                 "CAP_SYS_ADMIN", "CAP_MKNOD"):
        assert getattr(vpath, name) == getattr(caps, name)


# --- defaults and the OCI entry point ---
def test_defaults_follow_the_ids():
    assert sets(Credentials()) == (ALL, ALL, 0, ALL, 0)
    assert sets(user(1000)) == (0, 0, 0, ALL, 0)
    # real root only: permitted, not effective (as an exec would give)
    assert sets(Credentials(uid=0, euid=1000, suid=1000, fsuid=1000)) == (0, ALL, 0, ALL, 0)
    assert Credentials().vfs().cap_effective == ALL


def test_oci_capabilities():
    """What runc leaves its init with (checked against runc 1.1): the sets,
    then the execve of the program."""
    d = caps.parse_names(DOCKER_DEFAULT)
    c = Credentials().set_oci_capabilities({s: DOCKER_DEFAULT for s in ("bounding", "effective", "permitted")})
    assert sets(c) == (d, d, 0, d, 0)  # a set left out is empty
    # root: the exec gives it the bounding set, whatever effective and permitted said
    kill, chown = B(caps.CAP_KILL), B(caps.CAP_CHOWN)
    oci = {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
    assert sets(Credentials().set_oci_capabilities(oci)) == (kill | chown, kill | chown, 0, kill | chown, 0)
    # ... unless no_new_privs keeps it from gaining
    assert sets(Credentials().set_oci_capabilities(oci, no_new_privs=True)) == (kill, kill, 0, kill | chown, 0)
    # a user keeps its ambient set only; ambient needs inheritable (runc's raise fails otherwise)
    nbs = ["CAP_NET_BIND_SERVICE"]
    u = user(1000).set_oci_capabilities({"bounding": ["CAP_CHOWN"] + nbs, "effective": nbs, "permitted": nbs,
                                         "inheritable": nbs, "ambient": nbs})
    n = B(caps.CAP_NET_BIND_SERVICE)
    assert sets(u) == (n, n, n, n | chown, n)
    u = user(1000).set_oci_capabilities({s: DOCKER_DEFAULT for s in ("bounding", "effective", "permitted",
                                                                      "ambient")})
    assert sets(u) == (0, 0, 0, d, 0)
    assert Credentials().set_oci_capabilities(None).cap_effective == ALL  # no object: untouched
    with pytest.raises(ValueError):
        Credentials().set_oci_capabilities({"bounding": ["CAP_BOGUS"]})
    c = Credentials().with_caps(1, 3, 4, 7, 0)
    assert sets(c) == (1, 3, 4, 7, 0) and c.copy().cap_permitted == 3


# --- execve ---
def test_exec_as_root_gets_bounding_and_inheritable():
    c = Credentials().with_caps(0, B(1), B(caps.CAP_KILL), ALL & ~B(caps.CAP_CHOWN), 0)
    assert caps.on_exec(c) is False
    assert c.cap_permitted == c.cap_effective == ALL & ~B(caps.CAP_CHOWN)


def test_exec_with_no_new_privs_gains_nothing():
    c = Credentials().with_caps(B(5), B(5, 6), 0, ALL, 0)
    caps.on_exec(c, no_new_privs=True)
    assert (c.cap_permitted, c.cap_effective) == (B(5, 6), B(5, 6))


def test_exec_as_user_keeps_only_ambient():
    nbs = B(caps.CAP_NET_BIND_SERVICE)
    c = user(1000).with_caps(nbs | B(1), nbs | B(1), nbs, ALL, nbs)
    c.keepcaps = True
    assert caps.on_exec(c) is False
    assert sets(c) == (nbs, nbs, nbs, ALL, nbs) and c.keepcaps is False
    c = user(1000).with_caps(nbs, nbs, nbs, ALL, 0)
    caps.on_exec(c)
    assert (c.cap_effective, c.cap_permitted) == (0, 0)


def test_exec_set_user_id_root():
    nbs = B(caps.CAP_NET_BIND_SERVICE)
    c = user(1000).with_caps(nbs, nbs, nbs, ALL & ~B(3), nbs)
    assert caps.on_exec(c, file_uid=0) is True
    assert (c.uid, c.euid, c.suid, c.fsuid) == (1000, 0, 0, 0)
    assert sets(c) == (ALL & ~B(3), ALL & ~B(3), nbs, ALL & ~B(3), 0)  # ambient cleared
    # the same under no_new_privs: no id change, nothing gained, ambient kept
    c = user(1000).with_caps(nbs, nbs, nbs, ALL, nbs)
    assert caps.on_exec(c, file_uid=0, no_new_privs=True) is False
    assert c.euid == 1000 and sets(c) == (nbs, nbs, nbs, ALL, nbs)


def test_exec_set_group_id_and_saved_ids():
    c = user(1000)
    assert caps.on_exec(c, file_gid=50) is True
    assert (c.gid, c.egid, c.sgid, c.fsgid) == (1000, 50, 50, 50)
    # root with euid 1000: permitted from the bounding set, nothing effective
    c = Credentials(euid=1000, suid=0, fsuid=1000)
    assert caps.on_exec(c) is True
    assert (c.euid, c.suid, c.fsuid) == (1000, 1000, 1000)
    assert (c.cap_effective, c.cap_permitted) == (0, ALL)
    # under no_new_privs an euid apart from the uid falls back to it
    c = Credentials(euid=1000, suid=0, fsuid=1000)
    caps.on_exec(c, no_new_privs=True)
    assert (c.euid, c.suid) == (0, 0)


# --- set*id ---
def test_leaving_root_clears_unless_kept():
    c = Credentials().with_caps(ALL, ALL, 0, ALL, B(1))
    c.uid, c.euid, c.suid = 1000, 1000, 0
    caps.on_setuid(c, 0, 0, 0)
    assert (c.cap_effective, c.cap_permitted, c.cap_ambient) == (0, ALL, B(1))  # suid 0 keeps them
    c.euid = 0
    caps.on_setuid(c, 1000, 1000, 0)
    assert c.cap_effective == ALL  # euid back to 0: effective from permitted
    c.uid = c.euid = c.suid = 1000
    caps.on_setuid(c, 1000, 0, 0)
    assert sets(c)[:2] == (0, 0) and c.cap_ambient == 0
    k = Credentials().with_caps(ALL, ALL, 0, ALL, B(1))
    k.keepcaps = True
    k.uid = k.euid = k.suid = 1000
    caps.on_setuid(k, 0, 0, 0)
    assert (k.cap_effective, k.cap_permitted, k.cap_ambient) == (0, ALL, 0)


def test_fsuid_moves_the_fs_caps():
    c = Credentials()
    c.fsuid = 1000
    caps.on_setfsuid(c, 0)
    assert c.cap_effective == ALL & ~caps.FS_MASK
    assert caps.FS_MASK == B(0, 1, 2, 3, 4, 9, 27, 32)
    c.fsuid = 0
    caps.on_setfsuid(c, 1000)
    assert c.cap_effective == ALL


# --- capset ---
def test_capset_rules():
    c = Credentials().with_caps(B(1, 2), B(1, 2), B(3), ALL, 0)
    with pytest.raises(OSError) as e:
        caps.capset(c, B(1), B(1, 2, 5), 0)  # permitted may only shrink
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError):
        caps.capset(c, B(1, 2), B(1), 0)  # effective within the new permitted
    with pytest.raises(OSError):
        caps.capset(c, 0, B(1), B(7))  # inheritable beyond permitted, no SETPCAP
    caps.capset(c, 0, B(1), B(2, 3))  # within old inheritable | permitted
    assert sets(c)[:3] == (0, B(1), B(2, 3))
    s = Credentials().with_caps(B(caps.CAP_SETPCAP), B(caps.CAP_SETPCAP), 0, ALL & ~B(9), B(8))
    setpcap = B(caps.CAP_SETPCAP)
    caps.capset(s, setpcap, setpcap, B(20))  # SETPCAP: any inheritable within bounding
    with pytest.raises(OSError):
        caps.capset(s, setpcap, setpcap, B(9))  # never beyond the bounding set
    assert s.cap_ambient == 0  # ambient needs permitted and inheritable


# --- prctl ---
def test_prctl_bounding_keepcaps_ambient():
    c = Credentials()
    assert caps.prctl(c, caps.PR_CAPBSET_READ, 5, 0, 0, 0) == 1
    caps.prctl(c, caps.PR_CAPBSET_DROP, 5, 0, 0, 0)
    assert caps.prctl(c, caps.PR_CAPBSET_READ, 5, 0, 0, 0) == 0
    for option, args, err in ((caps.PR_CAPBSET_READ, (41, 0, 0, 0), errno.EINVAL),
                              (caps.PR_SET_KEEPCAPS, (2, 0, 0, 0), errno.EINVAL),
                              (caps.PR_CAP_AMBIENT, (caps.PR_CAP_AMBIENT_RAISE, 10, 0, 0), errno.EPERM),
                              (caps.PR_CAP_AMBIENT, (caps.PR_CAP_AMBIENT_CLEAR_ALL, 1, 0, 0), errno.EINVAL),
                              (caps.PR_CAP_AMBIENT, (caps.PR_CAP_AMBIENT_IS_SET, 64, 0, 0), errno.EINVAL)):
        with pytest.raises(OSError) as e:
            caps.prctl(c, option, *args)
        assert e.value.errno == err, (option, args)
    caps.prctl(c, caps.PR_SET_KEEPCAPS, 1, 0, 0, 0)
    assert caps.prctl(c, caps.PR_GET_KEEPCAPS, 0, 0, 0, 0) == 1
    assert caps.prctl(c, caps.PR_GET_SECUREBITS, 0, 0, 0, 0) == caps.SECBIT_KEEP_CAPS
    c.cap_inheritable = B(10)
    caps.prctl(c, caps.PR_CAP_AMBIENT, caps.PR_CAP_AMBIENT_RAISE, 10, 0, 0)
    assert caps.prctl(c, caps.PR_CAP_AMBIENT, caps.PR_CAP_AMBIENT_IS_SET, 10, 0, 0) == 1
    c.cap_effective &= ~B(caps.CAP_SETPCAP)
    with pytest.raises(OSError) as e:
        caps.prctl(c, caps.PR_CAPBSET_DROP, 6, 0, 0, 0)
    assert e.value.errno == errno.EPERM


# --- kill ---
class TG:
    def __init__(self, creds, sid=1):
        self.creds, self.sid = creds, sid


def test_kill_permission():
    root, u1, u2 = TG(Credentials()), TG(user(1000)), TG(user(1001))
    assert caps.may_signal(root, u1, 9) and caps.may_signal(u1, u1, 9)
    assert not caps.may_signal(u1, root, 0) and not caps.may_signal(u1, u2, 15)
    assert caps.may_signal(u1, u2, caps.SIGCONT)  # same session
    assert not caps.may_signal(u1, TG(user(1001), sid=7), caps.SIGCONT)
    no_kill = TG(Credentials().with_caps(ALL & ~B(caps.CAP_KILL), ALL, 0, ALL, 0))
    assert not caps.may_signal(no_kill, u1, 9) and caps.may_signal(no_kill, root, 9)
    # the target's real and saved uids count, its effective one does not
    setuid_prog = TG(Credentials(uid=1000, euid=0, suid=0))
    assert caps.may_signal(u1, setuid_prog, 9)
    assert not caps.may_signal(u2, TG(Credentials(uid=0, euid=1001, suid=0)), 9)


# --- the VFS's permission check ---
def st(mode, uid=1000, gid=1000):
    return Stat(mode=mode, uid=uid, gid=gid)


def test_dac_overrides():
    f000, dir700, noexec = st(0o100000), st(0o040700), st(0o100644)
    full = Creds()
    read_search = Creds(cap_effective=B(caps.CAP_DAC_READ_SEARCH))
    nothing = Creds(cap_effective=0)
    user_override = Creds(uid=5, gid=5, cap_effective=B(caps.CAP_DAC_OVERRIDE))
    assert may_access(f000, full, R_OK | W_OK) and may_access(dir700, full, R_OK | W_OK | X_OK)
    assert not may_access(noexec, full, X_OK)  # no x bit at all: not even root
    assert may_access(f000, read_search, R_OK) and not may_access(f000, read_search, W_OK)
    assert may_access(dir700, read_search, R_OK | X_OK) and not may_access(dir700, read_search, W_OK)
    assert not may_access(f000, read_search, R_OK | X_OK)
    assert not may_access(f000, nothing, R_OK) and not may_access(dir700, nothing, X_OK)
    assert may_access(st(0o100600, uid=0, gid=0), nothing, R_OK | W_OK)  # root as owner
    assert may_access(f000, user_override, W_OK)  # a capability, whoever holds it
    assert Creds(uid=1000).cap_effective == 0 and Creds().cap_effective & caps.ALL_CAPS == ALL
