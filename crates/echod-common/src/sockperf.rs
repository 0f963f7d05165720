//! The message protocol of the sockperf benchmark, sans-I/O: a 14-byte
//! big-endian header (u64 sequence number, u16 flags, u32 total length
//! including the header), then the payload. Over TCP the stream is split by
//! the length field ([`StreamDecoder`]); over UDP one datagram is one
//! message ([`reply_in_place`]).
//!
//! A client message that asks for a reply (client and pong-request flags,
//! not warm-up) is sent back whole with the client flag cleared, which is
//! what sockperf's client waits for; every other message is consumed
//! silently, as sockperf's own server does. A length below the header or
//! above the caller's maximum is an error: the stream cannot be resynced.

use std::fmt;

/// Bytes in a message header.
pub const HEADER_LEN: usize = 14;
/// Set by sockperf's client on every message it sends.
pub const FLAG_CLIENT: u16 = 1;
/// The client wants this message back.
pub const FLAG_PONG_REQUEST: u16 = 2;
/// A warm-up message: never answered.
pub const FLAG_WARMUP: u16 = 4;

/// A message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub flags: u16,
    /// Total message length, header included.
    pub len: u32,
}

impl Header {
    /// Decodes the 14 header bytes.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[..8]);
        Header {
            seq: u64::from_be_bytes(seq),
            flags: u16::from_be_bytes([bytes[8], bytes[9]]),
            len: u32::from_be_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]),
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..10].copy_from_slice(&self.flags.to_be_bytes());
        out[10..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// Whether the message asks for a reply.
    pub fn wants_reply(&self) -> bool {
        self.flags & (FLAG_CLIENT | FLAG_PONG_REQUEST) == FLAG_CLIENT | FLAG_PONG_REQUEST
            && self.flags & FLAG_WARMUP == 0
    }

    /// The reply's header: the same, with the client flag cleared.
    pub fn reply(&self) -> Header {
        Header {
            flags: self.flags & !FLAG_CLIENT,
            ..*self
        }
    }

    fn check(&self, max: u64) -> Result<(), MessageError> {
        if (self.len as usize) < HEADER_LEN {
            return Err(MessageError::TooShort(self.len));
        }
        if u64::from(self.len) > max {
            return Err(MessageError::TooLong(self.len, max));
        }
        Ok(())
    }
}

/// A length field the protocol cannot follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// Shorter than its own header.
    TooShort(u32),
    /// Longer than the allowed maximum (`--max-frame`).
    TooLong(u32, u64),
    /// A datagram whose length field is not its size.
    LengthMismatch { field: u32, datagram: usize },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::TooShort(len) => {
                write!(
                    f,
                    "sockperf message length {len} is below its {HEADER_LEN}-byte header"
                )
            }
            MessageError::TooLong(len, max) => {
                write!(f, "sockperf message length {len} exceeds --max-frame {max}")
            }
            MessageError::LengthMismatch { field, datagram } => write!(
                f,
                "sockperf datagram of {datagram} bytes says its length is {field}"
            ),
        }
    }
}

impl std::error::Error for MessageError {}

/// What the next bytes of a stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A message to answer begins: send this header (client flag cleared).
    Reply([u8; HEADER_LEN]),
    /// Payload of the message being answered: send it.
    Payload(&'a [u8]),
    /// Bytes consumed silently (a message not to answer).
    Skip(usize),
    /// The stream broke the protocol; sticky.
    Error(MessageError),
}

/// A streaming decoder for one TCP connection. Holds at most the 14 bytes
/// of a header split across reads; payload passes through as slices of
/// the input. Never allocates, never panics.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    max: u64,
    held: [u8; HEADER_LEN],
    held_len: usize,
    /// Payload bytes of the current message still to come.
    remaining: u32,
    /// Whether the current message is being answered.
    replying: bool,
    messages: u64,
    error: Option<MessageError>,
}

impl StreamDecoder {
    /// A decoder refusing messages longer than `max` bytes.
    pub fn new(max: u64) -> Self {
        StreamDecoder {
            max,
            held: [0; HEADER_LEN],
            held_len: 0,
            remaining: 0,
            replying: false,
            messages: 0,
            error: None,
        }
    }

    /// Messages completed so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Whether the stream is between messages (a clean place to end).
    pub fn at_boundary(&self) -> bool {
        self.error.is_none() && self.held_len == 0 && self.remaining == 0
    }

    /// The next event in `input`: how many bytes of it the event consumed,
    /// and the event (`None` once `input` is used up, or after an error).
    pub fn next_event<'i>(&mut self, input: &'i [u8]) -> (usize, Option<Event<'i>>) {
        if let Some(e) = self.error {
            return (0, Some(Event::Error(e)));
        }
        if input.is_empty() {
            return (0, None);
        }
        if self.remaining > 0 {
            let n = input.len().min(self.remaining as usize);
            self.remaining -= n as u32;
            if self.remaining == 0 {
                self.messages += 1;
            }
            let event = if self.replying {
                Event::Payload(&input[..n])
            } else {
                Event::Skip(n)
            };
            return (n, Some(event));
        }
        let take = (HEADER_LEN - self.held_len).min(input.len());
        self.held[self.held_len..self.held_len + take].copy_from_slice(&input[..take]);
        self.held_len += take;
        if self.held_len < HEADER_LEN {
            return (take, Some(Event::Skip(0)));
        }
        self.held_len = 0;
        let header = Header::parse(&self.held);
        if let Err(e) = header.check(self.max) {
            self.error = Some(e);
            return (take, Some(Event::Error(e)));
        }
        self.remaining = header.len - HEADER_LEN as u32;
        self.replying = header.wants_reply();
        if self.remaining == 0 {
            self.messages += 1;
        }
        let event = if self.replying {
            Event::Reply(header.reply().encode())
        } else {
            Event::Skip(HEADER_LEN)
        };
        (take, Some(event))
    }
}

/// One UDP datagram, one message: checks it and, if it asks for a reply,
/// turns it into the reply in place. Returns whether to send it back.
pub fn reply_in_place(datagram: &mut [u8], max: u64) -> Result<bool, MessageError> {
    let Some(head) = datagram.first_chunk::<HEADER_LEN>() else {
        return Err(MessageError::TooShort(datagram.len() as u32));
    };
    let header = Header::parse(head);
    header.check(max)?;
    if header.len as usize != datagram.len() {
        return Err(MessageError::LengthMismatch {
            field: header.len,
            datagram: datagram.len(),
        });
    }
    if !header.wants_reply() {
        return Ok(false);
    }
    datagram[..HEADER_LEN].copy_from_slice(&header.reply().encode());
    Ok(true)
}

/// Shared by the tests here and the fuzz target (`fuzz/fuzz_targets/sockperf.rs`).
#[doc(hidden)]
pub mod testing {
    use super::{Event, MessageError, StreamDecoder};

    /// What a peer gets back for `stream` fed `chunk` bytes at a time: the
    /// reply bytes, the messages completed and the error, if any.
    pub fn replies(stream: &[u8], chunk: usize, max: u64) -> (Vec<u8>, u64, Option<MessageError>) {
        let mut d = StreamDecoder::new(max);
        let mut out = Vec::new();
        for mut piece in stream.chunks(chunk.max(1)) {
            loop {
                let (used, event) = d.next_event(piece);
                assert!(used <= piece.len(), "consumed more than it was given");
                piece = &piece[used..];
                match event {
                    None => break,
                    Some(Event::Reply(h)) => out.extend_from_slice(&h),
                    Some(Event::Payload(p)) => out.extend_from_slice(p),
                    Some(Event::Skip(_)) => {}
                    Some(Event::Error(e)) => return (out, d.messages(), Some(e)),
                }
            }
        }
        (out, d.messages(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::replies as run;
    use super::*;
    use proptest::prelude::*;

    fn message(seq: u64, flags: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Header {
            seq,
            flags,
            len: (HEADER_LEN + payload.len()) as u32,
        }
        .encode()
        .to_vec();
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn pong_requests_come_back_with_the_client_flag_cleared_others_are_consumed() {
        let ping = FLAG_CLIENT | FLAG_PONG_REQUEST;
        let mut stream = message(1, ping, b"abc");
        stream.extend(message(2, FLAG_CLIENT, b"no reply"));
        stream.extend(message(3, ping | FLAG_WARMUP, b"warm"));
        stream.extend(message(4, ping, b""));
        let (out, messages, error) = run(&stream, 1, 1 << 20);
        let mut expected = message(1, FLAG_PONG_REQUEST, b"abc");
        expected.extend(message(4, FLAG_PONG_REQUEST, b""));
        assert_eq!((out, messages, error), (expected, 4, None));
    }

    #[test]
    fn lengths_outside_the_header_and_the_maximum_end_the_stream() {
        let mut short = message(1, FLAG_CLIENT, b"");
        short[13] = 13;
        assert_eq!(run(&short, 3, 100).2, Some(MessageError::TooShort(13)));
        let long = message(1, FLAG_CLIENT | FLAG_PONG_REQUEST, &[0; 100]);
        assert_eq!(run(&long, 7, 100).2, Some(MessageError::TooLong(114, 100)));
    }

    #[test]
    fn a_datagram_is_answered_in_place_or_refused() {
        let mut d = message(9, FLAG_CLIENT | FLAG_PONG_REQUEST, b"xyz");
        assert_eq!(reply_in_place(&mut d, 1000), Ok(true));
        assert_eq!(d, message(9, FLAG_PONG_REQUEST, b"xyz"));
        let mut quiet = message(9, FLAG_CLIENT, b"xyz");
        assert_eq!(reply_in_place(&mut quiet, 1000), Ok(false));
        assert!(reply_in_place(&mut [0u8; 5], 1000).is_err());
        let mut lying = message(9, FLAG_CLIENT | FLAG_PONG_REQUEST, b"xyz");
        lying.push(0);
        assert!(matches!(
            reply_in_place(&mut lying, 1000),
            Err(MessageError::LengthMismatch { .. })
        ));
    }

    proptest! {
        /// Any split of any stream gives the same reply bytes, message count
        /// and error as one call; nothing panics.
        #[test]
        fn any_split_gives_the_same_replies(
            stream in proptest::collection::vec(any::<u8>(), 0..400),
            chunk in 1usize..50,
            max in 14u64..300,
        ) {
            prop_assert_eq!(run(&stream, chunk, max), run(&stream, stream.len().max(1), max));
        }

        /// Valid messages: exactly the pong requests come back.
        #[test]
        fn valid_streams_answer_exactly_the_pong_requests(
            msgs in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..12),
            chunk in 1usize..40,
        ) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (i, (flags, payload)) in msgs.iter().enumerate() {
                let m = message(i as u64, *flags, payload);
                let h = Header::parse(m[..HEADER_LEN].try_into().unwrap());
                if h.wants_reply() {
                    expected.extend(message(i as u64, flags & !FLAG_CLIENT, payload));
                }
                stream.extend(m);
            }
            let (out, count, error) = run(&stream, chunk, 1 << 20);
            prop_assert_eq!(out, expected);
            prop_assert_eq!(count, msgs.len() as u64);
            prop_assert_eq!(error, None);
        }
    }
}
