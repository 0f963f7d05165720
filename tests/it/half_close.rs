//! Half-close (RFC 862 over TCP, `printf 'hi\n' | nc -N`): after the peer's
//! FIN, everything already received is echoed, then the daemon closes.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{self, Daemon, Pattern};

#[test]
fn small_write_then_fin_echoes_everything_then_eof() {
    let mut d = Daemon::start(&[]);
    let mut s = d.connect();
    let msg = b"hello, half-closed world\nsecond line\n";
    s.write_all(msg).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let back = common::read_to_end(&mut s);
    assert_eq!(back, msg);
    // And the EOF is final: the daemon closed its side.
    let mut one = [0u8; 1];
    assert_eq!(s.read(&mut one).unwrap(), 0);
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "closed_peer_closed"), 1, "{stats}");
}

/// Nothing is owed, so the daemon closes its side too: an EOF, within the
/// stream's read timeout (a bound on hangs, not a measure of speed).
#[test]
fn fin_without_data_is_answered_with_eof() {
    let d = Daemon::start(&[]);
    let mut s = d.connect();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(common::read_to_end(&mut s), b"");
}

/// 5 MB and the FIN are all sent before the client reads a single byte: the
/// daemon must keep the FIN in mind while its queue is full and paused, then
/// echo everything and close.
#[test]
fn big_payload_then_fin_before_reading_comes_back_whole() {
    let _heavy = common::heavy();
    const TOTAL: usize = 5 * 1024 * 1024;
    let mut d = Daemon::start(&[]);
    let s = d.connect();
    let mut writer = s.try_clone().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let started = Instant::now();
    let w = std::thread::spawn(move || {
        let pattern = Pattern::new(64 * 1024);
        let mut sent = 0u64;
        while (sent as usize) < TOTAL {
            let n = (64 * 1024).min(TOTAL - sent as usize);
            writer.write_all(pattern.at(sent, n)).expect("write");
            sent += n as u64;
        }
        writer.shutdown(Shutdown::Write).expect("shutdown");
        let _ = done_tx.send(started.elapsed());
    });
    // Nothing is read until the writer has sent all and its FIN. The kernel
    // buffers (both directions, both ends) plus the daemon's 1 MiB queue hold
    // 5 MB on loopback; if they did not, the writer would block here.
    let sent_in = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("writer could not send 5 MB + FIN without the client reading");
    w.join().unwrap();
    let mut s = s;
    let pattern = Pattern::new(64 * 1024);
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        if let Some(at) = pattern.mismatch(got, &buf[..n]) {
            panic!("echo differs at byte {at}");
        }
        got += n as u64;
    }
    assert_eq!(got as usize, TOTAL, "echo truncated");
    eprintln!(
        "5 MB + FIN sent in {sent_in:?}, all echoed then EOF after {:?}",
        started.elapsed()
    );
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "bytes_out"), TOTAL as u64, "{stats}");
    assert_eq!(common::stat(&stats, "closed_peer_closed"), 1, "{stats}");
}
