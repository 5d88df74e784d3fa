#!/usr/bin/env bash
# getpid cost natively, under pyrunsc's ptrace platform and under its kvm
# platform, in one run, pinned to one CPU: REPS runs of each, then the
# medians (ns per call). Uses the shared kit's micro/getpid.c (static glibc,
# a raw syscall(SYS_getpid) loop).
#   bench/kvm_getpid.sh              # N=100000 REPS=5 CPU=0
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kit=${BENCH_KIT:-$here/../../shared/bench}
[ -d "$kit" ] || kit=$here/../../../shared/bench
work=$(mktemp -d /var/tmp/pyrunsc-kvmbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -O2 -static -o "$work/getpid" "$kit/micro/getpid.c" -I"$kit/micro"
N=${N:-100000} REPS=${REPS:-5} CPU=${CPU:-0}
PYRUNSC=${PYRUNSC:-pyrunsc}
command -v "$PYRUNSC" >/dev/null || PYRUNSC="python -m pyrunsc.cli"
cd /
ns() { awk '{for (i = 1; i < NF; i++) if ($(i+1) == "ns/op") print $i}'; }
for i in $(seq "$REPS"); do
  echo "native $(taskset -c "$CPU" "$work/getpid" $((N * 10)) | ns)"
  echo "ptrace $(taskset -c "$CPU" $PYRUNSC do -- "$work/getpid" "$N" | ns)"
  echo "kvm $(taskset -c "$CPU" $PYRUNSC --platform=kvm do -- "$work/getpid" "$N" | ns)"
done | tee "$work/all.txt"
echo "medians (ns per getpid, N=$N, REPS=$REPS):"
for col in native ptrace kvm; do
  awk -v c="$col" '$1 == c {print $2}' "$work/all.txt" | sort -g |
    awk -v c="$col" '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "  %-7s %10.1f\n", c, m}'
done
