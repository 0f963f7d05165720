//! Fuzz target for `echod_common::framing::FrameDecoder`.
//!
//! The first bytes of the input choose `max_frame`, the split points and the
//! per-call frame limits; the rest is the stream. The stream is decoded in one
//! call, then again split at those points (re-feeding what a frame-limited
//! call left unconsumed), then one byte at a time. All three must echo the
//! same bytes, count the same frames and report the same error; the echo must
//! be a prefix of the stream; and nothing may panic.
#![no_main]

use echod_common::framing::{FrameDecoder, FrameError};
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

/// Decodes `stream` cut at `bounds` (sorted, within the stream), with the
/// per-call frame limits cycling through `limits`.
fn run(max_frame: u64, stream: &[u8], bounds: &[usize], limits: &[u64]) -> Outcome {
    let mut dec = FrameDecoder::new(max_frame);
    let mut echoed = Vec::new();
    let mut frames = 0u64;
    let mut call = 0usize;
    let mut start = 0usize;
    'chunks: for &end in bounds.iter().chain(std::iter::once(&stream.len())) {
        let mut piece = &stream[start..end];
        start = end;
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
    assert_eq!(dec.frames(), frames);
    Outcome {
        echoed,
        frames,
        error: dec.error(),
        offset: dec.offset(),
        at_boundary: dec.at_boundary(),
    }
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

    if stream.len() <= 4096 {
        let bytewise_bounds: Vec<usize> = (1..stream.len()).collect();
        let bytewise = run(max_frame, stream, &bytewise_bounds, &[u64::MAX]);
        assert_eq!(whole, bytewise);
    }
});
