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
