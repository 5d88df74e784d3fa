#!/usr/bin/env bash
# Benchmarks pyrunsc beside native and gVisor's runsc (ptrace platform) with
# the shared kit (../shared/bench), all pinned to one CPU, in one run so the
# columns are comparable. Rows the kit lacks (futex_rt) come from
# bench/extra.sh, run right after with the same columns. Extra arguments
# are passed as environment, e.g.
#   bench/run.sh                       # getpid and stat rows
#   ROWS="pipe_rt fork forkexec futex_rt" REPS=5 bench/run.sh   # issue 3's rows
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kit=${BENCH_KIT:-$here/../../shared/bench}
[ -d "$kit" ] || kit=$here/../../../shared/bench
command -v pyrunsc >/dev/null || { echo "pyrunsc is not installed (pip install .)" >&2; exit 2; }
export SANDBOX_CMD="${SANDBOX_CMD:-pyrunsc do --}" SANDBOX_NAME=pyrunsc
export COLS="${COLS:-native runsc pyrunsc}" PIN="${PIN:-0}" REPS="${REPS:-5}"
export OUT="${OUT:-$here/results/$(date +%Y%m%d-%H%M%S)}"
rows=${ROWS:-getpid stat}
mkdir -p "$OUT"
kit_rows=$(echo " $rows " | sed 's/ futex_rt / /g' | xargs)
if [ -n "$kit_rows" ]; then
  ROWS="$kit_rows" "$kit/run.sh"
fi
case " $rows " in
  *" futex_rt "*) "$here/extra.sh" | tee "$OUT/extra.txt" ;;
esac
