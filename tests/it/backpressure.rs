//! Backpressure: a client writes 300 MB and does not read. The daemon stops
//! reading it once its queue passes `--queue-limit`, so TCP flow control holds
//! the writer back and the daemon's RSS stays under 64 MB throughout (sampled
//! from /proc every 10 ms, and its VmHWM). Then the client reads, and every one of the 300 MB
//! comes back in order (pattern byte i = i*31 mod 251), followed by EOF.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{self, Daemon, Pattern};

const TOTAL: u64 = 300 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 64 * 1024;
const CHUNK: usize = 256 * 1024;
/// The whole test gives up after this long.
const DEADLINE: Duration = Duration::from_secs(45);

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn writer_that_never_reads_is_held_back_and_rss_stays_bounded() {
    let _heavy = common::heavy();
    let mut d = Daemon::start(&[]);
    let pid = d.pid();
    let baseline = d.rss_kib();
    let started = Instant::now();
    let deadline = started + DEADLINE;

    // Sampler: the daemon's peak RSS while all of this happens.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        })
    };

    // Writer: timed writes (200 ms) so it can notice the deadline while TCP
    // flow control holds it back.
    let s = d.connect();
    let mut writer = s.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let w = {
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || -> Result<(), String> {
            let pattern = Pattern::new(CHUNK);
            let mut off = 0u64;
            while off < TOTAL {
                if Instant::now() > deadline {
                    return Err(format!("writer: deadline passed at {off} bytes"));
                }
                let n = CHUNK.min((TOTAL - off) as usize);
                match writer.write(pattern.at(off, n)) {
                    Ok(k) => {
                        off += k as u64;
                        sent.store(off, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(format!("writer: {e} at {off} bytes")),
                }
            }
            writer
                .shutdown(Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))
        })
    };

    // Phase 1: the client reads nothing; the writer must stall well short of
    // 300 MB (socket buffers plus the daemon's bounded queue), and stay stalled.
    let mut last = 0;
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(1500) {
        assert!(Instant::now() < deadline, "writer never stalled");
        std::thread::sleep(Duration::from_millis(50));
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    let stalled_at = sent.load(Ordering::Relaxed);
    assert!(
        stalled_at < 64 * 1024 * 1024,
        "flow control did not hold the writer back: {stalled_at} bytes taken without reading"
    );
    let peak_stalled = peak.load(Ordering::Relaxed);
    eprintln!(
        "writer stalled at {:.1} MB after {:?}; daemon RSS {} KiB (baseline {baseline} KiB)",
        stalled_at as f64 / 1e6,
        started.elapsed(),
        peak_stalled
    );

    // Phase 2: read everything back, in order, while the writer goes on.
    let mut s = s;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let pattern = Pattern::new(CHUNK);
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        assert!(
            Instant::now() < deadline,
            "reader: deadline passed at {got} bytes"
        );
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("read failed at byte {got}: {e}"),
        };
        if n == 0 {
            break;
        }
        if let Some(at) = pattern.mismatch(got, &buf[..n]) {
            panic!("echo differs from what was sent at byte {at}");
        }
        got += n as u64;
    }
    w.join()
        .expect("writer thread")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, TOTAL, "EOF before every byte came back");
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    // VmHWM is the kernel's own high-water mark: nothing slips between
    // samples, however few a busy machine let the sampler take.
    let hwm = common::proc_status_kib(pid, "VmHWM");
    eprintln!(
        "300 MB echoed in order in {:?}; peak daemon RSS {hwm} KiB ({peak} KiB over {samples} samples)",
        started.elapsed()
    );
    assert!(
        peak < RSS_LIMIT_KIB && hwm < RSS_LIMIT_KIB,
        "daemon RSS reached {hwm} KiB (sampled {peak} KiB; limit {RSS_LIMIT_KIB} KiB)"
    );
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "bytes_in"), TOTAL, "{stats}");
    assert_eq!(common::stat(&stats, "bytes_out"), TOTAL, "{stats}");
}
