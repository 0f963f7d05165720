//! `echod-bench`: flags -> [`echod_bench::run`] -> summary and exit status.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use echod_bench::{self as bench, Args, BenchConfig, Limit};
use echod_common::exit;

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
    cfg.proto = if args.framed {
        bench::Proto::Framed
    } else {
        args.proto
    };
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
