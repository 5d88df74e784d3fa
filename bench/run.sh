#!/usr/bin/env bash
# Benchmarks pyrunsc beside native and gVisor's runsc (ptrace platform) with
# the shared kit (../shared/bench), all pinned to one CPU, in one run so the
# columns are comparable. Extra arguments are passed as environment, e.g.
#   bench/run.sh                       # getpid and stat rows
#   ROWS="getpid stat openread fork" REPS=5 bench/run.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kit=${BENCH_KIT:-$here/../../shared/bench}
[ -d "$kit" ] || kit=$here/../../../shared/bench
command -v pyrunsc >/dev/null || { echo "pyrunsc is not installed (pip install .)" >&2; exit 2; }
export SANDBOX_CMD="${SANDBOX_CMD:-pyrunsc do --}" SANDBOX_NAME=pyrunsc
export COLS="${COLS:-native runsc pyrunsc}" ROWS="${ROWS:-getpid stat}" PIN="${PIN:-0}" REPS="${REPS:-5}"
export OUT="${OUT:-$here/results/$(date +%Y%m%d-%H%M%S)}"
exec "$kit/run.sh"
