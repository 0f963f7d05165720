//! Fuzz target for `echod_common::framing::FrameDecoder`.
//!
//! The first bytes of the input choose `max_frame`, the split points and the
//! per-call frame limits; the rest is the stream. The stream is decoded in one
//! call, then again split at those points (re-feeding what a frame-limited
//! call left unconsumed), then one byte at a time; and read as events
//! (`next_event`) at those split points. All must echo the same bytes (for
//! events: each header's bytes and payload pieces), count the same frames and
//! report the same error; the echo must be a prefix of the stream; and nothing
//! may panic.
#![no_main]

use echod_common::framing::{Event, FrameDecoder, FrameError, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

/// What a run of the decoder over the whole stream produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    echoed: Vec<u8>,
    frames: u64,
    error: Option<FrameError>,
    offset: u64,
    at_boundary: bool,
}

impl Outcome {
    /// A run's outcome: what it echoed and counted, and where `dec` ended.
    fn new(dec: &FrameDecoder, echoed: Vec<u8>, frames: u64) -> Self {
        assert_eq!(dec.frames(), frames);
        Outcome {
            echoed,
            frames,
            error: dec.error(),
            offset: dec.offset(),
            at_boundary: dec.at_boundary(),
        }
    }
}

/// `stream` cut at `bounds` (sorted, within the stream).
fn pieces<'a>(stream: &'a [u8], bounds: &'a [usize]) -> impl Iterator<Item = &'a [u8]> {
    let starts = std::iter::once(0).chain(bounds.iter().copied());
    let ends = bounds.iter().copied().chain(std::iter::once(stream.len()));
    starts
        .zip(ends)
        .map(move |(start, end)| &stream[start..end])
}

/// Decodes `stream` cut at `bounds`, with the per-call frame limits cycling
/// through `limits`.
fn run(max_frame: u64, stream: &[u8], bounds: &[usize], limits: &[u64]) -> Outcome {
    let mut dec = FrameDecoder::new(max_frame);
    let mut echoed = Vec::new();
    let mut frames = 0u64;
    let mut call = 0usize;
    'chunks: for mut piece in pieces(stream, bounds) {
        loop {
            let limit = limits[call % limits.len()];
            call += 1;
            let before = dec.offset();
            let d = dec.decode(piece, limit);
            assert!(d.released <= piece.len());
            assert!(d.frames <= limit);
            echoed.extend_from_slice(d.carried.as_slice());
            echoed.extend_from_slice(&piece[..d.released]);
            frames += d.frames;
            if let Some(e) = d.error {
                // Sticky: the same error, nothing released.
                let again = dec.decode(piece, u64::MAX);
                assert_eq!((again.error, again.released, again.frames), (Some(e), 0, 0));
                assert!(again.carried.as_slice().is_empty());
                assert_eq!(dec.offset(), e.offset);
                break 'chunks;
            }
            let consumed = usize::try_from(dec.offset() - before).expect("offset fits");
            assert!(consumed >= d.released && consumed <= piece.len());
            piece = &piece[consumed..];
            if piece.is_empty() {
                break;
            }
            // Only a frame limit may leave input unconsumed.
            assert_eq!(d.frames, limit);
        }
    }
    Outcome::new(&dec, echoed, frames)
}

/// Reads `stream` cut at `bounds` as events, checking the `next_event`
/// contract, and folds them into what `decode` would have echoed.
fn run_events(max_frame: u64, stream: &[u8], bounds: &[usize]) -> Outcome {
    let mut dec = FrameDecoder::new(max_frame);
    let mut echoed = Vec::new();
    let mut frames = 0u64;
    'chunks: for mut piece in pieces(stream, bounds) {
        loop {
            let before = dec.offset();
            let (consumed, event) = dec.next_event(piece);
            assert!(consumed <= piece.len());
            assert_eq!(dec.offset() - before, consumed as u64);
            match event {
                None => {
                    assert_eq!(consumed, piece.len(), "None before the input ran out");
                    break;
                }
                Some(Event::Header { len, bytes }) => {
                    assert!(len <= max_frame);
                    assert_eq!(&bytes[HEADER_LEN - consumed..], &piece[..consumed]);
                    echoed.extend_from_slice(&bytes);
                }
                Some(Event::Payload(p)) => {
                    assert!(!p.is_empty());
                    assert_eq!(p, &piece[..consumed]);
                    echoed.extend_from_slice(p);
                }
                Some(Event::FrameEnd) => {
                    assert_eq!(consumed, 0);
                    frames += 1;
                }
                Some(Event::Error(e)) => {
                    assert_eq!(dec.offset(), e.offset);
                    assert_eq!(dec.next_event(piece), (0, Some(Event::Error(e))));
                    break 'chunks;
                }
            }
            piece = &piece[consumed..];
        }
    }
    Outcome::new(&dec, echoed, frames)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&cuts, rest)) = rest.split_first() else {
        return;
    };
    let max_frame = match mode % 4 {
        0 => 0,
        1 => u64::from(mode / 4),
        2 => 16 * 1024 * 1024,
        _ => u64::MAX,
    };
    // Up to 7 cut points, two bytes each, then up to 3 per-call frame limits.
    let ncuts = usize::from(cuts % 8);
    let Some((cut_bytes, rest)) = rest.split_at_checked(ncuts * 2) else {
        return;
    };
    let nlimits = usize::from(cuts / 8 % 4);
    let Some((limit_bytes, stream)) = rest.split_at_checked(nlimits) else {
        return;
    };

    let mut bounds: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    bounds.sort_unstable();
    let mut limits: Vec<u64> = limit_bytes.iter().map(|&b| u64::from(b % 4) + 1).collect();
    if limits.is_empty() {
        limits.push(u64::MAX);
    }

    let whole = run(max_frame, stream, &[], &[u64::MAX]);
    assert!(stream.starts_with(&whole.echoed));
    if whole.error.is_none() {
        assert_eq!(whole.offset, stream.len() as u64);
    }

    let split = run(max_frame, stream, &bounds, &limits);
    assert_eq!(whole, split);

    let events = run_events(max_frame, stream, &bounds);
    assert_eq!(whole, events);

    if stream.len() <= 4096 {
        let bytewise_bounds: Vec<usize> = (1..stream.len()).collect();
        let bytewise = run(max_frame, stream, &bytewise_bounds, &[u64::MAX]);
        assert_eq!(whole, bytewise);
    }
});
