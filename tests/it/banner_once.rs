//! `--banner`, `--banner-file` and `--once` in both modes (seeds 000-003):
//! the banner comes first (one frame in framed mode), and `--once` ends the
//! connection after one exchange with a clean EOF, whatever the client does.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;

use crate::common::{frame, read_exact, read_to_clean_eof, stat, write_all, Daemon};

/// A banner file removed when the test ends.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("echod-test-{tag}-{}.banner", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn banner_comes_first_then_echo_works() {
    let d = Daemon::start(&["--banner", "hello"]);
    let mut s = d.connect();
    assert_eq!(read_exact(&mut s, 5), b"hello");
    write_all(&mut s, b"abc");
    assert_eq!(read_exact(&mut s, 3), b"abc");
    write_all(&mut s, b"and more");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_clean_eof(&mut s), b"and more");
}

#[test]
fn banner_with_once_sends_it_then_closes_a_silent_client() {
    let mut d = Daemon::start(&["--banner", "hello", "--once"]);
    for _ in 0..3 {
        let mut s = d.connect();
        assert_eq!(read_to_clean_eof(&mut s), b"hello");
        // The daemon is waiting for our EOF (input drain); give it.
        s.shutdown(Shutdown::Write).unwrap();
    }
    let mut s = d.connect();
    let peer = s.local_addr().unwrap();
    assert_eq!(read_to_clean_eof(&mut s), b"hello");
    drop(s);
    d.wait_for_log(&format!("close {peer} (once)"));
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "closed_once"), 4, "{stats}");
    assert_eq!(stat(&stats, "bytes_out"), 20, "{stats}");
}

/// A client that sends a lot before it reads: the banner still arrives
/// whole, nothing of its input is echoed, and the close is an EOF, not a
/// reset that would wipe the banner from its receive buffer.
#[test]
fn banner_with_once_reaches_a_client_that_sends_lots() {
    let d = Daemon::start(&["--banner", "hello", "--once"]);
    let lots = vec![b'z'; 1 << 20];

    // Sends 1 MiB, half-closes, then reads.
    let mut s = d.connect();
    write_all(&mut s, &lots);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_clean_eof(&mut s), b"hello");

    // Sends 1 MiB from another thread while reading.
    let mut s = d.connect();
    let mut w = s.try_clone().unwrap();
    let sent = lots.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent));
    assert_eq!(read_to_clean_eof(&mut s), b"hello");
    writer
        .join()
        .unwrap()
        .expect("the daemon drains input after the banner; the write completes");
    s.shutdown(Shutdown::Write).unwrap();

    // Sends 1 MiB, keeps its side open and reads only after a pause in
    // which the daemon has flushed the banner, half-closed and drained.
    let mut s = d.connect();
    write_all(&mut s, &lots);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(read_to_clean_eof(&mut s), b"hello");
}

/// A reader slower than the drain linger (2 s) in total, but always making
/// progress, still gets the whole banner before the close.
#[test]
fn banner_with_once_is_flushed_whole_to_a_slow_reader() {
    let banner: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let file = TempFile::new("slow-reader", &banner);
    let d = Daemon::start(&["--banner-file", file.path(), "--once"]);
    let mut s = d.connect();
    let started = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).expect("a clean read, never a reset");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        got == banner,
        "got {} of {} banner bytes",
        got.len(),
        banner.len()
    );
    eprintln!("slow reader took {:?}", started.elapsed());
}

#[test]
fn framed_banner_is_one_frame() {
    let mut d = Daemon::start(&["--mode", "framed", "--banner", "hi"]);
    let mut s = d.connect();
    assert_eq!(read_exact(&mut s, 12), b"2         hi");
    let echo = frame(b"then framed echo");
    write_all(&mut s, &echo);
    assert_eq!(read_exact(&mut s, echo.len()), echo);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_clean_eof(&mut s), b"");
    let stats = d.stop_and_stats();
    assert_eq!(
        stat(&stats, "frames"),
        1,
        "only the client's frame: {stats}"
    );
}

#[test]
fn framed_banner_file_with_once_sends_one_frame_then_closes() {
    // Binary content, as a pickle is: every byte value, and a header-like prefix.
    let mut contents = b"99        ".to_vec();
    contents.extend(0..=255u8);
    let file = TempFile::new("framed-once", &contents);
    let mut d = Daemon::start(&["--mode", "framed", "--banner-file", file.path(), "--once"]);
    let mut s = d.connect();
    assert_eq!(read_to_clean_eof(&mut s), frame(&contents));
    s.shutdown(Shutdown::Write).unwrap();

    // A client that sends a frame of its own first gets the banner only.
    let mut s = d.connect();
    write_all(&mut s, &frame(b"not echoed"));
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_clean_eof(&mut s), frame(&contents));
    drop(s);
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "closed_once"), 2, "{stats}");
}

#[test]
fn once_in_echo_mode_answers_the_first_read_then_closes() {
    let mut d = Daemon::start(&["--once"]);
    let mut s = d.connect();
    write_all(&mut s, b"abc");
    assert_eq!(read_to_clean_eof(&mut s), b"abc");
    s.shutdown(Shutdown::Write).unwrap();
    let peer = s.local_addr().unwrap();
    d.wait_for_log(&format!("close {peer} (once)"));
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "closed_once"), 1, "{stats}");
}

#[test]
fn once_in_framed_mode_answers_the_first_frame_only() {
    let mut d = Daemon::start(&["--mode", "framed", "--once"]);
    let first = frame(b"first");
    let second = frame(b"second");

    // Both frames in one write.
    let mut s = d.connect();
    write_all(&mut s, &[first.clone(), second.clone()].concat());
    assert_eq!(read_to_clean_eof(&mut s), first);
    s.shutdown(Shutdown::Write).unwrap();

    // The first frame split across writes: the close waits for all of it.
    let mut s = d.connect();
    s.set_nodelay(true).unwrap();
    write_all(&mut s, &first[..12]);
    std::thread::sleep(std::time::Duration::from_millis(50));
    write_all(&mut s, &[&first[12..], &second[..]].concat());
    assert_eq!(read_to_clean_eof(&mut s), first);
    s.shutdown(Shutdown::Write).unwrap();
    drop(s);

    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "frames"), 2, "one per connection: {stats}");
    assert_eq!(stat(&stats, "closed_once"), 2, "{stats}");
}
