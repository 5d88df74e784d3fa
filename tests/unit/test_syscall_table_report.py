"""`pyrunsc syscalls`: the report's levels come from the registered
handlers, its formats read back to what was written, and the checked-in
numbers agree with python-ptrace's table where that one is right."""
import csv
import errno
import html.parser
import importlib
import inspect
import io
import json
import os
import pkgutil
import re

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from pyrunsc import syscall_table_report as report
from pyrunsc.syscalls_cli import syscalls as syscalls_command
from sentry import syscalls as syscalls_pkg
from sentry.syscalls import table
from sentry.syscalls.numbers import SYSCALL_NAMES, SYSCALL_NUMBERS

HOST_HEADER = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"


def host_numbers():
    text = open(HOST_HEADER).read()
    return {int(n): name for name, n in re.findall(r"#define __NR_(\w+)\s+(\d+)", text)}


# --- the numbers --------------------------------------------------------------

def test_numbers_agree_with_python_ptrace_where_it_knows_the_64_bit_abi():
    """python-ptrace's x86-64 table (Linux 5.8) is a cross-check of ours:
    every number it has below the x32 range is ours, and wherever the two
    disagree on a name the host's <asm/unistd_64.h> sides with ours."""
    from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES as ptrace_names
    host = host_numbers()
    native = {nr: n for nr, n in ptrace_names.items() if nr < 512}   # 512+: the x32 ABI's numbers
    assert native and max(native) < max(SYSCALL_NAMES)
    for nr, name in native.items():
        assert nr in SYSCALL_NAMES, (nr, name)
        if SYSCALL_NAMES[nr] != name:
            assert host.get(nr) == SYSCALL_NAMES[nr], (nr, name, SYSCALL_NAMES[nr])
    # what python-ptrace lacks is newer than its table, not a gap in the middle
    assert all(nr > max(native) for nr in SYSCALL_NAMES.keys() - native.keys())
    assert all(nr < 512 for nr in SYSCALL_NAMES)


def test_numbers_and_names_are_one_to_one():
    assert len(SYSCALL_NUMBERS) == len(SYSCALL_NAMES)
    assert all(SYSCALL_NAMES[nr] == n for n, nr in SYSCALL_NUMBERS.items())


# --- levels from handlers -------------------------------------------------------

def test_report_levels_are_the_registered_handlers():
    """A call is unimplemented in the report exactly when the kernel's
    dispatch list (table.handlers(), what Kernel uses) has no handler."""
    dispatch = table.handlers()
    rows = report.rows()
    assert [r.nr for r in rows] == sorted(SYSCALL_NAMES)
    for r in rows:
        h = dispatch[r.nr]
        if h is None:
            assert r.level == table.UNIMPLEMENTED, r
        elif getattr(h, "refuses", None):
            assert r.level == table.REFUSED, r
            assert h(None, None, 0, 0, 0, 0, 0, 0) == -h.refuses   # it really only refuses
            assert r.note.startswith(f"returns {errno.errorcode[h.refuses]}"), r
        else:
            assert r.level == table.ENTRIES[r.nr].support in report.SUPPORTED, r


def test_every_handler_written_is_registered():
    """A sys_* function in any sentry.syscalls module is some call's
    handler, and every handler lives in a module the table loads: else
    the report (and the kernel) would call a handled call unimplemented."""
    table.handlers()
    registered = {e.handler for e in table.ENTRIES.values() if e.handler is not None}
    loaded = {f"{syscalls_pkg.__name__}.{m}" for m in table.HANDLER_MODULES}
    for info in pkgutil.iter_modules(syscalls_pkg.__path__):
        mod = importlib.import_module(f"{syscalls_pkg.__name__}.{info.name}")
        for fname, fn in vars(mod).items():
            if inspect.isfunction(fn) and fn.__module__ == mod.__name__ and fname.startswith("sys_"):
                assert fn in registered, f"{mod.__name__}.{fname} is not registered"
    for h in registered:
        assert h.__module__ in loaded or getattr(h, "refuses", None), h


def test_summary_counts_the_handlers():
    dispatch = table.handlers()
    rows = report.rows()
    handled = [h for h in dispatch if h is not None]
    refused = [h for h in handled if getattr(h, "refuses", None)]
    counts = table.support_summary()
    assert sum(counts.values()) == len(SYSCALL_NAMES)
    assert counts[table.UNIMPLEMENTED] == len(SYSCALL_NAMES) - len(handled)
    assert counts[table.REFUSED] == len(refused)
    want = (f"Of {len(SYSCALL_NAMES)} syscalls, {len(handled) - len(refused)} have a full or partial "
            f"implementation ({len(refused)} more are refused with an error, "
            f"{len(SYSCALL_NAMES) - len(handled)} are unimplemented).")
    assert report.summary(rows) == want


def test_man_links_point_to_installed_pages_or_syscalls():
    if not os.path.isdir(report.MAN_DIR):
        pytest.skip("no man-pages installed")
    pages = {f.split(".2", 1)[0] for f in os.listdir(report.MAN_DIR)}
    rows = report.rows()
    for r in rows:
        page = r.name if r.name in pages else "syscalls"
        assert r.man == f"https://man7.org/linux/man-pages/man2/{page}.2.html", r
    assert any(r.name in pages for r in rows)
    assert report.man_url("read", None).endswith("/read.2.html")


# --- the formats --------------------------------------------------------------

names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=20)
notes = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)
levels = st.sampled_from([table.FULL, table.PARTIAL, table.REFUSED, table.UNIMPLEMENTED])
row_lists = st.dictionaries(st.integers(0, 600), st.tuples(names, levels, notes), max_size=12).map(
    lambda d: [report.Row(nr, n, lv, note, report.man_url("read", None), "") for nr, (n, lv, note) in sorted(d.items())])


@settings(max_examples=60, deadline=None)
@given(row_lists)
def test_json_reads_back_through_compare(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("json") / "t.json"
    path.write_text(report.render("json", rows))
    back = report.load_calls(str(path))
    assert back == report.as_calls(rows)
    cmp = report.Comparison(report.as_calls(rows), back, "t")
    assert not (cmp.only_ours or cmp.only_theirs or cmp.renamed)
    assert "No differences." in cmp.render()


@settings(max_examples=60, deadline=None)
@given(row_lists)
def test_csv_reads_back(rows):
    got = list(csv.DictReader(io.StringIO(report.render("csv", rows))))
    assert [(int(g["Num"]), g["Name"], g["Support"], g["Note"], g["Man"]) for g in got] == \
        [(r.nr, r.name, report.GVISOR_SUPPORT[r.level], r.note, r.man) for r in rows]


def markdown_cells(line):
    cells = re.split(r"(?<!\\)\|", line)[1:-1]
    return [re.sub(r"\\(.)", r"\1", c.strip()) for c in cells]


@settings(max_examples=60, deadline=None)
@given(row_lists)
def test_markdown_rows_keep_their_cells(rows):
    lines = report.render("markdown", rows).splitlines()
    body = lines[lines.index("|--:|------|---------|-------|") + 1:]
    assert len(body) == len(rows)
    for line, r in zip(body, rows):
        nr, name, level, note = markdown_cells(line)
        one_line = " ".join(r.note.splitlines())
        assert (int(nr), name, level, note) == (r.nr, f"[{' '.join(r.name.splitlines())}]({r.man})", r.level,
                                                one_line.strip())


class Page(html.parser.HTMLParser):
    """The rows' cell texts and every outside reference of an HTML page."""
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows, self.refs, self.tags, self._cell = [], [], set(), None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.refs += [v for k, v in attrs if k in ("href", "src")]
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@settings(max_examples=40, deadline=None)
@given(row_lists)
def test_html_is_one_page_with_every_row(rows):
    p = Page()
    p.feed(report.render("html", rows))
    assert [r for r in p.rows if r] == [[str(r.nr), r.name, r.level, r.note, r.prototype] for r in rows]
    assert not p.tags & {"script", "link", "img", "iframe", "object"}
    assert all(ref.startswith("https://man7.org/linux/man-pages/man2/") for ref in p.refs)


def test_html_of_the_real_table_has_prototypes():
    p = Page()
    p.feed(report.render("html", report.rows()))
    cells = {r[1]: r for r in p.rows if r}
    assert cells["read"][4].startswith("long read(") and "fd" in cells["read"][4]
    assert len(cells) == len(SYSCALL_NAMES)


# --- compare ------------------------------------------------------------------

supports = st.sampled_from(["Full Support", "Partial Support", "Unimplemented", "Undocumented"])
call_tables = st.dictionaries(st.integers(0, 40), st.builds(report.Call, st.sampled_from(["a", "b"]), supports,
                                                             st.just("")), max_size=30)


@settings(max_examples=100, deadline=None)
@given(call_tables, call_tables)
def test_compare_is_symmetric_and_covers_the_differences(ours, theirs):
    ab = report.Comparison(ours, theirs, "x")
    ba = report.Comparison(theirs, ours, "x")
    assert ab.only_ours == ba.only_theirs and ab.only_theirs == ba.only_ours and ab.renamed == ba.renamed
    both = ab.supported(ours) & ab.supported(theirs)
    assert set(ab.only_ours) | both == ab.supported(ours)
    assert set(ab.only_theirs) | both == ab.supported(theirs)
    text = ab.render()
    assert f"not by pyrunsc: {len(ab.only_theirs)}\n" in text and f"not by x: {len(ab.only_ours)}\n" in text


@pytest.mark.parametrize("content, reason", [
    (None, "No such file"),
    ("{not json", "not JSON"),
    ('{"linux": {"arm64": {}}}', "gVisor's JSON format"),
    ('{"linux": {"amd64": {"syscalls": {"x": {"name": "a", "support": "b"}}}}}', "gVisor's JSON format"),
])
def test_bad_compare_files_give_one_line(tmp_path, content, reason):
    path = tmp_path / "t.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError) as e:
        report.load_calls(str(path))
    assert reason in str(e.value) and "\n" not in str(e.value)
    r = CliRunner().invoke(syscalls_command, ["--compare", str(path)])
    assert r.exit_code == 1 and reason in r.output


# --- the command --------------------------------------------------------------

def test_unimplemented_lists_the_calls_without_a_handler():
    dispatch = table.handlers()
    r = CliRunner().invoke(syscalls_command, ["--unimplemented", "--format", "csv"])
    assert r.exit_code == 0, r.output
    listed = [int(g["Num"]) for g in csv.DictReader(io.StringIO(r.output))]
    assert listed == [nr for nr in sorted(SYSCALL_NAMES) if dispatch[nr] is None]


def test_output_file_and_stdout_agree(tmp_path):
    out = tmp_path / "t.json"
    r1 = CliRunner().invoke(syscalls_command, ["--format", "json"])
    r2 = CliRunner().invoke(syscalls_command, ["--format", "json", "--output", str(out)])
    assert r1.exit_code == r2.exit_code == 0 and r2.output == ""
    assert json.loads(out.read_text()) == json.loads(r1.output)
    table_text = CliRunner().invoke(syscalls_command, []).output
    assert table_text.splitlines()[0] == report.summary(report.rows())


def test_compare_refuses_a_format():
    r = CliRunner().invoke(syscalls_command, ["--compare", "x.json", "--format", "csv"])
    assert r.exit_code == 2 and "--compare" in r.output
