//! Timers: the idle sweep, drain deadlines, the accept pause and the
//! shutdown deadline. None is armed in the steady echo without
//! `--idle-timeout`, and then a turn pays three comparisons and no clock read.

use std::fs::File;
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::{Entry, Worker};
use crate::clock;
use crate::connection::{DRAIN_LINGER, PROXY_HEADER_TIMEOUT};
use crate::memory;
use crate::stats::CloseReason;

/// Timer tick while any connection is draining or awaiting its PROXY
/// header, or the daemon shuts down: deadlines are checked once per tick
/// (one pass over the connections), so a drain, or a header that is late,
/// closes at most this long after its deadline.
const DRAIN_TICK: Duration = Duration::from_millis(50);

/// How often a worker whose queues hold a burst looks at the memory budget.
const MEMORY_TICK: Duration = Duration::from_millis(250);

/// Checks in a row the budget must be found spent before anything is
/// evicted: a spike that drains by itself within half a second costs no
/// connection.
const EVICT_AFTER_TICKS: u32 = 2;

/// Eviction stops once the budget is back to this share of itself, so one
/// eviction does not follow another at every check.
const EVICT_TARGET_PERCENT: usize = 90;

/// Checks in a row a burst must be found over (lending at a quarter of its
/// peak) before idle chunks are freed and memory given back: a stream that
/// fills and drains its queue again and again is not a burst that ended.
const QUIET_TICKS: u32 = 4;

/// Idle chunks a worker keeps after a burst: 64 x 16 KiB = 1 MiB.
const POOL_KEEP_AFTER_BURST: usize = 64;

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
        if let Some(t) = self.next_memory_check {
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
        if self.next_idle_sweep.is_none()
            && self.accept_paused.is_none()
            && !self.drains_pending()
            && !self.shared.pool.grew()
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
        if self.next_memory_check.is_none() && self.shared.pool.grew() {
            self.next_memory_check = Some(now + MEMORY_TICK);
        }
        if self.next_memory_check.is_some_and(|t| now >= t) {
            self.check_memory(now);
        }
    }

    /// While this worker's queues hold a burst, every [`MEMORY_TICK`]: if
    /// the budget has been spent for [`EVICT_AFTER_TICKS`] checks in a row,
    /// close the biggest holders; once the burst has been over for
    /// [`QUIET_TICKS`] checks, keep only a few idle chunks and give the
    /// freed memory back to the operating system.
    fn check_memory(&mut self, now: Instant) {
        if self.shared.pool.budget().has_room() {
            self.budget_spent_ticks = 0;
        } else {
            self.budget_spent_ticks += 1;
            if self.budget_spent_ticks >= EVICT_AFTER_TICKS {
                self.evict_biggest();
            }
        }
        if self.shared.pool.burst_over() {
            self.burst_over_ticks += 1;
        } else {
            self.burst_over_ticks = 0;
        }
        if self.burst_over_ticks >= QUIET_TICKS {
            self.shared.pool.settle(POOL_KEEP_AFTER_BURST);
            memory::return_free_memory();
            debug!(
                "worker {}: burst over, memory given back ({} bytes still owed to peers)",
                self.id,
                self.shared.pool.budget().used()
            );
            self.burst_over_ticks = 0;
            self.next_memory_check = None;
        } else {
            self.next_memory_check = Some(now + MEMORY_TICK);
        }
    }

    /// The budget is spent and has stayed so: closes this worker's biggest
    /// holders among the connections that are not being read (paused: over
    /// their share or their queue limit), biggest first, until the budget
    /// is back to [`EVICT_TARGET_PERCENT`] of itself (redis 7's
    /// `maxmemory-clients` evicts the clients using the most memory the same
    /// way). A connection that keeps reading its echoes is never paused, so
    /// never chosen.
    fn evict_biggest(&mut self) {
        let budget = self.shared.pool.budget();
        let target = budget.limit() / 100 * EVICT_TARGET_PERCENT;
        let mut excess = budget.used().saturating_sub(target);
        let mut candidates: Vec<(usize, usize)> = self
            .entries
            .iter()
            .filter_map(|(key, entry)| match entry {
                Entry::Conn(conn) if conn.is_paused() && conn.closed_reason().is_none() => {
                    Some((conn.queued(), key))
                }
                _ => None,
            })
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        for (_, key) in candidates {
            if excess == 0 {
                break;
            }
            let Some(Entry::Conn(conn)) = self.entries.get_mut(key) else {
                continue;
            };
            let was_timed = conn.is_timed();
            let held = conn.evict(&mut self.shared);
            if was_timed {
                self.timed -= 1;
            }
            excess = excess.saturating_sub(held.max(1));
            self.doomed.push(key);
            let limit = self.config.max_memory;
            if let Some(n) = self.memory_log.allow_counting(self.shared.clock.now()) {
                warn!(
                    "closing {}: memory pressure: {held} bytes owed to it, --max-memory {limit} \
                     spent ({n} similar lines suppressed)",
                    conn.peer()
                );
            }
        }
    }

    /// Whether a drain or a PROXY header may be waiting on its deadline (or
    /// shutdown is on). Never without `--proxy-protocol` and with nothing
    /// draining: the steady echo keeps the timers disarmed.
    fn drains_pending(&self) -> bool {
        self.timed > 0 || self.shared.shutdown_deadline.is_some()
    }

    /// One pass over the connections: expire idle ones, close drains whose
    /// deadline passed and connections whose PROXY header is late. Costs
    /// O(connections) per tick, never per message.
    fn sweep(&mut self, check_idle: bool) {
        let now = self.shared.clock.now();
        let tick = self.shared.clock.tick();
        let idle = self.config.idle_timeout;
        // Idle for at least the timeout: one wrapping subtraction and one
        // comparison per connection. The timeout in milliseconds is clamped
        // to `Tick::MAX_SPAN` (24 days; the flag allows at most one), and
        // every open connection is looked at at least once a second, so the
        // idle time is read long before it could wrap (2^32 ms).
        let idle_ms = idle.map(clock::millis);
        let mut idle_out = Vec::new();
        let counted = self.timed;
        let mut seen = 0;
        for (key, entry) in self.entries.iter_mut() {
            let Entry::Conn(conn) = entry else { continue };
            if conn.is_timed() {
                seen += 1;
                if conn.drain_expired(tick) {
                    self.doomed.push(key);
                    self.timed -= 1;
                    if conn.closed_reason() == Some(CloseReason::ProxyTimeout) {
                        if let Some(n) = self.shared.proxy_log.allow_counting(now) {
                            warn!(
                                "closing {}: no complete PROXY protocol header within {:?} \
                                 ({n} similar lines suppressed)",
                                conn.peer(),
                                PROXY_HEADER_TIMEOUT
                            );
                        }
                    }
                }
            } else if check_idle && conn.closed_reason().is_none() {
                if let (Some(limit), Some(limit_ms)) = (idle, idle_ms) {
                    if tick.since(conn.last_active()) >= limit_ms {
                        debug!("{}: idle for {limit:?}", conn.peer());
                        idle_out.push(key);
                    }
                }
            }
        }
        debug_assert_eq!(seen, counted, "the timed count drifted");
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

#[cfg(test)]
mod tests {
    use super::Entry;
    use crate::connection::Connection;
    use std::mem::size_of;

    /// The slab's slot (its entry enum around [`Entry`]) is no bigger than
    /// a connection: listeners and UDP sockets are smaller, and the tags
    /// live in the connection's niches. An idle connection costs this.
    #[test]
    fn a_slab_slot_is_the_size_of_a_connection() {
        #[allow(dead_code)]
        enum Slot {
            Vacant(usize),
            Occupied(Entry),
        }
        assert_eq!(size_of::<Entry>(), size_of::<Connection>());
        assert_eq!(size_of::<Slot>(), size_of::<Connection>());
    }
}
