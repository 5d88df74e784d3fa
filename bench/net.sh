#!/usr/bin/env bash
# Tap throughput: iperf3 -s inside `pyrunsc do --network=sandbox`, the host
# kernel's iperf3 -c in the sandbox's network namespace (host -> guest, and
# -R for guest -> host). Prints one line per direction and run, in Mbit/s.
#   REPS=3 SECS=5 bench/net.sh
set -eu
reps=${REPS:-3} secs=${SECS:-5}
command -v iperf3 >/dev/null || { echo "needs iperf3" >&2; exit 2; }
for dir in "" "-R"; do
  for i in $(seq "$reps"); do
    pyrunsc do --network=sandbox -- /usr/bin/iperf3 -s -1 >/dev/null 2>&1 &
    pid=$!
    ns=""
    for _ in $(seq 100); do
      ns=$(ip netns list | awk -v p="pyrunsc-$pid-" 'index($1, p) == 1 {print $1}')
      [ -n "$ns" ] && break
      sleep 0.1
    done
    [ -n "$ns" ] || { kill "$pid"; echo "no namespace" >&2; exit 1; }
    bps=""
    for _ in $(seq 50); do
      if out=$(ip netns exec "$ns" iperf3 -c 10.0.2.15 -t "$secs" $dir -f m 2>/dev/null); then
        bps=$(printf '%s\n' "$out" | awk '/receiver/ {print $7}')
        break
      fi
      sleep 0.2
    done
    wait "$pid" || true
    printf 'tap_%s %s Mbit/s\n' "$([ -z "$dir" ] && echo host_to_guest || echo guest_to_host)" "${bps:-failed}"
  done
done
