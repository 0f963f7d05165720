//! What the signals ask of a worker: a graceful shutdown (SIGINT, SIGTERM or
//! a [`crate::ShutdownHandle`]) and a snapshot line (SIGUSR1).

use log::{debug, info};

use super::{Entry, Worker};
use crate::server::notify::Notice;
use crate::server::WorkerReport;
use crate::stats::CloseReason;

impl Worker {
    /// SIGUSR1: one `snapshot:` line with this worker's state now (open,
    /// draining and paused connections, bytes queued, found by one pass over
    /// the connections), its loop turns and events so far (the turn in
    /// progress not yet counted), and its counters so far, keyed as in the
    /// exit line.
    pub(super) fn log_snapshot(&self) {
        let r = self.report();
        info!(
            "snapshot: worker={} open={} draining={} paused={} queued_bytes={} memory_used={} \
             loop_turns={} events={} {}",
            self.id,
            r.open,
            r.draining,
            r.paused,
            r.queued_bytes,
            self.shared.pool.budget().used(),
            r.loop_turns,
            r.events,
            r.stats
        );
    }

    /// This worker's state now: one pass over the connections for what is
    /// not counted as it happens (paused, queued).
    pub(super) fn report(&self) -> WorkerReport {
        let (mut paused, mut queued, mut draining) = (0, 0, 0);
        for (_, entry) in self.entries.iter() {
            if let Entry::Conn(conn) = entry {
                paused += u64::from(conn.is_paused());
                draining += u64::from(conn.is_draining());
                queued += conn.queued() as u64;
            }
        }
        WorkerReport {
            open: self.connections() as u64,
            draining,
            paused,
            queued_bytes: queued,
            loop_turns: self.loop_turns,
            events: self.events,
            stats: self.shared.stats.clone(),
        }
    }

    /// First SIGINT/SIGTERM: stop accepting and receiving datagrams, and
    /// start draining every connection against one deadline.
    pub(super) fn begin_shutdown(&mut self) {
        if self.shared.shutdown_deadline.is_some() {
            return;
        }
        let deadline = self.shared.clock.now() + self.config.shutdown_timeout;
        self.shared.shutdown_deadline = Some(deadline);
        if let Some(notices) = &self.notify {
            // The notifier sends STOPPING=1 (once, whichever worker is
            // first); if it has gone, there is nobody left to tell.
            let _ = notices.send(Notice::Stopping);
        }
        info!(
            "worker {}: shutting down: {} connections to flush (at most {:?})",
            self.id,
            self.connections(),
            self.config.shutdown_timeout
        );
        let keys: Vec<usize> = self.entries.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.entries.get_mut(key) {
                Some(Entry::Listener(_)) | Some(Entry::Udp(_)) => {
                    // Dropping the socket closes it: no more accepts or datagrams.
                    self.entries.remove(key);
                }
                Some(Entry::Conn(_)) => {
                    self.end_connection(key, CloseReason::Shutdown, deadline);
                }
                None => {}
            }
        }
        self.accept_paused = None;
    }

    /// The shutdown deadline has passed: closes every connection left, each
    /// counted as if its drain had reached its own deadline (`drain_timeout`,
    /// or `idle_timeout` for an idle drain), exactly as the sweep counts it.
    /// Every drain's deadline is at or before the shutdown deadline, so the
    /// sweep earlier in the same turn has normally closed them all already.
    pub(super) fn close_all_at_deadline(&mut self) {
        for (key, entry) in self.entries.iter_mut() {
            if let Entry::Conn(conn) = entry {
                if conn.queued() > 0 {
                    debug!(
                        "{}: {} bytes unsent at shutdown",
                        conn.peer(),
                        conn.queued()
                    );
                }
                conn.close_at_deadline();
                self.doomed.push(key);
            }
        }
        self.timed = 0;
        self.reap();
    }
}
