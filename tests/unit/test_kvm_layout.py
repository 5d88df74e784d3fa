"""The KVM guest's system structures as bytes: page tables, GDT/TSS, IDT
gates and stub code, checked against the SDM's encodings (no /dev/kvm)."""
import mmap
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platforms.kvm import layout
from platforms.kvm.layout import (
    PAGE, PTE_A, PTE_D, PTE_NX, PTE_P, PTE_U, PTE_W, PageTables, SystemLayout, canonical, idt_gate,
    idt_gate_decode, pte, pte_decode, write_system_area,
)

R, W, X = mmap.PROT_READ, mmap.PROT_WRITE, mmap.PROT_EXEC


class Memory:
    """A bytearray as guest physical memory with a page allocator."""

    def __init__(self, pages=512):
        self.buf = bytearray(pages * PAGE)
        self.next = 0
        self.allocated = []

    def alloc(self):
        pa = self.next
        self.next += PAGE
        self.allocated.append(pa)
        return pa


def tables(pages=512):
    mem = Memory(pages)
    return mem, PageTables(memoryview(mem.buf), mem.alloc)


def test_pte_bits_follow_the_sdm():
    assert pte(0x5000, R, user=False) == 0x5000 | PTE_P | PTE_A | PTE_NX
    assert pte(0x5000, R | W, user=True) == 0x5000 | PTE_P | PTE_A | PTE_W | PTE_D | PTE_U | PTE_NX
    assert pte(0x5000, R | X, user=True) == 0x5000 | PTE_P | PTE_A | PTE_U
    assert PTE_NX == 1 << 63 and PTE_U == 4 and PTE_W == 2
    with pytest.raises(ValueError):
        pte(0x5001, R, user=True)
    with pytest.raises(ValueError):
        pte(1 << 52, R, user=True)


@given(pa=st.integers(0, (1 << 40) - 1).map(lambda p: p & ~(PAGE - 1)),
       prot=st.sampled_from([R, R | W, R | X, R | W | X]), user=st.booleans())
def test_pte_round_trips(pa, prot, user):
    assert pte_decode(pte(pa, prot, user)) == (pa, prot, user)


def test_not_present_decodes_to_none():
    assert pte_decode(0) is None
    assert pte_decode(pte(0x1000, R, True) & ~PTE_P) is None


def test_canonical_addresses():
    assert canonical(0) and canonical(0x7FFF_FFFF_FFFF) and canonical(0xFFFF_8000_0000_0000)
    assert not canonical(0x8000_0000_0000) and not canonical(0xFFFF_7FFF_FFFF_FFFF)


def test_walk_is_four_levels_with_permissive_tables():
    mem, pt = tables()
    va = 0x7F12_3456_7000
    pt.map(va, 0x40_0000, PAGE, R, user=True)
    table = pt.root
    for index in layout.table_indices(va)[:3]:
        entry = struct.unpack_from("<Q", mem.buf, table + 8 * index)[0]
        assert entry & 0xFFF == PTE_P | PTE_W | PTE_U and not entry & PTE_NX
        table = entry & layout.PTE_ADDR
    leaf = struct.unpack_from("<Q", mem.buf, table + 8 * layout.table_indices(va)[3])[0]
    assert leaf == pte(0x40_0000, R, True)
    assert len(mem.allocated) == 4  # root + PDPT + PD + PT


def test_translate_keeps_the_page_offset_and_unmap_reports_pages():
    _, pt = tables()
    pt.map(0x40_0000, 0x9000, 2 * PAGE, R | W, user=True)
    assert pt.translate(0x40_0123) == (0x9123, R | W, True)
    assert pt.translate(0x40_1FFF) == (0xAFFF, R | W, True)
    assert pt.translate(0x40_2000) is None
    assert pt.unmap(0x40_0000, 3 * PAGE) == [0x9000, 0xA000]
    assert pt.translate(0x40_0000) is None
    assert pt.unmap(0x1234_5000_0000, PAGE) == []  # nothing there: nothing to do


def test_bad_ranges_are_refused():
    _, pt = tables()
    for va, length in ((0x1001, PAGE), (0x1000, 100), (0x1000, 0), (0x8000_0000_0000, PAGE),
                       (0x7FFF_FFFF_F000, 2 * PAGE)):
        with pytest.raises(ValueError):
            pt.map(va, 0, length, R)
    with pytest.raises(ValueError):
        pt.map(0x1000, 0x123, PAGE, R)


page_numbers = st.integers(0, (1 << 35) - 1)  # user half, 4 KiB pages


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(page_numbers, st.tuples(st.integers(0, 255), st.sampled_from([R, R | W, R | X]),
                                               st.booleans()), max_size=12),
       st.sets(page_numbers, max_size=4))
def test_tables_agree_with_a_dict_model(mappings, unmapped):
    mem, pt = tables(pages=12 * 3 + 1 + 4)
    model = {}
    for vpn, (frame, prot, user) in mappings.items():
        pt.map(vpn * PAGE, frame * PAGE, PAGE, prot, user=user)
        model[vpn] = (frame * PAGE, prot, user)
    for vpn in unmapped:
        dropped = pt.unmap(vpn * PAGE, PAGE)
        assert dropped == ([model.pop(vpn)[0]] if vpn in model else [])
    for vpn in set(mappings) | unmapped:
        assert pt.translate(vpn * PAGE + 8) == (None if vpn not in model else
                                                (model[vpn][0] + 8, model[vpn][1], model[vpn][2]))


def test_gdt_descriptors_match_the_well_known_values():
    assert layout.KERNEL_CODE64 == 0x00AF9B000000FFFF
    assert layout.KERNEL_DATA == 0x00CF93000000FFFF
    assert layout.USER_CODE64 == 0x00AFFB000000FFFF
    assert layout.USER_DATA == 0x00CFF3000000FFFF
    gdt = layout.gdt_bytes(0xFFFF_FFFF_8000_0800)
    assert len(gdt) == layout.GDT_LIMIT + 1
    entry = lambda sel: struct.unpack_from("<Q", gdt, sel)[0]  # noqa: E731
    assert entry(layout.KERNEL_CS) == layout.KERNEL_CODE64
    assert entry(layout.USER_CS) == layout.USER_CODE64 and entry(layout.USER_DS) == layout.USER_DATA
    # sysret: CS = STAR[63:48] + 16, SS = + 8
    assert layout.USER32_CS + 16 == layout.USER_CS and layout.USER32_CS + 8 == layout.USER_DS


def test_tss_descriptor_and_body():
    base = 0xFFFF_FFFF_8000_0800
    low, high = struct.unpack("<QQ", layout.tss_descriptor(base, 103))
    assert low & 0xFFFF == 103
    assert (low >> 16) & 0xFFFFFF | ((low >> 56) & 0xFF) << 24 | high << 32 == base
    assert (low >> 40) & 0xFF == 0x8B  # present, busy 64-bit TSS
    tss = layout.tss_bytes(0xFFFF_FFFF_8000_8000)
    assert len(tss) == 104
    assert struct.unpack_from("<Q", tss, 4)[0] == 0xFFFF_FFFF_8000_8000
    assert struct.unpack_from("<H", tss, 102)[0] == 104  # no I/O bitmap


@given(st.integers(0, (1 << 64) - 1), st.integers(0, 3), st.integers(0, 7))
def test_idt_gate_round_trips(handler, dpl, ist):
    raw = idt_gate(handler, dpl=dpl, ist=ist)
    assert len(raw) == 16
    assert idt_gate_decode(raw) == (handler, layout.KERNEL_CS, dpl, ist, 0xE, True)


def test_stub_and_handlers_are_the_documented_bytes():
    stub = layout.syscall_stub(0xFFFF_FFFF_8000_4000)
    assert stub == bytes.fromhex("48a1") + struct.pack("<Q", 0xFFFF_FFFF_8000_4000) + bytes.fromhex("ffe1")
    ud = layout.fault_handler(6, 0x1000)   # no error code
    assert ud[:9] == b"\xa2" + struct.pack("<Q", 0x1006) and ud[9:11] == b"\x48\xcf"
    pf = layout.fault_handler(14, 0x1000)  # error code popped before iretq
    assert pf[9:15] == bytes.fromhex("4883c408") + b"\x48\xcf"
    assert all(len(layout.fault_handler(v, 0)) == layout.HANDLER_STRIDE for v in range(layout.NUM_VECTORS))


def test_system_area_maps_what_ring3_may_and_may_not_touch():
    L = SystemLayout(pt_pool_pages=8)
    buf = bytearray(L.end_pa)
    nxt = [L.pt_pool_pa]

    def alloc():
        nxt[0] += PAGE
        return nxt[0] - PAGE
    pt = PageTables(memoryview(buf), alloc)
    write_system_area(memoryview(buf), L, pt)
    assert pt.translate(L.va(L.STUB)) == (L.pa(L.STUB), R | X, True)
    assert pt.translate(L.va(L.SYSIO)) == (L.sys_gpa, R, True)
    for page in (L.GDT, L.IDT, L.CODE, L.STACK):
        assert pt.translate(L.va(page))[2] is False  # supervisor only
    assert pt.translate(L.va(L.FAULTIO))[0] == L.fault_gpa
    assert pt.translate(L.va(L.STACK) - PAGE) is None  # the stack's guard page
    assert L.sys_gpa >= L.end_pa and canonical(L.base_va)
    # the #PF gate points at its handler, whose MMIO write names vector 14
    gate = idt_gate_decode(bytes(buf[L.pa(L.IDT) + 16 * 14:L.pa(L.IDT) + 16 * 15]))
    assert gate[0] == L.handler_va(14) and gate[2] == 0
    assert idt_gate_decode(bytes(buf[L.pa(L.IDT) + 16 * 3:L.pa(L.IDT) + 16 * 4]))[2] == 3  # int3 from ring 3
    code_off = L.pa(L.CODE) + 14 * layout.HANDLER_STRIDE
    assert buf[code_off + 1:code_off + 9] == struct.pack("<Q", L.va(L.FAULTIO) + 14)
