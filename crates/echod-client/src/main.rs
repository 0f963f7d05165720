//! `echod-client`: flags -> [`echod_client::run`] -> exit status.

use std::process::ExitCode;

use echod_client::{self as client, Args, ClientConfig};
use echod_common::exit;

fn main() -> ExitCode {
    let args: Args = match echod_common::flags::parse_args("echod-client") {
        Ok(args) => args,
        Err(code) => return code,
    };
    let cfg = ClientConfig {
        endpoint: args.addr,
        recv_size: args.recv_size,
        framed: args.framed,
        udp: args.udp,
        timeout: args.timeout,
    };
    let stdout = std::io::stdout();
    match client::run(&cfg, std::io::stdin(), stdout.lock()) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("echod-client: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
