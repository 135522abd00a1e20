#!/bin/bash
# Where a small echo's server CPU goes: user vs kernel time (from
# /proc/PID/stat, 10 ms ticks over 2 s) of herald on tokio, herald on its
# event loop (`--event-loop`) and fastwebsockets, each pinned to CPU 0 under
# `herald bench echo --connections 100 --size 20` on CPU 1. Run after
# scripts/bench has built everything. See bench/README.md.
set -u
cd "$(dirname "$0")/.."
i=0
for srv in "./target/release/herald echo --listen 127.0.0.1:1956X --no-deflate" "./target/release/herald echo --event-loop --listen 127.0.0.1:1956X --no-deflate" "bench/peers/target/release/fastwebsockets-echo 127.0.0.1:1956X"; do
  i=$((i+1)); s=${srv//X/$i}
  taskset -c 0 $s 2>/dev/null &
  pid=$!
  sleep 0.5
  taskset -c 1 ./target/release/herald bench echo --url ws://127.0.0.1:1956$i/ --connections 100 --size 20 --duration 5s --json >/tmp/b$i.json 2>/dev/null &
  bpid=$!
  sleep 2; a=$(awk '{print $14, $15}' /proc/$pid/stat); sleep 2; b=$(awk '{print $14, $15}' /proc/$pid/stat)
  wait $bpid
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  rate=$(python3 -c "import json;print(int(json.load(open('/tmp/b$i.json'))['messages_per_sec']))")
  echo "$s: utime/stime ticks over 2 s: $a -> $b ; msgs/s $rate"
done
