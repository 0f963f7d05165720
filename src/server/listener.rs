//! Listening sockets and the streams they yield.
//!
//! Sockets are built with socket2 so the backlog is 1024 (mio's default of
//! 128 overflows when thousands connect at once) and SO_REUSEPORT can be set
//! before bind for `--workers`. A unix socket file is removed at start only
//! if nobody answers on it (a stale file from a crash), and removed at exit
//! only if it is still the file we created.
//!
//! A TCP listener echod binds has TCP_NODELAY set before listen(2): the
//! sockets it accepts inherit it (Linux copies the listener's TCP options
//! into each child socket; so do the BSDs), which saves the setsockopt(2)
//! every accepted connection otherwise costs (one syscall in seven under
//! connection churn). A listener handed over by a service manager may have
//! queued connections before echod could set anything, so its sockets still
//! get TCP_NODELAY one by one ([`Listener::passes_nodelay`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use mio::event::Source;
use mio::net::{TcpListener, UdpSocket, UnixListener};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use echod_common::addr::Endpoint;

/// Pending-connection queue length asked of listen(2); the kernel caps it at
/// net.core.somaxconn (4096 on current kernels).
pub const LISTEN_BACKLOG: i32 = 1024;

/// Why a socket could not be set up; each maps to one human line and exit 1.
#[derive(Debug)]
pub enum BindError {
    /// Another process holds the address (or answers on the unix path).
    InUse(Endpoint),
    /// A unix path exists and is not a socket: never deleted.
    NotASocket(PathBuf),
    /// Any other failure, with the operation that failed.
    Io {
        endpoint: Endpoint,
        what: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::InUse(ep) => write!(f, "address already in use: {ep}"),
            BindError::NotASocket(path) => write!(
                f,
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
            BindError::Io {
                endpoint,
                what,
                source,
            } => write!(f, "cannot {what} {endpoint}: {source}"),
        }
    }
}

impl std::error::Error for BindError {}

fn io_err<'a>(
    endpoint: &'a Endpoint,
    what: &'static str,
) -> impl FnOnce(io::Error) -> BindError + 'a {
    move |source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            BindError::InUse(endpoint.clone())
        } else {
            BindError::Io {
                endpoint: endpoint.clone(),
                what,
                source,
            }
        }
    }
}

/// Binds a TCP (`udp == false`) or UDP socket at `addr`, non-blocking.
/// With `reuse_port`, SO_REUSEPORT is set first so other workers can bind too.
fn inet_socket(addr: SocketAddr, udp: bool, reuse_port: bool) -> Result<Socket, BindError> {
    let ep = Endpoint::Inet(addr);
    let (ty, proto) = if udp {
        (Type::DGRAM, Protocol::UDP)
    } else {
        (Type::STREAM, Protocol::TCP)
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))
        .map_err(io_err(&ep, "create a socket for"))?;
    if addr.is_ipv6() {
        // [::]:port means IPv6 only; listen on 0.0.0.0 too for IPv4.
        socket
            .set_only_v6(true)
            .map_err(io_err(&ep, "set IPV6_V6ONLY on"))?;
    }
    if !udp {
        socket
            .set_reuse_address(true)
            .map_err(io_err(&ep, "set SO_REUSEADDR on"))?;
        // Before listen(2), so that every connection accepted from it
        // inherits it ([`Listener::passes_nodelay`]).
        socket
            .set_nodelay(true)
            .map_err(io_err(&ep, "set TCP_NODELAY on"))?;
    }
    if reuse_port {
        socket
            .set_reuse_port(true)
            .map_err(io_err(&ep, "set SO_REUSEPORT on"))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(io_err(&ep, "make non-blocking"))?;
    socket.bind(&addr.into()).map_err(io_err(&ep, "bind"))?;
    if !udp {
        socket
            .listen(LISTEN_BACKLOG)
            .map_err(io_err(&ep, "listen on"))?;
    }
    Ok(socket)
}

fn local_inet(socket: &Socket, ep: &Endpoint) -> Result<SocketAddr, BindError> {
    socket
        .local_addr()
        .map_err(io_err(ep, "read the address of"))?
        .as_socket()
        .ok_or_else(|| BindError::Io {
            endpoint: ep.clone(),
            what: "read the address of",
            source: io::Error::other("not an inet socket"),
        })
}

/// Binds one TCP listener at `addr`, without SO_REUSEPORT (the metrics
/// port: one socket, one thread); returns it and its address.
pub fn bind_tcp_single(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let socket = inet_socket(addr, false, false)?;
    let resolved = local_inet(&socket, &Endpoint::Inet(addr))?;
    Ok((TcpListener::from_std(socket.into()), resolved))
}

/// Resolves port 0 and checks the address is free, without SO_REUSEPORT, so
/// that `--workers N` (whose sockets all set SO_REUSEPORT) cannot silently
/// share a port with another daemon. The probe is closed before returning.
pub fn probe_inet(addr: SocketAddr, udp: bool) -> Result<SocketAddr, BindError> {
    let socket = inet_socket(addr, udp, false)?;
    local_inet(&socket, &Endpoint::Inet(addr))
}

/// A bound TCP or unix listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener, Accepted),
    Unix(UnixListener, PathBuf),
}

/// What the sockets a TCP listener accepts come with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// TCP_NODELAY, set on the listener before listen(2): a listener echod
    /// bound itself ([`Listener::bind_tcp`]).
    NoDelay,
    /// Nothing promised: a listener from elsewhere (socket activation);
    /// TCP_NODELAY is set per socket.
    AsIs,
}

impl Listener {
    /// Binds a TCP listener; `reuse_port` for multi-worker setups.
    pub fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> Result<Listener, BindError> {
        let socket = inet_socket(addr, false, reuse_port)?;
        Ok(Listener::Tcp(
            TcpListener::from_std(socket.into()),
            Accepted::NoDelay,
        ))
    }

    /// Binds a unix listener at `path`, replacing a stale socket file that
    /// nobody answers on; a live one is `InUse`, a non-socket file is refused.
    pub fn bind_unix(path: &Path) -> Result<Listener, BindError> {
        let ep = Endpoint::Unix(path.to_path_buf());
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(BindError::NotASocket(path.to_path_buf()));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(BindError::InUse(ep)),
                Err(_) => std::fs::remove_file(path).map_err(io_err(&ep, "remove stale"))?,
            }
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)
            .map_err(io_err(&ep, "create a socket for"))?;
        socket
            .set_nonblocking(true)
            .map_err(io_err(&ep, "make non-blocking"))?;
        let sock_addr = SockAddr::unix(path).map_err(io_err(&ep, "use"))?;
        socket.bind(&sock_addr).map_err(io_err(&ep, "bind"))?;
        socket
            .listen(LISTEN_BACKLOG)
            .map_err(io_err(&ep, "listen on"))?;
        let std_listener: std::os::unix::net::UnixListener = socket.into();
        Ok(Listener::Unix(
            UnixListener::from_std(std_listener),
            path.to_path_buf(),
        ))
    }

    /// Another handle on the same unix socket (unix sockets have no
    /// SO_REUSEPORT; extra workers share the one queue).
    pub fn try_clone_unix(&self) -> io::Result<Option<Listener>> {
        match self {
            Listener::Tcp(..) => Ok(None),
            Listener::Unix(l, path) => {
                let fd = dup_listener(l)?;
                Ok(Some(Listener::Unix(
                    UnixListener::from_std(fd),
                    path.clone(),
                )))
            }
        }
    }

    /// A TCP listener's address, port 0 resolved.
    pub fn local_inet(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(l, _) => l.local_addr(),
            Listener::Unix(..) => Err(io::Error::other("a unix listener has no inet address")),
        }
    }

    /// Whether the sockets this listener accepts already have TCP_NODELAY
    /// (or, on a unix socket, need nothing): if not, the caller sets it on
    /// each connection it keeps ([`Stream::set_nodelay`]).
    #[inline]
    pub fn passes_nodelay(&self) -> bool {
        !matches!(self, Listener::Tcp(_, Accepted::AsIs))
    }

    /// Accepts one connection (non-blocking); WouldBlock when none is pending.
    pub fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l, _) => {
                let (s, addr) = l.accept()?;
                Ok((Stream::Tcp(s), Peer::Inet(addr)))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept()?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }

    /// The inode of our unix socket file, to recognise it at exit.
    pub fn socket_inode(&self) -> Option<u64> {
        match self {
            Listener::Unix(_, path) => std::fs::metadata(path).ok().map(|m| m.ino()),
            Listener::Tcp(..) => None,
        }
    }
}

fn dup_listener(l: &UnixListener) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::fd::{AsFd, OwnedFd};
    let owned: OwnedFd = l.as_fd().try_clone_to_owned()?;
    Ok(owned.into())
}

impl Source for Listener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l, _) => l.register(r, t, i),
            Listener::Unix(l, _) => l.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l, _) => l.reregister(r, t, i),
            Listener::Unix(l, _) => l.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l, _) => l.deregister(r),
            Listener::Unix(l, _) => l.deregister(r),
        }
    }
}

/// Binds a non-blocking UDP socket; `reuse_port` for multi-worker setups.
pub fn bind_udp(addr: SocketAddr, reuse_port: bool) -> Result<UdpSocket, BindError> {
    let socket = inet_socket(addr, true, reuse_port)?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// An accepted connection: TCP or unix, the same to everything above it.
pub type Stream = echod_common::stream::MioStream;
pub use crate::connection::Peer;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The kernel passes the listener's TCP_NODELAY on to what it accepts,
    /// which is what lets `admit` skip the setsockopt per connection: if a
    /// platform stops doing so, this fails (and echoes would wait on Nagle).
    #[test]
    fn accepted_sockets_inherit_tcp_nodelay() {
        let listener = Listener::bind_tcp("127.0.0.1:0".parse().expect("addr"), false)
            .expect("bind a TCP listener");
        assert!(listener.passes_nodelay());
        let addr = listener.local_inet().expect("its address");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let give_up = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        let Stream::Tcp(tcp) = stream else {
            panic!("a TCP listener accepted a unix stream");
        };
        assert!(tcp.nodelay().expect("read TCP_NODELAY"));
    }

    /// A listener from elsewhere makes no promise.
    #[test]
    fn an_inherited_tcp_listener_asks_for_nodelay_per_socket() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let listener = Listener::Tcp(TcpListener::from_std(std_listener), Accepted::AsIs);
        assert!(!listener.passes_nodelay());
    }
}
