//! `--metrics ADDR`: the counters equal the traffic and the exit summary,
//! promtool and a real Prometheus accept them, and nothing sent to the
//! metrics port disturbs the echo or echod.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{self, Daemon, WAIT};

/// Sends `request` (then half-closes), returns the status code and body.
/// `None` if the server refused or closed without an answer.
fn http(addr: SocketAddr, request: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    s.set_write_timeout(Some(WAIT)).ok()?;
    s.write_all(request).ok()?;
    let _ = s.shutdown(Shutdown::Write);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// One scrape's text; panics unless it is a 200.
fn scrape_text(addr: SocketAddr) -> String {
    match http(addr, b"GET /metrics HTTP/1.1\r\nHost: echod\r\n\r\n") {
        Some((200, body)) => body,
        other => panic!("scrape failed: {other:?}"),
    }
}

/// One scrape: `name` or `name{labels}` -> value.
fn scrape(addr: SocketAddr) -> HashMap<String, u64> {
    scrape_text(addr)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn get(m: &HashMap<String, u64>, key: &str) -> u64 {
    *m.get(key).unwrap_or_else(|| panic!("no {key} in {m:?}"))
}

/// After known TCP and UDP traffic with two workers, the counters equal
/// what was sent, and the exit summary equals the last scrape.
#[test]
fn counters_equal_the_traffic_and_the_exit_summary() {
    let mut d = Daemon::start(&[
        "--workers",
        "2",
        "--udp",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = d.metrics.expect("metrics address");
    const CONNS: usize = 6;
    const BYTES: usize = 20_000;
    const DATAGRAMS: usize = 25;
    const DATAGRAM: usize = 300;
    let mut rng = common::Rng::new(13);
    for _ in 0..CONNS {
        let mut s = d.connect();
        let mut msg = vec![0u8; BYTES];
        rng.fill(&mut msg);
        common::round_trip(&mut s, &msg).expect("echo");
        s.shutdown(Shutdown::Write).expect("half-close");
        assert!(common::read_to_clean_eof(&mut s).is_empty());
    }
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    udp.set_read_timeout(Some(WAIT)).unwrap();
    for i in 0..DATAGRAMS {
        let msg = vec![i as u8; DATAGRAM];
        udp.send_to(&msg, d.udp_addr()).expect("send");
        let mut back = [0u8; 2048];
        let n = udp.recv(&mut back).expect("datagram echoed");
        assert_eq!(&back[..n], &msg[..]);
    }
    // The last connection's close reaches its worker a moment later.
    let mut m = scrape(metrics);
    assert!(
        common::wait_until(WAIT, || {
            m = scrape(metrics);
            get(&m, "echod_connections_open") == 0
                && get(&m, "echod_connections_closed_total{reason=\"peer_closed\"}") == CONNS as u64
        }),
        "connections never all closed: {m:?}"
    );
    let total = (CONNS * BYTES + DATAGRAMS * DATAGRAM) as u64;
    assert_eq!(get(&m, "echod_connections_accepted_total"), CONNS as u64);
    assert_eq!(get(&m, "echod_bytes_received_total"), total);
    assert_eq!(get(&m, "echod_bytes_sent_total"), total);
    assert_eq!(get(&m, "echod_datagrams_received_total"), DATAGRAMS as u64);
    assert_eq!(get(&m, "echod_datagrams_sent_total"), DATAGRAMS as u64);
    assert_eq!(get(&m, "echod_queued_bytes"), 0);
    assert_eq!(get(&m, "echod_workers"), 2);
    assert_eq!(get(&m, "echod_memory_budget_bytes"), 256 << 20);
    // The scrapes themselves are not echo connections.
    let again = scrape(metrics);
    assert_eq!(
        get(&again, "echod_connections_accepted_total"),
        CONNS as u64
    );

    let stats = d.stop_and_stats();
    for (metric, key) in [
        ("echod_connections_accepted_total", "accepted"),
        ("echod_bytes_received_total", "bytes_in"),
        ("echod_bytes_sent_total", "bytes_out"),
        ("echod_datagrams_received_total", "datagrams_in"),
        ("echod_datagrams_sent_total", "datagrams_out"),
        ("echod_frames_total", "frames"),
        ("echod_accept_errors_total", "accept_errors"),
        ("echod_connections_peak", "peak_concurrent"),
        ("echod_datagram_replies_dropped_total", "udp_reply_dropped"),
        (
            "echod_connections_rejected_total{reason=\"max_connections\"}",
            "rejected_max_connections",
        ),
        (
            "echod_connections_rejected_total{reason=\"fd_exhausted\"}",
            "rejected_fd_exhausted",
        ),
    ] {
        assert_eq!(
            get(&m, metric),
            common::stat(&stats, key),
            "{metric} vs {key}"
        );
    }
    for (prefix, family) in [
        ("closed_", "echod_connections_closed_total"),
        ("udp_dropped_", "echod_datagrams_dropped_total"),
    ] {
        let keys: Vec<&str> = stats
            .split_whitespace()
            .filter_map(|w| w.split_once('=').map(|(k, _)| k))
            .filter(|k| k.starts_with(prefix))
            .collect();
        assert!(!keys.is_empty(), "no {prefix}* in {stats}");
        for key in keys {
            let reason = &key[prefix.len()..];
            let metric = format!("{family}{{reason=\"{reason}\"}}");
            assert_eq!(
                get(&m, &metric),
                common::stat(&stats, key),
                "{metric} vs {key}"
            );
        }
    }
}

/// An echo client doing round trips on its own thread until stopped;
/// returns how many it did, or the first failure.
fn echo_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        let mut s = common::connect(addr);
        let msg = vec![7u8; 1024];
        let mut trips = 0;
        while !stop.load(Ordering::Relaxed) {
            common::round_trip(&mut s, &msg).map_err(|e| format!("after {trips} trips: {e}"))?;
            trips += 1;
        }
        Ok(trips)
    })
}

/// Junk, oversized, slow and wrong requests on the metrics port, and more
/// clients than it serves at once: the echo client beside them gets every
/// answer, the metrics port answers 400/404/405 or closes, and echod stays
/// up and scrapable.
#[test]
fn junk_on_the_metrics_port_disturbs_neither_the_echo_nor_echod() {
    let mut d = Daemon::start(&["--workers", "2", "--metrics", "127.0.0.1:0"]);
    let metrics = d.metrics.expect("metrics address");
    let stop = Arc::new(AtomicBool::new(false));
    let client = echo_client(d.addr(), Arc::clone(&stop));

    // Held open without a byte, and one head that never ends: closed by
    // the deadline, not answered.
    let silent: Vec<TcpStream> = (0..20).map(|_| common::connect(metrics)).collect();
    let mut unfinished = common::connect(metrics);
    unfinished
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("write");

    let mut rng = common::Rng::new(4);
    for _ in 0..20 {
        let mut junk = vec![0u8; rng.range(1, 9000)];
        rng.fill(&mut junk);
        junk.push(b'\n');
        if let Some((status, _)) = http(metrics, &junk) {
            assert_eq!(status, 400);
        }
    }
    // A 1 MiB header: refused at 8 KiB (a 400, or a reset while we write).
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    big.resize(1 << 20, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    if let Some((status, _)) = http(metrics, &big) {
        assert_eq!(status, 400);
    }

    // Once the silent ones are gone, the port answers again.
    let deadline = Instant::now() + 2 * WAIT;
    let answered = |req: &[u8]| loop {
        if let Some((status, _)) = http(metrics, req) {
            return status;
        }
        assert!(Instant::now() < deadline, "the metrics port never answered");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answered(b"POST /metrics HTTP/1.1\r\n\r\n"), 405);
    assert_eq!(answered(b"GET /nope HTTP/1.1\r\n\r\n"), 404);
    assert_eq!(answered(b"GET /metrics HTTP/1.0\r\n\r\n"), 200);

    match common::wait_closed(&mut unfinished, 2 * WAIT) {
        common::Ended::StillOpen(_) => panic!("a head that never ends was never closed"),
        common::Ended::Eof(n) | common::Ended::Reset(n) => assert_eq!(n, 0, "no answer"),
    }
    drop(silent);

    stop.store(true, Ordering::Relaxed);
    let trips = client
        .join()
        .expect("echo client")
        .expect("every echo answered");
    assert!(trips > 0);
    assert!(d.is_running(), "echod went down:\n{}", d.log());
    let m = scrape(metrics);
    assert_eq!(
        get(&m, "echod_connections_accepted_total"),
        1,
        "only the echo client"
    );
    d.stop_and_stats();
}

/// `promtool check metrics` (Prometheus 2.42, which reads only the classic
/// text format) accepts a scrape taken after some traffic.
#[test]
fn promtool_accepts_a_scrape() {
    if !common::require_tool_from("promtool", "the Debian package prometheus") {
        return;
    }
    let d = Daemon::start(&["--udp", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let mut s = d.connect();
    common::round_trip(&mut s, b"hello").expect("echo");
    let text = scrape_text(d.metrics.expect("metrics address"));
    let out = common::run_bounded(
        Command::new("promtool").args(["check", "metrics"]),
        Some(text.clone().into_bytes()),
        WAIT,
    );
    assert!(
        out.status.success(),
        "promtool refused the scrape: {}\n{}\n{text}",
        out.stderr,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A Prometheus server, killed by PID and its data removed on drop.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    api: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` every second, its web API on
    /// a loopback port. Prometheus takes only an address to listen on, not
    /// a socket, so the port is found free (bound to port 0, then
    /// released) and handed over: another process could take it in between.
    /// That risk is accepted here, the only place, and narrowed: a start
    /// that fails (the port taken, or anything else) is retried on a new
    /// port, three times.
    fn start(target: SocketAddr) -> Prometheus {
        let mut last = String::new();
        for attempt in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "echod-test-prometheus-{}-{attempt}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            let config = dir.join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                     scrape_configs:\n  - job_name: echod\n    static_configs:\n      \
                     - targets: ['{target}']\n"
                ),
            )
            .expect("write config");
            let api = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port");
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={api}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.join("log")).expect("log file"),
                ))
                .spawn()
                .expect("spawn prometheus");
            let mut p = Prometheus { child, dir, api };
            let mut exited = false;
            let ready = common::wait_until(2 * WAIT, || {
                exited = !matches!(p.child.try_wait(), Ok(None));
                exited
                    || http(p.api, b"GET /-/ready HTTP/1.0\r\n\r\n").is_some_and(|(s, _)| s == 200)
            });
            if ready && !exited {
                return p;
            }
            last = std::fs::read_to_string(p.dir.join("log")).unwrap_or_default();
        }
        panic!("prometheus did not start three times; last log:\n{last}");
    }

    /// An instant query's single value, if it has one yet.
    fn query(&self, promql: &str) -> Option<String> {
        let request = format!("GET /api/v1/query?query={promql} HTTP/1.0\r\n\r\n");
        let (status, body) = http(self.api, request.as_bytes())?;
        if status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    }
}

/// A real Prometheus server scrapes echod, and its query API returns
/// echod's counter.
#[test]
fn prometheus_scrapes_echod() {
    if !common::require_tool_from("prometheus", "the Debian package prometheus") {
        return;
    }
    let d = Daemon::start(&["--metrics", "127.0.0.1:0"]);
    const CONNS: u64 = 3;
    for _ in 0..CONNS {
        let mut s = d.connect();
        common::round_trip(&mut s, b"hi").expect("echo");
    }
    let prometheus = Prometheus::start(d.metrics.expect("metrics address"));
    let mut seen = None;
    let found = common::wait_until(3 * WAIT, || {
        seen = prometheus.query("echod_connections_accepted_total");
        seen == Some(CONNS.to_string())
    });
    assert!(
        found,
        "prometheus never returned accepted={CONNS} (last: {seen:?}); its log:\n{}",
        std::fs::read_to_string(prometheus.dir.join("log")).unwrap_or_default()
    );
    let mut up = None;
    let is_up = common::wait_until(WAIT, || {
        up = prometheus.query("up");
        up.as_deref() == Some("1")
    });
    assert!(is_up, "the scrape target is not up: {up:?}");
}
