//! TCP and unix sockets: stream mode and framed mode. stdin is copied to the
//! socket by a detached thread; the calling thread copies the socket to
//! stdout and keeps the idle timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use echod_common::addr::Endpoint;

use crate::error::{stdin_error, ClientError, ProtocolError, TimeoutKind};
use crate::framed::{encode_frame, FeedError, FrameReader};
use crate::{Activity, ClientConfig};

/// Bytes read from stdin at a time in stream mode.
const STDIN_CHUNK: usize = 64 * 1024;

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

/// Runs a stream or framed session until the server closes.
pub(crate) fn run<R, W>(cfg: &ClientConfig, input: R, mut output: W) -> Result<(), ClientError>
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
