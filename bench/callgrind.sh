#!/usr/bin/env bash
# Instructions per echoed message of the release echod, counted by callgrind
# (deterministic, whatever else the machine is doing): one connection
# (-n 50000, every message a loop turn of its own) and 50 connections
# (-n 200000, a batch of events per turn). Loopback only; each run is bounded
# by its message count. Usage: bench/callgrind.sh   (make callgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace -q
BIN=target/release
run() { # connections messages port
  local out pid ir
  out=$(mktemp /tmp/echod-callgrind.XXXXXX)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN/echod" --listen "127.0.0.1:$3" 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$3") 2>/dev/null && break; sleep 0.1; done
  "$BIN/echod-bench" "127.0.0.1:$3" -c "$1" -l 64 -n "$2" >/dev/null
  kill -INT "$pid"; wait "$pid" || true
  ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !v {gsub(",", "", $1); v = $1} END {print v}')
  rm -f "$out"
  echo "connections=$1 messages=$2 instructions_per_message=$(python3 -c "print(round($ir / $2, 1))")"
}
port=$((20000 + RANDOM % 20000))
run 1 50000 "$port"
run 50 200000 "$((port + 1))"
