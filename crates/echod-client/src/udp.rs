//! UDP: each stdin line is one datagram; replies are printed verbatim.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echod_common::addr::Endpoint;
use echod_common::UDP_MAX_PAYLOAD;

use crate::error::{stdin_error, ClientError, TimeoutKind};
use crate::{Activity, ClientConfig};

/// How long `--udp` waits for outstanding replies after stdin EOF, unless
/// `--timeout` says otherwise.
const DEFAULT_UDP_WAIT: Duration = Duration::from_secs(2);

/// Datagrams sent but not yet answered before the stdin thread waits for
/// replies: a burst larger than the socket buffers would only be dropped.
const UDP_WINDOW: u64 = 64;

/// How long the stdin thread waits for the UDP window to open before sending
/// anyway (the replies it waits for may have been lost).
const UDP_WINDOW_WAIT: Duration = Duration::from_secs(1);

/// How often the UDP receive loop wakes to check the clock and the counters.
const UDP_TICK: Duration = Duration::from_millis(50);

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

/// Runs a UDP session until every reply arrived or the wait ran out.
pub(crate) fn run<R, W>(cfg: &ClientConfig, input: R, mut output: W) -> Result<(), ClientError>
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
