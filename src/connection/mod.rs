//! One TCP or unix connection: the socket glue around the pure state machine
//! in [`state`].
//!
//! This file does the I/O: reads and writes, readiness, the outbound queue.
//! What the outcomes mean for the connection's life is decided by
//! [`Phase::on`], fed through [`Connection::apply`]; only
//! [`Connection::set_phase`] changes the phase.
//!
//! Readiness is kept here, in user space (sozu's habit), because mio is
//! edge-triggered: an event says "something changed", and the connection
//! remembers readable/writable until a read or write proves otherwise.
//!
//! The steady echo is a state, not a predicate: the connection's [`Flags`]
//! are one byte, and it is in the steady echo exactly when that byte says
//! readable and writable and nothing else (open, plain echo without
//! `--once`, nothing owed, not paused, no FIN reported). Each flag is kept
//! where its input changes, so `drive` tests one comparison.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use log::{debug, warn};

pub mod queue;
pub mod state;

use crate::clock::{Tick, TurnClock};
use crate::config::Mode;
use crate::shared::Shared;
use crate::stats::{CloseReason, Stats};
use echod_common::framing::FrameDecoder;
use echod_common::proxy::{Parsed, ProxyParser, Source};
use echod_common::sockperf;
use echod_common::stream::MioStream as Stream;
use queue::{ChunkPool, OutQueue};
pub use state::DRAIN_LINGER;
use state::{Action, Event, Phase};

/// Bytes read from one connection per loop turn before the others are served
/// (redis caps writes at 64 KiB per event for the same reason): one full read
/// of the loop buffer.
pub const READ_BUDGET: usize = 256 * 1024;

/// What every connection may queue whatever the memory budget says: with
/// the budget spent, a connection reads only while it owes less than this,
/// and reads at most this much at a time, so a client that reads its echoes
/// is still served while non-readers hold the budget (sozu gives every
/// session its own fixed buffers for the same reason). 1,000 connections
/// over their share add at most 1,000 x (16 + 16) KiB to the budget.
pub const GUARANTEED_SHARE: usize = crate::memory::CHUNK_SIZE;

/// A read of at least this many bytes makes a plain echo connection a bulk
/// stream ([`Flags::BULK`]): its echo then splices instead of reading and
/// writing; an event that moves less turns it back.
pub const BULK_MIN: usize = 64 * 1024;

/// A bulk stream whose event moved less than this turns back to reads and
/// writes: below it, the splice that finds the socket drained costs more
/// than the copies saved.
pub const BULK_EXIT: usize = 16 * 1024;

/// `--proxy-protocol`: how long a connection may take to send its whole
/// PROXY header (the contract's 5 s). A proxy sends the header in its first
/// packet, so only a stalled or hostile peer needs more.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A [`Peer`] as a connection keeps it: 28 bytes where `Peer` takes 32
/// (`SocketAddr` pads an IPv4 address to IPv6's 28 bytes and adds a
/// 4-byte tag; here the family takes one byte of the padding), which is
/// what brings the connection from 88 to 80 bytes. Lossless: address,
/// port, IPv6 flow label and scope id all come back ([`PeerAddr::peer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerAddr {
    /// IPv6's 16 bytes, or IPv4's 4 followed by zeros.
    ip: [u8; 16],
    /// IPv6 only (zero otherwise).
    flowinfo: u32,
    /// IPv6 only (zero otherwise).
    scope_id: u32,
    /// Zero for a unix peer.
    port: u16,
    family: Family,
}

/// Which kind of address a [`PeerAddr`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Family {
    V4,
    V6,
    Unix,
}

impl PeerAddr {
    fn new(peer: Peer) -> PeerAddr {
        let (ip, flowinfo, scope_id, port, family) = match peer {
            Peer::Inet(SocketAddr::V4(a)) => {
                let mut ip = [0; 16];
                ip[..4].copy_from_slice(&a.ip().octets());
                (ip, 0, 0, a.port(), Family::V4)
            }
            Peer::Inet(SocketAddr::V6(a)) => (
                a.ip().octets(),
                a.flowinfo(),
                a.scope_id(),
                a.port(),
                Family::V6,
            ),
            Peer::Unix => ([0; 16], 0, 0, 0, Family::Unix),
        };
        PeerAddr {
            ip,
            flowinfo,
            scope_id,
            port,
            family,
        }
    }

    /// The peer it was made from.
    fn peer(self) -> Peer {
        match self.family {
            Family::V4 => {
                let [a, b, c, d, ..] = self.ip;
                Peer::Inet(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::new(a, b, c, d),
                    self.port,
                )))
            }
            Family::V6 => Peer::Inet(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(self.ip),
                self.port,
                self.flowinfo,
                self.scope_id,
            ))),
            Family::Unix => Peer::Unix,
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.peer().fmt(f)
    }
}

/// How one drive changed the number of timed connections (awaiting a PROXY
/// header, flushing or lingering), which the worker keeps exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timed {
    Same,
    Began,
    Ended,
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

/// What one read or write did, by name (a bare `Ok(0)` from a read would
/// otherwise mean end of stream, and a swallowed WouldBlock or EINTR, too).
/// Any other error stays an `io::Error`: the connection's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    /// Bytes moved (a write may move fewer than it was given, even none).
    Progress(usize),
    /// Nothing to read, or no room to write, until the socket's next edge.
    WouldBlock,
    /// A read found the end of the stream: the peer's FIN.
    Eof,
    /// A signal interrupted the call: nothing moved, try again.
    Interrupted,
}

impl Io {
    /// Names what a read returned.
    #[inline(always)]
    fn of_read(result: io::Result<usize>) -> io::Result<Io> {
        match result {
            Ok(0) => Ok(Io::Eof),
            Ok(n) => Ok(Io::Progress(n)),
            Err(e) => Io::of_error(e),
        }
    }

    /// Names what a write returned.
    #[inline(always)]
    fn of_write(result: io::Result<usize>) -> io::Result<Io> {
        match result {
            Ok(n) => Ok(Io::Progress(n)),
            Err(e) => Io::of_error(e),
        }
    }

    /// WouldBlock and EINTR are outcomes; anything else is an error.
    #[inline(always)]
    fn of_error(e: io::Error) -> io::Result<Io> {
        match e.kind() {
            io::ErrorKind::WouldBlock => Ok(Io::WouldBlock),
            io::ErrorKind::Interrupted => Ok(Io::Interrupted),
            _ => Err(e),
        }
    }
}

/// A connection's flags, one bit each in one byte, so that the steady echo
/// is one state tested with one comparison ([`Flags::is_steady`]) instead
/// of an AND of eight conditions. Each bit is set and cleared where its
/// input changes: readiness by events, reads and writes; `OWED` and
/// `PAUSED` by the queue's pushes and flushes; `ENDING` by `set_phase`;
/// `NOT_PLAIN_ECHO` at birth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flags(u8);

impl Flags {
    /// The socket may have input (an event said so; no read said otherwise).
    const READABLE: u8 = 1;
    /// The socket may take bytes (an event said so; no write said otherwise).
    const WRITABLE: u8 = 1 << 1;
    /// The kernel reported the peer's FIN/HUP: keep reading to EOF even after
    /// a short read (the edge for it has already been delivered).
    const READ_CLOSED: u8 = 1 << 2;
    /// Over `--queue-limit`: not read until the queue drains to half of it.
    const PAUSED: u8 = 1 << 3;
    /// Bytes are queued: mirrors `!queue.is_empty()` (checked in `drive`).
    const OWED: u8 = 1 << 4;
    /// The phase is not `Open`.
    const ENDING: u8 = 1 << 5;
    /// Framed mode or `--once`: every read is looked at, none just echoed.
    const NOT_PLAIN_ECHO: u8 = 1 << 6;
    /// A bulk stream: a read brought at least [`BULK_MIN`] bytes, so the
    /// steady echo moves its bytes with `splice(2)` through the loop's pipe
    /// ([`Connection::echo_splice`]) until an event brings less. Set only
    /// on plain echo (never with `NOT_PLAIN_ECHO`).
    const BULK: u8 = 1 << 7;
    /// The steady echo: readable, writable, and none of the others.
    const STEADY: u8 = Flags::READABLE | Flags::WRITABLE;
    /// A value no connection's flags take (`BULK` is never set with
    /// `NOT_PLAIN_ECHO`), with or without `BULK` added: what
    /// [`Flags::is_steady`] compares with while the memory budget is spent.
    const NEVER: u8 = Flags::NOT_PLAIN_ECHO | Flags::BULK;

    #[inline(always)]
    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    #[inline(always)]
    fn set(&mut self, bit: u8) {
        self.0 |= bit;
    }

    #[inline(always)]
    fn clear(&mut self, bit: u8) {
        self.0 &= !bit;
    }

    #[inline(always)]
    fn assign(&mut self, bit: u8, on: bool) {
        if on {
            self.set(bit)
        } else {
            self.clear(bit)
        }
    }

    /// Open, plain echo, nothing owed, readable and writable, not paused, no
    /// FIN reported, and the memory budget not spent: one read, one write
    /// ([`Connection::echo_steady`]). `steady` is [`ChunkPool::steady`]:
    /// [`Flags::STEADY`] while the budget has room, a value no connection's
    /// flags take while it is spent (reads are then capped, which only the
    /// general path does). One comparison either way.
    #[inline(always)]
    fn is_steady(self, steady: u8) -> bool {
        self.0 == steady
    }
}

/// What a framed or sockperf connection's input goes through.
#[derive(Debug)]
enum Decoder {
    Frames(FrameDecoder),
    Sockperf(sockperf::StreamDecoder),
}

/// A connection's whole state. Small on purpose: an idle plain-echo
/// connection costs this struct in its slab slot (80 bytes on x86-64:
/// stream 8, peer 28, phase 12, last activity 4, flags 1, three pointers
/// 24, padding 3), no buffer and no heap allocation. What only some
/// connections need is behind a pointer, allocated when first needed: the
/// queue's ring (first bytes queued), the decoder (framed and sockperf
/// modes, at accept), the PROXY header parser (while awaiting it). Times
/// are [`Tick`]s, 4 bytes each. A test keeps the size from growing back.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    peer: PeerAddr,
    queue: OutQueue,
    phase: Phase,
    /// Framed or sockperf mode's decoder; `None` in echo mode (boxed: 8
    /// bytes here; only those modes pay for its 56 or 64).
    decoder: Option<Box<Decoder>>,
    /// `--proxy-protocol`: the header parser, while the header is awaited
    /// (boxed: 8 bytes here, its ~150 only while awaiting).
    proxy: Option<Box<ProxyParser>>,
    /// Last moment a byte moved either way; kept only with `--idle-timeout`
    /// (otherwise the moment of accept, never read).
    last_active: Tick,
    flags: Flags,
}

impl Connection {
    /// A new connection, optimistically writable (a fresh socket is).
    /// `once` is `--once`: like framed mode, it keeps the connection out of
    /// the steady echo, since its first read ends it. `proxy_until`
    /// (`--proxy-protocol`): it must send a PROXY header by then; it is born
    /// awaiting it, out of the steady echo (`ENDING`: the phase is not open).
    pub fn new(
        stream: Stream,
        peer: Peer,
        mode: Mode,
        once: bool,
        max_frame: u64,
        now: Tick,
        proxy_until: Option<Tick>,
    ) -> Self {
        let mut flags = Flags(Flags::WRITABLE);
        flags.assign(Flags::NOT_PLAIN_ECHO, mode != Mode::Echo || once);
        let phase = match proxy_until {
            Some(until) => Phase::AwaitingProxy { until },
            None => Phase::Open,
        };
        flags.assign(Flags::ENDING, phase != Phase::Open);
        Connection {
            stream,
            peer: PeerAddr::new(peer),
            queue: OutQueue::new(),
            phase,
            decoder: match mode {
                Mode::Echo => None,
                Mode::Framed => Some(Box::new(Decoder::Frames(FrameDecoder::new(max_frame)))),
                Mode::Sockperf => Some(Box::new(Decoder::Sockperf(sockperf::StreamDecoder::new(
                    max_frame,
                )))),
            },
            proxy: proxy_until.map(|_| Box::new(ProxyParser::new())),
            last_active: now,
            flags,
        }
    }

    /// Who is on the other end.
    pub fn peer(&self) -> Peer {
        self.peer.peer()
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

    /// Whether the connection is being ended by us, flushing or lingering.
    pub fn is_draining(&self) -> bool {
        self.phase.is_draining()
    }

    /// Whether the connection has a deadline for the worker's sweep to
    /// check: draining, or awaiting its PROXY header.
    #[inline]
    pub fn is_timed(&self) -> bool {
        self.phase.is_timed()
    }

    /// Whether reading is stopped because more than `--queue-limit` bytes are
    /// queued (until the queue drains to half of it).
    pub fn is_paused(&self) -> bool {
        self.flags.has(Flags::PAUSED)
    }

    /// When the last byte moved either way.
    pub fn last_active(&self) -> Tick {
        self.last_active
    }

    /// Records what an event says about the socket's readiness.
    #[inline]
    pub fn on_event(&mut self, event: &mio::event::Event) {
        // One read-modify-write of the flags, not one per bit.
        let error = event.is_error();
        let read_closed = event.is_read_closed();
        let mut bits = 0;
        if event.is_readable() || read_closed || error {
            bits |= Flags::READABLE;
        }
        if read_closed {
            bits |= Flags::READ_CLOSED;
        }
        if event.is_writable() || event.is_write_closed() || error {
            bits |= Flags::WRITABLE;
        }
        self.flags.set(bits);
    }

    /// The one place the phase changes (to what [`Phase::on`] decided).
    fn set_phase(&mut self, phase: Phase) {
        debug_assert!(
            !matches!(self.phase, Phase::Closed(_)),
            "a closed connection does not come back"
        );
        self.phase = phase;
        self.flags.assign(Flags::ENDING, phase != Phase::Open);
    }

    /// Feeds `event` to the state machine: moves to the phase it decides
    /// and returns the action left for the glue to do.
    fn apply(&mut self, event: Event) -> Action {
        let step = self.phase.on(event);
        if step.next != self.phase {
            self.set_phase(step.next);
        }
        step.action
    }

    /// Starts ending the connection for `reason`: what is owed is still
    /// flushed, then we half-close and discard input until EOF, a quiet
    /// spell, or `until`.
    ///
    /// On a connection already flushing or lingering, a later call may only
    /// bring `until` closer; the drain keeps the reason it began with (a
    /// connection draining after a bad frame is still counted as one when
    /// a shutdown shortens its deadline). On a closed connection it does
    /// nothing. `until` is kept as a [`Tick`] (to the millisecond); the
    /// callers' deadlines are at most `--shutdown-timeout` (<= 86,400 s)
    /// away, well within the ticks' exact range.
    pub fn begin_draining(&mut self, reason: CloseReason, until: Instant) {
        self.drain_by(reason, Tick::of(until));
    }

    /// [`Connection::begin_draining`] with the deadline as a tick.
    fn drain_by(&mut self, reason: CloseReason, until: Tick) {
        self.apply(Event::BeginDraining { reason, until });
    }

    /// Timer check for a timed connection: closes it if its PROXY header
    /// deadline, its quiet spell or its drain deadline has passed (the
    /// latter as [`Connection::close_at_deadline`] does). Returns whether
    /// it is now closed.
    pub fn drain_expired(&mut self, now: Tick) -> bool {
        self.apply(Event::Tick { now }) == Action::Close
    }

    /// A hard deadline passed before the connection could be ended cleanly:
    /// its drain's own, or the shutdown deadline, whichever the loop notices
    /// first. Closes it, counted as [`CloseReason::at_drain_deadline`] says
    /// for the reason it was being ended for ([`CloseReason::Shutdown`] if
    /// it was not draining), so both count it the same. A closed
    /// connection stays as it is. The socket is dropped when reaped.
    pub fn close_at_deadline(&mut self) {
        self.apply(Event::Deadline);
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
    /// The steady echo takes [`Connection::echo_steady`]: one read, one
    /// write. The general loop below keeps only the open state inline;
    /// everything else happens in [`Connection::settle_phase`], out of line.
    pub fn drive(&mut self, shared: &mut Shared) -> (Next, Timed) {
        debug_assert_eq!(
            self.flags.has(Flags::OWED),
            !self.queue.is_empty(),
            "the OWED flag drifted from the queue"
        );
        if self.flags.is_steady(shared.pool.steady()) {
            if let Some(next) = self.echo_steady(shared) {
                // Open before and after (or closed on an error): the count
                // of timed connections does not move.
                return (next, Timed::Same);
            }
        }
        let was_timed = self.is_timed();
        let next = self.drive_general(shared);
        let change = match next {
            Next::Reap if was_timed => Timed::Ended,
            Next::Reap => Timed::Same,
            _ => match (was_timed, self.is_timed()) {
                (false, true) => Timed::Began,
                (true, false) => Timed::Ended,
                _ => Timed::Same,
            },
        };
        (next, change)
    }

    /// Everything but the steady echo: flush, phase, framing, `--once`,
    /// budget. Out of line, so that the steady echo's call saves only the
    /// registers it uses (measured: 7 instructions per message at one
    /// connection once sockperf and PROXY code had grown this path).
    #[inline(never)]
    fn drive_general(&mut self, shared: &mut Shared) -> Next {
        if self.flags.is_steady(shared.pool.steady() | Flags::BULK) {
            if let Some(next) = self.echo_splice(shared) {
                return next;
            }
        }
        let mut budget = READ_BUDGET;
        loop {
            if self.flags.has(Flags::OWED) {
                if let Err(e) = self.flush(shared) {
                    return self.fail(e);
                }
                if self.flags.has(Flags::PAUSED) && self.may_resume(shared) {
                    self.flags.clear(Flags::PAUSED);
                }
            }
            if self.flags.has(Flags::ENDING) {
                if let Some(next) = self.settle_phase(shared) {
                    return next;
                }
            }
            if !self.flags.has(Flags::READABLE) || self.flags.has(Flags::PAUSED) {
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

    /// The steady echo in the C server's steps: one read into the loop
    /// buffer, one write of what it read, with the same bookkeeping as the
    /// general path (`recv`, `wrote`, `queue_rest`), so nothing is read
    /// twice or lost: `None` hands what is left (end of stream, WouldBlock,
    /// an interrupted read, bytes queued) to the general path.
    #[inline(always)]
    fn echo_steady(&mut self, shared: &mut Shared) -> Option<Next> {
        let n = match self.recv(
            &mut shared.read_buf,
            &mut shared.stats,
            shared.track_idle.then_some(&shared.clock),
        ) {
            Ok(Io::Progress(n)) => n,
            Ok(Io::WouldBlock | Io::Eof | Io::Interrupted) => return None,
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
        if n >= BULK_MIN {
            self.flags.set(Flags::BULK);
        }
        // Still readable only after a full buffer: more may be waiting, but
        // its budget (one full read) is spent, so it is served again after
        // the others.
        Some(if self.flags.has(Flags::READABLE) {
            Next::Again
        } else {
            Next::Wait
        })
    }

    /// The steady echo of a bulk stream: socket -> the loop's pipe ->
    /// socket with `splice(2)`, so the bytes never cross into user space
    /// (two copies fewer per byte than a read and a write). Repeats until
    /// the socket says WouldBlock or the turn's budget ([`READ_BUDGET`]) is
    /// spent: a short splice does not prove the socket drained, since the
    /// pipe can run out of slots before bytes.
    ///
    /// What the socket does not take is read back out of the pipe into the
    /// queue, charged to the memory budget as any remainder, so the pipe is
    /// empty whenever this returns. `None` hands what is left (end of
    /// stream, bytes queued, a splice the kernel refuses, an event that
    /// moved less than [`BULK_MIN`]) to the general path, which reads and
    /// writes.
    #[inline(never)]
    fn echo_splice(&mut self, shared: &mut Shared) -> Option<Next> {
        let Some(pipe) = shared.splice.as_ref() else {
            self.flags.clear(Flags::BULK);
            return None;
        };
        let fd = self.stream.as_raw_fd();
        let len = pipe.capacity().min(shared.read_buf.len());
        let mut moved = 0;
        loop {
            let n = match pipe.fill_from(fd, len) {
                Ok(0) => {
                    // The peer's FIN.
                    self.flags.clear(Flags::READABLE);
                    self.on_eof();
                    return None;
                }
                Ok(n) => n,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        self.flags.clear(Flags::READABLE);
                        break;
                    }
                    io::ErrorKind::Interrupted => continue,
                    // Not spliceable (or a real error, which the read
                    // the general path makes next will report).
                    _ => {
                        self.flags.clear(Flags::BULK);
                        return None;
                    }
                },
            };
            shared.stats.bytes_in += n as u64;
            if shared.track_idle {
                self.last_active = shared.clock.tick();
            }
            let mut sent = 0;
            while sent < n {
                match pipe.drain_to(fd, n - sent) {
                    Ok(m) => {
                        sent += m;
                        shared.stats.bytes_out += m as u64;
                        if sent < n {
                            // A short write: the socket is full.
                            self.flags.clear(Flags::WRITABLE);
                            break;
                        }
                    }
                    Err(e) => match e.kind() {
                        io::ErrorKind::WouldBlock => {
                            self.flags.clear(Flags::WRITABLE);
                            break;
                        }
                        io::ErrorKind::Interrupted => {}
                        _ => {
                            if discard(pipe, &mut shared.read_buf, n - sent).is_err() {
                                // Bytes may be left in it: no one may use it.
                                shared.splice = None;
                            }
                            return Some(self.fail(e));
                        }
                    },
                }
            }
            if sent < n {
                // Back out of the pipe into the queue: the general path
                // flushes it when the socket has room.
                let rest = &mut shared.read_buf[..n - sent];
                if let Err(e) = read_all(pipe, rest) {
                    // Cannot happen (the bytes are in the pipe), but if it
                    // did, this stream has lost bytes and the pipe may hold
                    // some: end both.
                    shared.splice = None;
                    return Some(self.fail(e));
                }
                self.queue_rest(&[rest], 0, &mut shared.pool, shared.queue_limit);
                return None;
            }
            moved += n;
            if moved >= READ_BUDGET {
                return Some(Next::Again);
            }
        }
        if moved < BULK_EXIT {
            self.flags.clear(Flags::BULK);
        }
        Some(Next::Wait)
    }

    /// Outside `Open`: tells the state machine once nothing is owed, sends
    /// our FIN when it asks for it. Returns what `drive` should return, or
    /// `None` to go on reading (a connection being ended discards input
    /// until EOF).
    #[inline(never)]
    fn settle_phase(&mut self, shared: &Shared) -> Option<Next> {
        if self.queue.is_empty() && self.apply(Event::Flushed) == Action::SendFin {
            // Owed bytes are out: FIN, then drain input so our close does
            // not become a reset that wipes the last echoes.
            let sent = match self.stream.shutdown_write() {
                Ok(()) => Event::FinSent {
                    now: shared.clock.tick(),
                },
                Err(_) => Event::FinFailed,
            };
            self.apply(sent);
        }
        match self.phase {
            Phase::Closed(_) => Some(Next::Reap),
            phase if phase.reads() => None,
            _ => Some(Next::Wait),
        }
    }

    /// One read into the loop's shared buffer, and what follows from it.
    /// Returns the bytes read.
    fn read_once(&mut self, shared: &mut Shared) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut shared.read_buf);
        let read_len = shared.pool.read_len();
        let outcome = match self.recv(
            &mut buf[..read_len],
            &mut shared.stats,
            shared.track_idle.then_some(&shared.clock),
        ) {
            Ok(Io::Progress(n)) => self.on_input(&buf[..n], shared).map(|()| n),
            Ok(Io::Eof) if self.phase == Phase::Closed(CloseReason::ProxyHeader) => {
                self.proxy_eof(shared);
                Ok(0)
            }
            Ok(Io::WouldBlock | Io::Eof | Io::Interrupted) => Ok(0),
            Err(e) => Err(e),
        };
        shared.read_buf = buf;
        outcome
    }

    /// One read into `buf`, and what it says about the socket: readiness,
    /// the peer's EOF (the phase moves on), the counter and, when idle time
    /// is tracked (`activity`), the idle timestamp.
    #[inline(always)]
    fn recv(
        &mut self,
        buf: &mut [u8],
        stats: &mut Stats,
        activity: Option<&TurnClock>,
    ) -> io::Result<Io> {
        let outcome = Io::of_read(self.stream.read(buf))?;
        match outcome {
            Io::Progress(n) => {
                stats.bytes_in += n as u64;
                if let Some(clock) = activity {
                    self.last_active = clock.tick();
                }
                if n < buf.len() && !self.flags.has(Flags::READ_CLOSED) {
                    // Short read: the socket is drained; edge-triggered epoll
                    // reports new data, so the read that would only say
                    // WouldBlock is skipped.
                    self.flags.clear(Flags::READABLE);
                }
            }
            Io::WouldBlock => self.flags.clear(Flags::READABLE),
            Io::Eof => {
                self.flags.clear(Flags::READABLE);
                self.on_eof();
            }
            // Still readable: read again.
            Io::Interrupted => {}
        }
        Ok(outcome)
    }

    #[cold]
    fn on_eof(&mut self) {
        if self.phase == Phase::Open {
            if let Some(d) = self.decoder.as_deref() {
                let at_boundary = match d {
                    Decoder::Frames(d) => d.at_boundary(),
                    Decoder::Sockperf(d) => d.at_boundary(),
                };
                if !at_boundary {
                    debug!("{}: peer closed in the middle of a frame", self.peer);
                }
            }
        }
        self.apply(Event::Eof);
    }

    /// What the bytes just read mean in the current phase and mode.
    fn on_input(&mut self, input: &[u8], shared: &mut Shared) -> io::Result<()> {
        match self.phase {
            Phase::Open => {}
            Phase::AwaitingProxy { .. } => return self.on_proxy_input(input, shared),
            Phase::Lingering { .. } => {
                // Input after our FIN is discarded, and the quiet spell
                // starts over.
                self.apply(Event::Input {
                    now: shared.clock.tick(),
                });
                return Ok(());
            }
            // Discarded: the peer closed, or we are ending it.
            Phase::PeerClosed | Phase::Flushing { .. } | Phase::Closed(_) => return Ok(()),
        }
        let once = shared.once;
        match self.decoder.as_deref_mut() {
            None => {
                self.send([input], shared)?;
                if once {
                    let until = shared.clock.tick().after(DRAIN_LINGER);
                    self.drain_by(CloseReason::Once, until);
                }
            }
            Some(Decoder::Sockperf(_)) => self.answer_sockperf(input, shared)?,
            Some(Decoder::Frames(decoder)) => {
                let max_frames = if once { 1 } else { u64::MAX };
                let decoded = decoder.decode(input, max_frames);
                let frames_done = decoder.frames();
                shared.stats.frames += decoded.frames;
                let released = &input[..decoded.released];
                self.send([decoded.carried.as_slice(), released], shared)?;
                let until = shared.clock.tick().after(DRAIN_LINGER);
                if let Some(err) = decoded.error {
                    if shared.bad_frame_log.allow(shared.clock.now()) {
                        warn!("{}: closing: {err}", self.peer);
                    }
                    self.drain_by(CloseReason::BadFrame, until);
                } else if once && frames_done >= 1 {
                    self.drain_by(CloseReason::Once, until);
                }
            }
        }
        Ok(())
    }

    /// Sockperf mode: answers the messages that ask for a reply (header with
    /// the client flag cleared, then the payload as it streams in) and
    /// consumes the rest. A length the protocol cannot follow ends the
    /// connection after what came before it, as a bad frame does.
    fn answer_sockperf(&mut self, mut input: &[u8], shared: &mut Shared) -> io::Result<()> {
        loop {
            let Some(Decoder::Sockperf(decoder)) = self.decoder.as_deref_mut() else {
                return Ok(());
            };
            let before = decoder.messages();
            let (used, event) = decoder.next_event(input);
            shared.stats.frames += decoder.messages() - before;
            let part = &input[..used];
            input = &input[used..];
            match event {
                None => return Ok(()),
                Some(sockperf::Event::Reply(header)) => self.send([&header[..]], shared)?,
                Some(sockperf::Event::Payload(_)) => self.send([part], shared)?,
                Some(sockperf::Event::Skip(_)) => {}
                Some(sockperf::Event::Error(err)) => {
                    if shared.bad_frame_log.allow(shared.clock.now()) {
                        warn!("{}: closing: {err}", self.peer);
                    }
                    let until = shared.clock.tick().after(DRAIN_LINGER);
                    self.drain_by(CloseReason::BadFrame, until);
                    return Ok(());
                }
            }
        }
    }

    /// Bytes read while awaiting the PROXY header: fed to the parser. The
    /// header is consumed, never echoed, nor counted in `bytes_in`; what
    /// follows it in the same read is the client's first data, served as
    /// any input is. Once accepted, the header's client replaces the peer
    /// (LOCAL and UNKNOWN keep the socket's), and the banner goes out.
    #[inline(never)]
    fn on_proxy_input(&mut self, input: &[u8], shared: &mut Shared) -> io::Result<()> {
        let Some(parser) = self.proxy.as_mut() else {
            return Ok(());
        };
        match parser.feed(input) {
            Parsed::Incomplete => {
                shared.stats.bytes_in = shared.stats.bytes_in.saturating_sub(input.len() as u64);
                Ok(())
            }
            Parsed::Error(e) => {
                shared.stats.bytes_in = shared.stats.bytes_in.saturating_sub(input.len() as u64);
                self.proxy = None;
                if let Some(n) = shared.proxy_log.allow_counting(shared.clock.now()) {
                    warn!("closing {}: {e} ({n} similar lines suppressed)", self.peer);
                }
                self.apply(Event::ProxyRejected);
                Ok(())
            }
            Parsed::Done { consumed, source } => {
                shared.stats.bytes_in = shared.stats.bytes_in.saturating_sub(consumed as u64);
                self.proxy = None;
                let client = match source {
                    Some(Source::Inet(addr)) => Peer::Inet(addr),
                    Some(Source::Unix) => Peer::Unix,
                    None => self.peer.peer(),
                };
                debug!("open {client} (PROXY header)");
                self.peer = PeerAddr::new(client);
                self.apply(Event::ProxyAccepted);
                if let Some(banner) = shared.banner_after_proxy.clone() {
                    self.send([&banner[..]], shared)?;
                    if shared.once {
                        let until = shared.clock.tick().after(DRAIN_LINGER);
                        self.drain_by(CloseReason::Once, until);
                        return Ok(());
                    }
                }
                match &input[consumed..] {
                    [] => Ok(()),
                    rest => self.on_input(rest, shared),
                }
            }
        }
    }

    /// The peer closed before its PROXY header ended: counted as a missing
    /// header (the phase says so), and logged.
    #[cold]
    fn proxy_eof(&mut self, shared: &mut Shared) {
        self.proxy = None;
        if let Some(n) = shared.proxy_log.allow_counting(shared.clock.now()) {
            warn!(
                "closing {}: end of stream before a complete PROXY protocol header \
                 ({n} similar lines suppressed)",
                self.peer
            );
        }
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
        if self.queue.is_empty() && self.flags.has(Flags::WRITABLE) {
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
    /// next edge). Returns the bytes written (0 after WouldBlock or an
    /// interrupted write).
    #[inline(always)]
    fn wrote(
        &mut self,
        result: io::Result<usize>,
        total: usize,
        stats: &mut Stats,
    ) -> io::Result<usize> {
        match Io::of_write(result)? {
            Io::Progress(n) => {
                stats.bytes_out += n as u64;
                if n < total {
                    self.flags.clear(Flags::WRITABLE);
                }
                Ok(n)
            }
            Io::WouldBlock => {
                self.flags.clear(Flags::WRITABLE);
                Ok(0)
            }
            Io::Interrupted | Io::Eof => Ok(0),
        }
    }

    /// Queues `parts` minus their first `skip` bytes (already written);
    /// pauses reading when the queue goes over `limit`, or over its
    /// guaranteed share ([`GUARANTEED_SHARE`]) while the daemon's memory
    /// budget is spent.
    fn queue_rest(&mut self, parts: &[&[u8]], mut skip: usize, pool: &mut ChunkPool, limit: usize) {
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            self.queue.push(&part[skip..], pool);
            skip = 0;
        }
        self.flags.assign(Flags::OWED, !self.queue.is_empty());
        let queued = self.queue.len();
        if queued > limit || (queued > GUARANTEED_SHARE && !pool.budget().has_room()) {
            self.flags.set(Flags::PAUSED);
        }
    }

    /// Whether a paused connection may read again: its queue has drained to
    /// half of `--queue-limit` (hysteresis), and either it is within its
    /// guaranteed share or the budget has room again.
    fn may_resume(&self, shared: &Shared) -> bool {
        let queued = self.queue.len();
        queued <= shared.queue_limit / 2
            && (queued <= GUARANTEED_SHARE || shared.pool.budget().has_room())
    }

    /// Closes the connection at once to give its memory back (the worker
    /// chose it as the biggest holder while the budget is spent). Returns
    /// the bytes it held.
    pub fn evict(&mut self, shared: &mut Shared) -> usize {
        let held = self.queue.len();
        self.apply(Event::Evicted);
        self.release(shared);
        held
    }

    /// Drains the queue while the socket takes bytes.
    fn flush(&mut self, shared: &mut Shared) -> io::Result<()> {
        let flushed = self.write_queued(shared);
        self.flags.assign(Flags::OWED, !self.queue.is_empty());
        flushed
    }

    fn write_queued(&mut self, shared: &mut Shared) -> io::Result<()> {
        while self.flags.has(Flags::WRITABLE) && !self.queue.is_empty() {
            let (n, all) = match self.queue.write_to(&mut self.stream, &mut shared.pool) {
                Ok(wrote) => wrote,
                Err(e) => match Io::of_error(e)? {
                    Io::WouldBlock => {
                        self.flags.clear(Flags::WRITABLE);
                        continue;
                    }
                    _ => continue,
                },
            };
            shared.stats.bytes_out += n as u64;
            if shared.track_idle {
                self.last_active = shared.clock.tick();
            }
            if self.is_draining() {
                // Only a drain needs the time: no clock read otherwise.
                self.apply(Event::Progress {
                    now: shared.clock.tick(),
                    cap: shared.shutdown_deadline.map(Tick::of),
                });
            }
            if !all {
                // A short write means the socket buffer is full; the next
                // writable edge will say when it has room.
                self.flags.clear(Flags::WRITABLE);
            }
        }
        Ok(())
    }

    #[cold]
    fn fail(&mut self, e: io::Error) -> Next {
        debug!("{}: {e}", self.peer);
        self.apply(Event::Error);
        Next::Reap
    }

    /// Returns queued chunks to the pool before the connection is dropped.
    /// Most connections close owing nothing: an empty queue holds no chunk
    /// (its invariant), so there is nothing to hand back and the drain of
    /// its ring is skipped (measured under churn, one message per
    /// connection: 75 instructions of the 1,027 a connection costs).
    #[inline]
    pub fn release(&mut self, shared: &mut Shared) {
        if !self.queue.is_empty() {
            self.release_queued(shared);
        }
    }

    #[cold]
    #[inline(never)]
    fn release_queued(&mut self, shared: &mut Shared) {
        self.queue.clear(&mut shared.pool);
        self.flags.clear(Flags::OWED);
    }

    /// Bytes still owed to the peer.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// Reads exactly `buf.len()` bytes out of the splice pipe, which holds at
/// least that many (a pipe read of bytes already in it never blocks).
#[cold]
fn read_all(pipe: &crate::sys::SplicePipe, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match pipe.read(&mut buf[got..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Empties the splice pipe of the `len` bytes a failed connection left in
/// it, so the next connection does not echo them. An error means bytes may
/// be left: the caller must give up the pipe.
#[cold]
fn discard(pipe: &crate::sys::SplicePipe, buf: &mut [u8], mut len: usize) -> io::Result<()> {
    while len > 0 {
        let n = len.min(buf.len());
        read_all(pipe, &mut buf[..n])?;
        len -= n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Where the tests' clock starts: 1 s before the tick count wraps, so
    /// their deadlines fall on the other side of the wrap.
    fn start() -> Tick {
        Tick::from_millis(u32::MAX - 1000)
    }

    /// A connection over one end of a unix socket pair (the other end is
    /// returned so it stays open); no poll, no I/O.
    fn connection(now: Tick) -> (Connection, mio::net::UnixStream) {
        let (ours, theirs) = mio::net::UnixStream::pair().expect("socketpair");
        let conn = Connection::new(
            Stream::Unix(ours),
            Peer::Unix,
            Mode::Echo,
            false,
            0,
            now,
            None,
        );
        (conn, theirs)
    }

    /// The reason and deadline of a connection still flushing.
    fn drain_of(conn: &Connection) -> (CloseReason, Tick) {
        match conn.phase() {
            Phase::Flushing { reason, until, .. } => (reason, until),
            other => panic!("not flushing: {other:?}"),
        }
    }

    /// A write of queued bytes made progress at `now`.
    fn note_progress(conn: &mut Connection, now: Tick, cap: Option<Tick>) {
        conn.apply(Event::Progress { now, cap });
    }

    /// Regression: a shutdown shortening a drain under way replaced its
    /// reason, so bad frames, `--once` and idle timeouts were counted as
    /// `shutdown` (or `drain_timeout`) when SIGTERM came while they drained.
    #[test]
    fn a_shutdown_shortens_a_drain_but_keeps_its_reason() {
        let t0 = start();
        for reason in [
            CloseReason::BadFrame,
            CloseReason::Once,
            CloseReason::IdleTimeout,
        ] {
            let (mut conn, _peer) = connection(t0);
            conn.drain_by(reason, t0.after(DRAIN_LINGER));
            let deadline = t0.after(Duration::from_millis(500));
            conn.drain_by(CloseReason::Shutdown, deadline);
            let drain = drain_of(&conn);
            assert_eq!(drain.0, reason);
            assert_eq!(drain.1, deadline, "{reason}: deadline not brought closer");

            // A later, farther deadline changes nothing.
            conn.drain_by(CloseReason::Shutdown, t0.after(Duration::from_secs(60)));
            assert_eq!(drain_of(&conn), drain, "{reason}");

            assert!(!conn.drain_expired(t0.after(Duration::from_millis(499))));
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
        let t0 = start();
        let deadline = t0.after(Duration::from_secs(1));
        for reason in CloseReason::ALL {
            let (mut swept, _a) = connection(t0);
            let (mut cut, _b) = connection(t0);
            for conn in [&mut swept, &mut cut] {
                conn.drain_by(reason, deadline.after(Duration::from_secs(1)));
                conn.drain_by(CloseReason::Shutdown, deadline);
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
        let t0 = start();
        let (mut conn, _peer) = connection(t0);
        conn.drain_by(CloseReason::BadFrame, t0.after(DRAIN_LINGER));

        // Before shutdown: each write that makes progress earns DRAIN_LINGER.
        let t1 = t0.after(Duration::from_secs(1));
        note_progress(&mut conn, t1, None);
        assert_eq!(drain_of(&conn).1, t1.after(DRAIN_LINGER));

        // Shutdown with a deadline beyond the drain's: nothing shortens...
        let deadline = t1.after(Duration::from_secs(3));
        conn.drain_by(CloseReason::Shutdown, deadline);
        assert_eq!(drain_of(&conn).1, t1.after(DRAIN_LINGER));
        // ...but progress now earns time only up to the deadline.
        let t2 = t1.after(Duration::from_secs(2));
        note_progress(&mut conn, t2, Some(deadline));
        assert_eq!(drain_of(&conn).1, deadline);
        note_progress(
            &mut conn,
            t2.after(Duration::from_millis(500)),
            Some(deadline),
        );
        assert_eq!(drain_of(&conn), (CloseReason::BadFrame, deadline));
    }

    #[test]
    fn a_drain_begun_by_shutdown_keeps_the_shutdown_deadline() {
        let t0 = start();
        let (mut conn, _peer) = connection(t0);
        let deadline = t0.after(Duration::from_secs(5));
        conn.drain_by(CloseReason::Shutdown, deadline);
        assert_eq!(drain_of(&conn).0, CloseReason::Shutdown);
        note_progress(
            &mut conn,
            t0.after(Duration::from_millis(100)),
            Some(deadline),
        );
        assert_eq!(drain_of(&conn).1, deadline, "lost time");
        note_progress(
            &mut conn,
            t0.after(Duration::from_millis(4900)),
            Some(deadline),
        );
        assert_eq!(drain_of(&conn).1, deadline, "went past the deadline");
    }

    /// `Ok(0)` from a read is the end of the stream, and nothing else is.
    #[test]
    fn io_outcomes_are_named() {
        let err = |kind: io::ErrorKind| Err(io::Error::from(kind));
        let rows: [(io::Result<usize>, Option<Io>, Option<Io>); 5] = [
            (Ok(0), Some(Io::Eof), Some(Io::Progress(0))),
            (Ok(7), Some(Io::Progress(7)), Some(Io::Progress(7))),
            (
                err(io::ErrorKind::WouldBlock),
                Some(Io::WouldBlock),
                Some(Io::WouldBlock),
            ),
            (
                err(io::ErrorKind::Interrupted),
                Some(Io::Interrupted),
                Some(Io::Interrupted),
            ),
            (err(io::ErrorKind::ConnectionReset), None, None),
        ];
        for (result, read, write) in rows {
            let copy = || match &result {
                Ok(n) => Ok(*n),
                Err(e) => Err(io::Error::from(e.kind())),
            };
            assert_eq!(Io::of_read(copy()).ok(), read, "{result:?}");
            assert_eq!(Io::of_write(copy()).ok(), write, "{result:?}");
        }
    }

    /// The steady echo is one state: readable and writable plain echo, and
    /// left as soon as any of its conditions goes.
    #[test]
    fn the_steady_echo_is_one_flag_state() {
        let t0 = start();
        let steady = |mode, once| {
            let (ours, _theirs) = mio::net::UnixStream::pair().expect("socketpair");
            let mut conn = Connection::new(Stream::Unix(ours), Peer::Unix, mode, once, 0, t0, None);
            assert!(!conn.flags.is_steady(Flags::STEADY), "not readable yet");
            conn.flags.set(Flags::READABLE);
            conn.flags.is_steady(Flags::STEADY)
        };
        assert!(steady(Mode::Echo, false));
        assert!(!steady(Mode::Echo, true), "--once");

        // Awaiting a PROXY header is not the steady echo: every read goes
        // to the parser.
        let (ours, _theirs) = mio::net::UnixStream::pair().expect("socketpair");
        let until = Some(t0.after(PROXY_HEADER_TIMEOUT));
        let mut awaiting = Connection::new(
            Stream::Unix(ours),
            Peer::Unix,
            Mode::Echo,
            false,
            0,
            t0,
            until,
        );
        awaiting.flags.set(Flags::READABLE);
        assert!(
            !awaiting.flags.is_steady(Flags::STEADY),
            "awaiting the header"
        );
        assert!(awaiting.is_timed() && !awaiting.is_draining());
        awaiting.apply(Event::ProxyAccepted);
        assert!(awaiting.flags.is_steady(Flags::STEADY), "header accepted");
        assert!(!awaiting.is_timed());
        assert!(!steady(Mode::Framed, false), "framed");

        let (mut conn, _peer) = connection(t0);
        conn.flags.set(Flags::READABLE);
        for bit in [Flags::PAUSED, Flags::OWED, Flags::READ_CLOSED] {
            let mut flags = conn.flags;
            flags.set(bit);
            assert!(!flags.is_steady(Flags::STEADY), "{bit:#b}");
        }
        assert!(conn.flags.is_steady(Flags::STEADY));
        conn.drain_by(CloseReason::Shutdown, t0.after(DRAIN_LINGER));
        assert!(!conn.flags.is_steady(Flags::STEADY), "no longer open");
    }

    /// An idle connection costs its slab slot and nothing else: this size.
    /// 80 bytes on x86-64 (see [`Connection`]); 96 in debug builds, where
    /// mio's sockets carry a selector id of their own (16 more bytes).
    #[test]
    fn an_idle_connection_stays_small() {
        use std::mem::size_of;
        let stream_extra = size_of::<Stream>() - 8;
        assert!(
            size_of::<Connection>() <= 80 + stream_extra,
            "Connection grew to {} bytes (stream {})",
            size_of::<Connection>(),
            size_of::<Stream>()
        );
        assert_eq!(size_of::<PeerAddr>(), 28);
        assert_eq!(size_of::<Phase>(), 12);
        assert_eq!(size_of::<Tick>(), 4);

        // Plain echo allocates nothing at accept: no ring, no decoder, no parser.
        let (conn, _peer) = connection(start());
        assert!(conn.decoder.is_none() && conn.proxy.is_none());
        assert!(conn.queue.is_empty());
    }

    /// The compact peer gives back exactly the address it was given.
    #[test]
    fn a_peer_comes_back_whole() {
        let peers = [
            Peer::Unix,
            Peer::Inet("192.0.2.7:40000".parse().expect("v4")),
            Peer::Inet("0.0.0.0:0".parse().expect("v4")),
            Peer::Inet("[2001:db8::1]:443".parse().expect("v6")),
            Peer::Inet("[::ffff:192.0.2.7]:9".parse().expect("v4-mapped v6")),
            Peer::Inet(SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().expect("link-local"),
                65535,
                0xabcde,
                3,
            ))),
        ];
        for peer in peers {
            let kept = PeerAddr::new(peer);
            assert_eq!(kept.peer(), peer);
            assert_eq!(kept.to_string(), peer.to_string());
        }
        assert_eq!(
            PeerAddr::new(peers[5]).to_string(),
            "[fe80::1%3]:65535",
            "scope id kept"
        );
    }
}
