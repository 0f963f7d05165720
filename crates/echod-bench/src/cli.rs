//! The `echod-bench` command line: [`Args`], clap's view of the flags.
//!
//! It lives in the library, not the binary, so that man pages and shell
//! completions can be generated from it (crates/echod-dist); the binary
//! only parses it and builds a [`BenchConfig`](crate::BenchConfig).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use echod_common::addr::Endpoint;

use crate as bench;

const AFTER_HELP: &str = "\
Every echoed byte is verified: each message carries its connection id and
sequence number. -n counts messages across all connections, not per connection.
-d is the measured time, after --warmup; echoes still owed at the end get 2 s.

Exit status:
  0  every connection established, every echo verified
  1  corrupted, missing or unexpected echoes, connections closed by the server,
     or other errors (e.g. out of file descriptors)
  2  bad flags or address
  3  connections refused (and no data errors)
  4  connections reset (and no data errors or refusals)
  5  timeouts: connects or echoes (and nothing worse)";

/// Load generator for echod: many concurrent connections, every echo
/// verified, throughput and latency percentiles.
#[derive(Parser, Debug)]
#[command(name = "echod-bench", version, after_help = AFTER_HELP)]
pub struct Args {
    #[arg(
        value_name = "ADDR",
        help = "Target: host:port, [v6]:port or unix:/path"
    )]
    pub addr: Endpoint,

    /// Concurrent connections (UDP: sockets)
    #[arg(short = 'c', long = "connections", value_name = "CONNECTIONS",
          default_value_t = bench::DEFAULT_CONNECTIONS, value_parser = echod_common::flags::positive)]
    pub connections: usize,

    /// Payload bytes per message
    #[arg(short = 'l', long = "length", value_name = "LENGTH",
          default_value_t = bench::DEFAULT_LENGTH, value_parser = echod_common::flags::positive)]
    pub length: usize,

    /// Seconds to measure, fractions allowed [default: 10 unless -n]
    #[arg(short = 'd', long = "duration", value_name = "SECONDS", value_parser = echod_common::flags::positive_seconds,
          conflicts_with = "messages")]
    pub duration: Option<Duration>,

    /// Total messages to measure, across all connections
    #[arg(short = 'n', long = "messages", value_name = "MESSAGES")]
    pub messages: Option<u64>,

    /// Messages in flight per connection (closed loop)
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = echod_common::flags::positive)]
    pub pipeline: usize,

    /// Open loop: total messages per second, latency from intended send times
    #[arg(long, value_name = "R", conflicts_with = "pipeline")]
    pub rate: Option<f64>,

    /// Seconds of traffic before measuring starts
    #[arg(long, value_name = "SECONDS", value_parser = echod_common::flags::parse_seconds)]
    pub warmup: Option<Duration>,

    /// Local address to connect from; repeat to spread connections round-robin
    #[arg(long = "source-ip", value_name = "IP")]
    pub source_ip: Vec<IpAddr>,

    /// Worker threads, each with its own poll loop and share of the connections
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = echod_common::flags::positive)]
    pub threads: usize,

    /// Speak the 10-byte length-header protocol (echod --mode framed); the same as --proto framed
    #[arg(long, conflicts_with_all = ["udp", "proto"])]
    pub framed: bool,

    /// Message format: echo (raw bytes), framed (10-byte length header) or sockperf (sockperf's 14-byte header: drives `sockperf server` or echod --mode sockperf)
    #[arg(long, value_enum, value_name = "PROTO", default_value = "echo")]
    pub proto: bench::Proto,

    /// Send UDP datagrams; loss is reported, not an error
    #[arg(long)]
    pub udp: bool,

    /// Open the connections and hold them without sending until -d expires or SIGINT
    #[arg(long, conflicts_with_all = ["rate", "messages", "udp"])]
    pub idle: bool,

    /// Print one JSON object on stdout instead of the summary (with --interval, one per interval first, a line each)
    #[arg(long)]
    pub json: bool,

    /// Open at most R new connections per second (the ramp-up, and replacements)
    #[arg(long, value_name = "R")]
    pub connect_rate: Option<f64>,

    /// Close each connection after N verified echoes and open a new one in its place
    #[arg(long, value_name = "N")]
    pub conn_messages: Option<u64>,

    /// A progress line on stderr every SECS (with --json, a JSON line on stdout too)
    #[arg(long, value_name = "SECS", value_parser = echod_common::flags::positive_seconds)]
    pub interval: Option<Duration>,

    /// Write every interval's latency histogram to FILE, in HdrHistogram's interval log format
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,

    /// Draw messages/s and p50/p99/p99.9 latency over the run as an SVG chart in FILE
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Also report this local process's CPU time (user + system, all threads) over the measured time, and per message: pass the server's pid
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}
