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

## Fuzz the frame decoder for FUZZ_SECONDS (default 60).
fuzz:
	bash fuzz/run.sh

## The benchmark matrix against the C and tokio peers (docs/BENCHMARKS.md).
bench:
	python3 bench/run.py full

bench-quick:
	python3 bench/run.py quick

## Instructions per message under callgrind, 1 and 50 connections (docs/ARCHITECTURE.md).
callgrind:
	bash bench/callgrind.sh

clean:
	$(CARGO) clean
