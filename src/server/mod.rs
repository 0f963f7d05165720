//! The daemon as a library: [`Server::bind`] binds every socket (and logs
//! `listening on` for each), [`Server::run`] runs one worker loop per
//! `--workers` until a signal or a [`ShutdownHandle`] stops them, and returns
//! the merged counters. `src/main.rs` and the in-process tests use exactly
//! this.
//!
//! # Layout
//! - `activation`: the sockets a service manager passes (socket activation).
//! - [`bind`](self::bind): the binding seam (addresses and inherited sockets
//!   to sockets, shared out to the workers) and the unix socket file's guard.
//! - `listener`: the listening socket types and how they are built.
//! - `signals`: SIGINT/SIGTERM/SIGUSR1 as a source in each worker's poll.
//! - `notify`: the thread that tells a service manager readiness, status,
//!   watchdog and stopping (sd_notify), when `NOTIFY_SOCKET` asks for it.
//! - `worker`: the event loop, with its accept policy, timers and shutdown.

mod activation;
mod bind;
mod control;
mod listener;
pub(crate) mod metrics;
mod notify;
pub(crate) mod signals;
mod worker;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use log::{debug, warn};

use crate::config::Config;
use crate::memory::MemoryBudget;
use crate::stats::{OpenConnections, Stats};
use control::WorkerControl;
use echod_common::addr::Endpoint;
use listener::BindError;
use metrics::MetricsListener;
use worker::Worker;

pub use activation::{ActivationError, Inherited};
pub use control::{Monitor, Report, ShutdownHandle, WorkerReport};
pub use notify::STATUS_INTERVAL;

pub use worker::READ_BUF_SIZE;

/// What a failed start-up means to the user.
#[derive(Debug)]
pub enum ServerError {
    Bind(BindError),
    Io(&'static str, io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind(e) => write!(f, "{e}"),
            ServerError::Io(what, e) => write!(f, "cannot {what}: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<BindError> for ServerError {
    fn from(e: BindError) -> Self {
        ServerError::Bind(e)
    }
}

/// A bound server, ready to run: its sockets are open (connections already
/// queue in the backlog) and its signal handling is in place.
pub struct Server {
    workers: Vec<Worker>,
    listen: Vec<Endpoint>,
    udp: Vec<SocketAddr>,
    /// Removes the unix socket files on every way out, run or not.
    _unix_files: Vec<bind::UnixSocketFile>,
    controls: Arc<[WorkerControl]>,
    budget: Arc<MemoryBudget>,
    /// The notifier's end of the workers' notices, when `NOTIFY_SOCKET`
    /// asks for notifications; [`Server::run`] starts the thread.
    notices: Option<std::sync::mpsc::Receiver<notify::Notice>>,
    /// `--metrics`: bound here, served from [`Server::run`].
    metrics: Option<MetricsListener>,
}

/// Whether a [`Server`] catches SIGINT, SIGTERM and SIGUSR1 itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signals {
    /// The daemon: the first SIGINT/SIGTERM shuts it down gracefully,
    /// SIGUSR1 logs a snapshot per worker.
    Catch,
    /// Embedded: the process's signals are left alone; stop the server
    /// with a [`ShutdownHandle`].
    Leave,
}

impl Server {
    /// Raises the descriptor limit, starts catching SIGINT, SIGTERM and
    /// SIGUSR1 if asked to (before binding: once `listening on` is logged, a
    /// signal reaches every worker), binds every socket of `config` and
    /// builds the workers. The exit-on-second-signal rule is the process's own business
    /// ([`crate::install_exit_on_second_signal`]).
    pub fn bind(config: &Config, catch: Signals) -> Result<Server, ServerError> {
        Self::bind_inherited(config, catch, Inherited::none())
    }

    /// As [`Server::bind`], serving the sockets a service manager passed
    /// ([`Inherited::from_env`]) as well: each is logged `listening on`,
    /// shared by every worker, and replaces the default `-l` (an explicit
    /// `-l` or `-u` is bound as well).
    pub fn bind_inherited(
        config: &Config,
        catch: Signals,
        inherited: Inherited,
    ) -> Result<Server, ServerError> {
        match echod_common::sys::raise_fd_limit() {
            Ok(limit) => debug!("descriptor limit: {limit}"),
            Err(e) => warn!("cannot raise the descriptor limit: {e}"),
        }
        let config = Arc::new(config.clone());
        let signal_sources = (0..config.workers)
            .map(|_| match catch {
                Signals::Catch => signals::SignalSource::new().map(Some),
                Signals::Leave => Ok(None),
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| ServerError::Io("catch signals", e))?;
        let bound = bind::bind_all(&config, inherited)?;
        let metrics = match config.metrics {
            Some(addr) => {
                let metrics = MetricsListener::bind(addr)?;
                log::info!("listening on {} (metrics)", metrics.addr());
                Some(metrics)
            }
            None => None,
        };
        let open = Arc::new(OpenConnections::default());
        let budget = Arc::new(MemoryBudget::new(config.max_memory));
        let mut workers = Vec::with_capacity(config.workers);
        let mut controls = Vec::with_capacity(config.workers);
        for (id, (sockets, signals)) in bound.workers.into_iter().zip(signal_sources).enumerate() {
            let (worker, waker) = Worker::new(
                id,
                Arc::clone(&config),
                sockets,
                signals,
                Arc::clone(&open),
                Arc::clone(&budget),
            )
            .map_err(|e| ServerError::Io("start a worker", e))?;
            workers.push(worker);
            controls.push(WorkerControl::new(waker));
        }
        let controls: Arc<[WorkerControl]> = controls.into();
        for (worker, id) in workers.iter_mut().zip(0..) {
            worker.attach(Arc::clone(&controls), id);
        }
        let notices = notify::wanted().then(|| {
            let (tx, rx) = notify::channel();
            for worker in workers.iter_mut() {
                worker.notify_shutdown_to(tx.clone());
            }
            rx
        });
        Ok(Server {
            workers,
            listen: bound.listen,
            udp: bound.udp,
            _unix_files: bound.unix_files,
            controls,
            budget,
            notices,
            metrics,
        })
    }

    /// The stream addresses served, port 0 resolved, in the order of `-l`.
    pub fn listen_addrs(&self) -> &[Endpoint] {
        &self.listen
    }

    /// The `--metrics` address, port 0 resolved.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::addr)
    }

    /// The UDP addresses served, port 0 resolved, in the order of `-u`.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(Arc::clone(&self.controls))
    }

    /// A handle that reads the running workers' state from another thread
    /// (metrics, service-manager status).
    pub fn monitor(&self) -> Monitor {
        Monitor::new(Arc::clone(&self.controls), Arc::clone(&self.budget))
    }

    /// Runs every worker (the first on this thread) until they have shut
    /// down, and returns their counters merged. The unix socket files are
    /// removed before it returns. When `NOTIFY_SOCKET` is set, a notifier
    /// thread tells the service manager `READY=1` at once, then status,
    /// watchdog and stopping (see `server/notify.rs`); it has ended when
    /// this returns.
    /// With `--metrics`, the metrics thread serves for as long as the
    /// workers run.
    pub fn run(self) -> Result<Stats, ServerError> {
        let notifier = match self.notices {
            Some(notices) => {
                let monitor = Monitor::new(Arc::clone(&self.controls), Arc::clone(&self.budget));
                let thread = notify::start(notices, monitor)
                    .map_err(|e| ServerError::Io("start the service-manager notifier", e))?;
                Some(thread)
            }
            None => None,
        };
        // Stopped when dropped, on every way out of this function.
        let metrics = match self.metrics {
            Some(listener) => Some(
                listener
                    .start(Monitor::new(
                        Arc::clone(&self.controls),
                        Arc::clone(&self.budget),
                    ))
                    .map_err(|e| ServerError::Io("start the metrics thread", e))?,
            ),
            None => None,
        };
        let mut workers = self.workers.into_iter();
        let first = workers.next();
        let mut handles = Vec::new();
        for (id, worker) in workers.enumerate() {
            let handle = std::thread::Builder::new()
                .name(format!("echod-worker-{}", id + 1))
                .spawn(move || worker.run())
                .map_err(|e| ServerError::Io("spawn a worker thread", e))?;
            handles.push(handle);
        }
        let mut total = Stats::default();
        let mut failure = None;
        if let Some(worker) = first {
            match worker.run() {
                Ok(stats) => total.merge(&stats),
                Err(e) => failure = Some(e),
            }
        }
        for handle in handles {
            match handle.join() {
                Ok(Ok(stats)) => total.merge(&stats),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(io::Error::other("a worker thread panicked")),
            }
        }
        // Every worker has ended and dropped its end of the notices, so the
        // notifier sends what is pending (STOPPING=1) and returns.
        if let Some(thread) = notifier {
            if thread.join().is_err() {
                warn!("the service-manager notifier panicked");
            }
        }
        // The workers are gone: stop serving metrics before returning.
        drop(metrics);
        match failure {
            Some(e) => Err(ServerError::Io("run the event loop", e)),
            None => Ok(total),
        }
    }
}
