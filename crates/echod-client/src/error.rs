//! Why the client failed, as one human line and an exit status.

use std::fmt;
use std::io;

use echod_common::addr::Endpoint;
use echod_common::exit;
use echod_common::framing::FrameError;
use std::time::Duration;

/// What ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// The connection was not established in time.
    Connect,
    /// No byte moved in either direction for the whole timeout.
    Idle,
    /// UDP: after stdin EOF, `missing` of `sent` datagrams got no reply in time.
    Replies { missing: u64, sent: u64 },
}

/// How the server broke the framed protocol (`--framed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A frame header that is not a length, as the decoder found it.
    Header(FrameError),
    /// The server closed the connection in the middle of a frame.
    Truncated,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Header(e) => write!(f, "{e}"),
            ProtocolError::Truncated => {
                write!(f, "the connection closed in the middle of a frame")
            }
        }
    }
}

/// Why the client failed. `Display` is one human line without the program
/// name; [`ClientError::exit_code`] maps each case to an [`exit`] status.
#[derive(Debug)]
pub enum ClientError {
    /// Bad options (exit 2).
    Usage(String),
    /// Nothing accepted the connection (exit 3).
    Refused(Endpoint),
    /// The peer reset the connection (exit 4).
    Reset(Endpoint),
    /// A timeout expired (exit 5).
    Timeout {
        endpoint: Endpoint,
        kind: TimeoutKind,
        after: Duration,
    },
    /// The server sent something that is not a frame (exit 6).
    Protocol {
        endpoint: Endpoint,
        error: ProtocolError,
    },
    /// Any other I/O failure, with what we were doing (exit 1).
    Io {
        context: &'static str,
        endpoint: Endpoint,
        source: io::Error,
    },
}

impl ClientError {
    /// The process exit status for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => exit::USAGE,
            ClientError::Refused(_) => exit::REFUSED,
            ClientError::Reset(_) => exit::RESET,
            ClientError::Timeout { .. } => exit::TIMEOUT,
            ClientError::Protocol { .. } => exit::PROTOCOL,
            ClientError::Io { .. } => exit::FAILURE,
        }
    }

    /// Classifies an I/O error on the connection: refusals, resets and
    /// timeouts get their own variants, the rest keep their context.
    pub(crate) fn from_io(context: &'static str, endpoint: &Endpoint, err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => ClientError::Refused(endpoint.clone()),
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ClientError::Reset(endpoint.clone()),
            _ => ClientError::Io {
                context,
                endpoint: endpoint.clone(),
                source: err,
            },
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Usage(msg) => write!(f, "{msg}"),
            ClientError::Refused(ep) => write!(f, "connection refused: {ep}"),
            ClientError::Reset(ep) => write!(f, "connection reset by peer: {ep}"),
            ClientError::Timeout {
                endpoint,
                kind,
                after,
            } => {
                let secs = after.as_secs_f64();
                match kind {
                    TimeoutKind::Connect => {
                        write!(f, "timed out connecting to {endpoint} after {secs} s")
                    }
                    TimeoutKind::Idle => {
                        write!(f, "idle timeout: nothing moved for {secs} s: {endpoint}")
                    }
                    TimeoutKind::Replies { missing, sent } => write!(
                        f,
                        "timed out: {missing} of {sent} datagrams got no reply within {secs} s: {endpoint}"
                    ),
                }
            }
            ClientError::Protocol { endpoint, error } => {
                write!(f, "protocol error from {endpoint}: {error}")
            }
            ClientError::Io {
                context,
                endpoint,
                source,
            } => write!(f, "{context} {endpoint}: {source}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io { source, .. } => Some(source),
            ClientError::Protocol {
                error: ProtocolError::Header(e),
                ..
            } => Some(e),
            _ => None,
        }
    }
}

/// stdin could not be read.
pub(crate) fn stdin_error(ep: &Endpoint, e: io::Error) -> ClientError {
    ClientError::Io {
        context: "cannot read stdin while talking to",
        endpoint: ep.clone(),
        source: e,
    }
}
