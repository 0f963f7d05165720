//! SIGTERM/SIGINT: stop accepting, flush for at most `--shutdown-timeout`,
//! exit 0 with the stats line; a second signal exits at once with 128+signo.
//!
//! No test asserts how fast the daemon exits. "Does not wait for the
//! timeout" is checked with a `--shutdown-timeout` (30 s) far beyond the
//! wait for the exit ([`common::WAIT`]), so only waiting for it fails; "the
//! timeout cut it off" by the close reasons in the stats line.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{self, Daemon};

/// A client that sends up to 10 MB and never reads: the daemon's queue for it
/// fills and stays full. Returns once the writer has stalled; the thread ends
/// when the connection breaks or `stop` is set.
struct SlowReader {
    _stream: TcpStream,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

impl SlowReader {
    fn start(d: &Daemon) -> SlowReader {
        let stream = d.connect();
        let mut w = stream.try_clone().unwrap();
        w.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let writer = {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            std::thread::spawn(move || {
                let chunk = vec![b'z'; 64 * 1024];
                while !stop.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < 10 << 20 {
                    match w.write(&chunk) {
                        Ok(n) => {
                            sent.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            })
        };
        let mut last = 0;
        let mut still_since = Instant::now();
        let deadline = Instant::now() + common::WAIT;
        while still_since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let now = sent.load(Ordering::Relaxed);
            if now != last {
                last = now;
                still_since = Instant::now();
            }
        }
        eprintln!(
            "slow reader: {:.1} MB sent, reading nothing",
            last as f64 / 1e6
        );
        SlowReader {
            _stream: stream,
            stop,
            writer: Some(writer),
        }
    }
}

impl Drop for SlowReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn debug_daemon(args: &[&str]) -> Daemon {
    Daemon::start_with(args, |cmd| {
        cmd.env("RUST_LOG", "debug");
    })
}

/// Sends SIGTERM, waits at most [`common::WAIT`] for exit status 0, and
/// returns how long the exit took and the exit stats line.
fn sigterm_and_stats(d: &mut Daemon) -> (Duration, String) {
    let sent_at = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(common::WAIT);
    let took = sent_at.elapsed();
    eprintln!("exited {status} {took:?} after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    let stats = d
        .stats_line()
        .unwrap_or_else(|| panic!("no stats line:\n{}", d.log()));
    (took, stats)
}

/// Asserts the exit stats' `closed_{reason}` counters named in `expected`.
fn assert_closed(stats: &str, expected: &[(&str, u64)]) {
    for (reason, n) in expected {
        let key = format!("closed_{reason}");
        assert_eq!(common::stat(stats, &key), *n, "{key}: {stats}");
    }
}

/// The slow reader never reads, so without the timeout the flush would
/// never end; the stats say the timeout, not the reader, ended it.
#[test]
fn sigterm_with_slow_reader_exits_0_within_shutdown_timeout() {
    // Its 10 MB in flight count on the kernel's socket buffers; a heavy
    // test beside it shrinks them (see common::heavy).
    let _heavy = common::heavy();
    let mut d = debug_daemon(&["--shutdown-timeout", "2"]);
    let mut other = d.connect();
    common::round_trip(&mut other, b"bystander\n").unwrap();
    let slow = SlowReader::start(&d);
    let (_, stats) = sigterm_and_stats(&mut d);
    assert_eq!(common::stat(&stats, "accepted"), 2, "{stats}");
    // The bystander ends cleanly; the slow reader, still owed bytes when
    // the timeout passes, is a drain that ran out of time.
    assert_closed(&stats, &[("shutdown", 1), ("drain_timeout", 1)]);
    drop(slow);
}

/// Idle clients that close when they see the daemon's FIN (as nc, telnet
/// and echod-client do) let it exit at once, not after the shutdown timeout.
#[test]
fn sigterm_with_idle_clients_exits_0_fast() {
    let mut d = debug_daemon(&["--shutdown-timeout", "30"]);
    let mut clients: Vec<TcpStream> = (0..10).map(|_| d.connect()).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        common::round_trip(s, format!("idle {i}\n").as_bytes()).unwrap();
    }
    d.signal(libc::SIGTERM);
    for s in &mut clients {
        assert_eq!(
            common::wait_closed(s, common::WAIT),
            common::Ended::Eof(0),
            "the daemon did not half-close an idle client"
        );
    }
    drop(clients);
    let status = d.wait_exit(common::WAIT);
    assert_eq!(status.code(), Some(0), "{}", d.log());
    let stats = d.stats_line().expect("stats line");
    assert_eq!(common::stat(&stats, "closed_shutdown"), 10, "{stats}");
}

/// Clients that neither read nor close after the daemon's FIN are owed
/// nothing: after a short quiet spell (LINGER_QUIET, 500 ms) the daemon closes
/// them and exits 0, long before a 30 s shutdown timeout.
#[test]
fn sigterm_with_passive_idle_clients_does_not_wait_for_the_timeout() {
    let mut d = debug_daemon(&["--shutdown-timeout", "30"]);
    let mut clients: Vec<TcpStream> = (0..10).map(|_| d.connect()).collect();
    for s in &mut clients {
        common::round_trip(s, b"then nothing\n").unwrap();
    }
    let (_, stats) = sigterm_and_stats(&mut d);
    assert_eq!(common::stat(&stats, "closed_drain_timeout"), 0, "{stats}");
    drop(clients);
}

#[test]
fn sigint_exits_0_too() {
    let mut d = debug_daemon(&[]);
    let mut s = d.connect();
    common::round_trip(&mut s, b"hi\n").unwrap();
    drop(s);
    d.signal(libc::SIGINT);
    let status = d.wait_exit(common::WAIT);
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(d.stats_line().is_some(), "no stats line:\n{}", d.log());
}

#[test]
fn second_sigterm_exits_at_once_with_143() {
    let mut d = debug_daemon(&["--shutdown-timeout", "30"]);
    let slow = SlowReader::start(&d);
    d.signal(libc::SIGTERM);
    d.wait_for_log("shutting down");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        d.is_running(),
        "exited before the flush was done:\n{}",
        d.log()
    );
    // Well before --shutdown-timeout 30: only the second signal ends it.
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(common::WAIT);
    assert_eq!(status.code(), Some(143), "{status}:\n{}", d.log());
    drop(slow);
}

#[test]
fn after_sigterm_new_connections_are_refused() {
    let mut d = debug_daemon(&["--shutdown-timeout", "30"]);
    let addr = d.addr();
    let slow = SlowReader::start(&d);
    d.signal(libc::SIGTERM);
    d.wait_for_log("shutting down");
    // Still running (flushing to the slow reader), but no longer listening.
    assert!(d.is_running());
    let refused = common::wait_until(common::WAIT, || {
        matches!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused
        )
    });
    assert!(refused, "connections still accepted after SIGTERM");
    assert!(d.is_running(), "exited early:\n{}", d.log());
    drop(slow);
}

/// Regression: SIGTERM relabelled a connection already draining for another
/// reason as `shutdown`. Here a client that stopped reading is ended by
/// `--idle-timeout` (a 2 s drain); the shutdown that follows brings the
/// deadline closer (1 s) but the connection is still counted as an idle
/// timeout, as it would have been without the signal. (That the shutdown
/// deadline caps the drain's is pinned without a clock by the unit test
/// `a_shutdown_shortens_a_drain_but_keeps_its_reason` in src/connection.)
#[test]
fn sigterm_keeps_the_reason_of_a_drain_under_way() {
    let mut d = debug_daemon(&["--idle-timeout", "1", "--shutdown-timeout", "1"]);
    let slow = SlowReader::start(&d);
    d.wait_for_log(": idle for");
    let (_, stats) = sigterm_and_stats(&mut d);
    assert_closed(
        &stats,
        &[("idle_timeout", 1), ("shutdown", 0), ("drain_timeout", 0)],
    );
    drop(slow);
}

/// Regression: a drain begun before the shutdown (a bad frame here) earned
/// time with each write that made progress, past the shutdown deadline; the
/// loop then closed it at that deadline as `shutdown`, while a drain that
/// began with the shutdown was counted as `drain_timeout`. Now progress
/// earns time only up to the shutdown deadline, and a connection still owed
/// bytes when `--shutdown-timeout` passes is `drain_timeout` either way.
#[test]
fn sigterm_cuts_off_a_trickling_reader_as_drain_timeout() {
    let _heavy = common::heavy();
    const OWED: usize = 32 << 20;
    let mut d = debug_daemon(&[
        "--mode",
        "framed",
        "--queue-limit",
        "64M",
        "--shutdown-timeout",
        "3",
    ]);
    // A small receive buffer, so that each small read lets the daemon write
    // (and make progress) again.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 << 10).expect("SO_RCVBUF");
    socket
        .connect_timeout(&d.addr().into(), common::WAIT)
        .expect("connect");
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    s.set_write_timeout(Some(common::WAIT)).unwrap();
    const PAYLOAD: usize = 1 << 20;
    let framed = common::frame(&[b'p'; PAYLOAD]);
    for _ in 0..OWED / PAYLOAD {
        s.write_all(&framed).unwrap();
    }
    s.write_all(b"not a len!").unwrap();
    d.wait_for_log("closing: invalid frame header");

    // Read 64 KiB every 10 ms until the daemon has exited: a peer that
    // reads (the daemon's writes make progress every few hundred ms), but
    // too slowly to take the 32 MiB it is owed within the shutdown timeout.
    let mut r = s.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            let mut got = 0;
            while !stop.load(Ordering::Relaxed) {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            got
        })
    };
    let (took, stats) = sigterm_and_stats(&mut d);
    stop.store(true, Ordering::Relaxed);
    let got = reader.join().unwrap();
    eprintln!("the reader got {got} of {OWED} bytes");
    assert!(
        got < OWED,
        "the reader took everything: nothing was cut off"
    );
    // A lower bound, which a busy machine cannot break. Progress pushing the
    // drain past --shutdown-timeout 3 shows in the close reason (it was
    // `shutdown`), not in a stopwatch; the unit test
    // `progress_earns_time_but_never_past_the_shutdown_deadline` pins the
    // deadline itself without a clock.
    assert!(
        took > Duration::from_millis(2500),
        "exited after {took:?}: the drain did not earn time by progress, so \
         this test did not test what it means to"
    );
    assert_closed(
        &stats,
        &[("drain_timeout", 1), ("shutdown", 0), ("bad_frame", 0)],
    );
}

/// The `snapshot:` lines logged so far.
fn snapshots(d: &Daemon) -> Vec<String> {
    d.log_lines_with(&["snapshot: "])
}

/// Waits until the daemon has logged `n` snapshot lines; returns the last.
fn wait_for_snapshots(d: &Daemon, n: usize) -> String {
    assert!(
        common::wait_until(common::WAIT, || snapshots(d).len() >= n),
        "no snapshot #{n}:\n{}",
        d.log()
    );
    snapshots(d).pop().expect("a snapshot")
}

/// SIGUSR1 logs one `snapshot:` line (open, draining and queued bytes now,
/// then the counters so far) and changes nothing: the daemon goes on
/// serving, a later SIGUSR1 sees the later state, and the exit line is the
/// usual one. Sent as soon as `listening on` is logged, it must not kill
/// the daemon (SIGUSR1's default action) however early it lands.
#[test]
fn sigusr1_logs_a_snapshot_and_changes_nothing() {
    let mut d = Daemon::start(&[]);
    d.signal(libc::SIGUSR1);
    let first = wait_for_snapshots(&d, 1);
    assert!(d.is_running(), "{}", d.log());
    for (key, value) in [("worker", 0), ("open", 0), ("accepted", 0)] {
        assert_eq!(common::stat(&first, key), value, "{key}: {first}");
    }
    // Nothing woke the loop before the signal, and the turn that logs the
    // snapshot is counted when it ends.
    for key in ["loop_turns", "events"] {
        assert_eq!(common::stat(&first, key), 0, "{key}: {first}");
    }

    let mut client = d.connect();
    common::round_trip(&mut client, b"before\n").unwrap();
    let slow = SlowReader::start(&d);
    d.signal(libc::SIGUSR1);
    let second = wait_for_snapshots(&d, 2);
    // The slow reader filled its queue past --queue-limit: it is not read.
    let expected = [("open", 2), ("accepted", 2), ("draining", 0), ("paused", 1)];
    for (key, value) in expected {
        assert_eq!(common::stat(&second, key), value, "{key}: {second}");
    }
    // The slow reader's echoes the socket would not take are queued: every
    // byte read has been either written or queued.
    let queued = common::stat(&second, "queued_bytes");
    assert!(queued > 0, "{second}");
    assert_eq!(
        common::stat(&second, "bytes_in"),
        common::stat(&second, "bytes_out") + queued,
        "{second}"
    );

    // Since then: at least the first signal's turn, the accept and the
    // round trip's read, each an event.
    assert!(common::stat(&second, "events") >= 3, "{second}");
    assert!(common::stat(&second, "loop_turns") >= 1, "{second}");

    common::round_trip(&mut client, b"after\n").unwrap();
    drop(slow);
    let (_, stats) = sigterm_and_stats(&mut d);
    assert_eq!(common::stat(&stats, "accepted"), 2, "{stats}");
    assert_eq!(snapshots(&d).len(), 2, "{}", d.log());
}
