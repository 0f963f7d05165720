//! Socket activation: the sockets a service manager hands over
//! (`LISTEN_PID`/`LISTEN_FDS`, sd_listen_fds(3)), read once at start and
//! sorted by kind: a listening stream socket is a TCP or unix listener by
//! its address family, a datagram socket is UDP. They are served through
//! the binding seam ([`super::bind`]) like the sockets of `-l` and `-u`.
//!
//! Reading the environment is the process's business, not an embedder's:
//! `src/main.rs` calls [`Inherited::from_env`] before any thread starts,
//! and hands the result to [`super::Server::bind_inherited`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use socket2::{Domain, Socket, Type};

use echod_common::addr::Endpoint;

/// One inherited socket, non-blocking, with the address it serves.
#[derive(Debug)]
pub(super) enum InheritedSocket {
    Tcp(std::net::TcpListener, SocketAddr),
    /// A unix listener and its path (`@name` for the abstract namespace).
    /// The service manager owns the socket file: echod never removes it.
    Unix(std::os::unix::net::UnixListener, PathBuf),
    Udp(std::net::UdpSocket, SocketAddr),
}

impl InheritedSocket {
    /// The address, as `listening on` and [`super::Server::listen_addrs`] show it.
    pub(super) fn endpoint(&self) -> Endpoint {
        match self {
            InheritedSocket::Tcp(_, addr) | InheritedSocket::Udp(_, addr) => Endpoint::Inet(*addr),
            InheritedSocket::Unix(_, path) => Endpoint::Unix(path.clone()),
        }
    }
}

/// The sockets a service manager passed to this process; none when it
/// passed none (or they were meant for another process).
#[derive(Debug, Default)]
pub struct Inherited {
    pub(super) sockets: Vec<InheritedSocket>,
}

/// Why the inherited sockets cannot be served: one human line. echod exits
/// with status 2, as for a bad flag: what the service manager was told to
/// pass is wrong, and restarting will not change it.
#[derive(Debug)]
pub struct ActivationError(String);

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socket activation: {}", self.0)
    }
}

impl std::error::Error for ActivationError {}

impl Inherited {
    /// No inherited socket: what [`super::Server::bind`] uses.
    pub fn none() -> Inherited {
        Inherited::default()
    }

    /// Takes the sockets passed with `LISTEN_PID` (this process's pid) and
    /// `LISTEN_FDS` (descriptors 3 onwards), makes each non-blocking and
    /// close-on-exec, and unsets `LISTEN_PID` and `LISTEN_FDS` so that no
    /// child could take them for its own. No `LISTEN_PID`, or another
    /// process's, means none. Refused: a malformed variable, a descriptor
    /// that is not open or not a socket, a stream socket that is not
    /// listening, and kinds echod does not serve (unix datagram, sequential
    /// packet, other families).
    ///
    /// # Safety
    ///
    /// It changes the environment ([`std::env::remove_var`]): call it before
    /// any other thread runs. It takes ownership of descriptors 3 to
    /// 3 + `LISTEN_FDS` - 1, so nothing else in the process may own them:
    /// call it first thing in `main`.
    pub unsafe fn from_env() -> Result<Inherited, ActivationError> {
        // SAFETY: the caller promises no other thread runs yet.
        let fds = unsafe { sd_notify::listen_fds_and_unset_env() }
            .map_err(|e| ActivationError(format!("LISTEN_PID/LISTEN_FDS: {e}")))?;
        let owned: Vec<(RawFd, OwnedFd)> = fds
            // SAFETY: sd_listen_fds(3): the service manager hands these
            // descriptors to this process (LISTEN_PID is ours), listen_fds
            // checked each is open (it set FD_CLOEXEC on it), and the
            // caller promises nothing else in the process owns them.
            .map(|fd| (fd, unsafe { OwnedFd::from_raw_fd(fd) }))
            .collect();
        let mut sockets = Vec::with_capacity(owned.len());
        for (raw, fd) in owned {
            sockets.push(classify(raw, fd)?);
        }
        Ok(Inherited { sockets })
    }

    /// How many sockets were inherited.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

/// Sorts one descriptor by kind and makes it non-blocking: inherited
/// descriptors arrive blocking, and one blocking accept would stall a loop.
fn classify(raw: RawFd, fd: OwnedFd) -> Result<InheritedSocket, ActivationError> {
    let fail = |what: &str, e: io::Error| ActivationError(format!("descriptor {raw}: {what}: {e}"));
    let refuse = |why: String| ActivationError(format!("descriptor {raw}: {why}"));
    let socket = Socket::from(fd);
    let ty = socket.r#type().map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOTSOCK) {
            refuse("not a socket".into())
        } else {
            fail("read its type", e)
        }
    })?;
    let domain = socket.domain().map_err(|e| fail("read its family", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| fail("make it non-blocking", e))?;
    let local = socket
        .local_addr()
        .map_err(|e| fail("read its address", e))?;
    if ty == Type::STREAM {
        if !socket
            .is_listener()
            .map_err(|e| fail("read SO_ACCEPTCONN", e))?
        {
            return Err(refuse(
                "a stream socket that is not listening (Accept=no is needed)".into(),
            ));
        }
        if domain == Domain::IPV4 || domain == Domain::IPV6 {
            let addr = local
                .as_socket()
                .ok_or_else(|| refuse("an inet socket without an inet address".into()))?;
            return Ok(InheritedSocket::Tcp(socket.into(), addr));
        }
        if domain == Domain::UNIX {
            let path = match (local.as_pathname(), local.as_abstract_namespace()) {
                (Some(path), _) => path.to_path_buf(),
                (None, Some(name)) => {
                    let mut at = b"@".to_vec();
                    at.extend_from_slice(name);
                    PathBuf::from(std::ffi::OsStr::from_bytes(&at))
                }
                (None, None) => PathBuf::from("(unnamed)"),
            };
            return Ok(InheritedSocket::Unix(socket.into(), path));
        }
    }
    if ty == Type::DGRAM && (domain == Domain::IPV4 || domain == Domain::IPV6) {
        let addr = local
            .as_socket()
            .ok_or_else(|| refuse("an inet socket without an inet address".into()))?;
        return Ok(InheritedSocket::Udp(socket.into(), addr));
    }
    Err(refuse(format!(
        "a {ty:?} socket of family {domain:?}; echod serves TCP and unix stream listeners \
         (ListenStream=) and UDP sockets (ListenDatagram=)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn sort(socket: Socket) -> Result<InheritedSocket, ActivationError> {
        let raw = socket.as_raw_fd();
        classify(raw, socket.into())
    }

    fn bound(domain: Domain, ty: Type, listen: bool) -> Socket {
        let socket = Socket::new(domain, ty, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        socket.bind(&any.into()).expect("bind");
        if listen {
            socket.listen(8).expect("listen");
        }
        socket
    }

    #[test]
    fn each_kind_is_sorted_by_type_and_family_and_made_non_blocking() {
        let tcp = sort(bound(Domain::IPV4, Type::STREAM, true)).expect("tcp");
        let InheritedSocket::Tcp(listener, addr) = &tcp else {
            panic!("not tcp: {tcp:?}");
        };
        assert_ne!(addr.port(), 0);
        let err = listener.accept().expect_err("nothing pending");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "still blocking");
        let udp = sort(bound(Domain::IPV4, Type::DGRAM, false)).expect("udp");
        assert!(matches!(udp, InheritedSocket::Udp(..)), "{udp:?}");
        let dir = std::env::temp_dir().join(format!("echod-activation-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let unix = Socket::new(Domain::UNIX, Type::STREAM, None).expect("socket");
        unix.bind(&socket2::SockAddr::unix(&dir).expect("path"))
            .expect("bind");
        unix.listen(8).expect("listen");
        let sorted = sort(unix).expect("unix");
        let _ = std::fs::remove_file(&dir);
        assert_eq!(sorted.endpoint(), Endpoint::Unix(dir));
    }

    #[test]
    fn a_stream_socket_that_does_not_listen_or_a_file_is_refused_in_one_line() {
        let err = sort(bound(Domain::IPV4, Type::STREAM, false)).expect_err("not listening");
        assert!(err.to_string().contains("not listening"), "{err}");
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        let raw = file.as_raw_fd();
        let err = classify(raw, file.into()).expect_err("a file");
        assert!(err.to_string().ends_with("not a socket"), "{err}");
        let err = sort(Socket::new(Domain::UNIX, Type::DGRAM, None).expect("socket"))
            .expect_err("unix datagram");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}
