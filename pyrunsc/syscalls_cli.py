"""`pyrunsc syscalls`: print the syscall table, or compare it with another
runtime's (see pyrunsc/syscall_table_report.py)."""
from __future__ import annotations

import os

import click

from . import syscall_table_report as report


@click.command()
@click.option("--unimplemented", is_flag=True, help="Only list calls without a handler.")
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default=None,
              help="Output format (default table). json has the shape of `runsc help syscalls -format json`.")
@click.option("--output", "output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report to this file instead of stdout.")
@click.option("--compare", "compare", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Compare with another runtime's table in gVisor's JSON format "
                   "(`runsc help syscalls -format json`).")
def syscalls(unimplemented, fmt, output, compare):
    """List every x86-64 syscall with its support level."""
    rows = report.rows()
    if compare is not None:
        if fmt is not None or unimplemented:
            raise click.UsageError("--compare prints its own report: no --format or --unimplemented with it")
        try:
            theirs = report.load_calls(compare)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        label = os.path.splitext(os.path.basename(compare))[0] or "other"
        text = report.Comparison(report.as_calls(rows), theirs, label).render()
    else:
        shown = [r for r in rows if r.level == report.table.UNIMPLEMENTED] if unimplemented else rows
        text = report.render(fmt or "table", shown, rows)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise click.ClickException(f"{output}: {e.strerror}") from None
