//! Timers: the idle sweep, drain deadlines, the accept pause and the
//! shutdown deadline. None is armed in the steady echo without
//! `--idle-timeout`, and then a turn pays three comparisons and no clock read.

use std::fs::File;
use std::time::{Duration, Instant};

use log::debug;

use super::{Entry, Worker};
use crate::connection::DRAIN_LINGER;
use crate::stats::CloseReason;

/// Timer tick while any connection is draining or the daemon shuts down:
/// drain deadlines are checked once per tick (one pass over the
/// connections), so a drain closes at most this long after its deadline.
const DRAIN_TICK: Duration = Duration::from_millis(50);

impl Worker {
    /// The earliest moment a timer needs the loop awake.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut consider = |t: Instant| {
            earliest = Some(earliest.map_or(t, |e| e.min(t)));
        };
        if let Some(t) = self.next_idle_sweep {
            consider(t);
        }
        if let Some((t, _)) = &self.accept_paused {
            consider(*t);
        }
        if self.drains_pending() {
            consider(self.next_drain_sweep);
        }
        if let Some(t) = self.shared.shutdown_deadline {
            consider(t);
        }
        earliest
    }

    /// Fires the timers that are due and returns the next deadline. With
    /// none armed (no `--idle-timeout`, no accept pause, nothing draining)
    /// this is a few comparisons and no clock read. The check names the same
    /// timers as [`Worker::next_deadline`]; asking `next_deadline` instead
    /// measured 8 instructions more per message at one connection.
    pub(super) fn run_timers(&mut self) -> Option<Instant> {
        if self.next_idle_sweep.is_none() && self.accept_paused.is_none() && !self.drains_pending()
        {
            return None;
        }
        self.fire_timers();
        self.next_deadline()
    }

    #[inline(never)]
    fn fire_timers(&mut self) {
        let now = self.shared.clock.now();
        if let Some((until, _)) = &self.accept_paused {
            if now >= *until {
                if let Some((_, keys)) = self.accept_paused.take() {
                    if self.reserve_fd.is_none() {
                        self.reserve_fd = File::open("/dev/null").ok();
                    }
                    self.ready.extend(keys);
                }
            }
        }
        let idle_due = self.next_idle_sweep.is_some_and(|t| now >= t);
        let drains_due = self.drains_pending() && now >= self.next_drain_sweep;
        if idle_due || drains_due {
            self.sweep(idle_due);
            self.next_drain_sweep = now + DRAIN_TICK;
        }
        if idle_due {
            if let Some(idle) = self.config.idle_timeout {
                self.next_idle_sweep = Some(now + idle_tick(idle));
            }
        }
    }

    /// Whether a drain may be waiting on its deadline (or shutdown is on).
    fn drains_pending(&self) -> bool {
        self.draining > 0 || self.shared.shutdown_deadline.is_some()
    }

    /// One pass over the connections: expire idle ones, close drains whose
    /// deadline passed. Costs O(connections) per tick, never per message.
    fn sweep(&mut self, check_idle: bool) {
        let now = self.shared.clock.now();
        let idle = self.config.idle_timeout;
        // Idle for at least the timeout = last active at or before this
        // instant: one subtraction per sweep, one comparison per connection.
        let idle_since = idle.and_then(|limit| now.checked_sub(limit));
        let mut idle_out = Vec::new();
        let counted = self.draining;
        let mut seen = 0;
        for (key, entry) in self.entries.iter_mut() {
            let Entry::Conn(conn) = entry else { continue };
            if conn.is_draining() {
                seen += 1;
                if conn.drain_expired(now) {
                    self.doomed.push(key);
                    self.draining -= 1;
                }
            } else if check_idle && conn.closed_reason().is_none() {
                if let (Some(limit), Some(since)) = (idle, idle_since) {
                    if conn.last_active() <= since {
                        debug!("{}: idle for {limit:?}", conn.peer());
                        idle_out.push(key);
                    }
                }
            }
        }
        debug_assert_eq!(seen, counted, "the draining count drifted");
        for key in idle_out {
            self.end_connection(key, CloseReason::IdleTimeout, now + DRAIN_LINGER);
        }
    }
}

/// How often to look for idle connections: a quarter of the timeout, so one
/// expires at most 25% late, between 10 ms and 1 s.
pub(super) fn idle_tick(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}
