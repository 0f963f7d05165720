//! The descriptor limit and the errno classes std and mio do not expose.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_limit_only_goes_up() {
        let first = raise_fd_limit().unwrap();
        assert!(first > 0);
        assert_eq!(
            raise_fd_limit().unwrap(),
            first,
            "raised to the hard limit once"
        );
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNRESET
        )));
    }
}
