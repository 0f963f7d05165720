//! Framed mode: stdin lines go out as frames; received frames are printed
//! as their payloads, a line each.

use std::io::{self, Write};

use echod_common::framing::{encode_header, Event, FrameDecoder, FrameError, HEADER_LEN};

/// Builds one frame: the 10-byte left-aligned decimal header, then
/// `payload`. `None` if the payload is too long for a header to state.
pub(crate) fn encode_frame(payload: &[u8]) -> Option<Vec<u8>> {
    let header = encode_header(payload.len() as u64)?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    Some(frame)
}

/// Prints the payloads of the frames the server sends back, each followed by
/// `\n`, using the library's streaming [`FrameDecoder`]; header bytes may
/// arrive split anywhere. No length limit: a payload streams through to the
/// output as it arrives, whatever size the server announces.
pub(crate) struct FrameReader {
    decoder: FrameDecoder,
}

/// Why [`FrameReader::feed`] stopped.
pub(crate) enum FeedError {
    /// The server sent an invalid frame header.
    Frame(FrameError),
    /// Writing the output failed.
    Output(io::Error),
}

impl FrameReader {
    pub(crate) fn new() -> Self {
        FrameReader {
            decoder: FrameDecoder::new(u64::MAX),
        }
    }

    /// True when the stream is between two frames.
    pub(crate) fn at_boundary(&self) -> bool {
        self.decoder.at_boundary()
    }

    /// Feeds received bytes; payload bytes go to `out`, a `\n` after each
    /// frame. Everything before an invalid header is written before the error
    /// is returned.
    pub(crate) fn feed<W: Write>(&mut self, data: &[u8], out: &mut W) -> Result<(), FeedError> {
        for event in self.decoder.events(data) {
            match event {
                Event::Header { .. } => {}
                Event::Payload(payload) => out.write_all(payload).map_err(FeedError::Output)?,
                Event::FrameEnd => out.write_all(b"\n").map_err(FeedError::Output)?,
                Event::Error(e) => return Err(FeedError::Frame(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_decode_to_lines() {
        let mut wire = encode_frame(b"hello").unwrap();
        wire.extend(encode_frame(b"").unwrap());
        wire.extend(encode_frame(b"world!").unwrap());
        for split in 1..wire.len() {
            let mut reader = FrameReader::new();
            let mut out = Vec::new();
            for piece in wire.chunks(split) {
                assert!(reader.feed(piece, &mut out).is_ok());
            }
            assert!(reader.at_boundary());
            assert_eq!(out, b"hello\n\nworld!\n", "split {split}");
        }
    }

    #[test]
    fn bad_header_is_a_protocol_error_after_the_frames_before_it() {
        let mut wire = encode_frame(b"ok").unwrap();
        wire.extend_from_slice(b"12x       ");
        for split in 1..wire.len() {
            let mut reader = FrameReader::new();
            let mut out = Vec::new();
            let mut error = None;
            for piece in wire.chunks(split) {
                if let Err(e) = reader.feed(piece, &mut out) {
                    error = Some(e);
                    break;
                }
            }
            let Some(FeedError::Frame(e)) = error else {
                panic!("split {split}: no frame error");
            };
            assert_eq!(e.offset, 14, "split {split}");
            assert_eq!(out, b"ok\n", "split {split}");
        }
    }
}
