//! A [`Report`] in the Prometheus text exposition format 0.0.4 (the classic
//! one; `Content-Type: text/plain; version=0.0.4`).
//!
//! Written by hand rather than with `prometheus-client`: that crate emits
//! only OpenMetrics, which promtool 2.42 (`promtool check metrics`) refuses,
//! and the classic format for a fixed set of metrics is a few lines of
//! `write!`. Every name, help text and label value here is a constant
//! without `\`, `"` or a newline, so nothing needs escaping.

use std::fmt::{self, Write};

use super::super::Report;
use crate::stats::{CloseReason, DropReason};

/// The `Content-Type` of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a metric only grows or may go down.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Appends one metric family: its `# HELP`, its `# TYPE`, and one sample
/// per `(label value, value)` (`label` `None`: one sample, no label).
fn family(
    out: &mut String,
    name: &str,
    kind: Kind,
    help: &str,
    label: Option<&str>,
    samples: &[(&str, u64)],
) -> fmt::Result {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")?;
    for (value_of_label, value) in samples {
        match label {
            Some(label) => writeln!(out, "{name}{{{label}=\"{value_of_label}\"}} {value}")?,
            None => writeln!(out, "{name} {value}")?,
        }
    }
    Ok(())
}

/// One sample without a label.
fn single(out: &mut String, name: &str, kind: Kind, help: &str, value: u64) -> fmt::Result {
    family(out, name, kind, help, None, &[("", value)])
}

/// The metrics of `report`, summed over the workers. The names are the
/// contract (shared/CONTRACT.md, "Metrics"); reasons are the exit summary's.
pub fn encode(report: &Report) -> String {
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = write_all(&mut out, report);
    out
}

fn write_all(out: &mut String, r: &Report) -> fmt::Result {
    use Kind::{Counter, Gauge};
    let s = &r.stats;
    single(
        out,
        "echod_connections_accepted_total",
        Counter,
        "Stream connections accepted (TCP and unix), those rejected at once included.",
        s.accepted,
    )?;
    family(
        out,
        "echod_connections_rejected_total",
        Counter,
        "Connections accepted and closed at once, by reason.",
        Some("reason"),
        &[
            ("max_connections", s.rejected_max_connections),
            ("fd_exhausted", s.rejected_fd_exhausted),
        ],
    )?;
    single(
        out,
        "echod_accept_errors_total",
        Counter,
        "Accept failures other than WouldBlock.",
        s.accept_errors,
    )?;
    single(
        out,
        "echod_connections_open",
        Gauge,
        "Stream connections open now.",
        r.open,
    )?;
    single(
        out,
        "echod_connections_peak",
        Gauge,
        "The most stream connections open at once since the start.",
        s.peak_concurrent,
    )?;
    let draining: u64 = r.workers.iter().map(|w| w.draining).sum();
    let paused: u64 = r.workers.iter().map(|w| w.paused).sum();
    single(
        out,
        "echod_connections_draining",
        Gauge,
        "Connections echod is ending (flushing or lingering).",
        draining,
    )?;
    single(
        out,
        "echod_connections_paused",
        Gauge,
        "Connections not being read (queue or memory limit).",
        paused,
    )?;
    let closed: Vec<(&str, u64)> = CloseReason::ALL
        .iter()
        .zip(s.closed)
        .map(|(reason, n)| (reason.name(), n))
        .collect();
    family(
        out,
        "echod_connections_closed_total",
        Counter,
        "Stream connections ended, by reason.",
        Some("reason"),
        &closed,
    )?;
    single(
        out,
        "echod_bytes_received_total",
        Counter,
        "Payload bytes received (TCP, unix and UDP).",
        s.bytes_in,
    )?;
    single(
        out,
        "echod_bytes_sent_total",
        Counter,
        "Payload bytes sent (TCP, unix and UDP).",
        s.bytes_out,
    )?;
    single(
        out,
        "echod_frames_total",
        Counter,
        "Framed mode: frames echoed whole.",
        s.frames,
    )?;
    single(
        out,
        "echod_datagrams_received_total",
        Counter,
        "UDP datagrams received.",
        s.datagrams_in,
    )?;
    single(
        out,
        "echod_datagrams_sent_total",
        Counter,
        "UDP datagrams sent back.",
        s.datagrams_out,
    )?;
    let dropped: Vec<(&str, u64)> = DropReason::ALL
        .iter()
        .zip(s.udp_dropped)
        .map(|(reason, n)| (reason.name(), n))
        .collect();
    family(
        out,
        "echod_datagrams_dropped_total",
        Counter,
        "UDP datagrams refused by the reflection guard, by reason.",
        Some("reason"),
        &dropped,
    )?;
    single(
        out,
        "echod_datagram_replies_dropped_total",
        Counter,
        "UDP replies dropped because the socket would block.",
        s.udp_reply_dropped,
    )?;
    single(
        out,
        "echod_queued_bytes",
        Gauge,
        "Bytes owed to peers that their sockets have not taken yet.",
        r.queued_bytes,
    )?;
    single(
        out,
        "echod_memory_used_bytes",
        Gauge,
        "Memory all connections hold against --max-memory.",
        r.memory_used,
    )?;
    single(
        out,
        "echod_memory_budget_bytes",
        Gauge,
        "The configured --max-memory.",
        r.memory_limit,
    )?;
    single(
        out,
        "echod_workers",
        Gauge,
        "Worker loops (--workers).",
        r.workers.len() as u64,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        let mut stats = Stats {
            accepted: 3,
            bytes_in: 10,
            ..Stats::default()
        };
        stats.closed[CloseReason::MemoryPressure as usize] = 2;
        let report = Report {
            stats,
            memory_limit: 1 << 20,
            ..Report::default()
        };
        let text = encode(&report);
        assert!(text.contains("echod_connections_accepted_total 3\n"));
        assert!(text.contains("echod_bytes_received_total 10\n"));
        assert!(text.contains("echod_connections_closed_total{reason=\"memory_pressure\"} 2\n"));
        assert!(text.contains("echod_memory_budget_bytes 1048576\n"));
        let mut family = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                family = rest.split(' ').next();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let name = parts.next();
                assert_eq!(name, family, "TYPE follows its HELP");
                if parts.next() == Some("counter") {
                    assert!(name.is_some_and(|n| n.ends_with("_total")), "{line}");
                }
            } else {
                let name = family.expect("a sample after its HELP");
                assert!(line.starts_with(name), "{line} outside its family");
            }
        }
    }
}
