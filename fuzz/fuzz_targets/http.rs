//! Fuzz target for the metrics port's request-head reader
//! (`echod::fuzzing::parse`, in `src/server/metrics/http.rs`).
//!
//! The first byte chooses up to 7 cut points (two bytes each follow); the
//! rest is what a client sent. The reader is run on the whole input, then
//! as the metrics thread runs it (on every prefix ending at a cut, until an
//! answer that is not `Incomplete`), then on every prefix of a short input: all must give
//! the same answer. A complete head must lie within the input and the cap
//! and end in LF; routing it must not panic; and nothing may panic.
#![no_main]

use echod::fuzzing::{parse, route, Parse, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

/// The first answer that is not `Incomplete` over the prefixes of `input`
/// ending at `ends` (sorted), then at the whole input. Answers borrow from
/// `input`, so those of different prefixes compare directly.
fn fed(input: &[u8], ends: impl Iterator<Item = usize>) -> Parse<'_> {
    ends.chain(std::iter::once(input.len()))
        .map(|end| parse(&input[..end]))
        .find(|p| *p != Parse::Incomplete)
        .unwrap_or(Parse::Incomplete)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let ncuts = usize::from(cuts % 8);
    let Some((cut_bytes, input)) = rest.split_at_checked(ncuts * 2) else {
        return;
    };
    let mut bounds: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (input.len() + 1))
        .collect();
    bounds.sort_unstable();

    let whole = parse(input);
    if let Parse::Complete(head) = whole {
        assert!(head.len <= input.len() && head.len <= MAX_HEAD);
        assert_eq!(input[head.len - 1], b'\n');
        let _ = route(&head);
    }
    if input.len() >= MAX_HEAD {
        assert_ne!(whole, Parse::Incomplete, "a full window is always judged");
    }
    assert_eq!(whole, fed(input, bounds.into_iter()));
    // Every prefix, for short inputs (each parse reads its whole prefix,
    // so longer ones would slow the fuzzer more than they teach it).
    if input.len() <= 1024 {
        assert_eq!(whole, fed(input, 0..input.len()));
    }
});
