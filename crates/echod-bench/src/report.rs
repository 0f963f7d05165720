//! Counting and reporting: what each worker thread tallies, how the tallies
//! merge, and the summary printed for people (`Display`) or machines (JSON).

use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use echod_common::exit;

/// Latency histogram bounds: 1 ns to one hour, 3 significant digits.
const HIST_MAX_NS: u64 = 3_600_000_000_000;
const HIST_SIGFIG: u8 = 3;

/// A fresh latency histogram (nanoseconds, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Errors by kind. Every counter here makes the run fail.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Messages whose echo differed from what was sent (or bytes nobody sent).
    pub mismatch: u64,
    /// Connections the server closed while echoes were still owed.
    pub short: u64,
    /// Connections reset by the server (ECONNRESET, EPIPE).
    pub reset: u64,
    /// Connections refused (nothing listening; for UDP, ICMP port unreachable).
    pub refused: u64,
    /// Connects not done within the connect timeout, and messages still
    /// unanswered when the drain time after the run ran out.
    pub timeout: u64,
    /// Connections the server closed with nothing owed, before the end.
    pub closed: u64,
    /// Anything else (e.g. out of file descriptors or local ports).
    pub other: u64,
}

impl ErrorCounts {
    /// Adds another tally to this one.
    pub(crate) fn add(&mut self, o: &ErrorCounts) {
        self.mismatch += o.mismatch;
        self.short += o.short;
        self.reset += o.reset;
        self.refused += o.refused;
        self.timeout += o.timeout;
        self.closed += o.closed;
        self.other += o.other;
    }

    /// All errors together.
    pub(crate) fn total(&self) -> u64 {
        self.mismatch
            + self.short
            + self.reset
            + self.refused
            + self.timeout
            + self.closed
            + self.other
    }

    /// The exit status these errors call for: data errors first (they mean
    /// the server is wrong), then refused, reset, timeout (see [`exit`]).
    pub(crate) fn exit_code(&self) -> u8 {
        if self.mismatch + self.short + self.closed + self.other > 0 {
            exit::FAILURE
        } else if self.refused > 0 {
            exit::REFUSED
        } else if self.reset > 0 {
            exit::RESET
        } else if self.timeout > 0 {
            exit::TIMEOUT
        } else {
            exit::OK
        }
    }
}

/// One worker thread's result; merged into a [`Report`].
#[derive(Debug)]
pub struct WorkerResult {
    /// Latencies of the measured, verified messages, in nanoseconds.
    pub hist: Histogram<u64>,
    /// Measured, verified messages.
    pub messages: u64,
    /// Wire bytes of those messages (one direction).
    pub bytes: u64,
    /// Connections of the first `-c` that were established.
    pub connected: u64,
    /// Replacement connections (`--conn-messages`) that were established.
    pub reconnected: u64,
    /// Connections closed by echod-bench after their `--conn-messages`
    /// echoes, in the measured window.
    pub completed: u64,
    /// Connect latencies (non-blocking connect to established), in ns.
    pub connect_hist: Histogram<u64>,
    /// Connections still open when the run ended.
    pub open_at_end: u64,
    /// Measured UDP datagrams with no reply within the loss timeout.
    pub lost: u64,
    /// UDP replies that came after they had been counted lost, or twice.
    pub late: u64,
    pub errors: ErrorCounts,
    /// Nanoseconds of measurement (sending window, or to the last echo for `-n`).
    pub duration_ns: u64,
    /// Nanoseconds this worker took to settle all its connects.
    pub connect_ns: u64,
    /// The first few error descriptions, for the summary.
    pub samples: Vec<String>,
}

impl WorkerResult {
    /// Counts one verified echo of `wire` bytes sent at `sent` and complete
    /// at `now` (ns on the worker's clock). Echoes sent before
    /// `measure_start` (the warm-up) are verified but not recorded; returns
    /// whether this one was.
    pub fn record_echo(&mut self, sent: u64, now: u64, measure_start: u64, wire: usize) -> bool {
        if sent < measure_start {
            return false;
        }
        self.hist.saturating_record(now.saturating_sub(sent).max(1));
        self.messages += 1;
        self.bytes += wire as u64;
        true
    }

    /// An empty result.
    pub fn new() -> Self {
        WorkerResult {
            hist: new_histogram(),
            messages: 0,
            bytes: 0,
            connected: 0,
            reconnected: 0,
            completed: 0,
            connect_hist: new_histogram(),
            open_at_end: 0,
            lost: 0,
            late: 0,
            errors: ErrorCounts::default(),
            duration_ns: 0,
            connect_ns: 0,
            samples: Vec::new(),
        }
    }

    /// Keeps a short description of an error (the first few only).
    pub fn sample(&mut self, what: impl FnOnce() -> String) {
        if self.samples.len() < MAX_SAMPLES {
            let s = what();
            if !self.samples.contains(&s) {
                self.samples.push(s);
            }
        }
    }
}

impl Default for WorkerResult {
    fn default() -> Self {
        Self::new()
    }
}

/// Error descriptions kept per report.
const MAX_SAMPLES: usize = 5;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// The percentiles of a histogram of nanoseconds; all zero when it is
    /// empty (so JSON never holds NaN).
    pub(crate) fn of(hist: &Histogram<u64>) -> Latency {
        if hist.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            min: us(hist.min()),
            p50: us(hist.value_at_quantile(0.50)),
            p90: us(hist.value_at_quantile(0.90)),
            p99: us(hist.value_at_quantile(0.99)),
            p999: us(hist.value_at_quantile(0.999)),
            max: us(hist.max()),
            mean: hist.mean() / 1000.0,
        }
    }
}

/// `n` per second over `seconds`, 0 when no time passed (never NaN or
/// infinity).
pub(crate) fn per_sec(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// The run's summary: `Display` for people, `Serialize` for `--json`.
/// The JSON schema is in docs/LOADTEST.md (and checked by the tests).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"summary"` (interval objects say `"interval"`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The target as given.
    pub target: String,
    /// `tcp`, `unix` or `udp`.
    pub transport: &'static str,
    pub framed: bool,
    /// `echo`, `framed` or `sockperf` (`--proto`).
    pub proto: &'static str,
    /// `closed` (pipelined), `open` (`--rate`) or `idle`.
    pub mode: &'static str,
    /// Connections of the first `-c` established (UDP: sockets opened).
    pub connections: u64,
    /// Connections asked for (`-c`).
    pub connections_requested: u64,
    /// Connections still open at the end (what `--idle` is about).
    pub connections_open: u64,
    /// Seconds the connect phase took (all connects settled), before the
    /// clock started: the ramp, with `--connect-rate`.
    pub connect_s: f64,
    /// `--connect-rate`: new connections per second at most, if given.
    pub connect_rate: Option<f64>,
    /// Every connection established: the first `-c` and their replacements.
    pub connections_opened: u64,
    /// `--conn-messages`: echoes per connection before it is replaced.
    pub conn_messages: Option<u64>,
    /// Connections closed after their `--conn-messages` echoes, in the
    /// measured window.
    pub connections_completed: u64,
    /// `connections_completed` per second of the measured time.
    pub conns_per_sec: f64,
    /// Connect latencies (connect call to established) of every TCP or
    /// unix connection, in microseconds.
    pub connect_latency_us: Latency,
    pub threads: usize,
    /// Payload bytes per message (`-l`).
    pub length: usize,
    pub pipeline: usize,
    /// Asked rate (`--rate`), messages per second, if open loop.
    pub rate: Option<f64>,
    pub warmup_s: f64,
    /// `--interval` (or the 1 s that `--hdr-log`/`--plot` use), if any.
    pub interval_s: Option<f64>,
    /// Seconds measured (after warm-up).
    pub duration_s: f64,
    /// Verified echoes measured.
    pub messages: u64,
    pub msgs_per_sec: f64,
    /// Wire bytes echoed and verified (one direction).
    pub bytes: u64,
    /// Millions of bytes per second, one direction.
    pub mb_per_sec: f64,
    pub latency_us: Latency,
    pub errors: ErrorCounts,
    /// UDP datagrams with no reply within 1 s (not an error).
    pub lost: u64,
    /// UDP replies that arrived after being counted lost, or twice.
    pub late: u64,
    /// The first few errors, described.
    pub error_samples: Vec<String>,
    /// True when every connection was established, nothing went wrong, and
    /// (unless idle) at least one echo was measured.
    pub ok: bool,
    /// `--server-pid`: that process's CPU seconds (user + system) over the
    /// measured window; `null` when not asked for.
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s` per verified message, in microseconds.
    pub server_cpu_us_per_msg: Option<f64>,
}

/// How a run was set up, for the report header.
pub struct RunInfo {
    pub target: String,
    pub transport: &'static str,
    pub framed: bool,
    pub proto: &'static str,
    pub mode: &'static str,
    pub connections_requested: u64,
    pub threads: usize,
    pub length: usize,
    pub pipeline: usize,
    pub rate: Option<f64>,
    pub warmup_s: f64,
    pub connect_rate: Option<f64>,
    pub conn_messages: Option<u64>,
    pub interval_s: Option<f64>,
}

impl Report {
    /// Merges the workers' results into the summary.
    pub(crate) fn merge(info: RunInfo, results: Vec<WorkerResult>) -> Report {
        let mut hist = new_histogram();
        let mut connect_hist = new_histogram();
        let (mut reconnected, mut completed) = (0, 0);
        let mut errors = ErrorCounts::default();
        let (mut messages, mut bytes, mut connected, mut open, mut lost, mut late) =
            (0, 0, 0, 0, 0, 0);
        let mut duration_ns = 0;
        let mut connect_ns = 0;
        let mut samples = Vec::new();
        for r in results {
            hist.add(&r.hist).expect("same histogram bounds");
            connect_hist
                .add(&r.connect_hist)
                .expect("same histogram bounds");
            reconnected += r.reconnected;
            completed += r.completed;
            errors.add(&r.errors);
            messages += r.messages;
            bytes += r.bytes;
            connected += r.connected;
            open += r.open_at_end;
            lost += r.lost;
            late += r.late;
            duration_ns = duration_ns.max(r.duration_ns);
            connect_ns = connect_ns.max(r.connect_ns);
            for s in r.samples {
                if samples.len() < MAX_SAMPLES && !samples.contains(&s) {
                    samples.push(s);
                }
            }
        }
        let duration_s = duration_ns as f64 / 1e9;
        let per_sec = |n: u64| per_sec(n, duration_s);
        let latency_us = Latency::of(&hist);
        // A load run in which nothing at all came back (e.g. every UDP
        // datagram lost) did not show the server working.
        let ok = errors.total() == 0
            && connected == info.connections_requested
            && (info.mode == "idle" || messages > 0);
        Report {
            kind: "summary",
            target: info.target,
            transport: info.transport,
            framed: info.framed,
            proto: info.proto,
            mode: info.mode,
            connections: connected,
            connections_requested: info.connections_requested,
            connections_open: open,
            connect_s: connect_ns as f64 / 1e9,
            connect_rate: info.connect_rate,
            connections_opened: connected + reconnected,
            conn_messages: info.conn_messages,
            connections_completed: completed,
            conns_per_sec: per_sec(completed),
            connect_latency_us: Latency::of(&connect_hist),
            threads: info.threads,
            length: info.length,
            pipeline: info.pipeline,
            rate: info.rate,
            warmup_s: info.warmup_s,
            interval_s: info.interval_s,
            duration_s,
            messages,
            msgs_per_sec: per_sec(messages),
            bytes,
            mb_per_sec: per_sec(bytes) / 1e6,
            latency_us,
            errors,
            lost,
            late,
            error_samples: samples,
            ok,
            server_cpu_s: None,
            server_cpu_us_per_msg: None,
        }
    }

    /// An output (`--hdr-log`, `--plot`, interval lines) could not be
    /// written: the run fails with an `other` error that says which.
    pub(crate) fn output_failed(&mut self, what: String) {
        self.errors.other += 1;
        self.ok = false;
        if self.error_samples.len() < MAX_SAMPLES {
            self.error_samples.push(what);
        }
    }

    /// Records the server's CPU time over the measured window.
    pub(crate) fn set_server_cpu(&mut self, cpu: std::time::Duration) {
        self.server_cpu_s = Some(cpu.as_secs_f64());
        self.server_cpu_us_per_msg =
            (self.messages > 0).then(|| cpu.as_secs_f64() * 1e6 / self.messages as f64);
    }

    /// The exit status for this run (see [`exit`]); connections that never
    /// got established without a counted error cannot happen, but would fail.
    pub fn exit_code(&self) -> u8 {
        match self.errors.exit_code() {
            exit::OK if !self.ok => exit::FAILURE,
            code => code,
        }
    }
}

/// A latency in microseconds, printed with a unit that suits its size.
pub(crate) fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let framed = match self.proto {
            "echo" => String::new(),
            proto => format!(", {proto}"),
        };
        let mode = match (self.mode, self.rate) {
            ("open", Some(r)) => format!("open loop at {r} msg/s"),
            ("idle", _) => "idle (connections held, nothing sent)".to_string(),
            _ => format!("closed loop, pipeline {}", self.pipeline),
        };
        writeln!(
            f,
            "echod-bench {} ({}{framed}): {} connections, {}-byte messages, {mode}, {} thread{}",
            self.target,
            self.transport,
            self.connections_requested,
            self.length,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
        )?;
        let paced = self
            .connect_rate
            .map_or(String::new(), |r| format!(" (at most {r} per second)"));
        writeln!(
            f,
            "  connections  {} established in {:.2} s{paced}, {} open at the end",
            self.connections, self.connect_s, self.connections_open
        )?;
        if let Some(n) = self.conn_messages {
            writeln!(
                f,
                "  churn        {} opened in all, {} closed after {n} echoes each, {:.1} connections/s",
                self.connections_opened, self.connections_completed, self.conns_per_sec
            )?;
        }
        if self.connections_opened > 0 && self.transport != "udp" {
            let l = &self.connect_latency_us;
            writeln!(
                f,
                "  connect      p50 {}  p99 {}  p99.9 {}  max {}",
                fmt_us(l.p50),
                fmt_us(l.p99),
                fmt_us(l.p999),
                fmt_us(l.max)
            )?;
        }
        let warmup = if self.warmup_s > 0.0 {
            format!(" (after {:.2} s of warm-up)", self.warmup_s)
        } else {
            String::new()
        };
        writeln!(f, "  duration     {:.2} s{warmup}", self.duration_s)?;
        if self.mode != "idle" {
            writeln!(
                f,
                "  messages     {} verified, {:.1} msg/s",
                self.messages, self.msgs_per_sec
            )?;
            writeln!(
                f,
                "  throughput   {:.2} MB/s each way ({} bytes)",
                self.mb_per_sec, self.bytes
            )?;
            let l = &self.latency_us;
            if self.messages == 0 {
                writeln!(f, "  latency      n/a (no message measured)")?;
            } else {
                writeln!(
                    f,
                    "  latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})",
                    fmt_us(l.p50),
                    fmt_us(l.p90),
                    fmt_us(l.p99),
                    fmt_us(l.p999),
                    fmt_us(l.max),
                    fmt_us(l.mean)
                )?;
            }
        }
        if let Some(cpu) = self.server_cpu_s {
            let per_msg = self
                .server_cpu_us_per_msg
                .map_or(String::new(), |us| format!(", {us:.3} µs per message"));
            writeln!(
                f,
                "  server CPU   {cpu:.3} s over the measured time{per_msg}"
            )?;
        }
        if self.transport == "udp" {
            writeln!(
                f,
                "  lost         {} datagrams (no reply within 1 s), {} late replies",
                self.lost, self.late
            )?;
        }
        let e = &self.errors;
        if e.total() == 0 {
            writeln!(f, "  errors       none")?;
        } else {
            let kinds = [
                ("mismatch", e.mismatch),
                ("short", e.short),
                ("reset", e.reset),
                ("refused", e.refused),
                ("timeout", e.timeout),
                ("closed", e.closed),
                ("other", e.other),
            ];
            let list: Vec<String> = kinds
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(f, "  errors       {}", list.join(", "))?;
            for s in &self.error_samples {
                writeln!(f, "               e.g. {s}")?;
            }
        }
        if self.ok {
            return write!(f, "  result       ok");
        }
        let mut why = Vec::new();
        if e.total() > 0 {
            why.push(format!("{} errors", e.total()));
        }
        if self.connections < self.connections_requested {
            why.push(format!(
                "{} of {} connections not established",
                self.connections_requested - self.connections,
                self.connections_requested
            ));
        }
        if self.mode != "idle" && self.messages == 0 {
            why.push("no echo measured".to_string());
        }
        write!(f, "  result       FAILED: {}", why.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            target: "127.0.0.1:1".into(),
            transport: "tcp",
            framed: false,
            proto: "echo",
            mode: "closed",
            connections_requested: 2,
            threads: 2,
            length: 64,
            pipeline: 1,
            rate: None,
            warmup_s: 0.0,
            connect_rate: None,
            conn_messages: None,
            interval_s: None,
        }
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = WorkerResult::new();
        let mut b = WorkerResult::new();
        for r in [&mut a, &mut b] {
            r.connected = 1;
            r.open_at_end = 1;
            r.messages = 1000;
            r.bytes = 64_000;
            r.duration_ns = 2_000_000_000;
            r.hist.record(50_000).unwrap();
        }
        b.errors.mismatch = 2;
        let report = Report::merge(info(), vec![a, b]);
        assert_eq!(report.messages, 2000);
        assert_eq!(report.msgs_per_sec, 1000.0);
        assert_eq!(report.mb_per_sec, 0.064);
        assert!((report.latency_us.p50 - 50.0).abs() < 0.1);
        assert!(!report.ok);
        assert_eq!(report.exit_code(), exit::FAILURE);
        assert!(report.to_string().contains("mismatch 2"));
    }

    #[test]
    fn exit_codes_by_kind() {
        let mut e = ErrorCounts::default();
        assert_eq!(e.exit_code(), exit::OK);
        e.timeout = 1;
        assert_eq!(e.exit_code(), exit::TIMEOUT);
        e.reset = 1;
        assert_eq!(e.exit_code(), exit::RESET);
        e.refused = 1;
        assert_eq!(e.exit_code(), exit::REFUSED);
        e.short = 1;
        assert_eq!(e.exit_code(), exit::FAILURE);
    }

    #[test]
    fn missing_connections_fail_the_run() {
        let mut a = WorkerResult::new();
        a.connected = 1;
        let report = Report::merge(info(), vec![a]);
        assert!(!report.ok);
        assert_ne!(report.exit_code(), exit::OK);
    }
}
