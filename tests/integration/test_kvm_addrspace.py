"""The KVM platform's address space (platforms/kvm/addrspace.py) against a
real VM: the mmap family's results as Linux gives them, pages backed on
first touch, protections reaching the page tables."""
import errno
import os

import pytest

R, W, X = 1, 2, 4
PRIVATE_ANON, FIXED, NOREPLACE = 0x22, 0x10, 0x100000
PAGE = 4096


def _reason():
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm on this host"
    try:
        from platforms.kvm.vm import KvmError, KvmUnusable, Vm
        Vm(1 << 20).close()
    except ImportError as e:
        return f"the kvm extension is not built: {e}"
    except (KvmError, KvmUnusable) as e:
        return f"/dev/kvm unusable: {e}"
    return None


_REASON = _reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture
def space():
    from platforms.kvm.addrspace import AddressSpace, PagePool
    from platforms.kvm.vm import Vm
    with Vm(64 << 20) as vm:
        yield AddressSpace(vm, PagePool(vm))


def test_placement_fixed_and_noreplace(space):
    a = space.mmap(0, 3 * PAGE, R | W, PRIVATE_ANON, -1, 0)
    b = space.mmap(0, PAGE, R, PRIVATE_ANON, -1, 0)
    assert a % PAGE == 0 and b + PAGE <= a  # top-down, no overlap
    assert space.mmap(0x40_0000, PAGE, R, PRIVATE_ANON, -1, 0) == 0x40_0000  # a free hint is taken
    assert space.mmap(a, PAGE, R, PRIVATE_ANON | NOREPLACE, -1, 0) == -errno.EEXIST
    assert space.mmap(a + PAGE, PAGE, R, PRIVATE_ANON | FIXED, -1, 0) == a + PAGE
    assert space.mmap(0, PAGE, R, 0x2, 5, 0) == -errno.ENODEV  # no host file backs guest memory


def test_pages_are_backed_on_first_touch_and_zeroed(space):
    a = space.mmap(0, 16 * PAGE, R | W, PRIVATE_ANON, -1, 0)
    assert not space.pages
    assert space.read(a + 5 * PAGE, 8) == bytes(8) and len(space.pages) == 1
    space.write(a + PAGE - 2, b"abcd", force=False)
    assert space.read(a + PAGE - 2, 4) == b"abcd"
    assert space.fault(a + 9 * PAGE, 2 | 4) is True  # a user write to an untouched page
    assert space.vm.tables.translate(a + 9 * PAGE)[1] == R | W


def test_protections_and_efault(space):
    a = space.mmap(0, 2 * PAGE, R, PRIVATE_ANON, -1, 0)
    with pytest.raises(OSError) as e:
        space.write(a, b"x", force=False)
    assert e.value.errno == errno.EFAULT
    space.write(a, b"x", force=True)  # the loader's force_write
    assert space.fault(a, 1 | 2 | 4) is False  # a write to a present read-only page: SIGSEGV
    assert space.mprotect(a, PAGE, R | W) == 0
    assert space.vm.tables.translate(a)[1] == R | W
    assert space.mprotect(a, 4 * PAGE, R) == -errno.ENOMEM  # past the mapping
    assert space.mprotect(a, PAGE, 0) == 0
    assert space.vm.tables.translate(a) is None  # PROT_NONE: no page for the guest
    assert space.fault(a, 4) is False
    with pytest.raises(OSError):
        space.read(0x1000, 1)  # nothing mapped there


def test_mremap_moves_pages_and_munmap_frees_them(space):
    a = space.mmap(0, 2 * PAGE, R | W, PRIVATE_ANON, -1, 0)
    space.write(a, b"kept", force=False)
    space.mmap(a + 2 * PAGE, PAGE, R, PRIVATE_ANON | FIXED, -1, 0)  # blocks growing in place
    assert space.mremap(a, 2 * PAGE, 8 * PAGE, 0, 0) == -errno.ENOMEM
    b = space.mremap(a, 2 * PAGE, 8 * PAGE, 1, 0)
    assert b != a and space.read(b, 4) == b"kept" and space.vma_at(a) is None
    assert space.madvise(b, PAGE, 4) == 0 and space.read(b, 4) == bytes(4)
    assert space.munmap(b, 8 * PAGE) == 0 and space.vma_at(b) is None
    assert not [p for p in space.pages if b <= p < b + 8 * PAGE]
    assert space.pool.free  # pages went back to the pool
