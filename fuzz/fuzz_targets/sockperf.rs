//! Fuzz target for `echod_common::sockperf`: the first input byte chooses
//! the split size and the next two the maximum length; the rest is a TCP
//! stream, decoded whole and then in pieces, which must give the same reply
//! bytes, message count and error. The same bytes as one datagram must not
//! panic either. Nothing may panic or loop forever.
#![no_main]

use echod_common::sockperf::reply_in_place;
use echod_common::sockperf::testing::replies as run;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let chunk = usize::from(data[0]) + 1;
    let max = u64::from(u16::from_be_bytes([data[1], data[2]]));
    let stream = &data[3..];
    assert_eq!(run(stream, chunk, max), run(stream, stream.len().max(1), max));
    let mut datagram = stream.to_vec();
    let _ = reply_in_place(&mut datagram, max);
});
