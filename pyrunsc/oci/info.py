"""The commands that need no container: `spec` (a template config.json, as
`runc spec` writes), `features` (what this runtime supports, as JSON like
`runc features`), `install` and `uninstall` (Docker's daemon.json)."""
from __future__ import annotations

import json
import os
import sys

import click

from . import install as installer
from .spec import CAPABILITIES, HOOK_KINDS, NAMESPACE_TYPES, default_spec


def register(main: click.Group) -> None:
    for cmd in (spec, features, install, launcher, uninstall):
        main.add_command(cmd)


def _fail(msg: str):
    click.echo(f"pyrunsc: {msg}", err=True)
    sys.exit(1)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("pyrunsc")
    except Exception:   # not installed: running from a checkout
        return "unknown"


def mount_options() -> list[str]:
    """The mount flags assemble honours (ro, nosuid, ...) or accepts without
    effect (propagation, bind): what a config.json may put in options,
    besides a filesystem's own data words (size=, mode=)."""
    from ..sandbox import _FLAG_WORDS
    from .assemble import _IGNORED_OPTIONS
    return sorted(w.decode() for w in set(_FLAG_WORDS) | set(_IGNORED_OPTIONS))


def features_document() -> dict:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": list(HOOK_KINDS),
        "mountOptions": mount_options(),
        "linux": {
            # every namespace is the sandbox's own, whatever config.json asks
            "namespaces": sorted(NAMESPACE_TYPES),
            "capabilities": list(CAPABILITIES),
            # resources and seccomp/LSM profiles in config.json are not applied:
            # the sentry emulates every syscall and filters its own
            "cgroup": {"v1": False, "v2": False, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": False},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "io.github.pyrunsc.platform": "ptrace",
            "io.github.pyrunsc.version": _version(),
        },
    }


@click.command()
@click.option("--bundle", "-b", default=".", show_default=True, help="Where to write config.json.")
@click.option("--rootless", is_flag=True,
              help="Accepted for runc's sake: the sandbox needs no different spec.")
def spec(bundle, rootless):
    """Write a template config.json into the bundle, like `runc spec`."""
    path = os.path.join(bundle, "config.json")
    if os.path.lexists(path):
        _fail("File config.json exists. Remove it first")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w") as f:
            json.dump(default_spec(), f, indent="\t")
    except FileExistsError:
        _fail("File config.json exists. Remove it first")
    except OSError as e:
        _fail(f"{path}: {e.strerror or e}")


@click.command()
def features():
    """Print what this runtime supports (JSON, like `runc features`)."""
    click.echo(json.dumps(features_document(), indent=4))


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--runtime", default="pyrunsc", show_default=True, help="The runtime's name for Docker.")
@click.option("--config-file", default=installer.DEFAULT_CONFIG, show_default=True,
              help="Docker's daemon.json.")
@click.option("--launcher", "launcher_path", metavar="PATH",
              help="Where to write the program Docker runs (default: pyrunsc-oci beside pyrunsc).")
@click.argument("runtime_args", nargs=-1, type=click.UNPROCESSED)
def install(runtime, config_file, launcher_path, runtime_args):
    """Register pyrunsc in Docker's daemon.json; arguments after -- become
    its runtimeArgs (global flags given to every invocation). Docker is
    given a launcher that starts Python without site (see `launcher`)."""
    try:
        click.echo(installer.install(config_file, runtime, runtime_args=runtime_args, launcher=launcher_path))
    except installer.InstallError as e:
        _fail(str(e))


@click.command()
@click.argument("path", required=False)
def launcher(path):
    """Write the program a container engine should run as this runtime
    (default: pyrunsc-oci beside pyrunsc) and print its path: pyrunsc with
    Python started without site, whose .pth files cost every call tens of
    ms. For Podman: --runtime PATH."""
    try:
        click.echo(installer.write_program(path or installer.default_launcher_path(installer.executable())))
    except installer.InstallError as e:
        _fail(str(e))


@click.command()
@click.option("--runtime", default="pyrunsc", show_default=True, help="The runtime's name for Docker.")
@click.option("--config-file", default=installer.DEFAULT_CONFIG, show_default=True,
              help="Docker's daemon.json.")
def uninstall(runtime, config_file):
    """Remove the runtime from Docker's daemon.json."""
    try:
        click.echo(installer.uninstall(config_file, runtime))
    except installer.InstallError as e:
        _fail(str(e))
