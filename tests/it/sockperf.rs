//! `--mode sockperf` against the real sockperf client (Debian's sockperf
//! 3.7): ping-pong and under-load, over TCP and UDP, must report
//! observations, which a plain byte echo never gets ("No messages were
//! received from the server"). Lengths the protocol cannot follow end a TCP
//! connection (closed_bad_frame) and drop a datagram (udp_dropped_bad_message).

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use crate::common::{self, run_bounded, stat, Daemon};

/// Runs `sockperf MODE ... -t 1` against `port`; returns its output. sockperf
/// exits 0 even when it measured nothing, so the output is what is checked.
fn sockperf(args: &[&str], port: u16) -> String {
    let port = port.to_string();
    let mut cmd = Command::new("sockperf");
    cmd.args(args)
        .args(["-i", "127.0.0.1", "-p", &port, "-t", "1"]);
    let out = run_bounded(&mut cmd, None, Duration::from_secs(20));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), out.stderr)
}

fn assert_measured(output: &str, what: &str) {
    assert!(
        !output.contains("No messages were received") && output.contains("observation"),
        "{what}: sockperf measured nothing:\n{output}"
    );
}

#[test]
fn sockperf_measures_echod_over_tcp_and_udp() {
    if !common::require_tool_from("sockperf", "sockperf") {
        return;
    }
    let mut d = Daemon::start(&["--mode", "sockperf", "--udp", "127.0.0.1:0"]);
    let (tcp, udp) = (d.addr().port(), d.udp_addr().port());
    assert_measured(&sockperf(&["ping-pong", "--tcp"], tcp), "TCP ping-pong");
    assert_measured(&sockperf(&["ping-pong"], udp), "UDP ping-pong");
    assert_measured(
        &sockperf(&["ping-pong", "--tcp", "--data-integrity"], tcp),
        "TCP ping-pong with data integrity",
    );
    assert_measured(
        &sockperf(&["under-load", "--tcp", "--mps", "2000"], tcp),
        "TCP under-load",
    );
    assert_measured(
        &sockperf(&["under-load", "--mps", "2000"], udp),
        "UDP under-load",
    );
    let stats = d.stop_and_stats();
    assert!(stat(&stats, "frames") > 0, "messages counted: {stats}");
    assert_eq!(stat(&stats, "udp_dropped_bad_message"), 0, "{stats}");
}

/// A 14-byte header: sequence, flags, total length.
fn header(seq: u64, flags: u16, len: u32) -> Vec<u8> {
    let mut h = seq.to_be_bytes().to_vec();
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

#[test]
fn lengths_sockperf_cannot_follow_end_the_connection_or_drop_the_datagram() {
    let mut d = Daemon::start(&[
        "--mode",
        "sockperf",
        "--udp",
        "127.0.0.1:0",
        "--max-frame",
        "1000",
    ]);
    // A good pong request first, split byte by byte, then a length of 5.
    let mut s = d.connect();
    let mut good = header(7, 3, 17);
    good.extend_from_slice(b"abc");
    for b in &good {
        s.write_all(&[*b]).unwrap();
    }
    let mut back = vec![0u8; 17];
    s.read_exact(&mut back).unwrap();
    let mut expected = header(7, 2, 17);
    expected.extend_from_slice(b"abc");
    assert_eq!(back, expected, "the reply has the client flag cleared");
    s.write_all(&header(8, 3, 5)).unwrap();
    assert_eq!(
        common::read_to_clean_eof(&mut s),
        Vec::<u8>::new(),
        "closed after a length below the header"
    );
    // UDP: a datagram longer than --max-frame is dropped and counted; a
    // good one is answered.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut long = header(1, 3, 1014);
    long.resize(1014, 0);
    u.send_to(&long, d.udp_addr()).unwrap();
    u.send_to(&header(2, 3, 14), d.udp_addr()).unwrap();
    let mut buf = [0u8; 2048];
    let n = u.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &header(2, 2, 14)[..]);
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "closed_bad_frame"), 1, "{stats}");
    assert_eq!(stat(&stats, "udp_dropped_bad_message"), 1, "{stats}");
    assert!(!d.log_lines_with(&["sockperf message length 5"]).is_empty());
}

/// `sockperf server` on a port from `common::draw_port` (sockperf takes no
/// descriptor, so a port is drawn, and drawn again if sockperf cannot bind it), serving TCP and UDP
/// through a feed file with epoll. Killed on drop.
struct SockperfServer {
    child: std::process::Child,
    port: u16,
    _feed: std::path::PathBuf,
}

impl SockperfServer {
    fn start() -> SockperfServer {
        for attempt in 0..10 {
            let port = common::draw_port();
            let feed = std::env::temp_dir().join(format!(
                "echod-sockperf-{}-{attempt}.feed",
                std::process::id()
            ));
            std::fs::write(&feed, format!("T:127.0.0.1:{port}\nU:127.0.0.1:{port}\n")).unwrap();
            let mut child = Command::new("sockperf")
                .args(["server", "-f"])
                .arg(&feed)
                .args(["-F", "epoll"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn sockperf server");
            let up = common::wait_until(Duration::from_secs(5), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up && child.try_wait().ok().flatten().is_none() {
                return SockperfServer {
                    child,
                    port,
                    _feed: feed,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&feed);
        }
        panic!("sockperf server did not start on any port tried");
    }
}

impl Drop for SockperfServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self._feed);
    }
}

#[test]
fn echod_bench_drives_sockperf_server_and_echod_with_every_reply_verified() {
    use crate::load_generator::{assert_clean, bench_with, num};
    if !common::require_tool_from("sockperf", "sockperf") {
        return;
    }
    let server = SockperfServer::start();
    let target = format!("127.0.0.1:{}", server.port);
    for udp in [false, true] {
        let mut args = vec![target.as_str(), "--proto", "sockperf", "-c", "4", "-d", "1"];
        if udp {
            args.push("--udp");
        }
        let (status, r, stderr) = bench_with(&args, Duration::from_secs(30), |_| {});
        assert_clean(status, &r, &stderr, 4.0);
        assert_eq!(r["proto"], "sockperf", "{r}");
        assert!(num(&r, "messages") > 0.0, "udp={udp}: {r}");
    }
    // The same client against echod's own sockperf mode.
    let d = Daemon::start(&["--mode", "sockperf"]);
    let addr = d.addr().to_string();
    let (status, r, stderr) = bench_with(
        &[&addr, "--proto", "sockperf", "-c", "4", "-n", "2000"],
        Duration::from_secs(30),
        |_| {},
    );
    assert_clean(status, &r, &stderr, 4.0);
}
