//! `echod`: flags -> config -> the server loop -> exit status.

use std::process::ExitCode;

use echod::config::{Args, Config};

use echod::cli::EXIT_USAGE;
/// Runtime failure: address in use, bind refused, loop error.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let args: Args = match echod::cli::parse_args("echod") {
        Ok(args) => args,
        Err(code) => return code,
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
