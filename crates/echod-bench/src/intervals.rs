//! Interval reports: the workers' samples merged per interval, then written
//! out as progress lines (stderr), JSON lines (stdout), an HdrHistogram
//! interval log and, at the end, an SVG chart.
//!
//! Each worker sends one [`Sample`] per interval, in order, the last one
//! partial and marked `last`. Interval `k` is complete once every worker has
//! sent its sample `k` or finished earlier; complete intervals are written
//! in order. Nothing here runs on the workers' threads but the channel send.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::report::{fmt_us, new_histogram, per_sec, Latency};
use super::{BenchConfig, Shared};

/// One worker's share of one interval (times in ns from the end of the
/// warm-up).
#[derive(Debug)]
pub struct Sample {
    pub worker: usize,
    pub index: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Latencies of the echoes completed in this interval, in ns.
    pub hist: Histogram<u64>,
    pub messages: u64,
    pub bytes: u64,
    /// Connections established in this interval.
    pub connects: u64,
    /// Errors counted in this interval.
    pub errors: u64,
    /// Connections open at the interval's end.
    pub open: u64,
    /// The worker's final (partial) interval.
    pub last: bool,
}

/// One interval of the run, over all workers: a `--json --interval` line.
/// The JSON schema is in docs/LOADTEST.md (and checked by the tests).
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// Always `"interval"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// 0, 1, 2, ...
    pub index: u64,
    /// Seconds from the end of the warm-up.
    pub start_s: f64,
    pub end_s: f64,
    /// Verified echoes completed in the interval.
    pub messages: u64,
    pub msgs_per_sec: f64,
    pub bytes: u64,
    pub mb_per_sec: f64,
    /// Latencies of the interval's echoes; all zero when there was none.
    pub latency_us: Latency,
    /// Connections open at the interval's end.
    pub connections_open: u64,
    /// Connections established in the interval.
    pub connects: u64,
    /// Errors counted in the interval.
    pub errors: u64,
}

impl Interval {
    /// The progress line written on stderr.
    fn line(&self) -> String {
        let l = &self.latency_us;
        let latency = if self.messages == 0 {
            "no echo".to_string()
        } else {
            format!(
                "p50 {}  p99 {}  p99.9 {}  max {}",
                fmt_us(l.p50),
                fmt_us(l.p99),
                fmt_us(l.p999),
                fmt_us(l.max)
            )
        };
        format!(
            "[{:7.2} s] {:.0} msg/s  {latency}  {} open, {} connects, {} errors",
            self.end_s, self.msgs_per_sec, self.connections_open, self.connects, self.errors
        )
    }
}

/// An interval being filled from the workers' samples.
struct Pending {
    hist: Histogram<u64>,
    start_ns: u64,
    end_ns: u64,
    messages: u64,
    bytes: u64,
    connects: u64,
    errors: u64,
    open: u64,
}

/// A point of the plot: end of interval (s), messages/s, p50/p99/p99.9 in
/// ms (`None` when no echo completed in the interval).
struct Point {
    t: f64,
    rate: f64,
    latency_ms: Option<[f64; 3]>,
}

/// Where intervals go; files are created before the run starts, so a bad
/// path is reported at once.
pub(crate) struct Outputs {
    workers: usize,
    every: Duration,
    lines: bool,
    json: bool,
    hdr_log: Option<HdrLog>,
    plot: Option<PathBuf>,
    target: String,
}

/// The `--hdr-log` file being written.
struct HdrLog {
    path: PathBuf,
    file: BufWriter<File>,
    serializer: V2DeflateSerializer,
    /// The header is written with the first interval (it needs the start time).
    started: bool,
}

impl Outputs {
    /// Creates the output files of `cfg`.
    pub(crate) fn open(cfg: &BenchConfig) -> Result<Outputs, (&'static str, io::Error)> {
        let hdr_log = match &cfg.hdr_log {
            Some(path) => Some(HdrLog {
                path: path.clone(),
                file: BufWriter::new(
                    File::create(path).map_err(|e| ("cannot create --hdr-log", e))?,
                ),
                serializer: V2DeflateSerializer::new(),
                started: false,
            }),
            None => None,
        };
        if let Some(path) = &cfg.plot {
            File::create(path).map_err(|e| ("cannot create --plot", e))?;
        }
        Ok(Outputs {
            workers: cfg.threads,
            every: cfg.sample_every().unwrap_or(super::DEFAULT_SAMPLE_INTERVAL),
            lines: cfg.interval.is_some(),
            json: cfg.interval.is_some() && cfg.interval_json,
            hdr_log,
            plot: cfg.plot.clone(),
            target: cfg.target.to_string(),
        })
    }

    /// Merges samples until every worker is done (`done`), writing each
    /// complete interval. Returns descriptions of outputs that failed.
    pub(crate) fn run(
        mut self,
        rx: Receiver<Sample>,
        shared: &Shared,
        done: &AtomicBool,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut received = vec![0u64; self.workers];
        let mut finished = vec![false; self.workers];
        let mut points = Vec::new();
        let mut emitted = 0u64;
        loop {
            let all_in = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(s) => {
                    received[s.worker] = s.index + 1;
                    finished[s.worker] |= s.last;
                    let p = pending.entry(s.index).or_insert_with(|| Pending {
                        hist: new_histogram(),
                        start_ns: s.start_ns,
                        end_ns: s.end_ns,
                        messages: 0,
                        bytes: 0,
                        connects: 0,
                        errors: 0,
                        open: 0,
                    });
                    p.hist.add(&s.hist).expect("same histogram bounds");
                    p.start_ns = p.start_ns.min(s.start_ns);
                    p.end_ns = p.end_ns.max(s.end_ns);
                    p.messages += s.messages;
                    p.bytes += s.bytes;
                    p.connects += s.connects;
                    p.errors += s.errors;
                    p.open += s.open;
                    false
                }
                Err(RecvTimeoutError::Timeout) => done.load(Ordering::Relaxed),
                Err(RecvTimeoutError::Disconnected) => true,
            };
            // Complete intervals, in order; at the end, whatever is left.
            while let Some(entry) = pending.first_entry() {
                let k = *entry.key();
                let complete = (0..self.workers).all(|w| finished[w] || received[w] > k);
                if !(complete || all_in) {
                    break;
                }
                let p = entry.remove();
                let interval = Interval::from_pending(emitted, &p);
                emitted += 1;
                self.write(&interval, &p.hist, shared, &mut failures);
                points.push(Point {
                    t: interval.end_s,
                    rate: interval.msgs_per_sec,
                    latency_ms: (interval.messages > 0).then(|| {
                        let l = &interval.latency_us;
                        [l.p50 / 1e3, l.p99 / 1e3, l.p999 / 1e3]
                    }),
                });
            }
            if all_in && pending.is_empty() {
                break;
            }
        }
        if let Some(mut log) = self.hdr_log.take() {
            let header = match log.started {
                true => Ok(()),
                false => write_hdr_header(&mut log.file, shared),
            };
            if let Err(e) = header.and_then(|()| log.file.flush()) {
                failures.push(format!("--hdr-log {}: {e}", log.path.display()));
            }
        }
        if let Some(path) = &self.plot {
            if let Err(e) = draw_plot(path, &points, &self.target, self.every) {
                failures.push(format!("--plot {}: {e}", path.display()));
            }
        }
        failures
    }

    fn write(
        &mut self,
        interval: &Interval,
        hist: &Histogram<u64>,
        shared: &Shared,
        failures: &mut Vec<String>,
    ) {
        if self.lines {
            eprintln!("{}", interval.line());
        }
        if self.json {
            let line = serde_json::to_string(interval).map_err(io::Error::other);
            let mut out = io::stdout().lock();
            if let Err(e) = line.and_then(|l| writeln!(out, "{l}").and_then(|()| out.flush())) {
                if failures.is_empty() {
                    failures.push(format!("interval JSON on stdout: {e}"));
                }
            }
        }
        let mut failed = None;
        if let Some(log) = self.hdr_log.as_mut() {
            let result = (|| -> Result<(), String> {
                if !log.started {
                    write_hdr_header(&mut log.file, shared).map_err(|e| e.to_string())?;
                    log.started = true;
                }
                // A writer per interval (it borrows the file): with no
                // header options set it writes nothing but the interval
                // line. Interval_Max stays in nanoseconds, the histogram's
                // unit (a divisor would repeat its comment every interval).
                let mut writer = IntervalLogWriterBuilder::new()
                    .begin_log_with(&mut log.file, &mut log.serializer)
                    .map_err(|e| e.to_string())?;
                writer
                    .write_histogram(
                        hist,
                        Duration::from_secs_f64(interval.start_s),
                        Duration::from_secs_f64(interval.end_s - interval.start_s),
                        None,
                    )
                    .map_err(|e| e.to_string())
            })();
            if let Err(e) = result {
                failed = Some(format!("--hdr-log {}: {e}", log.path.display()));
            }
        }
        if let Some(e) = failed {
            failures.push(e);
            self.hdr_log = None;
        }
    }
}

impl Interval {
    fn from_pending(index: u64, p: &Pending) -> Interval {
        let (start_s, end_s) = (p.start_ns as f64 / 1e9, p.end_ns as f64 / 1e9);
        let seconds = end_s - start_s;
        Interval {
            kind: "interval",
            index,
            start_s,
            end_s,
            messages: p.messages,
            msgs_per_sec: per_sec(p.messages, seconds),
            bytes: p.bytes,
            mb_per_sec: per_sec(p.bytes, seconds) / 1e6,
            latency_us: Latency::of(&p.hist),
            connections_open: p.open,
            connects: p.connects,
            errors: p.errors,
        }
    }
}

/// The log's header: version, start and base time (the end of the warm-up;
/// interval timestamps are seconds from it), and the CSV legend line that
/// the hdrhistogram crate's writer leaves out.
fn write_hdr_header(out: &mut impl Write, shared: &Shared) -> io::Result<()> {
    let start = shared
        .started_wall
        .get()
        .map_or_else(SystemTime::now, |t| *t + shared.cfg.warmup);
    let secs = start
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    writeln!(
        out,
        "#[Logged with echod-bench {}]",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(out, "#[Histogram log format version 1.3]")?;
    writeln!(out, "#[Latencies and Interval_Max in nanoseconds]")?;
    writeln!(out, "#[StartTime: {secs:.3} (seconds since epoch)]")?;
    writeln!(out, "#[BaseTime: {secs:.3} (seconds since epoch)]")?;
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )
}

/// Draws messages/s (top) and p50/p99/p99.9 latency (bottom, log scale)
/// over the run as an SVG file.
fn draw_plot(path: &Path, points: &[Point], target: &str, every: Duration) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(
            &format!("echod-bench {target}: every {} s", every.as_secs_f64()),
            ("sans-serif", 20),
        )
        .map_err(|e| err(&e))?;
    let (upper, lower) = root.split_vertically(300);
    let t_max = points.iter().map(|p| p.t).fold(0.0, f64::max).max(1e-3);
    let rate_max = points.iter().map(|p| p.rate).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut rates = ChartBuilder::on(&upper)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..rate_max)
        .map_err(|e| err(&e))?;
    rates
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("messages/s")
        .draw()
        .map_err(|e| err(&e))?;
    rates
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.t, p.rate)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| err(&e))?;

    let lat: Vec<(f64, [f64; 3])> = points
        .iter()
        .filter_map(|p| p.latency_ms.map(|l| (p.t, l)))
        .collect();
    let lo = lat
        .iter()
        .map(|(_, l)| l[0])
        .fold(f64::INFINITY, f64::min)
        .clamp(1e-3, 1e6)
        / 2.0;
    let hi = lat
        .iter()
        .map(|(_, l)| l[2])
        .fold(0.0, f64::max)
        .max(lo * 4.0)
        * 2.0;
    let mut latency = ChartBuilder::on(&lower)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, (lo..hi).log_scale())
        .map_err(|e| err(&e))?;
    latency
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, color)) in [("p50", GREEN), ("p99", MAGENTA), ("p99.9", RED)]
        .into_iter()
        .enumerate()
    {
        latency
            .draw_series(LineSeries::new(
                lat.iter().map(|(t, l)| (*t, l[i])),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    latency
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
