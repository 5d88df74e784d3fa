"""The pyrunsc command line."""
from __future__ import annotations

import sys

import click

from .network import DEFAULT_ADDR, DEFAULT_GATEWAY, NetworkConfig, parse_publish
from .oci import commands as oci_commands
from .oci import info as oci_info
from .oci.runtime import Runtime
from .oci.options import RuntimeOptions
from .oci.state import DEFAULT_ROOT
from . import syscalls_cli
from . import coverage_cli
from . import platforms_cli


KVM_COMMANDS = ("do", "coverage", "syscalls", "platforms")  # the commands --platform=kvm applies to


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", "--version", "-v", message="pyrunsc version %(version)s\nspec: 1.0.2")
@click.option("--root", "state_root", default=DEFAULT_ROOT, show_default=True,
              help="OCI runtime: where containers' state lives.")
@click.option("--log", "log", default=None, help="OCI runtime: append errors to this file.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--debug", is_flag=True, help="Accepted for runc compatibility.")
@click.option("--systemd-cgroup", is_flag=True, help="Accepted for runc compatibility (no host cgroups are made).")
@click.option("--rootless", default=None, hidden=True)
@click.option("--criu", default=None, hidden=True)
@click.option("--platform", "platform", type=click.Choice(["ptrace", "kvm"]), default="ptrace", show_default=True,
              help="How guest code runs (kvm: `do` and `coverage` only; one process, one thread).")
@click.option("--network", "network", default="none", show_default=True, metavar="none|sandbox|host",
              help="OCI runtime: the containers' network (see `do --network`).")
@click.option("--strace", "strace", is_flag=True, help="OCI runtime: trace the containers' syscalls.")
@click.option("--strace-syscalls", "strace_syscalls", default=None, metavar="NAME,...",
              callback=lambda ctx, param, v: _strace_names(v),
              help="OCI runtime: trace only these syscalls (implies --strace).")
@click.option("--strace-log-size", "strace_log_size", type=click.IntRange(min=0), default=1024, show_default=True,
              help="OCI runtime: bytes of each string or buffer strace shows.")
@click.option("--debug-log", "debug_log", default=None, help="OCI runtime: the sentry's log file.")
@click.option("--overlay", "overlay", type=click.Choice(["tmpfs", "none"]), default="tmpfs", show_default=True,
              help="OCI runtime: tmpfs keeps writes to the root in the sandbox; none writes through.")
@click.pass_context
def main(ctx, state_root, log, log_format, debug, systemd_cgroup, rootless, criu, platform, network, strace,
         strace_syscalls, strace_log_size, debug_log, overlay):
    """pyrunsc: run untrusted Linux programs under a Python application kernel."""
    if platform == "kvm" and ctx.invoked_subcommand not in KVM_COMMANDS:
        raise click.UsageError(f"--platform=kvm runs `do` and `coverage` only, not `{ctx.invoked_subcommand}` "
                               "(containers need fork and exec, which the kvm platform lacks)")
    opts = RuntimeOptions(platform=platform, network=network, strace=strace, debug_log=debug_log, overlay=overlay,
                          strace_syscalls=strace_syscalls, strace_log_size=strace_log_size)
    ctx.obj = Runtime(state_root, log, log_format, opts)


def _strace_names(text):
    """--strace-syscalls: the names checked (unknown: exit 2 naming close ones)."""
    if text is None:
        return None
    from sentry.strace import syscall_numbers
    try:
        syscall_numbers(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--strace-syscalls") from None
    return [n.strip() for n in text.split(",") if n.strip()]


def _inject_specs(values):
    """--inject: each parsed (a bad one: exit 2 saying why)."""
    if not values:
        return []
    from .inject import parse
    try:
        return [parse(v) for v in values]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--inject") from None


def _parsed(name):
    """A click callback running pyrunsc.sandbox's parser `name` on each
    value (ValueError: exit 2). Imported when used: the sandbox module
    brings the whole sentry, which the OCI commands mostly do without."""
    def callback(ctx, param, values):
        from . import sandbox
        try:
            return [getattr(sandbox, name)(v) for v in values]
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return callback


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--root", default="/", show_default=True, type=click.Path(exists=True, file_okay=False),
              help="Host directory served as the sandbox root (read-only; see --overlay).")
@click.option("--overlay", type=click.Choice(["tmpfs", "none"]), default=None,
              help="tmpfs (default, unless the global --overlay says otherwise): writes to the root stay in "
                   "the sandbox's memory; none: the root is served read-write and writes reach the host directory.")
@click.option("--mount", "mounts", multiple=True, metavar="HOST:GUEST[:ro|rw]",
              callback=_parsed("parse_bind"),
              help="Bind a host directory or file at GUEST (default ro; repeatable). A missing GUEST "
                   "is made inside the sandbox, never on the host.")
@click.option("--tmpfs", "tmpfs", multiple=True, metavar="GUEST[:OPTS]", callback=_parsed("parse_tmpfs_spec"),
              help="Mount a tmpfs at GUEST; OPTS like mount -o: size=64m,nr_inodes=1k,mode=755,noexec "
                   "(repeatable; default nosuid,nodev, half of RAM).")
@click.option("--cwd", default=None, help="Working directory inside the sandbox.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="Set an environment variable (repeatable).")
@click.option("--strace", is_flag=True,
              help="Print an entry and an exit line per guest syscall, arguments decoded (stderr or --debug-log).")
@click.option("--strace-syscalls", default=None, metavar="NAME,...", callback=lambda ctx, param, v: _strace_names(v),
              help="Trace only these syscalls (implies --strace).")
@click.option("--strace-log-size", type=click.IntRange(min=0), default=None, metavar="N",
              help="Bytes of each string or buffer strace shows (default 1024).")
@click.option("--debug-log", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the strace and sentry diagnostics (unimplemented syscalls) here.")
@click.option("--inject", "inject", multiple=True, metavar="SYSCALL[,...]:error=E|retval=N[:when=N|N+|N+S|N..M]",
              callback=lambda ctx, param, v: _inject_specs(v),
              help="Fault injection as strace's --inject: the chosen calls return the error or value "
                   "without running (e.g. write:ENOSPC:when=3; repeatable; see pyrunsc/inject.py).")
@click.option("--console/--no-console", default=True, show_default=True,
              help="When stdin is a terminal, give the guest a sandbox pty relayed to it "
                   "(its job control and ^C stay inside); --no-console passes the terminal through.")
@click.option("--network", "network", default=None, metavar="none|sandbox|host",
              help="none: loopback only; sandbox: a tap device in a network namespace made for the "
                   "sandbox; host: sockets proxied to the host's (weaker isolation).")
@click.option("-p", "--publish", "publish", multiple=True, metavar="[IP:]HOSTPORT:GUESTPORT[/tcp]",
              help="Forward host TCP connections to a guest port (repeatable; IP default 0.0.0.0).")
@click.option("--dns", "dns", multiple=True, metavar="IP",
              help="A nameserver for the sandbox's /etc/resolv.conf (repeatable; --network=sandbox "
                   "defaults to the gateway).")
@click.option("--net-addr", default=None, metavar="ADDR/PREFIX",
              help=f"--network=sandbox: the guest's address (default {DEFAULT_ADDR}).")
@click.option("--net-gw", default=None, metavar="ADDR",
              help=f"--network=sandbox: the gateway, the namespace's side of the tap (default {DEFAULT_GATEWAY}).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def do(rt, root, overlay, mounts, tmpfs, cwd, env, strace, strace_syscalls, strace_log_size, debug_log, inject,
       console, network, publish, dns, net_addr, net_gw, command):
    """Run COMMAND in a sandbox, like `runsc do`."""
    from .sandbox import Sandbox, SandboxError
    cfg = sandbox_config(rt, root=root, overlay=overlay, mounts=mounts, tmpfs=tmpfs, cwd=cwd, env=env,
                         strace=strace, strace_syscalls=strace_syscalls, strace_log_size=strace_log_size,
                         debug_log=debug_log, inject=inject, console=console, network=network,
                         publish=publish, dns=dns, net_addr=net_addr, net_gw=net_gw)
    try:
        code = Sandbox(cfg).run(list(command))
    except SandboxError as e:
        click.echo(str(e), err=True)
        code = e.code
    sys.exit(code)


def sandbox_config(rt, *, root, overlay, mounts, tmpfs, cwd, env, strace, debug_log, console, network,
                   publish, dns, net_addr, net_gw, strace_syscalls=None, strace_log_size=None, inject=()):
    """A sandbox Config from do's options (also coverage's); the global
    sandbox flags (pyrunsc --strace do ...) apply where these are not given."""
    from .sandbox import Config
    g = rt.opts
    overlay, network = overlay or g.overlay, network or g.network
    strace, debug_log = strace or g.strace, debug_log or g.debug_log
    strace_syscalls = strace_syscalls or g.strace_syscalls
    strace_log_size = g.strace_log_size if strace_log_size is None else strace_log_size
    for e in env:
        if "=" not in e:
            raise click.BadParameter(f"{e!r} is not K=V", param_hint="--env")
    try:
        net = NetworkConfig(mode=network, publish=[parse_publish(p) for p in publish], dns=list(dns),
                            addr=net_addr, gateway=net_gw)
        net.validate()
    except ValueError as e:
        click.echo(f"pyrunsc: {e}", err=True)
        sys.exit(125)
    cfg = Config(root=root, cwd=cwd, strace=strace, strace_syscalls=strace_syscalls, strace_log_size=strace_log_size,
                 debug_log=debug_log, extra_env=list(env),
                 console=console, overlay=overlay == "tmpfs", mounts=mounts, tmpfs=tmpfs, network=net,
                 platform=g.platform)
    if inject:
        from sentry.syscall_hooks import SyscallHooks
        hooks = SyscallHooks()
        for spec in inject:
            spec.install(hooks)
        cfg.monitors.append(hooks)
    return cfg


main.add_command(syscalls_cli.syscalls)
main.add_command(platforms_cli.platforms)
oci_commands.register(main)
oci_info.register(main)  # spec, features, install, uninstall
coverage_cli.register(main)  # after do: the run form borrows do's options

if __name__ == "__main__":
    main()
