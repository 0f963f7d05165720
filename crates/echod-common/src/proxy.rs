//! The PROXY protocol (HAProxy's `send-proxy` / `send-proxy-v2`), receiving
//! side: a streaming, sans-I/O parser of the one header a proxy sends before
//! the client's first byte.
//!
//! [`ProxyParser::feed`] takes whatever a read brought and answers
//! [`Parsed::Incomplete`] (all of it was header; feed more),
//! [`Parsed::Done`] (the header ended after `consumed` bytes of this input;
//! the rest is the client's data) or [`Parsed::Error`]. A header may arrive
//! split across any number of reads; the answer is the same for any split.
//!
//! Memory is bounded whatever the header announces: a v1 line is held whole
//! (at most [`V1_MAX`] bytes, the spec's limit), a v2 header holds its
//! 16-byte fixed part and an inet address block (at most 36 bytes); unix
//! addresses and TLVs are counted off as they stream past, never buffered,
//! so a v2 header announcing 64 KiB of TLVs costs no more than one without.
//! Nothing allocates; nothing panics on any input (fuzzed:
//! `fuzz/fuzz_targets/proxy.rs`).
//!
//! Written here rather than taken from `ppp` or `proxy-header`: both parse a
//! header that is already whole in one buffer, so a v2 header with TLVs
//! would have to be held (up to 64 KiB) before parsing, and a partial one
//! re-parsed from the start at every read. What echod needs (addresses,
//! LOCAL/UNKNOWN, TLVs skipped) is this one small state machine.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 header, `\r\n` included (the spec's figure, for
/// `PROXY UNKNOWN` followed by two full IPv6 addresses and ports).
pub const V1_MAX: usize = 107;

/// The v2 signature: the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The v1 prefix.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The v2 fixed part: signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;

/// The largest address block held: TCP6 (two addresses, two ports).
const V2_INET6_BLOCK: usize = 36;

/// Bytes held at most: a whole v1 line, or v2's fixed part plus an inet
/// address block (the smaller).
const HOLD: usize = V1_MAX;

/// The client a header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A TCP or UDP client over IPv4 or IPv6.
    Inet(SocketAddr),
    /// A unix-socket client (v2 `AF_UNIX`); its path is not kept.
    Unix,
}

/// What a header is wrong about, by name. The offset is not kept: a peer
/// that sends a wrong header is closed either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The first bytes are neither `PROXY ` nor the v2 signature: no header.
    Missing,
    /// A v1 line longer than [`V1_MAX`] bytes.
    V1TooLong,
    /// A v1 line that does not follow the grammar (protocol, addresses,
    /// ports, single spaces, `\r\n`).
    V1Syntax,
    /// A v2 version other than 2.
    V2Version,
    /// A v2 command other than LOCAL (0) or PROXY (1).
    V2Command,
    /// A v2 address family or transport protocol the spec does not define.
    V2Family,
    /// A v2 length too short for the address block its family needs.
    V2Length,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyError::Missing => "no PROXY protocol header",
            ProxyError::V1TooLong => "PROXY v1 header longer than 107 bytes",
            ProxyError::V1Syntax => "malformed PROXY v1 header",
            ProxyError::V2Version => "PROXY v2 header with an unknown version",
            ProxyError::V2Command => "PROXY v2 header with an unknown command",
            ProxyError::V2Family => "PROXY v2 header with an unknown address family",
            ProxyError::V2Length => "PROXY v2 header too short for its addresses",
        })
    }
}

impl std::error::Error for ProxyError {}

/// What [`ProxyParser::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Everything given was header (held or skipped): feed the next read.
    Incomplete,
    /// The header ended after `consumed` bytes of the input just fed; what
    /// follows them is the client's data. `source` is the client it names,
    /// or `None` for a v2 LOCAL, a v1 UNKNOWN or a v2 `AF_UNSPEC` header
    /// (health checks: the connection's own peer is the client).
    Done {
        consumed: usize,
        source: Option<Source>,
    },
    /// Not a valid header. Sticky: feeding more returns it again.
    Error(ProxyError),
}

/// Where the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Holding the first bytes: `PROXY ` or the v2 signature, not yet told apart.
    Start,
    /// Holding a v1 line up to its `\n`.
    V1,
    /// Holding v2's fixed part.
    V2Fixed,
    /// Holding `hold` bytes in all (fixed part and the inet address block,
    /// if any), then skipping `skip` more (unix addresses, TLVs).
    V2Body {
        hold: usize,
        skip: usize,
        kind: V2Kind,
    },
    Done(Option<Source>),
    Failed(ProxyError),
}

/// What a v2 header's address block holds, as far as echod cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V2Kind {
    /// LOCAL, or PROXY with `AF_UNSPEC`: keep the connection's own peer.
    NoSource,
    Inet4,
    Inet6,
    Unix,
}

/// The streaming parser of one PROXY protocol header (v1 or v2): at most
/// 160 bytes; echod holds one per connection only until its header is done.
#[derive(Clone)]
pub struct ProxyParser {
    buf: [u8; HOLD],
    held: u8,
    state: State,
}

impl fmt::Debug for ProxyParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyParser")
            .field("held", &self.held)
            .field("state", &self.state)
            .finish()
    }
}

impl Default for ProxyParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyParser {
    /// A parser that has seen nothing.
    pub const fn new() -> Self {
        ProxyParser {
            buf: [0; HOLD],
            held: 0,
            state: State::Start,
        }
    }

    /// Feeds the bytes of one read. See [`Parsed`]. After `Done` or
    /// `Error`, feeding more returns the same answer (with `consumed: 0`).
    pub fn feed(&mut self, input: &[u8]) -> Parsed {
        let mut pos = 0;
        loop {
            match self.state {
                State::Done(source) => {
                    return Parsed::Done {
                        consumed: pos,
                        source,
                    }
                }
                State::Failed(e) => return Parsed::Error(e),
                // Checked before running out of input: a body may be empty.
                State::V2Body { hold, skip, kind } => {
                    pos += self.hold_up_to(hold, &input[pos..]);
                    let skipped = skip.min(input.len() - pos);
                    pos += skipped;
                    let skip = skip - skipped;
                    if usize::from(self.held) < hold || skip > 0 {
                        // The input ran out first.
                        self.state = State::V2Body { hold, skip, kind };
                        return Parsed::Incomplete;
                    }
                    self.state = State::Done(v2_source(kind, &self.buf[V2_FIXED..hold]));
                }
                _ if pos == input.len() => return Parsed::Incomplete,
                State::Start => {
                    let held = usize::from(self.held);
                    let byte = input[pos];
                    let next = match self.buf[0] {
                        _ if held == 0 => byte,
                        first => first,
                    };
                    let expect = match next {
                        b'P' => V1_PREFIX,
                        b'\r' => &V2_SIGNATURE[..],
                        _ => {
                            self.state = State::Failed(ProxyError::Missing);
                            continue;
                        }
                    };
                    if expect[held] != byte {
                        self.state = State::Failed(ProxyError::Missing);
                        continue;
                    }
                    self.hold(byte);
                    pos += 1;
                    if usize::from(self.held) == expect.len() {
                        self.state = if next == b'P' {
                            State::V1
                        } else {
                            State::V2Fixed
                        };
                    }
                }
                State::V1 => {
                    let rest = &input[pos..];
                    let room = V1_MAX - usize::from(self.held);
                    let window = &rest[..rest.len().min(room)];
                    match window.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            self.hold_all(&window[..=i]);
                            pos += i + 1;
                            self.state = match parse_v1(&self.buf[..usize::from(self.held)]) {
                                Ok(source) => State::Done(source),
                                Err(e) => State::Failed(e),
                            };
                        }
                        None if window.len() == room => {
                            self.state = State::Failed(ProxyError::V1TooLong);
                        }
                        None => {
                            self.hold_all(window);
                            pos += window.len();
                        }
                    }
                }
                State::V2Fixed => {
                    pos += self.hold_up_to(V2_FIXED, &input[pos..]);
                    if usize::from(self.held) == V2_FIXED {
                        self.state = match v2_body(&self.buf[..V2_FIXED]) {
                            Ok(body) => body,
                            Err(e) => State::Failed(e),
                        };
                    }
                }
            }
        }
    }

    /// Holds one byte (the caller keeps within [`HOLD`]).
    fn hold(&mut self, byte: u8) {
        self.hold_all(&[byte]);
    }

    /// Holds `bytes` (the caller keeps within [`HOLD`]).
    fn hold_all(&mut self, bytes: &[u8]) {
        let held = usize::from(self.held);
        let end = (held + bytes.len()).min(HOLD);
        self.buf[held..end].copy_from_slice(&bytes[..end - held]);
        self.held = end as u8;
    }

    /// Holds bytes of `input` until `target` are held; returns how many it took.
    fn hold_up_to(&mut self, target: usize, input: &[u8]) -> usize {
        let take = target
            .saturating_sub(usize::from(self.held))
            .min(input.len());
        self.hold_all(&input[..take]);
        take
    }
}

/// What follows a v2 fixed part: how much to hold and skip, and what for.
fn v2_body(fixed: &[u8]) -> Result<State, ProxyError> {
    let (ver_cmd, fam, len) = match fixed {
        [.., ver_cmd, fam, hi, lo] => (*ver_cmd, *fam, usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => return Err(ProxyError::V2Length),
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2Version);
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::V2Command),
    };
    // High nibble: AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX; low: UNSPEC,
    // STREAM, DGRAM. Anything else "must be rejected as invalid".
    let (kind, block) = match fam {
        0x00 => (V2Kind::NoSource, 0),
        0x11 | 0x12 => (V2Kind::Inet4, 12),
        0x21 | 0x22 => (V2Kind::Inet6, V2_INET6_BLOCK),
        0x31 | 0x32 => (V2Kind::Unix, 216),
        _ if local => (V2Kind::NoSource, 0),
        _ => return Err(ProxyError::V2Family),
    };
    if local {
        // LOCAL: the address block, whatever it holds, is ignored.
        return Ok(State::V2Body {
            hold: V2_FIXED,
            skip: len,
            kind: V2Kind::NoSource,
        });
    }
    if len < block {
        return Err(ProxyError::V2Length);
    }
    let held = match kind {
        V2Kind::Inet4 | V2Kind::Inet6 => block,
        V2Kind::NoSource | V2Kind::Unix => 0,
    };
    Ok(State::V2Body {
        hold: V2_FIXED + held,
        skip: len - held,
        kind,
    })
}

/// The client named by a v2 address block (`block` is what was held of it).
fn v2_source(kind: V2Kind, block: &[u8]) -> Option<Source> {
    match (kind, block) {
        (V2Kind::Inet4, [s @ .., _, _, _, _, p0, p1, _, _]) => {
            let ip: [u8; 4] = s.try_into().ok()?;
            let port = u16::from_be_bytes([*p0, *p1]);
            Some(Source::Inet(SocketAddr::new(
                Ipv4Addr::from(ip).into(),
                port,
            )))
        }
        (V2Kind::Inet6, _) if block.len() == V2_INET6_BLOCK => {
            let ip: [u8; 16] = block[..16].try_into().ok()?;
            let port = u16::from_be_bytes([block[32], block[33]]);
            Some(Source::Inet(SocketAddr::new(
                Ipv6Addr::from(ip).into(),
                port,
            )))
        }
        (V2Kind::Unix, _) => Some(Source::Unix),
        _ => None,
    }
}

/// A whole v1 line, `\n` included: `PROXY TCP4|TCP6 src dst sport dport\r\n`
/// or `PROXY UNKNOWN[ anything]\r\n`.
fn parse_v1(line: &[u8]) -> Result<Option<Source>, ProxyError> {
    let body = line
        .strip_prefix(V1_PREFIX)
        .and_then(|l| l.strip_suffix(b"\r\n"))
        .ok_or(ProxyError::V1Syntax)?;
    if body == b"UNKNOWN" || body.starts_with(b"UNKNOWN ") {
        return Ok(None);
    }
    let text = std::str::from_utf8(body).map_err(|_| ProxyError::V1Syntax)?;
    let mut fields = text.split(' ');
    let mut field = || fields.next().ok_or(ProxyError::V1Syntax);
    let (proto, src, dst, sport, dport) = (field()?, field()?, field()?, field()?, field()?);
    if fields.next().is_some() {
        return Err(ProxyError::V1Syntax);
    }
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (ipv4(src)?.into(), ipv4(dst)?.into()),
        "TCP6" => (ipv6(src)?.into(), ipv6(dst)?.into()),
        _ => return Err(ProxyError::V1Syntax),
    };
    let _ = (dst, port(dport)?);
    Ok(Some(Source::Inet(SocketAddr::new(src, port(sport)?))))
}

fn ipv4(s: &str) -> Result<Ipv4Addr, ProxyError> {
    s.parse().map_err(|_| ProxyError::V1Syntax)
}

fn ipv6(s: &str) -> Result<Ipv6Addr, ProxyError> {
    s.parse().map_err(|_| ProxyError::V1Syntax)
}

/// A port: 1 to 5 ASCII digits, at most 65535 (no sign, no spaces).
fn port(s: &str) -> Result<u16, ProxyError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyError::V1Syntax);
    }
    s.parse().map_err(|_| ProxyError::V1Syntax)
}

/// Test and fuzz helpers: headers as a proxy would send them, and a feeder
/// that checks the parser's contract along the way.
#[doc(hidden)]
pub mod testing {
    use super::{Parsed, ProxyParser, V2_SIGNATURE};
    use std::net::SocketAddr;

    /// Feeds `stream` cut at `bounds` (sorted, within it), as reads would
    /// bring it, asserting that `consumed` stays within each piece and that
    /// `Done` and `Error` are sticky. Returns the outcome, with `consumed`
    /// zeroed (it depends on the cut), and the bytes after the header.
    pub fn feed_split(stream: &[u8], bounds: &[usize]) -> (Parsed, Vec<u8>) {
        let mut parser = ProxyParser::new();
        let mut last = Parsed::Incomplete;
        let mut data = Vec::new();
        let mut start = 0;
        for end in bounds.iter().copied().chain(std::iter::once(stream.len())) {
            let piece = &stream[start..end];
            start = end;
            match last {
                Parsed::Incomplete => {
                    last = parser.feed(piece);
                    match last {
                        Parsed::Done { consumed, .. } => {
                            assert!(consumed <= piece.len());
                            data.extend_from_slice(&piece[consumed..]);
                            let again = parser.feed(piece);
                            assert!(matches!(again, Parsed::Done { consumed: 0, .. }));
                        }
                        Parsed::Error(e) => assert_eq!(parser.feed(piece), Parsed::Error(e)),
                        Parsed::Incomplete => {}
                    }
                }
                Parsed::Done { .. } => data.extend_from_slice(piece),
                Parsed::Error(_) => break,
            }
        }
        let normal = match last {
            Parsed::Done { source, .. } => Parsed::Done {
                consumed: 0,
                source,
            },
            other => other,
        };
        (normal, data)
    }

    /// A v1 header for `src` -> `dst` (same family), or `UNKNOWN` if `None`.
    pub fn v1(addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
        match addrs {
            Some((s, d)) => {
                let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
                format!(
                    "PROXY {proto} {} {} {} {}\r\n",
                    s.ip(),
                    d.ip(),
                    s.port(),
                    d.port()
                )
                .into_bytes()
            }
            None => b"PROXY UNKNOWN\r\n".to_vec(),
        }
    }

    /// A v2 PROXY header for `src` -> `dst` (same family) with `tlv` bytes
    /// after the addresses, or a LOCAL one (with `tlv` as its block) if `None`.
    pub fn v2(addrs: Option<(SocketAddr, SocketAddr)>, tlv: &[u8]) -> Vec<u8> {
        let mut block = Vec::new();
        let (cmd, fam) = match addrs {
            Some((SocketAddr::V4(s), SocketAddr::V4(d))) => {
                block.extend_from_slice(&s.ip().octets());
                block.extend_from_slice(&d.ip().octets());
                block.extend_from_slice(&s.port().to_be_bytes());
                block.extend_from_slice(&d.port().to_be_bytes());
                (0x21, 0x11)
            }
            Some((s, d)) => {
                let v6 = |a: SocketAddr| match a {
                    SocketAddr::V6(a) => a.ip().octets(),
                    SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
                };
                block.extend_from_slice(&v6(s));
                block.extend_from_slice(&v6(d));
                block.extend_from_slice(&s.port().to_be_bytes());
                block.extend_from_slice(&d.port().to_be_bytes());
                (0x21, 0x21)
            }
            None => (0x20, 0x00),
        };
        block.extend_from_slice(tlv);
        v2_raw(cmd, fam, &block)
    }

    /// A v2 PROXY header over unix sockets (`src` and `dst` paths, each at
    /// most 108 bytes) with `tlv` after them.
    pub fn v2_unix(src: &[u8], dst: &[u8], tlv: &[u8]) -> Vec<u8> {
        let mut block = vec![0u8; 216];
        block[..src.len().min(108)].copy_from_slice(&src[..src.len().min(108)]);
        block[108..108 + dst.len().min(108)].copy_from_slice(&dst[..dst.len().min(108)]);
        block.extend_from_slice(tlv);
        v2_raw(0x21, 0x31, &block)
    }

    /// A v2 header with these version/command and family bytes and this
    /// block (its length written as the header's length, truncated to u16).
    pub fn v2_raw(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(fam);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{feed_split as run, v1, v2, v2_raw, v2_unix};
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn done(source: Option<Source>) -> Parsed {
        Parsed::Done {
            consumed: 0,
            source,
        }
    }

    #[test]
    fn headers_and_what_they_name() {
        let s4 = addr("192.0.2.1:56324");
        let d4 = addr("198.51.100.2:443");
        let s6 = addr("[2001:db8::1]:1234");
        let d6 = addr("[2001:db8::2]:80");
        let tlv = [0x04, 0x00, 0x03, b'a', b'b', b'c'];
        let rows: Vec<(&str, Vec<u8>, Parsed)> = vec![
            ("v1 TCP4", v1(Some((s4, d4))), done(Some(Source::Inet(s4)))),
            ("v1 TCP6", v1(Some((s6, d6))), done(Some(Source::Inet(s6)))),
            ("v1 UNKNOWN", v1(None), done(None)),
            (
                "v1 UNKNOWN with addresses",
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
                done(None),
            ),
            (
                "v2 TCP4",
                v2(Some((s4, d4)), &[]),
                done(Some(Source::Inet(s4))),
            ),
            (
                "v2 TCP4 + TLVs",
                v2(Some((s4, d4)), &tlv),
                done(Some(Source::Inet(s4))),
            ),
            (
                "v2 TCP6 + TLVs",
                v2(Some((s6, d6)), &tlv),
                done(Some(Source::Inet(s6))),
            ),
            (
                "v2 unix + TLVs",
                v2_unix(b"/a", b"/b", &tlv),
                done(Some(Source::Unix)),
            ),
            ("v2 LOCAL", v2(None, &[]), done(None)),
            ("v2 LOCAL + TLVs", v2(None, &tlv), done(None)),
            ("v2 PROXY AF_UNSPEC", v2_raw(0x21, 0x00, &tlv), done(None)),
            (
                "v2 UDP4 is an address too",
                v2_raw(0x21, 0x12, &v2(Some((s4, d4)), &[])[16..]),
                done(Some(Source::Inet(s4))),
            ),
            (
                "v2 with 64 KiB of TLVs",
                v2(Some((s4, d4)), &vec![0; 65_535 - 12]),
                done(Some(Source::Inet(s4))),
            ),
            (
                "plain data",
                b"hello\n".to_vec(),
                Parsed::Error(ProxyError::Missing),
            ),
            (
                "PROXX",
                b"PROXX TCP4".to_vec(),
                Parsed::Error(ProxyError::Missing),
            ),
            (
                "lowercase",
                b"proxy TCP4".to_vec(),
                Parsed::Error(ProxyError::Missing),
            ),
            (
                "v1 TCP5",
                b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n".to_vec(),
                Parsed::Error(ProxyError::V1Syntax),
            ),
            (
                "v1 family mismatch",
                b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(),
                Parsed::Error(ProxyError::V1Syntax),
            ),
            (
                "v1 no CR",
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n".to_vec(),
                Parsed::Error(ProxyError::V1Syntax),
            ),
            (
                "v1 port too big",
                b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n".to_vec(),
                Parsed::Error(ProxyError::V1Syntax),
            ),
            (
                "v1 signed port",
                b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n".to_vec(),
                Parsed::Error(ProxyError::V1Syntax),
            ),
            (
                "v1 double space",
                b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n".to_vec(),
                Parsed::Error(ProxyError::V1Syntax),
            ),
            (
                "v1 extra field",
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n".to_vec(),
                Parsed::Error(ProxyError::V1Syntax),
            ),
            (
                "v1 missing field",
                b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n".to_vec(),
                Parsed::Error(ProxyError::V1Syntax),
            ),
            (
                "v1 too long",
                [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat(),
                Parsed::Error(ProxyError::V1TooLong),
            ),
            (
                "v2 version 1",
                v2_raw(0x11, 0x11, &[0; 12]),
                Parsed::Error(ProxyError::V2Version),
            ),
            (
                "v2 command 2",
                v2_raw(0x22, 0x11, &[0; 12]),
                Parsed::Error(ProxyError::V2Command),
            ),
            (
                "v2 family 0x41",
                v2_raw(0x21, 0x41, &[0; 12]),
                Parsed::Error(ProxyError::V2Family),
            ),
            (
                "v2 TCP4 short",
                v2_raw(0x21, 0x11, &[0; 11]),
                Parsed::Error(ProxyError::V2Length),
            ),
            (
                "v2 TCP6 short",
                v2_raw(0x21, 0x21, &[0; 12]),
                Parsed::Error(ProxyError::V2Length),
            ),
            (
                "v2 unix short",
                v2_raw(0x21, 0x31, &[0; 215]),
                Parsed::Error(ProxyError::V2Length),
            ),
            (
                "v2 bad signature",
                b"\r\n\r\n\0\r\nQUIT\r".to_vec(),
                Parsed::Error(ProxyError::Missing),
            ),
        ];
        for (name, header, expected) in rows {
            assert_eq!(run(&header, &[]), (expected, vec![]), "{name}");
        }
    }

    #[test]
    fn the_longest_v1_line_fits_and_one_more_byte_does_not() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX - 2, b'x');
        line.extend_from_slice(b"\r\n");
        assert_eq!(run(&line, &[]).0, done(None));
        line.insert(20, b'x');
        assert_eq!(run(&line, &[]).0, Parsed::Error(ProxyError::V1TooLong));
    }

    #[test]
    fn data_after_the_header_is_left_to_the_caller() {
        let s = addr("10.1.2.3:4000");
        let d = addr("10.0.0.1:7");
        for header in [v1(Some((s, d))), v2(Some((s, d)), b"\x01\x00\x02h2")] {
            let stream = [header.as_slice(), b"hello"].concat();
            let mut p = ProxyParser::new();
            assert_eq!(
                p.feed(&stream),
                Parsed::Done {
                    consumed: header.len(),
                    source: Some(Source::Inet(s))
                }
            );
            // Sticky, and nothing more is consumed.
            assert_eq!(
                p.feed(b"more"),
                Parsed::Done {
                    consumed: 0,
                    source: Some(Source::Inet(s))
                }
            );
        }
    }

    #[test]
    fn a_header_byte_by_byte_is_incomplete_until_its_last_byte() {
        let header = v2(Some((addr("[::1]:5"), addr("[::1]:6"))), &[7; 300]);
        let mut p = ProxyParser::new();
        for &b in &header[..header.len() - 1] {
            assert_eq!(p.feed(&[b]), Parsed::Incomplete);
        }
        assert!(matches!(
            p.feed(&header[header.len() - 1..]),
            Parsed::Done { consumed: 1, .. }
        ));
    }

    #[test]
    fn the_parser_is_small() {
        assert!(std::mem::size_of::<ProxyParser>() <= 160);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn header() -> impl Strategy<Value = Vec<u8>> {
            let v4 = (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port));
            let v6 = (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port));
            let pair4 = (v4.clone(), v4);
            let pair6 = (v6.clone(), v6);
            let pair = prop_oneof![pair4, pair6];
            let tlv = proptest::collection::vec(any::<u8>(), 0..600);
            prop_oneof![
                proptest::option::of(pair.clone()).prop_map(v1),
                (proptest::option::of(pair), tlv.clone()).prop_map(|(a, t)| v2(a, &t)),
                (tlv.clone(), tlv).prop_map(|(p, t)| v2_unix(&p[..p.len().min(108)], b"/x", &t)),
            ]
        }

        proptest! {
            /// Any split of a valid header and the data after it gives the
            /// same source and the same data.
            #[test]
            fn any_split_gives_the_same_result(
                h in header(),
                data in proptest::collection::vec(any::<u8>(), 0..64),
                cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
            ) {
                let stream = [h.as_slice(), &data].concat();
                let whole = run(&stream, &[]);
                prop_assert!(matches!(whole.0, Parsed::Done { .. }), "{:?}", whole.0);
                prop_assert_eq!(&whole.1, &data);
                let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
                bounds.sort_unstable();
                prop_assert_eq!(run(&stream, &bounds), whole.clone());
                let bytewise: Vec<usize> = (1..stream.len()).collect();
                prop_assert_eq!(run(&stream, &bytewise), whole);
            }

            /// Random bytes never panic, and any split agrees with the whole.
            #[test]
            fn random_bytes_never_panic(
                prefix in prop_oneof![Just(Vec::new()), Just(b"PROXY ".to_vec()), Just(V2_SIGNATURE.to_vec())],
                bytes in proptest::collection::vec(any::<u8>(), 0..300),
                cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
            ) {
                let stream = [prefix.as_slice(), &bytes].concat();
                let whole = run(&stream, &[]);
                let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
                bounds.sort_unstable();
                prop_assert_eq!(run(&stream, &bounds), whole);
            }
        }
    }
}
