//! echod-bench against the real echod (TCP, unix, framed, UDP, idle,
//! open loop) and against a deliberately corrupting echo server, which it
//! must catch: non-zero exit and mismatches reported.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::Duration;

use crate::common::{self, Daemon};
use serde_json::Value;

/// Runs echod-bench with `args` (plus `--json`), bounded by `limit`, and
/// returns its exit status and parsed report.
fn bench(args: &[&str], limit: Duration) -> (ExitStatus, Value, String) {
    bench_with(args, limit, |_| {})
}

/// As [`bench`], letting the caller adjust the command first (e.g. run it
/// in another network namespace).
pub(crate) fn bench_with(
    args: &[&str],
    limit: Duration,
    adjust: impl FnOnce(&mut Command),
) -> (ExitStatus, Value, String) {
    let mut cmd = Command::new(common::tool("echod-bench"));
    cmd.args(args).arg("--json");
    adjust(&mut cmd);
    let out = common::run_bounded(&mut cmd, Some(Vec::new()), limit);
    let (status, stdout, stderr) = (out.status, String::from_utf8_lossy(&out.stdout), out.stderr);
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout:?}\nstderr: {stderr}"));
    (status, report, stderr)
}

pub(crate) fn num(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("no number at {path} in {v}"))
}

/// The checks every clean run must pass: exit 0, `ok`, every connection
/// established, no error of any kind, at least one verified echo.
pub(crate) fn assert_clean(status: ExitStatus, r: &Value, stderr: &str, connections: f64) {
    assert!(status.success(), "exit {status}: {r}\n{stderr}");
    assert_eq!(r["ok"], Value::Bool(true), "{r}");
    assert_eq!(num(r, "connections"), connections, "{r}");
    for kind in [
        "mismatch", "short", "reset", "refused", "timeout", "closed", "other",
    ] {
        assert_eq!(num(r, &format!("errors.{kind}")), 0.0, "{kind}: {r}");
    }
    assert!(num(r, "messages") > 0.0, "{r}");
}

#[test]
fn fifty_connections_for_two_seconds_verify_with_plausible_figures() {
    let _heavy = common::heavy();
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let (status, r, stderr) = bench(
        &[&addr, "-c", "50", "-l", "512", "-d", "2"],
        Duration::from_secs(15),
    );
    assert_clean(status, &r, &stderr, 50.0);
    // The figures agree with each other; how high they are is the
    // benchmark's business (bench/), not a test's.
    let duration = num(&r, "duration_s");
    assert!(duration >= 1.9, "asked for 2 s, measured {duration} s: {r}");
    let messages = num(&r, "messages");
    let rate = num(&r, "msgs_per_sec");
    assert!((rate - messages / duration).abs() < 1.0, "{r}");
    let mb = num(&r, "mb_per_sec");
    assert!((mb - rate * 512.0 / 1e6).abs() < 0.01, "{r}");
    let (p50, p90, p99, p999, max) = (
        num(&r, "latency_us.p50"),
        num(&r, "latency_us.p90"),
        num(&r, "latency_us.p99"),
        num(&r, "latency_us.p999"),
        num(&r, "latency_us.max"),
    );
    assert!(
        p50 > 0.0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{r}"
    );
    // Closed loop, 50 connections, one message each: Little's law bounds
    // the mean latency by 50 / rate (plus scheduling noise).
    assert!(num(&r, "latency_us.mean") < 2.0 * 50.0 / rate * 1e6, "{r}");
}

#[test]
fn unix_framed_and_pipelined_runs_verify() {
    let (_d, target) = Daemon::start_unix("bench", &[]);
    let (status, r, stderr) = bench(
        &[
            &target,
            "-c",
            "20",
            "-l",
            "100",
            "-d",
            "0.5",
            "--pipeline",
            "8",
            "--threads",
            "2",
        ],
        Duration::from_secs(10),
    );
    assert_clean(status, &r, &stderr, 20.0);
    assert_eq!(r["transport"], "unix");

    let framed = Daemon::start(&["--mode", "framed"]);
    let addr = framed.addr().to_string();
    let (status, r, stderr) = bench(
        &[
            &addr,
            "-c",
            "10",
            "-l",
            "300",
            "-n",
            "20000",
            "--framed",
            "--pipeline",
            "4",
        ],
        Duration::from_secs(15),
    );
    assert_clean(status, &r, &stderr, 10.0);
    assert_eq!(
        num(&r, "messages"),
        20000.0,
        "-n counts across connections: {r}"
    );
}

#[test]
fn udp_run_verifies_replies() {
    let d = Daemon::start(&["--udp", "127.0.0.1:0"]);
    let addr = d.udp_addr().to_string();
    let (status, r, stderr) = bench(
        &[&addr, "--udp", "-c", "8", "-l", "200", "-d", "0.5"],
        Duration::from_secs(10),
    );
    assert_clean(status, &r, &stderr, 8.0);
    assert_eq!(r["transport"], "udp");
}

#[test]
fn idle_holds_connections_open() {
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let (status, r, stderr) = bench(
        &[&addr, "-c", "200", "-d", "0.5", "--idle"],
        Duration::from_secs(10),
    );
    assert!(status.success(), "exit {status}: {r}\n{stderr}");
    assert_eq!(num(&r, "connections_open"), 200.0, "{r}");
    assert_eq!(num(&r, "messages"), 0.0);
}

/// `--rate` runs open loop and verifies every echo. How close it holds the
/// rate is for the benchmark to measure (a timing check here would fail on
/// a busy machine), so only the mode and the verification are checked.
#[test]
fn open_loop_rate_run_verifies() {
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let (status, r, stderr) = bench(
        &[&addr, "--rate", "2000", "-c", "10", "-d", "1"],
        Duration::from_secs(15),
    );
    assert_clean(status, &r, &stderr, 10.0);
    assert_eq!(r["mode"], "open");
}

#[test]
fn refused_connections_exit_3() {
    let refusing = common::Refusing::new();
    let (status, r, _) = bench(
        &[refusing.addr(), "-c", "3", "-d", "1"],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(3), "{r}");
    assert_eq!(num(&r, "errors.refused"), 3.0);
    assert_eq!(r["ok"], Value::Bool(false));
}

/// An echo server (thread per connection) that flips one bit of every
/// `every`-th byte it echoes.
fn corrupting_server(every: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            thread::spawn(move || corrupt_echo(&mut s, every));
        }
    });
    addr
}

fn corrupt_echo(s: &mut TcpStream, every: u64) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 4096];
    let mut offset = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for (i, b) in buf[..n].iter_mut().enumerate() {
            if (offset + i as u64 + 1).is_multiple_of(every) {
                *b ^= 0x01;
            }
        }
        offset += n as u64;
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

#[test]
fn corrupting_server_is_caught() {
    let addr = corrupting_server(10_007);
    let (status, r, stderr) = bench(
        &[&addr, "-c", "4", "-l", "128", "-d", "1"],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1), "{r}\n{stderr}");
    assert_eq!(r["ok"], Value::Bool(false));
    let mismatches = num(&r, "errors.mismatch");
    let messages = num(&r, "messages");
    assert!(mismatches > 0.0, "{r}");
    // One flipped bit spoils exactly one 128-byte message in ~78.
    let expected = (messages + mismatches) * 128.0 / 10_007.0;
    assert!(
        (mismatches - expected).abs() <= expected * 0.2 + 4.0,
        "{mismatches} mismatches, expected about {expected}: {r}"
    );
    let samples = r["error_samples"].to_string();
    assert!(samples.contains("came back different"), "{samples}");
}

/// utime+stime of `pid` in seconds, from /proc (clock ticks of 10 ms).
fn proc_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn server_pid_reports_the_servers_cpu_over_the_measured_window_only() {
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let pid = d.pid().to_string();
    let before = proc_cpu_s(d.pid());
    let (status, r, stderr) = bench(
        &[
            &addr,
            "-c",
            "20",
            "-d",
            "1",
            "--warmup",
            "0.5",
            "--server-pid",
            &pid,
        ],
        Duration::from_secs(15),
    );
    let whole_run = proc_cpu_s(d.pid()) - before;
    assert_clean(status, &r, &stderr, 20.0);
    let cpu = num(&r, "server_cpu_s");
    // Busy during the load, but one thread cannot use more CPU than the
    // window's wall time (plus a few clock ticks), and the window excludes the
    // connects and the warm-up.
    let window = num(&r, "duration_s");
    assert!(cpu > 0.0 && cpu <= window + 0.05, "{r}");
    assert!(
        cpu <= whole_run + 0.02,
        "window {cpu} s > whole run {whole_run} s"
    );
    let per_msg = num(&r, "server_cpu_us_per_msg");
    assert!(
        (per_msg - cpu * 1e6 / num(&r, "messages")).abs() < 1e-6,
        "{r}"
    );

    let (_, plain, _) = bench(&[&addr, "-c", "2", "-n", "100"], Duration::from_secs(15));
    assert!(plain["server_cpu_s"].is_null(), "{plain}");
}

#[test]
fn server_pid_of_no_process_is_a_usage_error() {
    let mut cmd = Command::new(common::tool("echod-bench"));
    cmd.args(["127.0.0.1:9", "--server-pid", "2147483646"]);
    let out = common::run_bounded(&mut cmd, None, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let stderr = out.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--server-pid 2147483646"), "{stderr}");
}
