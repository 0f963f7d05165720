//! What the daemon, the client and the load generator share, and nothing
//! else: each item here has at least two of the three as users.
//!
//! # Layout
//! - [`addr`]: `host:port` / `[v6]:port` / `unix:/path` parsing.
//! - [`framing`]: the seeds' 10-byte length-header codec: events for a
//!   reader of frames, echo spans for the daemon; pure, sans-I/O,
//!   property-tested and fuzzed.
//! - [`sockperf`]: the sockperf benchmark's 14-byte message header, for
//!   `echod --mode sockperf`; pure, property-tested and fuzzed.
//! - [`proxy`]: the PROXY protocol header (v1 and v2), receiving side:
//!   a streaming, sans-I/O parser; property-tested and fuzzed.
//! - [`exit`]: the exit-status table of all three binaries.
//! - [`flags`]: one-line usage errors (exit 2) and the value parsers flags
//!   have in common (sizes, seconds, positive numbers).
//! - [`stream`]: one stream socket type over TCP or unix, for mio and std
//!   sockets alike, with the check of a non-blocking connect.
//! - [`sys`]: the descriptor-limit helper and errno classes std lacks.

pub mod addr;
pub mod exit;
pub mod flags;
pub mod framing;
pub mod proxy;
pub mod sockperf;
pub mod stream;
pub mod sys;

/// The largest UDP payload over IPv4 (65,535 − 8 UDP − 20 IP header bytes).
pub const UDP_MAX_PAYLOAD: usize = 65_507;
