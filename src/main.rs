//! `echod`: flags -> config -> the server loop -> exit status.

use std::process::ExitCode;

use echod::{Args, Config};
use echod_common::exit;

fn main() -> ExitCode {
    let args: Args = match echod_common::flags::parse_args("echod") {
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
            return ExitCode::from(exit::USAGE);
        }
    };
    if let Err(e) = echod::install_exit_on_second_signal() {
        eprintln!("echod: cannot install signal handlers: {e}");
        return ExitCode::from(exit::FAILURE);
    }
    let server = match echod::Server::bind(&config, echod::Signals::Catch) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("echod: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match server.run() {
        Ok(stats) => {
            log::info!("stats: {stats}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echod: {e}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
