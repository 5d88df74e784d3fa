"""cffi API-mode extension for the ptrace platform's hot path.

Everything the sentry does once or more per guest syscall lives here: the
fused resume+wait step, register access, guest memory copies. Also the
guest spawn (a raw clone into fresh namespaces, confined and traced before
it execs the stub), because that must run without Python in the child.

Built by setuptools (cffi_modules in pyproject.toml) as
platforms.ptrace._ptrace.
"""
from cffi import FFI

ffibuilder = FFI()

ffibuilder.cdef(r"""
struct user_regs_struct {
    unsigned long r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8,
                  rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags,
                  rsp, ss, fs_base, gs_base, ds, es, fs, gs;
};

#define PTRACE_CONT ...
#define PTRACE_SYSCALL ...
#define PTRACE_SYSEMU ...
#define PTRACE_GETREGS ...
#define PTRACE_SETREGS ...
#define PTRACE_SETOPTIONS ...
#define PTRACE_GETEVENTMSG ...
#define PTRACE_GETSIGINFO ...
#define PTRACE_INTERRUPT ...
#define PTRACE_LISTEN ...
#define PTRACE_EVENT_FORK ...
#define PTRACE_EVENT_VFORK ...
#define PTRACE_EVENT_CLONE ...
#define PTRACE_EVENT_EXEC ...
#define PTRACE_EVENT_EXIT ...
#define PTRACE_EVENT_STOP ...
#define PTRACE_O_TRACESYSGOOD ...
#define PTRACE_O_TRACEFORK ...
#define PTRACE_O_TRACEVFORK ...
#define PTRACE_O_TRACECLONE ...
#define PTRACE_O_TRACEEXEC ...
#define PTRACE_O_TRACEEXIT ...
#define PTRACE_O_EXITKILL ...
#define AUDIT_ARCH_X86_64 ...

long pt_request(long req, int pid, unsigned long addr, unsigned long data);

/* Fused hot path. Optionally store `rax` into the stopped task `pid`,
   resume it with `req` delivering `sig` (pid <= 0: resume nothing), then
   wait for the next event of any traced task. If `block` is 0 the wait
   does not block (returns 0 when nothing is pending). On a syscall stop,
   out[0..9] = nr, arg0..arg5, rip, rsp, arch; otherwise out is untouched.
   Returns the pid that reported (status in *status), 0, or -errno. */
int pt_step(int pid, int set_rax, long rax, int req, int sig, int block,
            int *status, unsigned long *out);

/* Extended FP state (NT_X86_XSTATE) into/from buf; returns its size or -errno. */
long pt_getxstate(int pid, char *buf, unsigned long len);
long pt_setxstate(int pid, const char *buf, unsigned long len);
int pt_resume(int pid, int set_rax, long rax, int req, int sig);
int pt_getregs(int pid, struct user_regs_struct *regs);
int pt_setregs(int pid, const struct user_regs_struct *regs);
long pt_geteventmsg(int pid);
/* si_signo, si_code, si_addr-or-pid, si_status into out[0..3] */
int pt_getsiginfo(int pid, long *out);

/* Guest memory. Return bytes copied or -errno. */
long pt_write(int pid, unsigned long addr, const char *buf, unsigned long len);
/* Reads through an open /proc/pid/mem (cheaper here than process_vm_readv:
   no page pinning); _cstr returns the index of the first NUL in
   [addr, addr+max) or -1, the bytes copied into buf. */
long pt_mem_read(int memfd, unsigned long addr, char *buf, unsigned long len);
long pt_mem_read_cstr(int memfd, unsigned long addr, char *buf, unsigned long max);

/* Start a guest: clone into new namespaces (ns_flags), confine, stop for
   the tracer, install the seccomp filter, exec the stub memfd. Returns the
   host pid or -errno. `cpu` >= 0 pins it. */
int pt_spawn(int stub_fd, int image_fd, int cache_fd, int ns_flags, int cpu,
             const unsigned short *allow, int nallow);

int pt_sigchld_fd(void);
int pt_kill(int pid, int sig);
int pt_tgkill(int tgid, int tid, int sig);
""")

ffibuilder.set_source("platforms.ptrace._ptrace", r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/ptrace.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PTRACE_SYSEMU
#define PTRACE_SYSEMU 31
#endif
#ifndef __WALL
#define __WALL 0x40000000
#endif

static long pt_request(long req, int pid, unsigned long addr, unsigned long data)
{
    long r = syscall(SYS_ptrace, req, pid, addr, data);
    return r < 0 ? -errno : r;
}

static int pt_step(int pid, int set_rax, long rax, int req, int sig, int block,
                   int *status, unsigned long *out)
{
    if (pid > 0) {
        if (set_rax && syscall(SYS_ptrace, PTRACE_POKEUSR, pid,
                               offsetof(struct user_regs_struct, rax), rax) < 0)
            return -errno;
        if (syscall(SYS_ptrace, req, pid, 0, sig) < 0)
            return -errno;
    }
    int st = 0;
    int w = waitpid(-1, &st, __WALL | (block ? 0 : WNOHANG));
    if (w <= 0)
        return w < 0 ? -errno : 0;
    *status = st;
    if (WIFSTOPPED(st) && WSTOPSIG(st) == (SIGTRAP | 0x80)) {
        struct ptrace_syscall_info info;
        if (syscall(SYS_ptrace, PTRACE_GET_SYSCALL_INFO, w, sizeof info, &info) > 0 &&
            info.op == PTRACE_SYSCALL_INFO_ENTRY) {
            out[0] = info.entry.nr;
            for (int i = 0; i < 6; i++)
                out[1 + i] = info.entry.args[i];
            out[7] = info.instruction_pointer;
            out[8] = info.stack_pointer;
            out[9] = info.arch;
        } else {
            out[0] = (unsigned long)-1;
            out[9] = 0;
        }
    }
    return w;
}

static long pt_getxstate(int pid, char *buf, unsigned long len)
{
    struct iovec iov = {buf, len};
    if (syscall(SYS_ptrace, PTRACE_GETREGSET, pid, 0x202 /* NT_X86_XSTATE */, &iov) < 0)
        return -errno;
    return (long)iov.iov_len;
}

static long pt_setxstate(int pid, const char *buf, unsigned long len)
{
    struct iovec iov = {(void *)buf, len};
    if (syscall(SYS_ptrace, PTRACE_SETREGSET, pid, 0x202, &iov) < 0)
        return -errno;
    return 0;
}

static int pt_resume(int pid, int set_rax, long rax, int req, int sig)
{
    if (set_rax && syscall(SYS_ptrace, PTRACE_POKEUSR, pid,
                           offsetof(struct user_regs_struct, rax), rax) < 0)
        return -errno;
    return syscall(SYS_ptrace, req, pid, 0, sig) < 0 ? -errno : 0;
}

static int pt_getregs(int pid, struct user_regs_struct *regs)
{
    return syscall(SYS_ptrace, PTRACE_GETREGS, pid, 0, regs) < 0 ? -errno : 0;
}

static int pt_setregs(int pid, const struct user_regs_struct *regs)
{
    return syscall(SYS_ptrace, PTRACE_SETREGS, pid, 0, regs) < 0 ? -errno : 0;
}

static long pt_geteventmsg(int pid)
{
    unsigned long msg = 0;
    if (syscall(SYS_ptrace, PTRACE_GETEVENTMSG, pid, 0, &msg) < 0)
        return -errno;
    return (long)msg;
}

static int pt_getsiginfo(int pid, long *out)
{
    siginfo_t si;
    if (syscall(SYS_ptrace, PTRACE_GETSIGINFO, pid, 0, &si) < 0)
        return -errno;
    out[0] = si.si_signo;
    out[1] = si.si_code;
    out[2] = (long)si.si_addr;
    out[3] = si.si_status;
    return 0;
}

static long pt_write(int pid, unsigned long addr, const char *buf, unsigned long len)
{
    struct iovec local = {(void *)buf, len}, remote = {(void *)addr, len};
    long n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    return n < 0 ? -errno : n;
}

static long pt_mem_read(int memfd, unsigned long addr, char *buf, unsigned long len)
{
    long n = pread(memfd, buf, len, (off_t)addr);
    return n < 0 ? -errno : n;
}

static long pt_mem_read_cstr(int memfd, unsigned long addr, char *buf, unsigned long max)
{
    /* Page by page: the string may end just before an unmapped page. */
    unsigned long done = 0;
    while (done < max) {
        unsigned long chunk = 4096 - ((addr + done) & 4095);
        if (chunk > max - done)
            chunk = max - done;
        long n = pread(memfd, buf + done, chunk, (off_t)(addr + done));
        if (n <= 0)
            return n < 0 ? -errno : -EFAULT;
        char *nul = memchr(buf + done, 0, n);
        if (nul)
            return nul - buf;
        done += n;
    }
    return -1;
}

/* Kill on any ABI but x86-64 and on x32 numbers; allow only the listed
   x86-64 calls (the ones the sentry injects) and prctl with the options
   it injects (below); kill on anything else. Under SYSEMU a guest's own
   syscalls never reach this filter: it guards the host calls that do run
   (injected ones, and anything a confused tracer would let through). */
static int install_seccomp(const unsigned short *allow, int nallow)
{
    struct sock_filter f[16 + 2 * 512];
    int n = 0;
    if (nallow > 512)
        return -E2BIG;
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    for (int i = 0; i < nallow; i++) {
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, allow[i], 0, 1);
        f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    }
    /* prctl only as the sentry injects it after an exec, so that the
       host's ps shows the guest's command: PR_SET_NAME (the calling
       thread's comm), or PR_SET_MM with PR_SET_MM_MAP (the mm's
       code/data/brk/stack/argv/env bounds, only read by /proc here: the
       host brk call stays forbidden; changing the exe link needs
       CAP_CHECKPOINT_RESTORE, which guest host processes lack after the
       stub's exec). Both options are ints: the kernel reads the low 32
       bits of each argument, which is what these loads see. */
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 6);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_NAME, 3, 0);
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_MM, 0, 3);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_MM_MAP, 0, 1);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    struct sock_fprog prog = {(unsigned short)n, f};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        return -errno;
    return 0;
}

/* The child side of pt_spawn. Only raw syscalls: we are a clone of a
   multithreaded Python process. Exits with 120+step on failure so the
   sentry can say which step failed. */
static void guest_child(int stub_fd, int image_fd, int cache_fd, int ns_flags, int cpu,
                        const unsigned short *allow, int nallow)
{
    static char empty[1] = "";
    static char *nullv[1] = {0};
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    if (ns_flags & CLONE_NEWNS) {
        /* An empty, read-only root: the guest host process can name no
           host file even if the tracer let a path syscall through. */
        if (mount(0, "/", 0, MS_REC | MS_PRIVATE, 0) < 0 ||
            mount("none", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555") < 0 ||
            chdir("/tmp") < 0 ||
            syscall(SYS_pivot_root, ".", ".") < 0 ||
            umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
            _exit(121);
        mount(0, "/", 0, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 0);
    }
    /* Guest host processes ignore SIGCHLD on the host so the kernel reaps
       their host children once the tracer has seen them exit (guest
       wait4 is emulated and never reaches the host). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGCHLD, &sa, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, 0);
    /* The stub (fd 3), the program image store (fd 4) and the file cache
       (fd 5) must survive every exec: not close-on-exec. All are memfds
       the sentry wrote; only calls the sentry injects ever name them. */
    int stub = fcntl(stub_fd, F_DUPFD, 10), image = fcntl(image_fd, F_DUPFD, 10);
    int cache = fcntl(cache_fd, F_DUPFD, 10);
    if (stub < 0 || image < 0 || cache < 0 || dup2(stub, 3) < 0 || dup2(image, 4) < 0 ||
        dup2(cache, 5) < 0)
        _exit(122);
    for (int fd = 0; fd < 3; fd++)
        close(fd);
    syscall(SYS_close_range, 6, ~0U, 0);
    if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        _exit(123);
    if (syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0) < 0)
        _exit(124);
    syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
    if (install_seccomp(allow, nallow) < 0)
        _exit(125);
    syscall(SYS_execveat, 3, empty, nullv, nullv, AT_EMPTY_PATH);
    _exit(126);
}

static int pt_spawn(int stub_fd, int image_fd, int cache_fd, int ns_flags, int cpu,
                    const unsigned short *allow, int nallow)
{
    long pid = syscall(SYS_clone, (unsigned long)(ns_flags | SIGCHLD), 0, 0, 0, 0);
    if (pid < 0)
        return -errno;
    if (pid == 0)
        guest_child(stub_fd, image_fd, cache_fd, ns_flags, cpu, allow, nallow);
    return (int)pid;
}

static int pt_sigchld_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (pthread_sigmask(SIG_BLOCK, &set, 0) != 0)
        return -EINVAL;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int pt_tgkill(int tgid, int tid, int sig)
{
    return syscall(SYS_tgkill, tgid, tid, sig) < 0 ? -errno : 0;
}

static int pt_kill(int pid, int sig)
{
    return syscall(SYS_kill, pid, sig) < 0 ? -errno : 0;
}
""")

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
