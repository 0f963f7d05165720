//! Command-line flags to a validated [`Config`]; no I/O beyond reading
//! `--banner-file`.
//!
//! Flag names and defaults are the user-visible contract (shared/CONTRACT.md):
//! scripts depend on them, so they only ever gain aliases, never lose names.

use std::fmt;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::memory::CHUNK_SIZE;
use echod_common::addr::Endpoint;
use echod_common::flags::{parse_seconds, parse_size};
use echod_common::framing::{encode_header, MAX_HEADER_VALUE};

/// What a TCP connection does with the bytes it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every byte back, in order (RFC 862).
    Echo,
    /// The seeds' 10-byte length-header frames, each echoed verbatim.
    Framed,
    /// The sockperf benchmark's messages: requests for a reply come back
    /// with the client flag cleared, the rest are consumed.
    Sockperf,
}

/// The daemon's flags as typed by the user (clap's view).
#[derive(Debug, Parser)]
#[command(
    name = "echod",
    version,
    about = "An echo daemon: TCP, unix-socket and UDP echo on one mio poll loop per worker",
    after_help = "Logs go to stderr; set RUST_LOG (default: info). Exit codes: 0 clean shutdown, \
                  1 runtime failure (e.g. address in use), 2 bad flag or address."
)]
pub struct Args {
    /// TCP address to listen on: host:port, `[v6]:port` or unix:/path (repeatable; port 0 = any free port)
    /// [default: 127.0.0.1:12345, unless a service manager passes sockets (LISTEN_FDS)].
    #[arg(short, long = "listen", value_name = "ADDR")]
    pub listen: Vec<Endpoint>,

    /// Also echo UDP datagrams on this address (repeatable).
    #[arg(short, long = "udp", value_name = "ADDR")]
    pub udp: Vec<Endpoint>,

    /// echo: every byte back; framed: the seeds' 10-byte length-header messages.
    #[arg(long, value_enum, default_value = "echo")]
    pub mode: Mode,

    /// Text sent first on every TCP connection (one frame in framed mode).
    #[arg(long, value_name = "TEXT", conflicts_with = "banner_file")]
    pub banner: Option<String>,

    /// File whose bytes are sent first on every TCP connection (one frame in framed mode).
    #[arg(long, value_name = "PATH")]
    pub banner_file: Option<PathBuf>,

    /// One exchange per connection: send the banner and close, or echo the first message and close.
    #[arg(long)]
    pub once: bool,

    /// Connections per worker; beyond it a new connection is accepted and closed at once.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Outbound bytes queued per connection before it stops being read (e.g. 1048576, 64KiB, 1MiB).
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub queue_limit: u64,

    /// Framed mode: largest payload a header may announce.
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_size)]
    pub max_frame: u64,

    /// Close a connection when no byte moved either way for this long (0 = never).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_seconds)]
    pub idle_timeout: Duration,

    /// On SIGINT/SIGTERM, flush queues for at most this long before exiting.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,

    /// Memory all connections of all workers may hold in data owed to peers; at it, reading stops and the biggest holders may be closed (e.g. 64MiB, 1GiB).
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub max_memory: u64,

    /// Serve Prometheus metrics at http://ADDR/metrics (host:port; port 0 = any free port).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<Endpoint>,

    /// Independent single-threaded loops, each with its own SO_REUSEPORT sockets.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,

    /// Every TCP and unix listener expects a PROXY protocol header (v1 or v2) before any data; its client address replaces the peer's in logs.
    #[arg(long)]
    pub proxy_protocol: bool,

    /// With --proxy-protocol: accept headers only from this range, e.g. 10.0.0.0/8 or fd00::/8 (repeatable; unix peers are always trusted).
    #[arg(long, value_name = "CIDR", requires = "proxy_protocol")]
    pub proxy_from: Vec<Cidr>,
}

/// An address range, `ip/prefix` or a bare address (one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address (a v4
    /// client on a dual-stack listener) counts as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let bits = usize::from(prefix);
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s, None),
        };
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an address range (e.g. 10.0.0.0/8)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => Some(p)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Where echod listens when no `-l` is given and no socket is inherited.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:12345";

/// Everything a worker needs, validated. Shared read-only between workers.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<Endpoint>,
    /// True when no `-l` was given and `listen` holds only
    /// [`DEFAULT_LISTEN`]: the server does not bind it when a service
    /// manager passed sockets (socket activation serves those instead).
    pub default_listen: bool,
    pub udp: Vec<Endpoint>,
    pub mode: Mode,
    /// Bytes sent first on every TCP connection, already framed in framed mode.
    pub banner: Option<Arc<[u8]>>,
    pub once: bool,
    pub max_connections: usize,
    /// Reading stops while more than this many bytes are queued (>= 1).
    pub queue_limit: usize,
    pub max_frame: u64,
    /// `None` when idle connections are never closed.
    pub idle_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    pub workers: usize,
    /// `--max-memory`: bytes all workers' connections may hold for their
    /// peers together (>= 1 chunk).
    pub max_memory: usize,
    /// `--metrics`: where `GET /metrics` is served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// `--proxy-protocol`: every stream connection starts with a PROXY header.
    pub proxy_protocol: bool,
    /// `--proxy-from`: the socket peers whose headers are trusted; empty =
    /// any. Unix peers are always trusted.
    pub proxy_from: Vec<Cidr>,
}

/// A flag combination that parses but makes no sense, or an unreadable banner file.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Validates parsed flags and loads the banner.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let banner_bytes: Option<Vec<u8>> = match (&args.banner, &args.banner_file) {
            (Some(text), _) => Some(text.clone().into_bytes()),
            (None, Some(path)) => Some(std::fs::read(path).map_err(|e| {
                ConfigError(format!("cannot read --banner-file {}: {e}", path.display()))
            })?),
            (None, None) => None,
        };
        let banner = match (banner_bytes, args.mode) {
            (Some(bytes), Mode::Framed) => {
                if bytes.len() as u64 > args.max_frame {
                    return Err(ConfigError(format!(
                        "the banner ({} bytes) is larger than --max-frame ({})",
                        bytes.len(),
                        args.max_frame
                    )));
                }
                let header = encode_header(bytes.len() as u64).ok_or_else(|| {
                    ConfigError(format!(
                        "the banner ({} bytes) is too large for a 10-digit frame header",
                        bytes.len()
                    ))
                })?;
                let mut framed = header.to_vec();
                framed.extend_from_slice(&bytes);
                Some(framed.into())
            }
            (Some(bytes), Mode::Echo) => Some(bytes.into()),
            (Some(_), Mode::Sockperf) => {
                return Err(ConfigError(
                    "--banner cannot be used with --mode sockperf (a sockperf client \
                     expects only its own messages)"
                        .into(),
                ))
            }
            (None, _) => None,
        };
        if args.max_frame > MAX_HEADER_VALUE {
            return Err(ConfigError(
                "--max-frame cannot exceed 9999999999 (ten decimal digits)".into(),
            ));
        }
        if let Some(unix) = args.udp.iter().find(|e| e.inet().is_none()) {
            return Err(ConfigError(format!(
                "--udp {unix}: UDP needs host:port or [v6]:port, not a unix path"
            )));
        }
        let metrics = match &args.metrics {
            None => None,
            Some(endpoint) => Some(endpoint.inet().ok_or_else(|| {
                ConfigError(format!(
                    "--metrics {endpoint}: metrics need host:port or [v6]:port, not a unix path"
                ))
            })?),
        };
        let queue_limit = usize::try_from(args.queue_limit)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| ConfigError("--queue-limit must be at least 1 byte".into()))?;
        let max_memory = usize::try_from(args.max_memory)
            .ok()
            .filter(|&n| n >= CHUNK_SIZE)
            .ok_or_else(|| {
                ConfigError(format!(
                    "--max-memory must be at least {} KiB (one buffer chunk)",
                    CHUNK_SIZE / 1024
                ))
            })?;
        // clap has no default for -l, so that "given" and "defaulted" stay
        // apart: the default is applied here, and marked.
        let default_listen = args.listen.is_empty();
        let listen = if default_listen {
            vec![DEFAULT_LISTEN
                .parse()
                .map_err(|e| ConfigError(format!("the default --listen: {e}")))?]
        } else {
            args.listen
        };
        Ok(Config {
            listen,
            default_listen,
            udp: args.udp,
            mode: args.mode,
            banner,
            once: args.once,
            max_connections: args.max_connections as usize,
            queue_limit,
            max_frame: args.max_frame,
            idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
            shutdown_timeout: args.shutdown_timeout,
            workers: usize::from(args.workers),
            max_memory,
            metrics,
            proxy_protocol: args.proxy_protocol,
            proxy_from: args.proxy_from,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let config = Config::from_args(Args::parse_from(["echod"])).unwrap();
        assert_eq!(config.listen, vec!["127.0.0.1:12345".parse().unwrap()]);
        assert!(config.default_listen);
        assert_eq!(config.mode, Mode::Echo);
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.queue_limit, 1 << 20);
        assert_eq!(config.max_frame, 16 << 20);
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(config.workers, 1);
        assert_eq!(config.max_memory, 256 << 20);
        assert_eq!(config.metrics, None);
    }

    #[test]
    fn an_explicit_listen_is_not_the_default_even_at_the_default_address() {
        let config = Config::from_args(Args::parse_from(["echod", "-l", "127.0.0.1:12345"]));
        let config = config.unwrap();
        assert!(!config.default_listen);
        assert_eq!(config.listen.len(), 1);
    }

    #[test]
    fn proxy_from_ranges() {
        let cidr = |s: &str| s.parse::<Cidr>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let rows = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("192.168.1.0/25", "192.168.1.127", true),
            ("192.168.1.0/25", "192.168.1.128", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("0.0.0.0/0", "::1", false),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::/0", "::1", true),
        ];
        for (range, addr, inside) in rows {
            assert_eq!(cidr(range).contains(ip(addr)), inside, "{addr} in {range}");
        }
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "x",
            "10.0.0.0/+8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn proxy_from_needs_proxy_protocol() {
        assert!(Args::try_parse_from(["echod", "--proxy-from", "10.0.0.0/8"]).is_err());
        let args = ["echod", "--proxy-protocol", "--proxy-from", "10.0.0.0/8"];
        let config = Config::from_args(Args::try_parse_from(args).unwrap()).unwrap();
        assert!(config.proxy_protocol);
        assert_eq!(config.proxy_from, vec!["10.0.0.0/8".parse().unwrap()]);
    }

    #[test]
    fn framed_banner_is_one_frame() {
        let args = Args::parse_from(["echod", "--mode", "framed", "--banner", "hello"]);
        let config = Config::from_args(args).unwrap();
        assert_eq!(&config.banner.unwrap()[..], b"5         hello");
    }
}
