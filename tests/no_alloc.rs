//! Steady state allocates nothing: after warm-up, echoing thousands of
//! messages (echo and framed mode, including queued remainders) performs no
//! heap allocation at all. The daemon's loop runs in this process under a
//! counting global allocator; the client side is allocation-free by design
//! (fixed buffers, std sockets).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use echod::config::{Args, Config};

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

/// The counter is process-wide: tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts the daemon's loop on a thread of this process; returns its address.
fn start_in_process(extra: &[&str]) -> std::net::SocketAddr {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut argv = vec!["echod", "--listen", &listen];
    argv.extend_from_slice(extra);
    let config = Config::from_args(Args::parse_from(argv)).unwrap();
    std::thread::spawn(move || echod::server::run(config));
    let addr = listen.parse().unwrap();
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return addr;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("in-process echod did not start");
}

fn client(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
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

#[test]
fn steady_state_echo_allocates_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let addr = start_in_process(&[]);
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

    // Large writes whose echoes queue (the client does not read until it has
    // written 2 MiB): chunks come from the pool after the first round.
    let big = vec![7u8; 2 << 20];
    let mut big_back = vec![0u8; 2 << 20];
    let c = &mut clients[0];
    let mut go = |c: &mut TcpStream| {
        let mut w = c.try_clone().unwrap();
        let data = big.clone();
        let writer = std::thread::spawn(move || w.write_all(&data).unwrap());
        c.read_exact(&mut big_back).unwrap();
        writer.join().unwrap();
    };
    go(c);
    go(c);
    // The writer thread and its clone allocate on the client side; count
    // only a third round against a baseline taken with the same client work.
    let base = ALLOCATIONS.load(Ordering::SeqCst);
    go(c);
    let client_side = ALLOCATIONS.load(Ordering::SeqCst) - base;
    let base = ALLOCATIONS.load(Ordering::SeqCst);
    go(c);
    let again = ALLOCATIONS.load(Ordering::SeqCst) - base;
    assert_eq!(again, client_side, "queued echoes allocate per message");
}

#[test]
fn steady_state_framed_echo_allocates_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let addr = start_in_process(&["--mode", "framed"]);
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
