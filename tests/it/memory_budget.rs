//! `--max-memory` under hostile load (issue 12): a thousand clients that each
//! try to send 4 MB and never read their echoes. The daemon's RSS stays
//! under its idle baseline + the budget + 48 MiB, a client doing 1 KiB round
//! trips beside them is still answered (at least 95% within 1 s each), the
//! biggest holders are closed as `memory_pressure`, and once the flood
//! leaves, RSS comes back within 24 MiB of the baseline within 10 s.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{self, stat, Daemon};

const FLOODERS: usize = 1_000;
const FLOOD_BYTES: usize = 4 << 20;
const BUDGET_MIB: u64 = 64;
const SLACK_MIB: u64 = 48;
/// How long the flood pushes: enough to fill the budget many times over.
const FLOOD_FOR: Duration = Duration::from_secs(8);

/// 1 KiB round trips every 10 ms until `stop`; counts those answered within
/// 1 s and all of them. Every echo is checked.
fn round_trips(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    fast: Arc<AtomicU64>,
    all: Arc<AtomicU64>,
) {
    let mut s = common::connect(addr);
    let msg: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let mut back = vec![0u8; msg.len()];
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        s.write_all(&msg).expect("round trip: write");
        s.read_exact(&mut back).expect("round trip: read");
        assert_eq!(back, msg, "round trip: a wrong echo");
        all.fetch_add(1, Ordering::Relaxed);
        if t.elapsed() < Duration::from_secs(1) {
            fast.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A client that sends and never reads, with a small receive buffer so the
/// echoes pile up in the daemon rather than in this kernel.
fn flooder(addr: std::net::SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.set_recv_buffer_size(4096).ok()?;
    socket.connect(&addr.into()).ok()?;
    let s: TcpStream = socket.into();
    s.set_nonblocking(true).ok()?;
    Some(s)
}

#[test]
fn non_readers_stay_within_the_budget_and_a_reader_is_still_served() {
    let _heavy = common::heavy();
    common::raise_nofile_limit();
    let budget = format!("{BUDGET_MIB}MiB");
    let mut d = Daemon::start(&["--max-memory", &budget]);
    let baseline_mib = d.rss_kib() / 1024;

    let stop = Arc::new(AtomicBool::new(false));
    let (fast, all) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (addr, stop, fast, all) = (d.addr(), stop.clone(), fast.clone(), all.clone());
        std::thread::spawn(move || round_trips(addr, stop, fast, all))
    };

    let mut flood: Vec<(TcpStream, usize)> = (0..FLOODERS)
        .filter_map(|_| flooder(d.addr()).map(|s| (s, FLOOD_BYTES)))
        .collect();
    assert!(
        flood.len() >= FLOODERS * 9 / 10,
        "only {} flooders connected",
        flood.len()
    );
    let chunk = vec![b'x'; 64 * 1024];
    let mut peak_mib = 0;
    let mut closed_by_daemon = 0;
    // At least FLOOD_FOR, and on until the daemon has closed a flooder for
    // memory pressure (a loaded machine fills the budget more slowly); the
    // second bound only stops a hang.
    let started = Instant::now();
    while started.elapsed() < FLOOD_FOR
        || (closed_by_daemon == 0 && started.elapsed() < Duration::from_secs(40))
    {
        let mut moved = 0;
        for (s, left) in flood.iter_mut().filter(|(_, left)| *left > 0) {
            match s.write(&chunk[..chunk.len().min(*left)]) {
                Ok(n) => {
                    *left -= n;
                    moved += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    // Reset: the daemon closed it to win memory back.
                    *left = 0;
                    closed_by_daemon += 1;
                }
            }
        }
        peak_mib = peak_mib.max(d.rss_kib() / 1024);
        if moved == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(flood);
    let limit_mib = baseline_mib + BUDGET_MIB + SLACK_MIB;
    assert!(
        peak_mib <= limit_mib,
        "RSS peaked at {peak_mib} MiB, over {baseline_mib} + {BUDGET_MIB} + {SLACK_MIB} MiB"
    );

    // After the burst, memory goes back to the operating system.
    let settled = common::wait_until(Duration::from_secs(10), || {
        d.rss_kib() / 1024 <= baseline_mib + 24
    });
    let after_mib = d.rss_kib() / 1024;
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the round-trip client failed");
    let (fast, all) = (fast.load(Ordering::Relaxed), all.load(Ordering::Relaxed));
    eprintln!(
        "memory budget: baseline {baseline_mib} MiB, peak {peak_mib} MiB (limit {limit_mib}), \
         {after_mib} MiB after the flood; {fast} of {all} round trips within 1 s; \
         {closed_by_daemon} flooders closed by the daemon"
    );
    assert!(
        settled,
        "RSS still {after_mib} MiB 10 s after the flood (baseline {baseline_mib} MiB)"
    );
    assert!(
        all > 0 && fast * 100 >= all * 95,
        "{fast} of {all} round trips within 1 s"
    );

    let stats = d.stop_and_stats();
    assert!(
        stat(&stats, "closed_memory_pressure") > 0,
        "nobody was closed for memory pressure: {stats}"
    );
    let warned = d.log_lines_with(&["memory pressure", "127.0.0.1:"]);
    assert!(!warned.is_empty(), "no warn line naming a peer");
}
