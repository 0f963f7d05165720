//! Accept policy: a cap per turn, shedding when descriptors run out (the
//! reserve descriptor), pausing when even that fails, and `--max-connections`.

use std::fs::File;
use std::io;
use std::time::Duration;

use log::{debug, error, warn};
use mio::{Interest, Token};

use super::{Entry, Worker};
use crate::connection::{Connection, Next, Peer, DRAIN_LINGER, PROXY_HEADER_TIMEOUT};
use crate::stats::CloseReason;
use echod_common::stream::MioStream as Stream;

/// Accepts per listener per turn before other work is served (redis caps
/// accepts per call the same way, so a connection flood cannot stall echoes).
const ACCEPTS_PER_TURN: usize = 128;

/// How long accepting stops when descriptors run out and the reserve
/// descriptor could not be re-opened (nginx pauses 500 ms; we retry sooner).
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

impl Worker {
    /// Accepts up to [`ACCEPTS_PER_TURN`] connections from one listener.
    pub(super) fn accept(&mut self, key: usize) {
        if self.shared.shutdown_deadline.is_some() {
            return;
        }
        if let Some((_, paused)) = &mut self.accept_paused {
            if !paused.contains(&key) {
                paused.push(key);
            }
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(Entry::Listener(listener)) = self.entries.get(key) else {
                return;
            };
            let has_nodelay = listener.passes_nodelay();
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, has_nodelay),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if crate::sys::is_transient_accept_error(&e) => {
                    self.shared.stats.accept_errors += 1;
                }
                Err(e) if echod_common::sys::is_resource_exhaustion(&e) => {
                    self.shared.stats.accept_errors += 1;
                    if !self.shed_one(key, &e) {
                        return;
                    }
                }
                Err(e) => {
                    self.shared.stats.accept_errors += 1;
                    if self.exhausted_log.allow(self.shared.clock.now()) {
                        error!("accept failed: {e}; pausing accepts");
                    }
                    self.pause_accepting(key);
                    return;
                }
            }
        }
        self.ready.push(key); // cap reached: more may be pending
    }

    /// Out of descriptors: close the reserve descriptor, accept one pending
    /// connection and close it at once (the client sees EOF instead of
    /// hanging), then take the reserve back. Returns whether accepting may
    /// go on. Linux reports EMFILE even when nothing is pending, so a
    /// WouldBlock here just means the backlog is empty: the next connection
    /// brings a new edge. Accepting pauses only if the reserve cannot be had.
    fn shed_one(&mut self, key: usize, cause: &io::Error) -> bool {
        let Some(reserve) = self.reserve_fd.take() else {
            self.pause_accepting(key);
            return false;
        };
        drop(reserve);
        let outcome = match self.entries.get(key) {
            Some(Entry::Listener(listener)) => listener.accept().map(|_| ()),
            _ => Err(io::ErrorKind::WouldBlock.into()),
        };
        self.reserve_fd = File::open("/dev/null").ok();
        let go_on = match outcome {
            Ok(()) => {
                self.shared.stats.rejected_fd_exhausted += 1;
                if let Some(n) = self.exhausted_log.allow_counting(self.shared.clock.now()) {
                    warn!(
                        "accept: {cause} ({} connections open); shedding new connections \
                         ({n} similar lines suppressed)",
                        self.connections()
                    );
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(_) => {
                self.pause_accepting(key);
                false
            }
        };
        if self.reserve_fd.is_none() {
            self.pause_accepting(key);
            return false;
        }
        go_on
    }

    fn pause_accepting(&mut self, key: usize) {
        let until = self.shared.clock.now() + ACCEPT_PAUSE;
        match &mut self.accept_paused {
            Some((_, keys)) => {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            None => self.accept_paused = Some((until, vec![key])),
        }
    }

    /// `--proxy-from`: whether a socket peer may send a PROXY header. Any
    /// peer when no range is given; unix peers always (whoever can reach
    /// the socket file passed its permissions, and a unix peer has no
    /// address to match).
    fn trusted(&self, peer: Peer) -> bool {
        match peer {
            Peer::Inet(addr) => {
                self.config.proxy_from.is_empty()
                    || self.config.proxy_from.iter().any(|c| c.contains(addr.ip()))
            }
            Peer::Unix => true,
        }
    }

    /// Registers an accepted stream, or sheds it when this worker is full.
    /// `has_nodelay`: the listener passed TCP_NODELAY on to the stream
    /// ([`Listener::passes_nodelay`]); otherwise it is set here.
    ///
    /// [`Listener::passes_nodelay`]: crate::server::listener::Listener::passes_nodelay
    fn admit(&mut self, mut stream: Stream, peer: Peer, has_nodelay: bool) {
        if self.connections() >= self.config.max_connections {
            self.shared.stats.rejected_max_connections += 1;
            if let Some(n) = self.reject_log.allow_counting(self.shared.clock.now()) {
                warn!(
                    "rejected {peer}: --max-connections {} reached ({n} similar lines suppressed)",
                    self.config.max_connections
                );
            }
            return; // dropping the stream closes it
        }
        if self.config.proxy_protocol && !self.trusted(peer) {
            // Counted as accepted and closed, like any connection echod ends.
            self.shared.stats.opened(self.open.opened());
            self.open.closed();
            self.shared.stats.ended(CloseReason::ProxyUntrusted);
            if let Some(n) = self
                .shared
                .proxy_log
                .allow_counting(self.shared.clock.now())
            {
                warn!(
                    "closing {peer}: not in --proxy-from, its PROXY header is not trusted \
                     ({n} similar lines suppressed)"
                );
            }
            debug!("close {peer} ({})", CloseReason::ProxyUntrusted);
            return; // dropping the stream closes it
        }
        if !has_nodelay {
            let _ = stream.set_nodelay();
        }
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("cannot register {peer}: {e}");
            return;
        }
        let now = self.shared.clock.tick();
        let proxy_until = self
            .config
            .proxy_protocol
            .then(|| now.after(PROXY_HEADER_TIMEOUT));
        let conn = Connection::new(
            stream,
            peer,
            self.config.mode,
            self.config.once,
            self.config.max_frame,
            now,
            proxy_until,
        );
        entry.insert(Entry::Conn(conn));
        self.shared.stats.opened(self.open.opened());
        if !self.config.proxy_protocol {
            // Behind a balancer the socket's peer is the balancer: the
            // connection's open line waits for the PROXY header's client.
            debug!("open {peer} (token {key})");
        }
        if proxy_until.is_some() {
            // Timed until its header is accepted; the banner follows the
            // header (Connection::on_proxy_input), never precedes it.
            self.timed += 1;
            return;
        }
        if let Some(banner) = self.config.banner.clone() {
            let Some(Entry::Conn(conn)) = self.entries.get_mut(key) else {
                return;
            };
            if let Next::Reap = conn.send_banner(&banner, &mut self.shared) {
                self.doomed.push(key);
                return;
            }
            if self.config.once {
                let until = self.shared.clock.now() + DRAIN_LINGER;
                self.end_connection(key, CloseReason::Once, until);
            }
        }
    }
}
