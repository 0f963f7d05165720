//! `echod`: flags (and the sockets a service manager passed) -> config ->
//! the server loop -> exit status.

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
    // SAFETY: no thread has started and nothing has opened a descriptor:
    // the inherited ones (3 onwards) are ours to take, LISTEN_* ours to unset.
    let inherited = match unsafe { echod::Inherited::from_env() } {
        Ok(inherited) => inherited,
        Err(e) => {
            eprintln!("echod: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
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
    let server = match echod::Server::bind_inherited(&config, echod::Signals::Catch, inherited) {
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
