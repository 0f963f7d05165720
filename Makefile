# echod: `make run` starts the daemon on 127.0.0.1:12345; `make test` runs every test.
CARGO ?= cargo
ARGS ?=

.PHONY: all build release run test test-deps units soak lint fmt fuzz bench bench-quick callgrind clean

all: build

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

## Start the daemon on the default address (127.0.0.1:12345). Extra flags: make run ARGS="--udp 127.0.0.1:12345"
run:
	$(CARGO) run --release --bin echod -- $(ARGS)

## Everything the tests need, then all tests (unit, property, integration).
test: test-deps
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --all-targets -- --test-threads=4
	$(CARGO) test --workspace --doc

## The soak (docs/RELIABILITY.md): SOAK_SECONDS (default 600) of mixed hostile
## load on one budgeted echod, RSS and descriptors sampled every second. Release
## builds: the figures are those of the binary that ships.
soak:
	$(CARGO) build --workspace --release
	SOAK_SECONDS=$${SOAK_SECONDS:-600} $(CARGO) test --release --test it soak:: -- --nocapture

## The list in .ci/deps.sh (nc, telnet, python3, ip, nft, the systemd tools, haproxy), installed when root.
test-deps:
	@bash .ci/deps.sh
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }

## The systemd units alone: systemd-analyze verify clean, security exposure <= 2.0.
units:
	$(CARGO) test --test it systemd::the_units -- --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Fuzz the frame decoder, then the metrics request reader, each for FUZZ_SECONDS (default 60).
fuzz:
	bash fuzz/run.sh decoder
	bash fuzz/run.sh http
	bash fuzz/run.sh sockperf

## The benchmark against the C and tokio peers, every cell judged PASS/FAIL
## (docs/BENCHMARKS.md; about 40 minutes here). Some stages only, the report keeping
## the others from earlier runs: make bench STAGES=udp,churn,bulk
## (stages: matrix, head-to-head, control, syscalls, memory, workers, timers,
## udp, churn, bulk, scale). BENCH_ARGS: more flags, e.g. "--rounds 3 --out /tmp/b.md".
STAGES ?=
BENCH_ARGS ?=
bench:
	python3 bench/run.py full $(if $(STAGES),--stages $(STAGES)) $(BENCH_ARGS)

## The two key cells, under two minutes (bench/results/quick.md).
bench-quick:
	python3 bench/run.py quick $(BENCH_ARGS)

## Instructions per message under callgrind, 1 and 50 connections (docs/ARCHITECTURE.md).
callgrind:
	bash bench/callgrind.sh

## Everything an installer needs, in dist/out/: bin/ (release builds), man/,
## completions/{bash,zsh,fish}/ (from the clap definitions, crates/echod-dist),
## systemd/, doc/.
DIST := dist/out
.PHONY: dist deb cargo-deb deb-check deb-install-check
dist: release
	rm -rf $(DIST)
	$(CARGO) run --release -q -p echod-dist -- $(DIST) >/dev/null
	mkdir -p $(DIST)/bin $(DIST)/systemd $(DIST)/doc
	cp target/release/echod target/release/echod-client target/release/echod-bench $(DIST)/bin/
	cp dist/systemd/* $(DIST)/systemd/
	cp -r README.md docs $(DIST)/doc/
	@echo "dist: $$(find $(DIST) -type f | wc -l) files in $(DIST)/"

## The Debian package, target/debian/echod_<version>_<arch>.deb (cargo-deb,
## installed when missing; the assets are listed in Cargo.toml). Its binaries
## are stripped; their debug info (the release profile keeps it for perf)
## goes to target/debian/echod-dbgsym_<version>_<arch>.ddeb.
CARGO_DEB_VERSION := 3.8.0
deb: dist cargo-deb
	$(CARGO) deb -p echod --no-build --dbgsym

cargo-deb:
	@$(CARGO) deb --version >/dev/null 2>&1 || \
	  $(CARGO) install cargo-deb --version $(CARGO_DEB_VERSION) --locked

## The package unpacks with every file in place and its echod runs (dpkg -x).
## Not in .ci/run: on a fresh 2-core machine `cargo install cargo-deb` (3.8 to
## 7 min measured under load; 1m45s of CPU) plus a release build (6.5 min)
## would add 10 minutes or more to every CI run.
deb-check: deb
	bash dist/deb-check.sh

## deb-check, then a real dpkg -i, echod --version, dpkg -P (changes this machine).
deb-install-check: deb
	bash dist/deb-check.sh --install

clean:
	$(CARGO) clean
	rm -rf $(DIST)
