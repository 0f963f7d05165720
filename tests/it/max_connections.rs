//! `--max-connections 5`: five clients are served and keep working; every
//! client beyond them is accepted and closed at once (EOF or reset, never a
//! hang), counted in `rejected_max_connections`, and warned about at a
//! bounded rate (one line a second at most, plus the edges).
//! When one of the five leaves, its slot serves a new client.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{self, Daemon, Ended};

const MAX: usize = 5;
const EXTRA: usize = 20;

/// Closed without a byte: the daemon owes a rejected client nothing, so
/// only a hang would reach the bound.
fn expect_rejected(d: &Daemon, what: &str) {
    let mut s = d.connect();
    match common::wait_closed(&mut s, common::WAIT) {
        Ended::Eof(0) | Ended::Reset(0) => {}
        other => panic!("{what}: expected to be closed at once, got {other:?}"),
    }
}

#[test]
fn sixth_client_is_closed_at_once_and_the_five_keep_working() {
    let mut d = Daemon::start_with(&["--max-connections", "5"], |cmd| {
        cmd.env("RUST_LOG", "debug");
    });
    let mut kept: Vec<TcpStream> = (0..MAX).map(|_| d.connect()).collect();
    for (i, s) in kept.iter_mut().enumerate() {
        common::round_trip(s, format!("client {i}\n").as_bytes()).unwrap();
    }

    let first_rejection = Instant::now();
    expect_rejected(&d, "6th client");
    // A burst of rejections, as a flood would give.
    let burst = Instant::now();
    for i in 0..EXTRA {
        expect_rejected(&d, &format!("extra client {i}"));
    }
    eprintln!("{} rejections in {:?}", EXTRA + 1, burst.elapsed());

    // The five are undisturbed.
    for (i, s) in kept.iter_mut().enumerate() {
        common::round_trip(s, format!("client {i} still here\n").as_bytes())
            .unwrap_or_else(|e| panic!("client {i} after the rejections: {e}"));
    }

    // One leaves; its slot serves a newcomer (once the daemon saw the FIN).
    drop(kept.pop());
    let mut newcomer = None;
    assert!(
        common::wait_until(common::WAIT, || {
            let mut s = d.connect();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            if common::round_trip(&mut s, b"newcomer\n").is_ok() {
                newcomer = Some(s);
                true
            } else {
                false
            }
        }),
        "a freed slot was never reused"
    );
    let mut newcomer = newcomer.unwrap();
    common::round_trip(&mut newcomer, b"newcomer again\n").unwrap();
    for s in kept.iter_mut() {
        common::round_trip(s, b"last\n").unwrap();
    }
    // Close every client and let the daemon see it, so the shutdown below
    // has nothing to wait for.
    drop(kept);
    drop(newcomer);
    common::wait_until(common::WAIT, || {
        d.log_lines_with(&["close ", "(peer_closed)"]).len() > MAX
    });
    let rejecting_for = first_rejection.elapsed();

    let stats = d.stop_and_stats();
    let rejected = common::stat(&stats, "rejected_max_connections");
    assert!(rejected > EXTRA as u64, "{stats}");
    assert_eq!(
        common::stat(&stats, "peak_concurrent"),
        MAX as u64,
        "{stats}"
    );
    let log = d.log();
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("max-connections"))
        .collect();
    assert!(!warns.is_empty(), "no warning about rejections:\n{log}");
    // One line per second at most (the rate limit), plus the edges: a
    // count against the time the rejections really took, so a slow run
    // cannot fail it.
    assert!(
        warns.len() as u64 <= rejecting_for.as_secs() + 2,
        "{rejected} rejections in {rejecting_for:?} gave {} warn lines (not rate-limited):\n{}",
        warns.len(),
        warns.join("\n")
    );
}
