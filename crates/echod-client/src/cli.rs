//! The `echod-client` command line: [`Args`], clap's view of the flags.
//!
//! It lives in the library, not the binary, so that man pages and shell
//! completions can be generated from it (crates/echod-dist); the binary
//! only parses it and builds a [`ClientConfig`](crate::ClientConfig).

use std::time::Duration;

use clap::Parser;
use echod_common::addr::Endpoint;

use crate as client;

const EXIT_HELP: &str = "\
Modes:
  (default)  stdin bytes go to the socket unchanged; received bytes go to stdout.
  --framed   each stdin line (without its newline) is sent as one frame: a 10-byte
             header (the length, left-aligned decimal) then the payload; each frame
             received is printed as its payload and a newline.
  --udp      each stdin line (with its newline) is sent as one datagram; replies are
             printed verbatim. At stdin EOF, waits up to --timeout (default 2 s) for
             the replies still owed.

Exit status:
  0  the server closed after everything was exchanged (UDP: every datagram answered)
  1  any other error (stdin, stdout, local socket errors)
  2  bad flags or address
  3  connection refused
  4  connection reset by the server
  5  timeout: connect, idle (nothing moved either way), or UDP replies missing
  6  protocol error: the server sent something that is not a frame (--framed)";

/// netcat for echod: stdin to the socket, the socket to stdout. At stdin EOF
/// the client half-closes and reads until the server closes.
#[derive(Parser, Debug)]
#[command(name = "echod-client", version, after_help = EXIT_HELP)]
pub struct Args {
    /// Bytes per socket read (the seeds' recv() buffer); every byte is still delivered
    #[arg(long, value_name = "N", default_value_t = client::DEFAULT_RECV_SIZE,
          value_parser = echod_common::flags::positive)]
    pub recv_size: usize,

    /// Send each stdin line as one frame; print each received payload as a line
    #[arg(long, conflicts_with = "udp")]
    pub framed: bool,

    /// Send each stdin line as one UDP datagram and print the replies
    #[arg(long)]
    pub udp: bool,

    /// Seconds (fractions allowed) for connect and idle; for UDP also the wait
    /// for replies after stdin EOF (default 2)
    #[arg(long, value_name = "SECS", value_parser = echod_common::flags::positive_seconds)]
    pub timeout: Option<Duration>,

    #[arg(
        value_name = "ADDR",
        help = "Server address: host:port, [v6]:port or unix:/path"
    )]
    pub addr: Endpoint,
}
