"""Syscall coverage reports: the JSON document `pyrunsc coverage` writes,
merging several, and rendering one as Markdown or as a self-contained
HTML page (charts drawn by inline script from the data in the page: no
network, no external files).

A report (version 1):
  {"format": "pyrunsc-coverage", "version": 1,
   "runs": [{"argv", "exit_code", "signal", "core_dumped", "error", "wall_ns"}],
   "syscalls": {name: {"nr", "support", "note", "calls", "ok", "errors": {ENAME: n},
                       "noreturn", "unfinished", "sentry_ns", ["by_loader"],
                       ["shapes": {shape: {"calls", "errors"}}]}}}
calls = ok + sum(errors) + noreturn + unfinished. by_loader counts the
first process's execve, which the sentry's loader does for the workload.
"""
from __future__ import annotations

import html
import json
import shlex

FORMAT, VERSION = "pyrunsc-coverage", 1
LEVELS = ("full", "partial", "refused", "unimplemented")   # sentry.syscalls.table.level()
COUNTS = ("calls", "ok", "noreturn", "unfinished", "sentry_ns", "by_loader")


class ReportError(ValueError):
    """A file that is not a coverage report this version can read."""


def new_report(syscalls: dict, argv: list, exit_code, *, signal=None, core_dumped=False, error=None,
               wall_ns: int = 0) -> dict:
    """One run's report from sentry.coverage.CoverageRecorder.summary()."""
    run = {"argv": list(argv), "exit_code": exit_code, "signal": signal, "core_dumped": bool(core_dumped),
           "error": error, "wall_ns": int(wall_ns)}
    return {"format": FORMAT, "version": VERSION, "runs": [run], "syscalls": syscalls}


def load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ReportError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise ReportError(f"{path}: not JSON ({e})") from None
    return check(doc, path)


def check(doc, where: str = "report") -> dict:
    """doc if it is a report this version reads, else ReportError."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ReportError(f"{where}: not a pyrunsc coverage report")
    v = doc.get("version")
    if not isinstance(v, int) or v < 1:
        raise ReportError(f"{where}: bad version {v!r}")
    if v > VERSION:
        raise ReportError(f"{where}: report version {v} is newer than this pyrunsc reads ({VERSION})")
    runs, calls = doc.get("runs"), doc.get("syscalls")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ReportError(f"{where}: 'runs' is not a list of runs")
    if not isinstance(calls, dict):
        raise ReportError(f"{where}: 'syscalls' is not an object")
    for name, rec in calls.items():
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k, 0), int) for k in COUNTS):
            raise ReportError(f"{where}: syscall {name!r}: counts must be integers")
        if not isinstance(rec.get("errors", {}), dict) or not isinstance(rec.get("shapes", {}), dict):
            raise ReportError(f"{where}: syscall {name!r}: errors and shapes must be objects")
    return doc


def _add_counts(into: dict, errors: dict) -> None:
    for k, n in errors.items():
        into[k] = into.get(k, 0) + n


def merge(reports: list) -> dict:
    """One report of all runs: counts summed per syscall, errno and shape;
    a syscall's support level and note are the last report's."""
    runs, out = [], {}
    for rep in reports:
        runs.extend(rep["runs"])
        for name, rec in rep["syscalls"].items():
            m = out.get(name)
            if m is None:
                m = out[name] = {"nr": rec.get("nr"), "calls": 0, "ok": 0, "errors": {}, "noreturn": 0,
                                 "unfinished": 0, "sentry_ns": 0}
            m["support"], m["note"] = rec.get("support", "unimplemented"), rec.get("note", "")
            for k in COUNTS:
                if k in rec:
                    m[k] = m.get(k, 0) + rec[k]
            _add_counts(m["errors"], rec.get("errors", {}))
            for shape, srec in rec.get("shapes", {}).items():
                ms = m.setdefault("shapes", {}).setdefault(shape, {"calls": 0, "errors": {}})
                ms["calls"] += srec.get("calls", 0)
                _add_counts(ms["errors"], srec.get("errors", {}))
    return {"format": FORMAT, "version": VERSION, "runs": runs, "syscalls": out}


def to_json(report: dict) -> str:
    return json.dumps(report, indent=1) + "\n"


# --- what the renderings share ---

def totals(report: dict) -> dict:
    calls = report["syscalls"].values()
    levels = {lv: {"syscalls": 0, "calls": 0} for lv in LEVELS}
    for r in calls:
        lv = levels.setdefault(r.get("support", "unimplemented"), {"syscalls": 0, "calls": 0})
        lv["syscalls"] += 1
        lv["calls"] += r["calls"]
    return {"syscalls": len(report["syscalls"]), "calls": sum(r["calls"] for r in calls),
            "failed": sum(sum(r.get("errors", {}).values()) for r in calls),
            "sentry_ns": sum(r.get("sentry_ns", 0) for r in calls), "levels": levels}


def gaps(report: dict) -> list:
    """(name, record) of every call made that is not fully supported:
    unimplemented first, then refused, then partial; then by calls."""
    rank = {"unimplemented": 0, "refused": 1, "partial": 2}
    rows = [(n, r) for n, r in report["syscalls"].items() if r.get("support") != "full"]
    return sorted(rows, key=lambda nr: (rank.get(nr[1].get("support"), 0), -nr[1]["calls"], nr[0]))


def by_calls(report: dict) -> list:
    return sorted(report["syscalls"].items(), key=lambda nr: (-nr[1]["calls"], nr[0]))


def outcome(run: dict) -> str:
    """How a run ended, in words."""
    if run.get("error"):
        text = run["error"]
        if run.get("exit_code") is not None:
            text += f" (exit status {run['exit_code']})"
        return text
    if run.get("signal"):
        core = ", core dumped" if run.get("core_dumped") else ""
        return f"killed by {run['signal']}{core} (exit status {run['exit_code']})"
    return f"exit status {run.get('exit_code')}"


def command(run: dict) -> str:
    return shlex.join(str(a) for a in run.get("argv", []))


def _errors(errs: dict) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(errs.items(), key=lambda kv: (-kv[1], kv[0])))


def _shapes(shapes: dict) -> str:
    parts = []
    for shape, s in sorted(shapes.items(), key=lambda kv: (-kv[1]["calls"], kv[0])):
        errs = f" ({_errors(s['errors'])})" if s.get("errors") else ""
        parts.append(f"{shape} {s['calls']}{errs}")
    return ", ".join(parts)


def _calls(rec: dict) -> str:
    n = str(rec["calls"])
    if rec.get("by_loader"):
        n += f" ({rec['by_loader']} by the sentry's loader)"
    return n


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f}"


def _title(report: dict) -> str:
    runs = report["runs"]
    return f"Syscall coverage: {command(runs[0])}" if len(runs) == 1 else f"Syscall coverage: {len(runs)} runs"


# --- Markdown ---

def _md(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def to_markdown(report: dict) -> str:
    t = totals(report)
    out = [f"# {_md(_title(report))}", "", "## Runs", "", "| # | command | outcome |", "|---|---|---|"]
    for i, run in enumerate(report["runs"], 1):
        out.append(f"| {i} | {_md(_code(command(run)))} | {_md(outcome(run))} |")
    out += ["", "## Summary", "",
            f"- {t['syscalls']} distinct syscalls, {t['calls']} calls, {t['failed']} failed; "
            f"{_ms(t['sentry_ns'])} ms in the sentry's handlers"]
    for lv in LEVELS:
        n = t["levels"][lv]
        out.append(f"- {lv}: {n['syscalls']} syscalls, {n['calls']} calls")
    out += ["", "## Unimplemented or partial calls made", ""]
    gap_rows = gaps(report)
    if gap_rows:
        out += ["| syscall | support | calls | errors | note |", "|---|---|---:|---|---|"]
        for name, r in gap_rows:
            out.append(f"| {_md(name)} | {r.get('support')} | {r['calls']} | {_md(_errors(r.get('errors', {})))} "
                       f"| {_md(r.get('note', ''))} |")
    else:
        out.append("None: every call the workload made is fully supported.")
    out += ["", "## All syscalls", "",
            "| syscall | nr | support | calls | ok | errors | no return | unfinished | sentry ms | shapes |",
            "|---|---:|---|---:|---:|---|---:|---:|---:|---|"]
    for name, r in by_calls(report):
        out.append(f"| {_md(name)} | {r.get('nr')} | {r.get('support')} | {_md(_calls(r))} | {r.get('ok', 0)} "
                   f"| {_md(_errors(r.get('errors', {})))} | {r.get('noreturn', 0)} | {r.get('unfinished', 0)} "
                   f"| {_ms(r.get('sentry_ns', 0))} | {_md(_shapes(r.get('shapes', {})))} |")
    if any(r.get("by_loader") for r in report["syscalls"].values()):
        out += ["", "The first process's execve is done by the sentry's loader, not by a guest syscall; "
                "it is counted as the workload's first call."]
    return "\n".join(out) + "\n"


# --- HTML ---

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 20px 0 6px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }
th { background: #f2f2f2; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 28px; align-items: flex-start; }
.chart h2 { margin-top: 8px; } .legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 11px; height: 11px; margin-right: 4px; vertical-align: -1px; }
.full { color: #2e7d32; } .partial { color: #b26a00; } .refused { color: #6a1b9a; }
.unimplemented { color: #c62828; }
code { font-size: 13px; }
"""

# Draws the charts as SVG from the report embedded in the page.
SCRIPT = r"""
(function () {
  const report = JSON.parse(document.getElementById("coverage-data").textContent);
  const COLORS = {full: "#2e7d32", partial: "#f9a825", refused: "#8e24aa", unimplemented: "#c62828"};
  const ERR = "#6d4c41", NS = "http://www.w3.org/2000/svg", TOP = 30;
  function el(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function tip(e, text) { e.appendChild(el("title", {}, text)); return e; }
  const rows = Object.entries(report.syscalls).map(([name, r]) => ({
    name, support: r.support || "unimplemented", calls: r.calls,
    failed: Object.values(r.errors || {}).reduce((a, b) => a + b, 0), ns: r.sentry_ns || 0}));
  // horizontal bars: one per row, length by value(row); part(row) drawn over it darker
  function bars(id, all, value, part, fmt) {
    const host = document.getElementById(id), list = all.slice(0, TOP);
    const W = 470, LBL = 130, H = 15, max = Math.max(1, ...list.map(value));
    const svg = el("svg", {width: W, height: list.length * H + 6, class: "chart-svg"});
    list.forEach((r, i) => {
      const y = i * H + 2, w = Math.max(2, (W - LBL - 70) * value(r) / max);
      svg.appendChild(el("text", {x: LBL - 4, y: y + 11, "text-anchor": "end", "font-size": 11}, r.name));
      svg.appendChild(tip(el("rect", {class: "bar", x: LBL, y: y, width: w, height: H - 3,
        fill: COLORS[r.support] || "#777", "data-value": value(r)}), `${r.name}: ${fmt(value(r))} (${r.support})`));
      if (part && part(r) > 0)
        svg.appendChild(tip(el("rect", {class: "bar-part", x: LBL, y: y + H - 7, height: 4,
          width: Math.max(1, w * part(r) / value(r)), fill: ERR}), `${r.name}: ${part(r)} failed`));
      svg.appendChild(el("text", {x: LBL + w + 4, y: y + 11, "font-size": 11}, fmt(value(r))));
    });
    host.appendChild(svg);
    if (!list.length) host.appendChild(document.createTextNode("no data"));
    if (all.length > TOP)
      host.appendChild(document.createTextNode(`and ${all.length - TOP} more (see the table below)`));
  }
  const byCalls = rows.filter(r => r.calls > 0).sort((a, b) => b.calls - a.calls || (a.name < b.name ? -1 : 1));
  const byTime = rows.filter(r => r.ns > 0).sort((a, b) => b.ns - a.ns || (a.name < b.name ? -1 : 1));
  bars("chart-calls", byCalls, r => r.calls, r => r.failed, v => String(v));
  bars("chart-time", byTime, r => r.ns, null, v => (v / 1e6).toFixed(3) + " ms");
  // support levels: a stacked bar of distinct syscalls and one of calls
  const host = document.getElementById("chart-support");
  const W = 470, LBL = 130, svg = el("svg", {width: W, height: 56, class: "chart-svg"});
  [["syscalls", r => 1], ["calls", r => r.calls]].forEach(([label, weight], i) => {
    const y = i * 26 + 4, sum = Math.max(1, rows.reduce((a, r) => a + weight(r), 0));
    svg.appendChild(el("text", {x: LBL - 4, y: y + 14, "text-anchor": "end", "font-size": 11}, label));
    let x = LBL;
    for (const lv of ["full", "partial", "refused", "unimplemented"]) {
      const n = rows.filter(r => r.support === lv).reduce((a, r) => a + weight(r), 0);
      if (!n) continue;
      const w = (W - LBL - 10) * n / sum;
      svg.appendChild(tip(el("rect", {class: "bar", x: x, y: y, width: Math.max(1, w), height: 20,
        fill: COLORS[lv], "data-value": n}), `${lv}: ${n} ${label}`));
      if (w > 28) svg.appendChild(el("text", {x: x + 4, y: y + 14, "font-size": 11, fill: "#fff"}, String(n)));
      x += w;
    }
  });
  host.appendChild(svg);
})();
"""


def _h(text) -> str:
    return html.escape(str(text))


def _embed(report: dict) -> str:
    """The report as JSON that cannot end the script element it sits in."""
    return json.dumps(report).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def to_html(report: dict) -> str:
    t = totals(report)
    title = _title(report)
    out = ["<!DOCTYPE html>", "<html lang=en><head><meta charset=utf-8>",
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
           'script-src \'unsafe-inline\'; style-src \'unsafe-inline\'">',
           f"<title>{_h(title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{_h(title)}</h1>",
           f"<p>{t['syscalls']} distinct syscalls, {t['calls']} calls, {t['failed']} failed; "
           f"{_ms(t['sentry_ns'])} ms in the sentry's handlers. "]
    out.append("; ".join(f"<span class={lv}>{lv}</span>: {t['levels'][lv]['syscalls']} syscalls, "
                         f"{t['levels'][lv]['calls']} calls" for lv in LEVELS) + ".</p>")
    out += ['<div class=legend><span><i style="background:#2e7d32"></i>full</span>'
            '<span><i style="background:#f9a825"></i>partial</span>'
            '<span><i style="background:#8e24aa"></i>refused</span>'
            '<span><i style="background:#c62828"></i>unimplemented</span>'
            '<span><i style="background:#6d4c41"></i>failed calls</span></div>',
            '<div class=charts>',
            '<div class=chart><h2>Support levels</h2><div id=chart-support></div>',
            '<h2>Calls per syscall</h2><div id=chart-calls></div></div>',
            '<div class=chart><h2>Time in the sentry per syscall</h2><div id=chart-time></div></div>',
            '</div>', "<h2>Runs</h2>", "<table><tr><th>#</th><th>command</th><th>outcome</th></tr>"]
    for i, run in enumerate(report["runs"], 1):
        out.append(f"<tr><td class=n>{i}</td><td><code>{_h(command(run))}</code></td><td>{_h(outcome(run))}</td></tr>")
    out += ["</table>", "<h2>Unimplemented or partial calls made</h2>"]
    gap_rows = gaps(report)
    if gap_rows:
        out.append("<table><tr><th>syscall</th><th>support</th><th>calls</th><th>errors</th><th>note</th></tr>")
        for name, r in gap_rows:
            lv = r.get("support", "")
            out.append(f"<tr><td>{_h(name)}</td><td class={_h(lv)}>{_h(lv)}</td><td class=n>{r['calls']}</td>"
                       f"<td>{_h(_errors(r.get('errors', {})))}</td><td>{_h(r.get('note', ''))}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>None: every call the workload made is fully supported.</p>")
    out += ["<h2>All syscalls</h2>",
            "<table id=syscalls><tr><th>syscall</th><th>nr</th><th>support</th><th>calls</th><th>ok</th>"
            "<th>errors</th><th>no return</th><th>unfinished</th><th>sentry ms</th><th>shapes</th></tr>"]
    for name, r in by_calls(report):
        lv = r.get("support", "")
        out.append(f"<tr><td>{_h(name)}</td><td class=n>{_h(r.get('nr'))}</td><td class={_h(lv)}>{_h(lv)}</td>"
                   f"<td class=n>{_h(_calls(r))}</td><td class=n>{r.get('ok', 0)}</td>"
                   f"<td>{_h(_errors(r.get('errors', {})))}</td><td class=n>{r.get('noreturn', 0)}</td>"
                   f"<td class=n>{r.get('unfinished', 0)}</td><td class=n>{_ms(r.get('sentry_ns', 0))}</td>"
                   f"<td>{_h(_shapes(r.get('shapes', {})))}</td></tr>")
    out.append("</table>")
    if any(r.get("by_loader") for r in report["syscalls"].values()):
        out.append("<p>The first process's execve is done by the sentry's loader, not by a guest syscall; "
                   "it is counted as the workload's first call.</p>")
    out += [f'<script type="application/json" id=coverage-data>{_embed(report)}</script>',
            f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(out) + "\n"
