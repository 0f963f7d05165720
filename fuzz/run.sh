#!/usr/bin/env sh
# Runs a fuzz target for ${FUZZ_SECONDS:-60} seconds:
#   ./run.sh [decoder|http|sockperf|proxy] [libFuzzer flags...]
# decoder (the default): the frame decoder; http: the metrics port's request
# reader; sockperf: sockperf's message decoder; proxy: the PROXY protocol
# header parser. FUZZ_TARGET names the target too, when no argument does.
# Installs cargo-fuzz first if it is missing. cargo-fuzz needs nightly-only
# flags (sanitizers); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Crashes land in fuzz/artifacts/<target>/; keep each as a named regression
# test beside the code it found the bug in.
set -eu
cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi
case "${1:-}" in
    decoder | http | sockperf | proxy) target=$1; shift ;;
    *) target=${FUZZ_TARGET:-decoder} ;;
esac
RUSTC_BOOTSTRAP=1 exec cargo fuzz run "$target" -- -max_total_time="${FUZZ_SECONDS:-60}" "$@"
