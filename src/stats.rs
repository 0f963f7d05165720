//! Counters kept per worker, the reasons a connection ends, and the exit summary.
//!
//! Each worker owns its [`Stats`] outright (no atomics on the hot path); the
//! daemon merges them when the workers have stopped. The one thing the
//! workers share is [`OpenConnections`], touched once per accepted and once
//! per closed connection, so that the peak is exact across workers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Closed to give memory back: the daemon's `--max-memory` was spent and
    /// this connection held the most of it without draining it.
    MemoryPressure,
    /// `--proxy-protocol`: the connection's first bytes were not a valid
    /// PROXY protocol header (none at all, malformed, or EOF before its end).
    ProxyHeader,
    /// `--proxy-protocol`: no complete header within
    /// [`crate::connection::PROXY_HEADER_TIMEOUT`].
    ProxyTimeout,
    /// `--proxy-protocol` with `--proxy-from`: the socket's peer is outside
    /// every range given (closed at accept, before reading anything).
    ProxyUntrusted,
}

impl CloseReason {
    /// Every reason, in the order of [`Stats::closed`].
    pub const ALL: [CloseReason; 11] = [
        CloseReason::PeerClosed,
        CloseReason::Error,
        CloseReason::IdleTimeout,
        CloseReason::Shutdown,
        CloseReason::Once,
        CloseReason::BadFrame,
        CloseReason::DrainTimeout,
        CloseReason::MemoryPressure,
        CloseReason::ProxyHeader,
        CloseReason::ProxyTimeout,
        CloseReason::ProxyUntrusted,
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
            CloseReason::MemoryPressure => "memory_pressure",
            CloseReason::ProxyHeader => "proxy_header",
            CloseReason::ProxyTimeout => "proxy_timeout",
            CloseReason::ProxyUntrusted => "proxy_untrusted",
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

/// Connections open across all workers, shared by them (`Arc`): what makes
/// [`Stats::peak_concurrent`] exact with `--workers N`. Touched once per
/// accepted and once per closed connection, never per message.
///
/// `Relaxed` suffices: all changes to one atomic fall in one order, and each
/// read-modify-write sees the value just before it in that order, so the
/// values [`OpenConnections::opened`] returns are exactly the counts the
/// daemon went through. Nothing else is synchronized through it.
#[derive(Debug, Default)]
pub struct OpenConnections(AtomicU64);

impl OpenConnections {
    /// Counts one connection opened; returns how many are open now, across
    /// all workers, this one included.
    pub fn opened(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts one connection closed; each must have been counted opened.
    pub fn closed(&self) {
        let before = self.0.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(before > 0, "closed more connections than were opened");
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
    /// Connections open on this worker.
    pub current: u64,
    /// The most connections open at once across all workers, as far as this
    /// worker saw: the highest `OpenConnections` count at its accepts.
    /// [`Stats::merge`] keeps the highest, which is exact: the shared count
    /// peaks just after an accept, and that accept's worker saw the peak.
    pub peak_concurrent: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub frames: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// UDP datagrams refused by the reflection guard, indexed like `DropReason::ALL`.
    pub udp_dropped: [u64; DropReason::ALL.len()],
    /// UDP replies dropped because the socket would block.
    pub udp_reply_dropped: u64,
    /// Connections ended, indexed like `CloseReason::ALL`.
    pub closed: [u64; CloseReason::ALL.len()],
}

impl Stats {
    /// Counts one connection opened; `open_now` is how many are open across
    /// all workers with it (what `OpenConnections::opened` returned).
    pub fn opened(&mut self, open_now: u64) {
        self.accepted += 1;
        self.current += 1;
        debug_assert!(open_now >= self.current, "the workers' count includes ours");
        self.peak_concurrent = self.peak_concurrent.max(open_now);
    }

    /// Counts one connection ended for `reason`.
    pub fn ended(&mut self, reason: CloseReason) {
        self.current = self.current.saturating_sub(1);
        self.closed[reason as usize] += 1;
    }

    /// Adds another worker's counters into these; `peak_concurrent`, already
    /// counted across workers, takes the higher of the two.
    pub fn merge(&mut self, other: &Stats) {
        self.accepted += other.accepted;
        self.rejected_max_connections += other.rejected_max_connections;
        self.rejected_fd_exhausted += other.rejected_fd_exhausted;
        self.accept_errors += other.accept_errors;
        self.current += other.current;
        self.peak_concurrent = self.peak_concurrent.max(other.peak_concurrent);
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

/// Why a datagram was dropped instead of echoed.
///
/// When several apply, `udp::guard::check_source` reports the first in the order of
/// [`DropReason::ALL`]. Invariant: `reason as usize` is the reason's index in
/// [`DropReason::ALL`], so counters may be an array indexed that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Source port below 1024 (port 0 included): a well-known service.
    PrivilegedPort,
    /// Source port equal to one of echod's own UDP ports.
    OwnPort,
    /// Source address `0.0.0.0` or `::`.
    Unspecified,
    /// Source address is multicast (`224.0.0.0/4` or `ff00::/8`).
    Multicast,
    /// Source address is `255.255.255.255`.
    Broadcast,
    /// `--mode sockperf`: a datagram that is not a sockperf message (a
    /// length below its header, above `--max-frame`, or not its size). Not
    /// the guard's: judged after it.
    BadMessage,
}

impl DropReason {
    /// Every reason, in the order `udp::guard::check_source` tests them, then
    /// the ones judged after it (for counters).
    pub const ALL: [DropReason; 6] = [
        DropReason::PrivilegedPort,
        DropReason::OwnPort,
        DropReason::Unspecified,
        DropReason::Multicast,
        DropReason::Broadcast,
        DropReason::BadMessage,
    ];

    /// A stable `snake_case` name for logs and the stats summary.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::PrivilegedPort => "privileged_port",
            DropReason::OwnPort => "own_port",
            DropReason::Unspecified => "unspecified_source",
            DropReason::Multicast => "multicast_source",
            DropReason::Broadcast => "broadcast_source",
            DropReason::BadMessage => "bad_message",
        }
    }
}

/// The exit summary: one line of `key=value` pairs, stable for scripts.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

    /// Two workers that never hold their connections at the same time:
    /// each peaks at 2, but no more than 2 were ever open at once.
    #[test]
    fn merge_adds_counts_and_keeps_the_shared_peak() {
        let open = OpenConnections::default();
        let (mut a, mut b) = (Stats::default(), Stats::default());
        for _ in 0..2 {
            a.opened(open.opened());
        }
        for _ in 0..2 {
            a.ended(CloseReason::Error);
            open.closed();
        }
        for _ in 0..2 {
            b.opened(open.opened());
        }
        a.merge(&b);
        assert_eq!(a.accepted, 4);
        assert_eq!(a.peak_concurrent, 2);
        assert_eq!(a.errors(), 2);
        assert!(a.to_string().contains("closed_error=2"));
    }
}
