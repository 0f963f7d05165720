//! echod: an echo daemon built on one readiness-based mio poll loop per
//! worker. This library is the daemon; `src/main.rs` is only its edge (flags
//! in, one line and an exit status out), and tests embed the same [`Server`].
//!
//! # Layout
//! - `config`: command-line flags to a validated [`Config`]; no I/O.
//! - `server`: binding ([`Server::bind`]), the workers, their event loop,
//!   accept policy, timers, shutdown; and the `--metrics` thread
//!   (`server::metrics`: its bounded HTTP request reader and the text
//!   format encoder).
//! - `connection`: one stream connection: its pure state machine
//!   (`connection::state`), its socket glue, its outbound queue and the
//!   worker's chunk pool (`connection::queue`).
//! - `udp`: datagram echo and the pure reflection guard.
//! - `shared`: what one worker's connections share (read buffer, pool,
//!   counters, the turn's clock, rate-limited logging).
//! - `memory`: the `--max-memory` budget all workers share, and giving
//!   freed memory back to the operating system.
//! - `clock`: the loop's clock, read at most once per turn.
//! - `stats`: counters, close and drop reasons, the exit summary.
//! - `sys`: the errno class std lacks.
//!
//! Imports run downward: `server` uses `connection` and `udp`, which use
//! `shared`, `memory`, `clock`, `stats` and `config`; nothing below reaches
//! up.
//!
//! What the client and the load generator share with the daemon (addresses,
//! the frame codec, exit codes, flag parsers, the stream type) is in the
//! `echod-common` crate.

mod clock;
mod config;
mod connection;
mod memory;
mod server;
mod shared;
mod stats;
mod sys;
mod udp;

pub use config::{Args, Config, ConfigError, Mode, DEFAULT_LISTEN};
pub use memory::CHUNK_SIZE;
pub use server::{
    signals::install_exit_on_second_signal, ActivationError, Inherited, Monitor, Report, Server,
    ServerError, ShutdownHandle, Signals, WorkerReport, READ_BUF_SIZE, STATUS_INTERVAL,
};
pub use stats::Stats;

/// What the fuzz targets (`fuzz/`) reach of the daemon's network-facing
/// parsers; not an API. The frame decoder they fuzz is in `echod-common`.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::server::metrics::http::{parse, route, Head, HeadError, Parse, Route, MAX_HEAD};
}
