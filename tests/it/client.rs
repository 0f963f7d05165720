//! echod-client against the real echod: 1 MB round trips over TCP, a unix
//! socket and UDP (also with the seeds' `recv(7)`), framed lines, and the
//! exit statuses for refused connections, bad addresses and idle timeouts.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::common::{self, Bounded as Output, Daemon};

/// Upper bound for one client run.
const CLIENT_LIMIT: Duration = Duration::from_secs(20);

/// Runs echod-client with `args`, feeding `input` on stdin (then EOF), and
/// collects its output; panics if it runs longer than [`CLIENT_LIMIT`].
fn client(args: &[&str], input: Vec<u8>) -> Output {
    client_with_stdin(args, Some(input), CLIENT_LIMIT)
}

/// As [`client`]; `None` keeps stdin open (no EOF) for the whole run.
fn client_with_stdin(args: &[&str], input: Option<Vec<u8>>, limit: Duration) -> Output {
    let mut cmd = Command::new(common::tool("echod-client"));
    cmd.args(args);
    common::run_bounded(&mut cmd, input, limit)
}

/// 1 MB of bytes that are not a repeating short pattern.
fn megabyte() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// 1 MB as text lines (UDP and framed modes are line-based).
fn megabyte_of_lines() -> Vec<u8> {
    let mut text = Vec::new();
    let mut i = 0u64;
    while text.len() < 1 << 20 {
        writeln!(
            text,
            "line {i:06}: the quick brown fox jumps over the lazy dog {}",
            i * 7919
        )
        .unwrap();
        i += 1;
    }
    text
}

fn assert_same(out: &Output, input: &[u8]) {
    assert!(out.status.success(), "exit {}: {}", out.status, out.stderr);
    assert_eq!(
        out.stdout.len(),
        input.len(),
        "length differs; stderr: {}",
        out.stderr
    );
    assert!(out.stdout == input, "content differs");
}

#[test]
fn one_megabyte_round_trips_over_tcp() {
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let data = megabyte();
    assert_same(&client(&[&addr], data.clone()), &data);
}

#[test]
fn one_megabyte_round_trips_with_recv_size_7() {
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    let data = megabyte();
    assert_same(&client(&["--recv-size", "7", &addr], data.clone()), &data);
}

#[test]
fn one_megabyte_round_trips_over_a_unix_socket() {
    let (_d, target) = Daemon::start_unix("client", &[]);
    let data = megabyte();
    assert_same(&client(&[&target], data.clone()), &data);
    assert_same(&client(&["--recv-size", "7", &target], data.clone()), &data);
}

#[test]
fn one_megabyte_of_lines_round_trips_over_udp() {
    let d = Daemon::start(&["--udp", "127.0.0.1:0"]);
    let addr = d.udp_addr().to_string();
    let lines = megabyte_of_lines();
    assert_same(&client(&["--udp", &addr], lines.clone()), &lines);
    // --recv-size is for streams; datagrams are still read whole.
    assert_same(
        &client(&["--udp", "--recv-size", "7", &addr], lines.clone()),
        &lines,
    );
}

#[test]
fn framed_lines_come_back_as_lines() {
    let d = Daemon::start(&["--mode", "framed"]);
    let addr = d.addr().to_string();
    let input = b"hello\n\nsecond line with spaces\nno newline at the end".to_vec();
    let out = client(&["--framed", &addr], input);
    assert!(out.status.success(), "exit {}: {}", out.status, out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\n\nsecond line with spaces\nno newline at the end\n"
    );
    let lines = megabyte_of_lines();
    let out = client(&["--framed", "--recv-size", "7", &addr], lines.clone());
    assert_same(&out, &lines);
}

#[test]
fn refused_connection_is_one_line_and_exit_3() {
    let refusing = common::Refusing::new();
    let addr = refusing.addr();
    let out = client(&[addr], b"hi\n".to_vec());
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    assert_eq!(
        out.stderr.trim_end(),
        format!("echod-client: connection refused: {addr}")
    );
}

#[test]
fn bad_address_exits_2() {
    for args in [
        &["not-an-address"][..],
        &["--udp", "unix:/tmp/x.sock"],
        &["--recv-size", "0", "127.0.0.1:1"],
    ] {
        let out = client(args, Vec::new());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn idle_timeout_exits_5() {
    let d = Daemon::start(&[]);
    let addr = d.addr().to_string();
    // Stdin stays open and the daemon says nothing: only the client's own
    // timeout can end the run before the bound.
    let out = client_with_stdin(&["--timeout", "0.3", &addr], None, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    assert!(out.stderr.contains("idle timeout"), "{}", out.stderr);
}

#[test]
fn server_reset_exits_4() {
    // A server that accepts, reads a little, and resets (SO_LINGER 0).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 16];
            let _ = s.read(&mut buf);
            let sock = socket2::SockRef::from(&s);
            let _ = sock.set_linger(Some(Duration::ZERO));
        }
    });
    let out = client(&[&addr], b"hello\n".to_vec());
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    assert!(out.stderr.contains("connection reset"), "{}", out.stderr);
}

#[test]
fn bad_frames_from_the_server_exit_6_after_what_came_before() {
    // A server that sends one good frame, then `tail`, then closes. Payload
    // bytes stream out as they come, so a cut frame's first bytes are printed.
    for (tail, stdout, why) in [
        (
            &b"12x       "[..],
            &b"ok\n"[..],
            "invalid frame header at byte 14: byte 0x78",
        ),
        (
            b"5         he",
            b"ok\nhe",
            "closed in the middle of a frame",
        ),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.write_all(b"2         ok");
                let _ = s.write_all(tail);
            }
        });
        let out = client(&["--framed", "--recv-size", "7", &addr], Vec::new());
        assert_eq!(out.status.code(), Some(6), "{}", out.stderr);
        assert_eq!(out.stdout, stdout, "{why}");
        assert!(out.stderr.contains("protocol error from"), "{}", out.stderr);
        assert!(out.stderr.contains(why), "{}", out.stderr);
    }
}
