//! echod: an echo daemon built on one readiness-based mio poll loop per worker,
//! with its netcat-like client and its load generator.
//!
//! # Layout
//! - [`addr`]: `host:port` / `[v6]:port` / `unix:/path` parsing, shared by all binaries.
//! - [`config`]: command-line flags to a validated [`config::Config`]; no I/O.
//! - [`queue`]: the per-connection outbound queue of pooled chunks; pure.
//! - [`framing`]: the 10-byte length-header decoder; pure, property-tested, fuzzed.
//! - [`stats`]: counters, close reasons and the exit summary.
//! - [`server`]: the daemon: workers, the event loop, listeners, connections, UDP.
//! - [`sys`]: the few libc calls std and mio lack (rlimits, errno classes).
//! - [`cli`]: one-line usage errors and shared flag parsers for the binaries.
//! - [`client`]: `echod-client`, netcat for echod.
//! - [`mod@bench`]: `echod-bench`, the verifying load generator.

pub mod addr;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod framing;
pub mod queue;
pub mod server;
pub mod stats;
pub mod sys;
