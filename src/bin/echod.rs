//! `echod`: flags -> config -> the server loop -> exit status.

use std::process::ExitCode;

use clap::Parser;
use echod::config::{Args, Config};

/// Bad flag or address.
const EXIT_USAGE: u8 = 2;
/// Runtime failure: address in use, bind refused, loop error.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return usage_error(e),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("echod: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(e) = echod::server::signals::install_exit_on_second_signal() {
        eprintln!("echod: cannot install signal handlers: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    match echod::server::run(config) {
        Ok(stats) => {
            log::info!("stats: {stats}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echod: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// clap's errors are several lines (usage, hint); the contract wants one.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    eprintln!("echod: {first} (see echod --help)");
    ExitCode::from(EXIT_USAGE)
}
