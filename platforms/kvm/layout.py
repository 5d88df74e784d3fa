"""What the guest's CPU reads from memory, encoded in Python: 4-level page
tables, the GDT with its TSS, the IDT, and the few bytes of stub code.

Pure encoding over a writable buffer (guest physical memory), so it is
tested without /dev/kvm. Formats from the Intel SDM vol. 3A: 4.5 (IA-32e
paging), 3.4.5 (segment descriptors), 7.2.3 (64-bit TSS), 6.14.1 (64-bit
IDT gates).
"""
import mmap
import struct
from dataclasses import dataclass

PAGE = 4096
PAGE_MASK = ~(PAGE - 1)

# Page-table entry bits.
PTE_P = 1 << 0
PTE_W = 1 << 1
PTE_U = 1 << 2
PTE_A = 1 << 5
PTE_D = 1 << 6
PTE_PS = 1 << 7
PTE_NX = 1 << 63
PTE_ADDR = ((1 << 52) - 1) & PAGE_MASK  # bits 12..51

# Intermediate entries allow everything; the leaf decides (permissions are
# the AND over the walk, NX the OR).
_TABLE_FLAGS = PTE_P | PTE_W | PTE_U

# Selectors, as Linux has them so a guest sees its familiar cs/ss.
KERNEL_CS = 0x10
KERNEL_DS = 0x18
USER32_CS = 0x20
USER_DS = 0x28
USER_CS = 0x30
TSS_SEL = 0x40
GDT_LIMIT = 0x50 - 1

# Exceptions that push an error code (SDM 6.3.1 table 6-1).
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17, 21, 29, 30})
EXCEPTION_NAMES = {
    0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
    8: "#DF", 9: "CSO", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF",
    17: "#AC", 18: "#MC", 19: "#XM", 20: "#VE", 21: "#CP", 28: "#HV", 29: "#VC", 30: "#SX",
}
NUM_VECTORS = 32


def canonical(va: int) -> bool:
    """48-bit canonical: bits 63..47 all equal."""
    top = va >> 47
    return top == 0 or top == (1 << 17) - 1


def pte(pa: int, prot: int, user: bool) -> int:
    """A present 4 KiB leaf for `pa` with mmap-style `prot`. A and D are
    preset so the CPU never writes them back behind the sentry."""
    if pa & ~PTE_ADDR:
        raise ValueError(f"physical address {pa:#x} not page aligned or too large")
    e = pa | PTE_P | PTE_A
    if prot & mmap.PROT_WRITE:
        e |= PTE_W | PTE_D
    if user:
        e |= PTE_U
    if not prot & mmap.PROT_EXEC:
        e |= PTE_NX
    return e


def pte_decode(e: int):
    """(pa, prot, user) of a present leaf, None if not present."""
    if not e & PTE_P:
        return None
    prot = mmap.PROT_READ
    if e & PTE_W:
        prot |= mmap.PROT_WRITE
    if not e & PTE_NX:
        prot |= mmap.PROT_EXEC
    return e & PTE_ADDR, prot, bool(e & PTE_U)


def table_indices(va: int):
    """PML4, PDPT, PD, PT indices of `va`."""
    return (va >> 39) & 511, (va >> 30) & 511, (va >> 21) & 511, (va >> 12) & 511


class PageTables:
    """4-level, 4 KiB-page tables living in guest physical memory `mem`.
    `alloc_page()` returns the physical address of a fresh zeroed page for a
    new table. Only the leaves carry permissions."""

    def __init__(self, mem, alloc_page):
        self.mem = mem
        self._alloc = alloc_page
        self.root = alloc_page()

    def _entry(self, table_pa: int, index: int) -> int:
        return struct.unpack_from("<Q", self.mem, table_pa + 8 * index)[0]

    def _set(self, table_pa: int, index: int, value: int) -> None:
        struct.pack_into("<Q", self.mem, table_pa + 8 * index, value)

    def _leaf_table(self, va: int, create: bool):
        """Physical address of the page table holding va's leaf, or None."""
        table = self.root
        for index in table_indices(va)[:3]:
            e = self._entry(table, index)
            if not e & PTE_P:
                if not create:
                    return None
                new = self._alloc()
                self._set(table, index, new | _TABLE_FLAGS)
                e = new | _TABLE_FLAGS
            elif e & PTE_PS:
                raise ValueError(f"{va:#x} lies in a huge page")
            table = e & PTE_ADDR
        return table

    def map(self, va: int, pa: int, length: int, prot: int, *, user: bool = True) -> None:
        """Map [va, va+length) to [pa, pa+length), replacing what was there."""
        _check_range(va, length)
        if pa % PAGE:
            raise ValueError(f"physical address {pa:#x} not page aligned")
        for off in range(0, length, PAGE):
            table = self._leaf_table(va + off, create=True)
            self._set(table, table_indices(va + off)[3], pte(pa + off, prot, user))

    def unmap(self, va: int, length: int) -> list:
        """Clear the leaves of [va, va+length); returns the physical pages
        that were mapped there (their host mappings need the poke that makes
        KVM drop stale translations)."""
        _check_range(va, length)
        dropped = []
        for off in range(0, length, PAGE):
            table = self._leaf_table(va + off, create=False)
            if table is None:
                continue
            index = table_indices(va + off)[3]
            e = self._entry(table, index)
            if e & PTE_P:
                dropped.append(e & PTE_ADDR)
                self._set(table, index, 0)
        return dropped

    def translate(self, va: int):
        """(pa, prot, user) for va (pa including the page offset), or None."""
        if not canonical(va):
            return None
        table = self._leaf_table(va & PAGE_MASK, create=False)
        if table is None:
            return None
        leaf = pte_decode(self._entry(table, table_indices(va)[3]))
        if leaf is None:
            return None
        pa, prot, user = leaf
        return pa | (va & (PAGE - 1)), prot, user


def _check_range(va: int, length: int) -> None:
    if va % PAGE or length % PAGE or length <= 0:
        raise ValueError(f"range {va:#x}+{length:#x} not page aligned")
    if not canonical(va) or not canonical(va + length - 1):
        raise ValueError(f"range {va:#x}+{length:#x} not canonical")
    if (va >> 47) != ((va + length - 1) >> 47):
        raise ValueError(f"range {va:#x}+{length:#x} crosses the canonical hole")


# Segment descriptors ------------------------------------------------------

def segment_descriptor(base: int, limit: int, access: int, flags: int) -> int:
    """8-byte code/data descriptor: access = P|DPL|S|type, flags = G|D/B|L|AVL."""
    return ((limit & 0xFFFF) | (base & 0xFFFFFF) << 16 | (access & 0xFF) << 40
            | ((limit >> 16) & 0xF) << 48 | (flags & 0xF) << 52 | ((base >> 24) & 0xFF) << 56)


def tss_descriptor(base: int, limit: int, busy: bool = True) -> bytes:
    """16-byte 64-bit TSS descriptor (type 9 available, 11 busy)."""
    access = 0x80 | (0xB if busy else 0x9)
    low = segment_descriptor(base & 0xFFFFFFFF, limit, access, 0)
    return struct.pack("<QQ", low, base >> 32)


# access: P=0x80, DPL<<5, S=0x10, type. Types preset "accessed" so the CPU
# never writes the GDT. flags: G=8, D/B=4, L=2.
KERNEL_CODE64 = segment_descriptor(0, 0xFFFFF, 0x9B, 0xA)
KERNEL_CODE32 = segment_descriptor(0, 0xFFFFF, 0x9B, 0xC)
KERNEL_DATA = segment_descriptor(0, 0xFFFFF, 0x93, 0xC)
USER_CODE32 = segment_descriptor(0, 0xFFFFF, 0xFB, 0xC)
USER_DATA = segment_descriptor(0, 0xFFFFF, 0xF3, 0xC)
USER_CODE64 = segment_descriptor(0, 0xFFFFF, 0xFB, 0xA)

TSS_SIZE = 104


def gdt_bytes(tss_base: int) -> bytes:
    entries = [0, KERNEL_CODE32, KERNEL_CODE64, KERNEL_DATA, USER_CODE32, USER_DATA, USER_CODE64, 0]
    return struct.pack("<8Q", *entries) + tss_descriptor(tss_base, TSS_SIZE - 1)


def tss_bytes(rsp0: int) -> bytes:
    """64-bit TSS: RSP0 for ring-3 -> ring-0 exceptions; the I/O bitmap base
    past the limit, so every port access from ring 3 is #GP."""
    tss = bytearray(TSS_SIZE)
    struct.pack_into("<Q", tss, 4, rsp0)
    struct.pack_into("<H", tss, 102, TSS_SIZE)
    return bytes(tss)


def idt_gate(handler: int, selector: int = KERNEL_CS, dpl: int = 0, ist: int = 0) -> bytes:
    """16-byte 64-bit interrupt gate (type 0xE)."""
    return struct.pack("<HHBBHII", handler & 0xFFFF, selector, ist & 7, 0x80 | dpl << 5 | 0xE,
                       (handler >> 16) & 0xFFFF, handler >> 32, 0)


def idt_gate_decode(raw: bytes):
    """(handler, selector, dpl, ist, type, present) of a gate."""
    lo, sel, ist, attr, mid, hi, _ = struct.unpack("<HHBBHII", raw)
    return lo | mid << 16 | hi << 32, sel, (attr >> 5) & 3, ist & 7, attr & 0xF, bool(attr & 0x80)


# Stub code ----------------------------------------------------------------

def syscall_stub(sys_va: int) -> bytes:
    """LSTAR's target, run in ring 3 on this host (see docs/kvm.md):
        movabs rax, [sys_va]   ; an MMIO read with no memory slot: the VMM
                               ; sees the syscall and returns its result
        jmp rcx                ; back after the syscall instruction
    SFMASK is 0, so RFLAGS already equals the R11 that `syscall` saved and
    the stub needs no stack (the guest's red zone stays untouched)."""
    return b"\x48\xa1" + struct.pack("<Q", sys_va) + b"\xff\xe1"


HANDLER_STRIDE = 16


def fault_handler(vector: int, fault_va: int) -> bytes:
    """Ring-0 handler for an exception vector:
        movabs [fault_va + vector], al   ; MMIO write: the VMM sees the vector
        add rsp, 8                       ; drop the error code, if any
        iretq                            ; resume from the (maybe edited) frame
    Registers are untouched, the interrupted state is the frame on the ring-0
    stack, which the VMM reads and may rewrite before resuming."""
    code = b"\xa2" + struct.pack("<Q", fault_va + vector)
    if vector in ERROR_CODE_VECTORS:
        code += b"\x48\x83\xc4\x08"
    code += b"\x48\xcf"
    assert len(code) <= HANDLER_STRIDE
    return code.ljust(HANDLER_STRIDE, b"\xcc")


# The system area ----------------------------------------------------------

@dataclass(frozen=True)
class SystemLayout:
    """Where the guest's system structures live. Physical: the first pages of
    guest memory, then the page-table pool. Virtual: the top 2 GiB, so the
    whole lower half stays the guest program's. Two MMIO addresses have no
    memory slot: reading sys_gpa is a syscall, writing fault_gpa+v an
    exception."""
    base_va: int = 0xFFFF_FFFF_8000_0000
    base_pa: int = 0
    pt_pool_pages: int = 64
    sys_gpa: int = 0xF000_0000     # above guest RAM (which must end below it)
    fault_gpa: int = 0xF000_1000

    # page offsets in both spaces
    GDT = 0     # GDT at +0, TSS at +0x800 (supervisor, RW)
    IDT = 1     # supervisor, RO
    CODE = 2    # fault handlers (supervisor, RX)
    STUB = 3    # syscall stub (user, RX)
    SYSIO = 4   # the syscall MMIO page (user, R) -> sys_gpa
    FAULTIO = 5  # the exception MMIO page (supervisor, RW) -> fault_gpa
    STACK = 7   # ring-0 stack; page 6 left unmapped as its guard
    PAGES = 8

    def va(self, page: int) -> int:
        return self.base_va + page * PAGE

    def pa(self, page: int) -> int:
        return self.base_pa + page * PAGE

    @property
    def tss_va(self) -> int:
        return self.va(self.GDT) + 0x800

    @property
    def stack_top(self) -> int:
        return self.va(self.STACK) + PAGE

    @property
    def pt_pool_pa(self) -> int:
        return self.pa(self.PAGES)

    @property
    def end_pa(self) -> int:
        """First physical address free for the guest program."""
        return self.pt_pool_pa + self.pt_pool_pages * PAGE

    def handler_va(self, vector: int) -> int:
        return self.va(self.CODE) + vector * HANDLER_STRIDE


def write_system_area(mem, layout: SystemLayout, tables: PageTables) -> None:
    """Fill the system pages and map them at their virtual addresses."""
    L = layout
    mem[L.pa(L.GDT):L.pa(L.GDT) + GDT_LIMIT + 1] = gdt_bytes(L.tss_va)
    mem[L.pa(L.GDT) + 0x800:L.pa(L.GDT) + 0x800 + TSS_SIZE] = tss_bytes(L.stack_top)
    idt = b"".join(idt_gate(L.handler_va(v), dpl=3 if v in (3, 4) else 0) for v in range(NUM_VECTORS))
    mem[L.pa(L.IDT):L.pa(L.IDT) + len(idt)] = idt
    code = b"".join(fault_handler(v, L.va(L.FAULTIO)) for v in range(NUM_VECTORS))
    mem[L.pa(L.CODE):L.pa(L.CODE) + len(code)] = code
    stub = syscall_stub(L.va(L.SYSIO))
    mem[L.pa(L.STUB):L.pa(L.STUB) + len(stub)] = stub

    R, W, X = mmap.PROT_READ, mmap.PROT_WRITE, mmap.PROT_EXEC
    tables.map(L.va(L.GDT), L.pa(L.GDT), PAGE, R | W, user=False)
    tables.map(L.va(L.IDT), L.pa(L.IDT), PAGE, R, user=False)
    tables.map(L.va(L.CODE), L.pa(L.CODE), PAGE, R | X, user=False)
    tables.map(L.va(L.STUB), L.pa(L.STUB), PAGE, R | X, user=True)
    tables.map(L.va(L.SYSIO), L.sys_gpa, PAGE, R, user=True)
    tables.map(L.va(L.FAULTIO), L.fault_gpa, PAGE, R | W, user=False)
    tables.map(L.va(L.STACK), L.pa(L.STACK), PAGE, R | W, user=False)
