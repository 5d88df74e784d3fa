"""`pyrunsc syscalls`: the syscall table as a report (table, csv, json,
markdown, html) and its comparison with another runtime's table.

The rows come from sentry.syscalls.table with every handler module loaded,
so a call's level is what its registered handler gives (table.level).
The machine formats speak gVisor's words: json has the shape of
`runsc help syscalls -format json` and csv its columns (plus Man), so
the same --compare reads a runsc table and one of ours.
"""
from __future__ import annotations

import csv
import errno
import html
import io
import json
import os
from dataclasses import dataclass

from sentry.syscalls import table

FORMATS = ("table", "csv", "json", "markdown", "html")
MAN_URL = "https://man7.org/linux/man-pages/man2/{}.2.html"
MAN_DIR = "/usr/share/man/man2"   # the installed man-pages say which calls have a page
SUPPORTED = (table.FULL, table.PARTIAL)

# Our levels in gVisor's words: a refusal is "Unimplemented" there too
# (runsc lists e.g. kexec_load as Unimplemented, returning EPERM).
GVISOR_SUPPORT = {table.FULL: "Full Support", table.PARTIAL: "Partial Support",
                  table.REFUSED: "Unimplemented", table.UNIMPLEMENTED: "Unimplemented"}
GVISOR_SUPPORTED = ("Full Support", "Partial Support")


@dataclass(frozen=True)
class Row:
    nr: int
    name: str
    level: str       # one of table.FULL, PARTIAL, REFUSED, UNIMPLEMENTED
    note: str
    man: str         # a man7.org URL
    prototype: str   # from python-ptrace, "" where it has none


def _man_pages() -> set | None:
    """Names with an installed section-2 page (None: no man-pages here)."""
    try:
        files = os.listdir(MAN_DIR)
    except OSError:
        return None
    return {f.split(".2", 1)[0] for f in files if ".2" in f}


def man_url(name: str, pages: set | None) -> str:
    """The call's own page, or syscalls(2) for a call without one (when
    the man-pages are not installed every call gets its own page)."""
    return MAN_URL.format(name if pages is None or name in pages else "syscalls")


def _prototypes() -> dict:
    """name -> "long read(unsigned int fd, char *buf, size_t count)"."""
    from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES
    out = {}
    for name, (ret, params) in SYSCALL_PROTOTYPES.items():
        args = ", ".join(t + ("" if t.endswith("*") else " ") + n for t, n in params)
        out[name] = f"{ret} {name}({args})"
    return out


def rows() -> list[Row]:
    """Every syscall number of the table, in order, levels from the handlers."""
    table.handlers()
    pages, protos = _man_pages(), _prototypes()
    out = []
    for nr in sorted(table.ENTRIES):
        e = table.ENTRIES[nr]
        level, note = table.level(e), e.note
        if level == table.REFUSED:
            code = errno.errorcode.get(e.handler.refuses, str(e.handler.refuses))
            note = f"returns {code}" + (f": {note}" if note else "")
        out.append(Row(nr, e.name, level, note, man_url(e.name, pages), protos.get(e.name, "")))
    return out


def summary(rs: list[Row]) -> str:
    """The header line: how much of the table is implemented."""
    n = len(rs)
    m = sum(r.level in SUPPORTED for r in rs)
    refused = sum(r.level == table.REFUSED for r in rs)
    missing = sum(r.level == table.UNIMPLEMENTED for r in rs)
    return (f"Of {n} syscalls, {m} have a full or partial implementation "
            f"({refused} more are refused with an error, {missing} are unimplemented).")


def render(fmt: str, shown: list[Row], everything: list[Row] | None = None) -> str:
    """`shown` in format `fmt`; the header counts `everything` (default: shown)."""
    head = summary(everything if everything is not None else shown)
    return {"table": _table, "csv": _csv, "json": _json, "markdown": _markdown, "html": _html}[fmt](shown, head)


def _table(rs, head):
    width = max([len(r.name) for r in rs] + [4])
    man = max([len(r.man) for r in rs] + [3])
    lines = [head, f"{'NUM':<4}  {'NAME':<{width}}  {'SUPPORT':<13}  {'MAN':<{man}}  NOTE"]
    lines += [f"{r.nr:<4}  {r.name:<{width}}  {r.level:<13}  {r.man:<{man}}  {r.note}".rstrip() for r in rs]
    return "\n".join(lines) + "\n"


def _csv(rs, head):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["OS", "Arch", "Num", "Name", "Support", "Note", "Man"])
    for r in rs:
        w.writerow(["linux", "amd64", r.nr, r.name, GVISOR_SUPPORT[r.level], r.note, r.man])
    return buf.getvalue()


def _json(rs, head):
    calls = {str(r.nr): {"name": r.name, "support": GVISOR_SUPPORT[r.level], "note": r.note, "urls": [r.man]}
             for r in rs}
    return json.dumps({"linux": {"amd64": {"syscalls": calls}}}, indent=2) + "\n"


def _markdown(rs, head):
    def cell(s):
        return " ".join(s.splitlines()).replace("\\", "\\\\").replace("|", "\\|")
    lines = ["# pyrunsc syscalls (linux/amd64)", "", head, "",
             "| # | Name | Support | Notes |", "|--:|------|---------|-------|"]
    lines += [f"| {r.nr} | [{cell(r.name)}]({r.man}) | {r.level} | {cell(r.note)} |" for r in rs]
    return "\n".join(lines) + "\n"


_STYLE = """body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
td.full{background:#dfd}td.partial{background:#ffd}td.refused{background:#fdd}td.unimplemented{background:#eee}
code{font-size:90%}"""


def _html(rs, head):
    e = html.escape
    body = "\n".join(
        f'<tr id="{e(r.name)}"><td>{r.nr}</td><td><a href="{e(r.man)}">{e(r.name)}</a></td>'
        f'<td class="{r.level}">{r.level}</td><td>{e(r.note)}</td><td><code>{e(r.prototype)}</code></td></tr>'
        for r in rs)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>pyrunsc syscalls (linux/amd64)</title><style>{_STYLE}</style></head>\n<body>"
            f"<h1>pyrunsc syscalls (linux/amd64)</h1>\n<p>{e(head)}</p>\n<table><thead><tr><th>#</th><th>Name</th>"
            f"<th>Support</th><th>Notes</th><th>Prototype</th></tr></thead><tbody>\n{body}\n"
            "</tbody></table></body></html>\n")


# --- comparison --------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One entry of a table in gVisor's words."""
    name: str
    support: str     # "Full Support", "Partial Support", "Unimplemented", ...
    note: str


def as_calls(rs: list[Row]) -> dict[int, Call]:
    """Our rows as --compare reads them (what our json says)."""
    return {r.nr: Call(r.name, GVISOR_SUPPORT[r.level], r.note) for r in rs}


def load_calls(path: str) -> dict[int, Call]:
    """The linux/amd64 table of a `runsc help syscalls -format json` file
    (ValueError with a one-line reason for anything else)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    try:
        calls = doc["linux"]["amd64"]["syscalls"]
        return {int(nr): Call(str(c["name"]), str(c["support"]), str(c.get("note", "")))
                for nr, c in calls.items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError(f"{path}: not a syscall table in gVisor's JSON format "
                         "(want linux.amd64.syscalls.NUM.{name,support,note})") from None


@dataclass
class Comparison:
    ours: dict[int, Call]
    theirs: dict[int, Call]
    label: str

    def supported(self, calls) -> set[int]:
        return {nr for nr, c in calls.items() if c.support in GVISOR_SUPPORTED}

    @property
    def only_theirs(self) -> list[int]:
        return sorted(self.supported(self.theirs) - self.supported(self.ours))

    @property
    def only_ours(self) -> list[int]:
        return sorted(self.supported(self.ours) - self.supported(self.theirs))

    @property
    def renamed(self) -> list[int]:
        return sorted(nr for nr in self.ours.keys() & self.theirs.keys()
                      if self.ours[nr].name != self.theirs[nr].name)

    def totals(self, who: str, calls) -> str:
        return f"{who}: of {len(calls)} syscalls, {len(self.supported(calls))} have a full or partial implementation"

    def render(self) -> str:
        lines = [self.totals("pyrunsc", self.ours), self.totals(self.label, self.theirs), ""]
        self._section(lines, f"Supported by {self.label}, not by pyrunsc", self.only_theirs, self.theirs)
        self._section(lines, f"Supported by pyrunsc, not by {self.label}", self.only_ours, self.ours)
        if self.renamed:
            lines.append(f"Same number, different name: {len(self.renamed)}")
            lines += [f"  {nr:<4}  pyrunsc {self.ours[nr].name}, {self.label} {self.theirs[nr].name}"
                      for nr in self.renamed]
        if not (self.only_theirs or self.only_ours or self.renamed):
            lines.append("No differences.")
        return "\n".join(lines).rstrip("\n") + "\n"

    def _section(self, lines, title, nrs, notes_from):
        lines.append(f"{title}: {len(nrs)}")
        if nrs:
            width = max(len(self._name(nr)) for nr in nrs)
            lines.append(f"  {'NUM':<4}  {'NAME':<{width}}  {'PYRUNSC':<15}  {self.label.upper():<15}  NOTE")
        for nr in nrs:
            lines.append(f"  {nr:<4}  {self._name(nr):<{width}}  {self._support(self.ours, nr):<15}  "
                         f"{self._support(self.theirs, nr):<15}  {notes_from[nr].note}".rstrip())
        lines.append("")

    def _name(self, nr):
        c = self.ours.get(nr) or self.theirs[nr]
        return c.name

    @staticmethod
    def _support(calls, nr):
        return calls[nr].support if nr in calls else "(not listed)"
