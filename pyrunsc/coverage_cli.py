"""`pyrunsc coverage`: run a workload in a sandbox and report every
syscall it made (`pyrunsc coverage [opts] -- CMD`), or merge reports
(`pyrunsc coverage merge A.json B.json ...`).

The run form takes `do`'s sandbox options: register() borrows them from
the `do` command itself, so both read them the same way.
"""
from __future__ import annotations

import sys
import time

import click

# do's options that make sense for a coverage run (the terminal ones too:
# an interactive workload may be what is measured)
SANDBOX_OPTIONS = ("root", "overlay", "mounts", "tmpfs", "cwd", "env", "strace", "debug_log", "console",
                   "network", "publish", "dns", "net_addr", "net_gw")


class CoverageGroup(click.Group):
    """`coverage merge ...` is a subcommand; anything else is the run form
    (`coverage [opts] -- CMD` is read as `coverage run [opts] -- CMD`)."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=CoverageGroup, subcommand_metavar="-- COMMAND... | merge REPORT...")
def coverage():
    """Report every syscall a workload makes: calls, argument shapes,
    errors, time in the sentry, support levels.

    \b
    pyrunsc coverage [--json F] [--html F] [--markdown F] [do's options] -- COMMAND...
    pyrunsc coverage merge A.json B.json ... [--json F] [--html F] [--markdown F]

    Without an output option the Markdown report goes to stderr (stdout is
    the workload's); F may be - for stdout. The exit status is the workload's.
    """


def _outputs(fn):
    for opt in reversed((
            click.option("--json", "json_out", metavar="F", help="Write the report as JSON (for `coverage merge`)."),
            click.option("--html", "html_out", metavar="F", help="Write a self-contained HTML page with charts."),
            click.option("--markdown", "md_out", metavar="F", help="Write the report as Markdown."))):
        fn = opt(fn)
    return fn


def _open_outputs(json_out, html_out, md_out, default):
    """The report's destinations, opened before the work so a bad path
    fails at once: [(render function name, file, close?)]."""
    wanted = [("to_json", json_out), ("to_html", html_out), ("to_markdown", md_out)]
    wanted = [(fn, path) for fn, path in wanted if path] or [("to_markdown", default)]
    outs = []
    for fn, path in wanted:
        if path in ("-", "<stderr>"):
            outs.append((fn, sys.stdout if path == "-" else sys.stderr, False))
            continue
        try:
            outs.append((fn, open(path, "w", encoding="utf-8"), True))
        except OSError as e:
            for _, f, close in outs:
                if close:
                    f.close()
            raise click.BadParameter(f"{path}: {e.strerror}", param_hint=f"--{fn[3:]}")
    return outs


def _write(report, outs) -> None:
    from . import coverage_report
    for fn, f, close in outs:
        try:
            f.write(getattr(coverage_report, fn)(report))
            f.flush()
        except OSError as e:
            click.echo(f"pyrunsc: coverage: writing the report: {e.strerror}", err=True)
        finally:
            if close:
                f.close()


@coverage.command("merge")
@_outputs
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
def merge_cmd(json_out, html_out, md_out, reports):
    """Merge coverage reports (JSON) of several runs into one."""
    from . import coverage_report
    try:
        loaded = [coverage_report.load(p) for p in reports]
    except coverage_report.ReportError as e:
        raise click.ClickException(str(e)) from None
    outs = _open_outputs(json_out, html_out, md_out, "-")
    _write(coverage_report.merge(loaded), outs)


def _run(rt, json_out, html_out, md_out, command, **sandbox_opts):
    """Run COMMAND in a sandbox and report every syscall it made."""
    import errno
    from sentry.coverage import CoverageRecorder
    from sentry.decode import name_of
    from . import coverage_report
    from .sandbox import Sandbox, SandboxError
    from .cli import sandbox_config
    cfg = sandbox_config(rt, **sandbox_opts)
    outs = _open_outputs(json_out, html_out, md_out, "<stderr>")
    recorder = CoverageRecorder()
    cfg.monitors.append(recorder)
    sb = Sandbox(cfg)
    code, error, start = None, None, time.monotonic_ns()
    try:
        code = sb.run(list(command))
        if sb.internal_error is not None:
            error = f"internal error in the sentry: {sb.internal_error}"
    except SandboxError as e:
        code, error = e.code, str(e)
        click.echo(error, err=True)
        if e.code in (126, 127):   # the loader could not start the program
            recorder.loader_exec(-(errno.EACCES if e.code == 126 else errno.ENOENT))
    except BaseException as e:   # interrupted, or pyrunsc itself failed: the report says so
        error = f"the run ended early: {type(e).__name__}: {e}".rstrip(": ")
        raise
    finally:
        wall_ns = time.monotonic_ns() - start
        kernel = sb.kernel
        signal, core = None, False
        if kernel is not None and kernel.init_tg is not None:
            recorder.loader_exec(0)
            status = kernel.exit_status
            if status & 0x7F and error is None:
                signal, core = name_of("signal", status & 0x7F), bool(status & 0x80)
        report = coverage_report.new_report(recorder.summary(), list(command), code, signal=signal,
                                            core_dumped=core, error=error, wall_ns=wall_ns)
        _write(report, outs)
    sys.exit(code)


def register(main: click.Group) -> None:
    """Add `coverage` to the pyrunsc command line, its run form taking
    do's sandbox options."""
    do = main.commands["do"]
    shared = {p.name: p for p in do.params if p.name in SANDBOX_OPTIONS}
    missing = set(SANDBOX_OPTIONS) - set(shared)
    if missing:
        raise RuntimeError(f"pyrunsc do has no option(s) {', '.join(sorted(missing))}")
    command_arg = next(p for p in do.params if p.name == "command")
    run = _outputs(click.pass_obj(_run))
    run = click.command("run", context_settings={"ignore_unknown_options": True,
                                                  "allow_interspersed_args": False})(run)
    run.params += [shared[n] for n in SANDBOX_OPTIONS] + [command_arg]
    coverage.add_command(run)
    main.add_command(coverage)
