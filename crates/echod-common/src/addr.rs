//! Endpoint addresses as users type them: `host:port`, `[v6]:port`, `unix:/path`.
//!
//! One parser serves `echod --listen`, `echod --udp`, `echod-client` and
//! `echod-bench`, so every binary accepts exactly the same spellings.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// Where to listen or connect. `Display` prints the form `FromStr` accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// TCP or UDP over IPv4/IPv6; port 0 means "any free port" when binding.
    Inet(SocketAddr),
    /// A unix stream socket at this filesystem path.
    Unix(PathBuf),
}

/// Why an address string was refused; `Display` is one human line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid address '{}': {}", self.input, self.reason)
    }
}

impl std::error::Error for AddrError {}

impl Endpoint {
    /// The socket address, for endpoints that have one.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Inet(addr) => Some(*addr),
            Endpoint::Unix(_) => None,
        }
    }
}

impl FromStr for Endpoint {
    type Err = AddrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| AddrError {
            input: input.to_string(),
            reason,
        };
        if let Some(path) = input.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(fail("unix: needs a path, e.g. unix:/tmp/echod.sock"));
            }
            if path.len() >= 108 {
                return Err(fail("unix socket paths must be shorter than 108 bytes"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = input.parse::<SocketAddr>() {
            return Ok(Endpoint::Inet(addr));
        }
        let Some((host, port)) = input.rsplit_once(':') else {
            return Err(fail("expected host:port, [v6]:port or unix:/path"));
        };
        if host.is_empty() {
            return Err(fail("missing host before ':'"));
        }
        if host.contains(':') && !host.starts_with('[') {
            return Err(fail("IPv6 addresses need brackets: [::1]:port"));
        }
        if port.parse::<u16>().is_err() {
            return Err(fail("port must be a number from 0 to 65535"));
        }
        // A host name (e.g. localhost): resolve it once, take the first answer.
        match input.to_socket_addrs() {
            Ok(mut addrs) => addrs
                .next()
                .map(Endpoint::Inet)
                .ok_or_else(|| fail("host name did not resolve")),
            Err(_) => Err(fail("host name did not resolve")),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Inet(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_spelling() {
        assert_eq!(
            "127.0.0.1:12345".parse::<Endpoint>().unwrap(),
            Endpoint::Inet("127.0.0.1:12345".parse().unwrap())
        );
        assert_eq!(
            "[::1]:0".parse::<Endpoint>().unwrap(),
            Endpoint::Inet("[::1]:0".parse().unwrap())
        );
        assert_eq!(
            "unix:/tmp/x.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/tmp/x.sock".into())
        );
        assert!(matches!(
            "localhost:80".parse::<Endpoint>().unwrap(),
            Endpoint::Inet(_)
        ));
    }

    #[test]
    fn refuses_malformed_addresses_with_a_reason() {
        for bad in [
            "",
            "12345",
            ":80",
            "127.0.0.1:99999",
            "::1:80",
            "unix:",
            "1.2.3.4:x",
        ] {
            let err = bad.parse::<Endpoint>().unwrap_err();
            assert!(err.to_string().contains("invalid address"), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["127.0.0.1:1", "[::1]:2", "unix:/a/b"] {
            assert_eq!(s.parse::<Endpoint>().unwrap().to_string(), s);
        }
    }
}
