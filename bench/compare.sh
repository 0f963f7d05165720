#!/usr/bin/env bash
# echod-bench against a thread-per-connection load tool (bench/thread_bench),
# both driving the same release echod on this machine: messages/s driven and
# CPU burned by each load tool (and by the server).
#
# Usage: bench/compare.sh [CONNECTIONS] [LENGTH] [SECONDS]   (default 50 512 10)
# The server is pinned to CPU 0 and the load tool to CPU 1 (taskset).
# Sends traffic to 127.0.0.1 only; every run is bounded by SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-50}
L=${2:-512}
D=${3:-10}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TARGET_DIR=$TARGET

cargo build --release --quiet --workspace
(cd bench/thread_bench && cargo build --release --quiet)
BIN=$TARGET/release
TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

RUST_LOG=warn,echod::server=info taskset -c 0 "$BIN/echod" --listen 127.0.0.1:0 2>"$WORK/echod.log" &
SERVER=$!
for _ in $(seq 100); do
  grep -q 'listening on' "$WORK/echod.log" && break
  sleep 0.05
done
ADDR=$(grep -o 'listening on [^ ]*' "$WORK/echod.log" | head -1 | cut -d' ' -f3)
echo "echod (pid $SERVER) on $ADDR, pinned to CPU 0; load tools pinned to CPU 1"
echo "run: -c $C -l $L -d $D"

server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }

# run NAME COMMAND...: one line: rate, messages, the load tool's CPU, the server's CPU
run() {
  local name=$1; shift
  local before after
  before=$(server_ticks)
  /usr/bin/time -f '%U %S' -o "$WORK/time" taskset -c 1 "$@" >"$WORK/out" 2>"$WORK/err" || true
  after=$(server_ticks)
  local rate
  if [ "${name%% *}" = echod-bench ]; then
    rate=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["msgs_per_sec"]), r["messages"], "verified" if r["ok"] else "ERRORS")' "$WORK/out")
  else
    rate=$(awk '/^Speed:/ {s=$2} /^Requests:/ {n=$2} END {print s, n, "unverified"}' "$WORK/out")
  fi
  read -r user sys <"$WORK/time"
  awk -v n="$name" -v r="$rate" -v u="$user" -v s="$sys" -v sv="$(( after - before ))" -v t="$TCK" \
    'BEGIN { split(r, a, " "); cpu = u + s;
             printf "%-22s %8d msg/s %9d msgs | load tool CPU %5.2f s (user %.2f + sys %.2f) = %4.2f us/msg | server CPU %5.2f s | %s\n",
                    n, a[1], a[2], cpu, u, s, 1e6 * cpu / a[2], sv / t, a[3] }'
}

run echod-bench "$BIN/echod-bench" "$ADDR" -c "$C" -l "$L" -d "$D" --json
run thread_bench "$TARGET/release/thread_bench" --address "$ADDR" -c "$C" -l "$L" -d "$D"
# The same work as thread_bench did (its total messages), for the CPU it takes.
SAME=$(awk '/^Requests:/ {print $2}' "$WORK/out")
run "echod-bench -n $SAME" "$BIN/echod-bench" "$ADDR" -c "$C" -l "$L" -n "$SAME" --json
