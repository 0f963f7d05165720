#!/bin/bash
# Instructions per message (callgrind) of a release echod under a steady,
# unsaturated load (2,000 echo connections, 2,000 messages/s in all, so one
# message per loop turn), with and without idle clients keeping some
# connection always draining (--idle-timeout 1, one new idle connection
# every 100 ms). The two figures should be close: drain deadlines are
# checked once per 50 ms tick, not once per turn. Loopback only; about 30 s.
# Needs valgrind and a release build (cargo build --release).
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

idlers() { # PORT: one idle connection every 100 ms, held until killed
    exec python3 -c '
import socket, sys, time
held = []
while True:
    held.append(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
    time.sleep(0.1)
' "$1"
}

measure() { # with|without
    local port=$((20000 + RANDOM % 10000)) n=10000 idler=""
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1" \
        target/release/echod --listen 127.0.0.1:$port --idle-timeout 1 \
        --max-connections 3000 2>/dev/null &
    local server=$!
    for _ in $(seq 100); do # valgrind starts slowly
        (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.2
    done
    if [ "$1" = with ]; then
        idlers $port &
        idler=$!
        sleep 2 # the first idle connections have timed out and drain
    fi
    if ! target/release/echod-bench 127.0.0.1:$port -c 2000 -n $n --rate 2000 --json >/dev/null; then
        echo "echod-bench failed" >&2
        exit 1
    fi
    [ -n "$idler" ] && kill $idler
    kill -INT $server
    wait $server || true
    local total
    total=$(callgrind_annotate "$out/cg.$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "$1 idle clients draining: $((total / n)) instructions per message"
}

measure without
measure with
