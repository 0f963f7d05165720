//! The binding seam: every socket a server serves enters here, bound from
//! the addresses of the configuration and shared out to the workers (a TCP
//! or UDP address bound once per worker with SO_REUSEPORT, a unix listener
//! duplicated). Sockets inherited from a service manager (socket activation)
//! enter here too, first, each shared out by duplicating it: one socket has
//! no SO_REUSEPORT siblings to bind.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use log::info;
use mio::net::{TcpListener, UdpSocket, UnixListener};

use super::activation::{Inherited, InheritedSocket};
use super::listener::{self, Accepted, BindError, Listener};
use super::ServerError;
use crate::config::Config;
use crate::udp::UdpEndpoint;
use echod_common::addr::Endpoint;

/// The sockets one worker owns before its loop starts.
#[derive(Debug, Default)]
pub(super) struct WorkerSockets {
    pub listeners: Vec<Listener>,
    pub udp: Vec<UdpEndpoint>,
}

/// Everything bound for a server.
#[derive(Debug)]
pub(super) struct Bound {
    /// One set per worker.
    pub workers: Vec<WorkerSockets>,
    /// The stream addresses served (port 0 resolved): inherited ones
    /// first, in descriptor order, then `-l` in flag order.
    pub listen: Vec<Endpoint>,
    /// The UDP addresses served (port 0 resolved), the same way.
    pub udp: Vec<SocketAddr>,
    /// The unix socket files created, removed when this is dropped.
    pub unix_files: Vec<UnixSocketFile>,
}

/// A unix socket file this server created. Dropping it removes the file if
/// it is still the one we bound (same inode): never a file another process
/// has put there since. It drops on every way out: a bind that fails after
/// it, a server that never runs, and the end of a run.
#[derive(Debug)]
pub(super) struct UnixSocketFile {
    path: PathBuf,
    inode: Option<u64>,
}

impl UnixSocketFile {
    fn new(path: &Path, inode: Option<u64>) -> Self {
        UnixSocketFile {
            path: path.to_path_buf(),
            inode,
        }
    }
}

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        let current = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        if self.inode.is_some() && current == self.inode {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Shares the `inherited` sockets out to the workers, then binds every
/// socket of `config` for every worker; the default `-l` only when nothing
/// was inherited (an explicit `-l` always). Port 0 is resolved once (worker
/// 0's probe) and shared, so all workers serve the same port.
pub(super) fn bind_all(config: &Config, inherited: Inherited) -> Result<Bound, ServerError> {
    let workers = config.workers;
    let mut bound = Bound {
        workers: (0..workers).map(|_| WorkerSockets::default()).collect(),
        listen: Vec::new(),
        udp: Vec::new(),
        unix_files: Vec::new(),
    };
    let skip_default = config.default_listen && !inherited.is_empty();
    for socket in inherited.sockets {
        share_inherited(socket, &mut bound)?;
    }
    let sockets = &mut bound.workers;
    let listen: &[Endpoint] = if skip_default { &[] } else { &config.listen };
    for endpoint in listen {
        match endpoint {
            Endpoint::Inet(addr) => {
                let (listeners, resolved) =
                    bind_per_worker(*addr, workers, false, Listener::bind_tcp, |l| {
                        l.local_inet()
                    })?;
                for (worker, listener) in sockets.iter_mut().zip(listeners) {
                    worker.listeners.push(listener);
                }
                info!("listening on {resolved} (tcp)");
                bound.listen.push(Endpoint::Inet(resolved));
            }
            Endpoint::Unix(path) => {
                let first = Listener::bind_unix(path)?;
                // From here on, every way out of this function or the
                // server removes the file (if it is still ours).
                bound
                    .unix_files
                    .push(UnixSocketFile::new(path, first.socket_inode()));
                for worker in sockets.iter_mut().skip(1) {
                    let clone = first
                        .try_clone_unix()
                        .map_err(|e| ServerError::Io("share the unix listener", e))?;
                    worker.listeners.extend(clone);
                }
                sockets[0].listeners.push(first);
                info!("listening on unix:{} (unix)", path.display());
                bound.listen.push(endpoint.clone());
            }
        }
    }
    for endpoint in &config.udp {
        let Endpoint::Inet(addr) = endpoint else {
            continue; // Config::from_args refuses unix paths for --udp
        };
        let (udp, resolved) =
            bind_per_worker(*addr, workers, true, listener::bind_udp, |u| u.local_addr())?;
        for (worker, socket) in sockets.iter_mut().zip(udp) {
            worker.udp.push(UdpEndpoint::new(socket, resolved));
        }
        info!("listening on {resolved} (udp)");
        bound.udp.push(resolved);
    }
    Ok(bound)
}

/// Gives one inherited socket to every worker: the socket itself to worker
/// 0, a duplicate (same socket, same queue) to each other one, as for a unix
/// listener. Already non-blocking ([`super::activation`]); the duplicates
/// share that flag, which belongs to the socket, not to the descriptor.
fn share_inherited(socket: InheritedSocket, bound: &mut Bound) -> Result<(), ServerError> {
    let endpoint = socket.endpoint();
    let n = bound.workers.len();
    let workers = bound.workers.iter_mut();
    let kind = match socket {
        InheritedSocket::Tcp(first, _) => {
            for (worker, l) in workers.zip(duplicates(first, n, |l| l.try_clone())?) {
                worker
                    .listeners
                    .push(Listener::Tcp(TcpListener::from_std(l), Accepted::AsIs));
            }
            bound.listen.push(endpoint.clone());
            "tcp"
        }
        InheritedSocket::Unix(first, path) => {
            for (worker, l) in workers.zip(duplicates(first, n, |l| l.try_clone())?) {
                let listener = UnixListener::from_std(l);
                worker
                    .listeners
                    .push(Listener::Unix(listener, path.clone()));
            }
            bound.listen.push(endpoint.clone());
            "unix"
        }
        InheritedSocket::Udp(first, addr) => {
            for (worker, u) in workers.zip(duplicates(first, n, |u| u.try_clone())?) {
                worker
                    .udp
                    .push(UdpEndpoint::new(UdpSocket::from_std(u), addr));
            }
            bound.udp.push(addr);
            "udp"
        }
    };
    info!("listening on {endpoint} ({kind}) inherited from the service manager");
    Ok(())
}

/// `n` handles on one socket: `first` (for worker 0), then `n - 1`
/// duplicates of it.
fn duplicates<S>(
    first: S,
    n: usize,
    dup: impl Fn(&S) -> io::Result<S>,
) -> Result<Vec<S>, ServerError> {
    let mut copies = Vec::with_capacity(n);
    for _ in 1..n {
        copies.push(dup(&first).map_err(|e| ServerError::Io("share an inherited socket", e))?);
    }
    copies.insert(0, first);
    Ok(copies)
}

/// Binds `addr` once per worker. One worker binds it plainly; several each
/// bind it with SO_REUSEPORT, after a probe without it has resolved port 0
/// once (so all serve the same port) and proved that no other process holds
/// the address. Returns the sockets, worker 0's first, and the address.
fn bind_per_worker<S>(
    addr: SocketAddr,
    workers: usize,
    udp: bool,
    bind: impl Fn(SocketAddr, bool) -> Result<S, BindError>,
    local_addr: impl Fn(&S) -> io::Result<SocketAddr>,
) -> Result<(Vec<S>, SocketAddr), ServerError> {
    let reuse_port = workers > 1;
    let addr = if reuse_port {
        listener::probe_inet(addr, udp)?
    } else {
        addr
    };
    let first = bind(addr, reuse_port)?;
    let resolved = local_addr(&first).map_err(|e| ServerError::Io("read address", e))?;
    let mut sockets = Vec::with_capacity(workers);
    sockets.push(first);
    for _ in 1..workers {
        sockets.push(bind(resolved, true)?);
    }
    Ok((sockets, resolved))
}
