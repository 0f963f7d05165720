//! The loop's clock: read at most once per turn, and only if something in
//! that turn asks for the time.
//!
//! Every timestamp a turn takes (a connection's last activity, a drain's
//! deadline, a rate-limited log line, the timers) is the same instant, the
//! first one asked for after the poll returned. A turn that asks for none
//! (the steady echo with no timer armed and no `--idle-timeout`) makes no
//! clock read at all.
//!
//! Connections keep their times as a [`Tick`]: 4 bytes of milliseconds
//! instead of a 16-byte [`Instant`], which keeps an idle connection small
//! (see `Connection`'s size test).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The moment [`Tick`]s count from: set once per process, by the first
/// clock made (a worker's) or the first conversion, whichever comes first.
/// One epoch for every worker, so a [`Tick`] means the same moment on any
/// thread.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// A moment as milliseconds since the process's clock epoch, modulo 2^32:
/// what a connection stores for its last activity and its deadlines.
///
/// The count wraps every 2^32 ms (49.7 days), so ticks are compared by
/// their wrapping distance, never by value, and `Tick` has no `Ord`:
/// [`Tick::reached`] and [`Tick::earlier`]/[`Tick::later`] are right
/// whenever the two ticks are less than 2^31 ms (24.8 days) apart, and
/// [`Tick::since`] whenever less than 2^32 ms have passed. Every span echod
/// puts between two ticks stays far below that: a deadline is at most
/// [`Tick::MAX_SPAN`] ahead ([`Tick::after`] clamps; the flags already cap
/// `--idle-timeout` and `--shutdown-timeout` at 86,400 s), and the sweeps
/// look at every timed connection every 50 ms and at every idle one at
/// least every second, so no deadline or idle time is left unchecked long
/// enough to alias. Across the wrap (after 49.7 days of uptime) nothing
/// changes.
///
/// Resolution is one millisecond (truncated), which is finer than any
/// timer of the loop (the drain sweep ticks every 50 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick(u32);

impl Tick {
    /// The farthest ahead a deadline may be set: 24 days, below the 2^31 ms
    /// (24.8 days) within which comparisons are exact.
    pub const MAX_SPAN: Duration = Duration::from_secs(24 * 24 * 60 * 60);

    /// `t` on the tick clock (an instant before the epoch is the epoch).
    pub fn of(t: Instant) -> Tick {
        Tick::since_epoch(t, epoch())
    }

    /// `t` as milliseconds since `epoch`, wrapped: u32 arithmetic, the
    /// seconds' count modulo 2^32 times 1000 modulo 2^32 being the
    /// milliseconds' modulo 2^32.
    #[inline(always)]
    fn since_epoch(t: Instant, epoch: Instant) -> Tick {
        let d = t.saturating_duration_since(epoch);
        Tick(
            (d.as_secs() as u32)
                .wrapping_mul(1000)
                .wrapping_add(d.subsec_millis()),
        )
    }

    /// `span` later, `span` clamped to [`Tick::MAX_SPAN`].
    #[inline]
    pub fn after(self, span: Duration) -> Tick {
        Tick(self.0.wrapping_add(millis(span)))
    }

    /// Whether `deadline` has come: this tick is at or after it.
    #[inline]
    pub fn reached(self, deadline: Tick) -> bool {
        // The signed distance: right while the two are < 2^31 ms apart.
        (self.0.wrapping_sub(deadline.0) as i32) >= 0
    }

    /// Milliseconds from `earlier` to this tick (right while less than
    /// 2^32 ms have passed).
    #[inline]
    pub fn since(self, earlier: Tick) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// The earlier of the two.
    #[inline]
    pub fn earlier(self, other: Tick) -> Tick {
        if other.reached(self) {
            self
        } else {
            other
        }
    }

    /// The later of the two.
    #[inline]
    pub fn later(self, other: Tick) -> Tick {
        if other.reached(self) {
            other
        } else {
            self
        }
    }

    /// The tick `ms` milliseconds after the epoch, wrapped (for tests that
    /// need a tick near the wrap).
    #[cfg(test)]
    pub const fn from_millis(ms: u32) -> Tick {
        Tick(ms)
    }
}

/// `span` in whole milliseconds, at most [`Tick::MAX_SPAN`]'s.
#[inline]
pub fn millis(span: Duration) -> u32 {
    span.min(Tick::MAX_SPAN).as_millis() as u32
}

/// The time of the current turn, read lazily.
///
/// Invariant: between two [`TurnClock::start_turn`] calls, every
/// [`TurnClock::now`] returns the same instant, read after the turn began,
/// and every [`TurnClock::tick`] that instant as a [`Tick`].
#[derive(Debug)]
pub struct TurnClock {
    /// `None` until the first `now` (or `tick`) of a turn.
    read: Cell<Option<Instant>>,
    /// `None` until the first `tick` of a turn: converted only when asked
    /// (with `--idle-timeout`, or a drain), so a turn that needs only the
    /// instant (a timer) pays no conversion.
    tick: Cell<Option<Tick>>,
    /// The process's epoch, kept here so a conversion does not look it up.
    epoch: Instant,
}

impl Default for TurnClock {
    /// A clock; the first one made fixes the process's tick epoch.
    fn default() -> Self {
        TurnClock {
            read: Cell::new(None),
            tick: Cell::new(None),
            epoch: epoch(),
        }
    }
}

impl TurnClock {
    /// A new turn begins (a poll returned): the next `now` reads the clock.
    #[inline(always)]
    pub fn start_turn(&mut self) {
        self.read.set(None);
        self.tick.set(None);
    }

    /// This turn's time: the clock read once, on the turn's first call.
    #[inline]
    pub fn now(&self) -> Instant {
        match self.read.get() {
            Some(t) => t,
            None => self.read_clock(),
        }
    }

    /// This turn's time as a [`Tick`] (the same reading as [`TurnClock::now`]).
    #[inline]
    pub fn tick(&self) -> Tick {
        match self.tick.get() {
            Some(t) => t,
            None => self.convert(),
        }
    }

    #[inline(never)]
    fn read_clock(&self) -> Instant {
        let t = Instant::now();
        self.read.set(Some(t));
        t
    }

    #[inline(never)]
    fn convert(&self) -> Tick {
        let t = Tick::since_epoch(self.now(), self.epoch);
        self.tick.set(Some(t));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_turn_has_one_time() {
        let mut clock = TurnClock::default();
        clock.start_turn();
        let first = clock.now();
        let tick = clock.tick();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now(), first);
        assert_eq!(clock.tick(), tick);
        assert_eq!(Tick::of(first), tick);
    }

    #[test]
    fn a_new_turn_reads_the_clock_again_and_not_before_it_began() {
        let mut clock = TurnClock::default();
        let old = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        let began = Instant::now();
        clock.start_turn();
        let t = clock.now();
        assert!(t >= began && t > old);
        assert!(clock.tick().reached(Tick::of(began)));
    }

    #[test]
    fn ticks_are_milliseconds_since_the_epoch() {
        let _clock = TurnClock::default();
        let t = Instant::now();
        let a = Tick::of(t);
        assert_eq!(
            Tick::of(t + Duration::from_millis(1500)),
            a.after(Duration::from_millis(1500))
        );
        assert_eq!(a.after(Duration::from_millis(1500)).since(a), 1500);
    }

    /// Every comparison gives the same answer on both sides of the wrap
    /// (2^32 ms, 49.7 days after the epoch) as far from it.
    #[test]
    fn comparisons_hold_across_the_wrap() {
        let second = Duration::from_secs(1);
        for start in [0, 1 << 31, u32::MAX - 1500, u32::MAX, u32::MAX - 999] {
            let now = Tick::from_millis(start);
            let deadline = now.after(second);
            let past = now.after(2 * second);
            assert!(!now.reached(deadline), "{start}");
            assert!(deadline.reached(deadline), "{start}");
            assert!(past.reached(deadline), "{start}");
            assert!(!deadline.reached(past), "{start}");
            assert_eq!(deadline.since(now), 1000, "{start}");
            assert_eq!(past.since(now), 2000, "{start}");
            assert_eq!(now.earlier(deadline), now, "{start}");
            assert_eq!(deadline.earlier(now), now, "{start}");
            assert_eq!(now.later(deadline), deadline, "{start}");
            assert_eq!(deadline.later(now), deadline, "{start}");
        }
        // Across it, explicitly: 1 ms before the wrap and 1 ms after.
        let before = Tick::from_millis(u32::MAX);
        let after = before.after(Duration::from_millis(2));
        assert_eq!(after, Tick::from_millis(1));
        assert!(after.reached(before) && !before.reached(after));
        assert_eq!(after.since(before), 2);
    }

    /// The longest deadline is clamped to [`Tick::MAX_SPAN`], which is still
    /// in the future, however far the tick is from the wrap; and the flags'
    /// longest timeout is far below it.
    #[test]
    fn the_longest_span_stays_in_the_future() {
        assert!(Tick::MAX_SPAN.as_millis() < 1 << 31);
        assert!(echod_common::flags::parse_seconds("86401").is_err());
        let longest = echod_common::flags::parse_seconds("86400").expect("the flags' maximum");
        assert!(longest < Tick::MAX_SPAN);
        for start in [0, u32::MAX - 5] {
            let now = Tick::from_millis(start);
            for span in [
                Tick::MAX_SPAN,
                Duration::from_secs(100 * 86_400),
                Duration::MAX,
            ] {
                let deadline = now.after(span);
                assert!(!now.reached(deadline), "{span:?} from {start}");
                assert_eq!(deadline.since(now), millis(Tick::MAX_SPAN));
            }
        }
    }
}
