//! SIGINT/SIGTERM: the first asks every worker to shut down gracefully, the
//! second ends the process at once with a non-zero status. SIGUSR1 asks
//! every worker for a snapshot of its state and counters, and nothing else.
//!
//! Each worker owns a [`SignalSource`] (signal-hook-mio's self-pipe) in its
//! own poll, so no worker has to wake another. The sources exist before any
//! socket is bound, so a signal sent once `listening on` is logged always
//! reaches every worker. The "second signal" rule is installed once per
//! process with signal-hook's conditional shutdown.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

/// Makes a second SIGINT or SIGTERM exit the process immediately. Call once,
/// before starting workers.
pub fn install_exit_on_second_signal() -> io::Result<()> {
    let seen = Arc::new(AtomicBool::new(false));
    // Order matters: the conditional exit checks the flag before the plain
    // handler sets it, so the first signal only sets it.
    signal_hook::flag::register_conditional_shutdown(
        SIGINT,
        echod_common::exit::SECOND_SIGINT,
        Arc::clone(&seen),
    )?;
    signal_hook::flag::register_conditional_shutdown(
        SIGTERM,
        echod_common::exit::SECOND_SIGTERM,
        Arc::clone(&seen),
    )?;
    signal_hook::flag::register(SIGINT, Arc::clone(&seen))?;
    signal_hook::flag::register(SIGTERM, seen)?;
    Ok(())
}

/// One worker's view of SIGINT, SIGTERM and SIGUSR1, readable in its poll.
pub struct SignalSource {
    signals: Signals,
}

/// What the signals read in one [`SignalSource::drain`] ask of a worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Requests {
    /// SIGINT or SIGTERM: shut down gracefully.
    pub shutdown: bool,
    /// SIGUSR1: log a snapshot (several SIGUSR1 at once make one).
    pub snapshot: bool,
}

impl SignalSource {
    /// Starts catching the signals; each one that arrives from now on is
    /// held in the pipe until [`SignalSource::drain`] reads it.
    pub fn new() -> io::Result<Self> {
        Ok(SignalSource {
            signals: Signals::new([SIGINT, SIGTERM, SIGUSR1])?,
        })
    }

    /// Registers the signal pipe in a worker's poll under `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.signals, token, Interest::READABLE)
    }

    /// Reads pending signals and says what they ask for.
    pub fn drain(&mut self) -> Requests {
        let mut requests = Requests::default();
        for signal in self.signals.pending() {
            if signal == SIGUSR1 {
                requests.snapshot = true;
            } else {
                log::info!("received signal {signal}");
                requests.shutdown = true;
            }
        }
        requests
    }
}
