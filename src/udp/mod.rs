//! UDP echo on the same loop: every datagram goes back to its sender, unless
//! the reflection guard ([`guard`]) refuses the source.
//!
//! A reply that would block is dropped and counted, never queued: UDP
//! promises nothing, and an unbounded reply queue is how a flood becomes an
//! out-of-memory.

use std::io;
use std::net::SocketAddr;

use log::warn;
use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

mod guard;

use crate::shared::{RateLimit, Shared};
use guard::check_source;

/// Datagrams served per socket per turn before other work gets a go.
pub const DATAGRAMS_PER_TURN: usize = 64;

/// One bound UDP socket and its readiness.
#[derive(Debug)]
pub struct UdpEndpoint {
    socket: UdpSocket,
    local: SocketAddr,
    readable: bool,
}

impl UdpEndpoint {
    /// Wraps a bound, non-blocking socket whose address is `local`.
    pub fn new(socket: UdpSocket, local: SocketAddr) -> Self {
        UdpEndpoint {
            socket,
            local,
            readable: false,
        }
    }

    /// The address datagrams arrive at (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Registers for READABLE only: replies that would block are dropped, so
    /// writability is never waited for.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, Interest::READABLE)
    }

    /// Records a readiness event.
    pub fn on_event(&mut self, event: &Event) {
        if event.is_readable() || event.is_error() {
            self.readable = true;
        }
    }

    /// Echoes up to [`DATAGRAMS_PER_TURN`] datagrams. Returns true if the
    /// socket may still hold some (serve it again before sleeping).
    pub fn serve(&mut self, shared: &mut Shared, own_ports: &[u16], log: &mut RateLimit) -> bool {
        let mut buf = std::mem::take(&mut shared.read_buf);
        let mut more = false;
        for served in 0..=DATAGRAMS_PER_TURN {
            if !self.readable {
                break;
            }
            if served == DATAGRAMS_PER_TURN {
                more = true;
                break;
            }
            let (n, src) = match self.socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => continue, // e.g. ECONNREFUSED from an earlier reply's ICMP
            };
            shared.stats.datagrams_in += 1;
            shared.stats.bytes_in += n as u64;
            if let Err(reason) = check_source(src, own_ports) {
                shared.stats.udp_dropped[reason as usize] += 1;
                if let Some(suppressed) = log.allow_counting(shared.clock.now()) {
                    warn!(
                        "udp {}: dropped datagram from {src}: {} ({suppressed} similar lines suppressed)",
                        self.local,
                        reason.name()
                    );
                }
                continue;
            }
            match self.socket.send_to(&buf[..n], src) {
                Ok(sent) => {
                    shared.stats.datagrams_out += 1;
                    shared.stats.bytes_out += sent as u64;
                }
                Err(_) => shared.stats.udp_reply_dropped += 1,
            }
        }
        shared.read_buf = buf;
        more
    }
}
