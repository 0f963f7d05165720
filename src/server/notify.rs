//! Telling a service manager how the server is doing (sd_notify(3)), when
//! it asked to be told (`NOTIFY_SOCKET` is set, as for a `Type=notify`
//! unit): one thread, started by [`super::Server::run`], that sleeps
//! between ticks and never touches a socket of the loops.
//!
//! - `READY=1` as soon as it starts: every socket was bound, put in
//!   listen(2) and registered in its worker's poll by [`super::Server::bind`],
//!   so a connection made from then on is accepted.
//! - `STATUS=<n> connections open` every [`STATUS_INTERVAL`], from a
//!   [`Monitor`] report (a timer, not a message per connection).
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, and only when every worker
//!   answered the report in time: the watchdog then proves that every loop
//!   turns, not merely that a thread of the process is alive.
//! - `STOPPING=1` when a shutdown begins: the worker that begins it (every
//!   worker does, on a signal or a [`super::ShutdownHandle`]) sends a
//!   [`Notice`] on a channel, the cost of one message once per life; this
//!   thread sends it to the service manager, once. All sd_notify I/O stays
//!   on this thread, and the loops never block on the service manager's
//!   socket.
//!
//! The thread ends when every worker has ended (their ends of the channel
//! are dropped); [`super::Server::run`] joins it before returning, so
//! `STOPPING=1` is always out before the process exits.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, warn};
use sd_notify::NotifyState;

use super::Monitor;

/// How often `STATUS=` is refreshed. systemctl status shows the last one;
/// a few seconds is fresh enough for a person and costs the workers one
/// wake-up each per interval.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// How long the workers have to answer a report. A loop answers between
/// two events, so anything longer means a turn is stuck; a watchdog shorter
/// than four times this gets a quarter of its half-period instead.
const REPORT_TIMEOUT: Duration = Duration::from_millis(500);

/// What a worker tells the notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notice {
    /// A shutdown began.
    Stopping,
}

/// Whether the service manager wants notifications: `NOTIFY_SOCKET` is set.
pub(super) fn wanted() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// A channel whose senders go to the workers and whose receiver goes to
/// [`start`].
pub(super) fn channel() -> (Sender<Notice>, Receiver<Notice>) {
    mpsc::channel()
}

/// Starts the notifier thread: `READY=1` at once, then the ticks. The
/// watchdog period is read here (`WATCHDOG_USEC`, for this process if
/// `WATCHDOG_PID` is set).
pub(super) fn start(
    notices: Receiver<Notice>,
    monitor: Monitor,
) -> std::io::Result<JoinHandle<()>> {
    let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
    std::thread::Builder::new()
        .name("echod-notify".into())
        .spawn(move || run(notices, monitor, watchdog))
}

/// Sends `states` to the service manager; a failure is logged, never fatal.
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("cannot notify the service manager: {e}");
    }
}

fn run(notices: Receiver<Notice>, monitor: Monitor, watchdog: Option<Duration>) {
    send(&[NotifyState::Ready]);
    debug!("notified the service manager: READY=1 (watchdog: {watchdog:?})");
    let half = watchdog.map(|w| w / 2);
    let report_timeout = half.map_or(REPORT_TIMEOUT, |h| (h / 2).min(REPORT_TIMEOUT));
    let start = Instant::now();
    let mut next_status = start;
    let mut next_watchdog = half.map(|_| start);
    let mut stopping = false;
    loop {
        let now = Instant::now();
        let status_due = now >= next_status;
        let watchdog_due = next_watchdog.is_some_and(|t| now >= t);
        if status_due || watchdog_due {
            match monitor.report(report_timeout) {
                Some(report) => {
                    let text = if stopping {
                        format!("stopping: {} connections open", report.open)
                    } else {
                        format!("{} connections open", report.open)
                    };
                    let mut states = vec![NotifyState::Status(&text)];
                    if watchdog_due {
                        states.push(NotifyState::Watchdog);
                    }
                    send(&states);
                }
                None => warn!(
                    "a worker did not answer within {report_timeout:?}: no WATCHDOG=1 this time"
                ),
            }
            let now = Instant::now();
            if status_due {
                next_status = now + STATUS_INTERVAL;
            }
            if let (true, Some(half)) = (watchdog_due, half) {
                next_watchdog = Some(now + half);
            }
        }
        let next = next_watchdog.map_or(next_status, |w| w.min(next_status));
        match notices.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(Notice::Stopping) if !stopping => {
                stopping = true;
                send(&[NotifyState::Stopping]);
                debug!("notified the service manager: STOPPING=1");
            }
            Ok(Notice::Stopping) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
