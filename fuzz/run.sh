#!/usr/bin/env sh
# Runs a fuzz target (decoder, the default: the frame decoder; http: the
# metrics port's request reader) for ${FUZZ_SECONDS:-60} seconds:
#   ./run.sh [decoder|http] [libFuzzer flags...]
# Installs cargo-fuzz first if it is missing. cargo-fuzz needs nightly-only
# flags (sanitizers); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Crashes land in fuzz/artifacts/<target>/; keep each as a named regression
# test beside the code (crates/echod-common/src/framing.rs,
# src/server/metrics/http.rs).
set -eu
cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi
case "${1:-}" in
    decoder | http | sockperf) target=$1; shift ;;
    *) target=decoder ;;
esac
RUSTC_BOOTSTRAP=1 exec cargo fuzz run "$target" -- -max_total_time="${FUZZ_SECONDS:-60}" "$@"
