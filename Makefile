# echod: `make run` starts the daemon on 127.0.0.1:12345; `make test` runs every test.
CARGO ?= cargo
ARGS ?=

.PHONY: all build release run test test-deps units lint fmt fuzz bench bench-quick callgrind clean

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

## nc and telnet for the real-tool tests; python3 for the seeds' clients;
## systemd-socket-activate and systemd-analyze (package systemd) for the
## systemd tests, which also check dist/systemd/ (verify, security <= 2.0).
test-deps:
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	@command -v nc >/dev/null && command -v telnet >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update && apt-get install -y netcat-openbsd telnet; \
	    else echo "WARNING: nc/telnet missing: their tests will say SKIPPED"; fi; }
	@command -v systemd-socket-activate >/dev/null && command -v systemd-analyze >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update && apt-get install -y systemd; \
	    else echo "WARNING: systemd tools missing: the systemd tests will say SKIPPED"; fi; }

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
