#!/usr/bin/env bash
# The C SYSEMU floor (the kit's floor/sysemu_floor.c) beside pyrunsc on the
# same getpid benchmark, pinned to one CPU, REPS runs each (medians are what
# the closing notes quote).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kit=${BENCH_KIT:-$here/../../shared/bench}
[ -d "$kit" ] || kit=$here/../../../shared/bench
work=$(mktemp -d /var/tmp/pyrunsc-floor.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/sysemu_floor" "$kit/floor/sysemu_floor.c"
gcc -O2 -static -o "$work/getpid" "$kit/micro/getpid.c" -I"$kit/micro"
N=${N:-200000} REPS=${REPS:-5} CPU=${CPU:-0}
for i in $(seq "$REPS"); do
  echo "C-floor $(taskset -c "$CPU" "$work/sysemu_floor" "$work/getpid" "$N" 2>/dev/null)"
  echo "pyrunsc $(taskset -c "$CPU" pyrunsc do -- "$work/getpid" "$N")"
done
