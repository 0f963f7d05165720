//! One TCP or unix connection: its readiness, its outbound queue, and the
//! state machine that decides what happens to the bytes.
//!
//! Readiness is kept here, in user space (sozu's habit), because mio is
//! edge-triggered: an event says "something changed", and the connection
//! remembers `readable`/`writable` until a read or write proves otherwise.
//! Only `Connection::set_phase` changes the phase.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::event::Event;

pub mod queue;

use crate::clock::TurnClock;
use crate::config::Mode;
use crate::shared::Shared;
use crate::stats::{CloseReason, Stats};
use echod_common::framing::FrameDecoder;
use echod_common::stream::MioStream as Stream;
use queue::{ChunkPool, OutQueue};

/// Bytes read from one connection per loop turn before the others are served
/// (redis caps writes at 64 KiB per event for the same reason): one full read
/// of the loop buffer.
pub const READ_BUDGET: usize = 256 * 1024;

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

/// Who is on the other end, for logs. Unix peers are anonymous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Inet(SocketAddr),
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Inet(addr) => write!(f, "{addr}"),
            Peer::Unix => f.write_str("unix peer"),
        }
    }
}

/// The bookkeeping of a connection we are ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// Why we began ending it. Set once, by the first
    /// [`Connection::begin_draining`]: a shutdown that overtakes a drain
    /// under way shortens its deadline but keeps this.
    pub reason: CloseReason,
    /// Hard deadline. Each write that makes progress pushes it to
    /// [`DRAIN_LINGER`] from then, but never past the shutdown deadline
    /// (`Shared::shutdown_deadline`) and never closer. Invariant: once
    /// shutdown has begun, `until <= ` the shutdown deadline.
    pub until: Instant,
    /// Set when our FIN has been sent: closed once no input arrived until then.
    pub quiet_until: Option<Instant>,
    /// The peer's FIN has been read.
    pub peer_eof: bool,
}

/// Where a connection is in its life. Only `Connection::set_phase` changes it.
///
/// `repr(u8)` gives the phase an explicit tag: without it the tag hides in a
/// niche of `Drain`'s `Instant`s, and every `match` on the hot path decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading and echoing; reading pauses while the queue is over the limit.
    Open,
    /// Peer sent FIN: echo what is owed, then close.
    PeerClosed,
    /// We are ending it: flush what is owed, half-close, discard input until
    /// EOF, a quiet spell, or the deadline.
    Draining(Drain),
    /// Done; removed from the slab after this event batch.
    Closed(CloseReason),
}

/// What the loop should do with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing to do until the next event.
    Wait,
    /// Still readable after its budget: serve again before the next blocking poll.
    Again,
    /// Closed: reap after the batch (the reason is the connection's own,
    /// [`Connection::closed_reason`]).
    Reap,
}

/// A connection's whole state. Small on purpose: an idle one costs this
/// struct plus its slab slot, and no buffer (see docs/ARCHITECTURE.md).
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    peer: Peer,
    queue: OutQueue,
    phase: Phase,
    /// Framed mode's decoder; `None` in echo mode.
    decoder: Option<FrameDecoder>,
    /// Last moment a byte moved either way; kept only with `--idle-timeout`
    /// (otherwise the moment of accept, never read).
    last_active: Instant,
    readable: bool,
    writable: bool,
    /// The kernel reported the peer's FIN/HUP: keep reading to EOF even after
    /// a short read (the edge for it has already been delivered).
    read_closed: bool,
    /// Over `--queue-limit`: not read until the queue drains to half of it.
    paused: bool,
}

impl Connection {
    /// A new connection, optimistically writable (a fresh socket is).
    pub fn new(stream: Stream, peer: Peer, mode: Mode, max_frame: u64, now: Instant) -> Self {
        Connection {
            stream,
            peer,
            queue: OutQueue::new(),
            phase: Phase::Open,
            decoder: (mode == Mode::Framed).then(|| FrameDecoder::new(max_frame)),
            last_active: now,
            readable: false,
            writable: true,
            read_closed: false,
            paused: false,
        }
    }

    /// Who is on the other end.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// The current phase.
    #[cfg(test)]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why it closed, once it has.
    pub fn closed_reason(&self) -> Option<CloseReason> {
        match self.phase {
            Phase::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Whether the connection is being ended by us (needs deadline checks).
    pub fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining(_))
    }

    /// Whether reading is stopped because more than `--queue-limit` bytes are
    /// queued (until the queue drains to half of it).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// When the last byte moved either way.
    pub fn last_active(&self) -> Instant {
        self.last_active
    }

    /// Records what an event says about the socket's readiness.
    pub fn on_event(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_read_closed() {
            self.read_closed = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.writable = true;
        }
    }

    /// The one place the phase changes.
    fn set_phase(&mut self, phase: Phase) {
        debug_assert!(
            !matches!(self.phase, Phase::Closed(_)),
            "a closed connection does not come back"
        );
        self.phase = phase;
    }

    /// Starts ending the connection for `reason`: what is owed is still
    /// flushed, then we half-close and discard input until EOF, a quiet
    /// spell, or `until`.
    ///
    /// On a connection already draining, a later call may only bring
    /// `until` closer; the drain keeps the reason it began with (a
    /// connection draining after a bad frame is still counted as one when
    /// a shutdown shortens its deadline). On a closed connection it does
    /// nothing.
    pub fn begin_draining(&mut self, reason: CloseReason, until: Instant) {
        match self.phase {
            Phase::Open | Phase::PeerClosed => {
                let peer_eof = self.phase == Phase::PeerClosed;
                self.set_phase(Phase::Draining(Drain {
                    reason,
                    until,
                    quiet_until: None,
                    peer_eof,
                }));
            }
            Phase::Draining(drain) if until < drain.until => {
                self.set_phase(Phase::Draining(Drain { until, ..drain }));
            }
            _ => {}
        }
    }

    /// Timer check for a draining connection: closes it if its quiet spell
    /// or its deadline has passed (the latter as
    /// [`Connection::close_at_deadline`] does). Returns whether it is now
    /// closed.
    pub fn drain_expired(&mut self, now: Instant) -> bool {
        let Phase::Draining(drain) = self.phase else {
            return false;
        };
        if now >= drain.until {
            self.close_at_deadline();
            return true;
        }
        if drain.quiet_until.is_some_and(|q| now >= q) {
            self.set_phase(Phase::Closed(drain.reason));
            return true;
        }
        false
    }

    /// A hard deadline passed before the connection could be ended cleanly:
    /// its drain's own, or the shutdown deadline, whichever the loop notices
    /// first. Closes it, counted as [`CloseReason::at_drain_deadline`] says
    /// for the reason it was being ended for ([`CloseReason::Shutdown`] if
    /// it was not draining), so both count it the same. A closed
    /// connection stays as it is. The socket is dropped when reaped.
    pub fn close_at_deadline(&mut self) {
        let reason = match self.phase {
            Phase::Closed(_) => return,
            Phase::Draining(drain) => drain.reason,
            Phase::Open | Phase::PeerClosed => CloseReason::Shutdown,
        };
        self.set_phase(Phase::Closed(reason.at_drain_deadline()));
    }

    /// Closes at once for `reason`; the socket is dropped when reaped.
    fn force_close(&mut self, reason: CloseReason) {
        if !matches!(self.phase, Phase::Closed(_)) {
            self.set_phase(Phase::Closed(reason));
        }
    }

    /// Queues `bytes` to be sent before anything the peer sends is echoed.
    pub fn send_banner(&mut self, bytes: &[u8], shared: &mut Shared) -> Next {
        if let Err(e) = self.send([bytes], shared) {
            return self.fail(e);
        }
        Next::Wait
    }

    /// Does everything the connection can do now: flush, read, echo, change
    /// phase. Called after an event, from the ready list, and by timers.
    ///
    /// The steady state of echo mode takes [`Connection::echo_steady`]: one
    /// read, one write. The general loop below keeps only the open state
    /// inline; everything else happens in [`Connection::settle_phase`], out
    /// of line.
    pub fn drive(&mut self, shared: &mut Shared) -> Next {
        if self.in_steady_echo(shared) {
            if let Some(next) = self.echo_steady(shared) {
                return next;
            }
        }
        let mut budget = READ_BUDGET;
        loop {
            if !self.queue.is_empty() {
                if let Err(e) = self.flush(shared) {
                    return self.fail(e);
                }
                if self.paused && self.queue.len() <= shared.queue_limit / 2 {
                    self.paused = false;
                }
            }
            if !matches!(self.phase, Phase::Open) {
                if let Some(next) = self.settle_phase(shared) {
                    return next;
                }
            }
            if !self.readable || self.paused {
                return Next::Wait;
            }
            if budget == 0 {
                return Next::Again;
            }
            match self.read_once(shared) {
                Ok(n) => budget = budget.saturating_sub(n.max(1)),
                Err(e) => return self.fail(e),
            }
        }
    }

    /// The steady state of an echo connection: open, echo mode, not
    /// `--once`, nothing owed, readable and writable, not paused, no FIN seen.
    #[inline(always)]
    fn in_steady_echo(&self, shared: &Shared) -> bool {
        matches!(self.phase, Phase::Open)
            && self.decoder.is_none()
            && !shared.once
            && self.queue.is_empty()
            && self.readable
            && self.writable
            && !self.paused
            && !self.read_closed
    }

    /// The steady state in the C server's steps: one read into the loop
    /// buffer, one write of what it read, with the same bookkeeping as the
    /// general path (`recv`, `wrote`, `queue_rest`), so nothing is read
    /// twice or lost: `None` hands what is left (EOF, WouldBlock, an
    /// interrupted read, bytes queued) to the general path.
    #[inline(always)]
    fn echo_steady(&mut self, shared: &mut Shared) -> Option<Next> {
        let n = match self.recv(
            &mut shared.read_buf,
            &mut shared.stats,
            shared.track_idle.then_some(&shared.clock),
        ) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) => return Some(self.fail(e)),
        };
        let input = &shared.read_buf[..n];
        let result = self.stream.write(input);
        let written = match self.wrote(result, n, &mut shared.stats) {
            Ok(w) => w,
            Err(e) => return Some(self.fail(e)),
        };
        if written < n {
            // The socket did not take it all: queue the rest and let the
            // general path flush, pause or read on.
            self.queue_rest(&[input], written, &mut shared.pool, shared.queue_limit);
            return None;
        }
        // Still readable only after a full buffer: more may be waiting, but
        // its budget (one full read) is spent, so it is served again after
        // the others.
        Some(if self.readable {
            Next::Again
        } else {
            Next::Wait
        })
    }

    /// Outside `Open`: moves the phase on once what is owed is out. Returns
    /// what `drive` should return, or `None` to go on reading (a draining
    /// connection discards input until EOF).
    #[inline(never)]
    fn settle_phase(&mut self, shared: &Shared) -> Option<Next> {
        match self.phase {
            Phase::Open => None,
            Phase::Closed(_) => Some(Next::Reap),
            Phase::PeerClosed if self.queue.is_empty() => {
                self.set_phase(Phase::Closed(CloseReason::PeerClosed));
                Some(Next::Reap)
            }
            Phase::PeerClosed => Some(Next::Wait),
            Phase::Draining(drain) => {
                if self.queue.is_empty() {
                    if drain.peer_eof {
                        self.set_phase(Phase::Closed(drain.reason));
                        return Some(Next::Reap);
                    }
                    if drain.quiet_until.is_none() {
                        // Owed bytes are out: FIN, then drain input so our
                        // close does not become a reset that wipes the last
                        // echoes.
                        if self.stream.shutdown_write().is_err() {
                            self.set_phase(Phase::Closed(drain.reason));
                            return Some(Next::Reap);
                        }
                        let now = shared.clock.now();
                        self.set_phase(Phase::Draining(Drain {
                            until: drain.until.min(now + LINGER_MAX),
                            quiet_until: Some(now + LINGER_QUIET),
                            ..drain
                        }));
                    }
                }
                drain.peer_eof.then_some(Next::Wait)
            }
        }
    }

    /// One read into the loop's shared buffer, and what follows from it.
    /// Returns the bytes read.
    fn read_once(&mut self, shared: &mut Shared) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut shared.read_buf);
        let outcome = match self.recv(
            &mut buf,
            &mut shared.stats,
            shared.track_idle.then_some(&shared.clock),
        ) {
            Ok(0) => Ok(0),
            Ok(n) => self.on_input(&buf[..n], shared).map(|()| n),
            Err(e) => Err(e),
        };
        shared.read_buf = buf;
        outcome
    }

    /// One read into `buf`, and what it says about the socket: readiness,
    /// the peer's EOF (the phase moves on), the counter and, when idle time
    /// is tracked (`activity`), the idle timestamp. `Ok(0)` means nothing to
    /// act on: EOF, WouldBlock, or an interrupted read (still readable, so
    /// read again).
    #[inline(always)]
    fn recv(
        &mut self,
        buf: &mut [u8],
        stats: &mut Stats,
        activity: Option<&TurnClock>,
    ) -> io::Result<usize> {
        match self.stream.read(buf) {
            Ok(0) => {
                self.readable = false;
                self.on_eof();
                Ok(0)
            }
            Ok(n) => {
                stats.bytes_in += n as u64;
                if let Some(clock) = activity {
                    self.last_active = clock.now();
                }
                if n < buf.len() && !self.read_closed {
                    // Short read: the socket is drained; edge-triggered epoll
                    // reports new data, so the read that would only say
                    // WouldBlock is skipped.
                    self.readable = false;
                }
                Ok(n)
            }
            Err(e) => not_done(e, &mut self.readable),
        }
    }

    fn on_eof(&mut self) {
        match self.phase {
            Phase::Open => {
                if let Some(d) = &self.decoder {
                    if !d.at_boundary() {
                        debug!("{}: peer closed in the middle of a frame", self.peer);
                    }
                }
                self.set_phase(Phase::PeerClosed);
            }
            Phase::Draining(drain) => self.set_phase(Phase::Draining(Drain {
                peer_eof: true,
                ..drain
            })),
            _ => {}
        }
    }

    /// What the bytes just read mean in the current phase and mode.
    fn on_input(&mut self, input: &[u8], shared: &mut Shared) -> io::Result<()> {
        match self.phase {
            Phase::Open => {}
            Phase::Draining(drain) => {
                // Input after our decision is discarded; while it keeps
                // coming after our FIN, the quiet spell starts over.
                if drain.quiet_until.is_some() {
                    self.set_phase(Phase::Draining(Drain {
                        quiet_until: Some(shared.clock.now() + LINGER_QUIET),
                        ..drain
                    }));
                }
                return Ok(());
            }
            Phase::PeerClosed | Phase::Closed(_) => return Ok(()),
        }
        let once = shared.once;
        match self.decoder.as_mut() {
            None => {
                self.send([input], shared)?;
                if once {
                    let until = shared.clock.now() + DRAIN_LINGER;
                    self.begin_draining(CloseReason::Once, until);
                }
            }
            Some(decoder) => {
                let max_frames = if once { 1 } else { u64::MAX };
                let decoded = decoder.decode(input, max_frames);
                let frames_done = decoder.frames();
                shared.stats.frames += decoded.frames;
                let released = &input[..decoded.released];
                self.send([decoded.carried.as_slice(), released], shared)?;
                let until = shared.clock.now() + DRAIN_LINGER;
                if let Some(err) = decoded.error {
                    if shared.bad_frame_log.allow(shared.clock.now()) {
                        warn!("{}: closing: {err}", self.peer);
                    }
                    self.begin_draining(CloseReason::BadFrame, until);
                } else if once && frames_done >= 1 {
                    self.begin_draining(CloseReason::Once, until);
                }
            }
        }
        Ok(())
    }

    /// Writes `parts` at once if nothing is queued, queueing only what the
    /// socket did not take; otherwise appends to the queue to keep order.
    /// Generic over the number of parts so the echo path (one part) compiles
    /// to a plain `write` with nothing to add up or iterate.
    #[inline]
    fn send<const N: usize>(&mut self, parts: [&[u8]; N], shared: &mut Shared) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let mut written = 0;
        if self.queue.is_empty() && self.writable {
            let result = match parts.iter().find(|p| p.len() == total) {
                Some(whole) => self.stream.write(whole),
                None => self.stream.write_vectored(&parts.map(IoSlice::new)),
            };
            written = self.wrote(result, total, &mut shared.stats)?;
            if written == total {
                return Ok(());
            }
        }
        self.queue_rest(&parts, written, &mut shared.pool, shared.queue_limit);
        Ok(())
    }

    /// What a write of `total` bytes did: counts what went out, and a short
    /// write or WouldBlock means the socket is full (not writable until the
    /// next edge). Returns the bytes written (0 after an interrupted write).
    #[inline(always)]
    fn wrote(
        &mut self,
        result: io::Result<usize>,
        total: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        match result {
            Ok(n) => {
                stats.bytes_out += n as u64;
                if n < total {
                    self.writable = false;
                }
                Ok(n)
            }
            Err(e) => not_done(e, &mut self.writable),
        }
    }

    /// Queues `parts` minus their first `skip` bytes (already written);
    /// pauses reading when the queue goes over `limit`.
    fn queue_rest(&mut self, parts: &[&[u8]], mut skip: usize, pool: &mut ChunkPool, limit: usize) {
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            self.queue.push(&part[skip..], pool);
            skip = 0;
        }
        if self.queue.len() > limit {
            self.paused = true;
        }
    }

    /// Drains the queue while the socket takes bytes.
    fn flush(&mut self, shared: &mut Shared) -> io::Result<()> {
        while self.writable && !self.queue.is_empty() {
            match self.queue.write_to(&mut self.stream, &mut shared.pool) {
                Ok((n, all)) => {
                    shared.stats.bytes_out += n as u64;
                    if shared.track_idle {
                        self.last_active = shared.clock.now();
                    }
                    if self.is_draining() {
                        // Only a drain needs the time: no clock read otherwise.
                        self.note_progress(shared.clock.now(), shared.shutdown_deadline);
                    }
                    if !all {
                        // A short write means the socket buffer is full; the
                        // next writable edge will say when it has room.
                        self.writable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A write made progress: a draining connection that has not sent its
    /// FIN yet earns [`DRAIN_LINGER`] from `now`, capped at the shutdown
    /// deadline `cap` (so a drain for shutdown, which begins at that
    /// deadline, gains nothing), and never losing time it had.
    fn note_progress(&mut self, now: Instant, cap: Option<Instant>) {
        if let Phase::Draining(drain) = self.phase {
            if drain.quiet_until.is_none() {
                let earned = now + DRAIN_LINGER;
                let until = cap.map_or(earned, |cap| earned.min(cap)).max(drain.until);
                self.set_phase(Phase::Draining(Drain { until, ..drain }));
            }
        }
    }

    #[cold]
    fn fail(&mut self, e: io::Error) -> Next {
        debug!("{}: {e}", self.peer);
        self.force_close(CloseReason::Error);
        Next::Reap
    }

    /// Returns queued chunks to the pool before the connection is dropped.
    pub fn release(&mut self, shared: &mut Shared) {
        self.queue.clear(&mut shared.pool);
    }

    /// Bytes still owed to the peer.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// A read or write that moved nothing: WouldBlock clears `ready` (the socket
/// waits for its next edge) and, like an interrupted call, counts as 0 bytes;
/// anything else is the connection's error.
#[inline(always)]
fn not_done(e: io::Error, ready: &mut bool) -> io::Result<usize> {
    match e.kind() {
        io::ErrorKind::WouldBlock => {
            *ready = false;
            Ok(0)
        }
        io::ErrorKind::Interrupted => Ok(0),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection over one end of a unix socket pair (the other end is
    /// returned so it stays open); no poll, no I/O.
    fn connection(now: Instant) -> (Connection, mio::net::UnixStream) {
        let (ours, theirs) = mio::net::UnixStream::pair().expect("socketpair");
        let conn = Connection::new(Stream::Unix(ours), Peer::Unix, Mode::Echo, 0, now);
        (conn, theirs)
    }

    fn drain_of(conn: &Connection) -> Drain {
        match conn.phase() {
            Phase::Draining(drain) => drain,
            other => panic!("not draining: {other:?}"),
        }
    }

    /// Regression: a shutdown shortening a drain under way replaced its
    /// reason, so bad frames, `--once` and idle timeouts were counted as
    /// `shutdown` (or `drain_timeout`) when SIGTERM came while they drained.
    #[test]
    fn a_shutdown_shortens_a_drain_but_keeps_its_reason() {
        let t0 = Instant::now();
        for reason in [
            CloseReason::BadFrame,
            CloseReason::Once,
            CloseReason::IdleTimeout,
        ] {
            let (mut conn, _peer) = connection(t0);
            conn.begin_draining(reason, t0 + DRAIN_LINGER);
            let deadline = t0 + Duration::from_millis(500);
            conn.begin_draining(CloseReason::Shutdown, deadline);
            let drain = drain_of(&conn);
            assert_eq!(drain.reason, reason);
            assert_eq!(
                drain.until, deadline,
                "{reason}: deadline not brought closer"
            );

            // A later, farther deadline changes nothing.
            conn.begin_draining(CloseReason::Shutdown, t0 + Duration::from_secs(60));
            assert_eq!(drain_of(&conn), drain, "{reason}");

            assert!(!conn.drain_expired(deadline - Duration::from_millis(1)));
            assert!(conn.drain_expired(deadline));
            assert_eq!(
                conn.phase(),
                Phase::Closed(reason.at_drain_deadline()),
                "{reason}"
            );
        }
    }

    /// The sweep (`drain_expired`) and the loop's close at the shutdown
    /// deadline (`close_at_deadline`) count a drain that ran out of time
    /// the same way, whatever began it.
    #[test]
    fn both_ways_a_drain_runs_out_of_time_count_the_same() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(1);
        for reason in CloseReason::ALL {
            let (mut swept, _a) = connection(t0);
            let (mut cut, _b) = connection(t0);
            for conn in [&mut swept, &mut cut] {
                conn.begin_draining(reason, deadline + Duration::from_secs(1));
                conn.begin_draining(CloseReason::Shutdown, deadline);
            }
            assert!(swept.drain_expired(deadline));
            cut.close_at_deadline();
            assert_eq!(swept.phase(), cut.phase(), "{reason}");
            assert_eq!(
                cut.phase(),
                Phase::Closed(reason.at_drain_deadline()),
                "{reason}"
            );
        }
        let (mut open, _c) = connection(t0);
        open.close_at_deadline();
        assert_eq!(open.phase(), Phase::Closed(CloseReason::DrainTimeout));
    }

    #[test]
    fn progress_earns_time_but_never_past_the_shutdown_deadline() {
        let t0 = Instant::now();
        let (mut conn, _peer) = connection(t0);
        conn.begin_draining(CloseReason::BadFrame, t0 + DRAIN_LINGER);

        // Before shutdown: each write that makes progress earns DRAIN_LINGER.
        let t1 = t0 + Duration::from_secs(1);
        conn.note_progress(t1, None);
        assert_eq!(drain_of(&conn).until, t1 + DRAIN_LINGER);

        // Shutdown with a deadline beyond the drain's: nothing shortens...
        let deadline = t1 + Duration::from_secs(3);
        conn.begin_draining(CloseReason::Shutdown, deadline);
        assert_eq!(drain_of(&conn).until, t1 + DRAIN_LINGER);
        // ...but progress now earns time only up to the deadline.
        let t2 = t1 + Duration::from_secs(2);
        conn.note_progress(t2, Some(deadline));
        assert_eq!(drain_of(&conn).until, deadline);
        conn.note_progress(t2 + Duration::from_millis(500), Some(deadline));
        let drain = drain_of(&conn);
        assert_eq!(drain.until, deadline);
        assert_eq!(drain.reason, CloseReason::BadFrame);
    }

    #[test]
    fn a_drain_begun_by_shutdown_keeps_the_shutdown_deadline() {
        let t0 = Instant::now();
        let (mut conn, _peer) = connection(t0);
        let deadline = t0 + Duration::from_secs(5);
        conn.begin_draining(CloseReason::Shutdown, deadline);
        assert_eq!(drain_of(&conn).reason, CloseReason::Shutdown);
        conn.note_progress(t0 + Duration::from_millis(100), Some(deadline));
        assert_eq!(drain_of(&conn).until, deadline, "lost time");
        conn.note_progress(t0 + Duration::from_millis(4900), Some(deadline));
        assert_eq!(drain_of(&conn).until, deadline, "went past the deadline");
    }
}
