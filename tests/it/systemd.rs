//! Running under systemd: socket activation (systemd-socket-activate passes
//! the sockets), the sd_notify messages (the test is the service manager:
//! it binds NOTIFY_SOCKET itself), and the shipped units checked by
//! `systemd-analyze`. A missing tool skips loudly, and fails under CI.
//!
//! Ports: systemd-socket-activate binds the addresses itself and refuses
//! port 0, so the test names a port. It is drawn from 20000-29999, below the
//! kernel's ephemeral range (32768-60999), where no port-0 bind of another
//! test can land, and a port found taken ("Address already in use") is
//! simply drawn again. No port is found free, released and bound again.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{self, Daemon};

const ECHOD: &str = env!("CARGO_BIN_EXE_echod");

/// Starts `systemd-socket-activate ARGS -E RUST_LOG=debug echod ECHOD_ARGS`
/// on a free port of 20000-29999 (`{port}` in `args` is replaced), and
/// returns once it listens (echod itself starts on the first connection or
/// datagram), with the port it got.
fn socket_activate(args: &[&str], echod_args: &[&str]) -> (Daemon, u16) {
    let mut last = String::new();
    for _ in 0..20 {
        let port = common::draw_port();
        let mut cmd = Command::new("systemd-socket-activate");
        let args = args.iter().map(|a| a.replace("{port}", &port.to_string()));
        let listens = args.clone().filter(|a| a == "-l").count();
        cmd.args(args)
            .args(["-E", "RUST_LOG=debug", ECHOD])
            .args(echod_args);
        // systemd-socket-activate says "Listening on ADDR as FD." per socket.
        match Daemon::spawn(cmd, listens, |l| l.starts_with("Listening on ")) {
            Ok(d) => return (d, port),
            Err(log) if log.contains("Address already in use") => last = log,
            Err(log) => panic!("systemd-socket-activate did not start:\n{log}"),
        }
    }
    panic!("no free port in 20 draws; last attempt:\n{last}");
}

fn unix_echo(path: &Path, msg: &[u8]) {
    let mut s = UnixStream::connect(path).expect("connect to the unix socket");
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    common::write_all(&mut s, msg);
    assert_eq!(common::read_exact(&mut s, msg.len()), msg);
}

fn udp_echo(addr: SocketAddr, msg: &[u8]) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    // UDP may lose a datagram: a few tries, each waiting briefly.
    let deadline = Instant::now() + common::WAIT;
    while Instant::now() < deadline {
        s.send_to(msg, addr).expect("send_to");
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, addr);
                assert_eq!(&buf[..n], msg);
                return;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv_from: {e}"),
        }
    }
    panic!("no UDP echo from {addr}");
}

/// The address of the first `listening on ADDR KIND` line of `kind`.
fn listened(d: &Daemon, kind: &str) -> SocketAddr {
    listening_lines(d)
        .iter()
        .find(|l| l.contains(kind))
        .and_then(|l| l.split("listening on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {kind} address in the log:\n{}", d.log()))
}

/// Asserts the log says `listening on ADDR (KIND) inherited`.
fn assert_inherited(d: &Daemon, addr: &str, kind: &str) {
    let want = format!("listening on {addr} ({kind}) inherited");
    let lines = listening_lines(d);
    assert!(
        lines.iter().any(|l| l.contains(&want)),
        "no {want:?}:\n{}",
        d.log()
    );
}

/// The `listening on` lines in the log.
fn listening_lines(d: &Daemon) -> Vec<String> {
    d.log_lines_with(&["listening on "])
}

#[test]
fn echod_under_systemd_socket_activate_echoes_over_each_socket_kind_and_opens_no_default_listener()
{
    if !common::require_tool("systemd-socket-activate") {
        return;
    }
    let path = common::temp_socket_path("activated");
    let _ = std::fs::remove_file(&path);
    let unix = path.to_str().expect("a UTF-8 temp path");
    // Streams: TCP and unix inherited, shared by two workers; an explicit
    // --udp is served as well.
    let (mut d, port) = socket_activate(
        &["-l", "127.0.0.1:{port}", "-l", unix],
        &["--workers", "2", "--udp", "127.0.0.1:0"],
    );
    let tcp: SocketAddr = ([127, 0, 0, 1], port).into();
    // The first connection starts echod; the kernel queues it meanwhile.
    for i in 0..4 {
        let mut c = common::connect(tcp);
        let msg = format!("tcp {i}\n");
        common::round_trip(&mut c, msg.as_bytes()).expect("tcp echo");
    }
    unix_echo(&path, b"over unix\n");
    let log = d.wait_for_log("(udp)");
    let udp = listened(&d, "(udp)");
    udp_echo(udp, b"explicit udp");
    let lines = listening_lines(&d);
    assert_eq!(lines.len(), 3, "tcp + unix inherited, udp explicit:\n{log}");
    assert_inherited(&d, &format!("127.0.0.1:{port}"), "tcp");
    assert_inherited(&d, &format!("unix:{unix}"), "unix");
    assert!(
        !log.contains("listening on 127.0.0.1:12345"),
        "the default -l was bound:\n{log}"
    );
    let stats = d.stop_and_stats();
    assert_eq!(common::stat(&stats, "accepted"), 5, "{stats}");
    assert!(
        path.exists(),
        "echod removed a socket file the service manager owns"
    );
    let _ = std::fs::remove_file(&path);

    // A datagram socket inherited, and an explicit -l served beside it.
    let (d, port) = socket_activate(
        &["--datagram", "-l", "127.0.0.1:{port}"],
        &["-l", "127.0.0.1:0"],
    );
    let udp: SocketAddr = ([127, 0, 0, 1], port).into();
    udp_echo(udp, b"inherited udp");
    let log = d.wait_for_log("(tcp)");
    let lines = listening_lines(&d);
    assert_eq!(lines.len(), 2, "udp inherited, tcp explicit:\n{log}");
    assert_inherited(&d, &format!("127.0.0.1:{port}"), "udp");
    let tcp = listened(&d, "(tcp)");
    let mut c = common::connect(tcp);
    common::round_trip(&mut c, b"explicit tcp").expect("tcp echo");
}

/// Runs echod with `env` and `sh -c 'SETUP; exec echod'` so that
/// LISTEN_PID can be its own pid (`$$`).
fn run_with_listen_env(setup: &str) -> common::Bounded {
    let script = format!("{setup}; LISTEN_PID=$$ exec \"$0\" -l 127.0.0.1:0");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script, ECHOD]).env_remove("RUST_LOG");
    common::run_bounded(&mut cmd, Some(Vec::new()), common::WAIT)
}

#[test]
fn a_bad_listen_fds_or_an_inherited_non_socket_is_one_line_and_exit_2() {
    for (setup, expect) in [
        ("export LISTEN_FDS=two", "LISTEN_FDS"),
        (
            "export LISTEN_FDS=1; exec 3</dev/null",
            "descriptor 3: not a socket",
        ),
    ] {
        let out = run_with_listen_env(setup);
        assert_eq!(out.status.code(), Some(2), "{setup}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{setup}: one line:\n{}", out.stderr);
        assert!(
            lines[0].starts_with("echod: socket activation: ") && lines[0].contains(expect),
            "{setup}: {}",
            out.stderr
        );
    }
}

/// The test's end of NOTIFY_SOCKET: every message, split into its lines.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(tag: &str) -> NotifySocket {
        let path = common::temp_socket_path(tag);
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind NOTIFY_SOCKET");
        NotifySocket { socket, path }
    }

    /// The lines of the next message, or `None` if none comes within `limit`.
    fn next(&self, limit: Duration) -> Option<Vec<String>> {
        self.socket
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string)
                    .collect(),
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("recv on NOTIFY_SOCKET: {e}"),
        }
    }

    /// Waits for a message with the line `line`; returns every line seen
    /// until then (that one included). Panics after [`common::WAIT`].
    fn wait_for(&self, line: &str) -> Vec<String> {
        let deadline = Instant::now() + common::WAIT;
        let mut seen = Vec::new();
        while let Some(lines) = self.next(deadline.saturating_duration_since(Instant::now())) {
            let found = lines.iter().any(|l| l == line);
            seen.extend(lines);
            if found {
                return seen;
            }
        }
        panic!("no {line} within {:?}; got {seen:?}", common::WAIT);
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn ready_arrives_when_a_connect_succeeds_watchdog_at_the_asked_interval_stopping_before_exit() {
    let notify = NotifySocket::bind("notify");
    let listen = common::temp_socket_path("notified");
    let _ = std::fs::remove_file(&listen);
    let mut cmd = Command::new(ECHOD);
    cmd.args(["-l", &format!("unix:{}", listen.display())])
        .args(["--workers", "2"])
        .env("RUST_LOG", "debug")
        .env("NOTIFY_SOCKET", &notify.path)
        // 400 ms: WATCHDOG=1 every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS");
    // Not waiting for `listening on`: READY=1 is what says "serving".
    let mut d = Daemon::spawn(cmd, 0, |_| false).expect("spawn echod");
    let before = notify.wait_for("READY=1");
    assert!(
        !before.iter().any(|l| l.starts_with("STATUS=")),
        "{before:?}"
    );
    // At READY=1 a connection is accepted and served.
    unix_echo(&listen, b"ready\n");
    let held = UnixStream::connect(&listen).expect("connect after READY=1");

    // Two seconds of messages: WATCHDOG=1 every 200 ms (no tight timing:
    // at least 4 where about 10 are due), STATUS= with the open count.
    let start = Instant::now();
    let mut watchdogs = 0;
    let mut statuses = Vec::new();
    while start.elapsed() < Duration::from_secs(2) {
        let left = Duration::from_secs(2).saturating_sub(start.elapsed());
        let Some(lines) = notify.next(left) else {
            break;
        };
        for line in lines {
            assert_ne!(line, "STOPPING=1", "no shutdown was asked for");
            if line == "WATCHDOG=1" {
                watchdogs += 1;
            } else if let Some(status) = line.strip_prefix("STATUS=") {
                statuses.push(status.to_string());
            }
        }
    }
    assert!(
        (4..=20).contains(&watchdogs),
        "{watchdogs} WATCHDOG=1 in 2 s, one per 200 ms asked"
    );
    // STATUS= every 2 s: the next one counts the connection held open.
    let later = notify.wait_for("STATUS=1 connections open");
    statuses.extend(
        later
            .iter()
            .filter_map(|l| l.strip_prefix("STATUS="))
            .map(str::to_string),
    );
    assert!(
        statuses.iter().all(|s| s.ends_with(" connections open")),
        "{statuses:?}"
    );

    // SIGTERM: STOPPING=1 arrives while the held connection keeps echod
    // flushing, then the process exits.
    d.signal(libc::SIGTERM);
    notify.wait_for("STOPPING=1");
    assert!(d.is_running(), "STOPPING=1 came only at exit:\n{}", d.log());
    let _ = held.shutdown(std::net::Shutdown::Both);
    let status = d.wait_exit(common::WAIT);
    assert!(status.success(), "{status}:\n{}", d.log());
    let _ = std::fs::remove_file(&listen);
}

/// The shipped units, copied with ExecStart pointing at the built echod
/// (`systemd-analyze verify` checks that the binary exists).
fn units_for_verify(dir: &Path) -> (PathBuf, PathBuf) {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/systemd");
    let service = std::fs::read_to_string(dist.join("echod.service")).expect("echod.service");
    assert!(
        service.contains("ExecStart=/usr/bin/echod "),
        "the shipped unit runs /usr/bin/echod"
    );
    let service = service.replace("ExecStart=/usr/bin/echod ", &format!("ExecStart={ECHOD} "));
    std::fs::create_dir_all(dir).expect("temp dir");
    let (svc, sock) = (dir.join("echod.service"), dir.join("echod.socket"));
    std::fs::write(&svc, service).expect("write the service");
    std::fs::copy(dist.join("echod.socket"), &sock).expect("copy the socket");
    (svc, sock)
}

#[test]
fn the_units_verify_clean_and_the_service_is_exposed_at_most_2_0() {
    if !common::require_tool("systemd-analyze") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("echod-units-{}", std::process::id()));
    let (svc, sock) = units_for_verify(&dir);
    // verify exits 0 on warnings ("Unknown key"): its output must be empty.
    let mut verify = Command::new("systemd-analyze");
    verify.args(["verify", "--man=no"]).arg(&svc).arg(&sock);
    let out = common::run_bounded(&mut verify, None, common::WAIT);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "verify:\n{said}"
    );

    let mut security = Command::new("systemd-analyze");
    security
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&svc);
    let out = common::run_bounded(&mut security, None, common::WAIT);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let score: f64 = said
        .lines()
        .find_map(|l| l.split("Overall exposure level for echod.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level:\n{said}{}", out.stderr));
    eprintln!("echod.service exposure: {score}");
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{said}");
    assert!(
        out.status.success(),
        "over --threshold=20:\n{said}{}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
