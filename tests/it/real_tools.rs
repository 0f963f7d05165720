//! Real tools see their lines echoed: OpenBSD `nc` (with `-N`, so it
//! half-closes at stdin EOF and exits when echod closes after echoing), and
//! `telnet` driven through a pseudo-terminal by a small python3 pty driver,
//! the way a person would use it: type a line, see it come back, ^] quit.
//! Without a tool a test says SKIPPED loudly; with `CI` set it fails instead.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Daemon};

/// Runs `sh -c script` with a deadline; returns (exit code, stdout, stderr).
fn sh(script: &str, limit: Duration) -> (Option<i32>, String, String) {
    run(Command::new("sh").args(["-c", script]), limit)
}

/// Runs `cmd` with a deadline (killed and failed after it); returns (exit
/// code, stdout, stderr).
fn run(cmd: &mut Command, limit: Duration) -> (Option<i32>, String, String) {
    let script = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{script} still running after {limit:?}; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn nc_sees_its_line_echoed() {
    if !common::require_tool("nc") {
        return;
    }
    let mut d = Daemon::start(&[]);
    let port = d.addr().port();
    let script = format!("printf 'hi\\n' | nc -N 127.0.0.1 {port}");
    let (code, out, err) = sh(&script, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{script}: stderr {err}");
    assert_eq!(out, "hi\n", "{script}");
    // Several lines, and binary-ish bytes, come back verbatim too.
    let script = format!("printf 'one\\ntwo\\r\\n\\tthree\\001\\n' | nc -N 127.0.0.1 {port}");
    let (code, out, err) = sh(&script, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{script}: stderr {err}");
    assert_eq!(out, "one\ntwo\r\n\tthree\u{1}\n", "{script}");
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "closed_peer_closed"), 2, "{stats}");
}

#[test]
fn nc_over_a_unix_socket_sees_its_line_echoed() {
    if !common::require_tool("nc") {
        return;
    }
    let path = common::temp_socket_path("nc");
    let listen = format!("unix:{}", path.display());
    let d = Daemon::start(&["--listen", &listen]);
    let script = format!(
        "printf 'hi over unix\\n' | nc -N -U {}",
        d.unix_path().display()
    );
    let (code, out, err) = sh(&script, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{script}: stderr {err}");
    assert_eq!(out, "hi over unix\n", "{script}");
}

/// Drives telnet through a pty: waits for its banner, types a line, waits
/// for the line to appear twice (the terminal's local echo, then echod's),
/// then ^] and `quit`. Prints everything telnet showed.
const TELNET_DRIVER: &str = r#"
import os, pty, select, sys, time

port = sys.argv[1]
line = b"hello from telnet"
pid, fd = pty.fork()
if pid == 0:
    os.execvp("telnet", ["telnet", "127.0.0.1", port])

seen = b""
def wait_for(pred, what, limit=10.0):
    global seen
    end = time.time() + limit
    while not pred(seen):
        left = end - time.time()
        if left <= 0:
            sys.stdout.write(seen.decode("latin-1"))
            sys.exit("timed out waiting for " + what)
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                sys.stdout.write(seen.decode("latin-1"))
                sys.exit("telnet ended while waiting for " + what)
            seen += chunk

wait_for(lambda s: b"Escape character" in s, "the connection banner")
os.write(fd, line + b"\r")
wait_for(lambda s: s.count(line) >= 2, "the echoed line")
os.write(fd, b"\x1d")
wait_for(lambda s: b"telnet>" in s, "the telnet> prompt")
os.write(fd, b"quit\r")
end = time.time() + 10
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.time() > end:
        os.kill(pid, 9)
        sys.exit("telnet did not quit")
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            seen += os.read(fd, 4096)
        except OSError:
            pass
sys.stdout.write(seen.decode("latin-1"))
"#;

#[test]
fn telnet_through_a_pty_sees_its_line_echoed() {
    if !common::require_tool("telnet") || !common::require_tool("python3") {
        return;
    }
    let mut d = Daemon::start_with(&[], |cmd| {
        cmd.env("RUST_LOG", "debug");
    });
    let port = d.addr().port().to_string();
    let (code, shown, err) = run(
        Command::new("python3").args(["-c", TELNET_DRIVER, &port]),
        Duration::from_secs(40),
    );
    eprintln!("telnet showed:\n{shown}");
    assert_eq!(
        code,
        Some(0),
        "telnet driver failed: {err}\ntelnet showed:\n{shown}"
    );
    assert!(
        shown.matches("hello from telnet").count() >= 2,
        "line not echoed:\n{shown}"
    );
    // The daemon echoed exactly what telnet sent: the line and its CR LF.
    assert!(
        common::wait_until(Duration::from_secs(3), || {
            !d.log_lines_with(&["close ", "(peer_closed)"]).is_empty()
        }),
        "daemon did not see telnet leave:\n{}",
        d.log()
    );
    let stats = d.stop_and_stats();
    let sent = "hello from telnet\r\n".len() as u64;
    assert_eq!(common::stat(&stats, "bytes_in"), sent, "{stats}");
    assert_eq!(common::stat(&stats, "bytes_out"), sent, "{stats}");
}
