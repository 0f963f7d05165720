//! The connection's life as a pure state machine: a [`Phase`], the
//! [`Event`]s that move it, and [`Phase::on`], which says what follows
//! (the next phase and one [`Action`] for the socket glue to carry out).
//!
//! Nothing here touches a socket or reads a clock: an event that needs the
//! time carries it (`now`), read by the caller from the turn's clock only
//! when that event happens, so the steady echo never pays for it. The
//! transitions are tested as a table at the bottom of this file.
//!
//! ```text
//!               Open ──────────── Eof ───────────► PeerClosed
//!                │                                     │    │
//!   BeginDraining│              BeginDraining          │    │ Flushed
//!                ▼        (peer_eof: true) ◄───────────┘    ▼
//!   Flushing { reason, until, peer_eof }          Closed(peer_closed)
//!      │  Progress: until = max(until, min(now + 2 s, shutdown deadline))
//!      │  Eof: peer_eof = true
//!      │  Flushed, peer_eof ──────────────────────► Closed(reason)
//!      │  Flushed, !peer_eof: action SendFin
//!      │     FinFailed ───────────────────────────► Closed(reason)
//!      ▼ FinSent
//!   Lingering { reason, until: min(until, now + 2 s), quiet_until: now + 500 ms }
//!      │  Input: quiet_until = now + 500 ms
//!      │  Eof, or Tick past quiet_until ──────────► Closed(reason)
//!
//!   Flushing or Lingering: Tick past until, or Deadline
//!                                      ─────────► Closed(reason.at_drain_deadline())
//!   Open or PeerClosed: Deadline ─────────────────► Closed(drain_timeout)
//!   any phase but Closed: Error ──────────────────► Closed(error)
//!   BeginDraining on Flushing or Lingering only brings `until` closer.
//! ```

use std::time::{Duration, Instant};

use crate::stats::CloseReason;

/// How long a connection we are ending may go without progress (no byte
/// written to the peer) before it is closed regardless.
pub const DRAIN_LINGER: Duration = Duration::from_secs(2);

/// After our FIN: close once the peer has sent nothing for this long (its
/// in-flight bytes have arrived, so closing cannot reset away our echoes).
/// nginx's `lingering_timeout` is the same idea (5 s there; loopback and LAN
/// peers need far less, and shutdown should not wait on idle clients).
pub const LINGER_QUIET: Duration = Duration::from_millis(500);

/// After our FIN: close at the latest this long later, even if the peer keeps
/// sending (nginx's `lingering_time`).
pub const LINGER_MAX: Duration = Duration::from_secs(2);

/// Where a connection is in its life. Only `Connection::set_phase` changes
/// it, and only to what [`Phase::on`] returns.
///
/// `repr(u8)` gives the phase an explicit tag: without it the tag hides in a
/// niche of an `Instant`, and every `match` on the hot path decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading and echoing; reading pauses while the queue is over the limit.
    Open,
    /// Peer sent FIN: echo what is owed (reading no more), then close.
    PeerClosed,
    /// We are ending it: flush what is owed, reading and discarding input
    /// (unless the peer's FIN has come), then half-close.
    Flushing {
        /// Why we began ending it. Set once, by the first `BeginDraining`:
        /// a shutdown that overtakes a drain under way shortens its deadline
        /// but keeps this.
        reason: CloseReason,
        /// Hard deadline. Each write that makes progress pushes it to
        /// [`DRAIN_LINGER`] from then, but never past the shutdown deadline
        /// and never closer. Invariant: once shutdown has begun,
        /// `until <=` the shutdown deadline.
        until: Instant,
        /// The peer's FIN has been read: close as soon as nothing is owed,
        /// without a FIN of ours.
        peer_eof: bool,
    },
    /// Half-closed (our FIN is sent, nothing is owed): discard input until
    /// EOF, a quiet spell, or the deadline, so a reset cannot wipe the last
    /// echoes (memcached's `conn_swallow`). The peer's FIN ends it at once,
    /// so there is no `peer_eof` here.
    Lingering {
        reason: CloseReason,
        /// Hard deadline: at most [`LINGER_MAX`] after our FIN.
        until: Instant,
        /// Closed once no input arrived until then.
        quiet_until: Instant,
    },
    /// Done; removed from the slab after this event batch.
    Closed(CloseReason),
}

/// What happened to a connection, as far as its phase cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A read returned end of stream: the peer's FIN.
    Eof,
    /// A read brought bytes (echoed while open, discarded while ending).
    Input { now: Instant },
    /// A write of queued bytes made progress; `cap` is the shutdown deadline,
    /// if shutdown has begun.
    Progress { now: Instant, cap: Option<Instant> },
    /// Nothing is owed any more (the queue is empty).
    Flushed,
    /// Our FIN went out (the answer to [`Action::SendFin`]).
    FinSent { now: Instant },
    /// Our FIN could not be sent.
    FinFailed,
    /// The drain sweep's timer check.
    Tick { now: Instant },
    /// A hard deadline passed (the drain's own or the shutdown's, whichever
    /// the loop noticed first): close, counted as a drain that ran out.
    Deadline,
    /// We start ending the connection for `reason`, by `until` at the latest.
    BeginDraining { reason: CloseReason, until: Instant },
    /// A read or write failed.
    Error,
}

/// What the socket glue must do after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    Nothing,
    /// Half-close our side (`shutdown(Write)`), then report
    /// [`Event::FinSent`] or [`Event::FinFailed`].
    SendFin,
    /// The connection is closed: reap it after the batch (the socket is
    /// dropped then).
    Close,
}

/// A transition's result: the next phase and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub next: Phase,
    pub action: Action,
}

impl Step {
    fn to(next: Phase) -> Step {
        let action = match next {
            Phase::Closed(_) => Action::Close,
            _ => Action::Nothing,
        };
        Step { next, action }
    }
}

impl Phase {
    /// Whether we are ending the connection (flushing or lingering): it
    /// needs deadline checks.
    #[inline]
    pub fn is_draining(self) -> bool {
        matches!(self, Phase::Flushing { .. } | Phase::Lingering { .. })
    }

    /// Whether input is still read in this phase (echoed while open,
    /// discarded while ending until the peer's EOF).
    #[inline]
    pub fn reads(self) -> bool {
        match self {
            Phase::Open | Phase::Lingering { .. } => true,
            Phase::Flushing { peer_eof, .. } => !peer_eof,
            Phase::PeerClosed | Phase::Closed(_) => false,
        }
    }

    /// The transition function: what follows `event` in this phase. Pure: no
    /// socket, no clock. A closed connection stays closed whatever happens.
    pub fn on(self, event: Event) -> Step {
        use Phase::*;
        let next = match (self, event) {
            (Closed(_), _) => {
                return Step {
                    next: self,
                    action: Action::Nothing,
                }
            }
            (_, Event::Error) => Closed(CloseReason::Error),
            (_, Event::Deadline) => Closed(self.reason().at_drain_deadline()),

            (Open, Event::Eof) => PeerClosed,
            (Flushing { reason, until, .. }, Event::Eof) => Flushing {
                reason,
                until,
                peer_eof: true,
            },
            (Lingering { reason, .. }, Event::Eof) => Closed(reason),

            (Lingering { reason, until, .. }, Event::Input { now }) => Lingering {
                reason,
                until,
                quiet_until: now + LINGER_QUIET,
            },

            (
                Flushing {
                    reason,
                    until,
                    peer_eof,
                },
                Event::Progress { now, cap },
            ) => {
                let earned = now + DRAIN_LINGER;
                Flushing {
                    reason,
                    until: cap.map_or(earned, |cap| earned.min(cap)).max(until),
                    peer_eof,
                }
            }

            (PeerClosed, Event::Flushed) => Closed(CloseReason::PeerClosed),
            (
                Flushing {
                    reason,
                    peer_eof: true,
                    ..
                },
                Event::Flushed,
            ) => Closed(reason),
            (
                Flushing {
                    peer_eof: false, ..
                },
                Event::Flushed,
            ) => {
                return Step {
                    next: self,
                    action: Action::SendFin,
                }
            }
            (Flushing { reason, until, .. }, Event::FinSent { now }) => Lingering {
                reason,
                until: until.min(now + LINGER_MAX),
                quiet_until: now + LINGER_QUIET,
            },
            (Flushing { reason, .. }, Event::FinFailed) => Closed(reason),

            (Flushing { reason, until, .. }, Event::Tick { now }) if now >= until => {
                Closed(reason.at_drain_deadline())
            }
            (Lingering { reason, until, .. }, Event::Tick { now }) if now >= until => {
                Closed(reason.at_drain_deadline())
            }
            (
                Lingering {
                    reason,
                    quiet_until,
                    ..
                },
                Event::Tick { now },
            ) if now >= quiet_until => Closed(reason),

            (Open, Event::BeginDraining { reason, until }) => Flushing {
                reason,
                until,
                peer_eof: false,
            },
            (PeerClosed, Event::BeginDraining { reason, until }) => Flushing {
                reason,
                until,
                peer_eof: true,
            },
            (Flushing { .. } | Lingering { .. }, Event::BeginDraining { until, .. }) => {
                self.with_until_at_most(until)
            }

            // Everything else leaves the phase as it is: input while open or
            // flushing (echoed or discarded by the glue), progress outside a
            // flush, a tick before any deadline, EOF after EOF, ...
            _ => self,
        };
        Step::to(next)
    }

    /// Why the connection is being ended; [`CloseReason::Shutdown`] for one
    /// we have not begun to end (what a hard deadline closes it as).
    fn reason(self) -> CloseReason {
        match self {
            Phase::Flushing { reason, .. } | Phase::Lingering { reason, .. } => reason,
            Phase::Closed(reason) => reason,
            Phase::Open | Phase::PeerClosed => CloseReason::Shutdown,
        }
    }

    /// A drain's deadline brought to `until` if that is closer; never later.
    fn with_until_at_most(self, at_most: Instant) -> Phase {
        match self {
            Phase::Flushing {
                reason,
                until,
                peer_eof,
            } => Phase::Flushing {
                reason,
                until: until.min(at_most),
                peer_eof,
            },
            Phase::Lingering {
                reason,
                until,
                quiet_until,
            } => Phase::Lingering {
                reason,
                until: until.min(at_most),
                quiet_until,
            },
            other => other,
        }
    }
}
