//! Open-loop pacing: when each message is meant to leave, and a timer precise
//! enough to wake up for it.
//!
//! `--rate R` gives message `k` of a worker the intended send time
//! `start + k / R_worker`. The schedule is sorted by construction, so "what is
//! due" is a counter compared with the clock, and the next wake-up is the
//! next message's time. Latency is measured from that intended time, never
//! from when the message actually left, so a server stall that holds the
//! sender back shows in the percentiles (no coordinated omission).
//!
//! mio's `poll` timeout has millisecond resolution (it rounds up), which at a
//! few thousand messages a second would add up to a millisecond of our own
//! lateness to every latency. [`TimerFd`] is a Linux `timerfd` registered with
//! the poll, with nanosecond resolution.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// The intended send times of one worker's open-loop messages, in
/// nanoseconds on the worker's clock. Invariant: times never decrease.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    interval_ns: f64,
    next: u64,
}

impl Schedule {
    /// Messages at `rate` per second from `start_ns` on. `rate` must be > 0.
    pub fn new(start_ns: u64, rate: f64) -> Self {
        debug_assert!(rate > 0.0 && rate.is_finite());
        Schedule {
            start_ns,
            interval_ns: 1e9 / rate,
            next: 0,
        }
    }

    /// The intended send time of the next message.
    pub fn next_time(&self) -> u64 {
        self.start_ns + (self.next as f64 * self.interval_ns) as u64
    }

    /// The next message's intended time if it is due at `now`, advancing past it.
    pub fn pop_due(&mut self, now: u64) -> Option<u64> {
        let t = self.next_time();
        if t <= now {
            self.next += 1;
            Some(t)
        } else {
            None
        }
    }
}

/// `--connect-rate`: at most `rate` new connections per second, for the
/// ramp and for the replacements of `--conn-messages`. Slot `k` opens at
/// `next`, then `next` moves on by `1 / rate`; a pacer left unused does not
/// save up more than [`PACER_BURST_NS`] of slots, so a quiet spell is never
/// followed by a burst above the rate.
#[derive(Debug, Clone)]
pub struct ConnectPacer {
    interval_ns: f64,
    next_ns: f64,
}

/// How far behind the clock a [`ConnectPacer`] may fall and catch up: a
/// loop woken a little late still opens what was due, no more.
const PACER_BURST_NS: f64 = 1e6;

impl ConnectPacer {
    /// A pacer for `rate` connects per second, first slot at `start_ns`.
    pub fn new(start_ns: u64, rate: f64) -> Self {
        debug_assert!(rate > 0.0 && rate.is_finite());
        ConnectPacer {
            interval_ns: 1e9 / rate,
            next_ns: start_ns as f64,
        }
    }

    /// Takes a slot if one is due at `now`.
    pub fn try_take(&mut self, now: u64) -> bool {
        let now = now as f64;
        if self.next_ns > now {
            return false;
        }
        let floor = now - PACER_BURST_NS;
        self.next_ns = self.next_ns.max(floor) + self.interval_ns;
        true
    }

    /// When the next slot is due (ns on the worker clock).
    pub fn next_time(&self) -> u64 {
        self.next_ns as u64
    }
}

/// A non-blocking monotonic Linux timerfd, one-shot, registered for READABLE.
#[derive(Debug)]
pub struct TimerFd {
    fd: OwnedFd,
}

impl TimerFd {
    /// A disarmed timer.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; a valid descriptor is owned exactly once below.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by timerfd_create and is owned by no one else.
        Ok(TimerFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Fires once, `after` from now (a zero delay fires at once). Re-arming
    /// replaces the previous expiry and clears any unread expirations.
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Source for TimerFd {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spaces_messages_evenly_without_drift() {
        let mut s = Schedule::new(1_000, 3.0);
        let mut times = Vec::new();
        while let Some(t) = s.pop_due(3_000_001_000) {
            times.push(t);
        }
        // 0, 1/3 s, 2/3 s, ... 3 s inclusive: 10 messages, no cumulative rounding.
        assert_eq!(times.len(), 10);
        assert_eq!(times[0], 1_000);
        assert_eq!(times[9], 3_000_001_000);
        assert_eq!(s.pop_due(3_000_001_000), None);
    }

    #[test]
    fn connect_pacer_keeps_the_rate_and_saves_up_no_burst() {
        let mut p = ConnectPacer::new(0, 100.0);
        // Polled every millisecond for 2 s: 200 slots, 10 ms apart.
        let taken: Vec<u64> = (0..2_000_000_000u64)
            .step_by(1_000_000)
            .filter(|&t| p.try_take(t))
            .collect();
        assert_eq!(taken.len(), 200);
        assert!(taken.windows(2).all(|w| w[1] - w[0] == 10_000_000));
        // Unused for 10 s: one slot at once, the next one a slot (less the
        // 1 ms catch-up allowance) later.
        let later = 12_000_000_000;
        assert!(p.try_take(later));
        assert!(!p.try_take(later));
        assert_eq!(p.next_time(), later + 9_000_000);
    }

    #[test]
    fn timerfd_wakes_a_poll() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut timer = TimerFd::new().unwrap();
        poll.registry()
            .register(&mut timer, Token(1), Interest::READABLE)
            .unwrap();
        timer.arm(Duration::from_micros(200)).unwrap();
        let start = std::time::Instant::now();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == Token(1)));
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
