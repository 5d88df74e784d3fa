"""The coverage recorder (sentry/coverage.py) and its reports
(pyrunsc/coverage_report.py): counting, merging, JSON, Markdown and HTML.
The recorder is fed calls as the kernel's done() gives them; a task is
only a key to it, so plain objects stand in for tasks."""
import errno
import json
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings, strategies as st

from pyrunsc import coverage_report as cr
from sentry.coverage import MAX_SHAPES, CoverageRecorder
from sentry.decode import name_of
from sentry.syscalls import table

table.handlers()
NR = {n: table.number(n) for n in ("read", "ioctl", "socket", "exit_group", "io_setup", "wait4", "fcntl")}


class Task:
    """What the recorder needs of a task: something to key a parked call by."""


def result_st():
    return st.one_of(st.just(None), st.integers(0, 1 << 20), st.integers(-133, -1))


call_st = st.tuples(st.sampled_from(sorted(NR.values())), st.tuples(*[st.integers(0, 3)] * 6), result_st(),
                    st.integers(0, 10 ** 6))


def record(calls, rec=None):
    rec = rec or CoverageRecorder()
    t = Task()
    for nr, args, result, ns in calls:
        rec.done(t, nr, args, result, ns)
    return rec


@settings(max_examples=60, deadline=None)
@given(st.lists(call_st, max_size=60))
def test_summary_counts_match_an_independent_tally(calls):
    got = record(calls).summary()
    want = {}
    for nr, args, result, ns in calls:
        w = want.setdefault(table.name(nr), {"calls": 0, "ok": 0, "noreturn": 0, "sentry_ns": 0, "errors": {}})
        w["calls"] += 1
        w["sentry_ns"] += ns
        if result is None:
            w["noreturn"] += 1
        elif result < 0:
            e = name_of("errno", -result)
            w["errors"][e] = w["errors"].get(e, 0) + 1
        else:
            w["ok"] += 1
    assert set(got) == set(want)
    for name, w in want.items():
        g = got[name]
        assert {k: g[k] for k in w} == w
        assert g["calls"] == g["ok"] + sum(g["errors"].values()) + g["noreturn"] + g["unfinished"]
        assert g["support"] == table.level(table.ENTRIES[g["nr"]])
        if "shapes" in g:   # every call of a shaped syscall has a shape
            assert sum(s["calls"] for s in g["shapes"].values()) == g["calls"]


@settings(max_examples=40, deadline=None)
@given(st.lists(call_st, max_size=60), st.lists(st.integers(0, 60), max_size=3))
def test_merge_of_parts_is_the_report_of_the_whole(calls, cuts):
    """Recording a sequence in pieces and merging the reports gives what
    recording it at once gives (up to the order syscalls were first seen)."""
    bounds = [0, *sorted(cuts), len(calls)]
    parts = [cr.new_report(record(calls[a:b]).summary(), ["x"], 0) for a, b in zip(bounds, bounds[1:])]
    merged = cr.merge(parts)
    whole = record(calls).summary()
    assert json.loads(json.dumps(merged["syscalls"], sort_keys=True)) == \
        json.loads(json.dumps(whole, sort_keys=True))
    assert len(merged["runs"]) == len(parts)


def test_shapes_name_the_arguments_and_keep_their_errors():
    rec = CoverageRecorder()
    t = Task()
    rec.done(t, NR["ioctl"], (0, 0x5401, 0, 0, 0, 0), -errno.ENOTTY, 5)
    rec.done(t, NR["ioctl"], (0, 0x5401, 0, 0, 0, 0), 0, 5)
    rec.done(t, NR["socket"], (1, 1 | 0o2000000, 0, 0, 0, 0), 3, 5)    # SOCK_CLOEXEC is not a shape of its own
    rec.done(t, NR["socket"], (1, 1, 0, 0, 0, 0), -errno.EMFILE, 5)
    got = rec.summary()
    tcgets = name_of("ioctl", 0x5401)
    assert got["ioctl"]["shapes"] == {tcgets: {"calls": 2, "errors": {"ENOTTY": 1}}}
    unix_stream = f"{name_of('family', 1)} {name_of('socktype', 1)}"
    assert got["socket"]["shapes"] == {unix_stream: {"calls": 2, "errors": {"EMFILE": 1}}}
    assert "shapes" not in record([(NR["read"], (0,) * 6, 0, 1)]).summary()["read"]


def test_shapes_stop_growing_at_the_limit():
    calls = [(NR["ioctl"], (0, 0x1000 + i, 0, 0, 0, 0), -errno.ENOTTY, 0) for i in range(MAX_SHAPES + 10)]
    shapes = record(calls).summary()["ioctl"]["shapes"]
    assert len(shapes) == MAX_SHAPES + 1
    assert shapes["other"] == {"calls": 10, "errors": {"ENOTTY": 10}}


def test_parked_calls_that_never_finish_are_unfinished():
    rec = CoverageRecorder()
    a, b = Task(), Task()
    rec.blocked(a, NR["wait4"], (0,) * 6)
    rec.blocked(b, NR["read"], (0,) * 6)
    rec.done(b, NR["read"], (0,) * 6, 5, 10)      # b's read finished; a died in wait4
    got = rec.summary()
    assert got["wait4"] == {**got["wait4"], "calls": 1, "unfinished": 1, "ok": 0}
    assert got["read"]["calls"] == 1 and got["read"]["unfinished"] == 0


def test_the_loaders_exec_is_the_first_call_and_says_so():
    rec = record([(NR["read"], (0,) * 6, 1, 1), (NR["exit_group"], (0,) * 6, None, 1)])
    rec.loader_exec(0)
    got = rec.summary()
    assert list(got)[0] == "execve"
    assert got["execve"]["by_loader"] == 1 and got["execve"]["ok"] == 1
    md = cr.to_markdown(cr.new_report(got, ["prog"], 0))
    assert "1 (1 by the sentry's loader)" in md and "not by a guest syscall" in md
    failed = CoverageRecorder()
    failed.loader_exec(-errno.ENOENT)
    assert failed.summary()["execve"]["errors"] == {"ENOENT": 1}


def sample_report(argv=("prog", "a|b", "</script><b>x"), exit_code=3, **run):
    calls = [(NR["read"], (0,) * 6, 4, 100), (NR["read"], (9,) * 6, -errno.EBADF, 50),
             (NR["io_setup"], (0,) * 6, -errno.ENOSYS, 0), (NR["exit_group"], (0,) * 6, None, 7)]
    return cr.new_report(record(calls).summary(), list(argv), exit_code, **run)


def test_json_round_trip_and_bad_reports(tmp_path):
    rep = sample_report()
    p = tmp_path / "r.json"
    p.write_text(cr.to_json(rep))
    assert cr.load(str(p)) == rep
    bad = {"not a pyrunsc coverage report": {"x": 1}, "newer than this pyrunsc reads": {**rep, "version": cr.VERSION + 1},
           "must be integers": {**rep, "syscalls": {"read": {"calls": "many"}}},
           "'runs' is not a list": {**rep, "runs": {}}}
    for why, doc in bad.items():
        p.write_text(json.dumps(doc))
        with pytest.raises(cr.ReportError, match=why) as e:
            cr.load(str(p))
        assert "\n" not in str(e.value)
    p.write_text("{")
    with pytest.raises(cr.ReportError, match="not JSON"):
        cr.load(str(p))
    with pytest.raises(cr.ReportError, match="No such file"):
        cr.load(str(tmp_path / "missing.json"))


def test_markdown_lists_gaps_outcome_and_every_syscall():
    rep = sample_report(signal="SIGSEGV", exit_code=139)
    md = cr.to_markdown(rep)
    gaps = md.split("## Unimplemented or partial calls made")[1].split("## All syscalls")[0]
    assert "| io_setup | unimplemented | 1 | ENOSYS 1 |" in gaps
    assert "killed by SIGSEGV (exit status 139)" in md
    assert "a\\|b" in md                       # a pipe in the command does not split the table
    rows = md.split("## All syscalls")[1]
    for name, r in rep["syscalls"].items():
        assert f"| {name} | {r['nr']} | {r['support']} | {r['calls']} |" in rows
    full_only = cr.new_report(record([(NR["read"], (0,) * 6, 1, 1)]).summary(), ["x"], 0)
    assert "None: every call the workload made is fully supported." in cr.to_markdown(full_only)


class Page(HTMLParser):
    """The parts of a page the tests look at: scripts, and every URL-valued attribute."""

    def __init__(self):
        super().__init__()
        self.scripts, self.urls, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "data")]
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append([self._in, ""])

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in is not None:
            self.scripts[-1][1] += data


def test_html_is_self_contained_and_embeds_the_report():
    rep = sample_report()
    page = cr.to_html(rep)
    p = Page()
    p.feed(page)
    assert p.urls == []                                    # nothing to fetch
    data = [text for attrs, text in p.scripts if attrs.get("type") == "application/json"]
    assert len(data) == 1 and json.loads(data[0]) == rep   # the argv's "</script>" did not end it
    assert "<b>x" not in page                              # argv shown escaped
    assert all("http" not in text.replace("http://www.w3.org/2000/svg", "") for _, text in p.scripts)
    for name in rep["syscalls"]:
        assert f"<tr><td>{name}</td>" in page
