//! What echod-bench sends, and how an echo is checked: cheaply, in pieces.
//!
//! A message on the wire is `prefix ++ payload`. `prefix` is empty, or the
//! framed protocol's 10-byte header (`format!("{:<10}", length)`), the same for
//! every message. The payload (`length` bytes) is:
//!
//! - bytes `0..min(length, 16)`: the sequence number then the connection id,
//!   both `u64` little-endian (`ID_LEN` bytes, truncated for short messages,
//!   so even a 1-byte message carries the low byte of its sequence number);
//! - the rest: a pseudo-random pattern generated once per run, read from an
//!   offset that depends on the connection id (`conn % PATTERN_SHIFTS`), so
//!   two connections' bytes differ and crossed streams are caught.
//!
//! Checking an echoed piece is therefore one comparison against at most 26
//! computed bytes plus one `memcmp` against the pattern: no per-message
//! allocation and no per-byte arithmetic. Pieces may start and end anywhere
//! in a message (TCP splits and coalesces at will).

/// Bytes of each payload that carry the sequence number and connection id.
pub const ID_LEN: usize = 16;

/// Distinct pattern offsets; prime, so neighbouring ids never share one.
const PATTERN_SHIFTS: usize = 251;

/// The longest prefix: sockperf's 14-byte header (the framed protocol's is 10).
const MAX_PREFIX: usize = echod_common::sockperf::HEADER_LEN;

/// The message layout for one run; read-only once built, shared by threads.
///
/// Invariant: `pattern.len() == length + PATTERN_SHIFTS`, so
/// `pattern[shift + i]` exists for every payload index `i < length`.
#[derive(Debug, Clone)]
pub struct Payload {
    length: usize,
    prefix: Vec<u8>,
    /// What the echo's prefix must be: the prefix itself, except sockperf's
    /// reply, whose header has the client flag cleared.
    echo_prefix: Vec<u8>,
    pattern: Vec<u8>,
}

impl Payload {
    /// A layout for `length`-byte payloads in protocol `proto`.
    pub fn new(length: usize, proto: crate::Proto) -> Self {
        let (prefix, echo_prefix) = match proto {
            crate::Proto::Echo => (Vec::new(), Vec::new()),
            crate::Proto::Framed => {
                let h = echod_common::framing::encode_header(length as u64)
                    .expect("-l is validated to at most 64 MiB: eight digits")
                    .to_vec();
                (h.clone(), h)
            }
            crate::Proto::Sockperf => {
                use echod_common::sockperf::{Header, FLAG_CLIENT, FLAG_PONG_REQUEST, HEADER_LEN};
                let request = Header {
                    seq: 0,
                    flags: FLAG_CLIENT | FLAG_PONG_REQUEST,
                    len: u32::try_from(HEADER_LEN + length)
                        .expect("-l is validated to at most 64 MiB"),
                };
                (request.encode().to_vec(), request.reply().encode().to_vec())
            }
        };
        // xorshift64*: deterministic, fast, and not a repeating short cycle.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let pattern = (0..length + PATTERN_SHIFTS)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect();
        Payload {
            length,
            prefix,
            echo_prefix,
            pattern,
        }
    }

    /// Bytes per message on the wire: prefix plus payload.
    pub fn wire_len(&self) -> usize {
        self.prefix.len() + self.length
    }

    /// The bytes that differ per message: prefix, then sequence and id.
    /// Returns the buffer and how many of its bytes are meaningful.
    fn head(&self, prefix: &[u8], conn: u64, seq: u64) -> ([u8; MAX_PREFIX + ID_LEN], usize) {
        let mut head = [0u8; MAX_PREFIX + ID_LEN];
        let p = prefix.len();
        head[..p].copy_from_slice(prefix);
        head[p..p + 8].copy_from_slice(&seq.to_le_bytes());
        head[p + 8..p + 16].copy_from_slice(&conn.to_le_bytes());
        (head, p + self.length.min(ID_LEN))
    }

    /// The pattern bytes for payload indices `from..to` of connection `conn`.
    fn pattern(&self, conn: u64, from: usize, to: usize) -> &[u8] {
        let shift = (conn % PATTERN_SHIFTS as u64) as usize;
        &self.pattern[shift + from..shift + to]
    }

    /// Appends message `seq` of connection `conn` to `out`.
    pub fn write_message(&self, out: &mut Vec<u8>, conn: u64, seq: u64) {
        let (head, head_len) = self.head(&self.prefix, conn, seq);
        out.extend_from_slice(&head[..head_len]);
        if self.length > ID_LEN {
            out.extend_from_slice(self.pattern(conn, ID_LEN, self.length));
        }
    }

    /// Whether `data` is exactly the bytes at `offset..offset + data.len()`
    /// of message `seq` of connection `conn`. The range must lie within the
    /// message (`offset + data.len() <= wire_len()`); callers split pieces at
    /// message boundaries.
    pub fn verify(&self, conn: u64, seq: u64, offset: usize, data: &[u8]) -> bool {
        let end = offset + data.len();
        debug_assert!(end <= self.wire_len(), "piece crosses a message boundary");
        let (head, head_len) = self.head(&self.echo_prefix, conn, seq);
        let mut ok = true;
        if offset < head_len {
            let stop = end.min(head_len);
            ok &= data[..stop - offset] == head[offset..stop];
        }
        if end > head_len {
            let start = offset.max(head_len);
            let p = self.prefix.len();
            ok &= data[start - offset..] == *self.pattern(conn, start - p, end - p);
        }
        ok
    }

    /// The sequence number and connection id a whole message claims to be,
    /// if it is long enough to carry them (datagrams arrive in any order, so
    /// they are looked up by what they say, then verified whole).
    pub fn identify(&self, message: &[u8]) -> Option<(u64, u64)> {
        let p = self.prefix.len();
        let ids = message.get(p..p + ID_LEN)?;
        let seq = u64::from_le_bytes(ids[..8].try_into().ok()?);
        let conn = u64::from_le_bytes(ids[8..].try_into().ok()?);
        Some((seq, conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(p: &Payload, conn: u64, seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        p.write_message(&mut out, conn, seq);
        out
    }

    #[test]
    fn layout_carries_ids_and_prefix() {
        let p = Payload::new(40, crate::Proto::Framed);
        let m = message(&p, 7, 3);
        assert_eq!(m.len(), 50);
        assert_eq!(&m[..10], b"40        ");
        assert_eq!(p.identify(&m), Some((3, 7)));
        assert!(p.verify(7, 3, 0, &m));
        assert!(!p.verify(8, 3, 0, &m), "another connection's message");
        assert!(!p.verify(7, 4, 0, &m), "another sequence number");
    }

    /// What a server sends back for message `m`: itself, but sockperf's
    /// header with the client flag cleared.
    fn echo_of(p: &Payload, mut m: Vec<u8>) -> Vec<u8> {
        m[..p.echo_prefix.len()].copy_from_slice(&p.echo_prefix);
        m
    }

    #[test]
    fn sockperf_messages_ask_for_a_reply_and_verify_it() {
        use echod_common::sockperf::{Header, FLAG_CLIENT, FLAG_PONG_REQUEST};
        let p = Payload::new(32, crate::Proto::Sockperf);
        let m = message(&p, 3, 9);
        let h = Header::parse(m[..14].try_into().unwrap());
        assert_eq!(h.flags, FLAG_CLIENT | FLAG_PONG_REQUEST);
        assert_eq!(h.len as usize, m.len());
        assert!(!p.verify(3, 9, 0, &m), "the request is not its own reply");
        assert!(p.verify(3, 9, 0, &echo_of(&p, m)));
    }

    #[test]
    fn connections_get_different_patterns() {
        let p = Payload::new(64, crate::Proto::Echo);
        assert_ne!(message(&p, 1, 0)[16..], message(&p, 2, 0)[16..]);
    }

    #[test]
    fn tiny_messages_still_carry_the_sequence() {
        let p = Payload::new(1, crate::Proto::Echo);
        assert_eq!(message(&p, 9, 5), vec![5]);
        assert!(!p.verify(9, 6, 0, &[5]));
    }

    proptest! {
        /// Any split of a message verifies piece by piece; any flipped byte
        /// is caught in the piece that holds it.
        #[test]
        fn any_split_verifies_and_any_flip_is_caught(
            len in 1usize..200, proto in 0u8..3, conn: u64, seq: u64,
            cut in 0usize..1000, flip in 0usize..1000,
        ) {
            let proto = [crate::Proto::Echo, crate::Proto::Framed, crate::Proto::Sockperf][proto as usize];
            let p = Payload::new(len, proto);
            let m = echo_of(&p, message(&p, conn, seq));
            let cut = cut % (m.len() + 1);
            prop_assert!(p.verify(conn, seq, 0, &m[..cut]));
            prop_assert!(p.verify(conn, seq, cut, &m[cut..]));
            let mut bad = m.clone();
            let at = flip % m.len();
            bad[at] ^= 0x40;
            let ok = p.verify(conn, seq, 0, &bad[..cut]) && p.verify(conn, seq, cut, &bad[cut..]);
            prop_assert!(!ok);
        }
    }
}
