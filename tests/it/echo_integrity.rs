//! Echo integrity: 20 MB of random bytes, written in random chunks of 1 B to
//! 64 KiB by one thread while another reads concurrently in chunks of other
//! random sizes, come back identical (FNV-1a hash and length compared), over
//! TCP and over a unix socket. Then the writer half-closes and the reader sees
//! EOF right after the last byte.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::common::{self, Daemon, Fnv, Rng, WAIT};

const TOTAL: usize = 20 * 1024 * 1024;
const MAX_CHUNK: usize = 64 * 1024;

/// Writes TOTAL random bytes in random chunk sizes; returns their hash.
fn write_random(mut w: impl Write, seed: u64, shutdown: impl FnOnce()) -> u64 {
    let mut rng = Rng::new(seed);
    let mut hash = Fnv::default();
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut sent = 0;
    while sent < TOTAL {
        let n = rng.range(1, MAX_CHUNK).min(TOTAL - sent);
        rng.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).expect("write");
        hash.update(&buf[..n]);
        sent += n;
    }
    w.flush().expect("flush");
    shutdown();
    hash.0
}

/// Reads until EOF in random read sizes; returns (bytes, hash).
fn read_all(mut r: impl Read, seed: u64) -> (usize, u64) {
    let mut rng = Rng::new(seed);
    let mut hash = Fnv::default();
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut got = 0;
    loop {
        let want = rng.range(1, MAX_CHUNK);
        match r.read(&mut buf[..want]) {
            Ok(0) => return (got, hash.0),
            Ok(n) => {
                hash.update(&buf[..n]);
                got += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {got} of {TOTAL} bytes: {e}"),
        }
    }
}

/// Runs writer and reader concurrently and compares what they saw.
fn check_stream<R, W>(reader: R, writer: W, shutdown: impl FnOnce() + Send, seed: u64)
where
    R: Read + Send,
    W: Write + Send,
{
    let started = Instant::now();
    let (sent_hash, (got, got_hash)) = std::thread::scope(|s| {
        let r = s.spawn(move || read_all(reader, seed ^ 0x5eed));
        let sent_hash = write_random(writer, seed, shutdown);
        (sent_hash, r.join().expect("reader thread"))
    });
    assert_eq!(got, TOTAL, "byte count differs");
    assert_eq!(
        got_hash, sent_hash,
        "hash of the echoed stream differs from what was sent"
    );
    eprintln!("20 MB echoed intact in {:?}", started.elapsed());
}

#[test]
fn random_chunks_tcp_come_back_identical() {
    let _heavy = common::heavy();
    let mut d = Daemon::start(&[]);
    let s = d.connect();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let reader = s.try_clone().unwrap();
    let shut = s.try_clone().unwrap();
    check_stream(
        reader,
        s,
        move || shut.shutdown(Shutdown::Write).expect("shutdown"),
        0x1234_5678,
    );
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "bytes_in"), TOTAL as u64, "{stats}");
    assert_eq!(common::stat(&stats, "bytes_out"), TOTAL as u64, "{stats}");
    assert_eq!(common::stat(&stats, "closed_peer_closed"), 1, "{stats}");
}

#[test]
fn random_chunks_unix_come_back_identical() {
    let _heavy = common::heavy();
    let path = common::temp_socket_path("integrity");
    let listen = format!("unix:{}", path.display());
    let mut d = Daemon::start(&["--listen", &listen]);
    let s = UnixStream::connect(d.unix_path()).expect("connect unix");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    let reader = s.try_clone().unwrap();
    let shut = s.try_clone().unwrap();
    check_stream(
        reader,
        s,
        move || shut.shutdown(Shutdown::Write).expect("shutdown"),
        0xfeed_beef,
    );
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "bytes_out"), TOTAL as u64, "{stats}");
    // The daemon removes its own socket file on exit.
    assert!(
        common::wait_until(Duration::from_secs(2), || !path.exists()),
        "{} left behind",
        path.display()
    );
}
