//! SIGINT/SIGTERM: the first asks every worker to shut down gracefully, the
//! second ends the process at once with a non-zero status.
//!
//! Each worker owns a [`SignalSource`] (signal-hook-mio's self-pipe) in its
//! own poll, so no worker has to wake another. The "second signal" rule is
//! installed once per process with signal-hook's conditional shutdown.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// Exit status after a second SIGINT (128 + 2, as shells report it).
pub const SECOND_SIGINT_STATUS: i32 = 130;
/// Exit status after a second SIGTERM (128 + 15).
pub const SECOND_SIGTERM_STATUS: i32 = 143;

/// Makes a second SIGINT or SIGTERM exit the process immediately. Call once,
/// before starting workers.
pub fn install_exit_on_second_signal() -> io::Result<()> {
    let seen = Arc::new(AtomicBool::new(false));
    // Order matters: the conditional exit checks the flag before the plain
    // handler sets it, so the first signal only sets it.
    signal_hook::flag::register_conditional_shutdown(
        SIGINT,
        SECOND_SIGINT_STATUS,
        Arc::clone(&seen),
    )?;
    signal_hook::flag::register_conditional_shutdown(
        SIGTERM,
        SECOND_SIGTERM_STATUS,
        Arc::clone(&seen),
    )?;
    signal_hook::flag::register(SIGINT, Arc::clone(&seen))?;
    signal_hook::flag::register(SIGTERM, seen)?;
    Ok(())
}

/// One worker's view of SIGINT/SIGTERM, readable in its poll.
pub struct SignalSource {
    signals: Signals,
}

impl SignalSource {
    /// Registers the signal pipe under `token`.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(SignalSource { signals })
    }

    /// Reads pending signals; true if a shutdown signal arrived.
    pub fn drain(&mut self) -> bool {
        let mut stop = false;
        for signal in self.signals.pending() {
            log::info!("received signal {signal}");
            stop |= signal == SIGINT || signal == SIGTERM;
        }
        stop
    }
}
