//! Asking running workers for something from another thread: to shut down
//! ([`ShutdownHandle`]) or to report their state ([`Monitor`], for metrics
//! and service-manager status). Each worker has a [`WorkerControl`]: a
//! `mio::Waker` registered in its poll and the requests it carries. A request
//! wakes the worker, which answers between two events of its loop, so the
//! echo path pays nothing for it: no atomic, no lock, no check per message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::memory::MemoryBudget;
use crate::stats::Stats;

/// One worker's state at a moment, as its loop saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Connections open.
    pub open: u64,
    /// Connections echod is ending (flushing or lingering).
    pub draining: u64,
    /// Connections not being read (queue or memory limit).
    pub paused: u64,
    /// Bytes owed to peers that their sockets have not taken yet.
    pub queued_bytes: u64,
    /// Loop turns and the events they handled, so far.
    pub loop_turns: u64,
    pub events: u64,
    /// The worker's counters so far.
    pub stats: Stats,
}

/// Every worker's report, and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub workers: Vec<WorkerReport>,
    /// Counters summed over the workers (`peak_concurrent`: the highest).
    pub stats: Stats,
    pub open: u64,
    pub queued_bytes: u64,
    /// What all connections hold against `--max-memory`, and the budget.
    pub memory_used: u64,
    pub memory_limit: u64,
}

/// A report request's bookkeeping: generations, so that several threads
/// may ask at once and each waits for an answer given after it asked.
#[derive(Debug, Default)]
struct Slot {
    asked: u64,
    answered: u64,
    report: WorkerReport,
}

/// One worker's end of the requests.
#[derive(Debug)]
pub(super) struct WorkerControl {
    waker: Waker,
    shutdown: AtomicBool,
    slot: Mutex<Slot>,
    answered: Condvar,
}

impl WorkerControl {
    pub(super) fn new(waker: Waker) -> Self {
        WorkerControl {
            waker,
            shutdown: AtomicBool::new(false),
            slot: Mutex::new(Slot::default()),
            answered: Condvar::new(),
        }
    }

    /// The worker's side, on a wake-up: whether a shutdown was asked for.
    pub(super) fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// The worker's side, on a wake-up: answers a pending report request
    /// with `report()`; does nothing (and does not call it) if none is.
    pub(super) fn answer(&self, report: impl FnOnce() -> WorkerReport) {
        let mut slot = lock(&self.slot);
        if slot.answered < slot.asked {
            slot.report = report();
            slot.answered = slot.asked;
            self.answered.notify_all();
        }
    }

    fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            log::warn!("cannot wake a worker to shut down: {e}");
        }
    }

    /// Asks for a report; returns the generation to wait for.
    fn ask(&self) -> u64 {
        let generation = {
            let mut slot = lock(&self.slot);
            slot.asked += 1;
            slot.asked
        };
        // A worker that cannot be woken will simply not answer in time.
        let _ = self.waker.wake();
        generation
    }

    /// Waits until `deadline` for the answer to `generation`.
    fn wait(&self, generation: u64, deadline: Instant) -> Option<WorkerReport> {
        let mut slot = lock(&self.slot);
        while slot.answered < generation {
            let left = deadline.checked_duration_since(Instant::now())?;
            slot = match self.answered.wait_timeout(slot, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        Some(slot.report.clone())
    }
}

/// A lock that a panicking holder does not make unusable: the slot holds
/// plain data, always left consistent.
fn lock(m: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stops a running [`super::Server`] as SIGTERM does: stop accepting, flush
/// every connection for at most `--shutdown-timeout`, return. Cheap to
/// clone, and usable from any thread, before or during [`super::Server::run`].
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    workers: Arc<[WorkerControl]>,
}

impl ShutdownHandle {
    pub(super) fn new(workers: Arc<[WorkerControl]>) -> Self {
        ShutdownHandle { workers }
    }

    /// Asks every worker to shut down; returns at once.
    pub fn shutdown(&self) {
        for worker in self.workers.iter() {
            worker.request_shutdown();
        }
    }
}

/// Reads a running server's state from another thread: each worker is woken
/// and answers from its own loop, so the figures are exact as of that moment
/// and the echo path keeps no shared counter. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Monitor {
    workers: Arc<[WorkerControl]>,
    budget: Arc<MemoryBudget>,
}

impl Monitor {
    pub(super) fn new(workers: Arc<[WorkerControl]>, budget: Arc<MemoryBudget>) -> Self {
        Monitor { workers, budget }
    }

    /// Every worker's report, summed; `None` if any worker did not answer
    /// within `timeout` (it has stopped, or its loop is stuck).
    pub fn report(&self, timeout: Duration) -> Option<Report> {
        let deadline = Instant::now() + timeout;
        let asked: Vec<u64> = self.workers.iter().map(WorkerControl::ask).collect();
        let mut report = Report {
            memory_limit: self.budget.limit() as u64,
            ..Report::default()
        };
        for (worker, generation) in self.workers.iter().zip(asked) {
            let one = worker.wait(generation, deadline)?;
            report.stats.merge(&one.stats);
            report.open += one.open;
            report.queued_bytes += one.queued_bytes;
            report.workers.push(one);
        }
        report.memory_used = self.budget.used() as u64;
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control whose waker wakes a poll nobody waits on.
    fn control() -> (mio::Poll, WorkerControl) {
        let poll = mio::Poll::new().expect("poll");
        let waker = Waker::new(poll.registry(), mio::Token(0)).expect("waker");
        (poll, WorkerControl::new(waker))
    }

    #[test]
    fn a_report_is_answered_once_per_request_and_waited_for() {
        let (_poll, c) = control();
        let mut calls = 0;
        c.answer(|| {
            calls += 1;
            WorkerReport::default()
        });
        assert_eq!(calls, 0, "nothing asked, nothing answered");
        let generation = c.ask();
        let soon = Instant::now() + Duration::from_millis(10);
        assert_eq!(c.wait(generation, soon), None, "not answered yet");
        c.answer(|| WorkerReport {
            open: 3,
            ..WorkerReport::default()
        });
        let got = c.wait(generation, Instant::now() + Duration::from_secs(1));
        assert_eq!(got.map(|r| r.open), Some(3));
        assert!(!c.shutdown_requested());
        c.request_shutdown();
        assert!(c.shutdown_requested());
    }
}
