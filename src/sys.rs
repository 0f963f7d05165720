//! Thin wrappers over the few libc calls std, mio and socket2 do not cover.

use std::io;

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
///
/// Servers and load generators holding tens of thousands of sockets need it;
/// the hard limit is the ceiling an unprivileged process may reach.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(raised.rlim_cur);
        }
    }
    Ok(lim.rlim_cur)
}

/// Whether an accept/socket error means "out of descriptors or kernel memory":
/// retrying at once would spin, so the caller sheds or pauses instead.
/// Classified by errno, because `io::ErrorKind` folds these into `Other`.
pub fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Whether an accept error concerns only the connection being accepted (the
/// peer gave up, a firewall said no): skip it and keep accepting.
pub fn is_transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM | libc::EINTR | libc::ETIMEDOUT)
    )
}
