//! The connection's life as a pure state machine: a [`Phase`], the
//! [`Event`]s that move it, and [`Phase::on`], which says what follows
//! (the next phase and one [`Action`] for the socket glue to carry out).
//!
//! Nothing here touches a socket or reads a clock: an event that needs the
//! time carries it (`now`), read by the caller from the turn's clock only
//! when that event happens, so the steady echo never pays for it. Times
//! are [`Tick`]s (milliseconds, wrapping): compared with `reached`,
//! `earlier` and `later`, which stay right across the tick count's wrap. The
//! transitions are tested as a table at the bottom of this file.
//!
//! ```text
//!   AwaitingProxy { until }  (--proxy-protocol: the birth phase)
//!      │  Input: fed to the header parser by the glue
//!      │  ProxyAccepted ─────────────────────────► Open
//!      │  ProxyRejected, or Eof ─────────────────► Closed(proxy_header)
//!      │  Tick past until ───────────────────────► Closed(proxy_timeout)
//!      │  BeginDraining: as from Open (nothing is owed yet)
//!
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

use std::time::Duration;

use crate::clock::Tick;
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
/// `repr(u8)` gives the phase an explicit tag (without it the tag would hide
/// in a niche of a field, and every `match` on the hot path decode it).
/// Deadlines are [`Tick`]s, 4 bytes each: the phase is 12 bytes, not 40.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading and echoing; reading pauses while the queue is over the limit.
    Open,
    /// Peer sent FIN: echo what is owed (reading no more), then close.
    PeerClosed,
    /// `--proxy-protocol`, the phase a connection is born in: reading the
    /// PROXY header (nothing is echoed, no banner sent) until it is
    /// complete, or `until` passes. Declared next to the drains so that
    /// [`Phase::is_timed`] is one range check on the tag, as
    /// [`Phase::is_draining`] is.
    AwaitingProxy { until: Tick },
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
        until: Tick,
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
        until: Tick,
        /// Closed once no input arrived until then.
        quiet_until: Tick,
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
    Input { now: Tick },
    /// A write of queued bytes made progress; `cap` is the shutdown deadline,
    /// if shutdown has begun.
    Progress { now: Tick, cap: Option<Tick> },
    /// Nothing is owed any more (the queue is empty).
    Flushed,
    /// Our FIN went out (the answer to [`Action::SendFin`]).
    FinSent { now: Tick },
    /// Our FIN could not be sent.
    FinFailed,
    /// The drain sweep's timer check.
    Tick { now: Tick },
    /// A hard deadline passed (the drain's own or the shutdown's, whichever
    /// the loop noticed first): close, counted as a drain that ran out.
    Deadline,
    /// We start ending the connection for `reason`, by `until` at the latest.
    BeginDraining { reason: CloseReason, until: Tick },
    /// A read or write failed.
    Error,
    /// The daemon's memory budget is spent and this connection holds the
    /// most of it: closed at once, nothing more is owed to a peer that
    /// does not read.
    Evicted,
    /// The PROXY header is complete and valid: serve the connection.
    ProxyAccepted,
    /// The PROXY header is missing or malformed.
    ProxyRejected,
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

    /// Whether the phase has a deadline the worker's sweep must check:
    /// awaiting the PROXY header, flushing or lingering (the worker counts
    /// these exactly, and its sweep runs only while there are any).
    #[inline]
    pub fn is_timed(self) -> bool {
        matches!(
            self,
            Phase::AwaitingProxy { .. } | Phase::Flushing { .. } | Phase::Lingering { .. }
        )
    }

    /// Whether input is still read in this phase (echoed while open,
    /// discarded while ending until the peer's EOF).
    #[inline]
    pub fn reads(self) -> bool {
        match self {
            Phase::AwaitingProxy { .. } | Phase::Open | Phase::Lingering { .. } => true,
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
            (_, Event::Evicted) => Closed(CloseReason::MemoryPressure),
            (_, Event::Deadline) => Closed(self.reason().at_drain_deadline()),

            (AwaitingProxy { .. }, Event::ProxyAccepted) => Open,
            (AwaitingProxy { .. }, Event::ProxyRejected | Event::Eof) => {
                Closed(CloseReason::ProxyHeader)
            }
            (AwaitingProxy { until }, Event::Tick { now }) if now.reached(until) => {
                Closed(CloseReason::ProxyTimeout)
            }

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
                quiet_until: now.after(LINGER_QUIET),
            },

            (
                Flushing {
                    reason,
                    until,
                    peer_eof,
                },
                Event::Progress { now, cap },
            ) => {
                let earned = now.after(DRAIN_LINGER);
                Flushing {
                    reason,
                    until: cap.map_or(earned, |cap| earned.earlier(cap)).later(until),
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
                until: until.earlier(now.after(LINGER_MAX)),
                quiet_until: now.after(LINGER_QUIET),
            },
            (Flushing { reason, .. }, Event::FinFailed) => Closed(reason),

            (Flushing { reason, until, .. }, Event::Tick { now }) if now.reached(until) => {
                Closed(reason.at_drain_deadline())
            }
            (Lingering { reason, until, .. }, Event::Tick { now }) if now.reached(until) => {
                Closed(reason.at_drain_deadline())
            }
            (
                Lingering {
                    reason,
                    quiet_until,
                    ..
                },
                Event::Tick { now },
            ) if now.reached(quiet_until) => Closed(reason),

            (Open | AwaitingProxy { .. }, Event::BeginDraining { reason, until }) => Flushing {
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
            Phase::AwaitingProxy { .. } | Phase::Open | Phase::PeerClosed => CloseReason::Shutdown,
        }
    }

    /// A drain's deadline brought to `until` if that is closer; never later.
    fn with_until_at_most(self, at_most: Tick) -> Phase {
        match self {
            Phase::Flushing {
                reason,
                until,
                peer_eof,
            } => Phase::Flushing {
                reason,
                until: until.earlier(at_most),
                peer_eof,
            },
            Phase::Lingering {
                reason,
                until,
                quiet_until,
            } => Phase::Lingering {
                reason,
                until: until.earlier(at_most),
                quiet_until,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Close, Nothing, SendFin};
    use CloseReason::*;

    /// One row: in phase `from`, `event` leads to `next` and `action`.
    struct Case {
        name: &'static str,
        from: Phase,
        event: Event,
        next: Phase,
        action: Action,
    }

    fn flushing(reason: CloseReason, until: Tick, peer_eof: bool) -> Phase {
        Phase::Flushing {
            reason,
            until,
            peer_eof,
        }
    }

    fn lingering(reason: CloseReason, until: Tick, quiet_until: Tick) -> Phase {
        Phase::Lingering {
            reason,
            until,
            quiet_until,
        }
    }

    fn case(name: &'static str, from: Phase, event: Event, next: Phase, action: Action) -> Case {
        Case {
            name,
            from,
            event,
            next,
            action,
        }
    }

    /// Where the tables below start their clock: at the epoch, half way
    /// round, and 1.5 s before the tick count wraps (49.7 days of uptime),
    /// so their deadlines fall on the other side of the wrap.
    const STARTS: [u32; 3] = [0, 1 << 31, u32::MAX - 1500];

    /// Every transition, as a table run without a socket, at each start.
    #[test]
    fn transitions() {
        for start in STARTS {
            transitions_from(Tick::from_millis(start));
        }
    }

    fn transitions_from(t0: Tick) {
        let ms = |n: u64| t0.after(Duration::from_millis(n));
        let (open, peer_closed) = (Phase::Open, Phase::PeerClosed);
        // A drain due at 2 s; a linger due at 2 s, quiet from 500 ms.
        let flush = |reason, peer_eof| flushing(reason, ms(2000), peer_eof);
        let linger = |reason| lingering(reason, ms(2000), ms(500));
        let awaiting = Phase::AwaitingProxy { until: ms(5000) };
        let cases = [
            // --proxy-protocol: the header first.
            case(
                "header accepted: serve",
                awaiting,
                Event::ProxyAccepted,
                open,
                Nothing,
            ),
            case(
                "header rejected",
                awaiting,
                Event::ProxyRejected,
                Phase::Closed(ProxyHeader),
                Close,
            ),
            case(
                "EOF before the header ended",
                awaiting,
                Event::Eof,
                Phase::Closed(ProxyHeader),
                Close,
            ),
            case(
                "header bytes while awaiting",
                awaiting,
                Event::Input { now: ms(100) },
                awaiting,
                Nothing,
            ),
            case(
                "tick before the header deadline",
                awaiting,
                Event::Tick { now: ms(4999) },
                awaiting,
                Nothing,
            ),
            case(
                "the header deadline passes",
                awaiting,
                Event::Tick { now: ms(5000) },
                Phase::Closed(ProxyTimeout),
                Close,
            ),
            case(
                "nothing is owed while awaiting",
                awaiting,
                Event::Flushed,
                awaiting,
                Nothing,
            ),
            case(
                "shutdown while awaiting the header: drained as if open",
                awaiting,
                Event::BeginDraining {
                    reason: Shutdown,
                    until: ms(2000),
                },
                flush(Shutdown, false),
                Nothing,
            ),
            case(
                "error while awaiting the header",
                awaiting,
                Event::Error,
                Phase::Closed(Error),
                Close,
            ),
            case(
                "a header verdict after the header changes nothing",
                open,
                Event::ProxyRejected,
                open,
                Nothing,
            ),
            case(
                "a late verdict on a closed connection",
                Phase::Closed(ProxyTimeout),
                Event::ProxyAccepted,
                Phase::Closed(ProxyTimeout),
                Nothing,
            ),
            // The peer's EOF in each phase.
            case("eof while open", open, Event::Eof, peer_closed, Nothing),
            case("eof again", peer_closed, Event::Eof, peer_closed, Nothing),
            case(
                "eof while flushing: flush on, read no more",
                flush(BadFrame, false),
                Event::Eof,
                flush(BadFrame, true),
                Nothing,
            ),
            case(
                "eof after eof while flushing",
                flush(BadFrame, true),
                Event::Eof,
                flush(BadFrame, true),
                Nothing,
            ),
            case(
                "eof while lingering ends it cleanly",
                linger(Once),
                Event::Eof,
                Phase::Closed(Once),
                Close,
            ),
            case(
                "eof once closed",
                Phase::Closed(PeerClosed),
                Event::Eof,
                Phase::Closed(PeerClosed),
                Nothing,
            ),
            // Input: only a linger cares (its quiet spell starts over).
            case(
                "input while open",
                open,
                Event::Input { now: ms(100) },
                open,
                Nothing,
            ),
            case(
                "input while flushing is discarded",
                flush(Shutdown, false),
                Event::Input { now: ms(100) },
                flush(Shutdown, false),
                Nothing,
            ),
            case(
                "input while lingering restarts the quiet spell",
                linger(Shutdown),
                Event::Input { now: ms(300) },
                lingering(Shutdown, ms(2000), ms(800)),
                Nothing,
            ),
            // Owed bytes flushed.
            case("flushed while open", open, Event::Flushed, open, Nothing),
            case(
                "flushed after the peer's FIN",
                peer_closed,
                Event::Flushed,
                Phase::Closed(PeerClosed),
                Close,
            ),
            case(
                "flushed after the peer's FIN while we end it: no FIN of ours",
                flush(IdleTimeout, true),
                Event::Flushed,
                Phase::Closed(IdleTimeout),
                Close,
            ),
            case(
                "flushed: send our FIN",
                flush(Once, false),
                Event::Flushed,
                flush(Once, false),
                SendFin,
            ),
            case(
                "flushed while lingering (nothing was owed)",
                linger(Once),
                Event::Flushed,
                linger(Once),
                Nothing,
            ),
            // Our FIN.
            case(
                "FIN sent: linger, quiet spell from now, deadline at most LINGER_MAX away",
                flushing(Shutdown, ms(10_000), false),
                Event::FinSent { now: ms(100) },
                lingering(Shutdown, ms(2100), ms(600)),
                Nothing,
            ),
            case(
                "FIN sent keeps a closer deadline",
                flushing(Shutdown, ms(300), false),
                Event::FinSent { now: ms(100) },
                lingering(Shutdown, ms(300), ms(600)),
                Nothing,
            ),
            case(
                "FIN failed",
                flush(BadFrame, false),
                Event::FinFailed,
                Phase::Closed(BadFrame),
                Close,
            ),
            // Progress extends a drain, never past the shutdown deadline,
            // never closer.
            case(
                "progress earns DRAIN_LINGER from now",
                flush(BadFrame, false),
                Event::Progress {
                    now: ms(1000),
                    cap: None,
                },
                flushing(BadFrame, ms(3000), false),
                Nothing,
            ),
            case(
                "progress earns time only up to the shutdown deadline",
                flush(BadFrame, false),
                Event::Progress {
                    now: ms(1000),
                    cap: Some(ms(2500)),
                },
                flushing(BadFrame, ms(2500), false),
                Nothing,
            ),
            case(
                "progress never brings the deadline closer",
                flush(Shutdown, false),
                Event::Progress {
                    now: ms(100),
                    cap: Some(ms(1000)),
                },
                flush(Shutdown, false),
                Nothing,
            ),
            case(
                "progress after the peer's FIN still earns time",
                flush(Once, true),
                Event::Progress {
                    now: ms(1000),
                    cap: None,
                },
                flushing(Once, ms(3000), true),
                Nothing,
            ),
            case(
                "progress outside a flush changes nothing",
                linger(Once),
                Event::Progress {
                    now: ms(1000),
                    cap: None,
                },
                linger(Once),
                Nothing,
            ),
            case(
                "progress while open",
                open,
                Event::Progress {
                    now: ms(1000),
                    cap: None,
                },
                open,
                Nothing,
            ),
            // The sweep's tick: deadlines and quiet spells.
            case(
                "tick before the deadline",
                flush(BadFrame, false),
                Event::Tick { now: ms(1999) },
                flush(BadFrame, false),
                Nothing,
            ),
            case(
                "deadline passes while flushing",
                flush(BadFrame, false),
                Event::Tick { now: ms(2000) },
                Phase::Closed(DrainTimeout),
                Close,
            ),
            case(
                "an idle drain past its deadline stays an idle timeout",
                flush(IdleTimeout, false),
                Event::Tick { now: ms(2000) },
                Phase::Closed(IdleTimeout),
                Close,
            ),
            case(
                "tick while lingering, not yet quiet",
                linger(Shutdown),
                Event::Tick { now: ms(499) },
                linger(Shutdown),
                Nothing,
            ),
            case(
                "quiet spell expires",
                linger(Shutdown),
                Event::Tick { now: ms(500) },
                Phase::Closed(Shutdown),
                Close,
            ),
            case(
                "deadline passes while lingering (it wins over the quiet spell)",
                lingering(Once, ms(400), ms(500)),
                Event::Tick { now: ms(600) },
                Phase::Closed(DrainTimeout),
                Close,
            ),
            case(
                "tick while open",
                open,
                Event::Tick { now: ms(9000) },
                open,
                Nothing,
            ),
            case(
                "tick after the peer's FIN",
                peer_closed,
                Event::Tick { now: ms(9000) },
                peer_closed,
                Nothing,
            ),
            case(
                "tick once closed",
                Phase::Closed(Once),
                Event::Tick { now: ms(9000) },
                Phase::Closed(Once),
                Nothing,
            ),
            // A hard deadline noticed by the loop.
            case(
                "deadline while open",
                open,
                Event::Deadline,
                Phase::Closed(DrainTimeout),
                Close,
            ),
            case(
                "deadline after the peer's FIN",
                peer_closed,
                Event::Deadline,
                Phase::Closed(DrainTimeout),
                Close,
            ),
            case(
                "deadline while flushing",
                flush(Once, true),
                Event::Deadline,
                Phase::Closed(DrainTimeout),
                Close,
            ),
            case(
                "deadline while flushing for idleness",
                flush(IdleTimeout, false),
                Event::Deadline,
                Phase::Closed(IdleTimeout),
                Close,
            ),
            case(
                "deadline while lingering",
                linger(BadFrame),
                Event::Deadline,
                Phase::Closed(DrainTimeout),
                Close,
            ),
            case(
                "deadline once closed",
                Phase::Closed(PeerClosed),
                Event::Deadline,
                Phase::Closed(PeerClosed),
                Nothing,
            ),
            // begin_draining on each phase.
            case(
                "begin draining while open",
                open,
                Event::BeginDraining {
                    reason: Once,
                    until: ms(2000),
                },
                flush(Once, false),
                Nothing,
            ),
            case(
                "begin draining after the peer's FIN",
                peer_closed,
                Event::BeginDraining {
                    reason: Shutdown,
                    until: ms(2000),
                },
                flush(Shutdown, true),
                Nothing,
            ),
            case(
                "shutdown shortens a flush and keeps its reason",
                flush(BadFrame, false),
                Event::BeginDraining {
                    reason: Shutdown,
                    until: ms(1000),
                },
                flushing(BadFrame, ms(1000), false),
                Nothing,
            ),
            case(
                "a later deadline does not lengthen a flush",
                flush(BadFrame, true),
                Event::BeginDraining {
                    reason: Shutdown,
                    until: ms(5000),
                },
                flush(BadFrame, true),
                Nothing,
            ),
            case(
                "shutdown shortens a linger and keeps its reason",
                linger(Once),
                Event::BeginDraining {
                    reason: Shutdown,
                    until: ms(1000),
                },
                lingering(Once, ms(1000), ms(500)),
                Nothing,
            ),
            case(
                "a later deadline does not lengthen a linger",
                linger(Once),
                Event::BeginDraining {
                    reason: Shutdown,
                    until: ms(5000),
                },
                linger(Once),
                Nothing,
            ),
            case(
                "begin draining once closed",
                Phase::Closed(Error),
                Event::BeginDraining {
                    reason: Shutdown,
                    until: ms(5000),
                },
                Phase::Closed(Error),
                Nothing,
            ),
            // Errors.
            case(
                "error while open",
                open,
                Event::Error,
                Phase::Closed(Error),
                Close,
            ),
            case(
                "error after the peer's FIN",
                peer_closed,
                Event::Error,
                Phase::Closed(Error),
                Close,
            ),
            case(
                "error while flushing",
                flush(BadFrame, false),
                Event::Error,
                Phase::Closed(Error),
                Close,
            ),
            case(
                "error while lingering",
                linger(Once),
                Event::Error,
                Phase::Closed(Error),
                Close,
            ),
            // Eviction under memory pressure.
            case(
                "evicted while open",
                open,
                Event::Evicted,
                Phase::Closed(MemoryPressure),
                Close,
            ),
            case(
                "evicted while flushing",
                flush(BadFrame, false),
                Event::Evicted,
                Phase::Closed(MemoryPressure),
                Close,
            ),
            case(
                "evicted once closed keeps the first reason",
                Phase::Closed(PeerClosed),
                Event::Evicted,
                Phase::Closed(PeerClosed),
                Nothing,
            ),
            case(
                "error once closed keeps the first reason",
                Phase::Closed(PeerClosed),
                Event::Error,
                Phase::Closed(PeerClosed),
                Nothing,
            ),
        ];
        for c in cases {
            let step = c.from.on(c.event);
            assert_eq!(
                step,
                Step {
                    next: c.next,
                    action: c.action
                },
                "{} (from {t0:?}): {:?} on {:?}",
                c.name,
                c.event,
                c.from
            );
        }
    }

    /// Whatever happens in whatever phase: `Close` exactly when a
    /// connection enters `Closed`, `SendFin` only from a flush, and a
    /// closed connection never comes back.
    #[test]
    fn actions_match_the_phases_they_lead_to() {
        for start in STARTS {
            actions_match_from(Tick::from_millis(start));
        }
    }

    fn actions_match_from(t0: Tick) {
        let at = |n: u64| t0.after(Duration::from_millis(n));
        let mut phases = vec![
            Phase::Open,
            Phase::PeerClosed,
            Phase::AwaitingProxy { until: at(1000) },
        ];
        for reason in CloseReason::ALL {
            phases.push(Phase::Closed(reason));
            for peer_eof in [false, true] {
                phases.push(flushing(reason, at(1000), peer_eof));
            }
            phases.push(lingering(reason, at(1000), at(500)));
        }
        let mut events = vec![
            Event::Eof,
            Event::Flushed,
            Event::FinFailed,
            Event::Deadline,
            Event::Error,
            Event::Evicted,
            Event::ProxyAccepted,
            Event::ProxyRejected,
        ];
        for n in [0, 499, 500, 999, 1000, 5000] {
            let now = at(n);
            events.extend([
                Event::Input { now },
                Event::Progress { now, cap: None },
                Event::Progress {
                    now,
                    cap: Some(at(1200)),
                },
                Event::FinSent { now },
                Event::Tick { now },
                Event::BeginDraining {
                    reason: Shutdown,
                    until: now,
                },
            ]);
        }
        for &from in &phases {
            for &event in &events {
                let step = from.on(event);
                let entered_closed =
                    matches!(step.next, Phase::Closed(_)) && !matches!(from, Phase::Closed(_));
                assert_eq!(
                    step.action == Close,
                    entered_closed,
                    "{event:?} on {from:?}"
                );
                if step.action == SendFin {
                    assert!(matches!(from, Phase::Flushing { .. }), "{from:?}");
                    assert_eq!(step.next, from);
                }
                if matches!(from, Phase::Closed(_)) {
                    assert_eq!(step.next, from, "{event:?} brought {from:?} back");
                }
                // A drain's deadline only moves later by progress.
                if let (Some(before), Some(after)) = (until(from), until(step.next)) {
                    if !matches!(event, Event::Progress { .. }) {
                        assert!(
                            before.reached(after),
                            "{event:?} on {from:?} moved the deadline"
                        );
                    }
                }
            }
        }
    }

    fn until(phase: Phase) -> Option<Tick> {
        match phase {
            Phase::Flushing { until, .. } | Phase::Lingering { until, .. } => Some(until),
            _ => None,
        }
    }

    /// Which phases count as draining, which have a deadline (the worker's
    /// exact count depends on it) and which read.
    #[test]
    fn draining_and_reading_by_phase() {
        let t = Tick::from_millis(0);
        let rows = [
            (Phase::AwaitingProxy { until: t }, false, true, true),
            (Phase::Open, false, false, true),
            (Phase::PeerClosed, false, false, false),
            (flushing(Once, t, false), true, true, true),
            (flushing(Once, t, true), true, true, false),
            (lingering(Once, t, t), true, true, true),
            (Phase::Closed(Once), false, false, false),
        ];
        for (phase, draining, timed, reads) in rows {
            assert_eq!(phase.is_draining(), draining, "{phase:?}");
            assert_eq!(phase.is_timed(), timed, "{phase:?}");
            assert_eq!(phase.reads(), reads, "{phase:?}");
        }
    }
}
