"""The pyrunsc command line."""
from __future__ import annotations

import sys

import click

from .sandbox import Config, Sandbox, SandboxError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """pyrunsc: run untrusted Linux programs under a Python application kernel."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--root", default="/", show_default=True, type=click.Path(exists=True, file_okay=False),
              help="Host directory served read-only as the sandbox root (writes stay in the sandbox).")
@click.option("--cwd", default=None, help="Working directory inside the sandbox.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="Set an environment variable (repeatable).")
@click.option("--strace", is_flag=True, help="Print one line per guest syscall.")
@click.option("--debug-log", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the strace and sentry diagnostics (unimplemented syscalls) here.")
@click.option("--console/--no-console", default=True, show_default=True,
              help="When stdin is a terminal, give the guest a sandbox pty relayed to it "
                   "(its job control and ^C stay inside); --no-console passes the terminal through.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def do(root, cwd, env, strace, debug_log, console, command):
    """Run COMMAND in a sandbox, like `runsc do`."""
    for e in env:
        if "=" not in e:
            raise click.BadParameter(f"{e!r} is not K=V", param_hint="--env")
    cfg = Config(root=root, cwd=cwd, strace=strace, debug_log=debug_log, extra_env=list(env),
                 console=console)
    try:
        code = Sandbox(cfg).run(list(command))
    except SandboxError as e:
        click.echo(str(e), err=True)
        code = e.code
    sys.exit(code)


@main.command()
@click.option("--unimplemented", is_flag=True, help="Only list calls without a handler.")
def syscalls(unimplemented):
    """List every x86-64 syscall with its support level."""
    from sentry.syscalls import table
    table.handlers()
    for nr in sorted(table.ENTRIES):
        e = table.ENTRIES[nr]
        if unimplemented and e.handler is not None:
            continue
        note = f"  ({e.note})" if e.note else ""
        click.echo(f"{nr:4d}  {e.name:24s} {e.support}{note}")


if __name__ == "__main__":
    main()
