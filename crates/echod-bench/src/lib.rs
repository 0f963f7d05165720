//! `echod-bench`: the verifying load generator.
//!
//! Many concurrent connections (TCP, unix sockets or UDP sockets), each
//! sending messages and checking every echoed byte, driven by one mio poll
//! loop per worker thread (one by default, `--threads N` for more; each owns
//! a contiguous share of the connections and results are merged at the end).
//!
//! # Layout
//! All modules are private; the public API is what the binary calls:
//! [`Args`] (its flags), [`BenchConfig`], [`run`], the [`Report`] it returns
//! and [`BenchError`].
//! - `cli`: [`Args`], the command line (also read by crates/echod-dist for
//!   the man page and shell completions).
//! - `payload`: the message layout (sequence number, connection id, a
//!   per-connection pattern) and piecewise verification.
//! - `schedule`: open-loop intended send times and a precise timer.
//! - `worker`: one thread's poll loop: connect, run, drain.
//! - `report`: tallies, merging, the human summary and the JSON object.
//! - `intervals`: merges the workers' interval samples; progress lines,
//!   JSON lines, the HdrHistogram interval log and the SVG plot.
//! - `cpu_clock`: another process's CPU time, for `--server-pid`.
//!
//! # Semantics (the contract in docs/LOADTEST.md)
//! - `-c` connections are opened first (at most 512 connects in flight,
//!   `MAX_CONNECTING`); the clock starts when all are settled.
//! - `-d SECONDS` is the measured time, after `--warmup`; sending stops at
//!   the deadline and echoes still owed get 2 s, then count as timeouts.
//! - `-n MESSAGES` is the total number of measured messages across all
//!   connections (shared out between the threads), not per connection.
//! - Closed loop by default: every connection keeps `--pipeline` messages
//!   in flight. `--rate R`: open loop, R messages/s in total; latency is
//!   measured from each message's intended send time.
//! - Every failure is counted by kind ([`ErrorCounts`]); the run is `ok`
//!   only if there was none and every connection was established.
//!   UDP loss (no reply within 1 s) is reported, not an error.
//! - `--connect-rate R`: at most R connects per second (shared out between
//!   the threads), for the first `-c` and for replacements.
//! - `--conn-messages N`: a connection that has had N verified echoes is
//!   closed by echod-bench and a new one (a new id) takes its place.
//! - Intervals (`--interval`, `--hdr-log`, `--plot`) start at the end of the
//!   warm-up; each worker records into one histogram and hands it over at
//!   each interval's end, so the per-message cost does not change.

mod cli;
mod cpu_clock;
mod intervals;
mod payload;
mod report;
mod schedule;
mod worker;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use cpu_clock::ProcessCpuClock;
use echod_common::addr::Endpoint;
use echod_common::exit;
use echod_common::UDP_MAX_PAYLOAD;

pub use cli::Args;
pub use intervals::Interval;
pub use report::{ErrorCounts, Latency, Report};

/// `-c` default.
pub const DEFAULT_CONNECTIONS: usize = 50;
/// `-l` default.
pub const DEFAULT_LENGTH: usize = 64;
/// `-d` default, when neither `-d` nor `-n` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Non-blocking connects in flight at once, across all threads: well under
/// the usual listen backlogs (Linux `somaxconn` is 4096), so a burst of
/// connects is not dropped by the server's accept queue.
const MAX_CONNECTING: usize = 512;
/// The largest `-l`: messages are buffered whole on the sending side.
const MAX_LENGTH: usize = 64 << 20;
/// The interval `--hdr-log` and `--plot` use when `--interval` is not given.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest `--interval`: each interval end copies a histogram of about
/// 270 KiB per thread, which must stay rare next to the messages.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// What the messages look like on the wire (`--proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// Raw bytes, echoed as they are (echod's default mode).
    Echo,
    /// The seeds' 10-byte length header (echod --mode framed).
    Framed,
    /// sockperf's 14-byte header asking for a reply: drives `sockperf server`
    /// or `echod --mode sockperf`; the reply must come back with the client
    /// flag cleared.
    Sockperf,
}

impl Proto {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Echo => "echo",
            Proto::Framed => "framed",
            Proto::Sockperf => "sockperf",
        }
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// `-d`: send for this long (after the warm-up).
    Duration(Duration),
    /// `-n`: this many measured messages in total, across all connections.
    Messages(u64),
}

/// What an echod-bench run does; [`run`] refuses combinations that cannot
/// work (a usage error).
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub target: Endpoint,
    /// `-c`: connections (UDP: sockets).
    pub connections: usize,
    /// `-l`: payload bytes per message.
    pub length: usize,
    pub limit: Limit,
    /// `--pipeline`: messages in flight per connection (closed loop).
    pub pipeline: usize,
    /// `--rate`: total messages per second (open loop).
    pub rate: Option<f64>,
    pub warmup: Duration,
    /// `--source-ip`: local addresses, used round-robin by connection id.
    pub source_ips: Vec<IpAddr>,
    pub threads: usize,
    /// Wrap each message in the 10-byte length header.
    /// What the messages look like on the wire.
    pub proto: Proto,
    pub udp: bool,
    /// Open the connections, hold them, send nothing.
    pub idle: bool,
    /// Draw a progress bar on stderr (the binary sets this when stderr is a terminal).
    pub progress: bool,
    /// `--server-pid`: a local process (the server) whose CPU time over the
    /// measured window is reported, per message too.
    pub server_pid: Option<u32>,
    /// `--connect-rate`: new connections per second at most.
    pub connect_rate: Option<f64>,
    /// `--conn-messages`: verified echoes per connection before it is replaced.
    pub conn_messages: Option<u64>,
    /// `--interval`: report every this long (progress lines on stderr).
    pub interval: Option<Duration>,
    /// With `interval`: one JSON object per interval on stdout (`--json`).
    pub interval_json: bool,
    /// `--hdr-log`: every interval's histogram, HdrHistogram interval log format.
    pub hdr_log: Option<PathBuf>,
    /// `--plot`: an SVG chart of messages/s and latency percentiles.
    pub plot: Option<PathBuf>,
}

impl BenchConfig {
    /// The defaults, against `target`.
    pub fn new(target: Endpoint) -> Self {
        BenchConfig {
            target,
            connections: DEFAULT_CONNECTIONS,
            length: DEFAULT_LENGTH,
            limit: Limit::Duration(DEFAULT_DURATION),
            pipeline: 1,
            rate: None,
            warmup: Duration::ZERO,
            source_ips: Vec::new(),
            threads: 1,
            proto: Proto::Echo,
            udp: false,
            idle: false,
            progress: false,
            server_pid: None,
            connect_rate: None,
            conn_messages: None,
            interval: None,
            interval_json: false,
            hdr_log: None,
            plot: None,
        }
    }

    /// How often the workers hand over interval samples: `--interval`, or
    /// [`DEFAULT_SAMPLE_INTERVAL`] when only a log or a plot needs them.
    pub(crate) fn sample_every(&self) -> Option<Duration> {
        self.interval.or_else(|| {
            (self.hdr_log.is_some() || self.plot.is_some()).then_some(DEFAULT_SAMPLE_INTERVAL)
        })
    }

    /// Refuses combinations that cannot work, with a [`BenchError::Usage`].
    fn validate(&self) -> Result<(), BenchError> {
        let usage = |m: String| Err(BenchError::Usage(m));
        if self.connections == 0 {
            return usage("-c must be at least 1".into());
        }
        if self.length == 0 || self.length > MAX_LENGTH {
            return usage(format!("-l must be from 1 to {MAX_LENGTH}"));
        }
        if self.pipeline == 0 {
            return usage("--pipeline must be at least 1".into());
        }
        if self.threads == 0 || self.threads > self.connections {
            return usage(format!(
                "--threads must be from 1 to the number of connections ({})",
                self.connections
            ));
        }
        match self.limit {
            Limit::Duration(d) if d.is_zero() => return usage("-d must be more than 0".into()),
            Limit::Messages(0) => return usage("-n must be at least 1".into()),
            Limit::Messages(_) if self.idle => {
                return usage("--idle holds connections for -d seconds; -n makes no sense".into())
            }
            _ => {}
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return usage("--rate must be a positive number of messages per second".into());
            }
            if self.idle {
                return usage("--idle sends nothing; --rate makes no sense with it".into());
            }
        }
        if let Some(r) = self.connect_rate {
            if !(r.is_finite() && r > 0.0) {
                return usage(
                    "--connect-rate must be a positive number of connections per second".into(),
                );
            }
        }
        if let Some(n) = self.conn_messages {
            if n == 0 {
                return usage("--conn-messages must be at least 1".into());
            }
            if self.udp || self.idle {
                return usage(
                    "--conn-messages needs connections that send: not with --udp or --idle".into(),
                );
            }
        }
        if let Some(i) = self.interval {
            if i < MIN_INTERVAL {
                return usage(format!(
                    "--interval must be at least {} s",
                    MIN_INTERVAL.as_secs_f64()
                ));
            }
        }
        if self.udp {
            if self.proto == Proto::Framed {
                return usage("--framed and --udp cannot be combined".into());
            }
            if self.idle {
                return usage("--idle needs connections; UDP has none".into());
            }
            if !(payload::ID_LEN..=UDP_MAX_PAYLOAD).contains(&self.length) {
                return usage(format!(
                    "with --udp, -l must be from {} (sequence and id) to {UDP_MAX_PAYLOAD}",
                    payload::ID_LEN
                ));
            }
        }
        match &self.target {
            Endpoint::Unix(_) if self.udp => {
                return usage("--udp needs a host:port address, not a unix socket".into())
            }
            Endpoint::Unix(_) if !self.source_ips.is_empty() => {
                return usage("--source-ip applies to TCP and UDP targets only".into())
            }
            Endpoint::Inet(addr) => {
                if let Some(ip) = self
                    .source_ips
                    .iter()
                    .find(|ip| ip.is_ipv4() != addr.is_ipv4())
                {
                    return usage(format!(
                        "--source-ip {ip} is not of the same IP version as {addr}"
                    ));
                }
            }
            Endpoint::Unix(_) => {}
        }
        Ok(())
    }

    fn transport(&self) -> &'static str {
        match (&self.target, self.udp) {
            (Endpoint::Unix(_), _) => "unix",
            (_, true) => "udp",
            _ => "tcp",
        }
    }

    fn mode(&self) -> &'static str {
        if self.idle {
            "idle"
        } else if self.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    }
}

/// Why a run could not happen at all (errors *during* a run are counted in
/// the [`Report`] instead). `Display` is one human line.
#[derive(Debug)]
pub enum BenchError {
    /// Bad options (exit 2).
    Usage(String),
    /// A local failure that stops the whole run, e.g. creating a poll (exit 1).
    Io {
        context: &'static str,
        source: io::Error,
    },
}

impl BenchError {
    /// The process exit status for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Usage(_) => exit::USAGE,
            BenchError::Io { .. } => exit::FAILURE,
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "{m}"),
            BenchError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Io { source, .. } => Some(source),
            BenchError::Usage(_) => None,
        }
    }
}

/// What the worker threads share: read-only setup, the stop flag, the
/// start barrier, and progress counters (updated in batches, read by the
/// progress bar only).
pub(crate) struct Shared {
    pub cfg: BenchConfig,
    pub payload: payload::Payload,
    pub barrier: Barrier,
    pub stop: Arc<AtomicBool>,
    pub progress_messages: AtomicU64,
    pub progress_connected: AtomicU64,
    pub started: OnceLock<Instant>,
    /// The wall clock at `started` (the HdrHistogram log's time base).
    pub started_wall: OnceLock<SystemTime>,
    /// Where workers send interval samples, when intervals are on.
    pub samples: Option<mpsc::Sender<intervals::Sample>>,
}

/// Splits `total` into `parts` shares differing by at most one.
fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

/// Runs the benchmark and returns its report. `stop` ends the run early
/// (the binary sets it on SIGINT/SIGTERM): sending stops, echoes owed are
/// drained, and the report covers what was measured.
pub fn run(cfg: &BenchConfig, stop: Arc<AtomicBool>) -> Result<Report, BenchError> {
    cfg.validate()?;
    match echod_common::sys::raise_fd_limit() {
        Ok(limit) if limit < cfg.connections as u64 + 64 => log::warn!(
            "-c {} needs about {} file descriptors but the limit is {limit}: \
             connections beyond it will fail (raise the hard limit: ulimit -Hn)",
            cfg.connections,
            cfg.connections + 64
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-files limit: {e}"),
    }
    let outputs = intervals::Outputs::open(cfg)
        .map_err(|(context, source)| BenchError::Io { context, source })?;
    let (samples_tx, samples_rx) = match cfg.sample_every() {
        Some(_) => {
            let (tx, rx) = mpsc::channel();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let shared = Shared {
        cfg: cfg.clone(),
        payload: payload::Payload::new(cfg.length, cfg.proto),
        barrier: Barrier::new(cfg.threads),
        stop,
        progress_messages: AtomicU64::new(0),
        progress_connected: AtomicU64::new(0),
        started: OnceLock::new(),
        started_wall: OnceLock::new(),
        samples: samples_tx,
    };
    let mut first_id = 0;
    let plans: Vec<worker::Plan> = (0..cfg.threads)
        .map(|i| {
            let count = share(cfg.connections as u64, cfg.threads, i) as usize;
            let plan = worker::Plan {
                index: i,
                first_id,
                count,
                budget: match cfg.limit {
                    Limit::Messages(n) => Some(share(n, cfg.threads, i)),
                    Limit::Duration(_) => None,
                },
                rate: cfg.rate.map(|r| r * count as f64 / cfg.connections as f64),
                max_connecting: (MAX_CONNECTING / cfg.threads).max(1),
                connect_rate: cfg
                    .connect_rate
                    .map(|r| r * count as f64 / cfg.connections as f64),
            };
            first_id += count as u64;
            plan
        })
        .collect();

    let server_clock = match cfg.server_pid {
        Some(pid) => Some(ProcessCpuClock::of(pid).map_err(|e| {
            BenchError::Usage(format!("--server-pid {pid}: cannot read its CPU time: {e}"))
        })?),
        None => None,
    };
    let done = AtomicBool::new(false);
    let (results, server_cpu, output_errors) = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .into_iter()
            .enumerate()
            .map(|(i, plan)| {
                let shared = &shared;
                std::thread::Builder::new()
                    .name(format!("bench-{i}"))
                    .spawn_scoped(scope, move || worker::run_worker(shared, plan))
            })
            .collect();
        if cfg.progress {
            let (shared, done) = (&shared, &done);
            scope.spawn(move || progress_bar(shared, done));
        }
        let reporter = samples_rx.map(|rx| {
            let (shared, done) = (&shared, &done);
            scope.spawn(move || outputs.run(rx, shared, done))
        });
        let sampler = server_clock.map(|clock| {
            let (shared, done) = (&shared, &done);
            scope.spawn(move || server_cpu_in_window(clock, shared, done))
        });
        let mut results = Vec::new();
        let mut failure = None;
        for h in handles {
            match h {
                Ok(h) => match h.join() {
                    Ok(Ok(r)) => results.push(r),
                    Ok(Err(e)) => {
                        failure.get_or_insert(BenchError::Io {
                            context: "worker failed",
                            source: e,
                        });
                    }
                    Err(_) => {
                        failure.get_or_insert(BenchError::Io {
                            context: "worker failed",
                            source: io::Error::other("a worker thread panicked"),
                        });
                    }
                },
                Err(e) => {
                    // The barrier would wait forever for a thread that never started.
                    shared.stop.store(true, Ordering::Relaxed);
                    failure.get_or_insert(BenchError::Io {
                        context: "cannot start a worker thread",
                        source: e,
                    });
                }
            }
        }
        done.store(true, Ordering::Relaxed);
        let server_cpu = sampler.and_then(|s| s.join().ok().flatten());
        let output_errors = match reporter.map(|r| r.join()) {
            Some(Ok(errors)) => errors,
            Some(Err(_)) => vec!["the interval reporter panicked".to_string()],
            None => Vec::new(),
        };
        match failure {
            Some(e) => Err(e),
            None => Ok((results, server_cpu, output_errors)),
        }
    })?;

    let info = report::RunInfo {
        target: cfg.target.to_string(),
        transport: cfg.transport(),
        framed: cfg.proto == Proto::Framed,
        proto: cfg.proto.name(),
        mode: cfg.mode(),
        connections_requested: cfg.connections as u64,
        threads: cfg.threads,
        length: cfg.length,
        pipeline: cfg.pipeline,
        rate: cfg.rate,
        warmup_s: cfg.warmup.as_secs_f64(),
        connect_rate: cfg.connect_rate,
        conn_messages: cfg.conn_messages,
        interval_s: cfg.sample_every().map(|d| d.as_secs_f64()),
    };
    let mut report = Report::merge(info, results);
    for e in output_errors {
        report.output_failed(e);
    }
    if let Some(cpu) = server_cpu {
        report.set_server_cpu(cpu);
    }
    Ok(report)
}

/// The server's CPU time over the measured window: from the end of the
/// warm-up to the `-d` deadline (or, with `-n`, the end of the run). `None`
/// if the run ended before the window opened or the clock failed.
fn server_cpu_in_window(
    clock: ProcessCpuClock,
    shared: &Shared,
    done: &AtomicBool,
) -> Option<Duration> {
    // Polls `ready` every millisecond; false if the run ended first.
    let wait_for = |ready: &dyn Fn() -> bool| loop {
        if ready() {
            return true;
        }
        if done.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if !wait_for(&|| shared.started.get().is_some()) {
        return None;
    }
    let measure_from = *shared.started.get()? + shared.cfg.warmup;
    if !wait_for(&|| Instant::now() >= measure_from) {
        return None;
    }
    let before = clock.now().ok()?;
    match shared.cfg.limit {
        Limit::Duration(d) => wait_for(&|| Instant::now() >= measure_from + d),
        Limit::Messages(_) => wait_for(&|| false), // until the run ends
    };
    Some(clock.now().ok()?.saturating_sub(before))
}

/// Draws the live progress bar on stderr until `done`.
fn progress_bar(shared: &Shared, done: &AtomicBool) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let cfg = &shared.cfg;
    let (len, by_messages) = match cfg.limit {
        Limit::Messages(n) => (n, true),
        Limit::Duration(d) => ((cfg.warmup + d).as_millis() as u64, false),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut last = (Instant::now(), 0u64);
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let msgs = shared.progress_messages.load(Ordering::Relaxed);
        let conns = shared.progress_connected.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (msgs - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, msgs);
        match shared.started.get() {
            None => bar.set_message(format!("connecting {conns}/{}", cfg.connections)),
            Some(start) => {
                bar.set_position(if by_messages {
                    msgs
                } else {
                    start.elapsed().as_millis() as u64
                });
                bar.set_message(format!(
                    "{conns} connections, {msgs} messages, {rate:.0} msg/s"
                ));
            }
        }
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BenchConfig {
        BenchConfig::new("127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn shares_add_up() {
        for (total, parts) in [(10u64, 3usize), (1, 4), (10_000, 7)] {
            let sum: u64 = (0..parts).map(|i| share(total, parts, i)).sum();
            assert_eq!(sum, total);
        }
    }

    #[test]
    fn validate_refuses_impossible_runs() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.udp = true;
        c.length = 8;
        assert!(c.validate().is_err(), "UDP messages must carry their ids");
        let mut c = cfg();
        c.threads = 51;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.source_ips = vec!["::1".parse().unwrap()];
        assert!(c.validate().is_err(), "v6 source for a v4 target");
        let mut c = cfg();
        c.idle = true;
        c.rate = Some(10.0);
        assert_eq!(c.validate().unwrap_err().exit_code(), exit::USAGE);
        let mut c = cfg();
        c.connect_rate = Some(f64::INFINITY);
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.conn_messages = Some(5);
        c.udp = true;
        assert!(c.validate().is_err(), "UDP has no connections to replace");
        let mut c = cfg();
        c.interval = Some(Duration::from_millis(1));
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.plot = Some("x.svg".into());
        assert_eq!(c.sample_every(), Some(DEFAULT_SAMPLE_INTERVAL));
    }
}
