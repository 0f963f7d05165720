//! Steady state allocates nothing: after warm-up, echoing thousands of
//! messages (echo and framed mode, including queued remainders) performs no
//! heap allocation at all. The daemon's loop runs in this process under a
//! counting global allocator; the client side is allocation-free by design
//! (fixed buffers, std sockets).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use echod::{Args, Config};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A daemon whose loop runs on a thread of this process, stopped through its
/// shutdown handle when dropped.
struct InProcess {
    addr: std::net::SocketAddr,
    stop: echod::ShutdownHandle,
    thread: Option<std::thread::JoinHandle<Result<echod::Stats, echod::ServerError>>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds the daemon on port 0 in this process (the bound address comes
/// from the server itself: no port is freed and bound again) and runs its
/// loop on a thread.
fn start_in_process(extra: &[&str]) -> InProcess {
    let mut argv = vec!["echod", "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(extra);
    let config = Config::from_args(Args::parse_from(argv)).unwrap();
    let server = echod::Server::bind(&config, echod::Signals::Leave).unwrap();
    let addr = match server.listen_addrs() {
        [echod_common::addr::Endpoint::Inet(addr)] => *addr,
        other => panic!("one TCP address expected, got {other:?}"),
    };
    let stop = server.shutdown_handle();
    let thread = Some(std::thread::spawn(move || server.run()));
    InProcess { addr, stop, thread }
}

fn client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A client with small socket buffers, so the daemon's echoes to it cannot
/// all hide in kernel buffers: the daemon's own queue has to take them.
fn tight_client(addr: std::net::SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// `rounds` round trips of `msg` on each client, reading each echo whole.
fn round_trips(clients: &mut [TcpStream], msg: &[u8], back: &mut [u8], rounds: usize) {
    for _ in 0..rounds {
        for c in clients.iter_mut() {
            c.write_all(msg).unwrap();
        }
        for c in clients.iter_mut() {
            c.read_exact(back).unwrap();
            assert_eq!(&back[..], msg);
        }
    }
}

/// Writes `out` and reads as many bytes back into `back` on one non-blocking
/// socket, interleaved, without allocating: the client reads only when it
/// cannot write, so the daemon's echoes queue (and drain) in its chunks.
fn stream_through(c: &mut TcpStream, out: &[u8], back: &mut [u8]) {
    c.set_nonblocking(true).unwrap();
    let (mut sent, mut got) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got < back.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "stalled at {got} bytes"
        );
        let mut blocked = sent == out.len();
        if sent < out.len() {
            match c.write(&out[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => blocked = true,
                Err(e) => panic!("write: {e}"),
            }
        }
        // Read only when the client cannot write any more: every buffer on
        // the way is full, so the daemon has paused with a full queue.
        if !blocked {
            continue;
        }
        match c.read(&mut back[got..]) {
            Ok(0) => panic!("EOF after {got} bytes"),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    c.set_nonblocking(false).unwrap();
    assert!(back == out, "echo differs");
}

/// One test (not several): libtest allocates on its own thread when a test
/// finishes, which would land in another test's measured window.
#[test]
fn steady_state_allocates_nothing() {
    // Echo mode, small messages: read, write straight back.
    let daemon = start_in_process(&[]);
    let addr = daemon.addr;
    let mut clients: Vec<TcpStream> = (0..8).map(|_| client(addr)).collect();
    let msg = [0x5au8; 512];
    let mut back = [0u8; 512];
    round_trips(&mut clients, &msg, &mut back, 200); // warm-up: accept, ready list, events
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    round_trips(&mut clients, &msg, &mut back, 2_000);
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(
        after - before,
        0,
        "16,000 echoes allocated {} times",
        after - before
    );

    // Echo mode, 32 MiB streamed far ahead of reading, four times, through
    // a daemon with a 64 KiB queue limit: echoes queue in pooled chunks,
    // reading pauses and resumes again and again, and queues drain with
    // writev. What may allocate is bounded growth, whenever a pass happens to
    // queue deeper than any before it (how deep depends on scheduling):
    // chunks up to the peak one connection can hold (the limit plus one
    // 256 KiB read, in 16 KiB chunks, plus a partly written one), and the
    // doublings of the chunk ring, the pool's free list and the ready lists.
    // (About 30 in practice.) One allocation per read would count at least
    // 512 here (128 MiB in reads of at most 256 KiB), one per queued
    // remainder about 100.
    const QUEUE_LIMIT: usize = 64 * 1024;
    let one_read = echod::READ_BUF_SIZE;
    let peak_chunks = (QUEUE_LIMIT + one_read) / echod::CHUNK_SIZE + 1;
    let growth_bound = peak_chunks + 16;
    let daemon = start_in_process(&["--queue-limit", "64KiB"]);
    let addr = daemon.addr;
    let big: Vec<u8> = (0..32 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut big_back = vec![0u8; big.len()];
    let mut tight = tight_client(addr);
    tight.write_all(b"x").unwrap(); // accepted before the window opens
    tight.read_exact(&mut big_back[..1]).unwrap();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..4 {
        stream_through(&mut tight, &big, &mut big_back);
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(
        after - before <= growth_bound as u64,
        "128 MiB of queued echoes allocated {} times (bounded growth: at most {growth_bound})",
        after - before
    );

    // Framed mode: header + payload through the decoder.
    let daemon = start_in_process(&["--mode", "framed"]);
    let addr = daemon.addr;
    let mut clients: Vec<TcpStream> = (0..4).map(|_| client(addr)).collect();
    let mut msg = b"100       ".to_vec();
    msg.extend_from_slice(&[b'x'; 100]);
    let mut back = vec![0u8; msg.len()];
    round_trips(&mut clients, &msg, &mut back, 200);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    round_trips(&mut clients, &msg, &mut back, 2_000);
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(
        after - before,
        0,
        "8,000 framed echoes allocated {} times",
        after - before
    );
}
