//! What every connection and UDP socket of one worker shares: the read
//! buffer, the chunk pool, the counters, the turn's clock, and the policy
//! the loop hands down. It sits below the loop, the connections and UDP, so
//! each borrows it from above without reaching up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::TurnClock;
use crate::connection::queue::ChunkPool;
use crate::stats::Stats;
use crate::sys::SplicePipe;

/// Warn lines of one kind per second at most; the rest are counted.
const WARN_INTERVAL: Duration = Duration::from_secs(1);

/// Lets one warn line through per interval and counts the rest, so a flood
/// of rejections cannot flood the log.
#[derive(Debug)]
pub struct RateLimit {
    next: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// A limiter that lets the first line through.
    pub const fn new() -> Self {
        RateLimit {
            next: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` if a line may be logged now (`n` lines were suppressed since
    /// the last one), `None` if this one is suppressed.
    pub fn allow_counting(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.suppressed += 1;
            return None;
        }
        self.next = Some(now + WARN_INTERVAL);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Whether a line may be logged now.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.allow_counting(now).is_some()
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// What every connection of a worker shares: the read buffer, the chunk
/// pool, the counters and the loop's clock. Kept apart from the slab so a
/// connection can borrow both.
#[derive(Debug)]
pub struct Shared {
    /// The loop's one read buffer (taken and put back around each read).
    pub read_buf: Box<[u8]>,
    pub pool: ChunkPool,
    pub stats: Stats,
    /// This turn's time, read only if something asks.
    pub clock: TurnClock,
    /// `--idle-timeout` is set: connections keep their last activity (else
    /// the steady echo never needs the time).
    pub track_idle: bool,
    /// Set on SIGINT/SIGTERM: the moment to give up flushing. No drain's
    /// deadline is pushed past it.
    pub shutdown_deadline: Option<Instant>,
    pub queue_limit: usize,
    pub once: bool,
    pub bad_frame_log: RateLimit,
    /// `--proxy-protocol` only: the banner, sent once a connection's PROXY
    /// header is accepted (without it, the worker sends it at accept).
    pub banner_after_proxy: Option<Arc<[u8]>>,
    /// Warn lines about PROXY headers rejected, late or untrusted.
    pub proxy_log: RateLimit,
    /// Plain echo only: the loop's pipe for echoing bulk streams with
    /// `splice(2)` (see `Connection::echo_splice`). Empty between events.
    /// `None` when the mode never echoes plainly, or the pipe could not be
    /// made (or the kernel refused to splice): reads and writes then.
    pub splice: Option<SplicePipe>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_line_per_interval_and_counts_the_rest() {
        let mut limit = RateLimit::new();
        let t0 = Instant::now();
        assert_eq!(limit.allow_counting(t0), Some(0));
        assert_eq!(limit.allow_counting(t0), None);
        assert_eq!(limit.allow_counting(t0 + Duration::from_millis(10)), None);
        assert_eq!(limit.allow_counting(t0 + WARN_INTERVAL), Some(2));
    }
}
