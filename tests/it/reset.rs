//! Resets end only their own connection: clients that write and then close
//! with SO_LINGER 0 (an RST, some while the daemon is still echoing to them)
//! do not disturb four other clients doing verified round trips the whole
//! time, and the daemon keeps accepting.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::common::{self, Daemon};

const RESETTERS: usize = 60;
const BYSTANDERS: usize = 4;

#[test]
fn resetting_clients_do_not_disturb_others() {
    let mut d = Daemon::start_with(&[], |cmd| {
        cmd.env("RUST_LOG", "debug");
    });
    let addr = d.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let all_trips = Arc::new(AtomicUsize::new(0));
    let bystanders: Vec<_> = (0..BYSTANDERS)
        .map(|b| {
            let (stop, all_trips) = (Arc::clone(&stop), Arc::clone(&all_trips));
            let mut s = common::connect(addr);
            std::thread::spawn(move || -> Result<usize, String> {
                let mut trips = 0;
                while !stop.load(Ordering::Relaxed) {
                    let msg = format!("bystander {b} trip {trips} {}\n", "x".repeat(trips % 3000));
                    common::round_trip(&mut s, msg.as_bytes())
                        .map_err(|e| format!("bystander {b} after {trips} trips: {e}"))?;
                    trips += 1;
                    all_trips.fetch_add(1, Ordering::Relaxed);
                }
                Ok(trips)
            })
        })
        .collect();

    let payload = vec![b'r'; 256 * 1024];
    for i in 0..RESETTERS {
        let mut s = common::connect(addr);
        match i % 3 {
            // Reset with our data still in flight to the daemon.
            0 => s.write_all(&payload[..1000]).unwrap(),
            // Reset while the daemon is echoing a lot back to us (its writes
            // then fail with ECONNRESET/EPIPE).
            1 => {
                s.write_all(&payload).unwrap();
                let _ = common::read_exact(&mut s, 1);
            }
            // Reset right after a complete round trip.
            _ => common::round_trip(&mut s, b"then reset\n").unwrap(),
        }
        common::reset(s);
    }

    // Still accepting, still echoing, after all those resets.
    let mut fresh = d.connect();
    common::round_trip(&mut fresh, b"after the resets\n").unwrap();
    // The bystanders go on until they have made some trips: a count, not a
    // rate (a busy machine may run them slowly); a bystander that failed
    // has stopped, and its error is reported by the join below.
    common::wait_until(common::WAIT, || {
        all_trips.load(Ordering::Relaxed) >= BYSTANDERS * 10
    });
    stop.store(true, Ordering::Relaxed);
    let mut trips = 0;
    for b in bystanders {
        trips += b.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!("bystanders made {trips} verified round trips during {RESETTERS} resets");
    assert!(
        trips >= BYSTANDERS * 10,
        "bystanders barely ran ({trips} trips)"
    );
    drop(fresh);

    // Every resetter's connection was reaped (as an error or a peer close).
    let ended = |d: &Daemon| {
        d.log_lines_with(&["close ", "(error)"]).len()
            + d.log_lines_with(&["close ", "(peer_closed)"]).len()
    };
    let all = RESETTERS + BYSTANDERS + 1;
    let started = Instant::now();
    common::wait_until(common::WAIT, || {
        // Bystander sockets close when their threads end.
        ended(&d) >= all
    });
    eprintln!("all closes logged after {:?}", started.elapsed());
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "accepted"), all as u64, "{stats}");
    let errors = common::stat(&stats, "closed_error");
    let peer_closed = common::stat(&stats, "closed_peer_closed");
    assert_eq!(errors + peer_closed, all as u64, "{stats}");
    assert!(errors >= 1, "no reset was counted as an error: {stats}");
    assert!(
        !d.log().contains("panicked"),
        "daemon panicked:\n{}",
        d.log()
    );
}
