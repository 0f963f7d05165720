//! Exit codes and start-up errors: a bad flag, value or address is one line
//! on stderr and exit 2; an address in use is one line and exit 1; never a
//! panic or a backtrace (RUST_BACKTRACE=1 is set, so one would show). A
//! unix socket someone answers on is in use; a stale socket file is replaced.

use crate::common;
use std::net::TcpListener;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(10);

/// Runs echod to completion and checks: exit `code`, exactly one non-empty
/// stderr line, naming the daemon, no panic. Returns that line.
fn fails_with(args: &[&str], code: i32) -> String {
    let out = common::run_echod(args, LIMIT);
    let stderr = out.stderr.clone();
    assert_eq!(
        out.status.code(),
        Some(code),
        "echod {args:?}: {}; stderr:\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("backtrace")
            && !stderr.contains("RUST_BACKTRACE"),
        "echod {args:?} panicked:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "echod {args:?}: want one stderr line, got:\n{stderr}"
    );
    assert!(
        !lines[0].trim().is_empty(),
        "echod {args:?}: empty error line"
    );
    assert!(out.stdout.is_empty(), "echod {args:?} wrote to stdout");
    eprintln!("echod {args:?} -> exit {code}: {}", lines[0]);
    lines[0].to_string()
}

#[test]
fn unknown_flag_exits_2_with_one_line() {
    let line = fails_with(&["--bogus"], 2);
    assert!(line.contains("--bogus"), "{line}");
}

#[test]
fn bad_values_exit_2_with_one_line() {
    let line = fails_with(&["--max-connections", "x"], 2);
    assert!(line.contains("max-connections"), "{line}");
    fails_with(&["--max-connections", "0"], 2);
    fails_with(&["--max-connections"], 2);
    fails_with(&["--idle-timeout", "soon"], 2);
    fails_with(&["--queue-limit", "lots"], 2);
    fails_with(&["--mode", "chargen"], 2);
    fails_with(&["--workers", "0"], 2);
    fails_with(&["stray-positional"], 2);
}

#[test]
fn bad_addresses_exit_2_with_one_line() {
    let line = fails_with(&["--listen", "1.2.3.4:99999"], 2);
    assert!(line.contains("1.2.3.4:99999"), "{line}");
    let line = fails_with(&["--listen", "nonsense"], 2);
    assert!(line.contains("nonsense"), "{line}");
    fails_with(&["--listen", ""], 2);
    fails_with(&["--listen", "127.0.0.1"], 2);
    fails_with(&["--listen", "[::1:80"], 2);
    fails_with(&["--udp", "nonsense"], 2);
    fails_with(&["--listen", "127.0.0.1:0", "--listen", "999.0.0.1:80"], 2);
}

#[test]
fn address_in_use_exits_1_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = fails_with(&["--listen", &addr], 1);
    assert!(
        line.contains(&addr),
        "the line should name the address: {line}"
    );
    drop(taken);
}

#[test]
fn help_exits_0_and_names_the_flags() {
    let out = common::run_echod(&["--help"], LIMIT);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--max-connections",
        "--idle-timeout",
        "--shutdown-timeout",
        "--queue-limit",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

/// `--udp unix:/path` is a bad address (UDP needs host:port), so it is a
/// usage error found before anything is bound, like every other bad address.
#[test]
fn udp_on_a_unix_path_is_a_usage_error() {
    let path = common::temp_socket_path("udp-unix");
    let udp = format!("unix:{}", path.display());
    fails_with(&["--listen", "127.0.0.1:0", "--udp", &udp], 2);
}

/// A unix socket another daemon answers on is "in use": exit 1, one line,
/// and the other daemon's socket file is left alone (it still answers).
#[test]
fn unix_socket_in_use_exits_1_and_leaves_the_other_alone() {
    let path = common::temp_socket_path("in-use");
    let listen = format!("unix:{}", path.display());
    let first = common::Daemon::start(&["--listen", &listen]);
    let line = fails_with(&["--listen", &listen], 1);
    assert!(line.contains(&path.display().to_string()), "{line}");
    let mut s = std::os::unix::net::UnixStream::connect(first.unix_path())
        .expect("the first daemon's socket was removed");
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    common::write_all(&mut s, b"still yours\n");
    assert_eq!(common::read_exact(&mut s, 12), b"still yours\n");
}

/// A socket file nobody answers on (left by a crash) is replaced at start.
#[test]
fn stale_unix_socket_file_is_replaced() {
    let path = common::temp_socket_path("stale");
    let _ = std::fs::remove_file(&path);
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "the stale file should be there");
    let listen = format!("unix:{}", path.display());
    let d = common::Daemon::start(&["--listen", &listen]);
    let mut s = std::os::unix::net::UnixStream::connect(d.unix_path()).unwrap();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    common::write_all(&mut s, b"fresh\n");
    assert_eq!(common::read_exact(&mut s, 6), b"fresh\n");
}
