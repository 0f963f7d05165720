//! Shared harness for integration tests: start the real `echod` binary on
//! free ports, find its addresses from the `listening on` lines, kill it on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running echod. Its stderr is collected in the background.
pub struct Daemon {
    child: Option<Child>,
    pub tcp: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
    pub unix: Vec<PathBuf>,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `echod` with `args`; adds `--listen 127.0.0.1:0` unless a
    /// `--listen`/`-l` is given. Panics if it does not come up within [`WAIT`].
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with(args, |_| {})
    }

    /// As [`Daemon::start`], letting the caller adjust the command (env, rlimits).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_echod"));
        if !args.iter().any(|a| *a == "--listen" || *a == "-l") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .env("RUST_LOG", std::env::var("ECHOD_TEST_LOG").unwrap_or("debug".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn echod");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                let _ = tx.send(line.clone());
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let expected = expected_sockets(args);
        let mut d = Daemon {
            child: Some(child),
            tcp: vec![],
            udp: vec![],
            unix: vec![],
            log,
        };
        let deadline = Instant::now() + WAIT;
        while d.tcp.len() + d.udp.len() + d.unix.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => panic!("echod did not start; log:\n{}", d.log()),
            };
            if let Some(rest) = line.split("listening on ").nth(1) {
                let mut parts = rest.split_whitespace();
                let addr = parts.next().unwrap_or_default();
                match parts.next().unwrap_or_default() {
                    "(tcp)" => d.tcp.push(addr.parse().expect("tcp addr")),
                    "(udp)" => d.udp.push(addr.parse().expect("udp addr")),
                    "(unix)" => d.unix.push(addr.trim_start_matches("unix:").into()),
                    other => panic!("unexpected listening line kind {other}"),
                }
            }
        }
        d
    }

    /// The first TCP address.
    pub fn addr(&self) -> SocketAddr {
        self.tcp[0]
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp[0]
    }

    pub fn unix_path(&self) -> PathBuf {
        self.unix[0].clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything echod wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; panics after [`WAIT`].
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "log never said {needle:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Waits for the daemon to exit (panics after `limit`), returning its status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                // Give the stderr reader a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "echod did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait for exit, and return the exit-time `stats:` line.
    pub fn stop_and_stats(&mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(WAIT);
        assert!(status.success(), "echod exited with {status}:\n{}", self.log());
        self.log()
            .lines()
            .find(|l| l.contains("stats: "))
            .unwrap_or_else(|| panic!("no stats line:\n{}", self.log()))
            .to_string()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// utime + stime in clock ticks, from /proc.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// A connected client with read/write timeouts set.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for path in &self.unix {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Extracts a `key=value` counter from a stats line.
pub fn stat(line: &str, key: &str) -> u64 {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .parse()
        .expect("numeric counter")
}

fn expected_sockets(args: &[&str]) -> usize {
    let listens = args.iter().filter(|a| **a == "--listen" || **a == "-l").count().max(1);
    let udps = args.iter().filter(|a| **a == "--udp" || **a == "-u").count();
    listens + udps
}

/// Connects with 10 s read/write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads exactly `n` bytes or panics on timeout/EOF.
pub fn read_exact(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Reads until EOF (with the stream's own timeout).
pub fn read_to_end(s: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read_to_end");
    buf
}

/// Writes all of `data`.
pub fn write_all(s: &mut impl Write, data: &[u8]) {
    s.write_all(data).expect("write_all");
}

/// A unique path for a unix socket in the temp dir.
pub fn temp_socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echod-test-{tag}-{}.sock", std::process::id()))
}

/// Whether an external tool is on PATH; tests that need one say loudly when
/// they skip, and fail instead when `CI` is set (CI installs them).
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required in CI (.ci/run installs it)");
        }
        eprintln!("SKIPPED: `{tool}` is not installed; install netcat-openbsd and telnet to run this test");
    }
    found
}

/// The seeds' frame: the payload length left-aligned in a 10-byte header
/// (`f"{len(msg):<10}"`), then the payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{:<10}", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Reads until the peer's FIN and returns everything before it. Panics,
/// naming the error kind, if the stream ends any other way (a reset, a
/// timeout): the tests that use it pin "a clean EOF, not a reset".
pub fn read_to_clean_eof(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "expected a clean EOF after {} bytes, got {:?}: {e}",
                out.len(),
                e.kind()
            ),
        }
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM` = peak RSS, ...).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let prefix = format!("{field}:");
    status
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
