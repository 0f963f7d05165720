//! The errno class std and mio do not expose that only the daemon needs
//! (the shared ones are in `echod_common::sys`).

use std::io;

/// Whether an accept error concerns only the connection being accepted (the
/// peer gave up, a firewall said no): skip it and keep accepting.
pub fn is_transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM | libc::EINTR | libc::ETIMEDOUT)
    )
}

/// A non-blocking pipe owned by one worker loop, the middle of a
/// `splice(2)` echo: socket -> pipe -> socket without copying the bytes
/// through user space. Invariant: empty between the loop's events (every
/// use moves out whatever it moved in, or reads it back into user space).
#[derive(Debug)]
pub struct SplicePipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
    capacity: usize,
}

impl SplicePipe {
    /// A pipe of (at least) `capacity` bytes (`F_SETPIPE_SZ`; the kernel
    /// rounds up to a power of two of pages). If the size cannot be set
    /// (over `/proc/sys/fs/pipe-max-size` for an unprivileged user), the
    /// pipe keeps the size the kernel gave it.
    pub fn new(capacity: usize) -> io::Result<SplicePipe> {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are open and ours alone.
        let (read, write) = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            )
        };
        let wanted = libc::c_int::try_from(capacity).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on a descriptor we own; no pointer is passed.
        let mut size = unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, wanted) };
        if size < 0 {
            // SAFETY: as above.
            size = unsafe { libc::fcntl(fds[1], libc::F_GETPIPE_SZ) };
        }
        let capacity = usize::try_from(size).map_err(|_| io::Error::last_os_error())?;
        Ok(SplicePipe {
            read,
            write,
            capacity,
        })
    }

    /// The pipe's size in bytes: at most this much is spliced in at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves up to `len` bytes from the socket `from` into the pipe,
    /// without blocking. `Ok(0)` is the socket's end of stream.
    #[inline]
    pub fn fill_from(&self, from: std::os::fd::RawFd, len: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        splice(from, self.write.as_raw_fd(), len)
    }

    /// Moves up to `len` bytes from the pipe into the socket `to`, without
    /// blocking.
    #[inline]
    pub fn drain_to(&self, to: std::os::fd::RawFd, len: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        splice(self.read.as_raw_fd(), to, len)
    }

    /// Reads bytes back out of the pipe into `buf` (what a socket would not
    /// take). `Ok(0)` or WouldBlock: the pipe is empty.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

/// `splice(2)` between two descriptors, one of them a pipe, non-blocking.
#[inline]
fn splice(from: std::os::fd::RawFd, to: std::os::fd::RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: no offsets (both null: the descriptors' own positions); the
    // kernel checks the descriptors.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
