//! Exit statuses of the three binaries, in one table (documented in each
//! `--help` and in docs/OPERATIONS.md and docs/LOADTEST.md).
//!
//! | status | echod | echod-client | echod-bench |
//! |---|---|---|---|
//! | 0 [`OK`] | clean shutdown | all exchanged | every echo verified |
//! | 1 [`FAILURE`] | bind or loop error | local I/O error | bad echoes, other errors |
//! | 2 [`USAGE`] | bad flag or address | same | same |
//! | 3 [`REFUSED`] | | connection refused | connections refused |
//! | 4 [`RESET`] | | reset by the server | connections reset |
//! | 5 [`TIMEOUT`] | | connect, idle or reply timeout | timeouts |
//! | 6 [`PROTOCOL`] | | not a frame (`--framed`) | |
//! | 130 [`SECOND_SIGINT`] | second SIGINT | | second SIGINT |
//! | 143 [`SECOND_SIGTERM`] | second SIGTERM | | second SIGTERM |

/// Everything was delivered and verified (the daemon: a clean shutdown).
pub const OK: u8 = 0;
/// Any other failure: local I/O errors, a bind or loop error; for
/// echod-bench, corrupted or short echoes.
pub const FAILURE: u8 = 1;
/// A bad flag or address (clap's own usage errors use 2 as well).
pub const USAGE: u8 = 2;
/// The connection was refused (nothing listening there).
pub const REFUSED: u8 = 3;
/// The connection was reset by the peer.
pub const RESET: u8 = 4;
/// A connect, idle or reply timeout expired.
pub const TIMEOUT: u8 = 5;
/// The server broke the framed protocol (`--framed`).
pub const PROTOCOL: u8 = 6;
/// A second SIGINT while the first is still being honoured (128 + 2, as
/// shells report it).
pub const SECOND_SIGINT: i32 = 130;
/// A second SIGTERM (128 + 15).
pub const SECOND_SIGTERM: i32 = 143;
