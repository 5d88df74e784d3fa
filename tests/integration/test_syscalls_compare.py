"""`pyrunsc syscalls --compare` against gVisor's own table (from the
installed runsc, Debian's package), our JSON read back through --compare,
and the table's levels against what the sandbox really answers."""
import errno
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import pyrunsc_cmd, run_do
from pyrunsc import syscall_table_report as report
from sentry.syscalls import table

RUNSC = shutil.which("runsc")
GVISOR_SUPPORTED = ("Full Support", "Partial Support")


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="pyrunsc-syscalls-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def pyrunsc_syscalls(*args):
    p = subprocess.run(pyrunsc_cmd("syscalls", *args), capture_output=True, text=True, timeout=120, cwd="/")
    assert p.returncode == 0, p.stderr
    return p.stdout


def listed(section_title, text):
    """The numbers a --compare section lists, and the count in its title."""
    m = re.search(rf"^{re.escape(section_title)}: (\d+)\n((?:  .*\n)*)", text, re.M)
    assert m, (section_title, text)
    lines = m.group(2).splitlines()[1:]   # after the column header
    return int(m.group(1)), [int(line.split()[0]) for line in lines]


def test_our_json_round_trips_through_compare(workdir):
    ours = os.path.join(workdir, "ours.json")
    pyrunsc_syscalls("--format", "json", "--output", ours)
    doc = json.load(open(ours))
    assert set(doc) == {"linux"} and set(doc["linux"]) == {"amd64"}
    out = pyrunsc_syscalls("--compare", ours)
    assert out.endswith("No differences.\n")
    total = len(table.ENTRIES)
    supported = sum(s["support"] in GVISOR_SUPPORTED for s in doc["linux"]["amd64"]["syscalls"].values())
    assert out.splitlines()[:2] == [
        f"pyrunsc: of {total} syscalls, {supported} have a full or partial implementation",
        f"ours: of {total} syscalls, {supported} have a full or partial implementation"]


@pytest.mark.skipif(RUNSC is None, reason="runsc (Debian's runsc package) is not installed")
def test_compare_with_gvisor(workdir):
    gvisor = os.path.join(workdir, "runsc.json")
    subprocess.run([RUNSC, "help", "syscalls", "-format", "json", "-filename", gvisor], check=True,
                   capture_output=True, timeout=60)
    theirs = json.load(open(gvisor))["linux"]["amd64"]["syscalls"]
    theirs = {int(nr): c for nr, c in theirs.items()}
    # our side straight from the kernel's dispatch list, not from the report
    dispatch = table.handlers()
    ours = {nr for nr in table.ENTRIES if dispatch[nr] is not None and not getattr(dispatch[nr], "refuses", None)}
    gv = {nr for nr, c in theirs.items() if c["support"] in GVISOR_SUPPORTED}

    out = pyrunsc_syscalls("--compare", gvisor)
    lines = out.splitlines()
    assert lines[0] == f"pyrunsc: of {len(table.ENTRIES)} syscalls, {len(ours)} have a full or partial implementation"
    assert lines[1] == f"runsc: of {len(theirs)} syscalls, {len(gv)} have a full or partial implementation"
    n, nrs = listed("Supported by runsc, not by pyrunsc", out)
    assert n == len(nrs) and nrs == sorted(gv - ours)
    n, nrs = listed("Supported by pyrunsc, not by runsc", out)
    assert n == len(nrs) and nrs == sorted(ours - gv)
    # where the two name a number differently, the host's header names it as we do
    header = open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").read()
    host = {int(nr): name for name, nr in re.findall(r"#define __NR_(\w+)\s+(\d+)", header)}
    renamed = [nr for nr, c in theirs.items() if c["name"] != table.ENTRIES[nr].name]
    for nr in renamed:
        assert host[nr] == table.ENTRIES[nr].name
        assert f"  {nr:<4}  pyrunsc {table.ENTRIES[nr].name}, runsc {theirs[nr]['name']}" in lines
    if not renamed:
        assert "Same number, different name" not in out


SYSCALL_PROBE = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long nr = atol(argv[i]);
        errno = 0;
        long r = syscall(nr, 0, 0, 0, 0, 0, 0);
        printf("%ld %ld %d\n", nr, r, r < 0 ? errno : 0);
    }
    return 0;
}
"""


def test_the_sandbox_answers_as_the_table_says(workdir):
    """Every call the table lists as unimplemented gets ENOSYS from the
    sandbox, and every refused one its errno: the levels are what the
    kernel does, not what someone wrote down."""
    src, exe = os.path.join(workdir, "probe.c"), os.path.join(workdir, "probe")
    with open(src, "w") as f:
        f.write(SYSCALL_PROBE)
    subprocess.run(["gcc", "-O1", "-static", "-o", exe, src], check=True)
    rows = [r for r in report.rows() if r.level in (table.UNIMPLEMENTED, table.REFUSED)]
    p = run_do([exe, *[str(r.nr) for r in rows]])
    assert p.returncode == 0, p.stderr
    got = {int(nr): (int(r), int(e)) for nr, r, e in (line.split() for line in p.stdout.decode().splitlines())}
    for r in rows:
        want = errno.ENOSYS if r.level == table.UNIMPLEMENTED else table.ENTRIES[r.nr].handler.refuses
        assert got[r.nr] == (-1, want), (r, got[r.nr])
