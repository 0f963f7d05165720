//! The daemon: binding, workers, and the event loop each worker runs.
//!
//! A worker is exactly one single-threaded mio loop over its own sockets.
//! Listeners, UDP sockets and connections live in one [`Slab`]; an entry's
//! key is its [`Token`]. Streams are registered once, READABLE | WRITABLE,
//! edge-triggered: steady state makes no epoll_ctl call at all.
//!
//! One turn of the loop (redis's `aeProcessEvents`, sozu's `run`):
//! 1. poll (zero timeout while the ready list is not empty; retried on EINTR);
//! 2. dispatch events: accept, echo UDP, drive connections;
//! 3. serve the ready list: connections that hit their read budget and
//!    listeners that hit their accept cap (edge-triggered readiness does not
//!    come back by itself);
//! 4. timers: idle sweep, drain deadlines, accept pause, shutdown deadline;
//! 5. reap connections that closed during this turn, never mid-batch.

pub mod listener;
pub mod signals;

use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::event::Event;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::clock;
use crate::config::Config;
use crate::connection::queue::ChunkPool;
use crate::connection::{self, Connection, Next};
use crate::shared::{RateLimit, Shared};
use crate::stats::{CloseReason, OpenConnections, Stats};
use crate::udp::UdpEndpoint;
use echod_common::addr::Endpoint;
use listener::{BindError, Listener};

/// The signal pipe's token, above any slab key.
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);

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

/// Accepts per listener per turn before other work is served (redis caps
/// accepts per call the same way, so a connection flood cannot stall echoes).
const ACCEPTS_PER_TURN: usize = 128;

/// How long accepting stops when descriptors run out and the reserve
/// descriptor could not be re-opened (nginx pauses 500 ms; we retry sooner).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Timer tick while any connection is draining or the daemon shuts down:
/// drain deadlines are checked once per tick (one pass over the
/// connections), so a drain closes at most this long after its deadline.
const DRAIN_TICK: Duration = Duration::from_millis(50);

/// Idle chunks a worker keeps for reuse: 1,024 x 16 KiB = 16 MiB at most.
const POOL_MAX_IDLE: usize = 1024;

/// What a failed start-up means to the user.
#[derive(Debug)]
pub enum ServerError {
    Bind(BindError),
    Io(&'static str, io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind(e) => write!(f, "{e}"),
            ServerError::Io(what, e) => write!(f, "cannot {what}: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<BindError> for ServerError {
    fn from(e: BindError) -> Self {
        ServerError::Bind(e)
    }
}

/// What a slab slot holds.
#[derive(Debug)]
enum Entry {
    Listener(Listener),
    Udp(UdpEndpoint),
    Conn(Connection),
}

/// The sockets one worker owns before its loop starts.
#[derive(Debug, Default)]
pub struct WorkerSockets {
    pub listeners: Vec<Listener>,
    pub udp: Vec<UdpEndpoint>,
}

/// One single-threaded event loop.
pub struct Worker {
    id: usize,
    config: Arc<Config>,
    poll: Poll,
    entries: Slab<Entry>,
    shared: Shared,
    /// Tokens to serve again before the next blocking poll.
    ready: Vec<usize>,
    /// Connections closed this turn, reaped after the batch.
    doomed: Vec<usize>,
    connections: usize,
    /// Connections open across all workers (shared): counted on admit and
    /// reap only, for an exact `peak_concurrent`.
    open: Arc<OpenConnections>,
    /// Connections draining, as of the last sweep plus those begun since
    /// (an upper bound between sweeps: a drain that finished is uncounted
    /// only by the next sweep).
    draining: usize,
    /// When the next pass over the connections for drain deadlines is due,
    /// while anything drains: one pass per [`DRAIN_TICK`], never one per turn.
    next_drain_sweep: Instant,
    signals: signals::SignalSource,
    /// A spare descriptor, closed to accept-and-shed one connection when
    /// descriptors run out (libev's and nginx's trick).
    reserve_fd: Option<File>,
    /// Listeners waiting out an accept pause, and until when.
    accept_paused: Option<(Instant, Vec<usize>)>,
    next_idle_sweep: Option<Instant>,
    reject_log: RateLimit,
    exhausted_log: RateLimit,
    udp_log: RateLimit,
    /// Every UDP port echod serves (all workers serve the same ones): a
    /// datagram from one of them is another echo service, never answered.
    udp_ports: Vec<u16>,
    /// Loop turns completed (polls that returned, not counting EINTR), for
    /// the snapshot: with `events`, how many events a turn handles.
    loop_turns: u64,
    /// Events those turns handled (added at the end of each turn).
    events: u64,
}

/// Drives `conn`; returns what to do with it next and whether it started
/// draining (the worker counts those for its timer).
fn drive_conn(conn: &mut Connection, shared: &mut Shared) -> (Next, bool) {
    let was_draining = conn.is_draining();
    let next = conn.drive(shared);
    (next, conn.is_draining() && !was_draining)
}

impl Worker {
    /// A worker owning `sockets` and `signals`; registers them (the only
    /// epoll_ctl calls besides one per accepted connection). `open` is the
    /// count of open connections all workers share.
    pub fn new(
        id: usize,
        config: Arc<Config>,
        sockets: WorkerSockets,
        mut signals: signals::SignalSource,
        open: Arc<OpenConnections>,
    ) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let mut entries = Slab::with_capacity(
            config.max_connections + sockets.listeners.len() + sockets.udp.len(),
        );
        for mut listener in sockets.listeners {
            let entry = entries.vacant_entry();
            poll.registry()
                .register(&mut listener, Token(entry.key()), Interest::READABLE)?;
            entry.insert(Entry::Listener(listener));
        }
        let udp_ports = sockets.udp.iter().map(|u| u.local_addr().port()).collect();
        for mut udp in sockets.udp {
            let entry = entries.vacant_entry();
            udp.register(poll.registry(), Token(entry.key()))?;
            entry.insert(Entry::Udp(udp));
        }
        signals.register(poll.registry(), SIGNAL_TOKEN)?;
        let now = Instant::now();
        let next_idle_sweep = config.idle_timeout.map(|t| now + idle_tick(t));
        Ok(Worker {
            id,
            poll,
            entries,
            shared: Shared {
                read_buf: vec![0u8; READ_BUF_SIZE].into_boxed_slice(),
                pool: ChunkPool::new(POOL_MAX_IDLE),
                stats: Stats::default(),
                clock: clock::TurnClock::default(),
                track_idle: config.idle_timeout.is_some(),
                shutdown_deadline: None,
                queue_limit: config.queue_limit,
                once: config.once,
                bad_frame_log: RateLimit::new(),
            },
            config,
            ready: Vec::new(),
            doomed: Vec::new(),
            connections: 0,
            open,
            draining: 0,
            next_drain_sweep: now,
            signals,
            reserve_fd: File::open("/dev/null").ok(),
            accept_paused: None,
            next_idle_sweep,
            reject_log: RateLimit::new(),
            exhausted_log: RateLimit::new(),
            udp_log: RateLimit::new(),
            udp_ports,
            loop_turns: 0,
            events: 0,
        })
    }

    /// Runs until a signal asks to stop and the connections are flushed (or
    /// the shutdown timeout passes). Returns this worker's counters.
    pub fn run(mut self) -> io::Result<Stats> {
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
                if self.connections == 0 {
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
            self.id, self.connections
        );
        Ok(self.shared.stats)
    }

    fn dispatch(&mut self, event: &Event) {
        let token = event.token();
        if token == SIGNAL_TOKEN {
            let requests = self.signals.drain();
            if requests.snapshot {
                self.log_snapshot();
            }
            if requests.shutdown {
                self.begin_shutdown();
            }
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

    /// Files a driven connection: counted if it started draining, onto the
    /// ready list if it has input left, onto the reap list if closed.
    fn file(&mut self, key: usize, (next, started_draining): (Next, bool)) {
        if started_draining {
            self.draining += 1;
        }
        match next {
            Next::Wait => {}
            Next::Again => self.ready.push(key),
            Next::Reap(_) => self.doomed.push(key),
        }
    }

    /// Accepts up to [`ACCEPTS_PER_TURN`] connections from one listener.
    fn accept(&mut self, key: usize) {
        if self.shared.shutdown_deadline.is_some() {
            return;
        }
        if let Some((_, paused)) = &mut self.accept_paused {
            if !paused.contains(&key) {
                paused.push(key);
            }
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(Entry::Listener(listener)) = self.entries.get(key) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if crate::sys::is_transient_accept_error(&e) => {
                    self.shared.stats.accept_errors += 1;
                }
                Err(e) if echod_common::sys::is_resource_exhaustion(&e) => {
                    self.shared.stats.accept_errors += 1;
                    if !self.shed_one(key, &e) {
                        return;
                    }
                }
                Err(e) => {
                    self.shared.stats.accept_errors += 1;
                    if self.exhausted_log.allow(self.shared.clock.now()) {
                        error!("accept failed: {e}; pausing accepts");
                    }
                    self.pause_accepting(key);
                    return;
                }
            }
        }
        self.ready.push(key); // cap reached: more may be pending
    }

    /// Out of descriptors: close the reserve descriptor, accept one pending
    /// connection and close it at once (the client sees EOF instead of
    /// hanging), then take the reserve back. Returns whether accepting may
    /// go on. Linux reports EMFILE even when nothing is pending, so a
    /// WouldBlock here just means the backlog is empty: the next connection
    /// brings a new edge. Accepting pauses only if the reserve cannot be had.
    fn shed_one(&mut self, key: usize, cause: &io::Error) -> bool {
        let Some(reserve) = self.reserve_fd.take() else {
            self.pause_accepting(key);
            return false;
        };
        drop(reserve);
        let outcome = match self.entries.get(key) {
            Some(Entry::Listener(listener)) => listener.accept().map(|_| ()),
            _ => Err(io::ErrorKind::WouldBlock.into()),
        };
        self.reserve_fd = File::open("/dev/null").ok();
        let go_on = match outcome {
            Ok(()) => {
                self.shared.stats.rejected_fd_exhausted += 1;
                if let Some(n) = self.exhausted_log.allow_counting(self.shared.clock.now()) {
                    warn!(
                        "accept: {cause} ({} connections open); shedding new connections \
                         ({n} similar lines suppressed)",
                        self.connections
                    );
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(_) => {
                self.pause_accepting(key);
                false
            }
        };
        if self.reserve_fd.is_none() {
            self.pause_accepting(key);
            return false;
        }
        go_on
    }

    fn pause_accepting(&mut self, key: usize) {
        let until = self.shared.clock.now() + ACCEPT_PAUSE;
        match &mut self.accept_paused {
            Some((_, keys)) => {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            None => self.accept_paused = Some((until, vec![key])),
        }
    }

    /// Registers an accepted stream, or sheds it when this worker is full.
    fn admit(&mut self, mut stream: listener::Stream, peer: listener::Peer) {
        if self.connections >= self.config.max_connections {
            self.shared.stats.rejected_max_connections += 1;
            if let Some(n) = self.reject_log.allow_counting(self.shared.clock.now()) {
                warn!(
                    "rejected {peer}: --max-connections {} reached ({n} similar lines suppressed)",
                    self.config.max_connections
                );
            }
            return; // dropping the stream closes it
        }
        let _ = stream.set_nodelay();
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("cannot register {peer}: {e}");
            return;
        }
        let conn = Connection::new(
            stream,
            peer,
            self.config.mode,
            self.config.max_frame,
            self.shared.clock.now(),
        );
        entry.insert(Entry::Conn(conn));
        self.connections += 1;
        self.shared.stats.opened(self.open.opened());
        debug!("open {peer} (token {key})");
        if let Some(banner) = self.config.banner.clone() {
            let Some(Entry::Conn(conn)) = self.entries.get_mut(key) else {
                return;
            };
            if let Next::Reap(_) = conn.send_banner(&banner, &mut self.shared) {
                self.doomed.push(key);
                return;
            }
            if self.config.once {
                conn.begin_draining(
                    CloseReason::Once,
                    self.shared.clock.now() + connection::DRAIN_LINGER,
                );
                self.draining += 1;
                self.drive(key);
            }
        }
    }

    fn serve_udp(&mut self, key: usize) {
        let Some(Entry::Udp(udp)) = self.entries.get_mut(key) else {
            return;
        };
        if udp.serve(&mut self.shared, &self.udp_ports, &mut self.udp_log) {
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
            let Some(Entry::Conn(_)) = self.entries.get(key) else {
                continue;
            };
            if let Some(Entry::Conn(mut conn)) = self.entries.try_remove(key) {
                let reason = match conn.phase() {
                    connection::Phase::Closed(r) => r,
                    _ => CloseReason::Error,
                };
                conn.release(&mut self.shared);
                self.connections -= 1;
                self.open.closed();
                self.shared.stats.ended(reason);
                debug!("close {} ({reason})", conn.peer());
                // Dropping the stream closes the socket; the kernel removes it
                // from epoll with its last descriptor, so no epoll_ctl here.
            }
        }
        self.doomed = doomed;
        // `draining` may now over-count; the next sweep recounts it exactly.
    }

    /// The earliest moment a timer needs the loop awake.
    fn next_deadline(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut consider = |t: Instant| {
            earliest = Some(earliest.map_or(t, |e| e.min(t)));
        };
        if let Some(t) = self.next_idle_sweep {
            consider(t);
        }
        if let Some((t, _)) = &self.accept_paused {
            consider(*t);
        }
        if self.drains_pending() {
            consider(self.next_drain_sweep);
        }
        if let Some(t) = self.shared.shutdown_deadline {
            consider(t);
        }
        earliest
    }

    /// Fires the timers that are due and returns the next deadline. With
    /// none armed (no `--idle-timeout`, no accept pause, nothing draining)
    /// this is a few comparisons and no clock read. The check names the same
    /// timers as [`Worker::next_deadline`]; asking `next_deadline` instead
    /// measured 8 instructions more per message at one connection.
    fn run_timers(&mut self) -> Option<Instant> {
        if self.next_idle_sweep.is_none() && self.accept_paused.is_none() && !self.drains_pending()
        {
            return None;
        }
        self.fire_timers();
        self.next_deadline()
    }

    #[inline(never)]
    fn fire_timers(&mut self) {
        let now = self.shared.clock.now();
        if let Some((until, _)) = &self.accept_paused {
            if now >= *until {
                if let Some((_, keys)) = self.accept_paused.take() {
                    if self.reserve_fd.is_none() {
                        self.reserve_fd = File::open("/dev/null").ok();
                    }
                    self.ready.extend(keys);
                }
            }
        }
        let idle_due = self.next_idle_sweep.is_some_and(|t| now >= t);
        let drains_due = self.drains_pending() && now >= self.next_drain_sweep;
        if idle_due || drains_due {
            self.sweep(idle_due);
            self.next_drain_sweep = now + DRAIN_TICK;
        }
        if idle_due {
            if let Some(idle) = self.config.idle_timeout {
                self.next_idle_sweep = Some(now + idle_tick(idle));
            }
        }
    }

    /// Whether a drain may be waiting on its deadline (or shutdown is on).
    fn drains_pending(&self) -> bool {
        self.draining > 0 || self.shared.shutdown_deadline.is_some()
    }

    /// One pass over the connections: expire idle ones, close drains whose
    /// deadline passed. Costs O(connections) per tick, never per message.
    fn sweep(&mut self, check_idle: bool) {
        let now = self.shared.clock.now();
        let idle = self.config.idle_timeout;
        // Idle for at least the timeout = last active at or before this
        // instant: one subtraction per sweep, one comparison per connection.
        let idle_since = idle.and_then(|limit| now.checked_sub(limit));
        let mut to_drive = Vec::new();
        let mut draining = 0;
        for (key, entry) in self.entries.iter_mut() {
            let Entry::Conn(conn) = entry else { continue };
            match conn.phase() {
                connection::Phase::Draining(_) => {
                    if conn.drain_expired(now) {
                        self.doomed.push(key);
                    } else {
                        draining += 1;
                    }
                }
                connection::Phase::Open | connection::Phase::PeerClosed if check_idle => {
                    if let (Some(limit), Some(since)) = (idle, idle_since) {
                        if conn.last_active() <= since {
                            debug!("{}: idle for {limit:?}", conn.peer());
                            conn.begin_draining(
                                CloseReason::IdleTimeout,
                                now + connection::DRAIN_LINGER,
                            );
                            draining += 1;
                            to_drive.push(key);
                        }
                    }
                }
                _ => {}
            }
        }
        self.draining = draining;
        for key in to_drive {
            self.drive(key);
        }
    }

    /// SIGUSR1: one `snapshot:` line with this worker's state now (open,
    /// draining and paused connections, bytes queued, found by one pass over
    /// the connections), its loop turns and events so far (the turn in
    /// progress not yet counted), and its counters so far, keyed as in the
    /// exit line.
    fn log_snapshot(&self) {
        let (mut draining, mut paused, mut queued) = (0, 0, 0);
        for (_, entry) in self.entries.iter() {
            if let Entry::Conn(conn) = entry {
                draining += usize::from(conn.is_draining());
                paused += usize::from(conn.is_paused());
                queued += conn.queued();
            }
        }
        info!(
            "snapshot: worker={} open={} draining={draining} paused={paused} \
             queued_bytes={queued} loop_turns={} events={} {}",
            self.id, self.connections, self.loop_turns, self.events, self.shared.stats
        );
    }

    /// First SIGINT/SIGTERM: stop accepting and receiving datagrams, and
    /// start draining every connection against one deadline.
    fn begin_shutdown(&mut self) {
        if self.shared.shutdown_deadline.is_some() {
            return;
        }
        let deadline = self.shared.clock.now() + self.config.shutdown_timeout;
        self.shared.shutdown_deadline = Some(deadline);
        info!(
            "worker {}: shutting down: {} connections to flush (at most {:?})",
            self.id, self.connections, self.config.shutdown_timeout
        );
        let keys: Vec<usize> = self.entries.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.entries.get_mut(key) {
                Some(Entry::Listener(_)) | Some(Entry::Udp(_)) => {
                    // Dropping the socket closes it: no more accepts or datagrams.
                    self.entries.remove(key);
                }
                Some(Entry::Conn(conn)) => {
                    conn.begin_draining(CloseReason::Shutdown, deadline);
                    self.drive(key);
                }
                None => {}
            }
        }
        self.accept_paused = None;
    }

    /// The shutdown deadline has passed: closes every connection left, each
    /// counted as if its drain had reached its own deadline (`drain_timeout`,
    /// or `idle_timeout` for an idle drain), exactly as the sweep counts it.
    /// Every drain's deadline is at or before the shutdown deadline, so the
    /// sweep earlier in the same turn has normally closed them all already.
    fn close_all_at_deadline(&mut self) {
        for (key, entry) in self.entries.iter_mut() {
            if let Entry::Conn(conn) = entry {
                if conn.queued() > 0 {
                    debug!(
                        "{}: {} bytes unsent at shutdown",
                        conn.peer(),
                        conn.queued()
                    );
                }
                conn.close_at_deadline();
                self.doomed.push(key);
            }
        }
        self.reap();
    }
}

/// How often to look for idle connections: a quarter of the timeout, so one
/// expires at most 25% late, between 10 ms and 1 s.
fn idle_tick(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Binds every socket for every worker. Port 0 is resolved once (worker 0's
/// probe) and shared, so all workers serve the same port.
fn bind_all(config: &Config) -> Result<Vec<WorkerSockets>, ServerError> {
    let workers = config.workers;
    let reuse_port = workers > 1;
    let mut sockets: Vec<WorkerSockets> = (0..workers).map(|_| WorkerSockets::default()).collect();
    for endpoint in &config.listen {
        match endpoint {
            Endpoint::Inet(addr) => {
                let addr = if reuse_port {
                    listener::probe_inet(*addr, false)?
                } else {
                    *addr
                };
                let first = Listener::bind_tcp(addr, reuse_port)?;
                let resolved = first
                    .endpoint()
                    .map_err(|e| ServerError::Io("read address", e))?;
                let Endpoint::Inet(resolved) = resolved else {
                    unreachable!("a TCP listener has an inet address")
                };
                sockets[0].listeners.push(first);
                for worker in sockets.iter_mut().skip(1) {
                    worker.listeners.push(Listener::bind_tcp(resolved, true)?);
                }
                info!("listening on {resolved} (tcp)");
            }
            Endpoint::Unix(path) => {
                let first = Listener::bind_unix(path)?;
                for worker in sockets.iter_mut().skip(1) {
                    let clone = first
                        .try_clone_unix()
                        .map_err(|e| ServerError::Io("share the unix listener", e))?;
                    worker.listeners.extend(clone);
                }
                sockets[0].listeners.push(first);
                info!("listening on unix:{} (unix)", path.display());
            }
        }
    }
    for endpoint in &config.udp {
        let Endpoint::Inet(addr) = endpoint else {
            continue; // Config::from_args refuses unix paths for --udp
        };
        let addr: SocketAddr = if reuse_port {
            listener::probe_inet(*addr, true)?
        } else {
            *addr
        };
        let first = listener::bind_udp(addr, reuse_port)?;
        let resolved = first
            .local_addr()
            .map_err(|e| ServerError::Io("read address", e))?;
        sockets[0].udp.push(UdpEndpoint::new(first, resolved));
        for worker in sockets.iter_mut().skip(1) {
            let s = listener::bind_udp(resolved, true)?;
            worker.udp.push(UdpEndpoint::new(s, resolved));
        }
        info!("listening on {resolved} (udp)");
    }
    Ok(sockets)
}

/// Runs the daemon: binds, starts the workers, waits for them to stop, and
/// returns the merged counters. Signals must already be set up
/// ([`signals::install_exit_on_second_signal`]).
pub fn run(config: Config) -> Result<Stats, ServerError> {
    match echod_common::sys::raise_fd_limit() {
        Ok(limit) => debug!("descriptor limit: {limit}"),
        Err(e) => warn!("cannot raise the descriptor limit: {e}"),
    }
    let config = Arc::new(config);
    // Before binding: once `listening on` is logged, signals reach the workers.
    let signal_sources = (0..config.workers)
        .map(|_| signals::SignalSource::new())
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| ServerError::Io("catch signals", e))?;
    let mut sockets = bind_all(&config)?;
    let inodes: Vec<(std::path::PathBuf, Option<u64>)> = sockets
        .first()
        .map(|s| {
            s.listeners
                .iter()
                .filter_map(|l| match l {
                    Listener::Unix(_, path) => Some((path.clone(), l.socket_inode())),
                    Listener::Tcp(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let open = Arc::new(OpenConnections::default());
    let mut workers = Vec::new();
    for (id, (owned, signals)) in sockets.drain(..).zip(signal_sources).enumerate() {
        let worker = Worker::new(id, Arc::clone(&config), owned, signals, Arc::clone(&open))
            .map_err(|e| ServerError::Io("start a worker", e))?;
        workers.push(worker);
    }
    let mut handles = Vec::new();
    let mut iter = workers.into_iter();
    let first = iter.next();
    for worker in iter {
        let handle = std::thread::Builder::new()
            .name(format!("echod-worker-{}", worker.id))
            .spawn(move || worker.run())
            .map_err(|e| ServerError::Io("spawn a worker thread", e))?;
        handles.push(handle);
    }
    let mut total = Stats::default();
    let mut failure = None;
    if let Some(worker) = first {
        match worker.run() {
            Ok(stats) => total.merge(&stats),
            Err(e) => failure = Some(e),
        }
    }
    for handle in handles {
        match handle.join() {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(io::Error::other("a worker thread panicked")),
        }
    }
    for (path, inode) in inodes {
        if let Some(ino) = inode {
            use std::os::unix::fs::MetadataExt;
            if std::fs::metadata(&path).map(|m| m.ino()).ok() == Some(ino) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    match failure {
        Some(e) => Err(ServerError::Io("run the event loop", e)),
        None => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per idle connection is the slab slot plus nothing else (no
    /// buffer until data is queued); keep the slot small.
    #[test]
    fn an_idle_connection_fits_in_a_small_slab_slot() {
        // A slab slot is the entry enum plus the slab's own tag.
        let slot = std::mem::size_of::<Option<Entry>>() + std::mem::size_of::<usize>();
        eprintln!(
            "Connection = {} bytes, slab slot = {slot} bytes",
            std::mem::size_of::<Connection>()
        );
        assert!(slot <= 256, "slab slot grew to {slot} bytes");
    }
}
