#!/usr/bin/env bash
# Our own micro benchmarks (bench/micro/*.c; the shared kit has no futex
# row) in the kit's columns: native, runsc --platform=ptrace, pyrunsc, all
# pinned, median of REPS runs. Output lines follow the kit's format.
#   bench/extra.sh                      # futex ping-pong, REPS=5
#   N=20000 COLS="native pyrunsc" bench/extra.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
COLS=${COLS:-native runsc pyrunsc} REPS=${REPS:-5} PIN=${PIN:-0} N=${N:-20000}
bin=${BENCH_BIN:-/var/tmp/pyrunsc-bench-extra}
mkdir -p "$bin"
gcc -O2 -static -pthread -o "$bin/futex" "$here/micro/futex.c"
declare -A PREFIX=(
  [native]=""
  [runsc]="runsc --platform=ptrace --network=none do"
  [pyrunsc]="pyrunsc do --"
)
printf '%-10s %-6s' benchmark unit
for c in $COLS; do printf ' %18s' "$c"; done; echo
base=""
printf '%-10s %-6s' futex_rt rt/s
for c in $COLS; do
  vals=()
  for _ in $(seq "$REPS"); do
    out=$(timeout -k 5 120 taskset -c "$PIN" ${PREFIX[$c]} "$bin/futex" rt "$N" 2>/dev/null) || true
    vals+=("$(echo "$out" | awk '$1=="futex_rt"{print $4}')")
  done
  med=$(printf '%s\n' "${vals[@]}" | grep . | sort -g | awk '{a[NR]=$1} END{if(NR) print a[int((NR+1)/2)]}')
  [ -z "$base" ] && base=$med
  if [ "$c" = native ] || [ -z "$med" ]; then printf ' %18s' "${med:-fail}"
  else printf ' %18s' "$med ($(awk -v b="$base" -v v="$med" 'BEGIN{printf "%.1fx", b/v}'))"; fi
done; echo
