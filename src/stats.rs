//! Counters kept per worker, the reasons a connection ends, and the exit summary.
//!
//! Each worker owns its [`Stats`] outright (no atomics on the hot path); the
//! daemon merges them when the workers have stopped.

use std::fmt;

/// Why a connection ended; logged by name (memcached's habit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent FIN and everything owed was echoed.
    PeerClosed,
    /// A read or write failed (reset, broken pipe, ...).
    Error,
    /// No byte moved either way for `--idle-timeout`; still this when the
    /// drain that follows reaches its deadline (see
    /// [`CloseReason::at_drain_deadline`]).
    IdleTimeout,
    /// The daemon is shutting down, and the connection ended cleanly before
    /// `--shutdown-timeout` passed: everything owed was sent, and after our
    /// FIN the peer closed or went quiet. One still owed bytes (or still
    /// sending) when the timeout passed is [`CloseReason::DrainTimeout`].
    Shutdown,
    /// `--once`: the one exchange is done.
    Once,
    /// Framed mode: an invalid or oversized header.
    BadFrame,
    /// A drain begun for another reason (shutdown, a bad frame, `--once`)
    /// could not finish in time: the peer neither read what was owed nor
    /// went quiet or closed before the drain's deadline or, once shutting
    /// down, the shutdown deadline (counted the same whichever passed).
    /// Never an idle timeout's drain.
    DrainTimeout,
}

impl CloseReason {
    /// Every reason, in the order of [`Stats::closed`].
    pub const ALL: [CloseReason; 7] = [
        CloseReason::PeerClosed,
        CloseReason::Error,
        CloseReason::IdleTimeout,
        CloseReason::Shutdown,
        CloseReason::Once,
        CloseReason::BadFrame,
        CloseReason::DrainTimeout,
    ];

    /// The snake_case name used in logs and the summary.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Error => "error",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Once => "once",
            CloseReason::BadFrame => "bad_frame",
            CloseReason::DrainTimeout => "drain_timeout",
        }
    }

    /// What a connection draining for `self` is counted as when its drain
    /// deadline passes: [`CloseReason::DrainTimeout`], except that an idle
    /// timeout stays [`CloseReason::IdleTimeout`]. The idle timeout ended
    /// that connection; a peer that stopped reading is no less idle while
    /// we try to flush to it.
    pub fn at_drain_deadline(self) -> CloseReason {
        match self {
            CloseReason::IdleTimeout => CloseReason::IdleTimeout,
            _ => CloseReason::DrainTimeout,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One worker's counters. All fields only grow, except `current`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    /// Accepted and closed at once because `--max-connections` was reached.
    pub rejected_max_connections: u64,
    /// Accepted and closed at once because descriptors ran out (EMFILE/ENFILE).
    pub rejected_fd_exhausted: u64,
    /// Accept failures other than WouldBlock (all errnos).
    pub accept_errors: u64,
    pub current: u64,
    /// Highest `current` seen (summed over workers at exit: an upper bound).
    pub peak_concurrent: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub frames: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// UDP datagrams refused by the reflection guard, indexed like `udp_guard::DropReason::ALL`.
    pub udp_dropped: [u64; 5],
    /// UDP replies dropped because the socket would block.
    pub udp_reply_dropped: u64,
    /// Connections ended, indexed like [`CloseReason::ALL`].
    pub closed: [u64; 7],
}

impl Stats {
    /// Counts one connection opened.
    pub fn opened(&mut self) {
        self.accepted += 1;
        self.current += 1;
        self.peak_concurrent = self.peak_concurrent.max(self.current);
    }

    /// Counts one connection ended for `reason`.
    pub fn ended(&mut self, reason: CloseReason) {
        self.current = self.current.saturating_sub(1);
        self.closed[reason as usize] += 1;
    }

    /// Adds another worker's counters into these.
    pub fn merge(&mut self, other: &Stats) {
        self.accepted += other.accepted;
        self.rejected_max_connections += other.rejected_max_connections;
        self.rejected_fd_exhausted += other.rejected_fd_exhausted;
        self.accept_errors += other.accept_errors;
        self.current += other.current;
        self.peak_concurrent += other.peak_concurrent;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.frames += other.frames;
        self.datagrams_in += other.datagrams_in;
        self.datagrams_out += other.datagrams_out;
        for (mine, theirs) in self.udp_dropped.iter_mut().zip(other.udp_dropped) {
            *mine += theirs;
        }
        self.udp_reply_dropped += other.udp_reply_dropped;
        for (mine, theirs) in self.closed.iter_mut().zip(other.closed) {
            *mine += theirs;
        }
    }

    /// Connections that ended on an I/O error.
    pub fn errors(&self) -> u64 {
        self.closed[CloseReason::Error as usize]
    }
}

/// The exit summary: one line of `key=value` pairs, stable for scripts.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::server::udp_guard::DropReason;
        write!(
            f,
            "accepted={} rejected={} rejected_max_connections={} rejected_fd_exhausted={} \
             accept_errors={} peak_concurrent={} bytes_in={} bytes_out={} frames={} \
             datagrams_in={} datagrams_out={} udp_dropped={} udp_reply_dropped={} errors={}",
            self.accepted,
            self.rejected_max_connections + self.rejected_fd_exhausted,
            self.rejected_max_connections,
            self.rejected_fd_exhausted,
            self.accept_errors,
            self.peak_concurrent,
            self.bytes_in,
            self.bytes_out,
            self.frames,
            self.datagrams_in,
            self.datagrams_out,
            self.udp_dropped.iter().sum::<u64>(),
            self.udp_reply_dropped,
            self.errors(),
        )?;
        for (reason, count) in DropReason::ALL.iter().zip(self.udp_dropped) {
            write!(f, " udp_dropped_{}={count}", reason.name())?;
        }
        for (reason, count) in CloseReason::ALL.iter().zip(self.closed) {
            write!(f, " closed_{}={count}", reason.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_slot() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn only_an_idle_timeout_keeps_its_reason_at_the_drain_deadline() {
        for r in CloseReason::ALL {
            let expected = if r == CloseReason::IdleTimeout {
                CloseReason::IdleTimeout
            } else {
                CloseReason::DrainTimeout
            };
            assert_eq!(r.at_drain_deadline(), expected, "{r}");
        }
    }

    #[test]
    fn merge_adds_and_peak_tracks_current() {
        let mut a = Stats::default();
        a.opened();
        a.opened();
        a.ended(CloseReason::Error);
        let mut b = Stats::default();
        b.opened();
        b.merge(&a);
        assert_eq!(b.accepted, 3);
        assert_eq!(b.peak_concurrent, 3);
        assert_eq!(b.errors(), 1);
        assert!(b.to_string().contains("closed_error=1"));
    }
}
