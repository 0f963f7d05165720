//! Fuzz target for `echod_common::proxy::ProxyParser`.
//!
//! The first byte picks a prefix (none, `PROXY TCP4 `, `PROXY TCP6 `, or
//! the v2 signature with a PROXY command) so the parser's deeper states are
//! reached at once, and the number of split points; the next bytes give the
//! split points; the rest is the stream. The stream is fed whole, then cut at
//! those points, then one byte at a time: all must agree on the outcome (the
//! source named, or the error) and on the bytes after the header; `consumed`
//! never exceeds what was fed, `Done` and `Error` are sticky
//! (`testing::feed_split` checks both); nothing may panic.
#![no_main]

use echod_common::proxy::testing::feed_split as run;
use echod_common::proxy::{Parsed, V2_SIGNATURE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let prefix: &[u8] = match mode % 4 {
        0 => b"",
        1 => b"PROXY TCP4 ",
        2 => b"PROXY TCP6 ",
        _ => &[],
    };
    let ncuts = usize::from(mode / 4 % 8);
    let Some((cut_bytes, rest)) = rest.split_at_checked(ncuts * 2) else {
        return;
    };
    let mut stream = Vec::with_capacity(prefix.len() + 13 + rest.len());
    stream.extend_from_slice(prefix);
    if mode % 4 == 3 {
        stream.extend_from_slice(&V2_SIGNATURE);
        stream.push(0x21);
    }
    stream.extend_from_slice(rest);

    let mut bounds: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    bounds.sort_unstable();

    let whole = run(&stream, &[]);
    if let Parsed::Done { .. } = whole.0 {
        assert!(stream.ends_with(&whole.1));
    } else {
        assert!(whole.1.is_empty());
    }
    assert_eq!(run(&stream, &bounds), whole);
    if stream.len() <= 4096 {
        let bytewise: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(run(&stream, &bytewise), whole);
    }
});
