//! One stream socket type: TCP or unix, the same to everything above it.
//!
//! The daemon and the load generator hold mio's non-blocking sockets
//! ([`MioStream`]); the client holds std's blocking ones ([`StdStream`]).
//! The enum and its forwarding are written once, generic over the pair.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use mio::event::Source;
use mio::{Interest, Registry, Token};

/// A connected stream socket of either family.
#[derive(Debug)]
pub enum Stream<T, U> {
    Tcp(T),
    Unix(U),
}

/// A non-blocking stream for a mio poll.
pub type MioStream = Stream<mio::net::TcpStream, mio::net::UnixStream>;
/// A blocking std stream.
pub type StdStream = Stream<std::net::TcpStream, std::os::unix::net::UnixStream>;

/// What both families of one socket flavour (mio or std) can do.
pub trait StreamSocket {
    /// `shutdown(2)`.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    /// TCP_NODELAY on TCP; nothing to do on a unix socket.
    fn set_nodelay(&self) -> io::Result<()>;
    /// `SO_ERROR`, cleared: how a non-blocking connect failed, if it did.
    fn take_error(&self) -> io::Result<Option<io::Error>>;
    /// `getpeername(2)`: `NotConnected` while a non-blocking connect is
    /// still in progress.
    fn peer_connected(&self) -> io::Result<()>;
}

macro_rules! stream_socket {
    ($tcp:ty, $unix:ty) => {
        impl StreamSocket for $tcp {
            fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                <$tcp>::shutdown(self, how)
            }
            fn set_nodelay(&self) -> io::Result<()> {
                <$tcp>::set_nodelay(self, true)
            }
            fn take_error(&self) -> io::Result<Option<io::Error>> {
                <$tcp>::take_error(self)
            }
            fn peer_connected(&self) -> io::Result<()> {
                <$tcp>::peer_addr(self).map(drop)
            }
        }
        impl StreamSocket for $unix {
            fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                <$unix>::shutdown(self, how)
            }
            fn set_nodelay(&self) -> io::Result<()> {
                Ok(())
            }
            fn take_error(&self) -> io::Result<Option<io::Error>> {
                <$unix>::take_error(self)
            }
            fn peer_connected(&self) -> io::Result<()> {
                <$unix>::peer_addr(self).map(drop)
            }
        }
    };
}

stream_socket!(mio::net::TcpStream, mio::net::UnixStream);
stream_socket!(std::net::TcpStream, std::os::unix::net::UnixStream);

impl<T: StreamSocket, U: StreamSocket> Stream<T, U> {
    /// `shutdown(2)`; `Shutdown::Write` sends FIN and reading goes on.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// Sends FIN: no more bytes from us; reading continues.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    /// Disables Nagle on TCP, so an echo is never held back waiting for an ACK.
    pub fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(),
            Stream::Unix(s) => s.set_nodelay(),
        }
    }

    /// After an event on a non-blocking connect (mio's `TcpStream::connect`
    /// contract: `SO_ERROR`, then `getpeername`): `Ok(true)` once
    /// established, `Ok(false)` while still in progress (the event was
    /// spurious), `Err` if the connect failed.
    pub fn connect_finished(&self) -> io::Result<bool> {
        let (error, peer) = match self {
            Stream::Tcp(s) => (s.take_error(), s.peer_connected()),
            Stream::Unix(s) => (s.take_error(), s.peer_connected()),
        };
        if let Some(e) = error? {
            return Err(e);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl StdStream {
    /// A second handle on the same socket (one thread reads, one writes).
    pub fn try_clone(&self) -> io::Result<StdStream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// SO_RCVTIMEO: a blocking read gives up after `t`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
}

impl<T: AsRawFd, U: AsRawFd> AsRawFd for Stream<T, U> {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl<T: Read, U: Read> Read for Stream<T, U> {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl<'a, T, U> Read for &'a Stream<T, U>
where
    &'a T: Read,
    &'a U: Read,
{
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Stream::Tcp(s) => { s }.read(buf),
            Stream::Unix(s) => { s }.read(buf),
        }
    }
}

impl<T: Write, U: Write> Write for Stream<T, U> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, T, U> Write for &'a Stream<T, U>
where
    &'a T: Write,
    &'a U: Write,
{
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            Stream::Tcp(s) => { s }.write(buf),
            Stream::Unix(s) => { s }.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: Source, U: Source> Source for Stream<T, U> {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_std_pair_reads_writes_and_half_closes() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let ours: StdStream = Stream::Unix(a);
        let theirs: StdStream = Stream::Unix(b);
        (&ours).write_all(b"ping").unwrap();
        ours.shutdown_write().unwrap();
        ours.set_nodelay().unwrap();
        let mut got = Vec::new();
        (&theirs).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"ping");
    }

    #[test]
    fn a_connected_stream_reports_its_connect_finished() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let unix: StdStream = Stream::Unix(a);
        assert!(unix.connect_finished().unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let tcp: MioStream = Stream::Tcp(mio::net::TcpStream::from_std(tcp));
        assert!(tcp.connect_finished().unwrap());
    }
}
