"""What every stage of bench/run.py shares: the binaries, the servers under test (started
pinned to CPU 0, address read from their `listening on` line), echod-bench runs with the
server's CPU over the measured window, the steal-repeat rule, the head-to-head method and
the syscall count."""

import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"
LOAD_CPU = "1"

ECHOD = ROOT / "target" / "release" / "echod"
BENCH = ROOT / "target" / "release" / "echod-bench"
C_PEER = RESULTS / "c-epoll-echo"
C_UDP_PEER = RESULTS / "c-udp-echo"
TOKIO_PEER = ROOT / "bench" / "peers" / "tokio-echo" / "target" / "release" / "tokio-echo"

# Head to head: echod against C. The control: C against a second copy of itself.
HEAD_TO_HEAD = ("echod", "c-epoll")
CONTROL = ("c-epoll", "c-epoll-twin")


def servers(workers=1):
    """The TCP servers, by name: argv (each listens on a free port of 127.0.0.1)."""
    c_epoll = [str(C_PEER), "127.0.0.1", "0"]
    return {
        "echod": [str(ECHOD), "--listen", "127.0.0.1:0", "--max-connections", "20000",
                  "--workers", str(workers)],
        "c-epoll": c_epoll,
        "c-epoll-twin": c_epoll,
        "tokio": [str(TOKIO_PEER), "127.0.0.1:0"],
    }


def udp_servers():
    """The UDP servers, by name: argv. echod needs a TCP listener too; it idles."""
    c_udp = [str(C_UDP_PEER), "127.0.0.1", "0"]
    return {
        "echod": [str(ECHOD), "--listen", "127.0.0.1:0", "--udp", "127.0.0.1:0"],
        "c-udp": c_udp,
        "c-udp-twin": c_udp,
    }


def table_for(kind):
    return udp_servers() if kind == "udp" else servers()


def sh(cmd, **kw):
    print("+", " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def build():
    RESULTS.mkdir(parents=True, exist_ok=True)
    sh(["cargo", "build", "--release", "--workspace"], cwd=ROOT)
    sh(["cc", "-O2", "-o", str(C_PEER), str(ROOT / "bench" / "peers" / "c-epoll-echo.c")])
    sh(["cc", "-O2", "-o", str(C_UDP_PEER), str(ROOT / "bench" / "peers" / "c-udp-echo.c")])
    sh(["cargo", "build", "--release"], cwd=ROOT / "bench" / "peers" / "tokio-echo")


def raise_nofile():
    """Soft descriptor limit up to the hard one, for this process and every child (the
    scale stage's echod-bench holds 19,000 sockets). Returns the new soft limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Server:
    """A server process pinned to `cpus`; `addr` is the address of its `listening on ...
    (kind)` line. Its stderr is drained by a thread from then on, so a chatty server never
    blocks on a full pipe."""

    def __init__(self, argv, cpus=SERVER_CPU, kind="tcp"):
        env = dict(os.environ, RUST_LOG="warn,echod::server=info")
        self.proc = subprocess.Popen(["taskset", "-c", cpus] + argv, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, env=env)
        deadline = time.time() + 10
        self.addr = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            m = re.search(rf"listening on (\S+) \({kind}\)", line)
            if m:
                self.addr = m.group(1)
                break
        if not self.addr:
            self.stop()
            raise RuntimeError(f"{argv[0]} did not start")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        with contextlib.suppress(ValueError, OSError):
            for _ in self.proc.stderr:
                pass

    def cpu_ticks(self):
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def bench_argv(addr, conns, length, depth, duration, extra=()):
    return ["taskset", "-c", LOAD_CPU, str(BENCH), addr, "-c", str(conns), "-l", str(length),
            "-d", str(duration), "--pipeline", str(depth), "--json", *extra]


# A run during which the hypervisor took more than this share of CPUs 0 and 1
# (steal time, /proc/stat) measured the host, not the servers: it is repeated,
# up to MAX_ATTEMPTS times in all (the last attempt is kept whatever happened).
MAX_STEAL = 0.03
MAX_ATTEMPTS = 3


def steal_s():
    """Seconds the hypervisor has stolen from the two benchmark CPUs since boot."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith((f"cpu{SERVER_CPU} ", f"cpu{LOAD_CPU} ")):
            total += int(line.split()[8])
    return total / CLK_TCK


def unstolen(run_once, usable=None):
    """Calls `run_once()` until the hypervisor stole at most MAX_STEAL of CPUs 0-1 during
    it and `usable(result)` (when given) holds, or MAX_ATTEMPTS were made; returns its
    (last) result, the steal share and the repeats. A server that really fails fails every
    attempt, so the last attempt still shows it; a run that a stall of the shared host
    starved (e.g. every UDP datagram in flight lost, nothing measured) is repeated."""
    for attempt in range(MAX_ATTEMPTS):
        s0, t0 = steal_s(), time.monotonic()
        result = run_once()
        share = (steal_s() - s0) / (2 * (time.monotonic() - t0))
        if share > MAX_STEAL:
            why = f"hypervisor stole {share:.0%} of CPUs 0-1"
        elif usable is not None and not usable(result):
            why = "a run failed"
        else:
            break
        print(f"  ({why}: repeating)", file=sys.stderr, flush=True)
    return result, share, attempt


def measured_argv(server, conns, length, depth, duration, warmup, extra=()):
    """echod-bench against a running server; it reads the server's CPU itself
    (`--server-pid`) over exactly the measured window, after the warm-up."""
    extra = ["--warmup", str(warmup), "--server-pid", str(server.proc.pid), *extra]
    return bench_argv(server.addr, conns, length, depth, duration, extra)


def _per(num, den, scale=1.0):
    return num * scale / den if num is not None and den else float("nan")


def figures(stdout, returncode):
    """What a run's JSON report says, in the fields the tables use. A run whose echod-bench
    printed nothing usable is a failed run (ok false, every figure NaN)."""
    try:
        report = json.loads(stdout)
    except ValueError:
        nan = float("nan")
        return {"msgs_per_sec": nan, "p50_us": nan, "p99_us": nan, "max_us": nan,
                "cpu_us_per_msg": nan, "ok": False, "messages": 0, "bytes": 0, "lost": 0,
                "late": 0, "errors": -1, "connections": 0, "connections_opened": 0,
                "connections_completed": 0, "conns_per_sec": nan, "server_cpu_s": None,
                "cpu_us_per_conn": nan, "bytes_per_cpu_s": nan}
    cpu_s = report.get("server_cpu_s")
    errors = report.get("errors", {})
    return {
        "msgs_per_sec": report["msgs_per_sec"],
        "p50_us": report["latency_us"]["p50"], "p99_us": report["latency_us"]["p99"],
        "max_us": report["latency_us"]["max"],
        "cpu_us_per_msg": report["server_cpu_us_per_msg"] or float("nan"),
        "ok": report["ok"] and returncode == 0,
        "messages": report["messages"], "bytes": report["bytes"],
        "lost": report.get("lost", 0), "late": report.get("late", 0),
        "errors": sum(v for v in errors.values() if isinstance(v, int))
        if isinstance(errors, dict) else 0,
        "connections": report.get("connections", 0),
        "connections_opened": report.get("connections_opened", 0),
        "connections_completed": report.get("connections_completed", 0),
        "conns_per_sec": report.get("conns_per_sec", 0.0),
        "server_cpu_s": cpu_s,
        # Churn: the server's CPU per connection served (accept, one echo, close).
        "cpu_us_per_conn": _per(cpu_s, report.get("connections_completed", 0), 1e6),
        # Bulk: payload bytes echoed per second of server CPU.
        "bytes_per_cpu_s": _per(report["bytes"], cpu_s),
    }


def measure(server, name, conns, length, depth, duration, warmup, extra=()):
    """One echod-bench run against a running server, repeated while the host steals."""
    argv = measured_argv(server, conns, length, depth, duration, warmup, extra)
    (out, steal, repeats) = unstolen(lambda: subprocess.run(
        argv, capture_output=True, text=True, timeout=warmup + duration + 120))
    return {"steal": steal, "repeats": repeats, "server": name, "conns": conns,
            "length": length, "depth": depth, **figures(out.stdout, out.returncode)}


@contextlib.contextmanager
def running(names, kind="tcp"):
    """The named servers (of `kind`'s table), started fresh and stopped on the way out."""
    started = {}
    table = table_for(kind)
    try:
        for name in names:
            started[name] = Server(table[name], kind=kind)
        yield started
    finally:
        for server in started.values():
            server.stop()


def run_cell(name, argv, conns, length, depth, duration, warmup, cpus=SERVER_CPU):
    """A fresh server for one measured run."""
    server = Server(argv, cpus)
    try:
        return measure(server, name, conns, length, depth, duration, warmup)
    finally:
        server.stop()


def rotated(names, r):
    """The servers in round r's order: the list turned by r, so each runs in every position."""
    names = list(names)
    return names[r % len(names):] + names[:r % len(names)]


def duel(names, cell, rep, duration, warmup, kind="tcp", extra=()):
    """One head-to-head rep: both servers at the same time, each pinned to CPU 0 with its own
    echod-bench on CPU 1, started together, so whatever the host does to the machine in that
    window (steal, noisy neighbours) it does to both. Fresh server processes every rep: a
    process's own luck (where its buffers and structures land in the caches) holds for its
    lifetime, so reps of one pair of processes would repeat it instead of averaging it out.
    Which one starts first alternates with the rep. Returns the row: cell, rep, steal, and
    each server's figures under its name."""
    order = tuple(names) if rep % 2 == 0 else tuple(reversed(names))
    with running(order, kind) as started:
        def together():
            procs = {n: subprocess.Popen(
                         measured_argv(started[n], *cell, duration, warmup, extra),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                     for n in order}
            outs = {n: p.communicate(timeout=warmup + duration + 120)[0]
                    for n, p in procs.items()}
            return {n: figures(outs[n], procs[n].returncode) for n in order}

        both, steal, repeats = unstolen(together,
                                        lambda both: all(f["ok"] for f in both.values()))
    return {"conns": cell[0], "length": cell[1], "depth": cell[2], "rep": rep,
            "pair": list(names), "steal": steal, "repeats": repeats, **both}


def head_to_head(cells, reps, duration, warmup, names=HEAD_TO_HEAD):
    """`reps` head-to-head reps (`duel`) of the TCP pair `names` per cell, one cell after the
    other. Per rep, the first server's figure / the second's."""
    rows = []
    for cell in cells:
        for rep in range(reps):
            row = duel(names, cell, rep, duration, warmup)
            rows.append(row)
            mine, peer = row[names[0]], row[names[1]]
            print(f"{names[0]}/{names[1]} {cell} rep {rep}: cpu {mine['cpu_us_per_msg']:.3f} vs "
                  f"{peer['cpu_us_per_msg']:.3f}, p99 {mine['p99_us']:.0f} vs "
                  f"{peer['p99_us']:.0f}", file=sys.stderr, flush=True)
    return rows


def count_syscalls(name, argv, duration, conns=50, length=64, depth=1, extra=(), kind="tcp",
                   per="messages", tag=None):
    """Syscalls of server `name` per message (or per `per`, a field of echod-bench's JSON
    such as connections_opened) over one whole echod-bench run, connection setup included
    (perf tracepoints, `perf stat -e 'syscalls:sys_enter_*' -p PID`)."""
    server = Server(argv, kind=kind)
    out_file = RESULTS / f"syscalls-{tag or name}.txt"
    perf = None
    try:
        perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out_file), "-p",
                                 str(server.proc.pid), "-e", "syscalls:sys_enter_*"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # let perf attach to every tracepoint
        out = subprocess.run(bench_argv(server.addr, conns, length, depth, duration, extra),
                             capture_output=True, text=True, timeout=duration + 60)
        time.sleep(0.2)
        perf.send_signal(signal.SIGINT)
        # Detaching from ~350 tracepoints can take tens of seconds while the host steals CPU.
        perf.wait(timeout=300)
    finally:
        if perf is not None and perf.poll() is None:
            perf.kill()
        server.stop()
    report = json.loads(out.stdout)
    units = max(report[per], 1)
    counts = {}
    for line in out_file.read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
            try:
                n = int(parts[0])
            except ValueError:
                continue
            if n:
                counts[parts[2].removeprefix("syscalls:sys_enter_")] = n
    return {"server": name, "messages": report["messages"], "units": units, "per": per,
            "counts": counts, "seconds": duration, "conns": conns, "length": length,
            "depth": depth, "per_msg": sum(counts.values()) / max(report["messages"], 1),
            "per_unit": sum(counts.values()) / units, "ok": report["ok"],
            "lost": report.get("lost", 0)}


def med(values):
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else float("nan")


def spread(values):
    m = med(values)
    if not values or not m:
        return "n/a"
    return f"±{(max(values) - min(values)) / 2 / m * 100:.0f}%"
