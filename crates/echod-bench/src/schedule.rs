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
