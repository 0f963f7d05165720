//! The loop's clock: read at most once per turn, and only if something in
//! that turn asks for the time.
//!
//! Every timestamp a turn takes (a connection's last activity, a drain's
//! deadline, a rate-limited log line, the timers) is the same instant, the
//! first one asked for after the poll returned. A turn that asks for none
//! (the steady echo with no timer armed and no `--idle-timeout`) makes no
//! clock read at all.

use std::cell::Cell;
use std::time::Instant;

/// The time of the current turn, read lazily.
///
/// Invariant: between two [`TurnClock::start_turn`] calls, every
/// [`TurnClock::now`] returns the same instant, and that instant was read
/// after the turn began.
#[derive(Debug, Default)]
pub struct TurnClock {
    /// `None` until the first `now` of a turn.
    read: Cell<Option<Instant>>,
}

impl TurnClock {
    /// A new turn begins (a poll returned): the next `now` reads the clock.
    #[inline(always)]
    pub fn start_turn(&mut self) {
        self.read.set(None);
    }

    /// This turn's time: the clock read once, on the turn's first call.
    #[inline]
    pub fn now(&self) -> Instant {
        match self.read.get() {
            Some(t) => t,
            None => self.read_clock(),
        }
    }

    #[inline(never)]
    fn read_clock(&self) -> Instant {
        let t = Instant::now();
        self.read.set(Some(t));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_turn_has_one_time() {
        let mut clock = TurnClock::default();
        clock.start_turn();
        let first = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now(), first);
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
    }
}
