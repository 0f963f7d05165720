//! Out of descriptors (the daemon runs with RLIMIT_NOFILE 64/64, so it
//! cannot raise it): clients beyond what fits are shed (closed at once, not
//! left hanging in the backlog), the loop does not spin while descriptors
//! stay exhausted and new clients keep knocking, and once clients leave the
//! daemon serves new ones again by itself.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{self, Daemon};

const NOFILE: u64 = 64;
const CLIENTS: usize = 100;
/// A spinning accept loop burns ~100 ticks per second of wall time; an idle
/// one next to nothing. Generous for a noisy 2-core machine and a debug build.
/// CPU the daemon used, not time it took: a busy machine slows a spinning
/// loop down (fewer ticks), it cannot make an idle one burn more.
const MAX_TICKS_IN_2S: u64 = 50;

/// How a fresh client fares: echoed, or closed at once.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Served,
    Shed,
}

/// Connects and tries one round trip; a shed client sees EOF or a reset.
/// Hanging (neither within [`common::WAIT`]) fails the test.
fn knock(d: &Daemon) -> (Fate, TcpStream) {
    let mut s = d.connect();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    let _ = s.write_all(b"anyone there?\n");
    (fate_of(&mut s), s)
}

/// Reads the echo of "anyone there?\n" (already sent on `s`), or the close.
fn fate_of(s: &mut TcpStream) -> Fate {
    let mut back = [0u8; 14];
    match s.read_exact(&mut back) {
        Ok(()) => {
            assert_eq!(&back, b"anyone there?\n", "wrong echo");
            Fate::Served
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("client left hanging instead of being served or shed: {e}")
        }
        Err(_) => Fate::Shed,
    }
}

#[test]
fn exhausted_descriptors_shed_clients_without_spinning_then_recover() {
    let mut d = Daemon::start_with(&[], |cmd| {
        cmd.env("RUST_LOG", "debug");
        common::limit_nofile(cmd, NOFILE);
    });
    let limit = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let line = limit
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(line.contains(" 64 "), "limit not applied: {line}");

    // Fill the daemon up, then some: all connect at once (they wait in the
    // backlog), then each tries a round trip.
    let t0 = Instant::now();
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| d.connect()).collect();
    for s in &mut clients {
        s.set_read_timeout(Some(common::WAIT)).unwrap();
        let _ = s.write_all(b"anyone there?\n");
    }
    let mut served = 0;
    let mut shed = 0;
    for s in &mut clients {
        match fate_of(s) {
            Fate::Served => served += 1,
            Fate::Shed => shed += 1,
        }
    }
    eprintln!(
        "{served} clients served, {shed} shed at RLIMIT_NOFILE {NOFILE} ({:?})",
        t0.elapsed()
    );
    assert!(served > 0 && served < NOFILE as usize, "served {served}");
    assert!(shed > 0, "no client was shed: was the limit applied?");

    // Two seconds of exhaustion with new clients knocking every 50 ms: each
    // must be shed promptly, and the daemon must not spin.
    let ticks_before = d.cpu_ticks();
    let started = Instant::now();
    let mut knocks = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let (fate, s) = knock(&d);
        assert_eq!(
            fate,
            Fate::Shed,
            "a client was served while descriptors were exhausted"
        );
        drop(s);
        knocks += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let ticks = d.cpu_ticks() - ticks_before;
    eprintln!(
        "{knocks} clients shed during {:?} of exhaustion; daemon used {ticks} CPU ticks",
        started.elapsed()
    );
    assert!(
        ticks < MAX_TICKS_IN_2S,
        "daemon burned {ticks} ticks in 2 s of exhaustion: the accept loop spins"
    );
    // The served clients are still served (the shed ones are closed).
    let mut still = 0;
    for s in &mut clients {
        if common::round_trip(s, b"still?\n").is_ok() {
            still += 1;
        }
    }
    assert_eq!(still, served, "served clients lost during exhaustion");
    let exhausted_for = t0.elapsed();

    // Free the descriptors: the daemon recovers by itself.
    drop(clients);
    let freed = Instant::now();
    let mut back = None;
    let recovered = common::wait_until(common::WAIT, || {
        let (fate, s) = knock(&d);
        if fate == Fate::Served {
            back = Some(s);
            true
        } else {
            false
        }
    });
    assert!(
        recovered,
        "not serving again {:?} after descriptors were freed:\n{}",
        common::WAIT,
        d.log()
    );
    eprintln!("serving again {:?} after the clients left", freed.elapsed());
    // And it can fill up again.
    let mut again: Vec<TcpStream> = back.into_iter().collect();
    while again.len() < served {
        let (fate, s) = knock(&d);
        assert_eq!(
            fate,
            Fate::Served,
            "only {} served after recovery",
            again.len()
        );
        again.push(s);
    }
    drop(again);
    let ok = common::wait_until(common::WAIT, || {
        d.log_lines_with(&["close ", "(peer_closed)"]).len() >= 2 * served
    });
    assert!(ok, "the daemon did not see every client leave");

    let stats = d.stop_and_stats();
    assert!(
        common::stat(&stats, "rejected_fd_exhausted") >= (shed + knocks) as u64,
        "{stats}"
    );
    let warns = d.log_lines_with(&["WARN", "shedding"]);
    assert!(!warns.is_empty(), "no warning about exhaustion");
    // One line per second at most (the rate limit), plus the edges.
    assert!(
        warns.len() as u64 <= exhausted_for.as_secs() + 2,
        "exhaustion warnings not rate-limited ({} lines):\n{}",
        warns.len(),
        d.log()
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
