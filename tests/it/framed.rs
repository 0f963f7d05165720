//! Framed mode (seeds 000/001) against the real binary: frames come back
//! verbatim however they are split, bad headers end the connection after the
//! good frames are flushed (a clean EOF, never a reset), and payloads stream
//! through without the daemon holding a frame or allocating from its header.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{
    self, frame, proc_status_kib, read_exact, read_to_clean_eof, stat, write_all, Daemon,
};

/// `len` bytes of xorshift noise: no structure for a buggy echo to get right
/// by accident.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts nothing arrives on `s` within `wait`, then restores the timeout.
fn assert_silent(s: &mut TcpStream, wait: Duration) {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected silence, got {other:?} ({byte:?})"),
    }
    s.set_read_timeout(Some(common::WAIT)).unwrap();
}

#[test]
fn several_frames_in_one_write_come_back_identical() {
    let mut d = Daemon::start(&["--mode", "framed"]);
    let payloads: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        Vec::new(),
        b"x".to_vec(),
        noise(1000, 1),
        noise(40_000, 2),
    ];
    let stream: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    let mut s = d.connect();
    write_all(&mut s, &stream);
    assert_eq!(read_exact(&mut s, stream.len()), stream);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_clean_eof(&mut s), b"", "nothing after the echoes");
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "frames"), payloads.len() as u64, "{stats}");
    assert_eq!(stat(&stats, "closed_peer_closed"), 1, "{stats}");
}

#[test]
fn frame_fed_one_byte_at_a_time_comes_back_and_streams() {
    let d = Daemon::start(&["--mode", "framed"]);
    let payload = b"one byte at a time, twice".to_vec();
    let wire = [frame(&payload), frame(b"again")].concat();
    let mut s = d.connect();
    s.set_nodelay(true).unwrap();
    for (i, byte) in wire.iter().enumerate() {
        s.write_all(&[*byte]).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        if i == 8 {
            // Nine header bytes: an incomplete header is held, never echoed.
            assert_silent(&mut s, Duration::from_millis(150));
        }
        if i == 12 {
            // Header plus three payload bytes: those come back before the
            // frame is complete (payload streams, it is not held whole).
            assert_eq!(read_exact(&mut s, 13), &wire[..13]);
        }
    }
    assert_eq!(read_exact(&mut s, wire.len() - 13), &wire[13..]);
}

#[test]
fn left_right_and_both_side_aligned_headers_are_accepted() {
    let d = Daemon::start(&["--mode", "framed"]);
    let wire: Vec<u8> = [
        &b"5         hello"[..], // the seeds' f"{len:<10}"
        b"         5world",      // right-aligned
        b"   3      abc",        // padded on both sides
        b"0000000002hi",         // leading zeros
        b"10        0123456789", // two digits, left
        b"        10abcdefghij", // two digits, right
    ]
    .concat();
    let mut s = d.connect();
    // One write and, separately, the same bytes split at every header.
    write_all(&mut s, &wire);
    assert_eq!(read_exact(&mut s, wire.len()), wire);
    for part in wire.chunks(7) {
        write_all(&mut s, part);
    }
    assert_eq!(read_exact(&mut s, wire.len()), wire);
}

#[test]
fn zero_length_frame_echoes_its_header_and_the_stream_goes_on() {
    let mut d = Daemon::start(&["--mode", "framed"]);
    let mut s = d.connect();
    write_all(&mut s, b"0         ");
    assert_eq!(read_exact(&mut s, 10), b"0         ");
    write_all(&mut s, b"         0");
    assert_eq!(read_exact(&mut s, 10), b"         0");
    write_all(&mut s, b"1         z");
    assert_eq!(read_exact(&mut s, 11), b"1         z");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_clean_eof(&mut s), b"");
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "frames"), 3, "{stats}");
}

/// The good frames, a header with a bad byte at index 4 (`12x...`), then
/// 1 MiB of bytes that would be valid frames had the stream not gone bad.
fn good_bad_garbage() -> (Vec<u8>, Vec<u8>, u64) {
    let good: Vec<u8> = [frame(b"first"), frame(&noise(3000, 7)), frame(b"")].concat();
    let bad_offset = good.len() as u64 + 2;
    let mut wire = good.clone();
    wire.extend_from_slice(b"12x4567890");
    let filler = frame(b"would be valid, must not come back");
    while wire.len() < good.len() + 10 + (1 << 20) {
        wire.extend_from_slice(&filler);
    }
    (good, wire, bad_offset)
}

#[test]
fn bad_header_after_good_frames_flushes_them_then_clean_eof() {
    let mut d = Daemon::start(&["--mode", "framed"]);
    let (good, wire, bad_offset) = good_bad_garbage();
    let mut s = d.connect();
    let peer = s.local_addr().unwrap();
    // Written from another thread, read concurrently: neither side can
    // stall the other, and the daemon must swallow the garbage it refuses.
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&wire));
    let echoed = read_to_clean_eof(&mut s);
    assert_eq!(echoed.len(), good.len(), "only the good frames come back");
    assert_eq!(echoed, good);
    writer
        .join()
        .unwrap()
        .expect("the daemon drains input after a bad header; the write completes");
    // Our FIN ends the daemon's drain: the connection closes as bad_frame.
    s.shutdown(Shutdown::Write).unwrap();
    let log = d.wait_for_log(&format!("close {peer} (bad_frame)"));
    let warn = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&peer.to_string()))
        .unwrap_or_else(|| panic!("no WARN naming {peer}:\n{log}"));
    assert!(
        warn.contains(&format!("invalid frame header at byte {bad_offset}"))
            && warn.contains("0x78 is not a digit or space"),
        "the WARN says why: {warn}"
    );
    drop(s);
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "frames"), 3, "{stats}");
    assert_eq!(stat(&stats, "closed_bad_frame"), 1, "{stats}");
}

/// The same, with a reader that only looks after the daemon has closed the
/// connection: its half-close and input drain mean no reset wipes the echoes.
#[test]
fn bad_header_echoes_survive_a_reader_that_comes_late() {
    let d = Daemon::start(&["--mode", "framed"]);
    let (good, wire, _) = good_bad_garbage();
    let mut s = d.connect();
    let peer = s.local_addr().unwrap();
    write_all(&mut s, &wire);
    s.shutdown(Shutdown::Write).unwrap();
    d.wait_for_log(&format!("close {peer} (bad_frame)"));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(read_to_clean_eof(&mut s), good);
}

#[test]
fn header_9999999999_closes_without_the_daemon_growing() {
    let mut d = Daemon::start(&["--mode", "framed"]);
    // Warm up: one ordinary frame, so lazily allocated buffers exist.
    let mut s = d.connect();
    write_all(&mut s, &frame(b"warm"));
    read_exact(&mut s, 14);
    drop(s);
    let before = d.rss_kib();
    let mut clients: Vec<TcpStream> = (0..10).map(|_| d.connect()).collect();
    for s in &mut clients {
        write_all(s, b"9999999999");
        write_all(s, &[b'A'; 4096]);
    }
    for s in &mut clients {
        assert_eq!(read_to_clean_eof(s), b"", "nothing is echoed, then EOF");
    }
    let after = d.rss_kib();
    drop(clients);
    assert!(
        after < before + 4096,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let log = d.wait_for_log("exceeds the limit of 16777216 bytes");
    assert!(log.contains("WARN"), "{log}");
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "closed_bad_frame"), 10, "{stats}");
}

/// With the limit at its ceiling the same header is valid: the daemon must
/// stream the payload, not reserve 10 GB for it.
#[test]
fn header_9999999999_under_max_frame_streams_without_allocating() {
    let d = Daemon::start(&["--mode", "framed", "--max-frame", "9999999999"]);
    let before = d.rss_kib();
    let mut s = d.connect();
    let chunk = noise(1 << 20, 3);
    let mut w = s.try_clone().unwrap();
    let sent = chunk.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(b"9999999999").unwrap();
        for _ in 0..8 {
            w.write_all(&sent).unwrap();
        }
    });
    assert_eq!(read_exact(&mut s, 10), b"9999999999");
    for i in 0..8 {
        assert_eq!(read_exact(&mut s, chunk.len()), chunk, "MiB {i}");
    }
    writer.join().unwrap();
    let after = d.rss_kib();
    assert!(
        after < before + 4096,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn fifty_megabyte_frame_streams_back_with_small_rss() {
    let _heavy = common::heavy();
    const LEN: usize = 50 * 1000 * 1000;
    const PEAK_LIMIT_KIB: u64 = 32 * 1024;
    let mut d = Daemon::start(&["--mode", "framed", "--max-frame", "64MiB"]);
    let wire = Arc::new(frame(&noise(LEN, 4)));
    let mut s = d.connect();
    let mut w = s.try_clone().unwrap();
    let sent = Arc::clone(&wire);
    let writer = std::thread::spawn(move || {
        for part in sent.chunks(256 * 1024) {
            w.write_all(part).unwrap();
        }
    });
    let expected = Arc::clone(&wire);
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut at = 0;
        while at < expected.len() {
            let n = s.read(&mut buf).expect("read the echo");
            assert!(n > 0, "EOF after {at} of {} bytes", expected.len());
            assert!(
                buf[..n] == expected[at..at + n],
                "echo differs within bytes {at}..{}",
                at + n
            );
            at += n;
        }
        at
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sampled_peak = 0;
    while !reader.is_finished() {
        sampled_peak = sampled_peak.max(d.rss_kib());
        assert!(Instant::now() < deadline, "50 MB did not come back in 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(reader.join().unwrap(), wire.len());
    writer.join().unwrap();
    // VmHWM is the kernel's own high-water mark: nothing slips between samples.
    let hwm = proc_status_kib(d.pid(), "VmHWM");
    assert!(
        sampled_peak < PEAK_LIMIT_KIB && hwm < PEAK_LIMIT_KIB,
        "RSS peaked at {hwm} KiB (sampled {sampled_peak} KiB) for a {LEN}-byte frame"
    );
    eprintln!("50 MB frame: daemon RSS peak {hwm} KiB (sampled {sampled_peak} KiB)");
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "frames"), 1, "{stats}");
}

#[test]
fn max_frame_100_passes_100_bytes_and_refuses_101() {
    let mut d = Daemon::start(&["--mode", "framed", "--max-frame", "100"]);
    let mut s = d.connect();
    let peer = s.local_addr().unwrap();
    let hundred = frame(&[b'h'; 100]);
    write_all(&mut s, &hundred);
    assert_eq!(read_exact(&mut s, hundred.len()), hundred);
    write_all(&mut s, &frame(&[b'o'; 101]));
    assert_eq!(
        read_to_clean_eof(&mut s),
        b"",
        "the 101-byte frame is refused"
    );
    s.shutdown(Shutdown::Write).unwrap();
    let log = d.wait_for_log(&format!("close {peer} (bad_frame)"));
    assert!(
        log.contains(&format!(
            "{peer}: closing: invalid frame header at byte 112"
        )) && log.contains("exceeds the limit of 100 bytes"),
        "{log}"
    );
    drop(s);
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "frames"), 1, "{stats}");
    assert_eq!(stat(&stats, "closed_bad_frame"), 1, "{stats}");
}

/// A peer that takes its EOF after a bad header but never closes its own
/// side, and sends nothing more, is closed by the daemon's linger (a quiet
/// spell, 2 s at most) even with no other traffic to wake the daemon.
/// Regression: a drain expired by the sweep waited for an unrelated wakeup,
/// which may never come here: the wait for the close line bounds that hang.
#[test]
fn linger_closes_a_silent_peer_without_other_traffic() {
    let mut d = Daemon::start(&["--mode", "framed"]);
    let mut s = d.connect();
    let peer = s.local_addr().unwrap();
    write_all(&mut s, b"bad header");
    assert_eq!(read_to_clean_eof(&mut s), b"");
    d.wait_for_log(&format!("close {peer} ("));
    let stats = d.stop_and_stats();
    assert_eq!(
        stat(&stats, "closed_bad_frame") + stat(&stats, "closed_drain_timeout"),
        1,
        "{stats}"
    );
    drop(s);
}
