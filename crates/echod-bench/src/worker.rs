//! One echod-bench worker thread: its own mio `Poll`, its share of the
//! connections in a `Slab` (token = slab key), and its own tallies.
//!
//! # Phases
//! 1. **Connect**: at most `max_connecting` non-blocking connects in flight
//!    (the server's accept backlog is not overrun), each bounded by
//!    [`CONNECT_TIMEOUT`]. Then all workers meet at a barrier, so the clock
//!    starts when every connection that could be made is made.
//! 2. **Run**: closed loop (each connection keeps `pipeline` messages in
//!    flight) or open loop (`--rate`: messages leave at their [`Schedule`]d
//!    times, round-robin over the open connections); `--idle` sends nothing.
//!    Messages sent during the warm-up are verified but not recorded.
//! 3. **Drain**: sending stops at the deadline (or when `-n` is used up, or
//!    on SIGINT); echoes still owed get [`DRAIN_TIMEOUT`], then count as
//!    timeouts (UDP: as lost).
//!
//! # Readiness
//! mio is edge-triggered: a readable event is served by reading until
//! `WouldBlock`, and writability is remembered in `Conn::writable` (set by an
//! event, cleared by `WouldBlock`), so nothing waits for an event that already
//! came. Connections closed while handling a batch are only removed from the
//! slab after it (a token can still appear later in the same batch).
//!
//! # Verification
//! Each stream connection knows where in its echo stream it is
//! (`rx_seq`, `rx_off`) and checks every received piece against the
//! [`Payload`] as it arrives, whatever the splitting. A message that
//! completes with a bad byte counts one `mismatch`; bytes when nothing is
//! owed count one `mismatch` and end the connection.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::event::Source;
use mio::net::{TcpStream, UdpSocket, UnixStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use super::intervals::Sample;
use super::report::{new_histogram, WorkerResult};
use super::schedule::{ConnectPacer, Schedule, TimerFd};
use super::{BenchConfig, Limit, Shared};
use crate::payload::Payload;
use echod_common::addr::Endpoint;
use echod_common::stream::{MioStream, Stream};

/// A connect still pending after this long counts as a timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// After sending stops, how long echoes still owed are waited for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A UDP datagram unanswered after this long is counted lost.
pub const UDP_LOSS_TIMEOUT: Duration = Duration::from_secs(1);

/// With `-n`, no echo at all for this long ends the sending (the server is
/// stuck; the drain then counts what is owed as timeouts).
const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest the loop sleeps: signals, deadlines and progress are checked
/// at least this often.
const TICK: Duration = Duration::from_millis(100);

/// How often unanswered UDP datagrams are checked for loss.
const LOSS_SCAN_EVERY: Duration = Duration::from_millis(20);

/// Bytes read per `read` call: large enough to take a whole pipelined batch.
const READ_BUF: usize = 256 * 1024;

/// Written-out bytes kept at the front of an output buffer before it is compacted.
const COMPACT_AT: usize = 64 * 1024;

/// The open-loop pacing timer's token, above any slab key.
const TIMER: Token = Token(usize::MAX - 1);

/// What one worker is given.
#[derive(Debug, Clone)]
pub struct Plan {
    /// This worker's index (interval samples say whose they are).
    pub index: usize,
    /// Global id of this worker's first connection; ids are contiguous.
    pub first_id: u64,
    /// Connections this worker opens.
    pub count: usize,
    /// This worker's share of `-n` (measured messages), if `-n` was given.
    pub budget: Option<u64>,
    /// This worker's share of `--rate`, messages per second.
    pub rate: Option<f64>,
    /// Non-blocking connects allowed in flight at once.
    pub max_connecting: usize,
    /// This worker's share of `--connect-rate`, connects per second.
    pub connect_rate: Option<f64>,
}

/// The socket of one connection: a stream (TCP or unix, forwarded by
/// `echod_common::stream`) or a connected UDP socket.
enum Sock {
    Stream(MioStream),
    Udp(UdpSocket),
}

impl Sock {
    /// One non-blocking write, retried on EINTR: `Ok(Some(n))` when `n`
    /// bytes (or one datagram) went out, `Ok(None)` when the socket is full.
    fn write_once(&mut self, buf: &[u8]) -> io::Result<Option<usize>> {
        loop {
            let result = match self {
                Sock::Stream(s) => s.write(buf),
                Sock::Udp(s) => s.send(buf),
            };
            match result {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn source(&mut self) -> &mut dyn Source {
        match self {
            Sock::Stream(s) => s,
            Sock::Udp(s) => s,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Stream(s) => s.read(buf),
            Sock::Udp(s) => s.recv(buf),
        }
    }

    /// For a pending connect: `Ok(true)` once established, `Ok(false)` while
    /// still in progress (the event was spurious), `Err` if it failed.
    fn connect_done(&self) -> io::Result<bool> {
        match self {
            Sock::Stream(s) => s.connect_finished(),
            Sock::Udp(_) => Ok(true),
        }
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Non-blocking connect issued at this time (ns on the worker clock).
    Connecting { since: u64 },
    /// Established; sending and verifying.
    Open,
    /// Finished or failed; removed from the slab after the event batch.
    Closed,
}

/// One connection (or UDP socket) and its position in the echo stream.
///
/// Invariants: stream messages in `inflight` are exactly the sequence
/// numbers `rx_seq..next_seq`, oldest first, and `out[out_pos..]` holds the
/// not-yet-written tail of them; UDP messages move from `unsent` to
/// `inflight` when the datagram leaves, and leave `inflight` when answered or
/// counted lost.
struct Conn {
    id: u64,
    sock: Sock,
    state: State,
    writable: bool,
    dirty: bool,
    out: Vec<u8>,
    out_pos: usize,
    next_seq: u64,
    rx_seq: u64,
    rx_off: usize,
    rx_bad: bool,
    /// (sequence number, send or intended time in ns) of messages owed.
    inflight: VecDeque<(u64, u64)>,
    /// UDP: messages created but not yet sent (socket buffer full).
    unsent: VecDeque<(u64, u64)>,
}

impl Conn {
    fn owed(&self) -> usize {
        self.inflight.len() + self.unsent.len()
    }
}

/// How an I/O error is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Refused,
    Reset,
    Timeout,
    Other,
}

fn classify(e: &io::Error) -> Kind {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Kind::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Kind::Reset,
        io::ErrorKind::TimedOut => Kind::Timeout,
        _ => Kind::Other,
    }
}

/// Opens connection `id`'s socket and starts its non-blocking connect.
fn open_socket(cfg: &BenchConfig, id: u64) -> io::Result<Sock> {
    let source = (!cfg.source_ips.is_empty())
        .then(|| cfg.source_ips[(id % cfg.source_ips.len() as u64) as usize]);
    match &cfg.target {
        Endpoint::Unix(path) => Ok(Sock::Stream(Stream::Unix(UnixStream::connect(path)?))),
        Endpoint::Inet(addr) if cfg.udp => {
            let local = match source {
                Some(ip) => SocketAddr::new(ip, 0),
                None if addr.is_ipv4() => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                None => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let sock = UdpSocket::bind(local)?;
            sock.connect(*addr)?;
            Ok(Sock::Udp(sock))
        }
        Endpoint::Inet(addr) => {
            let sock = Socket::new(
                Domain::for_address(*addr),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            sock.set_nonblocking(true)?;
            sock.set_nodelay(true)?;
            if let Some(ip) = source {
                // Let connect() pick the port per (source, destination) pair
                // instead of bind() reserving one per source address: the
                // ephemeral range then serves each source address in full.
                set_bind_address_no_port(&sock)?;
                sock.bind(&SocketAddr::new(ip, 0).into())?;
            }
            match sock.connect(&(*addr).into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) => return Err(e),
            }
            Ok(Sock::Stream(Stream::Tcp(TcpStream::from_std(sock.into()))))
        }
    }
}

/// `setsockopt(IP_BIND_ADDRESS_NO_PORT, 1)` (Linux ≥ 4.2).
fn set_bind_address_no_port(sock: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs one worker to the end. Always reaches the shared barrier exactly
/// once, even on error, so the other workers are never left waiting.
pub fn run_worker(shared: &Shared, plan: Plan) -> io::Result<WorkerResult> {
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            shared.barrier.wait();
            return Err(e);
        }
    };
    let mut worker = Worker::new(shared, plan, poll);
    worker.run()
}

struct Worker<'a> {
    shared: &'a Shared,
    cfg: &'a BenchConfig,
    payload: &'a Payload,
    plan: Plan,
    poll: Poll,
    conns: Slab<Conn>,
    base: Instant,
    res: WorkerResult,
    rbuf: Vec<u8>,
    sbuf: Vec<u8>,
    to_connect: VecDeque<u64>,
    connecting: Vec<usize>,
    reap: Vec<usize>,
    dirty: Vec<usize>,
    /// Open connections, for round-robin in open loop (pruned lazily).
    rr: Vec<usize>,
    rr_pos: usize,
    open_count: usize,
    /// Messages owed across all connections (sum of `Conn::owed`).
    owed: u64,
    running: bool,
    sending: bool,
    /// Sending has stopped and echoes owed are being waited for: a server
    /// closing now (e.g. shutting down) is no error if nothing is owed.
    draining: bool,
    measure_start: u64,
    send_deadline: Option<u64>,
    budget: Option<u64>,
    last_echo: u64,
    unpublished: u64,
    /// `--connect-rate`: when the next connect may start.
    pacer: Option<ConnectPacer>,
    /// Interval sampling (`--interval`, `--hdr-log`, `--plot`), if on.
    intervals: Option<IntervalClock>,
}

/// Where this worker is in its interval sampling. The hot path records into
/// `WorkerResult::hist` only; at each interval's end that histogram is
/// added to `total`, sent to the reporter and reset, so per-message work is
/// the same with or without intervals.
struct IntervalClock {
    every_ns: u64,
    /// Start of the current interval (ns on the worker clock).
    start: u64,
    index: u64,
    /// The run's histogram so far, without the current interval.
    total: Histogram<u64>,
    /// Totals at the start of the current interval (for the deltas).
    messages_before: u64,
    connects_before: u64,
    errors_before: u64,
}

impl<'a> Worker<'a> {
    fn new(shared: &'a Shared, plan: Plan, poll: Poll) -> Self {
        let ids = plan.first_id..plan.first_id + plan.count as u64;
        Worker {
            shared,
            cfg: &shared.cfg,
            payload: &shared.payload,
            budget: plan.budget,
            plan,
            poll,
            conns: Slab::new(),
            base: Instant::now(),
            res: WorkerResult::new(),
            rbuf: vec![0; READ_BUF],
            sbuf: Vec::new(),
            to_connect: ids.collect(),
            connecting: Vec::new(),
            reap: Vec::new(),
            dirty: Vec::new(),
            rr: Vec::new(),
            rr_pos: 0,
            open_count: 0,
            owed: 0,
            running: false,
            sending: false,
            draining: false,
            measure_start: u64::MAX,
            send_deadline: None,
            last_echo: 0,
            unpublished: 0,
            pacer: None,
            intervals: None,
        }
    }

    /// Nanoseconds on this worker's clock.
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    fn run(&mut self) -> io::Result<WorkerResult> {
        let connected = self.connect_phase();
        self.res.connect_ns = self.now();
        self.shared.barrier.wait();
        self.shared.started.get_or_init(Instant::now);
        self.shared
            .started_wall
            .get_or_init(std::time::SystemTime::now);
        connected?;
        let start = self.now();
        self.running = true;
        if self.cfg.idle {
            self.idle_phase(start)?;
        } else {
            self.load_phase(start)?;
        }
        self.res.open_at_end = self.open_count as u64;
        self.publish();
        Ok(std::mem::take(&mut self.res))
    }

    fn connect_phase(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.pacer = self
            .plan
            .connect_rate
            .map(|r| ConnectPacer::new(self.now(), r));
        loop {
            let now = self.now();
            if self.stopped() {
                return Ok(());
            }
            self.launch_connects(now);
            self.expire_connects(now);
            if self.to_connect.is_empty() && self.connecting.is_empty() {
                return Ok(());
            }
            let wait = self.connect_wait(now, TICK);
            self.poll_once(&mut events, wait)?;
            self.handle_events(&events);
            self.after_batch();
            self.publish();
        }
    }

    fn idle_phase(&mut self, start: u64) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let end = match self.cfg.limit {
            Limit::Duration(d) => start + d.as_nanos() as u64,
            Limit::Messages(_) => u64::MAX,
        };
        self.measure_start = start;
        self.start_intervals(start);
        loop {
            let now = self.now();
            if now >= end || self.stopped() {
                self.res.duration_ns = now - start;
                self.finish_intervals(now);
                return Ok(());
            }
            self.tick_intervals(now);
            let wait = self.interval_wait(now, Duration::from_nanos(end - now).min(TICK));
            self.poll_once(&mut events, wait)?;
            self.handle_events(&events);
            self.after_batch();
        }
    }

    fn load_phase(&mut self, start: u64) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.measure_start = start + self.cfg.warmup.as_nanos() as u64;
        self.send_deadline = match self.cfg.limit {
            Limit::Duration(d) => Some(self.measure_start + d.as_nanos() as u64),
            Limit::Messages(_) => None,
        };
        self.sending = true;
        self.last_echo = start;
        self.start_intervals(self.measure_start);
        let mut schedule = self.plan.rate.map(|r| Schedule::new(start, r));
        let timer = match schedule {
            Some(_) => {
                let mut t = TimerFd::new()?;
                self.poll
                    .registry()
                    .register(&mut t, TIMER, Interest::READABLE)?;
                Some(t)
            }
            None => None,
        };
        let mut armed_for = None;

        // Anything that arrived while connecting is checked now (it can only
        // be unexpected), then the closed loop fills every pipeline.
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        // The open-loop rotation, rebuilt: a slab key freed and reused while
        // connecting may have been pushed twice.
        self.rr.clone_from(&keys);
        self.rr
            .retain(|&k| self.conns.get(k).is_some_and(|c| c.state == State::Open));
        for key in keys {
            self.serve(key, true, true, start);
        }
        self.after_batch();

        let mut stopped_at = None;
        let mut drain_until = u64::MAX;
        let mut last_scan = start;
        loop {
            let now = self.now();
            // Open loop: everything due before the deadline goes out, even
            // if this thread was held up and wakes past the deadline (the
            // asked rate is kept; the lateness shows in the latencies).
            if let (true, Some(s)) = (self.sending && !self.stopped(), schedule.as_mut()) {
                let until = self
                    .send_deadline
                    .map_or(now, |d| now.min(d.saturating_sub(1)));
                self.emit_due(s, until);
            }
            if self.sending && !self.may_keep_sending(now) {
                self.sending = false;
                self.draining = true;
                stopped_at = Some(now);
                drain_until = now + DRAIN_TIMEOUT.as_nanos() as u64;
            }
            if self.sending && !(self.to_connect.is_empty() && self.connecting.is_empty()) {
                self.launch_connects(now);
                self.expire_connects(now);
            }
            self.tick_intervals(now);
            self.flush_dirty();
            if self.cfg.udp && now.saturating_sub(last_scan) >= LOSS_SCAN_EVERY.as_nanos() as u64 {
                last_scan = now;
                self.scan_udp_loss(now);
                self.flush_dirty();
            }
            self.publish();
            if !self.sending && self.owed == 0 {
                break;
            }
            if now >= drain_until {
                self.count_unanswered();
                break;
            }

            let mut wait = TICK;
            if self.sending {
                if let Some(d) = self.send_deadline {
                    wait = wait.min(Duration::from_nanos(d.saturating_sub(now)));
                }
                wait = self.connect_wait(now, wait);
                if let (Some(s), Some(t)) = (schedule.as_ref(), timer.as_ref()) {
                    let next = s.next_time();
                    if next <= now {
                        // Due but no connection to send on (all being
                        // replaced): the next connect wakes the loop.
                        if !self.rr.is_empty() {
                            wait = Duration::ZERO;
                        }
                    } else if armed_for != Some(next) {
                        t.arm(Duration::from_nanos(next - now))?;
                        armed_for = Some(next);
                    }
                }
            } else {
                wait = wait.min(Duration::from_nanos(drain_until.saturating_sub(now)));
            }
            let wait = self.interval_wait(now, wait);
            self.poll_once(&mut events, wait)?;
            self.handle_events(&events);
            self.after_batch();
        }

        let end = match (self.cfg.limit, stopped_at) {
            (Limit::Messages(_), _) => self.last_echo,
            (Limit::Duration(_), Some(at)) => at.min(self.send_deadline.unwrap_or(at)),
            (Limit::Duration(_), None) => self.now(),
        };
        self.res.duration_ns = end.saturating_sub(self.measure_start);
        self.finish_intervals(self.now());
        Ok(())
    }

    /// How long the loop may sleep, at most `wait`, so that the next paced
    /// connect starts on time.
    fn connect_wait(&self, now: u64, wait: Duration) -> Duration {
        match &self.pacer {
            Some(p)
                if !self.to_connect.is_empty()
                    && self.connecting.len() < self.plan.max_connecting =>
            {
                wait.min(Duration::from_nanos(p.next_time().saturating_sub(now)))
            }
            _ => wait,
        }
    }

    /// How long the loop may sleep, at most `wait`, so that the current
    /// interval ends on time.
    fn interval_wait(&self, now: u64, wait: Duration) -> Duration {
        match &self.intervals {
            Some(iv) => wait.min(Duration::from_nanos(
                (iv.start + iv.every_ns).saturating_sub(now),
            )),
            None => wait,
        }
    }

    fn start_intervals(&mut self, start: u64) {
        if self.shared.samples.is_none() {
            return;
        }
        let Some(every) = self.cfg.sample_every() else {
            return;
        };
        self.intervals = Some(IntervalClock {
            every_ns: every.as_nanos() as u64,
            start,
            index: 0,
            total: new_histogram(),
            messages_before: self.res.messages,
            connects_before: self.connects(),
            errors_before: self.res.errors.total(),
        });
    }

    fn connects(&self) -> u64 {
        self.res.connected + self.res.reconnected
    }

    /// Ends every interval whose end has passed (an interval with no echo
    /// is sent too: a stall must show).
    fn tick_intervals(&mut self, now: u64) {
        while let Some(iv) = &self.intervals {
            let end = iv.start + iv.every_ns;
            if now < end {
                return;
            }
            self.send_interval(end, false);
        }
    }

    /// Sends the last, partial interval (up to `now`) and the run's total
    /// histogram goes back into the result.
    fn finish_intervals(&mut self, now: u64) {
        if self.intervals.is_none() {
            return;
        }
        let end = now.max(self.intervals.as_ref().map_or(0, |iv| iv.start));
        self.send_interval(end, true);
        if let Some(iv) = self.intervals.take() {
            self.res.hist = iv.total;
        }
    }

    fn send_interval(&mut self, end: u64, last: bool) {
        let (connects, errors, open) = (
            self.connects(),
            self.res.errors.total(),
            self.open_count as u64,
        );
        let (Some(iv), Some(tx)) = (self.intervals.as_mut(), self.shared.samples.as_ref()) else {
            return;
        };
        iv.total.add(&self.res.hist).expect("same histogram bounds");
        let messages = self.res.messages - iv.messages_before;
        let sample = Sample {
            worker: self.plan.index,
            index: iv.index,
            start_ns: iv.start.saturating_sub(self.measure_start),
            end_ns: end.saturating_sub(self.measure_start),
            hist: self.res.hist.clone(),
            messages,
            bytes: messages * self.payload.wire_len() as u64,
            connects: connects - iv.connects_before,
            errors: errors - iv.errors_before,
            open,
            last,
        };
        self.res.hist.reset();
        iv.index += 1;
        iv.start = end;
        iv.messages_before = self.res.messages;
        iv.connects_before = connects;
        iv.errors_before = errors;
        // The reporter ends only after every worker has: a send cannot fail
        // unless it panicked, and then the run is failing anyway.
        let _ = tx.send(sample);
    }

    /// Whether sending goes on at `now`: not stopped, deadline not reached,
    /// `-n` budget not used up, someone left to send on, server not stuck.
    fn may_keep_sending(&self, now: u64) -> bool {
        !self.stopped()
            && self.send_deadline.is_none_or(|d| now < d)
            && self.budget != Some(0)
            && (self.open_count > 0 || !self.to_connect.is_empty() || !self.connecting.is_empty())
            && !(self.budget.is_some()
                && self.owed > 0
                && now.saturating_sub(self.last_echo) > STALL_TIMEOUT.as_nanos() as u64)
    }

    fn may_send(&self, now: u64) -> bool {
        self.sending && self.send_deadline.is_none_or(|d| now < d) && self.budget != Some(0)
    }

    fn poll_once(&mut self, events: &mut Events, wait: Duration) -> io::Result<()> {
        match self.poll.poll(events, Some(wait)) {
            Ok(()) => Ok(()),
            // mio does not retry EINTR (a signal such as SIGINT arrived).
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                events.clear();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn publish(&mut self) {
        if self.unpublished > 0 {
            self.shared
                .progress_messages
                .fetch_add(self.unpublished, Ordering::Relaxed);
            self.unpublished = 0;
        }
    }

    /// Starts connects until `max_connecting` are in flight.
    fn launch_connects(&mut self, now: u64) {
        while self.connecting.len() < self.plan.max_connecting {
            if self.to_connect.is_empty() {
                return;
            }
            if let Some(p) = self.pacer.as_mut() {
                if !p.try_take(now) {
                    return;
                }
            }
            let Some(id) = self.to_connect.pop_front() else {
                return;
            };
            let mut sock = match open_socket(self.cfg, id) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A unix listener's backlog is full: try again next turn.
                    self.to_connect.push_front(id);
                    return;
                }
                Err(e) => {
                    let target = &self.cfg.target;
                    self.count_error(classify(&e), || format!("connect to {target}: {e}"));
                    continue;
                }
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) = self.poll.registry().register(
                sock.source(),
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                self.count_error(Kind::Other, || format!("register: {e}"));
                continue;
            }
            let udp = matches!(sock, Sock::Udp(_));
            entry.insert(Conn {
                id,
                sock,
                state: State::Connecting { since: now },
                writable: false,
                dirty: false,
                out: Vec::new(),
                out_pos: 0,
                next_seq: 0,
                rx_seq: 0,
                rx_off: 0,
                rx_bad: false,
                inflight: VecDeque::new(),
                unsent: VecDeque::new(),
            });
            if udp {
                self.established(key, now);
            } else {
                self.connecting.push(key);
            }
        }
    }

    fn expire_connects(&mut self, now: u64) {
        let limit = CONNECT_TIMEOUT.as_nanos() as u64;
        for i in 0..self.connecting.len() {
            let key = self.connecting[i];
            if let State::Connecting { since } = self.conns[key].state {
                if now.saturating_sub(since) >= limit {
                    self.count_error(Kind::Timeout, || {
                        format!("connect: no answer within {} s", CONNECT_TIMEOUT.as_secs())
                    });
                    self.close(key);
                }
            }
        }
        self.connecting
            .retain(|&k| matches!(self.conns[k].state, State::Connecting { .. }));
    }

    fn established(&mut self, key: usize, now: u64) {
        let c = &mut self.conns[key];
        if let (State::Connecting { since }, false) = (c.state, self.cfg.udp) {
            self.res
                .connect_hist
                .saturating_record(now.saturating_sub(since).max(1));
        }
        c.state = State::Open;
        c.writable = true;
        self.open_count += 1;
        self.rr.push(key);
        if c.id < self.cfg.connections as u64 {
            self.res.connected += 1;
        } else {
            self.res.reconnected += 1;
        }
        self.shared
            .progress_connected
            .fetch_add(1, Ordering::Relaxed);
        if self.running {
            self.refill(key, now);
        }
    }

    fn count_error(&mut self, kind: Kind, what: impl FnOnce() -> String) {
        let e = &mut self.res.errors;
        match kind {
            Kind::Refused => e.refused += 1,
            Kind::Reset => e.reset += 1,
            Kind::Timeout => e.timeout += 1,
            Kind::Other => e.other += 1,
        }
        self.res.sample(what);
    }

    /// Marks a connection closed; it leaves the slab after the event batch.
    fn close(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if c.state == State::Closed {
            return;
        }
        if c.state == State::Open {
            self.open_count -= 1;
        }
        c.state = State::Closed;
        self.owed -= c.owed() as u64;
        c.inflight.clear();
        c.unsent.clear();
        self.reap.push(key);
    }

    fn after_batch(&mut self) {
        for key in self.reap.drain(..) {
            let mut c = self.conns.remove(key);
            let _ = self.poll.registry().deregister(c.sock.source());
        }
        if !self.connecting.is_empty() {
            let conns = &self.conns;
            self.connecting.retain(|&k| {
                conns
                    .get(k)
                    .is_some_and(|c| matches!(c.state, State::Connecting { .. }))
            });
        }
    }

    fn handle_events(&mut self, events: &Events) {
        for ev in events.iter() {
            if ev.token() == TIMER {
                continue;
            }
            let key = ev.token().0;
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            let writable = ev.is_writable() || ev.is_write_closed();
            if writable {
                c.writable = true;
            }
            match c.state {
                State::Closed => continue,
                State::Connecting { .. } => {
                    if !(readable || writable) {
                        continue;
                    }
                    let now = self.now();
                    match self.conns[key].sock.connect_done() {
                        Ok(true) => self.established(key, now),
                        Ok(false) => continue,
                        Err(e) => {
                            let target = &self.cfg.target;
                            self.count_error(classify(&e), || format!("connect to {target}: {e}"));
                            self.close(key);
                            continue;
                        }
                    }
                }
                State::Open => {}
            }
            self.serve(key, readable, writable, self.now());
        }
    }

    /// Reads (verifying) and writes what a connection's readiness allows.
    fn serve(&mut self, key: usize, readable: bool, writable: bool, now: u64) {
        if readable {
            self.read_ready(key);
        }
        if writable || readable {
            self.refill(key, now);
            self.flush(key);
        }
    }

    /// Reads until `WouldBlock`, verifying everything received.
    fn read_ready(&mut self, key: usize) {
        loop {
            let c = &mut self.conns[key];
            if c.state != State::Open {
                return;
            }
            match c.sock.read(&mut self.rbuf) {
                Ok(0) if !self.cfg.udp => {
                    if c.owed() > 0 {
                        self.res.errors.short += 1;
                        let id = c.id;
                        let owed = c.owed();
                        self.res.sample(|| {
                            format!("connection {id}: closed by the server with {owed} echoes owed")
                        });
                    } else if !self.draining {
                        self.res.errors.closed += 1;
                        let id = c.id;
                        self.res
                            .sample(|| format!("connection {id}: closed by the server"));
                    }
                    self.close(key);
                    return;
                }
                Ok(n) => {
                    let now = self.now();
                    self.last_echo = now;
                    if self.cfg.udp {
                        self.on_datagram(key, n, now);
                    } else if !self.on_stream(key, n, now) || n < self.rbuf.len() {
                        // A short read from a stream socket emptied its
                        // receive queue: anything arriving later raises a new
                        // edge on Linux epoll, so the read that would only say
                        // `WouldBlock` is skipped (tokio clears readiness on a
                        // short read for the same reason). One syscall fewer
                        // per echo.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let id = c.id;
                    self.count_error(classify(&e), || format!("connection {id}: {e}"));
                    self.close(key);
                    return;
                }
            }
        }
    }

    /// Verifies `rbuf[..n]` against the echo stream of connection `key`.
    /// Returns false if the connection had to be closed.
    fn on_stream(&mut self, key: usize, n: usize, now: u64) -> bool {
        let wire = self.payload.wire_len();
        let c = &mut self.conns[key];
        let mut data = &self.rbuf[..n];
        while !data.is_empty() {
            let Some(&(seq, t)) = c.inflight.front() else {
                self.res.errors.mismatch += 1;
                let (id, len) = (c.id, data.len());
                self.res.sample(|| {
                    format!("connection {id}: {len} bytes received that were never sent")
                });
                self.close(key);
                return false;
            };
            debug_assert_eq!(seq, c.rx_seq);
            let take = (wire - c.rx_off).min(data.len());
            if !self.payload.verify(c.id, seq, c.rx_off, &data[..take]) {
                c.rx_bad = true;
            }
            c.rx_off += take;
            data = &data[take..];
            if c.rx_off == wire {
                c.inflight.pop_front();
                c.rx_seq += 1;
                c.rx_off = 0;
                self.owed -= 1;
                if std::mem::take(&mut c.rx_bad) {
                    self.res.errors.mismatch += 1;
                    let id = c.id;
                    self.res
                        .sample(|| format!("connection {id}: message {seq} came back different"));
                } else if self.res.record_echo(t, now, self.measure_start, wire) {
                    self.unpublished += 1;
                }
            }
        }
        if self.cfg.conn_messages == Some(c.rx_seq) {
            self.retire(key, now);
            return false;
        }
        true
    }

    /// `--conn-messages`: connection `key` has had all its echoes; it is
    /// closed (FIN from this side) and, while sending goes on, a new
    /// connection with a new id takes its place.
    fn retire(&mut self, key: usize, now: u64) {
        let id = self.conns[key].id;
        if now >= self.measure_start {
            self.res.completed += 1;
        }
        self.close(key);
        if self.sending {
            self.to_connect.push_back(id + self.cfg.connections as u64);
        }
    }

    /// Matches one reply datagram `rbuf[..n]` with the message it echoes.
    fn on_datagram(&mut self, key: usize, n: usize, now: u64) {
        let wire = self.payload.wire_len();
        let c = &mut self.conns[key];
        let data = &self.rbuf[..n];
        let id = c.id;
        let claimed = if n == wire {
            self.payload.identify(data)
        } else {
            None
        };
        let found = claimed.and_then(|(seq, conn)| {
            (conn == id)
                .then(|| c.inflight.iter().position(|&(s, _)| s == seq))
                .flatten()
                .map(|pos| (seq, pos))
        });
        match (claimed, found) {
            (Some((seq, conn)), None) if conn == id && seq < c.next_seq => self.res.late += 1,
            (_, None) => {
                self.res.errors.mismatch += 1;
                self.res
                    .sample(|| format!("socket {id}: a {n}-byte reply that matches nothing sent"));
            }
            (_, Some((seq, pos))) => {
                let (_, t) = c.inflight.remove(pos).expect("position is in range");
                self.owed -= 1;
                if !self.payload.verify(id, seq, 0, data) {
                    self.res.errors.mismatch += 1;
                    self.res
                        .sample(|| format!("socket {id}: datagram {seq} came back different"));
                } else if self.res.record_echo(t, now, self.measure_start, wire) {
                    self.unpublished += 1;
                }
            }
        }
    }

    /// Queues one new message on connection `key`, meant to leave at `t`.
    fn create(&mut self, key: usize, t: u64) {
        let c = &mut self.conns[key];
        let seq = c.next_seq;
        c.next_seq += 1;
        if self.cfg.udp {
            c.unsent.push_back((seq, t));
        } else {
            if c.out_pos >= COMPACT_AT && c.out_pos * 2 >= c.out.len() {
                c.out.drain(..c.out_pos);
                c.out_pos = 0;
            }
            self.payload.write_message(&mut c.out, c.id, seq);
            c.inflight.push_back((seq, t));
        }
        self.owed += 1;
        if t >= self.measure_start {
            if let Some(b) = self.budget.as_mut() {
                *b -= 1;
            }
        }
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Closed loop: tops the connection up to `pipeline` messages owed.
    fn refill(&mut self, key: usize, now: u64) {
        if !self.running || self.plan.rate.is_some() || self.cfg.idle {
            return;
        }
        let limit = self.cfg.conn_messages.unwrap_or(u64::MAX);
        while self.conns[key].state == State::Open
            && self.conns[key].owed() < self.cfg.pipeline
            && self.conns[key].next_seq < limit
            && self.may_send(now)
        {
            self.create(key, now);
        }
    }

    /// Open loop: sends every message whose intended time has come,
    /// round-robin over the open connections.
    /// A message due while no connection can take it (all being replaced,
    /// with `--conn-messages`) stays due: its latency counts the wait.
    fn emit_due(&mut self, schedule: &mut Schedule, now: u64) {
        while self.budget != Some(0) && schedule.next_time() <= now {
            let Some(key) = self.next_in_rotation() else {
                return;
            };
            let Some(t) = schedule.pop_due(now) else {
                return;
            };
            self.create(key, t);
        }
    }

    /// The next open connection in the round-robin that may take another
    /// message; closed ones, and ones with all their `--conn-messages`
    /// sent, leave the rotation.
    fn next_in_rotation(&mut self) -> Option<usize> {
        let limit = self.cfg.conn_messages.unwrap_or(u64::MAX);
        loop {
            if self.rr.is_empty() {
                return None;
            }
            if self.rr_pos >= self.rr.len() {
                self.rr_pos = 0;
            }
            let key = self.rr[self.rr_pos];
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.state == State::Open && c.next_seq < limit)
            {
                self.rr_pos += 1;
                return Some(key);
            }
            // Closed (or its key reused by another), or done: drop it.
            self.rr.swap_remove(self.rr_pos);
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(key) = self.dirty.pop() {
            if let Some(c) = self.conns.get_mut(key) {
                c.dirty = false;
                self.flush(key);
            }
        }
    }

    /// Writes queued bytes (or datagrams) until done or `WouldBlock`.
    fn flush(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if c.state != State::Open || !c.writable {
            return;
        }
        let udp = matches!(c.sock, Sock::Udp(_));
        let result = loop {
            // What goes next: the next unsent datagram, made afresh (UDP
            // keeps no output buffer), or the unwritten tail of the stream.
            let buf = if udp {
                let Some(&(seq, _)) = c.unsent.front() else {
                    break Ok(());
                };
                self.sbuf.clear();
                self.payload.write_message(&mut self.sbuf, c.id, seq);
                &self.sbuf[..]
            } else if c.out_pos < c.out.len() {
                &c.out[c.out_pos..]
            } else {
                break Ok(());
            };
            match c.sock.write_once(buf) {
                Ok(Some(_)) if udp => {
                    if let Some(sent) = c.unsent.pop_front() {
                        c.inflight.push_back(sent);
                    }
                }
                Ok(Some(n)) => c.out_pos += n,
                Ok(None) => {
                    c.writable = false;
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        }
        if let Err(e) = result {
            let id = c.id;
            self.count_error(classify(&e), || format!("connection {id}: {e}"));
            self.close(key);
        }
    }

    /// UDP: datagrams unanswered for [`UDP_LOSS_TIMEOUT`] are lost; the
    /// closed loop replaces them.
    fn scan_udp_loss(&mut self, now: u64) {
        let limit = UDP_LOSS_TIMEOUT.as_nanos() as u64;
        let mut refill = Vec::new();
        for (key, c) in self.conns.iter_mut() {
            let mut lost_any = false;
            while let Some(&(_, t)) = c.inflight.front() {
                if now.saturating_sub(t) < limit {
                    break;
                }
                c.inflight.pop_front();
                self.owed -= 1;
                if t >= self.measure_start {
                    self.res.lost += 1;
                }
                lost_any = true;
            }
            if lost_any {
                refill.push(key);
            }
        }
        for key in refill {
            self.refill(key, now);
        }
    }

    /// The drain ran out: what is still owed was never answered.
    fn count_unanswered(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let c = &mut self.conns[key];
            let owed = c.owed() as u64;
            if owed == 0 {
                continue;
            }
            if self.cfg.udp {
                let measured = c
                    .inflight
                    .iter()
                    .filter(|&&(_, t)| t >= self.measure_start)
                    .count();
                self.res.lost += measured as u64;
            } else {
                self.res.errors.timeout += owed;
                let id = c.id;
                self.res.sample(|| {
                    format!(
                        "connection {id}: {owed} echoes not back within {} s of the end",
                        DRAIN_TIMEOUT.as_secs()
                    )
                });
            }
            self.owed -= owed;
            c.inflight.clear();
            c.unsent.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tcpkali's issue #61: a plain bind() to (source, 0) takes a port from
    /// the source's whole ephemeral range. With IP_BIND_ADDRESS_NO_PORT the
    /// bind reserves no port (getsockname says 0) until connect() picks one
    /// per (source, destination) pair.
    #[test]
    fn source_bind_leaves_the_port_to_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = BenchConfig::new(Endpoint::Inet(listener.local_addr().unwrap()));
        cfg.source_ips = vec!["127.0.0.2".parse().unwrap()];
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        set_bind_address_no_port(&sock).unwrap();
        sock.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .unwrap();
        let local = sock.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(local.port(), 0, "bind reserved a port: {local}");

        let Sock::Stream(Stream::Tcp(stream)) = open_socket(&cfg, 0).unwrap() else {
            panic!("a TCP stream");
        };
        let (_peer, from) = listener.accept().unwrap();
        assert_eq!(from.ip().to_string(), "127.0.0.2");
        assert_ne!(from.port(), 0);
        drop(stream);
    }
}
