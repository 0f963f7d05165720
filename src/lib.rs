//! echod: an echo daemon built on one readiness-based mio poll loop per
//! worker. This library is the daemon; `src/main.rs` is only its edge (flags
//! in, one line and an exit status out), and tests embed the same [`Server`].
//!
//! # Layout
//! - `config`: command-line flags to a validated [`Config`]; no I/O.
//! - `server`: binding ([`Server::bind`]), the workers, their event loop,
//!   accept policy, timers, shutdown.
//! - `connection`: one stream connection: its states, its outbound queue.
//! - `udp`: datagram echo and the reflection guard.
//! - `stats`: counters, close reasons and the exit summary.
//! - `sys`: the errno class std lacks.
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

pub use config::{Args, Config, ConfigError, Mode};
pub use memory::CHUNK_SIZE;
pub use server::{
    signals::install_exit_on_second_signal, Server, ServerError, ShutdownHandle, READ_BUF_SIZE,
};
pub use stats::Stats;
