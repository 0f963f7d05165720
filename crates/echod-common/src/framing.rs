//! The seeds' framed protocol (seeds 000/001): a 10-byte ASCII decimal length
//! header, then that many payload bytes. A sans-I/O streaming decoder.
//!
//! # Wire format
//!
//! A frame is a header of exactly [`HEADER_LEN`] bytes followed by the payload.
//! The header grammar is: optional spaces, one or more contiguous ASCII digits,
//! optional spaces, 10 bytes in all. The seeds write it left-aligned
//! (`f"{len(msg):<10}"`, e.g. `b"42        "`); right-aligned (`b"        42"`),
//! padded on both sides and leading zeros (`b"0000000042"`) are accepted too.
//! The payload is opaque (the seeds put a pickled Python object there).
//!
//! # Two ways to read it
//!
//! - **Events** ([`FrameDecoder::next_event`], or [`FrameDecoder::events`]
//!   over one input): `Header { len, bytes }`, `Payload(&input[..])` pieces,
//!   `FrameEnd`, or a sticky `Error`. For a reader of frames (the client
//!   prints payloads): no offsets to work out. Any split of the stream gives
//!   the same events, but for where the payload is cut into pieces.
//! - **Echo** ([`FrameDecoder::decode`]): how many bytes of the input may be
//!   echoed, and how many frames completed; a fold over the events, for the
//!   daemon's framed echo path.
//!
//! # Streaming contract
//!
//! [`FrameDecoder::decode`] never copies nor buffers payload: it only says how
//! many leading bytes of the input it was given may be echoed now, so a 1 GB
//! frame costs no memory. Header bytes are the one exception: they are held
//! inside the decoder (at most [`HEADER_LEN`] of them, in a fixed array) until
//! the header is complete and valid, so that a bad header is never echoed. The
//! held bytes are handed back in [`Decoded::carried`] by the call that validates
//! them, to be echoed before that call's `input[..released]`.
//!
//! Invariants, whatever the way the stream is split into calls:
//! - the concatenation, over all calls, of `carried` then `input[..released]`
//!   is exactly the prefix of the stream made of complete valid headers and
//!   the payload bytes received so far (it never includes a byte of an invalid
//!   or still incomplete header);
//! - an error is reported at the earliest byte that proves its header invalid,
//!   with the same absolute stream offset and kind;
//! - after an error the decoder is sticky: every later call reports the same
//!   error and releases nothing;
//! - neither `decode` nor `next_event` panics or allocates.
//!
//! # Errors
//!
//! | input | kind | offset |
//! |---|---|---|
//! | a byte that is neither digit nor space | [`FrameErrorKind::BadByte`] | that byte |
//! | a digit after digits then a space | [`FrameErrorKind::SplitDigits`] | that digit |
//! | ten spaces | [`FrameErrorKind::NoDigits`] | the 10th space |
//! | a running value above `max_frame` | [`FrameErrorKind::TooLarge`] | the digit that pushed it over |
//!
//! The running value of the digits only grows as more digits arrive, so a
//! prefix already above `max_frame` proves the header too large.

use std::fmt;

/// Length of a frame header in bytes: the payload length in ASCII decimal,
/// padded with spaces to exactly this width.
pub const HEADER_LEN: usize = 10;

/// The largest payload length a header can state: ten decimal digits.
pub const MAX_HEADER_VALUE: u64 = 9_999_999_999;

/// The header announcing a `len`-byte payload, as the seeds write it
/// (`f"{len(msg):<10}"`): decimal, left-aligned, padded with spaces to
/// [`HEADER_LEN`] bytes. `None` above [`MAX_HEADER_VALUE`]. The one encoder
/// shared by the daemon (framed banner), echod-client and echod-bench.
pub fn encode_header(len: u64) -> Option<[u8; HEADER_LEN]> {
    if len > MAX_HEADER_VALUE {
        return None;
    }
    let mut digits = [0u8; HEADER_LEN];
    let mut start = HEADER_LEN;
    let mut rest = len;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut header = [b' '; HEADER_LEN];
    header[..HEADER_LEN - start].copy_from_slice(&digits[start..]);
    Some(header)
}

/// Up to [`HEADER_LEN`] header bytes, by value (no allocation, `Copy`).
///
/// Invariant: `len <= HEADER_LEN`; only the first `len` bytes are meaningful,
/// and equality compares only those.
#[derive(Clone, Copy, Default)]
pub struct HeaderBytes {
    bytes: [u8; HEADER_LEN],
    len: u8,
}

impl HeaderBytes {
    /// The held bytes, in stream order.
    pub fn as_slice(&self) -> &[u8] {
        let len = usize::from(self.len).min(HEADER_LEN);
        self.bytes.split_at(len).0
    }

    /// Number of bytes held (at most [`HEADER_LEN`]).
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when no byte is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `byte`; returns false (and changes nothing) when already full.
    fn push(&mut self, byte: u8) -> bool {
        let len = usize::from(self.len);
        match self.bytes.get_mut(len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The first `n` bytes (all of them if `n` is larger than the length).
    fn prefix(&self, n: usize) -> HeaderBytes {
        let mut out = HeaderBytes::default();
        for &b in self.as_slice().iter().take(n) {
            out.push(b);
        }
        out
    }
}

impl PartialEq for HeaderBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for HeaderBytes {}

impl fmt::Debug for HeaderBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderBytes(b\"{}\")", self.as_slice().escape_ascii())
    }
}

/// Why a header is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameErrorKind {
    /// A header byte that is neither an ASCII digit nor a space.
    BadByte(u8),
    /// A digit after the length's digits were already followed by a space
    /// (`b"12 3      "`): the digits must be contiguous.
    SplitDigits,
    /// Ten spaces: the header holds no length at all.
    NoDigits,
    /// The announced length exceeds the decoder's `max_frame`.
    TooLarge {
        /// The limit that was exceeded, in bytes.
        max: u64,
    },
}

impl FrameErrorKind {
    /// A stable `snake_case` name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            FrameErrorKind::BadByte(_) => "bad_byte",
            FrameErrorKind::SplitDigits => "split_digits",
            FrameErrorKind::NoDigits => "no_digits",
            FrameErrorKind::TooLarge { .. } => "too_large",
        }
    }
}

impl fmt::Display for FrameErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameErrorKind::BadByte(b) => write!(f, "byte 0x{b:02x} is not a digit or space"),
            FrameErrorKind::SplitDigits => {
                write!(f, "a digit follows the padding after the length digits")
            }
            FrameErrorKind::NoDigits => write!(f, "the header is all spaces, with no length"),
            FrameErrorKind::TooLarge { max } => {
                write!(f, "the announced length exceeds the limit of {max} bytes")
            }
        }
    }
}

/// An invalid header: where in the stream it was detected, and why.
///
/// `offset` is the absolute stream offset (0-based, counting every byte the
/// decoder was fed) of the earliest byte that proves the header invalid; it
/// does not depend on how the stream was split into calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError {
    /// Absolute stream offset of the offending byte.
    pub offset: u64,
    /// What is wrong with it.
    pub kind: FrameErrorKind,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid frame header at byte {}: {}",
            self.offset, self.kind
        )
    }
}

impl std::error::Error for FrameError {}

/// What one [`FrameDecoder::decode`] call allows the caller to echo.
///
/// Echo `carried.as_slice()` first, then `input[..released]`. The two are
/// contiguous in the stream. `released <= input.len()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Header bytes received in earlier calls, now validated: echo these
    /// first, then `input[..released]`. Empty if no held header was completed
    /// in this call (including when it turned out invalid).
    pub carried: HeaderBytes,
    /// Leading bytes of this call's input that may be echoed now.
    pub released: usize,
    /// Frames completed during this call (at most the call's `max_frames`).
    pub frames: u64,
    /// The stream is invalid; nothing from the offending header on is
    /// released, in this call or any later one.
    pub error: Option<FrameError>,
}

/// Where the header parser is inside the 10 header bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pad {
    /// Only spaces so far.
    Leading,
    /// The last byte was a digit.
    Digits,
    /// Digits, then at least one space: only spaces may follow.
    Trailing,
}

/// A header being received. Invariant: every byte in `held` is valid so far,
/// `held.len() < HEADER_LEN`, and `value <= max_frame`.
#[derive(Debug, Clone, Copy)]
struct Header {
    held: HeaderBytes,
    pad: Pad,
    value: u64,
}

impl Header {
    const EMPTY: Header = Header {
        held: HeaderBytes {
            bytes: [0; HEADER_LEN],
            len: 0,
        },
        pad: Pad::Leading,
        value: 0,
    };

    /// Feeds one header byte. `Ok(Some(len))` when it completed a valid header
    /// announcing `len` payload bytes, `Ok(None)` when more header bytes are
    /// needed, `Err` when `byte` proves the header invalid.
    fn push(&mut self, byte: u8, max_frame: u64) -> Result<Option<u64>, FrameErrorKind> {
        match byte {
            b' ' => {
                if self.pad == Pad::Digits {
                    self.pad = Pad::Trailing;
                }
            }
            b'0'..=b'9' => {
                if self.pad == Pad::Trailing {
                    return Err(FrameErrorKind::SplitDigits);
                }
                let value = self
                    .value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(byte - b'0')))
                    .filter(|&v| v <= max_frame)
                    .ok_or(FrameErrorKind::TooLarge { max: max_frame })?;
                self.value = value;
                self.pad = Pad::Digits;
            }
            other => return Err(FrameErrorKind::BadByte(other)),
        }
        if !self.held.push(byte) {
            // Unreachable while the invariant holds (a full header is never
            // kept); fail closed rather than panic.
            return Err(FrameErrorKind::NoDigits);
        }
        if self.held.len() < HEADER_LEN {
            Ok(None)
        } else if self.pad == Pad::Leading {
            Err(FrameErrorKind::NoDigits)
        } else {
            Ok(Some(self.value))
        }
    }
}

/// What the decoder found next in the stream (see [`FrameDecoder::next_event`]).
///
/// A valid frame is one `Header`, then `Payload` pieces (none for an empty
/// payload) whose lengths add up to the header's `len`, then `FrameEnd`. How
/// the stream is split into inputs changes only where the payload is cut
/// into pieces, never the events otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A header completed and is valid.
    Header {
        /// The payload length it announces (at most the decoder's `max_frame`).
        len: u64,
        /// All the header's bytes, as received; those before the call that
        /// completed it were held by the decoder.
        bytes: [u8; HEADER_LEN],
    },
    /// The next bytes of the current payload: a non-empty slice of the input.
    Payload(&'a [u8]),
    /// The current frame is complete (counted in [`FrameDecoder::frames`]).
    FrameEnd,
    /// The stream is invalid. Sticky: every later call reports it again.
    Error(FrameError),
}

/// The decoder's state.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Receiving a header (possibly none of its bytes yet).
    Header(Header),
    /// Receiving a payload; `remaining > 0`.
    Payload { remaining: u64 },
    /// The payload is complete; the next event is [`Event::FrameEnd`].
    FrameEnd,
    /// The stream is invalid; sticky.
    Failed(FrameError),
}

/// A streaming decoder for one connection's framed byte stream.
///
/// Sans-I/O: it is fed byte slices and answers with [events](Event) (what a
/// reader of frames wants) or with how many bytes may be echoed (what the
/// daemon's echo path wants, [`decode`](Self::decode), a fold over the
/// events). It never touches a socket, never allocates, and never panics.
/// Memory is constant: at most [`HEADER_LEN`] held header bytes.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: u64,
    state: State,
    /// Stream bytes consumed so far (released or held).
    offset: u64,
    /// Frames completed so far.
    frames: u64,
}

impl FrameDecoder {
    /// A decoder at the start of a stream. A header announcing more than
    /// `max_frame` payload bytes is [`FrameErrorKind::TooLarge`].
    pub fn new(max_frame: u64) -> Self {
        FrameDecoder {
            max_frame,
            state: State::Header(Header::EMPTY),
            offset: 0,
            frames: 0,
        }
    }

    /// Decodes the next event from the start of `input`, the stream's next
    /// bytes. Returns how many leading bytes of `input` it consumed, and the
    /// event; feed `input[consumed..]` next.
    ///
    /// - `None`: more input is needed. All of `input` was consumed (header
    ///   bytes are held inside the decoder until their header completes).
    /// - `Header`: consumed the rest of the header, the bytes of it that were
    ///   in `input`.
    /// - `Payload(piece)`: `piece` is `input[..consumed]`.
    /// - `FrameEnd`: consumed nothing.
    /// - `Error(e)`: consumed the valid header bytes before the offending one
    ///   (none once failed), so [`offset`](Self::offset) is `e.offset`.
    ///
    /// `None` is returned only when `input` is used up, so a caller that
    /// calls again until `None` has seen every event its bytes hold.
    pub fn next_event<'i>(&mut self, input: &'i [u8]) -> (usize, Option<Event<'i>>) {
        let (consumed, event) = match self.state {
            State::Failed(error) => (0, Some(Event::Error(error))),
            State::FrameEnd => {
                self.frames = self.frames.saturating_add(1);
                self.state = State::Header(Header::EMPTY);
                (0, Some(Event::FrameEnd))
            }
            State::Payload { remaining } => {
                let take = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                if take == 0 {
                    return (0, None);
                }
                let remaining = remaining.saturating_sub(to_u64(take));
                self.state = if remaining == 0 {
                    State::FrameEnd
                } else {
                    State::Payload { remaining }
                };
                (take, Some(Event::Payload(input.split_at(take).0)))
            }
            State::Header(header) => self.header_event(header, input),
        };
        self.offset = self.offset.saturating_add(to_u64(consumed));
        (consumed, event)
    }

    /// [`next_event`](Self::next_event) inside a header: feeds `header` the
    /// bytes of `input` until it completes, fails, or `input` runs out.
    fn header_event<'i>(
        &mut self,
        mut header: Header,
        input: &'i [u8],
    ) -> (usize, Option<Event<'i>>) {
        for (i, &byte) in input.iter().enumerate() {
            match header.push(byte, self.max_frame) {
                Ok(None) => {}
                Ok(Some(len)) => {
                    self.state = if len == 0 {
                        State::FrameEnd
                    } else {
                        State::Payload { remaining: len }
                    };
                    let bytes = header.held.bytes;
                    return (i + 1, Some(Event::Header { len, bytes }));
                }
                Err(kind) => {
                    let error = FrameError {
                        offset: self.offset.saturating_add(to_u64(i)),
                        kind,
                    };
                    self.state = State::Failed(error);
                    return (i, Some(Event::Error(error)));
                }
            }
        }
        self.state = State::Header(header);
        (input.len(), None)
    }

    /// The events in `input`, the stream's next bytes, in order: an iterator
    /// over [`next_event`](Self::next_event) that ends when `input` is used
    /// up or after an [`Event::Error`].
    pub fn events<'d, 'i>(&'d mut self, input: &'i [u8]) -> Events<'d, 'i> {
        Events {
            decoder: self,
            input,
            consumed: 0,
            done: false,
        }
    }

    /// Feeds the next bytes of the stream.
    ///
    /// Consumes `input` from the start until it is exhausted, an error is
    /// found, or `max_frames` frames were completed in this call (bytes after
    /// that frame are neither consumed nor released: feed them again later).
    /// `u64::MAX` means no limit; `0` consumes nothing. A zero-length frame
    /// completes as soon as its header does.
    ///
    /// The caller echoes `carried` then `input[..released]`. Bytes consumed
    /// this call number `offset()` after minus `offset()` before; those past
    /// `released` are header bytes held for a later call.
    ///
    /// A fold over [`events`](Self::events): a header or payload event
    /// releases the input up to its end, `FrameEnd` counts a frame.
    pub fn decode(&mut self, input: &[u8], max_frames: u64) -> Decoded {
        let mut out = Decoded::default();
        // Header bytes held from earlier calls, carried if their header completes.
        let mut held = match &self.state {
            State::Header(h) => h.held.len(),
            _ => 0,
        };
        let mut events = self.events(input);
        while out.frames < max_frames {
            match events.next() {
                Some(Event::Header { bytes, .. }) => {
                    if held > 0 {
                        out.carried = HeaderBytes {
                            bytes,
                            len: HEADER_LEN as u8,
                        }
                        .prefix(held);
                        held = 0;
                    }
                    out.released = events.consumed();
                }
                Some(Event::Payload(_)) => out.released = events.consumed(),
                Some(Event::FrameEnd) => out.frames += 1,
                Some(Event::Error(_)) | None => break,
            }
        }
        out.error = self.error();
        out
    }

    /// Stream bytes consumed so far: released bytes plus held header bytes.
    /// After an error it stays at the offending byte's offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True when no partial header or payload is pending (a clean place for
    /// the stream to end). False after an error, and between a frame's last
    /// payload byte and its [`Event::FrameEnd`] (never the case once
    /// [`next_event`](Self::next_event) returned `None`, nor after
    /// [`decode`](Self::decode)).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header(h) if h.held.is_empty())
    }

    /// Payload bytes of the current frame still to come.
    ///
    /// Invariant: it is `n > 0` exactly when the decoder is inside a payload,
    /// and then the next `n` stream bytes are that payload (the decoder
    /// releases them whatever they are); it is `0` when the next stream byte
    /// belongs to a header (or after an error). A reader that wants the
    /// payloads apart from the headers uses [`events`](Self::events).
    pub fn payload_remaining(&self) -> u64 {
        match self.state {
            State::Payload { remaining } => remaining,
            State::Header(_) | State::FrameEnd | State::Failed(_) => 0,
        }
    }

    /// Frames completed in total.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The sticky error, if the stream was found invalid.
    pub fn error(&self) -> Option<FrameError> {
        match self.state {
            State::Failed(error) => Some(error),
            _ => None,
        }
    }
}

/// The events in one input ([`FrameDecoder::events`]).
#[derive(Debug)]
pub struct Events<'d, 'i> {
    decoder: &'d mut FrameDecoder,
    input: &'i [u8],
    /// Leading bytes of `input` consumed so far.
    consumed: usize,
    /// `input` is used up or an error was yielded.
    done: bool,
}

impl Events<'_, '_> {
    /// Leading bytes of the input consumed by the events yielded so far
    /// (all of it once the iterator ended without an error).
    pub fn consumed(&self) -> usize {
        self.consumed
    }
}

impl<'i> Iterator for Events<'_, 'i> {
    type Item = Event<'i>;

    fn next(&mut self) -> Option<Event<'i>> {
        if self.done {
            return None;
        }
        let rest = self.input.get(self.consumed..).unwrap_or_default();
        let (consumed, event) = self.decoder.next_event(rest);
        self.consumed += consumed;
        self.done = matches!(event, None | Some(Event::Error(_)));
        event
    }
}

impl std::iter::FusedIterator for Events<'_, '_> {}

/// `usize` to `u64`: lossless on every platform Rust supports (usize <= 64 bits).
fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = 16 * 1024 * 1024;

    /// Feeds `stream` in chunks of `chunk` bytes; returns (echoed bytes, frames, error).
    fn feed(
        dec: &mut FrameDecoder,
        stream: &[u8],
        chunk: usize,
    ) -> (Vec<u8>, u64, Option<FrameError>) {
        let mut echoed = Vec::new();
        let mut frames = 0;
        let mut error = None;
        for piece in stream.chunks(chunk.max(1)) {
            let d = dec.decode(piece, u64::MAX);
            echoed.extend_from_slice(d.carried.as_slice());
            echoed.extend_from_slice(&piece[..d.released]);
            frames += d.frames;
            if d.error.is_some() {
                error = d.error;
                break;
            }
        }
        (echoed, frames, error)
    }

    fn one_call(stream: &[u8], max_frame: u64) -> Decoded {
        FrameDecoder::new(max_frame).decode(stream, u64::MAX)
    }

    fn err(offset: u64, kind: FrameErrorKind) -> Option<FrameError> {
        Some(FrameError { offset, kind })
    }

    #[test]
    fn encode_header_matches_the_seeds_and_decodes_back() {
        assert_eq!(&encode_header(0).unwrap(), b"0         ");
        assert_eq!(&encode_header(42).unwrap(), b"42        ");
        assert_eq!(&encode_header(MAX_HEADER_VALUE).unwrap(), b"9999999999");
        assert_eq!(encode_header(MAX_HEADER_VALUE + 1), None);
        for len in [1u64, 9, 10, 99, 100, 65_536, 123_456_789] {
            let header = encode_header(len).unwrap();
            assert_eq!(header.to_vec(), format!("{len:<10}").into_bytes());
            let mut dec = FrameDecoder::new(u64::MAX);
            let d = dec.decode(&header, u64::MAX);
            assert!(d.error.is_none(), "{len}");
            assert_eq!(dec.payload_remaining(), len);
        }
    }

    #[test]
    fn left_aligned_like_the_seeds() {
        let stream = b"5         hello";
        let d = one_call(stream, MIB16);
        assert_eq!(d.released, stream.len());
        assert_eq!(d.frames, 1);
        assert_eq!(d.error, None);
        assert!(d.carried.is_empty());
    }

    #[test]
    fn right_aligned() {
        let d = one_call(b"         5hello", MIB16);
        assert_eq!((d.released, d.frames, d.error), (15, 1, None));
    }

    #[test]
    fn padded_on_both_sides() {
        let d = one_call(b"   12     hello world!", MIB16);
        assert_eq!((d.released, d.frames, d.error), (22, 1, None));
    }

    #[test]
    fn leading_zeros() {
        let d = one_call(b"0000000003abc", MIB16);
        assert_eq!((d.released, d.frames, d.error), (13, 1, None));
        let d = one_call(b"  007     abcdefg", MIB16);
        assert_eq!((d.released, d.frames, d.error), (17, 1, None));
    }

    #[test]
    fn zero_length_frame_completes_with_its_header() {
        let mut dec = FrameDecoder::new(MIB16);
        let d = dec.decode(b"0         ", u64::MAX);
        assert_eq!((d.released, d.frames, d.error), (10, 1, None));
        assert!(dec.at_boundary());
        let d = dec.decode(b"         00000000000", u64::MAX);
        assert_eq!((d.released, d.frames), (20, 2));
        assert_eq!(dec.frames(), 3);
    }

    #[test]
    fn several_frames_in_one_call() {
        let stream = b"3         abc2         de0         1         f";
        let d = one_call(stream, MIB16);
        assert_eq!((d.released, d.frames, d.error), (stream.len(), 4, None));
    }

    #[test]
    fn bad_byte_at_its_offset() {
        let d = one_call(b"12x       ", MIB16);
        assert_eq!(d.error, err(2, FrameErrorKind::BadByte(b'x')));
        assert_eq!(d.released, 0);
        // After a valid frame: offset is absolute.
        let d = one_call(b"1         a\t", MIB16);
        assert_eq!(d.error, err(11, FrameErrorKind::BadByte(b'\t')));
        assert_eq!((d.released, d.frames), (11, 1));
        // Signs, NUL and high bytes are bad too.
        for b in [b'-', b'+', 0u8, 0xff, b'\n', b'\r'] {
            let d = one_call(&[b'1', b], MIB16);
            assert_eq!(d.error, err(1, FrameErrorKind::BadByte(b)), "byte {b:#x}");
        }
    }

    #[test]
    fn bad_byte_as_tenth_byte_of_spaces_is_bad_byte_not_no_digits() {
        let d = one_call(b"         x", MIB16);
        assert_eq!(d.error, err(9, FrameErrorKind::BadByte(b'x')));
    }

    #[test]
    fn split_digits_at_the_digit() {
        let d = one_call(b"12 3      ", MIB16);
        assert_eq!(d.error, err(3, FrameErrorKind::SplitDigits));
        let d = one_call(b" 1       2", MIB16);
        assert_eq!(d.error, err(9, FrameErrorKind::SplitDigits));
    }

    #[test]
    fn no_digits_at_the_tenth_byte() {
        let d = one_call(b"          ", MIB16);
        assert_eq!(d.error, err(9, FrameErrorKind::NoDigits));
        assert_eq!(d.released, 0);
        // Nine spaces are just an incomplete header.
        let mut dec = FrameDecoder::new(MIB16);
        let d = dec.decode(b"         ", u64::MAX);
        assert_eq!(d, Decoded::default());
        assert!(!dec.at_boundary());
        assert_eq!(dec.offset(), 9);
    }

    #[test]
    fn too_large_at_the_digit_that_pushed_it_over() {
        // 100 > 99 once the third digit arrives.
        let d = one_call(b"100       ", 99);
        assert_eq!(d.error, err(2, FrameErrorKind::TooLarge { max: 99 }));
        // Leading zeros do not count against the limit.
        let d = one_call(b"00000099  ", 99);
        assert_eq!(d.error, None);
    }

    #[test]
    fn max_frame_boundary_equal_is_accepted_plus_one_is_not() {
        let max = 1000;
        let mut stream = b"1000      ".to_vec();
        stream.extend(std::iter::repeat_n(b'z', 1000));
        let d = one_call(&stream, max);
        assert_eq!((d.released, d.frames, d.error), (1010, 1, None));
        let d = one_call(b"1001      ", max);
        assert_eq!(d.error, err(3, FrameErrorKind::TooLarge { max }));
        let d = one_call(b"      1001", max);
        assert_eq!(d.error, err(9, FrameErrorKind::TooLarge { max }));
    }

    #[test]
    fn max_frame_zero_allows_only_empty_frames() {
        let d = one_call(b"0         000000000 ", 0);
        assert_eq!((d.frames, d.error), (2, None));
        let d = one_call(b"1         ", 0);
        assert_eq!(d.error, err(0, FrameErrorKind::TooLarge { max: 0 }));
    }

    #[test]
    fn ten_nines() {
        // Under the default limit: too large at the 8th digit (99999999 > 16 MiB).
        let d = one_call(b"9999999999", MIB16);
        assert_eq!(d.error, err(7, FrameErrorKind::TooLarge { max: MIB16 }));
        // Without a limit it is a valid header; the payload streams through.
        let mut dec = FrameDecoder::new(u64::MAX);
        let d = dec.decode(b"9999999999", u64::MAX);
        assert_eq!((d.released, d.frames, d.error), (10, 0, None));
        let chunk = [0u8; 4096];
        let d = dec.decode(&chunk, u64::MAX);
        assert_eq!(d.released, 4096);
        assert_eq!(dec.offset(), 4106);
        assert!(!dec.at_boundary());
        // Exactly at the limit.
        let d = one_call(b"9999999999", 9_999_999_999);
        assert_eq!(d.error, None);
        let d = one_call(b"9999999999", 9_999_999_998);
        assert_eq!(
            d.error,
            err(9, FrameErrorKind::TooLarge { max: 9_999_999_998 })
        );
    }

    #[test]
    fn error_is_sticky() {
        let mut dec = FrameDecoder::new(MIB16);
        let first = dec.decode(b"2         okA", u64::MAX);
        let e = err(12, FrameErrorKind::BadByte(b'A'));
        assert_eq!((first.released, first.frames, first.error), (12, 1, e));
        for input in [&b"2         ok"[..], b"", b"0         "] {
            let d = dec.decode(input, u64::MAX);
            assert_eq!(
                d,
                Decoded {
                    error: e,
                    ..Decoded::default()
                }
            );
        }
        assert_eq!(dec.error(), e);
        assert_eq!(dec.offset(), 12);
        assert_eq!(dec.frames(), 1);
        assert!(!dec.at_boundary());
        // Even with max_frames == 0 the error is reported.
        assert_eq!(dec.decode(b"x", 0).error, e);
    }

    #[test]
    fn max_frames_stops_right_after_the_frame() {
        let stream = b"1         a0         2         bc";
        let mut dec = FrameDecoder::new(MIB16);
        let d = dec.decode(stream, 1);
        assert_eq!((d.released, d.frames), (11, 1));
        assert_eq!(dec.offset(), 11);
        assert!(dec.at_boundary());
        // The zero-length frame is a frame of its own.
        let d = dec.decode(&stream[11..], 1);
        assert_eq!((d.released, d.frames), (10, 1));
        let d = dec.decode(&stream[21..], 5);
        assert_eq!((d.released, d.frames), (12, 1));
        assert_eq!(dec.frames(), 3);
        // Zero consumes nothing.
        let mut dec = FrameDecoder::new(MIB16);
        assert_eq!(dec.decode(stream, 0), Decoded::default());
        assert_eq!(dec.offset(), 0);
    }

    #[test]
    fn max_frames_does_not_consume_a_following_partial_header() {
        let mut dec = FrameDecoder::new(MIB16);
        let d = dec.decode(b"1         a1   ", 1);
        assert_eq!((d.released, d.frames), (11, 1));
        assert_eq!(dec.offset(), 11);
        assert!(dec.at_boundary());
    }

    #[test]
    fn max_frames_does_not_hide_a_following_bad_header() {
        let mut dec = FrameDecoder::new(MIB16);
        let d = dec.decode(b"1         ax", 1);
        assert_eq!((d.released, d.frames, d.error), (11, 1, None));
        let d = dec.decode(b"x", 1);
        assert_eq!(d.error, err(11, FrameErrorKind::BadByte(b'x')));
    }

    #[test]
    fn header_carried_across_calls() {
        let mut dec = FrameDecoder::new(MIB16);
        let d = dec.decode(b"3    ", u64::MAX);
        assert_eq!(d, Decoded::default());
        assert_eq!(dec.offset(), 5);
        let d = dec.decode(b"  ", u64::MAX);
        assert_eq!(d, Decoded::default());
        let d = dec.decode(b"   ab", u64::MAX);
        assert_eq!(d.carried.as_slice(), b"3      ");
        assert_eq!(d.released, 5);
        assert_eq!(d.frames, 0);
        let d = dec.decode(b"c4    ", u64::MAX);
        assert!(d.carried.is_empty());
        assert_eq!((d.released, d.frames), (1, 1));
        // A held header that turns out bad is not carried.
        let d = dec.decode(b"  x", u64::MAX);
        assert!(d.carried.is_empty());
        assert_eq!(d.released, 0);
        assert_eq!(d.error, err(20, FrameErrorKind::BadByte(b'x')));
    }

    #[test]
    fn payload_remaining_counts_down_inside_a_payload_only() {
        let mut dec = FrameDecoder::new(MIB16);
        assert_eq!(dec.payload_remaining(), 0);
        dec.decode(b"5    ", u64::MAX);
        assert_eq!(dec.payload_remaining(), 0, "inside a header");
        let d = dec.decode(b"     he", u64::MAX);
        assert_eq!(d.released, 7);
        assert_eq!(dec.payload_remaining(), 3);
        dec.decode(b"llo", u64::MAX);
        assert_eq!(dec.payload_remaining(), 0, "back at a boundary");
        dec.decode(b"x", u64::MAX);
        assert_eq!(dec.payload_remaining(), 0, "after an error");
    }

    #[test]
    fn carried_then_a_later_bad_header_in_the_same_call() {
        let mut dec = FrameDecoder::new(MIB16);
        dec.decode(b"2  ", u64::MAX);
        let d = dec.decode(b"       hi!", u64::MAX);
        assert_eq!(d.carried.as_slice(), b"2  ");
        assert_eq!(d.released, 9);
        assert_eq!(d.frames, 1);
        assert_eq!(d.error, err(12, FrameErrorKind::BadByte(b'!')));
    }

    #[test]
    fn one_byte_at_a_time() {
        let stream = b"3         abc  0       12        hello world!0000000000";
        let (echoed, frames, error) = feed(&mut FrameDecoder::new(MIB16), stream, 1);
        assert_eq!(echoed, stream);
        assert_eq!((frames, error), (4, None));
        let bad = b"1         a1 2";
        let mut dec = FrameDecoder::new(MIB16);
        let (echoed, frames, error) = feed(&mut dec, bad, 1);
        assert_eq!(echoed, b"1         a");
        assert_eq!((frames, error), (1, err(13, FrameErrorKind::SplitDigits)));
    }

    #[test]
    fn empty_input_is_a_no_op() {
        let mut dec = FrameDecoder::new(MIB16);
        assert_eq!(dec.decode(b"", u64::MAX), Decoded::default());
        assert!(dec.at_boundary());
        assert_eq!((dec.offset(), dec.frames()), (0, 0));
    }

    #[test]
    fn error_display_is_one_human_line() {
        let e = FrameError {
            offset: 1234,
            kind: FrameErrorKind::BadByte(b'x'),
        };
        assert_eq!(
            e.to_string(),
            "invalid frame header at byte 1234: byte 0x78 is not a digit or space"
        );
        for kind in [
            FrameErrorKind::SplitDigits,
            FrameErrorKind::NoDigits,
            FrameErrorKind::TooLarge { max: 7 },
        ] {
            let line = FrameError { offset: 0, kind }.to_string();
            assert!(!line.contains('\n'));
            assert!(line.starts_with("invalid frame header at byte 0: "));
        }
        assert_eq!(FrameErrorKind::TooLarge { max: 1 }.name(), "too_large");
    }

    #[test]
    fn header_bytes_equality_ignores_unused_slots() {
        let mut a = HeaderBytes::default();
        a.push(b'1');
        let full = {
            let mut h = HeaderBytes::default();
            for b in *b"1234567890" {
                assert!(h.push(b));
            }
            assert!(!h.push(b'x'));
            h
        };
        assert_eq!(full.prefix(1), a);
        assert_eq!(full.prefix(99), full);
        assert_eq!(format!("{a:?}"), "HeaderBytes(b\"1\")");
    }

    #[test]
    fn events_of_two_frames_split_inside_the_header_and_the_payload() {
        let mut dec = FrameDecoder::new(MIB16);
        assert_eq!(dec.next_event(b"5   "), (4, None));
        assert_eq!(dec.offset(), 4);
        let input = b"      hel";
        let (n, ev) = dec.next_event(input);
        assert_eq!(n, 6, "only the rest of the header");
        assert_eq!(
            ev,
            Some(Event::Header {
                len: 5,
                bytes: *b"5         "
            })
        );
        assert_eq!(
            dec.next_event(&input[n..]),
            (3, Some(Event::Payload(b"hel")))
        );
        assert_eq!(dec.next_event(b""), (0, None), "inside the payload");
        let input = b"lo0         ";
        assert_eq!(dec.next_event(input), (2, Some(Event::Payload(b"lo"))));
        assert!(!dec.at_boundary(), "the frame's end is not reported yet");
        assert_eq!(dec.frames(), 0);
        // FrameEnd consumes nothing, and comes even without input.
        assert_eq!(dec.next_event(b""), (0, Some(Event::FrameEnd)));
        assert_eq!((dec.frames(), dec.at_boundary()), (1, true));
        // A zero-length frame: its header, then its end at once.
        let (n, ev) = dec.next_event(&input[2..]);
        assert_eq!((n, ev.is_some()), (10, true));
        assert_eq!(dec.next_event(b""), (0, Some(Event::FrameEnd)));
        assert_eq!(dec.next_event(b""), (0, None));
        assert_eq!((dec.offset(), dec.frames()), (25, 2));
    }

    #[test]
    fn an_error_event_consumes_the_valid_bytes_before_it_and_sticks() {
        let mut dec = FrameDecoder::new(MIB16);
        let e = FrameError {
            offset: 2,
            kind: FrameErrorKind::BadByte(b'x'),
        };
        assert_eq!(dec.next_event(b"12x4"), (2, Some(Event::Error(e))));
        assert_eq!(dec.offset(), 2);
        assert_eq!(dec.next_event(b"x4"), (0, Some(Event::Error(e))));
        assert_eq!(dec.next_event(b""), (0, Some(Event::Error(e))));
        assert_eq!(dec.error(), Some(e));
        // The iterator stops after the error instead of repeating it.
        let events: Vec<_> = dec.events(b"1         a").collect();
        assert_eq!(events, [Event::Error(e)]);
    }

    #[test]
    fn the_events_iterator_uses_up_its_input() {
        let stream = b"3         abc0         2         d";
        let mut dec = FrameDecoder::new(MIB16);
        let mut events = dec.events(stream);
        let mut payload = Vec::new();
        let mut ends = 0;
        for ev in &mut events {
            match ev {
                Event::Payload(p) => payload.extend_from_slice(p),
                Event::FrameEnd => ends += 1,
                Event::Header { .. } => {}
                Event::Error(e) => panic!("{e}"),
            }
        }
        assert_eq!(events.consumed(), stream.len());
        assert_eq!((payload.as_slice(), ends), (&b"abcd"[..], 2));
        assert_eq!(dec.payload_remaining(), 1);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::Index;

        /// One frame: its payload and how its header is padded.
        #[derive(Debug, Clone)]
        struct Frame {
            payload: Vec<u8>,
            /// Spaces before the digits (capped to what fits).
            lead: usize,
            /// Leading zeros (capped to what fits).
            zeros: usize,
        }

        impl Frame {
            fn encode(&self, out: &mut Vec<u8>) {
                let digits = self.payload.len().to_string();
                let zeros = self.zeros.min(HEADER_LEN - digits.len());
                let lead = self.lead.min(HEADER_LEN - digits.len() - zeros);
                let mut header = " ".repeat(lead) + &"0".repeat(zeros) + &digits;
                while header.len() < HEADER_LEN {
                    header.push(' ');
                }
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(&self.payload);
            }
        }

        fn frame() -> impl Strategy<Value = Frame> {
            (
                prop_oneof![
                    2 => prop::collection::vec(any::<u8>(), 0..4),
                    3 => prop::collection::vec(any::<u8>(), 0..300),
                ],
                prop_oneof![Just(0usize), Just(9), 0usize..10],
                prop_oneof![3 => Just(0usize), 1 => 0usize..10],
            )
                .prop_map(|(payload, lead, zeros)| Frame {
                    payload,
                    lead,
                    zeros,
                })
        }

        /// A 10-byte header candidate drawn mostly from digits and spaces.
        fn header_candidate() -> impl Strategy<Value = Vec<u8>> {
            let byte = prop_oneof![
                6 => b'0'..=b'9',
                6 => Just(b' '),
                1 => any::<u8>(),
                1 => prop::sample::select(vec![b'x', b'-', b'+', b'\t', b'\n', 0, 0xff]),
            ];
            prop::collection::vec(byte, HEADER_LEN)
        }

        /// An independent whole-header reference: the earliest proof of
        /// invalidity, or the announced length.
        fn reference(h: &[u8], max: u64) -> Result<u64, (usize, FrameErrorKind)> {
            let is_digit = |b: &u8| b.is_ascii_digit();
            let mut errors = Vec::new();
            if let Some(i) = h.iter().position(|b| !b.is_ascii_digit() && *b != b' ') {
                errors.push((i, FrameErrorKind::BadByte(h[i])));
            }
            match h.iter().position(is_digit) {
                None => errors.push((HEADER_LEN - 1, FrameErrorKind::NoDigits)),
                Some(start) => {
                    let end = start + h[start..].iter().take_while(|b| is_digit(b)).count();
                    if let Some(j) = h[end..].iter().position(is_digit) {
                        errors.push((end + j, FrameErrorKind::SplitDigits));
                    }
                    for k in start..end {
                        let text = std::str::from_utf8(&h[start..=k]).unwrap_or("");
                        let value: u128 = text.parse().unwrap_or(u128::MAX);
                        if value > u128::from(max) {
                            errors.push((k, FrameErrorKind::TooLarge { max }));
                            break;
                        }
                    }
                }
            }
            // min_by_key keeps the first of equal minima: BadByte wins ties.
            match errors.into_iter().min_by_key(|(i, _)| *i) {
                Some(e) => Err(e),
                None => {
                    let text = std::str::from_utf8(h).unwrap_or("").trim();
                    text.parse().map_err(|_| (0, FrameErrorKind::NoDigits))
                }
            }
        }

        /// Feeds `stream` split at `cuts`, with per-call frame limits cycling
        /// through `limits`; re-feeds what a limited call left unconsumed.
        fn drive(
            max_frame: u64,
            stream: &[u8],
            cuts: &[Index],
            limits: &[u64],
        ) -> (Vec<u8>, u64, Option<FrameError>) {
            let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            bounds.push(0);
            bounds.push(stream.len());
            bounds.sort_unstable();
            let mut dec = FrameDecoder::new(max_frame);
            let mut echoed = Vec::new();
            let mut frames = 0;
            let mut call = 0usize;
            for w in bounds.windows(2) {
                let mut piece = &stream[w[0]..w[1]];
                loop {
                    let limit = limits
                        .get(call % limits.len().max(1))
                        .copied()
                        .unwrap_or(u64::MAX);
                    call += 1;
                    let before = dec.offset();
                    let d = dec.decode(piece, limit);
                    assert!(d.released <= piece.len());
                    assert!(d.frames <= limit);
                    echoed.extend_from_slice(d.carried.as_slice());
                    echoed.extend_from_slice(&piece[..d.released]);
                    frames += d.frames;
                    if let Some(e) = d.error {
                        assert_eq!(dec.decode(piece, u64::MAX).error, Some(e));
                        return (echoed, frames, Some(e));
                    }
                    let consumed = usize::try_from(dec.offset() - before).unwrap_or(usize::MAX);
                    assert!(consumed >= d.released);
                    piece = &piece[consumed..];
                    if piece.is_empty() {
                        break;
                    }
                    assert_eq!(d.frames, limit, "stopped early without reaching the limit");
                }
            }
            assert_eq!(dec.frames(), frames);
            (echoed, frames, dec.error())
        }

        /// An event with its payload owned, for comparing runs.
        #[derive(Debug, Clone, PartialEq, Eq)]
        enum Owned {
            Header { len: u64, bytes: Vec<u8> },
            Payload(Vec<u8>),
            FrameEnd,
            Error(FrameError),
        }

        /// The events of `stream` cut at `cuts`, payload pieces joined (the
        /// one thing a split may change). Checks the `next_event` contract on
        /// the way.
        fn events_over(max_frame: u64, stream: &[u8], cuts: &[Index]) -> Vec<Owned> {
            let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            bounds.push(0);
            bounds.push(stream.len());
            bounds.sort_unstable();
            let mut dec = FrameDecoder::new(max_frame);
            let mut out: Vec<Owned> = Vec::new();
            for w in bounds.windows(2) {
                let mut piece = &stream[w[0]..w[1]];
                loop {
                    let before = dec.offset();
                    let (consumed, event) = dec.next_event(piece);
                    assert!(consumed <= piece.len());
                    assert_eq!(dec.offset() - before, consumed as u64);
                    let Some(event) = event else {
                        assert_eq!(consumed, piece.len(), "None before the input ran out");
                        break;
                    };
                    match event {
                        Event::Header { len, bytes } => {
                            assert!(len <= max_frame);
                            assert_eq!(&bytes[HEADER_LEN - consumed..], &piece[..consumed]);
                            out.push(Owned::Header {
                                len,
                                bytes: bytes.to_vec(),
                            });
                        }
                        Event::Payload(p) => {
                            assert!(!p.is_empty());
                            assert_eq!(p, &piece[..consumed]);
                            match out.last_mut() {
                                Some(Owned::Payload(joined)) => joined.extend_from_slice(p),
                                _ => out.push(Owned::Payload(p.to_vec())),
                            }
                        }
                        Event::FrameEnd => {
                            assert_eq!(consumed, 0);
                            out.push(Owned::FrameEnd);
                        }
                        Event::Error(e) => {
                            assert_eq!(dec.offset(), e.offset);
                            assert_eq!(dec.next_event(piece), (0, Some(Event::Error(e))));
                            out.push(Owned::Error(e));
                            return out;
                        }
                    }
                    piece = &piece[consumed..];
                }
            }
            out
        }

        /// What `decode` would echo, frame count and error, from the events.
        fn fold(events: &[Owned]) -> (Vec<u8>, u64, Option<FrameError>) {
            let mut echoed = Vec::new();
            let mut frames = 0;
            let mut error = None;
            for e in events {
                match e {
                    Owned::Header { bytes, .. } | Owned::Payload(bytes) => {
                        echoed.extend_from_slice(bytes)
                    }
                    Owned::FrameEnd => frames += 1,
                    Owned::Error(e) => error = Some(*e),
                }
            }
            (echoed, frames, error)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// (a) Any split of a valid stream echoes exactly the stream, frame count intact.
            #[test]
            fn any_split_of_a_valid_stream_echoes_it_verbatim(
                frames in prop::collection::vec(frame(), 0..12),
                cuts in prop::collection::vec(any::<Index>(), 0..24),
                limits in prop::collection::vec(prop_oneof![Just(u64::MAX), 1u64..4], 1..4),
            ) {
                let mut stream = Vec::new();
                for f in &frames {
                    f.encode(&mut stream);
                }
                let (echoed, count, error) = drive(300, &stream, &cuts, &limits);
                prop_assert_eq!(error, None);
                prop_assert_eq!(count, frames.len() as u64);
                prop_assert_eq!(echoed, stream);
            }

            /// (b) A bad header after valid frames: same error for every split,
            /// and exactly the valid prefix echoed.
            #[test]
            fn a_bad_header_is_found_at_the_same_offset_for_every_split(
                frames in prop::collection::vec(frame(), 0..6),
                max_frame in prop_oneof![Just(300u64), 300u64..100_000, Just(u64::MAX)],
                header in header_candidate().prop_filter("must be invalid", |h| {
                    reference(h, 300).is_err() && reference(h, u64::MAX).is_err()
                }),
                tail in prop::collection::vec(any::<u8>(), 0..20),
                cuts in prop::collection::vec(any::<Index>(), 0..24),
                limits in prop::collection::vec(prop_oneof![Just(u64::MAX), 1u64..4], 1..4),
            ) {
                let mut stream = Vec::new();
                for f in &frames {
                    f.encode(&mut stream);
                }
                let prefix = stream.len();
                let (index, kind) = match reference(&header, max_frame) {
                    Err(e) => e,
                    Ok(_) => unreachable!("filtered to invalid headers"),
                };
                stream.extend_from_slice(&header);
                stream.extend_from_slice(&tail);
                let (echoed, count, error) = drive(max_frame, &stream, &cuts, &limits);
                prop_assert_eq!(error, Some(FrameError { offset: (prefix + index) as u64, kind }));
                prop_assert_eq!(count, frames.len() as u64);
                prop_assert_eq!(&echoed[..], &stream[..prefix]);
            }

            /// Arbitrary bytes: one call and byte-at-a-time agree, and nothing panics.
            #[test]
            fn arbitrary_bytes_agree_between_one_call_and_bytewise(
                stream in prop::collection::vec(prop_oneof![
                    4 => b'0'..=b'9', 4 => Just(b' '), 2 => any::<u8>()
                ], 0..200),
                max_frame in prop_oneof![Just(0u64), 0u64..50, Just(u64::MAX)],
            ) {
                let whole = drive(max_frame, &stream, &[], &[u64::MAX]);
                let mut dec = FrameDecoder::new(max_frame);
                let bytewise = feed(&mut dec, &stream, 1);
                prop_assert_eq!(whole, bytewise);
            }

            /// Any split of a valid stream gives the frames' events, each
            /// payload's bytes whole once its pieces are joined.
            #[test]
            fn any_split_of_a_valid_stream_gives_the_same_events(
                frames in prop::collection::vec(frame(), 0..12),
                cuts in prop::collection::vec(any::<Index>(), 0..24),
            ) {
                let mut stream = Vec::new();
                let mut expected = Vec::new();
                for f in &frames {
                    let start = stream.len();
                    f.encode(&mut stream);
                    expected.push(Owned::Header {
                        len: f.payload.len() as u64,
                        bytes: stream[start..start + HEADER_LEN].to_vec(),
                    });
                    if !f.payload.is_empty() {
                        expected.push(Owned::Payload(f.payload.clone()));
                    }
                    expected.push(Owned::FrameEnd);
                }
                prop_assert_eq!(events_over(300, &stream, &cuts), expected);
            }

            /// Any bytes, any split: the same events as one call, and the
            /// events fold to exactly what `decode` echoes.
            #[test]
            fn any_split_of_any_stream_gives_the_same_events_as_decode(
                frames in prop::collection::vec(frame(), 0..4),
                tail in prop::collection::vec(prop_oneof![
                    4 => b'0'..=b'9', 4 => Just(b' '), 2 => any::<u8>()
                ], 0..60),
                max_frame in prop_oneof![Just(0u64), 0u64..50, Just(300u64), Just(u64::MAX)],
                cuts in prop::collection::vec(any::<Index>(), 0..24),
                limits in prop::collection::vec(prop_oneof![Just(u64::MAX), 1u64..4], 1..4),
            ) {
                let mut stream = Vec::new();
                for f in &frames {
                    f.encode(&mut stream);
                }
                stream.extend_from_slice(&tail);
                let whole = events_over(max_frame, &stream, &[]);
                prop_assert_eq!(&events_over(max_frame, &stream, &cuts), &whole);
                prop_assert_eq!(fold(&whole), drive(max_frame, &stream, &cuts, &limits));
            }
        }
    }
}
