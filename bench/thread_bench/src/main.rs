//! thread_bench: the classic thread-per-connection echo load tool (in the
//! style of rust_echo_bench), kept only as a baseline for echod-bench.
//!
//! Each of `-c` threads connects, then loops `write_all(message)` /
//! `read_exact(length)` until `-d` seconds are up, counting round trips. No
//! verification beyond the length, no latency figures: what echod-bench is
//! compared against in docs/LOADTEST.md.
//!
//! Usage: `thread_bench --address 127.0.0.1:12345 -c 50 -l 512 -d 10`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

struct Args {
    address: String,
    connections: usize,
    length: usize,
    duration: u64,
}

const USAGE: &str =
    "usage: thread_bench --address HOST:PORT [-c CONNECTIONS] [-l LENGTH] [-d SECONDS]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        address: "127.0.0.1:12345".into(),
        connections: 50,
        length: 512,
        duration: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-a" | "--address" => args.address = value()?,
            "-c" | "--number" => args.connections = value()?.parse().map_err(|_| "bad -c")?,
            "-l" | "--length" => args.length = value()?.parse().map_err(|_| "bad -l")?,
            "-d" | "--duration" => args.duration = value()?.parse().map_err(|_| "bad -d")?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if args.connections == 0 || args.length == 0 || args.duration == 0 {
        return Err("-c, -l and -d must be at least 1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("thread_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..args.connections)
        .map(|_| {
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            let (address, length) = (args.address.clone(), args.length);
            thread::spawn(move || {
                let mut s = match TcpStream::connect(&address) {
                    Ok(s) => s,
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let out = vec![b'x'; length];
                let mut back = vec![0u8; length];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(&out).is_err() || s.read_exact(&mut back).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(args.duration));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!("Benchmarking: {}", args.address);
    println!(
        "{} clients, running {} bytes, {} sec.",
        args.connections, args.length, args.duration
    );
    println!("Requests: {n}");
    println!("Speed: {:.0} request/sec", n as f64 / secs);
    println!("Failed connections: {}", failed.load(Ordering::Relaxed));
    if failed.load(Ordering::Relaxed) > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
