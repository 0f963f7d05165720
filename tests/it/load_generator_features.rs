//! echod-bench's issue-15 features against the real echod: the paced ramp
//! (`--connect-rate`), connection churn (`--conn-messages`), an open-loop run
//! that must not hide a stalled server, `--source-ip` spreading, and the
//! interval outputs (`--interval --json`, `--hdr-log`, `--plot`) read back by
//! independent parsers (python3's json and xml.etree, the PyPI
//! `hdrhistogram` package), with the JSON checked against the schema that
//! docs/LOADTEST.md documents.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{self, Daemon};
use crate::load_generator::{assert_clean, bench_with, num};

/// Runs echod-bench with `args` (plus `--json`); returns status, the JSON
/// lines of stdout (all of them) and stderr.
fn bench_lines(args: &[&str], limit: Duration) -> (std::process::ExitStatus, String, String) {
    let mut cmd = Command::new(common::tool("echod-bench"));
    cmd.args(args).arg("--json");
    let out = common::run_bounded(&mut cmd, Some(Vec::new()), limit);
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.stderr,
    )
}

/// A 200-connection ramp at 100 connects/s cannot settle in under ~2 s: the
/// report's ramp time is at least 1.5 s (a bound the pacing guarantees, not
/// a speed claim; the measured figure is in docs/LOADTEST.md).
#[test]
fn connect_rate_paces_the_ramp() {
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let (status, r, stderr) = bench_with(
        &[&addr, "-c", "200", "--connect-rate", "100", "-n", "400"],
        Duration::from_secs(30),
        |_| {},
    );
    assert_clean(status, &r, &stderr, 200.0);
    let ramp = num(&r, "connect_s");
    assert!(ramp >= 1.5, "200 connects at 100/s took {ramp} s: {r}");
    assert_eq!(num(&r, "connect_rate"), 100.0);
    let l = &r["connect_latency_us"];
    assert!(num(l, "p50") > 0.0 && num(l, "p50") <= num(l, "max"), "{r}");
}

/// `--conn-messages 10 -n 5000`: every connection carries at most 10
/// messages, so at least 500 are opened, all verified; echod accepted them.
#[test]
fn conn_messages_churns_connections_and_reports_their_rate() {
    let mut d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let (status, r, stderr) = bench_with(
        &[&addr, "-c", "10", "--conn-messages", "10", "-n", "5000"],
        Duration::from_secs(60),
        |_| {},
    );
    assert_clean(status, &r, &stderr, 10.0);
    assert_eq!(num(&r, "messages"), 5000.0, "{r}");
    let opened = num(&r, "connections_opened");
    assert!(opened >= 500.0, "{r}");
    assert!(num(&r, "connections_completed") >= 490.0, "{r}");
    assert!(num(&r, "conns_per_sec") > 0.0, "{r}");
    let stats = d.stop_and_stats();
    assert!(common::stat(&stats, "accepted") as f64 >= opened, "{stats}");
}

/// Open loop at 1000 msg/s while echod is stopped for 2 s: the messages due
/// during the stall are late by up to 2 s, and the percentiles must say so.
#[test]
fn open_loop_does_not_hide_a_stalled_server() {
    let _heavy = common::heavy();
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let pid = d.pid() as i32;
    let run = std::thread::spawn(move || {
        bench_with(
            &[&addr, "--rate", "1000", "-c", "10", "-d", "5"],
            Duration::from_secs(30),
            |_| {},
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: signals to the child this test started (and still owns).
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let (status, r, stderr) = run.join().expect("bench thread");
    assert_clean(status, &r, &stderr, 10.0);
    let (p999, max) = (num(&r, "latency_us.p999"), num(&r, "latency_us.max"));
    assert!(
        p999 >= 1.5e6 || max >= 1.5e6,
        "a 2 s stall hidden: p99.9 {p999} µs, max {max} µs: {r}"
    );
}

/// `--source-ip` twice: echod's debug log shows connections from both.
#[test]
fn source_ips_are_each_used() {
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let (status, r, stderr) = bench_with(
        &[
            &addr,
            "-c",
            "10",
            "-n",
            "100",
            "--source-ip",
            "127.0.0.2",
            "--source-ip",
            "127.0.0.3",
        ],
        Duration::from_secs(20),
        |_| {},
    );
    assert_clean(status, &r, &stderr, 10.0);
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let needle = format!("open {ip}:");
        assert!(
            common::wait_until(Duration::from_secs(5), || d.log().contains(&needle)),
            "no connection from {ip}:\n{}",
            d.log()
        );
    }
}

/// The object types and their keys, from the schema block in
/// docs/LOADTEST.md.
fn documented_schema() -> Value {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/LOADTEST.md"))
            .expect("docs/LOADTEST.md");
    let block = doc
        .split("<!-- schema:begin -->")
        .nth(1)
        .and_then(|s| s.split("<!-- schema:end -->").next())
        .expect("a schema block in docs/LOADTEST.md");
    let json = block
        .trim()
        .trim_start_matches("```json")
        .trim_end_matches("```");
    serde_json::from_str(json).expect("the documented schema is JSON")
}

/// Checks `v` against a schema node: an object of key -> node (exactly
/// those keys), or a type name.
fn check_schema(v: &Value, schema: &Value, path: &str) {
    match schema {
        Value::Object(keys) => {
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("{path}: not an object: {v}"));
            let mut got: Vec<&String> = obj.keys().collect();
            let mut want: Vec<&String> = keys.keys().collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{path}: keys differ from the documented schema");
            for (k, s) in keys {
                check_schema(&obj[k], s, &format!("{path}.{k}"));
            }
        }
        Value::String(t) => {
            let ok = t.split('|').any(|t| match t {
                "string" => v.is_string(),
                "number" => v.as_f64().is_some_and(f64::is_finite),
                "integer" => v.is_u64(),
                "boolean" => v.is_boolean(),
                "null" => v.is_null(),
                "array of string" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                _ => panic!("{path}: unknown schema type {t}"),
            });
            assert!(ok, "{path}: {v} is not {t}");
        }
        _ => panic!("{path}: bad schema node {schema}"),
    }
}

/// python3's json module reads every line: rejects NaN/Infinity and
/// duplicate keys. Returns the objects' types, in order.
fn python_json_types(stdout: &str) -> Vec<String> {
    const SCRIPT: &str = r#"
import json, sys
def no_dups(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys: %r" % keys)
    return dict(pairs)
def no_constant(name):
    raise ValueError("not JSON: " + name)
for line in sys.stdin.read().splitlines():
    obj = json.loads(line, object_pairs_hook=no_dups, parse_constant=no_constant)
    print(obj["type"])
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SCRIPT]);
    let out = common::run_bounded(
        &mut cmd,
        Some(stdout.as_bytes().to_vec()),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "python3 json: {}\n{stdout}",
        out.stderr
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn interval_json_hdr_log_and_plot_are_read_by_independent_parsers() {
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let dir = std::env::temp_dir().join(format!("echod-bench-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (hdr, svg) = (dir.join("run.hlog"), dir.join("run.svg"));
    let (status, stdout, stderr) = bench_lines(
        &[
            &addr,
            "--rate",
            "2000",
            "-c",
            "10",
            "-d",
            "1.2",
            "--interval",
            "0.2",
            "--hdr-log",
            hdr.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(status.success(), "exit {status}: {stdout}\n{stderr}");
    // Progress lines on stderr, one per interval.
    assert!(stderr.matches(" msg/s").count() >= 6, "{stderr}");

    // JSON: every line parses (python3), matches the documented schema,
    // intervals first, the summary last, and the intervals add up.
    let types = python_json_types(&stdout);
    assert!(types.len() >= 7, "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("summary"));
    assert!(types[..types.len() - 1].iter().all(|t| t == "interval"));
    let schema = documented_schema();
    let objects: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, intervals) = objects.split_last().unwrap();
    check_schema(summary, &schema["summary"], "summary");
    for (i, iv) in intervals.iter().enumerate() {
        check_schema(iv, &schema["interval"], "interval");
        assert_eq!(num(iv, "index"), i as f64);
    }
    assert_clean(status, summary, &stderr, 10.0);
    let total: f64 = intervals.iter().map(|iv| num(iv, "messages")).sum();
    assert_eq!(total, num(summary, "messages"), "{stdout}");

    // A failed run (nothing listening) is valid JSON of the same schema too:
    // no NaN from dividing by no time.
    let refusing = common::Refusing::new();
    let (_, failed, _) = bench_lines(
        &[refusing.addr(), "-c", "2", "-d", "1"],
        Duration::from_secs(15),
    );
    assert_eq!(python_json_types(&failed), ["summary"]);
    check_schema(
        &serde_json::from_str(failed.trim()).unwrap(),
        &schema["summary"],
        "summary",
    );

    // SVG: well-formed XML (python3's xml.etree), an <svg> with lines drawn.
    const SVG_CHECK: &str = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag.endswith("svg"), root.tag
lines = [e for e in root.iter() if e.tag.split("}")[-1] in ("polyline", "path")]
texts = " ".join(e.text or "" for e in root.iter() if e.tag.split("}")[-1] == "text")
assert len(lines) >= 4, len(lines)
assert "p99.9" in texts and "messages/s" in texts, texts
print("ok")
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SVG_CHECK, svg.to_str().unwrap()]);
    let out = common::run_bounded(&mut cmd, None, Duration::from_secs(30));
    assert!(out.status.success(), "SVG: {}", out.stderr);

    // HdrHistogram log: decoded by the PyPI hdrhistogram package, in a
    // virtual environment made here; its counts are the JSON's.
    check_hdr_log_with_python(
        &dir,
        &hdr,
        &intervals
            .iter()
            .map(|iv| num(iv, "messages") as u64)
            .collect::<Vec<_>>(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads `log` with the PyPI `hdrhistogram` package and compares each
/// interval's count with `counts`. Without pip or venv it skips loudly,
/// except in CI (CI=true), where it fails.
fn check_hdr_log_with_python(dir: &Path, log: &Path, counts: &[u64]) {
    let venv = dir.join("venv");
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(&venv);
    let made = common::run_bounded(&mut make, None, Duration::from_secs(120));
    let installed = made.status.success() && {
        let mut pip = Command::new(venv.join("bin/pip"));
        pip.args([
            "install",
            "-q",
            "--disable-pip-version-check",
            "hdrhistogram",
        ]);
        common::run_bounded(&mut pip, None, Duration::from_secs(240))
            .status
            .success()
    };
    if !installed {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI: cannot make a venv with the PyPI hdrhistogram package"
        );
        eprintln!(
            "SKIPPED: the --hdr-log check needs python3 -m venv and pip install hdrhistogram"
        );
        return;
    }
    const READ: &str = r#"
import sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 3600 * 10**9, 3))
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    print(h.get_total_count())
"#;
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-c", READ]).arg(log);
    let out = common::run_bounded(&mut cmd, None, Duration::from_secs(60));
    assert!(out.status.success(), "hdrh: {}", out.stderr);
    let got: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(got, counts, "interval counts: hdr log vs JSON");
}
