//! `--workers N`: N loops with their own SO_REUSEPORT sockets on one
//! address (port 0 resolved once), connections spread over them, counters
//! summed at exit (`peak_concurrent` exact across workers, not a sum), and
//! an address in use still reported as in use, SIGUSR1 answered by every
//! worker.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use crate::common::{self, stat, Daemon};

#[test]
fn two_workers_share_one_port_and_sum_their_counters() {
    let mut d = Daemon::start(&[
        "--workers",
        "2",
        "--udp",
        "127.0.0.1:0",
        "--max-connections",
        "1",
    ]);
    // --max-connections is per worker: 40 simultaneous clients could only
    // all be served if the kernel spread them, and with a limit of 1 per
    // worker at most 2 can be open; the others are accepted and closed.
    let mut clients: Vec<_> = (0..40).map(|_| d.connect()).collect();
    let mut served = 0;
    for c in clients.iter_mut() {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = c.write_all(b"ping");
        let mut buf = [0u8; 4];
        if c.read_exact(&mut buf).is_ok() && &buf == b"ping" {
            served += 1;
        }
    }
    assert_eq!(served, 2, "one connection per worker, two workers");
    drop(clients);

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..10 {
        udp.send_to(b"dgram", d.udp_addr()).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"dgram");
    }

    let stats = d.stop_and_stats();
    assert_eq!(
        stat(&stats, "accepted") + stat(&stats, "rejected_max_connections"),
        40,
        "{stats}"
    );
    assert_eq!(stat(&stats, "accepted"), 2, "{stats}");
    assert_eq!(stat(&stats, "datagrams_out"), 10, "{stats}");
    let log = d.log();
    assert!(
        log.contains("worker 0 stopped") && log.contains("worker 1 stopped"),
        "{log}"
    );
}

/// SIGUSR1 reaches every worker: one `snapshot:` line each, and the open
/// connections they report add up to the clients connected.
#[test]
fn sigusr1_logs_one_snapshot_per_worker() {
    let mut d = Daemon::start(&["--workers", "2"]);
    let mut clients: Vec<_> = (0..6).map(|_| d.connect()).collect();
    for c in clients.iter_mut() {
        common::round_trip(c, b"ping").unwrap();
    }
    d.signal(libc::SIGUSR1);
    let lines = || d.log_lines_with(&["snapshot: "]);
    assert!(
        common::wait_until(common::WAIT, || lines().len() == 2),
        "{}",
        d.log()
    );
    let lines = lines();
    let mut workers: Vec<u64> = lines.iter().map(|l| stat(l, "worker")).collect();
    workers.sort_unstable();
    assert_eq!(workers, [0, 1], "{lines:?}");
    let open: u64 = lines.iter().map(|l| stat(l, "open")).sum();
    assert_eq!(open, 6, "{lines:?}");
    drop(clients);
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "accepted"), 6, "{stats}");
}

#[test]
fn workers_still_report_an_address_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = common::run_echod(
        &["--workers", "2", "--listen", &addr],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("in use"), "{}", out.stderr);
}

/// Regression: `peak_concurrent` was the sum of each worker's own peak, so
/// with workers that peak at different moments it exceeded the number of
/// connections ever open at once. Rounds of 16 connections held together,
/// each round closed before the next, spread differently over the two
/// workers by the kernel: the peak is 16.
#[test]
fn peak_concurrent_is_exact_across_workers() {
    const HELD: usize = 16;
    const ROUNDS: usize = 4;
    let mut d = Daemon::start_with(&["--workers", "2"], |cmd| {
        cmd.env("RUST_LOG", "debug");
    });
    for round in 1..=ROUNDS {
        let mut clients: Vec<_> = (0..HELD).map(|_| d.connect()).collect();
        for c in &mut clients {
            // Echoed: accepted and open on one of the workers.
            common::round_trip(c, b"held\n").unwrap();
        }
        drop(clients);
        let closed = common::wait_until(common::WAIT, || {
            d.log_lines_with(&["(peer_closed)"]).len() == round * HELD
        });
        assert!(closed, "round {round} not closed:\n{}", d.log());
    }
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "accepted"), (HELD * ROUNDS) as u64, "{stats}");
    assert_eq!(stat(&stats, "peak_concurrent"), HELD as u64, "{stats}");
}
