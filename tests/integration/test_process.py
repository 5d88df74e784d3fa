"""Process model basics under the real sentry, with C fixtures compiled by
the tests and compared against native runs."""
import subprocess

from conftest import pyrunsc_cmd, run_do


def native(args):
    return subprocess.run(args, capture_output=True, timeout=60)


def same_as_native(prog, **kw):
    """Run a fixture in the sandbox; it must succeed and print what it
    prints natively. Returns the sandboxed run."""
    r = run_do([prog], **kw)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native([prog]).stdout
    return r


def test_signal_handlers_and_faults(cbin):
    same_as_native(cbin("signals"))


def test_threads(cbin):
    prog = cbin("threads", "-pthread")
    r = run_do([prog])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == b"total 400 distinct-tids 4\n"


def test_fork_exec_wait_chain():
    script = "for i in 1 2 3; do /bin/sh -c \"exit $i\"; echo $?; done; (exit 5) & wait $!; echo $?"
    r = run_do(["/bin/sh", "-c", script])
    assert r.stdout == b"1\n2\n3\n5\n", r.stderr[-2000:]


def test_shebang_script(tmp_path):
    r = run_do(["/bin/sh", "-c", "printf '#!/bin/sh -e\\necho script $0 $1\\n' > /tmp/s && chmod +x /tmp/s && /tmp/s arg"])
    assert r.stdout == b"script /tmp/s arg\n", r.stderr[-2000:]


def test_exec_errors_in_guest(tmp_path):
    script = ("/nonexistent 2>/dev/null; echo $?; /etc 2>/dev/null; echo $?; "
              "printf 'junk' > {j}; chmod +x {j}; {j} 2>/dev/null; echo $?")
    r = run_do(["/bin/sh", "-c", script.format(j="/tmp/j")])
    expect = native(["/bin/sh", "-c", script.format(j=tmp_path / "j")]).stdout
    assert r.stdout == expect


def test_syscalls_command_lists_every_number():
    out = subprocess.run(pyrunsc_cmd("syscalls"), capture_output=True, timeout=60, check=True).stdout
    lines = out.decode().splitlines()
    assert len(lines) >= 381
    assert any(l.split()[1] == "getpid" and "full" in l for l in lines)
    assert any("unimplemented" in l for l in lines)


def test_job_control_stop_continue(cbin):
    r = same_as_native(cbin("jobctl"))
    assert b"busy: stopped by 19" in r.stdout and b"waitid code 6" in r.stdout


def test_lifecycle_details(cbin):
    """Robust mutexes, subreaper, pdeathsig, RLIMIT_NPROC for a user,
    ppoll/pselect/epoll_pwait masks, nanosleep's remaining time."""
    r = same_as_native(cbin("lifecycle", "-pthread"))
    assert b"EOWNERDEAD" in r.stdout and b"forked 3 then Resource" in r.stdout


def test_unbounded_spawning_hits_nproc(cbin):
    """Root in the sandbox is bound by RLIMIT_NPROC too: no host exhaustion."""
    prog = cbin("spawn_unbounded", "-pthread")
    r = run_do([prog], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == (b"threads 4095 then Resource temporarily unavailable\n"
                        b"fork at the limit: Resource temporarily unavailable\n")


def test_shared_futexes_across_processes(cbin):
    r = same_as_native(cbin("shared_futex", "-pthread"), timeout=60)
    assert b"woke 1 across processes" in r.stdout and b"child got the semaphore" in r.stdout


MULTIPROCESSING = """
import multiprocessing as mp
def work(q, lock, n):
    with lock:
        q.put(n * n)
def inc(v):
    for _ in range(100):
        with v.get_lock():
            v.value += 1
if __name__ == "__main__":
    mp.set_start_method("fork")
    q, lock = mp.Queue(), mp.Lock()
    ps = [mp.Process(target=work, args=(q, lock, i)) for i in range(4)]
    for p in ps: p.start()
    print(sorted(q.get(timeout=30) for _ in ps))
    for p in ps: p.join()
    with mp.Pool(3) as pool:
        print(pool.map(abs, range(-5, 0)))
    v = mp.Value("i", 0)
    ps = [mp.Process(target=inc, args=(v,)) for i in range(3)]
    for p in ps: p.start()
    for p in ps: p.join()
    print(v.value)
"""


def test_python_multiprocessing():
    """Queues, locks and shared values: semaphores in MAP_SHARED memory."""
    args = ["/usr/bin/python3.11", "-c", MULTIPROCESSING]
    r = run_do(args, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native(args).stdout == b"[0, 1, 4, 9]\n[5, 4, 3, 2, 1]\n300\n"


def test_reads_into_read_only_memory_fault(cbin):
    r = same_as_native(cbin("rofault"))
    assert r.stdout.count(b"Bad address") == 3


def test_sender_siginfo(cbin):
    r = same_as_native(cbin("sigqueue"))
    assert b"sigqueue: count 3 code -1 value 4242 pid ok 1" in r.stdout


def test_address_space_and_stack_limits(cbin):
    r = same_as_native(cbin("rlimits"))
    assert b"12 MiB of recursion: 1" in r.stdout


def test_io_priorities_and_scheduling_odds(cbin):
    same_as_native(cbin("sched_misc"))


def test_scheduling_attributes(cbin):
    r = same_as_native(cbin("sched_attrs"))
    assert b"child after reset_on_fork: policy 0 prio 0 nice 0" in r.stdout


def test_write_to_a_pipe_nobody_reads_raises_sigpipe():
    script = ("yes | head -1; echo ${PIPESTATUS[@]}; "
              "/usr/bin/python3.11 -c 'import os, signal\n"
              "signal.signal(signal.SIGPIPE, signal.SIG_IGN)\n"
              "r, w = os.pipe(); os.close(r)\n"
              "try:\n os.writev(w, [b\"x\"])\nexcept BrokenPipeError: print(\"EPIPE\")'")
    r = run_do(["/bin/bash", "-c", script])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == native(["/bin/bash", "-c", script]).stdout == b"y\n141 0\nEPIPE\n"
