//! Bulk streams: large messages on few connections, which the daemon echoes
//! with `splice(2)` through its loop's pipe. Every byte comes back, in
//! order, whether the client reads at once, reads slowly (the socket then
//! refuses part of a splice, and the rest goes from the pipe to the queue),
//! or half-closes in the middle of the stream; over TCP and unix sockets.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use echod_common::stream::{StdStream, Stream};

use crate::common::{self, Daemon, Pattern};

/// The bench's bulk message: 64 KiB.
const MSG: usize = 64 * 1024;

/// How the client reads its echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// As fast as it can.
    Eager,
    /// 4 KiB at a time with a pause between, so the daemon's writes find the
    /// socket full (pacing only: nothing is timed).
    Slow,
}

/// One client connection split into its two directions.
struct Ends {
    read: Box<dyn Read + Send>,
    write: Box<dyn Write + Send>,
    /// Sends our FIN.
    close_write: Box<dyn FnOnce() + Send>,
}

/// A connected stream's three ends (std's clones of one socket).
fn ends(s: StdStream) -> Ends {
    let w = s.try_clone().expect("clone");
    let closer = s.try_clone().expect("clone");
    Ends {
        read: Box::new(s),
        write: Box::new(w),
        close_write: Box::new(move || closer.shutdown_write().expect("shutdown")),
    }
}

fn unix_ends(path: &std::path::Path) -> Ends {
    let s = UnixStream::connect(path).expect("connect unix");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    ends(Stream::Unix(s))
}

/// Streams `total` pattern bytes in `msg`-byte writes on `ends`, sends
/// FIN, and reads everything back (verifying every byte) until the
/// daemon's EOF. The writer runs beside the reader, so a FIN goes out while
/// echoes are still in flight: a half-close mid-stream.
fn stream(ends: Ends, total: u64, msg: usize, reader: Reader) {
    let Ends {
        mut read,
        mut write,
        close_write,
    } = ends;
    let writer = thread::spawn(move || {
        let pattern = Pattern::new(msg);
        let mut sent = 0u64;
        while sent < total {
            let n = (msg as u64).min(total - sent) as usize;
            write.write_all(pattern.at(sent, n)).expect("write");
            sent += n as u64;
        }
        close_write();
    });
    let chunk = match reader {
        Reader::Eager => 256 * 1024,
        Reader::Slow => 4 * 1024,
    };
    let pattern = Pattern::new(chunk);
    let mut buf = vec![0u8; chunk];
    let mut got = 0u64;
    loop {
        let n = read.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        if let Some(at) = pattern.mismatch(got, &buf[..n]) {
            panic!("echo differs at byte {at} of {total}");
        }
        got += n as u64;
        if reader == Reader::Slow && got % (64 * 1024) < n as u64 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    writer.join().expect("writer");
    assert_eq!(got, total, "bytes echoed");
}

/// Runs `conns` clients at once, each streaming `total` bytes.
fn run_clients(conns: usize, connect: impl Fn() -> Ends, total: u64, msg: usize, reader: Reader) {
    let clients: Vec<_> = (0..conns)
        .map(|_| {
            let ends = connect();
            thread::spawn(move || stream(ends, total, msg, reader))
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
}

/// The daemon's closing counters: every byte in went out, and every
/// connection ended by its peer's FIN.
fn assert_all_echoed(d: &mut Daemon, conns: u64, total: u64) {
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "bytes_in"), conns * total, "{stats}");
    assert_eq!(common::stat(&stats, "bytes_out"), conns * total, "{stats}");
    assert_eq!(common::stat(&stats, "closed_peer_closed"), conns, "{stats}");
    assert_eq!(common::stat(&stats, "errors"), 0, "{stats}");
}

/// A daemon started with `args` streams `total` bytes back to each of
/// `conns` TCP connections, in `msg`-byte writes, every byte checked; then
/// its counters say every byte came back and every connection ended by FIN.
fn tcp_streams(args: &[&str], conns: u64, total: u64, msg: usize, reader: Reader) {
    let _heavy = common::heavy();
    let mut d = Daemon::start(args);
    run_clients(
        conns as usize,
        || ends(Stream::Tcp(d.connect())),
        total,
        msg,
        reader,
    );
    assert_all_echoed(&mut d, conns, total);
}

#[test]
fn one_connection_streams_64_kib_messages_whole() {
    tcp_streams(&[], 1, 16 * 1024 * 1024, MSG, Reader::Eager);
}

#[test]
fn eight_connections_stream_64_kib_messages_whole() {
    tcp_streams(&[], 8, 4 * 1024 * 1024, MSG, Reader::Eager);
}

/// A slow reader: the daemon's sends come up short, so the rest of a splice
/// goes from the pipe into the queue, and the stream goes on from there.
#[test]
fn a_slow_reader_gets_every_byte_through_the_queue() {
    tcp_streams(&[], 1, 6 * 1024 * 1024 + 12_345, MSG, Reader::Slow);
}

/// Slow readers on 8 connections, with a small queue limit: reading pauses
/// and resumes while splices are cut short.
#[test]
fn slow_readers_with_a_small_queue_limit_get_every_byte() {
    let args = ["--queue-limit", "131072"];
    tcp_streams(&args, 8, 2 * 1024 * 1024 + 777, MSG, Reader::Slow);
}

/// Messages larger than the daemon's pipe and read buffer, and a length
/// that leaves a partial message before the FIN.
#[test]
fn one_megabyte_messages_and_a_ragged_end_come_back_whole() {
    tcp_streams(&[], 2, 9 * 1024 * 1024 + 4_321, 1024 * 1024, Reader::Eager);
}

/// A stream that turns from bulk to small messages and back on one
/// connection: the echo leaves splicing and comes back to it in order.
#[test]
fn bulk_then_small_then_bulk_keeps_order() {
    let mut d = Daemon::start(&[]);
    let mut s = d.connect();
    let pattern = Pattern::new(MSG);
    let mut offset = 0u64;
    let mut buf = vec![0u8; MSG];
    for len in [MSG, MSG, 100, 7, 3000, MSG, 1, MSG] {
        for _ in 0..4 {
            s.write_all(pattern.at(offset, len)).expect("write");
            s.read_exact(&mut buf[..len]).expect("read");
            if let Some(at) = pattern.mismatch(offset, &buf[..len]) {
                panic!("echo differs at byte {at}");
            }
            offset += len as u64;
        }
    }
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(common::read_to_end(&mut s), b"");
    assert_all_echoed(&mut d, 1, offset);
}

#[test]
fn unix_socket_streams_bulk_whole() {
    let _heavy = common::heavy();
    let (mut d, _target) = Daemon::start_unix("bulk", &[]);
    let path = d.unix_path();
    let total = 8 * 1024 * 1024 + 99;
    run_clients(2, || unix_ends(&path), total, MSG, Reader::Eager);
    run_clients(1, || unix_ends(&path), total, MSG, Reader::Slow);
    assert_all_echoed(&mut d, 3, total);
}
