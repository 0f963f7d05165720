//! The daemon as a library: `Server::bind` on port 0 gives the real address
//! (no port freed and bound again), a `Monitor` reads the running workers'
//! counters from another thread, and a `ShutdownHandle` stops the run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use clap::Parser;
use echod::{Args, Config, Server, Signals};
use echod_common::addr::Endpoint;

#[test]
fn an_embedded_server_reports_and_stops_through_its_handles() {
    let args = Args::parse_from(["echod", "--listen", "127.0.0.1:0", "--workers", "2"]);
    let server = Server::bind(&Config::from_args(args).unwrap(), Signals::Leave).unwrap();
    let addr = match server.listen_addrs() {
        [Endpoint::Inet(addr)] => *addr,
        other => panic!("one TCP address expected, got {other:?}"),
    };
    assert_ne!(addr.port(), 0, "port 0 is resolved");
    let (stop, monitor) = (server.shutdown_handle(), server.monitor());
    let run = std::thread::spawn(move || server.run());

    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");

    let report = monitor
        .report(Duration::from_secs(5))
        .expect("both workers answer");
    assert_eq!(report.workers.len(), 2);
    assert_eq!(report.open, 1);
    assert_eq!(report.stats.accepted, 1);
    assert_eq!((report.stats.bytes_in, report.stats.bytes_out), (5, 5));
    assert_eq!(report.memory_limit, 256 << 20);

    drop(client);
    stop.shutdown();
    let stats = run.join().unwrap().expect("a clean run");
    assert_eq!((stats.accepted, stats.bytes_in, stats.bytes_out), (1, 5, 5));
    assert!(
        monitor.report(Duration::from_millis(100)).is_none(),
        "stopped workers do not answer"
    );
}
