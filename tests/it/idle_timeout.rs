//! `--idle-timeout 1`: idle means no byte moved either way. An idle client
//! is closed, never before the second is up; a client that keeps talking is not; a
//! client that sent a lot and then stopped reading (its queue full, nothing
//! moving) expires too. The exit stats count the expiries.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{self, Daemon, Ended};

fn daemon() -> Daemon {
    Daemon::start_with(&["--idle-timeout", "1"], |cmd| {
        cmd.env("RUST_LOG", "debug");
    })
}

/// Closed, and not before the timeout (a lower bound, which a busy machine
/// cannot break); how long after it is bounded only against a hang.
#[test]
fn idle_client_is_closed_after_the_timeout() {
    let mut d = daemon();
    let mut s = d.connect();
    common::round_trip(&mut s, b"one message, then silence\n").unwrap();
    let last_byte = Instant::now();
    let ended = common::wait_closed(&mut s, common::WAIT);
    let after = last_byte.elapsed();
    assert_eq!(
        ended,
        Ended::Eof(0),
        "idle client not closed within {:?}",
        common::WAIT
    );
    assert!(
        after >= Duration::from_millis(900),
        "closed after only {after:?}, before the idle timeout"
    );
    eprintln!("idle client closed {after:?} after its last byte");
    drop(s); // our FIN ends the daemon's drain
    assert!(common::wait_until(common::WAIT, || {
        !d.log_lines_with(&["(idle_timeout)"]).is_empty()
    }));
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "closed_idle_timeout"), 1, "{stats}");
}

/// Ten round trips 300 ms apart: at least 3 s of talk, three idle timeouts,
/// however slowly the machine runs them.
#[test]
fn client_talking_every_300ms_is_not_closed() {
    let mut d = daemon();
    let mut s = d.connect();
    let started = Instant::now();
    for n in 0..10 {
        common::round_trip(&mut s, format!("tick {n}\n").as_bytes())
            .unwrap_or_else(|e| panic!("active client lost after {:?}: {e}", started.elapsed()));
        std::thread::sleep(Duration::from_millis(300));
    }
    common::round_trip(&mut s, b"still here\n").unwrap();
    drop(s);
    common::wait_until(common::WAIT, || {
        !d.log_lines_with(&["(peer_closed)"]).is_empty()
    });
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "closed_idle_timeout"), 0, "{stats}");
}

/// A client that filled its queue and stopped reading moves no byte either
/// way, so it is idle too: the daemon cannot flush what it owes, gives up
/// after its drain linger, and closes. The idle timeout ended it, so it is
/// counted as `idle_timeout`, not as `drain_timeout` (kept for drains begun
/// for another reason).
#[test]
fn client_that_stopped_reading_with_a_full_queue_expires() {
    let mut d = daemon();
    let s = d.connect();
    let local = s.local_addr().unwrap();
    let mut writer = s.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let w = {
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || {
            // Write until TCP flow control stops us for good, or the
            // connection breaks (the daemon closed it).
            let chunk = vec![b'x'; 64 * 1024];
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                match writer.write(&chunk) {
                    Ok(n) => {
                        sent.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        })
    };
    // Wait until nothing moves any more.
    let mut last = 0;
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(20));
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    let stalled = Instant::now();
    eprintln!("queue full: {:.1} MB sent, not reading", last as f64 / 1e6);
    // The daemon logs the close with our address as the peer, after the
    // idle timeout (1 s), the drain linger (2 s) and a sweep tick; the wait
    // is only a bound on hangs.
    let needle = format!("close {local} (");
    assert!(
        common::wait_until(common::WAIT, || {
            !d.log_lines_with(&[&needle]).is_empty()
        }),
        "a client with a full queue that stopped reading never expired:\n{}",
        d.log()
    );
    let line = d.log_lines_with(&[&needle]).remove(0);
    eprintln!("closed {:?} after it stalled: {line}", stalled.elapsed());
    assert!(line.contains("(idle_timeout)"), "{line}");
    assert!(
        d.log_lines_with(&[&format!("{local}: idle for")]).len() == 1,
        "not expired as idle:\n{}",
        d.log()
    );
    // From the client's side the connection is gone: reading gets the
    // echoes that were in flight, then EOF or a reset, promptly.
    let mut s: TcpStream = s;
    match common::wait_closed(&mut s, common::WAIT) {
        Ended::Eof(_) | Ended::Reset(_) => {}
        other => panic!("connection still open after expiry: {other:?}"),
    }
    w.join().unwrap();
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "closed_idle_timeout"), 1, "{stats}");
    assert_eq!(common::stat(&stats, "closed_drain_timeout"), 0, "{stats}");
}
