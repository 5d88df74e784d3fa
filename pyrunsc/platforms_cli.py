"""`pyrunsc platforms`: each platform, whether it can run on this host
(and why not), and what pyrunsc can run on it (see platforms/probe.py)."""
from __future__ import annotations

import json

import click

from platforms.probe import ProbeResult, probe_all

# What runs on each platform today: update as the KVM integration lands.
SUPPORTS = {
    "ptrace": "everything pyrunsc runs (the default platform)",
    "kvm": ("`--platform=kvm do`: one single-threaded process (static or simply dynamic programs); "
            "no fork, threads, execve or signal handlers yet (a clear error names what is missing)"),
}


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people; json carries every fact the probes measured.")
@click.option("--kvm-device", default="/dev/kvm", show_default=True, metavar="PATH",
              help="Probe this device for the kvm platform.")
def platforms(fmt, kvm_device):
    """List each platform, whether it is usable here and why not, and what it supports."""
    results = probe_all(kvm_device)
    click.echo(render_json(results) if fmt == "json" else render_table(results), nl=False)


def render_json(results: list[ProbeResult]) -> str:
    rows = [dict(r.as_dict(), supports=SUPPORTS.get(r.platform, "")) for r in results]
    return json.dumps({"platforms": rows}, indent=2) + "\n"


def render_table(results: list[ProbeResult]) -> str:
    """One row per platform, then its reason (when unusable) and the facts
    that matter most, indented under it."""
    width = max(len("PLATFORM"), *(len(r.platform) for r in results)) + 2
    lines = ["PLATFORM".ljust(width) + "USABLE  SUPPORTS"]
    for r in results:
        lines.append(r.platform.ljust(width) + ("yes" if r.usable else "no").ljust(8)
                     + SUPPORTS.get(r.platform, ""))
        details = ([] if r.usable else [f"why not: {r.reason}"]) + _summary(r)
        lines.extend(" " * width + d for d in details)
    return "\n".join(lines) + "\n"


def _summary(r: ProbeResult) -> list[str]:
    """The few facts worth a line in the table (json has them all)."""
    f = r.facts
    if r.platform == "kvm":
        host = [f.get("kvm_flavour", "")] + (["we run under a hypervisor"] if f.get("under_hypervisor") else [])
        out = ["host: " + ", ".join(h for h in host if h)] if any(host) else []
        if "api_version" in f and "sync_regs" in f:
            out.append(f"API {f['api_version']}; sync regs: {','.join(f['sync_regs']) or 'none'}; "
                       f"vCPUs: {f['vcpus_recommended']} recommended, {f['vcpus_max']} max"
                       + (f"; vCPU run area {f['vcpu_mmap_size']} bytes" if "vcpu_mmap_size" in f else ""))
        return out
    if r.platform == "ptrace" and f.get("live_check") == "ok":
        return ["checked live: user namespace, PTRACE_SYSEMU stop, process_vm_writev, /proc/pid/mem"]
    return []
