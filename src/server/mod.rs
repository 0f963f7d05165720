//! The daemon as a library: [`Server::bind`] binds every socket (and logs
//! `listening on` for each), [`Server::run`] runs one worker loop per
//! `--workers` until a signal or a [`ShutdownHandle`] stops them, and returns
//! the merged counters. `src/main.rs` and the in-process tests use exactly
//! this.
//!
//! # Layout
//! - [`bind`](self::bind): the binding seam (addresses to sockets, shared out
//!   to the workers) and the unix socket file's guard.
//! - `listener`: the listening socket types and how they are built.
//! - `signals`: SIGINT/SIGTERM/SIGUSR1 as a source in each worker's poll.
//! - `worker`: the event loop, with its accept policy, timers and shutdown.

mod bind;
mod listener;
pub(crate) mod signals;
mod worker;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use log::{debug, warn};
use mio::Waker;

use crate::config::Config;
use crate::memory::MemoryBudget;
use crate::stats::{OpenConnections, Stats};
use echod_common::addr::Endpoint;
use listener::BindError;
use worker::Worker;

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
    shutdown: ShutdownHandle,
}

/// Stops a running [`Server`] as SIGTERM does: stop accepting, flush every
/// connection for at most `--shutdown-timeout`, return. Cheap to clone, and
/// usable from any thread, before or during [`Server::run`].
#[derive(Clone)]
pub struct ShutdownHandle {
    requested: Arc<AtomicBool>,
    wakers: Arc<[Waker]>,
}

impl ShutdownHandle {
    /// Asks every worker to shut down; returns at once.
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::Release);
        for waker in self.wakers.iter() {
            if let Err(e) = waker.wake() {
                warn!("cannot wake a worker to shut down: {e}");
            }
        }
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("requested", &self.requested.load(Ordering::Relaxed))
            .finish()
    }
}

impl Server {
    /// Raises the descriptor limit, starts catching SIGINT, SIGTERM and
    /// SIGUSR1 (before binding: once `listening on` is logged, a signal
    /// reaches every worker), binds every socket of `config` and builds the
    /// workers. The exit-on-second-signal rule is the process's own business
    /// ([`crate::install_exit_on_second_signal`]).
    pub fn bind(config: &Config) -> Result<Server, ServerError> {
        match echod_common::sys::raise_fd_limit() {
            Ok(limit) => debug!("descriptor limit: {limit}"),
            Err(e) => warn!("cannot raise the descriptor limit: {e}"),
        }
        let config = Arc::new(config.clone());
        let signal_sources = (0..config.workers)
            .map(|_| signals::SignalSource::new())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| ServerError::Io("catch signals", e))?;
        let bound = bind::bind_all(&config)?;
        let open = Arc::new(OpenConnections::default());
        let requested = Arc::new(AtomicBool::new(false));
        let budget = Arc::new(MemoryBudget::new(config.max_memory));
        let mut workers = Vec::with_capacity(config.workers);
        let mut wakers = Vec::with_capacity(config.workers);
        for (id, (sockets, signals)) in bound.workers.into_iter().zip(signal_sources).enumerate() {
            let (worker, waker) = Worker::new(
                id,
                Arc::clone(&config),
                sockets,
                signals,
                Arc::clone(&open),
                Arc::clone(&budget),
                Arc::clone(&requested),
            )
            .map_err(|e| ServerError::Io("start a worker", e))?;
            workers.push(worker);
            wakers.push(waker);
        }
        Ok(Server {
            workers,
            listen: bound.listen,
            udp: bound.udp,
            _unix_files: bound.unix_files,
            shutdown: ShutdownHandle {
                requested,
                wakers: wakers.into(),
            },
        })
    }

    /// The stream addresses served, port 0 resolved, in the order of `-l`.
    pub fn listen_addrs(&self) -> &[Endpoint] {
        &self.listen
    }

    /// The UDP addresses served, port 0 resolved, in the order of `-u`.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Runs every worker (the first on this thread) until they have shut
    /// down, and returns their counters merged. The unix socket files are
    /// removed before it returns.
    pub fn run(self) -> Result<Stats, ServerError> {
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
        match failure {
            Some(e) => Err(ServerError::Io("run the event loop", e)),
            None => Ok(total),
        }
    }
}
