//! `echod-client`: netcat for echod.
//!
//! stdin goes to the socket, the socket goes to stdout. At stdin EOF the
//! client half-closes its side (`shutdown(Write)`) and keeps reading until the
//! server closes, then succeeds. Three ways of talking:
//!
//! - **stream** (default, TCP or `unix:/path`): bytes are copied both ways
//!   unchanged; the socket is read `recv_size` bytes at a time (the seeds'
//!   `recv(1024)` / `recv(7)` loops), and every read is written out at once.
//! - **framed** (`--framed`): each stdin line, without its `\n`, is sent as one
//!   frame (a 10-byte header `format!("{:<10}", len)`, then the payload); each
//!   frame received is printed as its payload followed by `\n`.
//! - **UDP** (`--udp`): each stdin line, *including* its `\n`, is one datagram
//!   (a line longer than [`UDP_MAX_PAYLOAD`](echod_common::UDP_MAX_PAYLOAD) goes as several); every reply is
//!   written to stdout verbatim, so an echo reproduces stdin. At stdin EOF the
//!   client waits up to the timeout for the replies still owed.
//!
//! # Concurrency
//! One thread copies stdin to the socket while the calling thread copies the
//! socket to stdout, so a large input never deadlocks against a server that
//! echoes while we are still sending (both sides' buffers filling up). The
//! stdin thread is detached: when the server has closed, [`run`] returns even
//! if that thread is still blocked reading stdin.
//!
//! # Timeouts
//! `timeout` bounds the connect and the idle time, "idle" meaning that no
//! byte moved in either direction for that long. For UDP without an explicit
//! timeout there is no idle limit, and the wait for replies after stdin EOF is
//! 2 s.
//!
//! # Errors and exit statuses
//! Every failure is a [`ClientError`] whose `Display` is one human line and
//! whose [`ClientError::exit_code`] is one of the [`exit`](echod_common::exit) statuses.
//!
//! # Layout
//! - `cli`: [`Args`], the command line (also read by crates/echod-dist for
//!   the man page and shell completions).
//! - `error`: [`ClientError`] and its exit statuses.
//! - `stream`: TCP and unix sockets, stream and framed modes: connecting,
//!   the stdin thread, the socket-to-stdout loop and its idle timeout.
//! - `framed`: encoding stdin lines as frames, printing received payloads.
//! - `udp`: one datagram per line, the reply window and the wait at EOF.

mod cli;
mod error;
mod framed;
mod stream;
mod udp;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use echod_common::addr::Endpoint;

pub use cli::Args;
pub use error::{ClientError, ProtocolError, TimeoutKind};

/// The seeds' `recv(1024)`.
pub const DEFAULT_RECV_SIZE: usize = 1024;

/// What to connect to and how to talk. Built by the binary from its flags;
/// [`run`] refuses the combinations that make no sense (a usage error).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server: `host:port`, `[v6]:port` or `unix:/path` (not with `udp`).
    pub endpoint: Endpoint,
    /// Bytes asked for per socket read (stream and framed modes); at least 1.
    /// UDP replies are always read whole.
    pub recv_size: usize,
    /// Send each stdin line as one frame, print each frame's payload as a line.
    pub framed: bool,
    /// Send each stdin line as one datagram.
    pub udp: bool,
    /// Connect and idle timeout; for UDP also the wait for replies at EOF.
    pub timeout: Option<Duration>,
}

impl ClientConfig {
    /// Checks the combination of options; the error is a [`ClientError::Usage`].
    fn validate(&self) -> Result<(), ClientError> {
        let usage = |msg: &str| Err(ClientError::Usage(msg.to_string()));
        if self.recv_size == 0 {
            return usage("--recv-size must be at least 1");
        }
        if self.udp && self.framed {
            return usage("--framed and --udp cannot be combined (UDP datagrams are not framed)");
        }
        if self.udp && matches!(self.endpoint, Endpoint::Unix(_)) {
            return usage("--udp needs a host:port address, not a unix socket");
        }
        if self.timeout == Some(Duration::ZERO) {
            return usage("--timeout must be greater than 0");
        }
        Ok(())
    }
}

/// Runs the client until the server closes (stream modes) or every reply
/// arrived (UDP). `input` is read on a separate, detached thread; `output`
/// gets every received byte (or payload line) and is flushed after each read.
pub fn run<R, W>(cfg: &ClientConfig, input: R, output: W) -> Result<(), ClientError>
where
    R: Read + Send + 'static,
    W: Write,
{
    cfg.validate()?;
    if cfg.udp {
        udp::run(cfg, input, output)
    } else {
        stream::run(cfg, input, output)
    }
}

/// When a byte last moved either way, shared by the two threads.
struct Activity {
    base: Instant,
    last_nanos: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            base: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = self.base.elapsed().as_nanos() as u64;
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    /// How long nothing has moved.
    fn idle_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use echod_common::exit;

    #[test]
    fn validate_refuses_nonsense() {
        let ep: Endpoint = "127.0.0.1:1".parse().unwrap();
        let config = |endpoint| ClientConfig {
            endpoint,
            recv_size: DEFAULT_RECV_SIZE,
            framed: false,
            udp: false,
            timeout: None,
        };
        let mut cfg = config(ep);
        cfg.udp = true;
        cfg.framed = true;
        assert!(matches!(cfg.validate(), Err(ClientError::Usage(_))));
        let mut cfg = config("unix:/tmp/x".parse().unwrap());
        cfg.udp = true;
        assert_eq!(cfg.validate().unwrap_err().exit_code(), exit::USAGE);
    }
}
