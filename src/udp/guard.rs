//! Which UDP datagrams echod may answer: a guard against reflection loops.
//!
//! A UDP echo server answers whoever the source address says sent the
//! datagram, and that address is trivially spoofed. Spoof the source as
//! another echo (or chargen, daytime, ...) service and the two servers echo
//! at each other forever: the echo/chargen reflection loop, known since the
//! 1990s and revived as CVE-2024-2169 ("loop DoS"). Spoof a multicast or
//! broadcast source and the reply fans out. So, like the classic inetds,
//! echod drops (and counts, never answers) datagrams whose source is:
//!
//! - a port below 1024, port 0 included: where the well-known services live
//!   (xinetd's rule for its internal UDP services);
//! - one of echod's own UDP ports: another echod, or this one (FreeBSD inetd
//!   drops datagrams from its own service port);
//! - an unspecified address (`0.0.0.0`, `::`), which no real sender has;
//! - a multicast address (IPv4 `224.0.0.0/4`, IPv6 `ff00::/8`);
//! - the limited broadcast address `255.255.255.255`.
//!
//! IPv4-mapped IPv6 sources (`::ffff:a.b.c.d`, what a dual-stack socket
//! reports for IPv4 peers) are judged as their IPv4 address, so a dual-stack
//! listener cannot be used to slip a multicast or broadcast source past the
//! IPv4 rules. Subnet-directed broadcasts (`x.y.z.255`) cannot be recognised
//! without knowing the interfaces' netmasks and are not checked here.
//!
//! The check is a pure function of the source address and the port list: no
//! I/O, no state, no allocation.

use std::net::{IpAddr, SocketAddr};

use crate::stats::DropReason;

/// Source ports below this are privileged (the well-known services); a
/// datagram from one is never answered.
const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

/// Decides whether echod may answer a datagram from `src`.
///
/// `own_udp_ports` are the ports of every UDP socket echod has bound (any
/// order, duplicates allowed, may be empty). Returns the first matching
/// [`DropReason`] in the order of [`DropReason::ALL`], or `Ok(())` when the
/// reply may be sent. IPv4-mapped IPv6 addresses are judged as IPv4.
pub fn check_source(src: SocketAddr, own_udp_ports: &[u16]) -> Result<(), DropReason> {
    let port = src.port();
    if port < FIRST_UNPRIVILEGED_PORT {
        return Err(DropReason::PrivilegedPort);
    }
    if own_udp_ports.contains(&port) {
        return Err(DropReason::OwnPort);
    }
    let ip = match src.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if ip.is_unspecified() {
        return Err(DropReason::Unspecified);
    }
    if ip.is_multicast() {
        return Err(DropReason::Multicast);
    }
    if let IpAddr::V4(v4) = ip {
        if v4.is_broadcast() {
            return Err(DropReason::Broadcast);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(a), port))
    }

    fn v6(s: &str, port: u16) -> SocketAddr {
        let ip: Ipv6Addr = s.parse().expect("test address");
        SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))
    }

    /// The same IPv4 address as a native v4 and as a v4-mapped v6 source.
    fn both(a: [u8; 4], port: u16) -> [SocketAddr; 2] {
        let mapped = Ipv4Addr::from(a).to_ipv6_mapped();
        [
            v4(a, port),
            SocketAddr::V6(SocketAddrV6::new(mapped, port, 0, 0)),
        ]
    }

    #[test]
    fn loopback_high_port_is_answered() {
        for src in both([127, 0, 0, 1], 40000) {
            assert_eq!(check_source(src, &[]), Ok(()), "{src}");
            assert_eq!(check_source(src, &[7, 12345]), Ok(()), "{src}");
        }
        assert_eq!(check_source(v6("::1", 40000), &[12345]), Ok(()));
    }

    #[test]
    fn ordinary_sources_are_answered() {
        for src in [
            v4([192, 168, 1, 20], 5005),
            v4([10, 0, 0, 255], 65535),
            v4([223, 255, 255, 255], 2000),
            v4([240, 0, 0, 1], 2000),
            v4([255, 255, 255, 254], 2000),
            v6("2001:db8::1", 1024),
            v6("fe80::1", 50000),
            v6("feff::1", 50000),
            v6("::2", 50000),
        ] {
            assert_eq!(check_source(src, &[12345]), Ok(()), "{src}");
        }
    }

    #[test]
    fn privileged_port_boundary_1023_dropped_1024_answered() {
        for port in [0, 1, 7, 19, 53, 123, 1023] {
            for src in both([127, 0, 0, 1], port) {
                assert_eq!(
                    check_source(src, &[]),
                    Err(DropReason::PrivilegedPort),
                    "{src}"
                );
            }
            assert_eq!(
                check_source(v6("::1", port), &[]),
                Err(DropReason::PrivilegedPort)
            );
        }
        for src in both([127, 0, 0, 1], 1024) {
            assert_eq!(check_source(src, &[]), Ok(()), "{src}");
        }
        assert_eq!(check_source(v6("2001:db8::1", 1024), &[]), Ok(()));
    }

    #[test]
    fn own_port_list_empty_one_several() {
        let src = v4([127, 0, 0, 1], 12345);
        assert_eq!(check_source(src, &[]), Ok(()));
        assert_eq!(check_source(src, &[12345]), Err(DropReason::OwnPort));
        assert_eq!(check_source(src, &[12346]), Ok(()));
        assert_eq!(
            check_source(src, &[5000, 6000, 12345, 7000]),
            Err(DropReason::OwnPort)
        );
        assert_eq!(check_source(src, &[5000, 6000, 7000]), Ok(()));
        assert_eq!(check_source(src, &[12345, 12345]), Err(DropReason::OwnPort));
        for src in both([10, 1, 2, 3], 65535) {
            assert_eq!(check_source(src, &[65535]), Err(DropReason::OwnPort));
        }
        assert_eq!(
            check_source(v6("2001:db8::7", 40000), &[1, 40000]),
            Err(DropReason::OwnPort)
        );
    }

    #[test]
    fn own_privileged_port_reports_privileged_first() {
        let src = v4([127, 0, 0, 1], 7);
        assert_eq!(check_source(src, &[7]), Err(DropReason::PrivilegedPort));
    }

    #[test]
    fn unspecified_sources() {
        for src in both([0, 0, 0, 0], 40000) {
            assert_eq!(
                check_source(src, &[]),
                Err(DropReason::Unspecified),
                "{src}"
            );
        }
        assert_eq!(
            check_source(v6("::", 40000), &[]),
            Err(DropReason::Unspecified)
        );
        // Only the exact address: 0.0.0.1 is not unspecified.
        assert_eq!(check_source(v4([0, 0, 0, 1], 40000), &[]), Ok(()));
    }

    #[test]
    fn multicast_sources_v4_range_boundaries() {
        for a in [
            [224, 0, 0, 0],
            [224, 0, 0, 1],
            [239, 255, 255, 250],
            [239, 255, 255, 255],
        ] {
            for src in both(a, 40000) {
                assert_eq!(check_source(src, &[]), Err(DropReason::Multicast), "{src}");
            }
        }
        for a in [[223, 255, 255, 255], [240, 0, 0, 0]] {
            for src in both(a, 40000) {
                assert_eq!(check_source(src, &[]), Ok(()), "{src}");
            }
        }
    }

    #[test]
    fn multicast_sources_v6() {
        for s in [
            "ff00::",
            "ff02::1",
            "ff05::1:3",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert_eq!(
                check_source(v6(s, 40000), &[]),
                Err(DropReason::Multicast),
                "{s}"
            );
        }
        assert_eq!(check_source(v6("feff::1", 40000), &[]), Ok(()));
    }

    #[test]
    fn broadcast_source() {
        for src in both([255, 255, 255, 255], 40000) {
            assert_eq!(check_source(src, &[]), Err(DropReason::Broadcast), "{src}");
        }
        // The v6 address with the same bits is not v4-mapped: not broadcast.
        assert_eq!(
            check_source(v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 40000), &[]),
            Err(DropReason::Multicast)
        );
    }

    #[test]
    fn mapped_addresses_are_judged_as_ipv4() {
        assert_eq!(
            check_source(v6("::ffff:224.0.0.1", 5000), &[]),
            Err(DropReason::Multicast)
        );
        assert_eq!(
            check_source(v6("::ffff:255.255.255.255", 5000), &[]),
            Err(DropReason::Broadcast)
        );
        assert_eq!(
            check_source(v6("::ffff:0.0.0.0", 5000), &[]),
            Err(DropReason::Unspecified)
        );
        assert_eq!(check_source(v6("::ffff:127.0.0.1", 5000), &[]), Ok(()));
    }

    #[test]
    fn port_rules_come_before_address_rules() {
        assert_eq!(
            check_source(v4([255, 255, 255, 255], 19), &[]),
            Err(DropReason::PrivilegedPort)
        );
        assert_eq!(
            check_source(v4([224, 0, 0, 1], 5000), &[5000]),
            Err(DropReason::OwnPort)
        );
        assert_eq!(
            check_source(v6("::", 0), &[0]),
            Err(DropReason::PrivilegedPort)
        );
    }

    #[test]
    fn every_reason_is_reachable_and_named_uniquely() {
        let cases = [
            (v4([127, 0, 0, 1], 7), DropReason::PrivilegedPort),
            (v4([127, 0, 0, 1], 12345), DropReason::OwnPort),
            (v4([0, 0, 0, 0], 40000), DropReason::Unspecified),
            (v4([224, 0, 0, 1], 40000), DropReason::Multicast),
            (v4([255, 255, 255, 255], 40000), DropReason::Broadcast),
        ];
        for (i, (src, reason)) in cases.iter().enumerate() {
            assert_eq!(check_source(*src, &[12345]), Err(*reason));
            assert_eq!(DropReason::ALL[i], *reason, "ALL is in check order");
        }
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "discriminant is the index in ALL");
        }
        let names: HashSet<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        assert_eq!(
            DropReason::ALL.map(DropReason::name),
            [
                "privileged_port",
                "own_port",
                "unspecified_source",
                "multicast_source",
                "broadcast_source",
                "bad_message"
            ]
        );
    }

    #[test]
    fn every_port_of_a_normal_source_v4_and_mapped() {
        // Exhaustive over ports: the only rules that depend on the port.
        let own = [20000, 40000];
        for port in 0..=u16::MAX {
            let expected = if port < 1024 {
                Err(DropReason::PrivilegedPort)
            } else if own.contains(&port) {
                Err(DropReason::OwnPort)
            } else {
                Ok(())
            };
            for src in both([192, 0, 2, 1], port) {
                assert_eq!(check_source(src, &own), expected, "{src}");
            }
        }
    }
}
