//! `--metrics ADDR`: `GET /metrics` in the Prometheus text format, served by
//! a thread of its own with its own small mio poll, never by a worker loop.
//!
//! Why a thread: a scrape must never delay an echo. The workers only answer
//! a [`Monitor`] request between two of their events (a few microseconds
//! each, once per scrape); everything else a scrape costs (accepting,
//! reading and judging the request, encoding, writing, and waiting on slow or
//! hostile clients) happens here. Its own poll lets one slow client not hold
//! up another: each has a deadline ([`CLIENT_DEADLINE`]) and a head cap
//! ([`http::MAX_HEAD`]), and at most [`MAX_CLIENTS`] are served at once.
//! The one thing that waits is [`Monitor::report`], for at most
//! [`REPORT_TIMEOUT`] (a stuck worker gets a 503, not a hung thread).
//!
//! - [`http`]: the bounded, sans-I/O request-head reader and the routing.
//! - `text`: the report in the classic text format 0.0.4.

pub mod http;
mod text;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::listener::{self, BindError};
use super::Monitor;
use http::{Parse, Route};

/// Metrics clients served at once; more are accepted and closed at once.
/// A Prometheus server holds one; a few more leave room for curl and a
/// second Prometheus, and the cap bounds what junk clients can hold.
const MAX_CLIENTS: usize = 16;

/// How long a client has, from accept, to send its head and take the
/// answer: Prometheus's default scrape timeout is 10 s, a head is one
/// packet. A slow or silent client is closed when it passes.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

/// How long a scrape waits for every worker to answer before a 503.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes read per `read` call (a head is at most [`http::MAX_HEAD`]).
const READ_CHUNK: usize = 4096;

const LISTENER: Token = Token(usize::MAX - 1);
const STOP: Token = Token(usize::MAX);

/// The metrics port, bound by [`super::Server::bind`] so that a bad address
/// fails at start.
#[derive(Debug)]
pub(super) struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `addr` (port 0: any free port), non-blocking.
    pub(super) fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        let (listener, addr) = listener::bind_tcp_single(addr)?;
        Ok(MetricsListener { listener, addr })
    }

    /// The address bound, port 0 resolved.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts serving on a thread of its own until the [`MetricsThread`] is dropped.
    pub(super) fn start(self, monitor: Monitor) -> io::Result<MetricsThread> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), STOP)?;
        let mut listener = self.listener;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let handle = std::thread::Builder::new()
            .name("echod-metrics".into())
            .spawn(move || {
                let mut server = Metrics {
                    poll,
                    listener,
                    clients: Slab::with_capacity(MAX_CLIENTS),
                    monitor,
                };
                if let Err(e) = server.run() {
                    warn!("metrics: the loop failed, metrics are off: {e}");
                }
            })?;
        Ok(MetricsThread {
            waker,
            handle: Some(handle),
        })
    }
}

/// The running metrics thread. Dropping it stops the thread (open metrics
/// clients are closed) and waits for it, on every way out of a run.
#[derive(Debug)]
pub(super) struct MetricsThread {
    waker: Waker,
    handle: Option<JoinHandle<()>>,
}

impl Drop for MetricsThread {
    fn drop(&mut self) {
        if let Err(e) = self.waker.wake() {
            warn!("metrics: cannot wake the thread to stop it: {e}");
            return;
        }
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                warn!("metrics: the thread panicked");
            }
        }
    }
}

/// Where a metrics client is.
#[derive(Debug)]
enum Phase {
    /// Reading the request head; what came so far (at most `MAX_HEAD`).
    Reading(Vec<u8>),
    /// Writing the answer; `sent` bytes of it are gone. Closed when done.
    Writing { answer: Vec<u8>, sent: usize },
}

#[derive(Debug)]
struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    until: Instant,
    phase: Phase,
}

/// What becomes of a client after an event.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Keep,
    Close,
}

struct Metrics {
    poll: Poll,
    listener: TcpListener,
    clients: Slab<Client>,
    monitor: Monitor,
}

impl Metrics {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            let timeout = self
                .clients
                .iter()
                .map(|(_, c)| c.until)
                .min()
                .map(|until| {
                    // Rounded up: waking a moment early would only poll again.
                    until.saturating_duration_since(Instant::now()) + Duration::from_millis(1)
                });
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    STOP => return Ok(()),
                    LISTENER => self.accept(),
                    Token(key) => {
                        let next = match self.clients.get_mut(key) {
                            Some(client) => client.drive(&self.monitor),
                            None => Next::Keep,
                        };
                        if next == Next::Close {
                            self.close(key);
                        }
                    }
                }
            }
            let now = Instant::now();
            let late: Vec<usize> = self
                .clients
                .iter()
                .filter(|(_, c)| c.until <= now)
                .map(|(key, _)| key)
                .collect();
            for key in late {
                if let Some(c) = self.clients.get(key) {
                    debug!("metrics: {} too slow, closed", c.peer);
                }
                self.close(key);
            }
        }
    }

    /// Accepts until the backlog is empty; beyond [`MAX_CLIENTS`], closes
    /// the newcomer at once.
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        debug!("metrics: {peer} refused, {MAX_CLIENTS} clients already");
                        continue;
                    }
                    let entry = self.clients.vacant_entry();
                    let token = Token(entry.key());
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        debug!("metrics: cannot register {peer}: {e}");
                        continue;
                    }
                    entry.insert(Client {
                        stream,
                        peer,
                        until: Instant::now() + CLIENT_DEADLINE,
                        phase: Phase::Reading(Vec::new()),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: the next connection wakes us again.
                    debug!("metrics: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut client) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut client.stream);
        }
    }
}

impl Client {
    /// Reads until the head is judged, then writes the answer; on a
    /// readiness event, does each until `WouldBlock`.
    fn drive(&mut self, monitor: &Monitor) -> Next {
        if let Phase::Reading(head) = &mut self.phase {
            let answer = match read_head(&mut self.stream, head) {
                Ok(Some(answer)) => answer,
                Ok(None) => return Next::Keep,
                Err(e) => {
                    debug!("metrics: {} closed while reading: {e}", self.peer);
                    return Next::Close;
                }
            };
            let answer = answer.into_bytes(monitor, self.peer);
            self.phase = Phase::Writing { answer, sent: 0 };
        }
        let Phase::Writing { answer, sent } = &mut self.phase else {
            return Next::Keep;
        };
        while *sent < answer.len() {
            match self.stream.write(&answer[*sent..]) {
                Ok(0) => return Next::Close,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("metrics: {} closed while writing: {e}", self.peer);
                    return Next::Close;
                }
            }
        }
        Next::Close
    }
}

/// Reads into `head` until it is judged: `Some(answer)`, or `None` when the
/// socket has nothing more for now. An error or EOF before a judgement is
/// `Err`: the client is closed without an answer.
fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> io::Result<Option<Answer>> {
    let mut buf = [0u8; READ_CHUNK];
    loop {
        match http::parse(head) {
            Parse::Complete(h) => return Ok(Some(Answer::Route(http::route(&h)))),
            Parse::Error(e) => return Ok(Some(Answer::BadRequest(e))),
            Parse::Incomplete => {}
        }
        // `parse` judges every head of MAX_HEAD bytes, so there is room.
        let room = (http::MAX_HEAD - head.len()).min(READ_CHUNK);
        match stream.read(&mut buf[..room]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// What a judged head is answered with.
#[derive(Debug)]
enum Answer {
    Route(Route),
    BadRequest(http::HeadError),
}

impl Answer {
    /// The whole HTTP response. `Connection: close` always: a scrape every
    /// few seconds gains nothing from keep-alive, and one request per
    /// connection keeps the reader simple.
    fn into_bytes(self, monitor: &Monitor, peer: SocketAddr) -> Vec<u8> {
        let (status, extra, body) = match self {
            Answer::Route(Route::Metrics) => match monitor.report(REPORT_TIMEOUT) {
                Some(report) => ("200 OK", "", text::encode(&report)),
                None => {
                    warn!("metrics: a worker did not answer within {REPORT_TIMEOUT:?}");
                    (
                        "503 Service Unavailable",
                        "",
                        "workers did not answer\n".into(),
                    )
                }
            },
            Answer::Route(Route::NotFound) => ("404 Not Found", "", "try /metrics\n".into()),
            Answer::Route(Route::MethodNotAllowed) => (
                "405 Method Not Allowed",
                "Allow: GET\r\n",
                "only GET\n".into(),
            ),
            Answer::BadRequest(e) => {
                debug!("metrics: bad request from {peer}: {e:?}");
                ("400 Bad Request", "", "bad request\n".into())
            }
        };
        let content_type = if status.starts_with("200") {
            text::CONTENT_TYPE
        } else {
            "text/plain; charset=utf-8"
        };
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}
