#!/usr/bin/env bash
# Container start-up: wall time of `docker run --rm --network=none IMG true`
# with runc, runsc (--platform=ptrace --network=none) and pyrunsc, REPS runs
# each (default 10), interleaved, after one warm-up run each; median and min
# in ms in one table. Starts its own dockerd (own roots under /var/tmp, via
# tests/integration/container_engines.py), imports a busybox image, and stops
# and removes everything afterwards. Needs root and docker.io.
#   bench/startup.sh
#   REPS=5 RUNTIMES="runc pyrunsc" bench/startup.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export REPS="${REPS:-10}" RUNTIMES="${RUNTIMES:-runc runsc pyrunsc}"
export OUT="${OUT:-$here/results/startup-$(date +%Y%m%d-%H%M%S).md}"
mkdir -p "$(dirname "$OUT")"
python3 - "$here/../tests/integration" <<'EOF' | tee "$OUT"
import os, statistics, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from container_engines import IMAGE, RUNSC, DockerDaemon, default_docker_runtimes, runtime_path

reps = int(os.environ["REPS"])
wanted = os.environ["RUNTIMES"].split()
runtimes = [r for r in wanted if r == "runc" or (r == "runsc" and os.path.exists(RUNSC))
            or (r not in ("runc", "runsc") and runtime_path(r))]
for r in sorted(set(wanted) - set(runtimes)):
    print(f"(skipping {r}: not installed)", file=sys.stderr)


def once(d, rt):
    t0 = time.monotonic()
    r = d.cmd("run", "--rm", "--network=none", "--runtime", rt, IMAGE, "true", timeout=300)
    ms = (time.monotonic() - t0) * 1000
    if r.returncode != 0:
        print(f"{rt}: exit {r.returncode}: {r.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return ms


with DockerDaemon(default_docker_runtimes(runtimes)).start() as d:
    d.import_image()
    times = {rt: [] for rt in runtimes}
    for rt in runtimes:          # warm-up: page cache, image layers, .pyc files
        once(d, rt)
    for _ in range(reps):
        for rt in runtimes:      # interleaved so drifting load hits all alike
            ms = once(d, rt)
            if ms is not None:
                times[rt].append(ms)

base = statistics.median(times["runc"]) if times.get("runc") else None
print(f"docker run --rm --network=none {IMAGE} true; {reps} runs each, "
      f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}\n")
print("| runtime | median ms | min ms | runs ok | median vs runc |")
print("|---------|-----------|--------|---------|----------------|")
for rt in runtimes:
    t = times[rt]
    if not t:
        print(f"| {rt} | n/a | n/a | 0/{reps} | |")
        continue
    med = statistics.median(t)
    ratio = f"{med / base:.1f}x" if base else ""
    print(f"| {rt} | {med:.0f} | {min(t):.0f} | {len(t)}/{reps} | {ratio} |")
EOF
