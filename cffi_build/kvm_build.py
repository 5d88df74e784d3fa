"""cffi API-mode extension for the KVM platform (platforms.kvm._kvm).

The structs and ioctl numbers come from <linux/kvm.h> through the C
compiler, so nothing here restates the kernel's layouts. The hot path is one
C call per guest exit: kv_step() hands a syscall's answer back to the
pending MMIO read, runs KVM_RUN once and decodes the exit into a flat array.
A watchdog thread per vCPU kicks a KVM_RUN that outlives its deadline
(immediate_exit + a signal), so no guest can wedge the sentry.

Built by setuptools (cffi_modules in setup.py); `python cffi_build/kvm_build.py`
builds it in place.
"""
import os

from cffi import FFI

ffibuilder = FFI()

ffibuilder.cdef(r"""
#define KVM_GET_API_VERSION ...
#define KVM_CREATE_VM ...
#define KVM_CHECK_EXTENSION ...
#define KVM_GET_VCPU_MMAP_SIZE ...
#define KVM_GET_SUPPORTED_CPUID ...
#define KVM_SET_USER_MEMORY_REGION ...
#define KVM_SET_TSS_ADDR ...
#define KVM_CREATE_VCPU ...
#define KVM_RUN ...
#define KVM_GET_REGS ...
#define KVM_SET_REGS ...
#define KVM_GET_SREGS ...
#define KVM_SET_SREGS ...
#define KVM_SET_MSRS ...
#define KVM_GET_MSRS ...
#define KVM_SET_CPUID2 ...
#define KVM_SET_XCRS ...
#define KVM_GET_XCRS ...

#define KVM_API_VERSION ...
#define KVM_CAP_USER_MEMORY ...
#define KVM_CAP_SYNC_REGS ...
#define KVM_CAP_IMMEDIATE_EXIT ...
#define KVM_CAP_EXT_CPUID ...
#define KVM_CAP_XCRS ...
#define KVM_CAP_NR_MEMSLOTS ...
#define KVM_SYNC_X86_REGS ...
#define KVM_SYNC_X86_SREGS ...
#define KVM_MAX_XCRS ...

#define KVM_EXIT_UNKNOWN ...
#define KVM_EXIT_IO ...
#define KVM_EXIT_HLT ...
#define KVM_EXIT_MMIO ...
#define KVM_EXIT_SHUTDOWN ...
#define KVM_EXIT_FAIL_ENTRY ...
#define KVM_EXIT_INTR ...
#define KVM_EXIT_INTERNAL_ERROR ...

struct kvm_regs {
    uint64_t rax, rbx, rcx, rdx;
    uint64_t rsi, rdi, rsp, rbp;
    uint64_t r8, r9, r10, r11;
    uint64_t r12, r13, r14, r15;
    uint64_t rip, rflags;
};

struct kvm_segment {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint8_t type;
    uint8_t present, dpl, db, s, l, g, avl;
    uint8_t unusable;
    ...;
};

struct kvm_dtable {
    uint64_t base;
    uint16_t limit;
    ...;
};

struct kvm_sregs {
    struct kvm_segment cs, ds, es, fs, gs, ss;
    struct kvm_segment tr, ldt;
    struct kvm_dtable gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, cr8;
    uint64_t efer;
    uint64_t apic_base;
    ...;
};

struct kvm_userspace_memory_region {
    uint32_t slot;
    uint32_t flags;
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
};

struct kvm_cpuid_entry2 {
    uint32_t function;
    uint32_t index;
    uint32_t flags;
    uint32_t eax, ebx, ecx, edx;
    ...;
};

struct kvm_cpuid2 {
    uint32_t nent;
    struct kvm_cpuid_entry2 entries[];
    ...;
};

struct kvm_msr_entry {
    uint32_t index;
    uint64_t data;
    ...;
};

struct kvm_msrs {
    uint32_t nmsrs;
    struct kvm_msr_entry entries[];
    ...;
};

struct kvm_xcr {
    uint32_t xcr;
    uint64_t value;
    ...;
};

struct kvm_xcrs {
    uint32_t nr_xcrs;
    uint32_t flags;
    struct kvm_xcr xcrs[...];
    ...;
};

/* Only the fixed head of the run area; the exit unions are read in C. */
struct kvm_run {
    uint8_t request_interrupt_window;
    uint8_t immediate_exit;
    uint32_t exit_reason;
    uint64_t kvm_valid_regs;
    uint64_t kvm_dirty_regs;
    ...;
};

/* Per-vCPU state shared by kv_step and the watchdog thread. */
struct kv_vcpu {
    int fd;
    struct kvm_run *run;
    uint64_t sys_gpa;    /* an 8-byte MMIO read here is a guest syscall */
    uint64_t fault_gpa;  /* a 1-byte MMIO write at fault_gpa+vector is an exception */
    uint64_t kicks;      /* how often the watchdog kicked this vCPU */
    ...;
};

/* kv_step's answers (>= 0) besides -errno. */
#define KV_SYSCALL ...
#define KV_FAULT ...
#define KV_HLT ...
#define KV_TIMEOUT ...
#define KV_INTR ...
#define KV_SHUTDOWN ...
#define KV_MMIO ...
#define KV_IO ...
#define KV_FAIL_ENTRY ...
#define KV_INTERNAL ...
#define KV_OTHER ...
#define KV_OUT_WORDS ...

/* ioctl(fd, req, arg) -> result or -errno. */
long kv_ioctl(int fd, unsigned long req, void *arg);
long kv_ioctl_int(int fd, unsigned long req, unsigned long arg);

/* mmap/munmap the vCPU's run area; NULL and *err on failure. */
struct kvm_run *kv_map_run(int fd, long size, int *err);
int kv_unmap_run(struct kvm_run *run, long size);

/* The synced registers inside the run area (valid after every exit when
   kvm_valid_regs has KVM_SYNC_X86_REGS; written back on the next KVM_RUN
   when kvm_dirty_regs has it). */
struct kvm_regs *kv_sync_regs(struct kvm_run *run);

/* One guest entry. If has_answer, first store `answer` as the data of the
   pending MMIO read (the syscall's result). Runs KVM_RUN until an exit or
   until timeout_ns have passed (the watchdog kicks it). Returns a KV_* code
   with details in out[0..KV_OUT_WORDS-1], or -errno of KVM_RUN. */
int kv_step(struct kv_vcpu *v, int64_t timeout_ns, int has_answer,
            uint64_t answer, uint64_t *out);

/* Finish a pending MMIO/IO exit without running guest code (KVM_RUN with
   immediate_exit set), so registers can then be changed safely. */
int kv_complete(struct kv_vcpu *v, int has_answer, uint64_t answer);

/* Start/stop the vCPU's watchdog thread; 0 or -errno. */
int kv_guard_start(struct kv_vcpu *v);
int kv_guard_stop(struct kv_vcpu *v);
""")

ffibuilder.set_source("platforms.kvm._kvm", r"""
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#define KV_SYSCALL 1
#define KV_FAULT 2
#define KV_HLT 3
#define KV_TIMEOUT 4
#define KV_INTR 5
#define KV_SHUTDOWN 6
#define KV_MMIO 7
#define KV_IO 8
#define KV_FAIL_ENTRY 9
#define KV_INTERNAL 10
#define KV_OTHER 11
#define KV_OUT_WORDS 12

/* The watchdog's kick. A real-time signal nobody else here uses; its
   handler does nothing, the point is the EINTR out of KVM_RUN. */
#define KV_KICK_SIGNAL (SIGRTMAX - 3)
#define KV_GUARD_POLL_NS 2000000L

struct kv_vcpu {
    int fd;
    struct kvm_run *run;
    uint64_t sys_gpa;
    uint64_t fault_gpa;
    uint64_t kicks;
    int64_t deadline;
    int in_run;
    int stop;
    int guard_running;
    pthread_t thread;
    pthread_t guard;
};

static int64_t kv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static long kv_ioctl(int fd, unsigned long req, void *arg)
{
    long r = ioctl(fd, req, arg);
    return r < 0 ? -errno : r;
}

static long kv_ioctl_int(int fd, unsigned long req, unsigned long arg)
{
    long r = ioctl(fd, req, arg);
    return r < 0 ? -errno : r;
}

static struct kvm_run *kv_map_run(int fd, long size, int *err)
{
    void *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        *err = errno;
        return 0;
    }
    *err = 0;
    return p;
}

static int kv_unmap_run(struct kvm_run *run, long size)
{
    return munmap(run, size) < 0 ? -errno : 0;
}

static struct kvm_regs *kv_sync_regs(struct kvm_run *run)
{
    return &run->s.regs.regs;
}

static int kv_decode(struct kv_vcpu *v, uint64_t *out)
{
    struct kvm_run *run = v->run;
    struct kvm_regs *r = &run->s.regs.regs;
    switch (run->exit_reason) {
    case KVM_EXIT_MMIO:
        if (!run->mmio.is_write && run->mmio.phys_addr == v->sys_gpa && run->mmio.len == 8) {
            out[0] = r->rax; out[1] = r->rdi; out[2] = r->rsi; out[3] = r->rdx;
            out[4] = r->r10; out[5] = r->r8; out[6] = r->r9;
            out[7] = r->rcx; out[8] = r->rsp; out[9] = r->r11;
            return KV_SYSCALL;
        }
        if (run->mmio.is_write && run->mmio.phys_addr >= v->fault_gpa
            && run->mmio.phys_addr < v->fault_gpa + 256) {
            out[0] = run->mmio.phys_addr - v->fault_gpa;
            out[1] = r->rsp;
            return KV_FAULT;
        }
        out[0] = run->mmio.phys_addr; out[1] = run->mmio.is_write; out[2] = run->mmio.len;
        memcpy(&out[3], run->mmio.data, 8);
        out[4] = r->rip;
        return KV_MMIO;
    case KVM_EXIT_HLT:
        out[0] = r->rip;
        return KV_HLT;
    case KVM_EXIT_SHUTDOWN:
        out[0] = r->rip;
        return KV_SHUTDOWN;
    case KVM_EXIT_IO:
        out[0] = run->io.port; out[1] = run->io.direction; out[2] = run->io.size;
        out[3] = run->io.count; out[4] = r->rip;
        return KV_IO;
    case KVM_EXIT_FAIL_ENTRY:
        out[0] = run->fail_entry.hardware_entry_failure_reason;
        out[1] = run->fail_entry.cpu;
        return KV_FAIL_ENTRY;
    case KVM_EXIT_INTERNAL_ERROR: {
        uint32_t n = run->internal.ndata;
        out[0] = run->internal.suberror;
        out[1] = n;
        for (uint32_t i = 0; i < n && i < KV_OUT_WORDS - 2; i++)
            out[2 + i] = run->internal.data[i];
        return KV_INTERNAL;
    }
    default:
        out[0] = run->exit_reason;
        return KV_OTHER;
    }
}

static int kv_step(struct kv_vcpu *v, int64_t timeout_ns, int has_answer,
                   uint64_t answer, uint64_t *out)
{
    struct kvm_run *run = v->run;
    if (has_answer)
        memcpy(run->mmio.data, &answer, 8);
    v->thread = pthread_self();
    int64_t deadline = kv_now() + timeout_ns;
    __atomic_store_n(&v->deadline, deadline, __ATOMIC_RELAXED);
    /* A kick left over from an earlier entry would end this one at once. */
    __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&v->in_run, 1, __ATOMIC_SEQ_CST);
    int r = ioctl(v->fd, KVM_RUN, 0);
    int err = errno;
    __atomic_store_n(&v->in_run, 0, __ATOMIC_SEQ_CST);
    if (r < 0) {
        if (err == EINTR || err == EAGAIN)
            return kv_now() >= deadline ? KV_TIMEOUT : KV_INTR;
        return -err;
    }
    return kv_decode(v, out);
}

static int kv_complete(struct kv_vcpu *v, int has_answer, uint64_t answer)
{
    struct kvm_run *run = v->run;
    if (has_answer)
        memcpy(run->mmio.data, &answer, 8);
    __atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    int r = ioctl(v->fd, KVM_RUN, 0);
    int err = errno;
    __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    if (r < 0 && err != EINTR)
        return -err;
    return 0;
}

static void kv_kick_handler(int sig)
{
    (void)sig;
}

static void *kv_guard_main(void *arg)
{
    struct kv_vcpu *v = arg;
    struct timespec poll = {0, KV_GUARD_POLL_NS};
    while (!__atomic_load_n(&v->stop, __ATOMIC_SEQ_CST)) {
        nanosleep(&poll, 0);
        if (__atomic_load_n(&v->in_run, __ATOMIC_SEQ_CST)
            && kv_now() >= __atomic_load_n(&v->deadline, __ATOMIC_RELAXED)) {
            /* immediate_exit catches the entry the signal may miss; the
               signal ends one already under way. Repeated every poll until
               the vCPU is out. */
            __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
            pthread_kill(v->thread, KV_KICK_SIGNAL);
            v->kicks++;
        }
    }
    return 0;
}

static int kv_guard_start(struct kv_vcpu *v)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = kv_kick_handler;  /* no SA_RESTART: KVM_RUN must see EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(KV_KICK_SIGNAL, &sa, 0) < 0)
        return -errno;
    v->stop = 0;
    int e = pthread_create(&v->guard, 0, kv_guard_main, v);
    if (e)
        return -e;
    v->guard_running = 1;
    return 0;
}

static int kv_guard_stop(struct kv_vcpu *v)
{
    if (!v->guard_running)
        return 0;
    __atomic_store_n(&v->stop, 1, __ATOMIC_SEQ_CST);
    int e = pthread_join(v->guard, 0);
    v->guard_running = 0;
    return -e;
}
""", extra_compile_args=["-O2"], libraries=["pthread"])

if __name__ == "__main__":
    # In-place build (what `pip install -e .` does through setup.py): the
    # module lands beside platforms/kvm/__init__.py, named like setuptools'
    # limited-API build (cffi's C uses Py_LIMITED_API).
    import shutil
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    built = ffibuilder.compile(tmpdir=os.path.join(root, "build", "cffi-kvm"), verbose=True)
    shutil.copyfile(built, os.path.join(root, "platforms", "kvm", "_kvm.abi3.so"))
