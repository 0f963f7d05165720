//! UDP echo (seed 002) against the real binary: datagrams come back whole,
//! and the reflection guard (CVE-2024-2169) drops, counts and never answers
//! datagrams from privileged ports or from echod's own UDP port.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::common::{stat, Daemon};

/// How long "no answer" is waited for.
const SILENCE: Duration = Duration::from_millis(500);

/// A client socket on `bind` with a read timeout.
fn client(bind: &str) -> UdpSocket {
    let s = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Sends `payload` to `to` and returns the reply, asserting it came from `to`.
fn round_trip(s: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    assert_eq!(s.send_to(payload, to).unwrap(), payload.len());
    let mut buf = vec![0u8; 65_536];
    let (n, from) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no reply to {} bytes: {e}", payload.len()));
    assert_eq!(from, to, "the reply comes from the address we sent to");
    buf.truncate(n);
    buf
}

/// Asserts no datagram arrives on `s` within [`SILENCE`].
fn assert_no_reply(s: &UdpSocket) {
    s.set_read_timeout(Some(SILENCE)).unwrap();
    let mut buf = vec![0u8; 65_536];
    match s.recv_from(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected no reply, got {other:?}"),
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 256) as u8).collect()
}

#[test]
fn datagrams_of_1_1400_and_65000_bytes_come_back_identical() {
    let mut d = Daemon::start(&["--udp", "127.0.0.1:0"]);
    let s = client("127.0.0.1:0");
    for len in [1, 1400, 65_000] {
        let sent = payload(len);
        assert!(round_trip(&s, d.udp_addr(), &sent) == sent, "{len} bytes");
    }
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "datagrams_in"), 3, "{stats}");
    assert_eq!(stat(&stats, "datagrams_out"), 3, "{stats}");
    assert_eq!(stat(&stats, "udp_dropped"), 0, "{stats}");
}

#[test]
fn ipv6_datagrams_come_back_identical() {
    if let Err(e) = UdpSocket::bind("[::1]:0") {
        eprintln!("SKIPPED: cannot bind [::1]:0 ({e}): no IPv6 loopback here");
        return;
    }
    let mut d = Daemon::start(&["--udp", "[::1]:0"]);
    assert!(d.udp_addr().is_ipv6(), "{}", d.udp_addr());
    let s = client("[::1]:0");
    for len in [1, 1400, 65_000] {
        let sent = payload(len);
        assert!(round_trip(&s, d.udp_addr(), &sent) == sent, "{len} bytes");
    }
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "datagrams_out"), 3, "{stats}");
}

#[test]
fn datagram_from_a_privileged_port_gets_no_answer() {
    // Binding below 1024 needs root (or CAP_NET_BIND_SERVICE).
    let mut low = None;
    for port in 1000..1010 {
        match UdpSocket::bind(("127.0.0.1", port)) {
            Ok(s) => {
                low = Some(s);
                break;
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                eprintln!("SKIPPED: cannot bind a port below 1024 ({e}); run as root");
                return;
            }
            Err(_) => continue, // in use: try the next
        }
    }
    let low = low.expect("a free port in 1000..1010");
    let mut d = Daemon::start(&["--udp", "127.0.0.1:0"]);
    low.send_to(b"from a well-known port", d.udp_addr())
        .unwrap();
    assert_no_reply(&low);
    // The daemon is alive and still answers an ordinary client.
    let s = client("127.0.0.1:0");
    assert_eq!(round_trip(&s, d.udp_addr(), b"ordinary"), b"ordinary");
    let log = d.wait_for_log("privileged_port");
    assert!(
        log.contains(&format!(
            "dropped datagram from {}",
            low.local_addr().unwrap()
        )),
        "{log}"
    );
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "udp_dropped_privileged_port"), 1, "{stats}");
    assert_eq!(stat(&stats, "datagrams_in"), 2, "{stats}");
    assert_eq!(stat(&stats, "datagrams_out"), 1, "{stats}");
}

/// Another echo service on echod's own port must not be answered (the two
/// would echo at each other forever). echod listens on 127.0.0.2:P and the
/// "other service" is a socket on 127.0.0.1:P: same port, another address.
#[test]
fn datagram_from_echods_own_port_gets_no_answer() {
    let twin = client("127.0.0.1:0");
    let port = twin.local_addr().unwrap().port();
    let own = format!("127.0.0.2:{port}");
    let mut d = Daemon::start(&["--udp", &own]);
    assert_eq!(d.udp_addr().port(), port);
    twin.send_to(b"from your own port", d.udp_addr()).unwrap();
    assert_no_reply(&twin);
    let s = client("127.0.0.1:0");
    assert_eq!(round_trip(&s, d.udp_addr(), b"ordinary"), b"ordinary");
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "udp_dropped_own_port"), 1, "{stats}");
    assert_eq!(stat(&stats, "udp_dropped"), 1, "{stats}");
    assert_eq!(stat(&stats, "datagrams_out"), 1, "{stats}");
}

/// The own-port rule holds for every UDP socket echod has, not just the one
/// the datagram arrived on: a datagram to the first socket from the second
/// socket's port is dropped too.
#[test]
fn datagram_from_another_of_echods_ports_gets_no_answer() {
    let twin = client("127.0.0.1:0");
    let port = twin.local_addr().unwrap().port();
    let second = format!("127.0.0.2:{port}");
    let mut d = Daemon::start(&["--udp", "127.0.0.1:0", "--udp", &second]);
    let first = *d
        .udp
        .iter()
        .find(|a| a.port() != port)
        .expect("two sockets");
    twin.send_to(b"from your other port", first).unwrap();
    assert_no_reply(&twin);
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "udp_dropped_own_port"), 1, "{stats}");
    assert_eq!(stat(&stats, "datagrams_out"), 0, "{stats}");
}

/// Two echods on the same high port (A on 127.0.0.1:P, B on 127.0.0.2:P)
/// cannot be made to echo at each other: a datagram to A that claims to come
/// from B's address is dropped by A (its source port is A's own), so B never
/// sees a reply. B runs two workers, so its port is an SO_REUSEPORT group
/// that this test (same user) can join to send "as B" without spoofing.
#[test]
fn two_echods_on_the_same_port_cannot_loop() {
    use socket2::{Domain, Protocol, Socket, Type};
    // A takes a free port itself (no port found free, released and bound
    // again, which anything could take in between); B takes the same port
    // on another address.
    let mut a = Daemon::start(&["--udp", "127.0.0.1:0"]);
    let b_addr = format!("127.0.0.2:{}", a.udp_addr().port());
    let mut b = Daemon::start(&["--workers", "2", "--udp", &b_addr]);
    let as_b = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    as_b.set_reuse_port(true).unwrap();
    let b_sock: SocketAddr = b_addr.parse().unwrap();
    as_b.bind(&b_sock.into())
        .expect("join B's SO_REUSEPORT group");
    let as_b: UdpSocket = as_b.into();
    as_b.send_to(b"start a loop", a.udp_addr()).unwrap();
    assert_no_reply(&as_b);
    let a_stats = a.stop_and_stats();
    let b_stats = b.stop_and_stats();
    assert_eq!(stat(&a_stats, "udp_dropped_own_port"), 1, "A: {a_stats}");
    assert_eq!(stat(&a_stats, "datagrams_out"), 0, "A: {a_stats}");
    assert_eq!(stat(&b_stats, "datagrams_in"), 0, "B: {b_stats}");
}

/// A datagram that says who sent it and its place in that sender's stream:
/// peer, sequence, then a pattern of both, `len` bytes in all (at least 4).
fn tagged(peer: u8, seq: u16, len: usize) -> Vec<u8> {
    let mut d = vec![peer, 0, 0, 0];
    d[1..3].copy_from_slice(&seq.to_be_bytes());
    d.extend((4..len).map(|i| (i as u8) ^ peer.wrapping_mul(37) ^ (seq as u8)));
    d.truncate(len.max(4));
    d
}

/// Sends `plan` (peer index, datagram) in that order while the daemon is
/// stopped, so its queue holds them all and it reads them in full batches
/// (the plan must fit the default 208 KiB receive buffer, overhead included),
/// then checks every peer gets its own datagrams back, each a datagram of
/// its own, byte for byte and in order.
fn burst_while_stopped(d: &Daemon, peers: &[UdpSocket], plan: &[(usize, Vec<u8>)]) {
    d.signal(libc::SIGSTOP);
    for (p, datagram) in plan {
        assert_eq!(
            peers[*p].send_to(datagram, d.udp_addr()).unwrap(),
            datagram.len()
        );
    }
    d.signal(libc::SIGCONT);
    let mut buf = vec![0u8; 65_536];
    for (p, s) in peers.iter().enumerate() {
        for (i, (_, want)) in plan.iter().filter(|(q, _)| *q == p).enumerate() {
            let (n, from) = s
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("peer {p}: reply {i} missing: {e}"));
            assert_eq!(from, d.udp_addr());
            assert_eq!(
                n,
                want.len(),
                "peer {p}: reply {i} is a datagram of its own"
            );
            assert!(buf[..n] == want[..], "peer {p}: reply {i} byte for byte");
        }
    }
}

/// Replies to one peer leave as one GSO send where they can: interleaved
/// bursts from several peers come back to each peer as separate datagrams,
/// in the order that peer sent them, every byte as sent.
#[test]
fn interleaved_bursts_from_several_peers_come_back_separate_and_in_order() {
    let mut d = Daemon::start(&["--udp", "127.0.0.1:0"]);
    let peers: Vec<UdpSocket> = (0..5).map(|_| client("127.0.0.1:0")).collect();
    let mut plan = Vec::new();
    for seq in 0..24u16 {
        for p in 0..peers.len() {
            // Peer 4 sends every third round only: runs of one peer are
            // broken up differently in every batch.
            if p == 4 && seq % 3 != 0 {
                continue;
            }
            plan.push((p, tagged(p as u8, seq, 64 + p * 100)));
        }
    }
    burst_while_stopped(&d, &peers, &plan);
    let stats = d.stop_and_stats();
    let n = plan.len() as u64;
    assert_eq!(stat(&stats, "datagrams_in"), n, "{stats}");
    assert_eq!(stat(&stats, "datagrams_out"), n, "{stats}");
    assert_eq!(stat(&stats, "udp_reply_dropped"), 0, "{stats}");
}

/// A batch that mixes lengths for one peer (shorter ones that end a GSO
/// group, longer ones that start another, empty and 65,000-byte datagrams
/// that never join one) comes back exactly as sent.
#[test]
fn mixed_lengths_in_one_batch_come_back_exactly() {
    let mut d = Daemon::start(&["--udp", "127.0.0.1:0"]);
    let peers = [client("127.0.0.1:0"), client("127.0.0.1:0")];
    let lens = [
        100, 100, 100, 40, 100, 7, 7, 1_452, 1_452, 1_453, 1_453, 0, 1, 65_000, 65_000, 64, 64, 63,
    ];
    let mut plan = Vec::new();
    for (seq, &len) in lens.iter().enumerate() {
        let datagram = if len < 4 {
            vec![seq as u8; len]
        } else {
            tagged(0, seq as u16, len)
        };
        plan.push((0, datagram));
        if seq % 4 == 0 {
            plan.push((1, tagged(1, seq as u16, 100)));
        }
    }
    burst_while_stopped(&d, &peers, &plan);
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "datagrams_out"), plan.len() as u64, "{stats}");
}
