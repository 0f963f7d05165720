//! One worker: a single-threaded mio loop over its own sockets, read top to
//! bottom in [`Worker::run`] the way redis's `aeProcessEvents` reads.
//!
//! One turn of the loop:
//! 1. poll (zero timeout while the ready list is not empty; retried on EINTR);
//! 2. dispatch events: accept, echo UDP, drive connections, signals;
//! 3. serve the ready list: connections that hit their read budget and
//!    listeners that hit their accept cap (edge-triggered readiness does not
//!    come back by itself);
//! 4. timers: idle sweep, drain deadlines, accept pause, shutdown deadline
//!    ([`timers`]);
//! 5. reap connections that closed during this turn, never mid-batch.
//!
//! Accept policy is in [`accept`], shutdown and the SIGUSR1 snapshot in
//! [`shutdown`]. Listeners, UDP sockets and connections live in one
//! [`Slab`]; an entry's key is its [`Token`]. Streams are registered once,
//! READABLE | WRITABLE, edge-triggered: steady state makes no epoll_ctl call.

mod accept;
mod shutdown;
mod timers;

use std::fs::File;
use std::io;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::event::Event;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::bind::WorkerSockets;
use super::control::WorkerControl;
use super::listener::Listener;
use super::notify::Notice;
use super::signals::SignalSource;
use crate::config::{Config, Mode};
use crate::connection::queue::ChunkPool;
use crate::connection::{Connection, Next, Timed};
use crate::memory::{MemoryBudget, CHUNK_SIZE};
use crate::shared::{RateLimit, Shared};
use crate::stats::{CloseReason, OpenConnections, Stats};
use crate::sys::SplicePipe;
use crate::udp::{Batch, UdpEndpoint};
use timers::idle_tick;

/// The signal pipe's token, above any slab key.
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);

/// The shutdown handle's waker, above any slab key. The lowest fixed token:
/// every token from here up is a control source, so one comparison per
/// event tells them from the slab's.
const WAKER_TOKEN: Token = Token(usize::MAX - 2);

/// Events taken per poll. Measured at 2,000 connections, depth 1 (the
/// busiest cell): polls return 1.6 events on average and only 47 of 372,000
/// filled 1,024; 4,096 changed neither CPU per message nor throughput beyond
/// noise, 64 cost more polls. A full batch just means another poll.
const EVENTS_CAPACITY: usize = 1024;

/// The loop's one read buffer. Measured at 50 connections x 16 x 4 KiB in
/// flight: 16 KiB took four reads per wakeup (+15% CPU per message); with
/// 64 KiB nine reads in ten filled the buffer exactly, so the read after
/// them only said EAGAIN; 256 KiB never filled and was cheapest. It is one
/// buffer per worker, and the largest UDP datagram fits whole.
pub const READ_BUF_SIZE: usize = 256 * 1024;

/// The size of each worker's splice pipe (plain echo of bulk streams, see
/// `Connection::echo_splice`): at most this much moves per splice.
const SPLICE_PIPE_SIZE: usize = 256 * 1024;

/// Idle chunks a worker keeps for reuse: 1,024 x 16 KiB = 16 MiB at most
/// while a burst lasts; after one, [`timers`] keeps fewer.
const POOL_MAX_IDLE: usize = 1024;

/// A worker starts watching its memory once it has lent this many chunks at
/// once (4 MiB, or a quarter of a smaller budget): the timers stay disarmed
/// in the steady echo.
const MEMORY_WATCH_CHUNKS: usize = 256;

/// What a slab slot holds.
#[derive(Debug)]
enum Entry {
    Listener(Listener),
    Udp(UdpEndpoint),
    Conn(Connection),
}

/// One single-threaded event loop.
pub(super) struct Worker {
    id: usize,
    config: Arc<Config>,
    poll: Poll,
    entries: Slab<Entry>,
    shared: Shared,
    /// Tokens to serve again before the next blocking poll.
    ready: Vec<usize>,
    /// Connections closed this turn, reaped after the batch.
    doomed: Vec<usize>,
    /// Connections open across all workers (shared): counted on admit and
    /// reap only, for an exact `peak_concurrent`.
    open: Arc<OpenConnections>,
    /// Connections with a deadline ([`Connection::is_timed`]: draining, or
    /// awaiting a PROXY header), exactly: every place that can move a
    /// connection in or out of those phases goes through [`Worker::drive`],
    /// [`Worker::end_connection`] or the sweep, which count it, or admits it.
    timed: usize,
    /// When the next pass over the connections for their deadlines is due,
    /// while any is timed: one pass per [`DRAIN_TICK`], never one per turn.
    next_drain_sweep: Instant,
    /// SIGINT/SIGTERM/SIGUSR1, when the server catches them.
    signals: Option<SignalSource>,
    /// Every worker's requests from other threads (this one's at
    /// `control_index`): shutdown, reports. Attached once all exist.
    controls: Option<(Arc<[WorkerControl]>, usize)>,
    /// Where to say that a shutdown began, when a service manager is told
    /// (`server/notify.rs`): one message per life, never per event.
    notify: Option<Sender<Notice>>,
    /// A spare descriptor, closed to accept-and-shed one connection when
    /// descriptors run out (libev's and nginx's trick).
    reserve_fd: Option<File>,
    /// Listeners waiting out an accept pause, and until when.
    accept_paused: Option<(Instant, Vec<usize>)>,
    next_idle_sweep: Option<Instant>,
    reject_log: RateLimit,
    exhausted_log: RateLimit,
    udp_log: RateLimit,
    /// The datagram buffers of `recvmmsg`/`sendmmsg`, allocated only if
    /// this worker serves UDP.
    udp_batch: Option<Box<Batch>>,
    /// Every UDP port echod serves (all workers serve the same ones): a
    /// datagram from one of them is another echo service, never answered.
    udp_ports: Vec<u16>,
    /// Loop turns completed (polls that returned, not counting EINTR), for
    /// the snapshot: with `events`, how many events a turn handles.
    loop_turns: u64,
    /// Events those turns handled (added at the end of each turn).
    events: u64,
    /// While this worker's queues hold a burst: when to look again whether
    /// the budget is spent (evict) or the burst is over (give memory back).
    next_memory_check: Option<Instant>,
    /// Memory checks in a row that found the budget spent.
    budget_spent_ticks: u32,
    /// Memory checks in a row that found the burst over.
    burst_over_ticks: u32,
    memory_log: RateLimit,
}

/// Drives `conn`; returns what to do with it next and how the number of
/// timed connections (awaiting a PROXY header, flushing or lingering)
/// changed: [`Connection::drive`] works it out on its general path only, so
/// the steady echo, which never changes phase, pays nothing for the count.
#[inline(always)]
fn drive_conn(conn: &mut Connection, shared: &mut Shared) -> (Next, Timed) {
    conn.drive(shared)
}

impl Worker {
    /// A worker owning `sockets` and `signals`; registers them (the only
    /// epoll_ctl calls besides one per accepted connection). `open` is the
    /// count of open connections all workers share. Returns the worker and
    /// the waker for its [`WorkerControl`] ([`Worker::attach`]).
    pub(super) fn new(
        id: usize,
        config: Arc<Config>,
        sockets: WorkerSockets,
        mut signals: Option<SignalSource>,
        open: Arc<OpenConnections>,
        budget: Arc<MemoryBudget>,
    ) -> io::Result<(Worker, Waker)> {
        let poll = Poll::new()?;
        // Only plain echo over stream sockets splices; a pipe that cannot be
        // made just means reads and writes.
        let plain_streams =
            config.mode == Mode::Echo && !config.once && !sockets.listeners.is_empty();
        let splice = plain_streams
            .then(|| SplicePipe::new(SPLICE_PIPE_SIZE).ok())
            .flatten();
        let mut entries = Slab::with_capacity(
            config.max_connections + sockets.listeners.len() + sockets.udp.len(),
        );
        for mut listener in sockets.listeners {
            let entry = entries.vacant_entry();
            poll.registry()
                .register(&mut listener, Token(entry.key()), Interest::READABLE)?;
            entry.insert(Entry::Listener(listener));
        }
        let udp_ports: Vec<u16> = sockets.udp.iter().map(|u| u.local_addr().port()).collect();
        for mut udp in sockets.udp {
            let entry = entries.vacant_entry();
            udp.register(poll.registry(), Token(entry.key()))?;
            entry.insert(Entry::Udp(udp));
        }
        if let Some(signals) = signals.as_mut() {
            signals.register(poll.registry(), SIGNAL_TOKEN)?;
        }
        let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
        let now = Instant::now();
        let next_idle_sweep = config.idle_timeout.map(|t| now + idle_tick(t));
        let memory_watch = (budget.limit() / CHUNK_SIZE / 4).min(MEMORY_WATCH_CHUNKS);
        let worker = Worker {
            id,
            poll,
            entries,
            shared: Shared {
                read_buf: vec![0u8; READ_BUF_SIZE].into_boxed_slice(),
                pool: ChunkPool::new(POOL_MAX_IDLE, budget, READ_BUF_SIZE, memory_watch),
                stats: Stats::default(),
                clock: Default::default(),
                track_idle: config.idle_timeout.is_some(),
                shutdown_deadline: None,
                queue_limit: config.queue_limit,
                once: config.once,
                bad_frame_log: RateLimit::new(),
                banner_after_proxy: config.banner.clone().filter(|_| config.proxy_protocol),
                proxy_log: RateLimit::new(),
                splice,
            },
            config,
            ready: Vec::new(),
            doomed: Vec::new(),
            open,
            timed: 0,
            next_drain_sweep: now,
            signals,
            controls: None,
            notify: None,
            reserve_fd: File::open("/dev/null").ok(),
            accept_paused: None,
            next_idle_sweep,
            reject_log: RateLimit::new(),
            exhausted_log: RateLimit::new(),
            udp_log: RateLimit::new(),
            udp_batch: (!udp_ports.is_empty()).then(Box::default),
            udp_ports,
            loop_turns: 0,
            events: 0,
            next_memory_check: None,
            budget_spent_ticks: 0,
            burst_over_ticks: 0,
            memory_log: RateLimit::new(),
        };
        Ok((worker, waker))
    }

    /// Runs until a signal asks to stop and the connections are flushed (or
    /// the shutdown timeout passes). Returns this worker's counters.
    pub(super) fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut serving = Vec::new();
        let mut next_timer = self.next_deadline();
        loop {
            let timeout = if self.ready.is_empty() {
                // From this turn's time (read by the timers that armed it),
                // not a fresh clock read: a timer fires at most this turn's
                // work (microseconds) late.
                next_timer.map(|d| d.saturating_duration_since(self.shared.clock.now()))
            } else {
                Some(Duration::ZERO)
            };
            let polled = self.poll.poll(&mut events, timeout);
            self.shared.clock.start_turn();
            if let Err(e) = polled {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut handled = 0;
            for event in events.iter() {
                handled += 1;
                self.dispatch(event);
            }
            self.loop_turns += 1;
            self.events += handled;
            if !self.ready.is_empty() {
                // Swapped out, so serving may refill it for the next turn.
                std::mem::swap(&mut self.ready, &mut serving);
                for key in serving.drain(..) {
                    self.serve(key);
                }
            }
            next_timer = self.run_timers();
            self.reap();
            if let Some(deadline) = self.shared.shutdown_deadline {
                if self.connections() == 0 {
                    break;
                }
                if self.shared.clock.now() >= deadline {
                    self.close_all_at_deadline();
                    break;
                }
            }
        }
        info!(
            "worker {} stopped: {} connections left",
            self.id,
            self.connections()
        );
        Ok(self.shared.stats)
    }

    fn dispatch(&mut self, event: &Event) {
        let token = event.token();
        if token >= WAKER_TOKEN {
            self.control(token);
            return;
        }
        let key = token.0;
        match self.entries.get_mut(key) {
            Some(Entry::Conn(conn)) => {
                conn.on_event(event);
                let driven = drive_conn(conn, &mut self.shared);
                self.file(key, driven);
            }
            Some(Entry::Listener(_)) => self.accept(key),
            Some(Entry::Udp(udp)) => {
                udp.on_event(event);
                self.serve_udp(key);
            }
            None => {} // closed earlier in this batch: a stale event
        }
    }

    /// A signal or the shutdown handle's waker.
    #[cold]
    fn control(&mut self, token: Token) {
        if token == SIGNAL_TOKEN {
            let Some(signals) = self.signals.as_mut() else {
                return;
            };
            let requests = signals.drain();
            if requests.snapshot {
                self.log_snapshot();
            }
            if requests.shutdown {
                self.begin_shutdown();
            }
        } else if token == WAKER_TOKEN {
            let Some((controls, index)) = self.controls.clone() else {
                return;
            };
            let control = &controls[index];
            control.answer(|| self.report());
            if control.shutdown_requested() {
                self.begin_shutdown();
            }
        }
    }

    fn serve(&mut self, key: usize) {
        match self.entries.get(key) {
            Some(Entry::Conn(_)) => self.drive(key),
            Some(Entry::Listener(_)) => self.accept(key),
            Some(Entry::Udp(_)) => self.serve_udp(key),
            None => {}
        }
    }

    /// Drives one connection and files it by the result.
    fn drive(&mut self, key: usize) {
        if let Some(Entry::Conn(conn)) = self.entries.get_mut(key) {
            let driven = drive_conn(conn, &mut self.shared);
            self.file(key, driven);
        }
    }

    /// Files a driven connection: counted if it began or stopped being
    /// timed, onto the ready list if it has input left, onto the reap list
    /// if closed.
    #[inline(always)]
    fn file(&mut self, key: usize, (next, timed): (Next, Timed)) {
        match timed {
            Timed::Same => {}
            Timed::Began => self.timed += 1,
            Timed::Ended => self.timed -= 1,
        }
        match next {
            Next::Wait => {}
            Next::Again => self.ready.push(key),
            Next::Reap => self.doomed.push(key),
        }
    }

    /// Gives the worker its end of the requests from other threads: entry
    /// `index` of `controls`, whose waker [`Worker::new`] returned.
    pub(super) fn attach(&mut self, controls: Arc<[WorkerControl]>, index: usize) {
        self.controls = Some((controls, index));
    }

    /// Makes [`Worker::begin_shutdown`] tell `notices` that a shutdown began.
    pub(super) fn notify_shutdown_to(&mut self, notices: Sender<Notice>) {
        self.notify = Some(notices);
    }

    /// Connections this worker holds (for `--max-connections`, which is per
    /// worker): its counters' `current`, the one count of them, changed only
    /// where a connection is admitted and where it is reaped.
    fn connections(&self) -> usize {
        self.shared.stats.current as usize
    }

    /// Starts ending connection `key` for `reason` by `until` (see
    /// [`Connection::begin_draining`]), counts it if it became timed, and
    /// drives it: what it owes is flushed now if the socket takes it.
    fn end_connection(&mut self, key: usize, reason: CloseReason, until: Instant) {
        if let Some(Entry::Conn(conn)) = self.entries.get_mut(key) {
            let was_timed = conn.is_timed();
            conn.begin_draining(reason, until);
            if conn.is_timed() && !was_timed {
                self.timed += 1;
            }
            self.drive(key);
        }
    }

    fn serve_udp(&mut self, key: usize) {
        let (Some(Entry::Udp(udp)), Some(batch)) =
            (self.entries.get_mut(key), self.udp_batch.as_deref_mut())
        else {
            return;
        };
        let sockperf_max = (self.config.mode == Mode::Sockperf).then_some(self.config.max_frame);
        if udp.serve(
            &mut self.shared,
            batch,
            &self.udp_ports,
            sockperf_max,
            &mut self.udp_log,
        ) {
            self.ready.push(key);
        }
    }

    /// Removes the connections closed during this turn.
    #[inline]
    fn reap(&mut self) {
        // The check inline, the work out of line: most turns close nothing.
        if !self.doomed.is_empty() {
            self.reap_doomed();
        }
    }

    #[inline(never)]
    fn reap_doomed(&mut self) {
        // Taken and put back, so the vector keeps its capacity: no
        // allocation per closed connection.
        let mut doomed = std::mem::take(&mut self.doomed);
        for key in doomed.drain(..) {
            // Looked up once, in place; only a connection is ever doomed,
            // and a key doomed twice in a turn is gone the second time.
            let Some(Entry::Conn(conn)) = self.entries.get_mut(key) else {
                continue;
            };
            debug_assert!(!conn.is_timed(), "reaped while timed");
            let reason = conn.closed_reason().unwrap_or(CloseReason::Error);
            conn.release(&mut self.shared);
            self.open.closed();
            self.shared.stats.ended(reason);
            debug!("close {} ({reason})", conn.peer());
            // Dropping the stream closes the socket; the kernel removes it
            // from epoll with its last descriptor (the descriptor is never
            // duplicated), so no epoll_ctl here.
            drop(self.entries.remove(key));
        }
        self.doomed = doomed;
    }
}
