//! Many clients: 1,000 connections open at the same time (driven by 8
//! threads of 125 sockets each), every one gets several verified round trips
//! with a message unique to it, and the exit stats agree: accepted=1000 and
//! peak_concurrent=1000 (all are held open until every client is done).

use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use crate::common::{self, Daemon};

const CLIENTS: usize = 1000;
const THREADS: usize = 8;
const ROUNDS: usize = 5;

/// A message unique to (client, round), of a size that varies with both.
fn message(client: usize, round: usize) -> Vec<u8> {
    let len = 16 + (client * 7 + round * 131) % 2000;
    let head = format!("client {client} round {round}:");
    let mut msg = head.into_bytes();
    msg.extend((0..len).map(|i| b'a' + ((client + round + i) % 26) as u8));
    msg.push(b'\n');
    msg
}

#[test]
fn thousand_concurrent_clients_get_verified_echoes() {
    let _heavy = common::heavy();
    common::raise_nofile_limit();
    let mut d = Daemon::start(&[]);
    let addr = d.addr();
    let started = Instant::now();
    // All connected before any round trip; all done before any close.
    let connected = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let connected = Arc::clone(&connected);
            let done = Arc::clone(&done);
            std::thread::spawn(move || -> Result<usize, String> {
                let ids: Vec<usize> = (t..CLIENTS).step_by(THREADS).collect();
                let mut socks: Vec<(usize, TcpStream)> =
                    ids.iter().map(|&id| (id, common::connect(addr))).collect();
                connected.wait();
                let mut trips = 0;
                let mut result = Ok(());
                'rounds: for round in 0..ROUNDS {
                    // Pipelined across sockets: write to all, then read all.
                    for (id, s) in &mut socks {
                        if let Err(e) = std::io::Write::write_all(s, &message(*id, round)) {
                            result = Err(format!("client {id} round {round}: write: {e}"));
                            break 'rounds;
                        }
                    }
                    for (id, s) in &mut socks {
                        let want = message(*id, round);
                        let mut got = vec![0u8; want.len()];
                        if let Err(e) = std::io::Read::read_exact(s, &mut got) {
                            result = Err(format!("client {id} round {round}: read: {e}"));
                            break 'rounds;
                        }
                        if got != want {
                            result = Err(format!("client {id} round {round}: wrong echo"));
                            break 'rounds;
                        }
                        trips += 1;
                    }
                }
                done.wait();
                drop(socks);
                result.map(|()| trips)
            })
        })
        .collect();
    connected.wait();
    eprintln!("{CLIENTS} clients connected in {:?}", started.elapsed());
    done.wait();
    let mut trips = 0;
    for w in workers {
        trips += w
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!(
        "{trips} verified round trips on {CLIENTS} concurrent clients in {:?}",
        started.elapsed()
    );
    assert_eq!(trips, CLIENTS * ROUNDS);
    // The clients closed: give the daemon a moment to see every FIN (the
    // debug log says so) so most count as peer_closed rather than shutdown.
    common::wait_until(common::WAIT, || {
        d.log_lines_with(&["close ", "(peer_closed)"]).len() >= CLIENTS
    });
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "accepted"), CLIENTS as u64, "{stats}");
    assert_eq!(
        common::stat(&stats, "peak_concurrent"),
        CLIENTS as u64,
        "{stats}"
    );
    assert_eq!(common::stat(&stats, "rejected"), 0, "{stats}");
    assert_eq!(common::stat(&stats, "errors"), 0, "{stats}");
    assert_eq!(
        common::stat(&stats, "closed_peer_closed") + common::stat(&stats, "closed_shutdown"),
        CLIENTS as u64,
        "{stats}"
    );
}
