//! Shared harness for integration tests: start the real `echod` binary on
//! free ports, find its addresses from the `listening on` lines, kill it on drop.

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
    /// The `--metrics` address, if one was asked for.
    pub metrics: Option<SocketAddr>,
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
        cmd.args(args).env(
            "RUST_LOG",
            std::env::var("ECHOD_TEST_LOG").unwrap_or("debug".into()),
        );
        adjust(&mut cmd);
        let expected = expected_sockets(args);
        Daemon::spawn(cmd, expected, |line| line.contains("listening on "))
            .unwrap_or_else(|log| panic!("echod did not start; log:\n{log}"))
    }

    /// Spawns `cmd` (echod, or a program that execs it) with its stderr
    /// collected, and waits until `ready` stderr lines satisfy `is_ready`.
    /// echod's `listening on` lines seen meanwhile fill `tcp`, `udp` and
    /// `unix`. `Err(log)` if the program ends first or [`WAIT`] passes.
    pub fn spawn(
        mut cmd: Command,
        ready: usize,
        is_ready: impl Fn(&str) -> bool,
    ) -> Result<Daemon, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
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
        let mut d = Daemon {
            child: Some(child),
            tcp: vec![],
            udp: vec![],
            unix: vec![],
            metrics: None,
            log,
        };
        let deadline = Instant::now() + WAIT;
        let mut seen = 0;
        while seen < ready {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                // The daemon is killed when `d` drops.
                Err(_) => return Err(d.log()),
            };
            seen += usize::from(is_ready(&line));
            if let Some(rest) = line.split("listening on ").nth(1) {
                let mut parts = rest.split_whitespace();
                let addr = parts.next().unwrap_or_default();
                match parts.next().unwrap_or_default() {
                    "(tcp)" => d.tcp.push(addr.parse().expect("tcp addr")),
                    "(udp)" => d.udp.push(addr.parse().expect("udp addr")),
                    "(unix)" => d.unix.push(addr.trim_start_matches("unix:").into()),
                    "(metrics)" => d.metrics = Some(addr.parse().expect("metrics addr")),
                    other => panic!("unexpected listening line kind {other}"),
                }
            }
        }
        Ok(d)
    }

    /// Starts echod listening on a fresh unix socket (plus `args`); returns
    /// it and the `unix:/path` address clients use.
    pub fn start_unix(tag: &str, args: &[&str]) -> (Daemon, String) {
        let path = temp_socket_path(tag);
        let _ = std::fs::remove_file(&path);
        let listen = format!("unix:{}", path.display());
        let mut all = vec!["--listen", listen.as_str()];
        all.extend_from_slice(args);
        let d = Daemon::start(&all);
        let target = format!("unix:{}", d.unix_path().display());
        (d, target)
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
            assert!(
                Instant::now() < deadline,
                "log never said {needle:?}:\n{log}"
            );
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
            assert!(
                Instant::now() < deadline,
                "echod did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait for exit, and return the exit-time `stats:` line.
    pub fn stop_and_stats(&mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(WAIT);
        assert!(
            status.success(),
            "echod exited with {status}:\n{}",
            self.log()
        );
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

    /// Descriptors the daemon has open, from /proc/PID/fd.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/PID/fd")
            .count()
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
    let listens = args
        .iter()
        .filter(|a| **a == "--listen" || **a == "-l")
        .count()
        .max(1);
    let udps = args
        .iter()
        .filter(|a| **a == "--udp" || **a == "-u")
        .count();
    let metrics = usize::from(args.contains(&"--metrics"));
    listens + udps + metrics
}

/// Held by the tests that move tens of megabytes, hold a thousand sockets or
/// saturate the CPU, so that no two of them run at once in this one binary
/// (as they could not when each module was its own binary): together they
/// put the kernel's socket memory under pressure, which shrinks the buffers
/// a test like half_close's 5 MB counts on, and starve a paced reader like
/// the one in signals. Other tests run beside them as before.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    // A heavy test that failed poisons nothing the next one needs.
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An address that refuses connections, for as long as this is held: a TCP
/// socket bound to a free port on 127.0.0.1 that never listens. Keeping it
/// bound keeps the port ours; a port found free and then released could be
/// taken by anything before the test connects to it.
pub struct Refusing {
    _bound: socket2::Socket,
    addr: String,
}

impl Refusing {
    pub fn new() -> Refusing {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        socket.bind(&any.into()).expect("bind");
        let addr = socket
            .local_addr()
            .expect("local_addr")
            .as_socket()
            .expect("an IP address")
            .to_string();
        Refusing {
            _bound: socket,
            addr,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// Connects with 10 s read/write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Closes `s` with an RST instead of a FIN (SO_LINGER 0).
pub fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(s);
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
    require_tool_from(tool, "netcat-openbsd and telnet")
}

/// As [`require_tool`], naming the package(s) to install in the skip line.
pub fn require_tool_from(tool: &str, packages: &str) -> bool {
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
        eprintln!("SKIPPED: `{tool}` is not installed; install {packages} to run this test");
    }
    found
}

// ---------------------------------------------------------------------------
// Helpers added for the behaviour tests (echo_integrity, backpressure, ...).
// ---------------------------------------------------------------------------

/// Raises this test process's soft descriptor limit to its hard limit (tests
/// holding a thousand sockets need more than a default of 1024): the same
/// helper the daemon and the load generator use.
pub fn raise_nofile_limit() {
    if let Err(e) = echod_common::sys::raise_fd_limit() {
        eprintln!("cannot raise this test's descriptor limit: {e}");
    }
}

/// Sets both the soft and the hard RLIMIT_NOFILE of the spawned daemon, so
/// its "raise soft to hard" at start-up cannot escape the limit.
pub fn limit_nofile(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only setrlimit(2), which is async-signal-safe, runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Daemon {
    /// The log lines containing every one of `needles`.
    pub fn log_lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// Whether the daemon is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// The exit-time `stats:` line, once the daemon has exited.
    pub fn stats_line(&self) -> Option<String> {
        self.log()
            .lines()
            .find(|l| l.contains("stats: "))
            .map(str::to_string)
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a bounded run of a binary printed, and how it ended.
pub struct Bounded {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs `cmd` to completion with piped stdio, panicking (after killing it)
/// if it runs past `limit`. `stdin`: `Some(bytes)` is written then closed
/// (a broken pipe is fine: the program may exit early); `None` keeps stdin
/// open, without data, until the program exits.
pub fn run_bounded(cmd: &mut Command, stdin: Option<Vec<u8>>, limit: Duration) -> Bounded {
    struct KillOnDrop(Option<std::process::Child>);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Some(mut c) = self.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut guard = KillOnDrop(Some(child));
    let child = guard.0.as_mut().expect("child");
    let pipe = child.stdin.take().expect("stdin");
    let held_stdin = match stdin {
        Some(bytes) => {
            let mut pipe = pipe;
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
            None
        }
        None => Some(pipe),
    };
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd:?} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(held_stdin);
    guard.0 = None;
    Bounded {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// Runs `echod` with `args` to completion (bounded by `limit`), with
/// `RUST_LOG` unset and `RUST_BACKTRACE=1` so any panic would show a backtrace.
pub fn run_echod(args: &[&str], limit: Duration) -> Bounded {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echod"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1");
    run_bounded(&mut cmd, Some(Vec::new()), limit)
}

/// How a client saw its connection end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Orderly EOF, after this many bytes of data.
    Eof(usize),
    /// Connection reset (or another read error) after this many bytes.
    Reset(usize),
    /// Still open when the wait ran out, after this many bytes.
    StillOpen(usize),
}

/// Reads (and discards) until EOF, an error, or `limit` passes.
pub fn wait_closed(s: &mut TcpStream, limit: Duration) -> Ended {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ended::StillOpen(total);
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Ended::Eof(total),
            Ok(n) => total += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Ended::StillOpen(total)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Ended::Reset(total),
        }
    }
}

/// One echo of `msg` on `s`: write it, read the same number of bytes back,
/// compare. Returns an error message instead of panicking (for client threads).
pub fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Result<(), String> {
    s.write_all(msg).map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
    if back != msg {
        return Err(format!(
            "echo differs: sent {} bytes, got other bytes",
            msg.len()
        ));
    }
    Ok(())
}

/// FNV-1a, 64 bit: a streaming hash that any split of the data gives alike.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// xorshift64*: a small deterministic generator, seeded per test.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The deterministic stream "byte i = i*31 mod 251". Its period is 251, so
/// a table of a few periods serves any offset without per-byte arithmetic.
pub struct Pattern {
    table: Vec<u8>,
}

/// Period of [`Pattern`].
pub const PATTERN_PERIOD: usize = 251;

impl Pattern {
    /// A table long enough for slices of up to `max_len` bytes at any offset.
    pub fn new(max_len: usize) -> Self {
        let len = max_len + PATTERN_PERIOD;
        Pattern {
            table: (0..len).map(|i| ((i * 31) % 251) as u8).collect(),
        }
    }

    /// The `len` pattern bytes starting at stream offset `offset`.
    pub fn at(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PATTERN_PERIOD as u64) as usize;
        &self.table[start..start + len]
    }

    /// Where `got` (received at stream offset `offset`) first differs from
    /// the pattern, if it does.
    pub fn mismatch(&self, offset: u64, got: &[u8]) -> Option<u64> {
        let mut done = 0;
        for chunk in got.chunks(self.table.len() - PATTERN_PERIOD) {
            let want = self.at(offset + done as u64, chunk.len());
            if chunk != want {
                let i = chunk
                    .iter()
                    .zip(want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Some(offset + (done + i) as u64);
            }
            done += chunk.len();
        }
        None
    }
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

/// The path of a workspace binary other than the daemon (`echod-client`,
/// `echod-bench`): cargo gives integration tests only their own package's
/// binaries, so the tools are found beside this test's own profile folder
/// (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`). `make test`
/// builds the whole workspace first.
pub fn tool(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` (make test does)",
        path.display()
    );
    path
}

/// Where tests draw the fixed ports of peers that cannot be handed a socket
/// (systemd-socket-activate, HAProxy, sockperf): below the kernel's range
/// for automatic ports (32768-60999), so no connect's source port lands
/// there. Callers draw again when the peer says the port is in use.
pub const FIXED_PORTS: std::ops::Range<u16> = 20000..30000;

/// A random port from [`FIXED_PORTS`], seeded per process, time and call.
pub fn draw_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed =
        nanos ^ (u64::from(std::process::id()) << 20) ^ CALLS.fetch_add(1, Ordering::Relaxed);
    let mut rng = Rng::new(seed);
    let span = (FIXED_PORTS.end - FIXED_PORTS.start) as usize;
    FIXED_PORTS.start + rng.range(0, span - 1) as u16
}
