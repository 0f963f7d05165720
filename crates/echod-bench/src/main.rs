//! `echod-bench`: flags -> [`echod_bench::run`] -> summary and exit status.

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use echod_bench::{self as bench, BenchConfig, Limit};
use echod_common::addr::Endpoint;
use echod_common::exit;

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
struct Args {
    #[arg(
        value_name = "ADDR",
        help = "Target: host:port, [v6]:port or unix:/path"
    )]
    addr: Endpoint,

    /// Concurrent connections (UDP: sockets)
    #[arg(short = 'c', long = "connections", value_name = "CONNECTIONS",
          default_value_t = bench::DEFAULT_CONNECTIONS, value_parser = echod_common::flags::positive)]
    connections: usize,

    /// Payload bytes per message
    #[arg(short = 'l', long = "length", value_name = "LENGTH",
          default_value_t = bench::DEFAULT_LENGTH, value_parser = echod_common::flags::positive)]
    length: usize,

    /// Seconds to measure, fractions allowed [default: 10 unless -n]
    #[arg(short = 'd', long = "duration", value_name = "SECONDS", value_parser = echod_common::flags::positive_seconds,
          conflicts_with = "messages")]
    duration: Option<Duration>,

    /// Total messages to measure, across all connections
    #[arg(short = 'n', long = "messages", value_name = "MESSAGES")]
    messages: Option<u64>,

    /// Messages in flight per connection (closed loop)
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = echod_common::flags::positive)]
    pipeline: usize,

    /// Open loop: total messages per second, latency from intended send times
    #[arg(long, value_name = "R", conflicts_with = "pipeline")]
    rate: Option<f64>,

    /// Seconds of traffic before measuring starts
    #[arg(long, value_name = "SECONDS", value_parser = echod_common::flags::parse_seconds)]
    warmup: Option<Duration>,

    /// Local address to connect from; repeat to spread connections round-robin
    #[arg(long = "source-ip", value_name = "IP")]
    source_ip: Vec<IpAddr>,

    /// Worker threads, each with its own poll loop and share of the connections
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = echod_common::flags::positive)]
    threads: usize,

    /// Speak the 10-byte length-header protocol (echod --mode framed)
    #[arg(long, conflicts_with = "udp")]
    framed: bool,

    /// Send UDP datagrams; loss is reported, not an error
    #[arg(long)]
    udp: bool,

    /// Open the connections and hold them without sending until -d expires or SIGINT
    #[arg(long, conflicts_with_all = ["rate", "messages", "udp"])]
    idle: bool,

    /// Print one JSON object on stdout instead of the summary (with --interval, one per interval first, a line each)
    #[arg(long)]
    json: bool,

    /// Open at most R new connections per second (the ramp-up, and replacements)
    #[arg(long, value_name = "R")]
    connect_rate: Option<f64>,

    /// Close each connection after N verified echoes and open a new one in its place
    #[arg(long, value_name = "N")]
    conn_messages: Option<u64>,

    /// A progress line on stderr every SECS (with --json, a JSON line on stdout too)
    #[arg(long, value_name = "SECS", value_parser = echod_common::flags::positive_seconds)]
    interval: Option<Duration>,

    /// Write every interval's latency histogram to FILE, in HdrHistogram's interval log format
    #[arg(long, value_name = "FILE")]
    hdr_log: Option<PathBuf>,

    /// Draw messages/s and p50/p99/p99.9 latency over the run as an SVG chart in FILE
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// Also report this local process's CPU time (user + system, all threads) over the measured time, and per message: pass the server's pid
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Args = match echod_common::flags::parse_args("echod-bench") {
        Ok(args) => args,
        Err(code) => return code,
    };

    // First SIGINT/SIGTERM: stop sending, drain, report. Second: exit at once.
    let stop = Arc::new(AtomicBool::new(false));
    for (sig, status) in [
        (signal_hook::consts::SIGINT, exit::SECOND_SIGINT),
        (signal_hook::consts::SIGTERM, exit::SECOND_SIGTERM),
    ] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, status, Arc::clone(&stop));
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }

    let mut cfg = BenchConfig::new(args.addr);
    cfg.connections = args.connections;
    cfg.length = args.length;
    cfg.limit = match (args.duration, args.messages) {
        (_, Some(n)) => Limit::Messages(n),
        (Some(d), None) => Limit::Duration(d),
        (None, None) => Limit::Duration(bench::DEFAULT_DURATION),
    };
    cfg.pipeline = args.pipeline;
    cfg.rate = args.rate;
    cfg.warmup = args.warmup.unwrap_or(Duration::ZERO);
    cfg.source_ips = args.source_ip;
    cfg.threads = args.threads;
    cfg.framed = args.framed;
    cfg.udp = args.udp;
    cfg.idle = args.idle;
    cfg.progress = !args.json && args.interval.is_none() && std::io::stderr().is_terminal();
    cfg.server_pid = args.server_pid;
    cfg.connect_rate = args.connect_rate;
    cfg.conn_messages = args.conn_messages;
    cfg.interval = args.interval;
    cfg.interval_json = args.json;
    cfg.hdr_log = args.hdr_log;
    cfg.plot = args.plot;

    match bench::run(&cfg, stop) {
        Ok(report) => {
            let text = if args.json {
                match serde_json::to_string(&report) {
                    Ok(json) => json,
                    Err(e) => {
                        eprintln!("echod-bench: cannot encode the report: {e}");
                        return ExitCode::from(exit::FAILURE);
                    }
                }
            } else {
                report.to_string()
            };
            // Not println!: a closed stdout must not become a panic.
            if let Err(e) = writeln!(std::io::stdout(), "{text}") {
                eprintln!("echod-bench: cannot write the report: {e}");
                return ExitCode::from(exit::FAILURE);
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("echod-bench: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
