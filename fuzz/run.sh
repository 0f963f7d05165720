#!/usr/bin/env sh
# Runs a fuzz target (${FUZZ_TARGET:-decoder}: the framing decoder; or proxy:
# the PROXY protocol header parser) for ${FUZZ_SECONDS:-60} seconds.
# Installs cargo-fuzz first if it is missing. cargo-fuzz needs nightly-only
# flags (sanitizers); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# Crashes land in fuzz/artifacts/<target>/; keep each as a named regression test
# in crates/echod-common/src/framing.rs (or proxy.rs).
set -eu
cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi
RUSTC_BOOTSTRAP=1 exec cargo fuzz run "${FUZZ_TARGET:-decoder}" -- -max_total_time="${FUZZ_SECONDS:-60}" "$@"
