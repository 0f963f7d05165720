//! The seeds' own Python clients (tests/seeds/, fixed into working Python 3)
//! against the real binary, unchanged: the pickle client unpickles the
//! greeting served with `--banner-file ... --once`, pickled objects
//! round-trip through framed echo, and the UDP client gets its message back.
//! python3 must be installed: these tests fail, never skip, without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{stat, Daemon};

/// Upper bound for one Python client run (they time out on their own at 2-10 s).
const CLIENT_LIMIT: Duration = Duration::from_secs(20);

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds")
}

/// Runs `python3 tests/seeds/SCRIPT ARGS...`, killing it after [`CLIENT_LIMIT`].
fn python(script: &str, args: &[&str]) -> Output {
    let mut child = Command::new("python3")
        .arg(seeds_dir().join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is required for the seeds' clients: {e}"));
    let deadline = Instant::now() + CLIENT_LIMIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "{script} ran longer than {CLIENT_LIMIT:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn pickle_client_unpickles_the_greeting_of_a_framed_once_server() {
    let banner = std::env::temp_dir().join(format!("echod-seeds-{}.pickle", std::process::id()));
    let made = python("make_banner.py", &[banner.to_str().unwrap()]);
    assert!(made.status.success(), "make_banner.py: {}", describe(&made));
    let mut d = Daemon::start(&[
        "--mode",
        "framed",
        "--banner-file",
        banner.to_str().unwrap(),
        "--once",
    ]);
    let port = d.addr().port().to_string();
    for _ in 0..2 {
        let out = python("pickle_client.py", &["127.0.0.1", &port]);
        assert!(out.status.success(), "pickle_client.py: {}", describe(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("{1: 'Client', 2: 'Server'}"),
            "pickle_client.py: {}",
            describe(&out)
        );
    }
    let _ = std::fs::remove_file(&banner);
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "accepted"), 2, "{stats}");
    assert_eq!(stat(&stats, "errors"), 0, "{stats}");
}

#[test]
fn pickled_objects_round_trip_through_framed_echo() {
    let mut d = Daemon::start(&["--mode", "framed"]);
    let port = d.addr().port().to_string();
    let out = python("pickle_echo.py", &["127.0.0.1", &port]);
    assert!(out.status.success(), "pickle_echo.py: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "ok 5", "pickle_echo.py: {}", describe(&out));
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "frames"), 5, "{stats}");
    assert_eq!(stat(&stats, "closed_bad_frame"), 0, "{stats}");
}

#[test]
fn udp_client_gets_its_message_back() {
    let mut d = Daemon::start(&["--udp", "127.0.0.1:0"]);
    let port = d.udp_addr().port().to_string();
    let out = python("udp_client.py", &["127.0.0.1", &port]);
    assert!(out.status.success(), "udp_client.py: {}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Hello, World!",
        "udp_client.py: {}",
        describe(&out)
    );
    let stats = d.stop_and_stats();
    assert_eq!(stat(&stats, "datagrams_out"), 1, "{stats}");
}
