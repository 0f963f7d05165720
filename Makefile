# echod: `make run` starts the daemon on 127.0.0.1:12345; `make test` runs every test.
CARGO ?= cargo
ARGS ?=

.PHONY: all build release run test test-deps lint fmt fuzz bench bench-quick callgrind clean

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

## nc and telnet for the real-tool tests; python3 for the seeds' clients.
test-deps:
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	@command -v nc >/dev/null && command -v telnet >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update && apt-get install -y netcat-openbsd telnet; \
	    else echo "WARNING: nc/telnet missing: their tests will say SKIPPED"; fi; }

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Fuzz the frame decoder, then the metrics request reader, each for FUZZ_SECONDS (default 60).
fuzz:
	bash fuzz/run.sh decoder
	bash fuzz/run.sh http

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
