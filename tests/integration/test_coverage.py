"""pyrunsc coverage: the syscall reports of real workloads under the real
sentry, checked against what the workloads themselves saw, and the HTML
report rendered by a real browser (headless Chromium)."""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser

import pytest

from conftest import pyrunsc_cmd
from sentry.decode import name_of
from sentry.syscalls import table

table.handlers()


@pytest.fixture
def outdir():
    d = tempfile.mkdtemp(prefix="pyrunsc-coverage-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def coverage(args, outdir, *opts, stdin=subprocess.DEVNULL):
    """Run `pyrunsc coverage --json F [opts] -- args`: (CompletedProcess, report)."""
    out = os.path.join(outdir, "report.json")
    p = subprocess.run(pyrunsc_cmd("coverage", "--json", out, *opts, "--", *args), capture_output=True,
                       timeout=120, cwd="/", stdin=stdin)
    with open(out) as f:
        return p, json.load(f)


def check_support_levels(report):
    for name, r in report["syscalls"].items():
        e = table.ENTRIES[table.number(name)]
        assert (r["nr"], r["support"], r["note"]) == (e.nr, table.level(e), e.note)


def test_true_shows_the_loaders_execve_and_exit_group(outdir):
    p, rep = coverage(["/bin/true"], outdir)
    assert p.returncode == 0, p.stderr
    calls = rep["syscalls"]
    assert list(calls)[0] == "execve"              # the workload's first call, made by the loader
    assert {k: calls["execve"][k] for k in ("calls", "by_loader", "ok", "errors")} == \
        {"calls": 1, "by_loader": 1, "ok": 1, "errors": {}}
    assert {k: calls["exit_group"][k] for k in ("calls", "noreturn", "ok")} == {"calls": 1, "noreturn": 1, "ok": 0}
    assert rep["runs"] == [{**rep["runs"][0], "argv": ["/bin/true"], "exit_code": 0, "signal": None, "error": None}]
    check_support_levels(rep)


def fixture_log(stdout: bytes) -> dict:
    """The fixture's own account: name -> {calls, errors, shapes}."""
    got = {}
    for line in stdout.decode().splitlines():
        name, err, shape = line.split(" ", 2)
        g = got.setdefault(name, {"calls": 0, "errors": {}, "shapes": {}})
        g["calls"] += 1
        ename = errno_name(int(err))
        if ename:
            g["errors"][ename] = g["errors"].get(ename, 0) + 1
        if shape != "-":
            s = g["shapes"].setdefault(shape, {"calls": 0, "errors": {}})
            s["calls"] += 1
            if ename:
                s["errors"][ename] = s["errors"].get(ename, 0) + 1
    return got


def errno_name(n: int):
    return name_of("errno", n) if n else None


@pytest.mark.parametrize("crash", [False, True], ids=["exits", "crashes"])
def test_known_calls_show_exactly_their_counts_and_errnos(cbin, outdir, crash):
    """Each call the fixture makes, with the errno it got, is in the
    report; one is unimplemented, several fail. A run that dies of
    SIGSEGV still gets its report, with the crash in it."""
    p, rep = coverage([cbin("coverage_calls"), *(["crash"] if crash else [])], outdir)
    want = fixture_log(p.stdout)
    assert "io_setup" in want and want["io_setup"]["errors"] == {"ENOSYS": 2}   # as the sandbox answers it
    calls = rep["syscalls"]
    for name, w in want.items():
        r = calls[name]
        assert (r["calls"], r["errors"]) == (w["calls"], w["errors"]), name
        assert r.get("shapes", {}) == w["shapes"], name
    assert calls["write"]["calls"] == 1 and calls["write"]["errors"] == {}   # the log itself
    assert calls["io_setup"]["support"] == "unimplemented"
    assert calls["syslog"]["support"] == "refused" and want["syslog"]["errors"] == {"EPERM": 1}
    check_support_levels(rep)
    run = rep["runs"][0]
    if crash:
        assert p.returncode == 139
        assert (run["exit_code"], run["signal"]) == (139, "SIGSEGV")
        assert "exit_group" not in calls
    else:
        assert p.returncode == 3 and run["exit_code"] == 3 and run["signal"] is None
        assert calls["exit_group"]["noreturn"] == 1


def test_markdown_and_merge(cbin, outdir):
    """Markdown names the unimplemented calls and the outcome; `coverage
    merge` of two runs sums them, and refuses a file that is not a report."""
    md = os.path.join(outdir, "r.md")
    p = subprocess.run(pyrunsc_cmd("coverage", "--markdown", md, "--", cbin("coverage_calls"), "crash"),
                       capture_output=True, timeout=120, cwd="/", stdin=subprocess.DEVNULL)
    assert p.returncode == 139
    text = open(md).read()
    gaps = text.split("## Unimplemented or partial calls made")[1].split("##")[0]
    assert "| io_setup | unimplemented | 2 | ENOSYS 2 |" in gaps
    assert "| syslog | refused | 1 | EPERM 1 |" in gaps
    assert "killed by SIGSEGV (exit status 139)" in text
    a = os.path.join(outdir, "a.json")
    b = os.path.join(outdir, "b.json")
    for out, args in ((a, ["/bin/true"]), (b, ["/bin/busybox", "sh", "-c", "exit 4"])):
        p = subprocess.run(pyrunsc_cmd("coverage", "--json", out, "--", *args), capture_output=True,
                           timeout=120, cwd="/", stdin=subprocess.DEVNULL)
        assert p.stderr == b""   # with --json, nothing on stderr
    merged = os.path.join(outdir, "m.json")
    p = subprocess.run(pyrunsc_cmd("coverage", "merge", a, b, "--json", merged), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    ra, rb, rm = (json.load(open(f)) for f in (a, b, merged))
    assert [r["exit_code"] for r in rm["runs"]] == [0, 4]
    for name in set(ra["syscalls"]) | set(rb["syscalls"]):
        assert rm["syscalls"][name]["calls"] == sum(r["syscalls"].get(name, {}).get("calls", 0) for r in (ra, rb))
    assert rm["syscalls"]["execve"]["by_loader"] == 2
    p = subprocess.run(pyrunsc_cmd("coverage", "merge", a, md), capture_output=True, timeout=60)
    assert p.returncode != 0 and p.stderr.decode().strip().endswith(f"{md}: not JSON (Expecting value: line 1 "
                                                                     "column 1 (char 0))")
    assert len(p.stderr.decode().strip().splitlines()) == 1


def test_a_program_that_cannot_start_still_gets_a_report(outdir):
    p, rep = coverage(["/no/such/program"], outdir)
    assert p.returncode == 127
    assert rep["syscalls"]["execve"]["errors"] == {"ENOENT": 1}
    assert "No such file" in rep["runs"][0]["error"] and rep["runs"][0]["exit_code"] == 127


# --- the HTML report in a browser ---

class Bars(HTMLParser):
    """The bars the page's script drew: chart id -> [(data-value, width)]."""

    def __init__(self):
        super().__init__()
        self.bars, self._chart = {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id", "").startswith("chart-"):
            self._chart = a["id"]
            self.bars[self._chart] = []
        elif tag == "rect" and a.get("class") == "bar" and self._chart:
            self.bars[self._chart].append((int(a["data-value"]), float(a["width"])))


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit truecolour PNG,
    enough for Chromium's screenshots."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and not interlace
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 4 if ctype == 6 else 3
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_html_report_renders_with_charts_in_chromium(outdir):
    page = os.path.join(outdir, "report.html")
    p = subprocess.run(pyrunsc_cmd("coverage", "--html", page, "--json", os.path.join(outdir, "r.json"), "--",
                                   "/usr/bin/python3.11", "-c", "import json"),
                       capture_output=True, timeout=120, cwd="/", stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    rep = json.load(open(os.path.join(outdir, "r.json")))
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={os.path.join(outdir, 'profile')}"]
    dom = subprocess.run(browser + ["--dump-dom", "file://" + page], capture_output=True, timeout=120).stdout
    parsed = Bars()
    parsed.feed(dom.decode())
    bars = parsed.bars
    # the calls chart: the busiest syscalls, longest first, each bar its count
    want = sorted((r["calls"] for r in rep["syscalls"].values()), reverse=True)[:30]
    assert [v for v, _ in bars["chart-calls"]] == want and want[0] > 100
    assert all(w > 0 for _, w in bars["chart-calls"]) and bars["chart-calls"][0][1] > bars["chart-calls"][-1][1]
    timed = sorted((r["sentry_ns"] for r in rep["syscalls"].values() if r["sentry_ns"]), reverse=True)[:30]
    assert [v for v, _ in bars["chart-time"]] == timed and timed
    levels = {}
    for r in rep["syscalls"].values():
        levels[r["support"]] = levels.get(r["support"], 0) + 1
    assert sorted(v for v, _ in bars["chart-support"][:len(levels)]) == sorted(levels.values())
    # and the pixels: the charts' colours fill a good part of the screenshot
    shot = os.path.join(outdir, "shot.png")
    subprocess.run(browser + [f"--screenshot={shot}", "--window-size=1000,700", "file://" + page],
                   capture_output=True, timeout=120)
    w, h, bpp, rows = png_pixels(shot)
    full, partial = bytes.fromhex("2e7d32"), bytes.fromhex("f9a825")
    count = {full: 0, partial: 0}
    for row in rows:
        for x in range(0, w * bpp, bpp):
            px = row[x:x + 3]
            if px in count:
                count[px] += 1
    assert count[full] > 3000 and count[partial] > 300, count   # the legend's squares are 121 pixels
