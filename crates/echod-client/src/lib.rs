//! `echod-client`: netcat for echod.
//!
//! stdin goes to the socket, the socket goes to stdout. At stdin EOF the
//! client half-closes its side (`shutdown(Write)`) and keeps reading until the
//! server closes, then succeeds. Three ways of talking:
//!
//! - **stream** (default, TCP or `unix:/path`): bytes are copied both ways
//!   unchanged; the socket is read `recv_size` bytes at a time (the seeds'
//!   `recv(1024)` / `recv(7)` loops), and every read is written out at once.
//! - **framed** (`--framed`): each stdin line, without its `\n`, is sent as one
//!   frame (a 10-byte header `format!("{:<10}", len)`, then the payload); each
//!   frame received is printed as its payload followed by `\n`.
//! - **UDP** (`--udp`): each stdin line, *including* its `\n`, is one datagram
//!   (a line longer than [`UDP_MAX_PAYLOAD`] goes as several); every reply is
//!   written to stdout verbatim, so an echo reproduces stdin. At stdin EOF the
//!   client waits up to the timeout for the replies still owed.
//!
//! # Concurrency
//! One thread copies stdin to the socket while the calling thread copies the
//! socket to stdout, so a large input never deadlocks against a server that
//! echoes while we are still sending (both sides' buffers filling up). The
//! stdin thread is detached: when the server has closed, [`run`] returns even
//! if that thread is still blocked reading stdin.
//!
//! # Timeouts
//! `timeout` bounds the connect and the idle time, "idle" meaning that no
//! byte moved in either direction for that long. For UDP without an explicit
//! timeout there is no idle limit, and the wait for replies after stdin EOF is
//! [`DEFAULT_UDP_WAIT`].
//!
//! # Errors and exit statuses
//! Every failure is a [`ClientError`] whose `Display` is one human line and
//! whose [`ClientError::exit_code`] is one of the [`exit`] statuses.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echod_common::addr::Endpoint;
use echod_common::exit;
use echod_common::framing::{encode_header, Event, FrameDecoder, FrameError, HEADER_LEN};
use echod_common::UDP_MAX_PAYLOAD;

/// The seeds' `recv(1024)`.
pub const DEFAULT_RECV_SIZE: usize = 1024;

/// How long `--udp` waits for outstanding replies after stdin EOF, unless
/// `--timeout` says otherwise.
pub const DEFAULT_UDP_WAIT: Duration = Duration::from_secs(2);

/// Datagrams sent but not yet answered before the stdin thread waits for
/// replies: a burst larger than the socket buffers would only be dropped.
const UDP_WINDOW: u64 = 64;

/// How long the stdin thread waits for the UDP window to open before sending
/// anyway (the replies it waits for may have been lost).
const UDP_WINDOW_WAIT: Duration = Duration::from_secs(1);

/// How often the UDP receive loop wakes to check the clock and the counters.
const UDP_TICK: Duration = Duration::from_millis(50);

/// Bytes read from stdin at a time in stream mode.
const STDIN_CHUNK: usize = 64 * 1024;

/// What to connect to and how to talk. Built by the binary from its flags;
/// [`ClientConfig::validate`] refuses the combinations that make no sense.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server: `host:port`, `[v6]:port` or `unix:/path` (not with `udp`).
    pub endpoint: Endpoint,
    /// Bytes asked for per socket read (stream and framed modes); at least 1.
    /// UDP replies are always read whole.
    pub recv_size: usize,
    /// Send each stdin line as one frame, print each frame's payload as a line.
    pub framed: bool,
    /// Send each stdin line as one datagram.
    pub udp: bool,
    /// Connect and idle timeout; for UDP also the wait for replies at EOF.
    pub timeout: Option<Duration>,
}

impl ClientConfig {
    /// A stream-mode configuration with the defaults.
    pub fn new(endpoint: Endpoint) -> Self {
        ClientConfig {
            endpoint,
            recv_size: DEFAULT_RECV_SIZE,
            framed: false,
            udp: false,
            timeout: None,
        }
    }

    /// Checks the combination of options; the error is a [`ClientError::Usage`].
    pub fn validate(&self) -> Result<(), ClientError> {
        let usage = |msg: &str| Err(ClientError::Usage(msg.to_string()));
        if self.recv_size == 0 {
            return usage("--recv-size must be at least 1");
        }
        if self.udp && self.framed {
            return usage("--framed and --udp cannot be combined (UDP datagrams are not framed)");
        }
        if self.udp && matches!(self.endpoint, Endpoint::Unix(_)) {
            return usage("--udp needs a host:port address, not a unix socket");
        }
        if self.timeout == Some(Duration::ZERO) {
            return usage("--timeout must be greater than 0");
        }
        Ok(())
    }
}

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
    fn from_io(context: &'static str, endpoint: &Endpoint, err: io::Error) -> Self {
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

/// Runs the client until the server closes (stream modes) or every reply
/// arrived (UDP). `input` is read on a separate, detached thread; `output`
/// gets every received byte (or payload line) and is flushed after each read.
pub fn run<R, W>(cfg: &ClientConfig, input: R, output: W) -> Result<(), ClientError>
where
    R: Read + Send + 'static,
    W: Write,
{
    cfg.validate()?;
    if cfg.udp {
        run_udp(cfg, input, output)
    } else {
        run_stream(cfg, input, output)
    }
}

/// When a byte last moved either way, shared by the two threads.
struct Activity {
    base: Instant,
    last_nanos: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            base: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = self.base.elapsed().as_nanos() as u64;
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    /// How long nothing has moved.
    fn idle_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// A connected stream socket of either family, blocking.
type Stream = echod_common::stream::StdStream;

/// Connects to `endpoint`, within `timeout` if one is given.
fn connect(endpoint: &Endpoint, timeout: Option<Duration>) -> Result<Stream, ClientError> {
    let result = match endpoint {
        Endpoint::Inet(addr) => {
            let tcp = match timeout {
                Some(t) => TcpStream::connect_timeout(addr, t),
                None => TcpStream::connect(addr),
            };
            // Interactive use: a typed line should leave at once.
            tcp.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
            .map(Stream::Tcp)
        }
        Endpoint::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
    };
    result.map_err(|e| match (e.kind(), timeout) {
        (io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock, Some(after)) => {
            ClientError::Timeout {
                endpoint: endpoint.clone(),
                kind: TimeoutKind::Connect,
                after,
            }
        }
        _ => ClientError::from_io("cannot connect to", endpoint, e),
    })
}

/// Why the stdin thread stopped early.
enum SendError {
    /// Reading stdin failed.
    Stdin(io::Error),
    /// Writing the socket failed: the reader sees why (reset, or the server
    /// closed, which is not an error).
    Socket,
}

/// Writes all of `buf`, noting activity after every partial write.
fn write_all_active(mut sock: &Stream, mut buf: &[u8], activity: &Activity) -> io::Result<()> {
    while !buf.is_empty() {
        match sock.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                activity.touch();
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Builds one frame: the 10-byte left-aligned decimal header, then
/// `payload`. `None` if the payload is too long for a header to state.
pub fn encode_frame(payload: &[u8]) -> Option<Vec<u8>> {
    let header = encode_header(payload.len() as u64)?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    Some(frame)
}

/// The stdin-to-socket half: copies chunks (stream mode) or frames lines
/// (framed mode), then half-closes the socket at EOF.
fn pump_stdin<R: Read>(
    input: R,
    sock: &Stream,
    framed: bool,
    activity: &Activity,
) -> Result<(), SendError> {
    if framed {
        let mut lines = BufReader::new(input);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = lines
                .read_until(b'\n', &mut line)
                .map_err(SendError::Stdin)?;
            if n == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let frame = encode_frame(&line).ok_or_else(|| {
                SendError::Stdin(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a line too long for a 10-digit frame header",
                ))
            })?;
            write_all_active(sock, &frame, activity).map_err(|_| SendError::Socket)?;
        }
    } else {
        let mut input = input;
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SendError::Stdin(e)),
            };
            write_all_active(sock, &buf[..n], activity).map_err(|_| SendError::Socket)?;
        }
    }
    sock.shutdown(Shutdown::Write)
        .map_err(|_| SendError::Socket)
}

/// Prints the payloads of the frames the server sends back, each followed by
/// `\n`, using the library's streaming [`FrameDecoder`]; header bytes may
/// arrive split anywhere. No length limit: a payload streams through to the
/// output as it arrives, whatever size the server announces.
struct FrameReader {
    decoder: FrameDecoder,
}

/// Why [`FrameReader::feed`] stopped.
enum FeedError {
    /// The server sent an invalid frame header.
    Frame(FrameError),
    /// Writing the output failed.
    Output(io::Error),
}

impl FrameReader {
    fn new() -> Self {
        FrameReader {
            decoder: FrameDecoder::new(u64::MAX),
        }
    }

    /// True when the stream is between two frames.
    fn at_boundary(&self) -> bool {
        self.decoder.at_boundary()
    }

    /// Feeds received bytes; payload bytes go to `out`, a `\n` after each
    /// frame. Everything before an invalid header is written before the error
    /// is returned.
    fn feed<W: Write>(&mut self, data: &[u8], out: &mut W) -> Result<(), FeedError> {
        for event in self.decoder.events(data) {
            match event {
                Event::Header { .. } => {}
                Event::Payload(payload) => out.write_all(payload).map_err(FeedError::Output)?,
                Event::FrameEnd => out.write_all(b"\n").map_err(FeedError::Output)?,
                Event::Error(e) => return Err(FeedError::Frame(e)),
            }
        }
        Ok(())
    }
}

fn run_stream<R, W>(cfg: &ClientConfig, input: R, mut output: W) -> Result<(), ClientError>
where
    R: Read + Send + 'static,
    W: Write,
{
    let ep = &cfg.endpoint;
    let sock = connect(ep, cfg.timeout)?;
    let writer_sock = sock
        .try_clone()
        .map_err(|e| ClientError::from_io("cannot use socket for", ep, e))?;
    let activity = Arc::new(Activity::new());
    activity.touch();

    let (done_tx, done_rx) = mpsc::channel::<Result<(), SendError>>();
    let thread_activity = Arc::clone(&activity);
    let framed = cfg.framed;
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let result = pump_stdin(input, &writer_sock, framed, &thread_activity);
            if result.is_err() {
                // Wake the reader: it then picks up this error from the channel.
                let _ = writer_sock.shutdown(Shutdown::Both);
            }
            let _ = done_tx.send(result);
        })
        .map_err(|e| ClientError::from_io("cannot start the stdin thread for", ep, e))?;

    if let Some(t) = cfg.timeout {
        sock.set_read_timeout(Some(t))
            .map_err(|e| ClientError::from_io("cannot set a timeout on", ep, e))?;
    }
    let mut buf = vec![0u8; cfg.recv_size];
    let mut frames = FrameReader::new();
    let out_err = |e: io::Error| ClientError::Io {
        context: "cannot write stdout while talking to",
        endpoint: ep.clone(),
        source: e,
    };
    loop {
        let n = match (&sock).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // The read timeout fired; idle only if the writer was quiet too.
                let Some(limit) = cfg.timeout else { continue };
                let idle = activity.idle_for();
                if idle >= limit {
                    return Err(ClientError::Timeout {
                        endpoint: ep.clone(),
                        kind: TimeoutKind::Idle,
                        after: limit,
                    });
                }
                let _ = sock.set_read_timeout(Some(limit - idle));
                continue;
            }
            Err(e) => {
                // A failure of ours (stdin) explains a shut-down socket better.
                if let Ok(Err(SendError::Stdin(se))) = done_rx.try_recv() {
                    return Err(stdin_error(ep, se));
                }
                return Err(ClientError::from_io("cannot read from", ep, e));
            }
        };
        activity.touch();
        if cfg.framed {
            frames.feed(&buf[..n], &mut output).map_err(|e| match e {
                FeedError::Frame(e) => ClientError::Protocol {
                    endpoint: ep.clone(),
                    error: ProtocolError::Header(e),
                },
                FeedError::Output(io) => out_err(io),
            })?;
        } else {
            output.write_all(&buf[..n]).map_err(out_err)?;
        }
        output.flush().map_err(out_err)?;
    }
    // The server closed. A stdin failure is still ours to report; a socket
    // error on the sending side (the server stopped reading and closed) is
    // how a server that closes early looks, as with netcat: not an error.
    if let Ok(Err(SendError::Stdin(e))) = done_rx.try_recv() {
        return Err(stdin_error(ep, e));
    }
    if cfg.framed && !frames.at_boundary() {
        return Err(ClientError::Protocol {
            endpoint: ep.clone(),
            error: ProtocolError::Truncated,
        });
    }
    Ok(())
}

fn stdin_error(ep: &Endpoint, e: io::Error) -> ClientError {
    ClientError::Io {
        context: "cannot read stdin while talking to",
        endpoint: ep.clone(),
        source: e,
    }
}

/// Counters shared by the two UDP threads. Invariant: `answered <= sent`
/// is *not* assumed (a server may answer twice); `eof_at` is set once.
#[derive(Default)]
struct UdpProgress {
    sent: u64,
    answered: u64,
    eof_at: Option<Instant>,
    stdin_error: Option<io::Error>,
    send_error: Option<io::Error>,
}

fn run_udp<R, W>(cfg: &ClientConfig, input: R, mut output: W) -> Result<(), ClientError>
where
    R: Read + Send + 'static,
    W: Write,
{
    let ep = &cfg.endpoint;
    let Endpoint::Inet(target) = *ep else {
        return Err(ClientError::Usage(
            "--udp needs a host:port address, not a unix socket".into(),
        ));
    };
    let local: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)
        .and_then(|s| s.connect(target).map(|()| s))
        .map_err(|e| ClientError::from_io("cannot open a UDP socket to", ep, e))?;
    sock.set_read_timeout(Some(UDP_TICK))
        .map_err(|e| ClientError::from_io("cannot set a timeout on", ep, e))?;
    let send_sock = sock
        .try_clone()
        .map_err(|e| ClientError::from_io("cannot use socket for", ep, e))?;

    let shared = Arc::new((Mutex::new(UdpProgress::default()), Condvar::new()));
    let activity = Arc::new(Activity::new());
    activity.touch();
    {
        let shared = Arc::clone(&shared);
        let activity = Arc::clone(&activity);
        thread::Builder::new()
            .name("stdin".into())
            .spawn(move || pump_udp(input, &send_sock, &shared, &activity))
            .map_err(|e| ClientError::from_io("cannot start the stdin thread for", ep, e))?;
    }

    let wait = cfg.timeout.unwrap_or(DEFAULT_UDP_WAIT);
    let mut buf = vec![0u8; UDP_MAX_PAYLOAD];
    let out_err = |e: io::Error| ClientError::Io {
        context: "cannot write stdout while talking to",
        endpoint: ep.clone(),
        source: e,
    };
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                activity.touch();
                output.write_all(&buf[..n]).map_err(out_err)?;
                output.flush().map_err(out_err)?;
                let (lock, cvar) = &*shared;
                lock.lock().unwrap_or_else(|p| p.into_inner()).answered += 1;
                cvar.notify_all();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ClientError::from_io("cannot receive from", ep, e)),
        }
        let progress = shared.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = &progress.send_error {
            let e = io::Error::new(e.kind(), e.to_string());
            return Err(ClientError::from_io("cannot send to", ep, e));
        }
        if let Some(e) = &progress.stdin_error {
            return Err(stdin_error(ep, io::Error::new(e.kind(), e.to_string())));
        }
        if let Some(eof_at) = progress.eof_at {
            if progress.answered >= progress.sent {
                return Ok(());
            }
            if eof_at.elapsed() >= wait {
                return Err(ClientError::Timeout {
                    endpoint: ep.clone(),
                    kind: TimeoutKind::Replies {
                        missing: progress.sent - progress.answered,
                        sent: progress.sent,
                    },
                    after: wait,
                });
            }
        } else if let Some(limit) = cfg.timeout {
            if activity.idle_for() >= limit {
                return Err(ClientError::Timeout {
                    endpoint: ep.clone(),
                    kind: TimeoutKind::Idle,
                    after: limit,
                });
            }
        }
    }
}

/// The UDP stdin half: one datagram per line (at most [`UDP_MAX_PAYLOAD`]
/// bytes each), with at most [`UDP_WINDOW`] unanswered at a time.
fn pump_udp<R: Read>(
    input: R,
    sock: &UdpSocket,
    shared: &(Mutex<UdpProgress>, Condvar),
    activity: &Activity,
) {
    let (lock, cvar) = shared;
    let mut lines = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                lock.lock().unwrap_or_else(|p| p.into_inner()).stdin_error = Some(e);
                return;
            }
        }
        for datagram in line.chunks(UDP_MAX_PAYLOAD) {
            let mut progress = lock.lock().unwrap_or_else(|p| p.into_inner());
            let deadline = Instant::now() + UDP_WINDOW_WAIT;
            while progress.sent.saturating_sub(progress.answered) >= UDP_WINDOW {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                progress = cvar
                    .wait_timeout(progress, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(progress);
            if let Err(e) = sock.send(datagram) {
                lock.lock().unwrap_or_else(|p| p.into_inner()).send_error = Some(e);
                return;
            }
            activity.touch();
            lock.lock().unwrap_or_else(|p| p.into_inner()).sent += 1;
        }
    }
    lock.lock().unwrap_or_else(|p| p.into_inner()).eof_at = Some(Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_decode_to_lines() {
        let mut wire = encode_frame(b"hello").unwrap();
        wire.extend(encode_frame(b"").unwrap());
        wire.extend(encode_frame(b"world!").unwrap());
        for split in 1..wire.len() {
            let mut reader = FrameReader::new();
            let mut out = Vec::new();
            for piece in wire.chunks(split) {
                assert!(reader.feed(piece, &mut out).is_ok());
            }
            assert!(reader.at_boundary());
            assert_eq!(out, b"hello\n\nworld!\n", "split {split}");
        }
    }

    #[test]
    fn bad_header_is_a_protocol_error_after_the_frames_before_it() {
        let mut wire = encode_frame(b"ok").unwrap();
        wire.extend_from_slice(b"12x       ");
        for split in 1..wire.len() {
            let mut reader = FrameReader::new();
            let mut out = Vec::new();
            let mut error = None;
            for piece in wire.chunks(split) {
                if let Err(e) = reader.feed(piece, &mut out) {
                    error = Some(e);
                    break;
                }
            }
            let Some(FeedError::Frame(e)) = error else {
                panic!("split {split}: no frame error");
            };
            assert_eq!(e.offset, 14, "split {split}");
            assert_eq!(out, b"ok\n", "split {split}");
        }
    }

    #[test]
    fn validate_refuses_nonsense() {
        let ep: Endpoint = "127.0.0.1:1".parse().unwrap();
        let mut cfg = ClientConfig::new(ep);
        cfg.udp = true;
        cfg.framed = true;
        assert!(matches!(cfg.validate(), Err(ClientError::Usage(_))));
        let mut cfg = ClientConfig::new("unix:/tmp/x".parse().unwrap());
        cfg.udp = true;
        assert_eq!(cfg.validate().unwrap_err().exit_code(), exit::USAGE);
    }
}
