//! `--proxy-protocol` and `--proxy-from`: a PROXY header (v1 or v2) before
//! the first byte of echo, its client named in the logs; missing, malformed,
//! late and untrusted headers closed, counted and logged at warn with the
//! socket's peer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::common::{connect, read_exact, stat, wait_closed, Daemon, Ended, WAIT};
use echod_common::proxy::testing::{v1, v2, v2_unix};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// A TLV block: ALPN "h2" and a NOOP with three bytes (skipped).
const TLVS: &[u8] = &[0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x03, 1, 2, 3];

/// Sends `header` one byte per write (with a pause, so each is its own
/// read), then `data` in one write, and expects `data` echoed.
fn bytewise_then_echo(s: &mut TcpStream, header: &[u8], data: &[u8]) {
    s.set_nodelay(true).unwrap();
    for b in header {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    s.write_all(data).unwrap();
    assert_eq!(read_exact(s, data.len()), data);
}

/// Sends `header` and `data` in one write: the data after the header in the
/// same packet is echoed, the header never.
fn together_then_echo(s: &mut (impl Read + Write), header: &[u8], data: &[u8]) {
    s.write_all(&[header, data].concat()).unwrap();
    assert_eq!(read_exact(s, data.len()), data);
}

#[test]
fn every_header_kind_is_consumed_and_the_rest_echoed() {
    let mut d = Daemon::start(&["--proxy-protocol"]);
    let c4 = addr("192.0.2.10:40001");
    let c6 = addr("[2001:db8::10]:40002");
    let v2c4 = addr("192.0.2.20:40003");
    let v2c6 = addr("[2001:db8::20]:40004");
    let server4 = addr("198.51.100.1:7");
    let server6 = addr("[2001:db8::1]:7");

    let cases: Vec<(&str, Vec<u8>, Option<SocketAddr>, bool)> = vec![
        ("v1 TCP4", v1(Some((c4, server4))), Some(c4), true),
        ("v1 TCP6", v1(Some((c6, server6))), Some(c6), false),
        ("v1 UNKNOWN", v1(None), None, true),
        (
            "v2 TCP4",
            v2(Some((v2c4, server4)), TLVS),
            Some(v2c4),
            false,
        ),
        ("v2 TCP6", v2(Some((v2c6, server6)), TLVS), Some(v2c6), true),
        ("v2 LOCAL", v2(None, TLVS), None, false),
        (
            "v2 unix",
            v2_unix(b"/run/client", b"/run/echod", TLVS),
            None,
            true,
        ),
    ];
    for (name, header, client, bytewise) in cases {
        let mut s = connect(d.addr());
        let local = s.local_addr().unwrap();
        let data = format!("{name} says hello\n").into_bytes();
        if bytewise {
            bytewise_then_echo(&mut s, &header, &data);
        } else {
            together_then_echo(&mut s, &header, &data);
        }
        // And the connection goes on echoing.
        together_then_echo(&mut s, b"", b"more");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(wait_closed(&mut s, WAIT), Ended::Eof(0), "{name}");
        // The close line names the header's client (LOCAL, UNKNOWN: the
        // socket's peer; unix: "unix peer").
        let named = match (client, name) {
            (Some(c), _) => c.to_string(),
            (None, "v2 unix") => "unix peer".to_string(),
            (None, _) => local.to_string(),
        };
        d.wait_for_log(&format!("close {named} (peer_closed)"));
        assert!(
            d.log().contains(&format!("open {named} (PROXY header)")),
            "{name}: {}",
            d.log()
        );
    }
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "accepted"), 7);
    assert_eq!(stat(&stats, "closed_peer_closed"), 7);
    assert_eq!(stat(&stats, "closed_proxy_header"), 0);
    // The headers are neither echoed nor counted as the client's bytes.
    assert_eq!(stat(&stats, "bytes_in"), stat(&stats, "bytes_out"));
}

#[test]
fn a_unix_listener_takes_a_header_too_and_the_banner_follows_it() {
    let (mut d, _) = Daemon::start_unix("proxy", &["--proxy-protocol", "--banner", "hi\n"]);
    let mut s = UnixStream::connect(d.unix_path()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let client = addr("203.0.113.5:5555");
    // No banner before the header: the proxy would pass it to nobody.
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut early = [0u8; 8];
    assert!(s.read(&mut early).is_err(), "something before the header");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&v2(Some((client, addr("203.0.113.1:7"))), TLVS))
        .unwrap();
    assert_eq!(read_exact(&mut s, 3), b"hi\n");
    together_then_echo(&mut s, b"", b"ping");
    drop(s);
    d.wait_for_log(&format!("close {client} (peer_closed)"));
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "closed_peer_closed"), 1);
}

/// Connects, sends `bytes`, and expects the connection closed, counted as
/// `reason`, with a warn line naming the socket's peer and saying `why`.
fn rejected(args: &[&str], bytes: &[u8], reason: &str, why: &str, within: Duration) {
    let mut d = Daemon::start(args);
    let mut s = connect(d.addr());
    let local = s.local_addr().unwrap();
    let _ = s.write_all(bytes);
    let start = Instant::now();
    let ended = wait_closed(&mut s, within + Duration::from_secs(2));
    assert!(
        matches!(ended, Ended::Eof(0) | Ended::Reset(0)),
        "{reason}: {ended:?}"
    );
    assert!(start.elapsed() >= within, "{reason}: closed too soon");
    let line = d.wait_for_log(&format!("closing {local}: {why}"));
    assert!(
        line.lines()
            .any(|l| l.contains(&format!("closing {local}")) && l.contains("WARN")),
        "{reason}: not at warn:\n{line}"
    );
    d.wait_for_log(&format!("close {local} ({reason})"));
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "accepted"), 1, "{stats}");
    assert_eq!(stat(&stats, &format!("closed_{reason}")), 1, "{stats}");
    assert_eq!(
        stat(&stats, "bytes_out"),
        0,
        "{reason}: something was echoed"
    );
}

#[test]
fn a_missing_header_is_closed_counted_and_logged() {
    rejected(
        &["--proxy-protocol"],
        b"hello, no header\n",
        "proxy_header",
        "no PROXY protocol header",
        Duration::ZERO,
    );
}

#[test]
fn a_malformed_header_is_closed_counted_and_logged() {
    rejected(
        &["--proxy-protocol"],
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\nhello",
        "proxy_header",
        "malformed PROXY v1 header",
        Duration::ZERO,
    );
}

#[test]
fn a_header_cut_short_by_eof_is_a_missing_one() {
    let mut d = Daemon::start(&["--proxy-protocol"]);
    let mut s = connect(d.addr());
    let local = s.local_addr().unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.1").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(matches!(
        wait_closed(&mut s, WAIT),
        Ended::Eof(0) | Ended::Reset(0)
    ));
    d.wait_for_log(&format!(
        "closing {local}: end of stream before a complete PROXY"
    ));
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "closed_proxy_header"), 1, "{stats}");
}

/// The contract's 5 s: this test takes about that long.
#[test]
fn a_late_header_is_closed_after_five_seconds() {
    rejected(
        &["--proxy-protocol"],
        b"PROXY TCP4 ",
        "proxy_timeout",
        "no complete PROXY protocol header within 5s",
        Duration::from_secs(5),
    );
}

#[test]
fn a_source_outside_proxy_from_is_closed_at_accept() {
    rejected(
        &[
            "--proxy-protocol",
            "--proxy-from",
            "10.0.0.0/8",
            "--proxy-from",
            "fd00::/8",
        ],
        &v1(Some((addr("192.0.2.1:1"), addr("192.0.2.2:2")))),
        "proxy_untrusted",
        "not in --proxy-from",
        Duration::ZERO,
    );
}

#[test]
fn a_source_inside_proxy_from_is_served() {
    let mut d = Daemon::start(&["--proxy-protocol", "--proxy-from", "127.0.0.0/8"]);
    let mut s = connect(d.addr());
    together_then_echo(&mut s, &v1(None), b"trusted");
    drop(s);
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "closed_proxy_untrusted"), 0, "{stats}");
    assert_eq!(stat(&stats, "bytes_out"), 7, "{stats}");
}

#[test]
fn without_the_flag_a_header_is_just_data() {
    let d = Daemon::start(&[]);
    let mut s = connect(d.addr());
    let header = v1(None);
    together_then_echo(&mut s, b"", &header);
}

#[test]
fn proxy_from_without_proxy_protocol_is_a_usage_error() {
    let out = crate::common::run_echod(&["--proxy-from", "10.0.0.0/8"], WAIT);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
}
