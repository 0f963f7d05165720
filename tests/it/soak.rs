//! The soak (issue 12, "Hostile load"): echod with a memory budget under a
//! mixed, hostile load for `SOAK_SECONDS` (default 30, as in `make test`;
//! `make soak` runs 600 on release builds), its RSS and descriptors sampled
//! every second. It fails if, after the warm-up (the first 20%, at least
//! 5 s), either daemon's RSS moves by more than 8 MiB, if the descriptors
//! are not back to their baseline once the clients have gone, or if any
//! verified echo comes back wrong or a verified client is cut off.
//!
//! Framed mode is per daemon, so two daemons run side by side, both with
//! `--max-memory 64MiB` and both sampled:
//! - the echo daemon (with `--udp`) takes echod-bench runs (every echo
//!   verified), slow readers (a few KiB read per 100 ms, every byte read
//!   verified), non-readers (megabytes sent, nothing read: together they
//!   spend the budget, so echod closes some as `memory_pressure`, which is
//!   allowed), connection churn ending in resets (SO_LINGER 0), verified UDP
//!   datagrams, and datagrams from guarded sources (echod's own UDP port, and
//!   a port below 1024 when run as root) that must be dropped and counted;
//! - the framed daemon takes framed echod-bench runs and clients that send
//!   good frames then a bad header, which must get exactly the good frames
//!   back, then EOF.
//!
//! Every load thread stops at the deadline; the daemons are killed on drop.
//! A summary line with the figures goes to stderr (`make soak` shows it).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, frame, stat, Daemon, Pattern, Rng, WAIT};

/// The budget both daemons run with.
const BUDGET: &str = "64MiB";
/// How far RSS may move after the warm-up (issue 12).
const RSS_DRIFT_KIB: u64 = 8 * 1024;
/// Soak length when `SOAK_SECONDS` is unset.
const DEFAULT_SECONDS: u64 = 30;
/// How long the descriptors get to return to the baseline after the load.
const SETTLE: Duration = Duration::from_secs(15);
/// Longest single echod-bench run; runs repeat until the deadline.
const BENCH_RUN: Duration = Duration::from_secs(10);
/// Open loop, so the load is the same whatever the machine: it leaves CPU
/// to the other load kinds on a 2-core machine (echod-bench refuses
/// `--pipeline` with `--rate`).
const ECHO_BENCH: &[&str] = &["-c", "20", "-l", "512", "--rate", "10000"];
const FRAMED_BENCH: &[&str] = &["-c", "10", "-l", "1000", "--rate", "4000", "--framed"];
/// Non-readers held at once: with the 1 MiB `--queue-limit` each can make
/// echod hold, more of them than the budget has MiB, so it stays spent.
const NON_READERS: usize = 96;
/// Bytes a non-reader writes per turn at most (then it waits for a turn).
const NON_READER_TURN: usize = 1 << 20;
/// Slow readers held at once, and what each reads per turn.
const SLOW_READERS: usize = 8;
const SLOW_READ: usize = 4 * 1024;
const SLOW_WRITE: usize = 64 * 1024;
/// Turns of the non-reader and slow-reader threads.
const TURN: Duration = Duration::from_millis(100);
/// Churn: the longest message, and the pause between connections.
const CHURN_MAX: usize = 4000;
const CHURN_PAUSE: Duration = Duration::from_millis(5);
/// Bad-frame clients: the longest good payload, and the pause between clients.
const FRAME_MAX: usize = 16 * 1024;
const FRAME_PAUSE: Duration = Duration::from_millis(20);
/// Not digits-and-spaces: ends a framed connection.
const BAD_HEADER: &[u8; 10] = b"10x4567890";
/// UDP: the longest datagram, the wait for a reply, the pause between datagrams.
const UDP_MAX: usize = 9000;
const UDP_WAIT: Duration = Duration::from_secs(1);
const UDP_PAUSE: Duration = Duration::from_millis(1);
/// Between datagrams from the guarded sources.
const GUARDED_PAUSE: Duration = Duration::from_millis(10);
/// Failures kept for the report (all are counted).
const FAILURES_KEPT: usize = 20;

/// What the load threads share.
struct Soak {
    until: Instant,
    /// Echoes checked byte for byte: echod-bench messages, UDP datagrams,
    /// churn round trips, frames.
    verified: AtomicU64,
    /// Bytes the slow readers checked against the pattern.
    slow_bytes: AtomicU64,
    /// Non-readers and slow readers that echod closed (memory pressure may).
    closed_by_echod: AtomicU64,
    /// Connections opened by the churn thread, all ended with an RST.
    resets: AtomicU64,
    /// Verified datagrams with no reply within [`UDP_WAIT`] (reported only).
    lost: AtomicU64,
    /// Datagrams sent from the own-port and the privileged source.
    guarded: [AtomicU64; 2],
    failures: AtomicU64,
    /// The first [`FAILURES_KEPT`]: a wrong echo, or a verified client cut off.
    failed: Mutex<Vec<String>>,
}

impl Soak {
    fn new(until: Instant) -> Soak {
        Soak {
            until,
            verified: AtomicU64::new(0),
            slow_bytes: AtomicU64::new(0),
            closed_by_echod: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            guarded: [AtomicU64::new(0), AtomicU64::new(0)],
            failures: AtomicU64::new(0),
            failed: Mutex::new(Vec::new()),
        }
    }

    fn running(&self) -> bool {
        Instant::now() < self.until
    }

    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Relaxed);
        let mut failed = self.failed.lock().unwrap();
        if failed.len() < FAILURES_KEPT {
            failed.push(what);
        }
    }
}

/// One second's reading of both daemons (echo, framed).
struct Sample {
    at: Duration,
    rss_kib: [u64; 2],
    fds: [usize; 2],
}

impl Sample {
    fn take(at: Duration, daemons: [&Daemon; 2]) -> Sample {
        Sample {
            at,
            rss_kib: daemons.map(Daemon::rss_kib),
            fds: daemons.map(Daemon::fd_count),
        }
    }
}

fn soak_seconds() -> u64 {
    match std::env::var("SOAK_SECONDS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("SOAK_SECONDS={v:?}: expected whole seconds")),
        Err(_) => DEFAULT_SECONDS,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[test]
fn mixed_hostile_load_keeps_rss_flat_descriptors_balanced_and_echoes_right() {
    let _heavy = common::heavy();
    common::raise_nofile_limit();
    let seconds = soak_seconds();
    let warmup = Duration::from_secs((seconds / 5).max(5));
    // The own-port source holds 127.0.0.1:P; echod's UDP socket is
    // 127.0.0.2:P (tests/it/udp.rs does the same).
    let twin = UdpSocket::bind("127.0.0.1:0").expect("bind the own-port source");
    let udp = format!("127.0.0.2:{}", twin.local_addr().unwrap().port());
    let privileged = bind_privileged();
    let info = |cmd: &mut Command| {
        // Debug logs a line per connection: too many for a long soak.
        cmd.env("RUST_LOG", "info");
    };
    let mut echo = Daemon::start_with(&["--max-memory", BUDGET, "--udp", &udp], info);
    let mut framed = Daemon::start_with(&["--max-memory", BUDGET, "--mode", "framed"], info);
    let mut baseline = Sample::take(Duration::ZERO, [&echo, &framed]);
    baseline.fds = [
        resting_fds(&echo, b"probe"),
        resting_fds(&framed, &frame(b"probe")),
    ];

    let started = Instant::now();
    let soak = Soak::new(started + Duration::from_secs(seconds));
    let (tcp, udp, framed_tcp) = (echo.addr(), echo.udp_addr(), framed.addr());
    let mut guarded = vec![twin];
    guarded.extend(privileged);
    let samples = thread::scope(|scope| {
        let soak = &soak;
        let (echo_target, framed_target) = (tcp.to_string(), framed_tcp.to_string());
        scope.spawn(move || bench_runs(soak, &echo_target, ECHO_BENCH));
        scope.spawn(move || bench_runs(soak, &framed_target, FRAMED_BENCH));
        scope.spawn(move || non_readers(soak, tcp));
        scope.spawn(move || slow_readers(soak, tcp));
        scope.spawn(move || churn(soak, tcp));
        scope.spawn(move || bad_frames(soak, framed_tcp));
        scope.spawn(move || udp_echoes(soak, udp));
        scope.spawn(move || guarded_sources(soak, udp, guarded));
        sample_until(soak.until, started, [&echo, &framed])
    });

    // Every client is gone: echod must close its side of all of them.
    let back = common::wait_until(SETTLE, || {
        echo.fd_count() == baseline.fds[0] && framed.fd_count() == baseline.fds[1]
    });
    let end = Sample::take(started.elapsed(), [&echo, &framed]);
    let echo_stats = echo.stop_and_stats();
    let framed_stats = framed.stop_and_stats();

    let after_warmup: Vec<&Sample> = samples.iter().filter(|s| s.at >= warmup).collect();
    let band = |i: usize| {
        let rss = after_warmup.iter().map(|s| s.rss_kib[i]);
        (rss.clone().min().unwrap_or(0), rss.max().unwrap_or(0))
    };
    let (echo_band, framed_band) = (band(0), band(1));
    let pressure =
        stat(&echo_stats, "closed_memory_pressure") + stat(&framed_stats, "closed_memory_pressure");
    let figures = |i: usize, (min, max): (u64, u64)| {
        format!(
            "RSS baseline {:.1} MiB, after warm-up min {:.1} max {:.1} MiB (drift {:.1}), \
             fds baseline {} end {}",
            mib(baseline.rss_kib[i]),
            mib(min),
            mib(max),
            mib(max - min),
            baseline.fds[i],
            end.fds[i],
        )
    };
    eprintln!(
        "soak: {seconds} s (warm-up {} s, {} samples after it); echo daemon {}; \
         framed daemon {}; echoes verified {}, slow-reader bytes verified {}, \
         wrong or cut off {}; memory_pressure closes {}, non-/slow readers closed by echod {}, \
         resets {}, udp lost {}, udp_dropped {}",
        warmup.as_secs(),
        after_warmup.len(),
        figures(0, echo_band),
        figures(1, framed_band),
        soak.verified.load(Relaxed),
        soak.slow_bytes.load(Relaxed),
        soak.failures.load(Relaxed),
        pressure,
        soak.closed_by_echod.load(Relaxed),
        soak.resets.load(Relaxed),
        soak.lost.load(Relaxed),
        stat(&echo_stats, "udp_dropped"),
    );

    let failed = soak.failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} wrong echoes or verified clients cut off, e.g.:\n{}",
        soak.failures.load(Relaxed),
        failed.join("\n")
    );
    assert!(soak.verified.load(Relaxed) > 0, "nothing was verified");
    let series = || {
        let rows: Vec<String> = samples
            .iter()
            .map(|s| format!("{}s {}/{}", s.at.as_secs(), s.rss_kib[0], s.rss_kib[1]))
            .collect();
        format!("RSS KiB (echo/framed) per second: {}", rows.join(", "))
    };
    for (name, (min, max)) in [("echo", echo_band), ("framed", framed_band)] {
        assert!(
            max - min <= RSS_DRIFT_KIB,
            "{name} daemon: RSS moved {:.1} MiB after the warm-up (limit {:.0}); {}",
            mib(max - min),
            mib(RSS_DRIFT_KIB),
            series()
        );
    }
    assert!(
        back,
        "descriptors not back to the baseline {:?} within {SETTLE:?} of the load's end: {:?}",
        baseline.fds, end.fds
    );
    assert_eq!(
        stat(&echo_stats, "udp_dropped_own_port"),
        soak.guarded[0].load(Relaxed),
        "every datagram from echod's own port is dropped: {echo_stats}"
    );
    assert_eq!(
        stat(&echo_stats, "udp_dropped_privileged_port"),
        soak.guarded[1].load(Relaxed),
        "every datagram from a port below 1024 is dropped: {echo_stats}"
    );
}

/// The daemon's descriptors at rest: counted while one probe connection is
/// open and has been echoed, so the loop surely runs (it opens its poll and
/// signal descriptors after the `listening on` lines), minus that connection.
fn resting_fds(d: &Daemon, probe: &[u8]) -> usize {
    let mut s = d.connect();
    common::round_trip(&mut s, probe).expect("the probe is echoed");
    d.fd_count() - 1
}

/// Samples both daemons every second until `until`.
fn sample_until(until: Instant, started: Instant, daemons: [&Daemon; 2]) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut next = started + Duration::from_secs(1);
    while next <= until {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let sample = Sample::take(started.elapsed(), daemons);
        if sample.at.as_secs().is_multiple_of(10) {
            eprintln!(
                "soak: {:>4} s  echo RSS {:.1} MiB fds {}  framed RSS {:.1} MiB fds {}",
                sample.at.as_secs(),
                mib(sample.rss_kib[0]),
                sample.fds[0],
                mib(sample.rss_kib[1]),
                sample.fds[1]
            );
        }
        samples.push(sample);
        next += Duration::from_secs(1);
    }
    samples
}

/// A UDP socket on a port below 1024, when allowed (root); else `None`.
fn bind_privileged() -> Option<UdpSocket> {
    for port in 1000..1010 {
        match UdpSocket::bind(("127.0.0.1", port)) {
            Ok(s) => return Some(s),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                eprintln!("soak: not root, no datagrams from a port below 1024 ({e})");
                return None;
            }
            Err(_) => continue, // in use: try the next
        }
    }
    None
}

/// echod-bench runs of at most [`BENCH_RUN`] until the deadline; each must
/// verify every echo and report no error at all.
fn bench_runs(soak: &Soak, target: &str, args: &[&str]) {
    loop {
        let left = soak.until.saturating_duration_since(Instant::now());
        if left < Duration::from_secs(1) {
            return;
        }
        let secs = format!("{:.1}", left.min(BENCH_RUN).as_secs_f64());
        let mut cmd = Command::new(common::tool("echod-bench"));
        cmd.arg(target).args(args).args(["-d", &secs, "--json"]);
        let out = common::run_bounded(&mut cmd, Some(Vec::new()), left + 3 * WAIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Value = match serde_json::from_str(stdout.trim()) {
            Ok(report) => report,
            Err(e) => {
                soak.fail(format!(
                    "echod-bench {args:?}: no JSON ({e}): {}",
                    out.stderr
                ));
                continue;
            }
        };
        soak.verified
            .fetch_add(report["messages"].as_u64().unwrap_or(0), Relaxed);
        if !out.status.success() || report["ok"] != Value::Bool(true) {
            soak.fail(format!(
                "echod-bench {args:?} ({}): errors {} {}",
                out.status, report["errors"], report["error_samples"]
            ));
        }
    }
}

/// Holds [`NON_READERS`] connections that write and never read, each for
/// 2-8 s, then closes it (with unread echoes: an RST) and opens another.
fn non_readers(soak: &Soak, addr: SocketAddr) {
    let junk = vec![0xa5u8; 64 * 1024];
    let mut rng = Rng::new(0x50a4);
    let mut held: Vec<(TcpStream, Instant)> = Vec::new();
    while soak.running() {
        let now = Instant::now();
        while held.len() < NON_READERS {
            let s = common::connect(addr);
            s.set_nonblocking(true).unwrap();
            let life = Duration::from_millis(rng.range(2_000, 8_000) as u64);
            held.push((s, now + life));
        }
        held.retain_mut(|(s, until)| {
            if now >= *until {
                return false;
            }
            let mut written = 0;
            while written < NON_READER_TURN {
                match s.write(&junk) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        soak.closed_by_echod.fetch_add(1, Relaxed);
                        return false;
                    }
                }
            }
            true
        });
        thread::sleep(TURN);
    }
}

/// A slow reader: writes the pattern, reads [`SLOW_READ`] bytes a turn and
/// checks them.
struct Slow {
    s: TcpStream,
    sent: u64,
    got: u64,
    until: Instant,
}

/// Holds [`SLOW_READERS`] slow readers, each for 5-15 s. echod may close
/// them (they hold the budget); what they did read must be right.
fn slow_readers(soak: &Soak, addr: SocketAddr) {
    let pattern = Pattern::new(SLOW_WRITE);
    let mut buf = vec![0u8; SLOW_READ];
    let mut rng = Rng::new(0x51e3);
    let mut readers: Vec<Slow> = Vec::new();
    while soak.running() {
        let now = Instant::now();
        while readers.len() < SLOW_READERS {
            let s = common::connect(addr);
            s.set_nonblocking(true).unwrap();
            let life = Duration::from_millis(rng.range(5_000, 15_000) as u64);
            readers.push(Slow {
                s,
                sent: 0,
                got: 0,
                until: now + life,
            });
        }
        readers.retain_mut(|r| {
            if now >= r.until {
                return false;
            }
            match r.s.write(pattern.at(r.sent, SLOW_WRITE)) {
                Ok(n) => r.sent += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    soak.closed_by_echod.fetch_add(1, Relaxed);
                    return false;
                }
            }
            match r.s.read(&mut buf) {
                Ok(0) => {
                    soak.closed_by_echod.fetch_add(1, Relaxed);
                    false
                }
                Ok(n) => {
                    if let Some(at) = pattern.mismatch(r.got, &buf[..n]) {
                        soak.fail(format!("slow reader: wrong byte at stream offset {at}"));
                        return false;
                    }
                    r.got += n as u64;
                    soak.slow_bytes.fetch_add(n as u64, Relaxed);
                    true
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                Err(_) => {
                    soak.closed_by_echod.fetch_add(1, Relaxed);
                    false
                }
            }
        });
        thread::sleep(TURN);
    }
}

/// Connects, sends, and closes with an RST, over and over: every other
/// connection first checks one echo, the others reset while echod may
/// still be echoing.
fn churn(soak: &Soak, addr: SocketAddr) {
    let pattern = Pattern::new(CHURN_MAX);
    let mut n = 0u64;
    while soak.running() {
        let mut s = common::connect(addr);
        let msg = pattern.at(n * 7, 1 + (n as usize * 37) % CHURN_MAX);
        if n.is_multiple_of(2) {
            match common::round_trip(&mut s, msg) {
                Ok(()) => {
                    soak.verified.fetch_add(1, Relaxed);
                }
                Err(e) => soak.fail(format!("churn connection {n}: {e}")),
            }
        } else {
            let _ = s.write_all(msg);
        }
        common::reset(s);
        soak.resets.fetch_add(1, Relaxed);
        n += 1;
        thread::sleep(CHURN_PAUSE);
    }
}

/// Framed clients: 1-4 good frames, then [`BAD_HEADER`]; exactly the good
/// frames must come back, then EOF.
fn bad_frames(soak: &Soak, addr: SocketAddr) {
    let pattern = Pattern::new(FRAME_MAX);
    let mut rng = Rng::new(0xbad);
    let mut offset = 0u64;
    while soak.running() {
        let frames = rng.range(1, 4);
        let mut good = Vec::new();
        for _ in 0..frames {
            let len = rng.range(0, FRAME_MAX);
            good.extend_from_slice(&frame(pattern.at(offset, len)));
            offset += len as u64;
        }
        let mut wire = good.clone();
        wire.extend_from_slice(BAD_HEADER);
        let mut s = common::connect(addr);
        let mut back = Vec::new();
        match s.write_all(&wire).and_then(|()| s.read_to_end(&mut back)) {
            Ok(_) if back == good => {
                soak.verified.fetch_add(frames as u64, Relaxed);
            }
            Ok(_) => soak.fail(format!(
                "bad-frame client: {} bytes came back, the good frames were {} bytes{}",
                back.len(),
                good.len(),
                if back.len() == good.len() {
                    ", different"
                } else {
                    ""
                }
            )),
            Err(e) => soak.fail(format!(
                "bad-frame client: {e} after {} of the {} bytes of good frames",
                back.len(),
                good.len()
            )),
        }
        thread::sleep(FRAME_PAUSE);
    }
}

/// How long verified datagram `seq` is.
fn udp_len(seq: u64) -> usize {
    8 + (seq as usize * 131) % (UDP_MAX - 8)
}

/// Verified datagrams, one in flight: the sequence number (u64 LE), then
/// the pattern at that offset. A reply to an earlier datagram that came
/// late is checked too; a missing reply is counted as lost, not a failure.
fn udp_echoes(soak: &Soak, to: SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP client");
    s.set_read_timeout(Some(UDP_WAIT)).unwrap();
    let pattern = Pattern::new(UDP_MAX);
    let mut buf = vec![0u8; 65_536];
    let mut seq = 0u64;
    while soak.running() {
        let mut datagram = seq.to_le_bytes().to_vec();
        datagram.extend_from_slice(pattern.at(seq, udp_len(seq) - 8));
        s.send_to(&datagram, to).expect("send a datagram");
        loop {
            match s.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let got = &buf[..n];
                    let of = got
                        .get(..8)
                        .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
                    let right = from == to
                        && of.is_some_and(|q| {
                            q <= seq && n == udp_len(q) && got[8..] == *pattern.at(q, n - 8)
                        });
                    if !right {
                        soak.fail(format!("udp: a wrong {n}-byte reply from {from}"));
                        break;
                    }
                    if of == Some(seq) {
                        soak.verified.fetch_add(1, Relaxed);
                        break;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    soak.lost.fetch_add(1, Relaxed);
                    break;
                }
                Err(e) => {
                    soak.fail(format!("udp: {e}"));
                    break;
                }
            }
        }
        seq += 1;
        thread::sleep(UDP_PAUSE);
    }
}

/// Datagrams from the guarded sources (`sources[0]` on echod's own port,
/// `sources[1]`, if any, below 1024): counted, and never answered.
fn guarded_sources(soak: &Soak, to: SocketAddr, sources: Vec<UdpSocket>) {
    while soak.running() {
        for (source, sent) in sources.iter().zip(&soak.guarded) {
            source
                .send_to(b"guarded", to)
                .expect("send from a guarded source");
            sent.fetch_add(1, Relaxed);
        }
        thread::sleep(GUARDED_PAUSE);
    }
    for source in &sources {
        source.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = source.recv_from(&mut buf) {
            soak.fail(format!(
                "guarded source {} got a {n}-byte answer from {from}",
                source.local_addr().unwrap()
            ));
        }
    }
}
