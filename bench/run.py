#!/usr/bin/env python3
"""The benchmark: echod against a lean C epoll echo server and a tokio echo
server, all under the same echod-bench load, side by side.

    bench/run.py full   # every stage, writes docs/BENCHMARKS.md (+ PNG), ~40 min here
    bench/run.py quick  # the two key cells, prints a table (under two minutes on a quiet host)
    bench/run.py full --stages udp,churn   # those stages; the report takes the others
                                           # from what earlier runs saved (bench/results/)

Each cell starts the three servers pinned to CPU 0 (`taskset -c 0`); each
run is one echod-bench pinned to CPU 1, on loopback only. The servers of a
round run back to back, in an order that rotates between rounds, so slow
drifts of a shared machine hit all of them alike; a run during which the
hypervisor stole more than 3% of the two CPUs is repeated. Server CPU per
message is the server's CPU time over the measured window (echod-bench
--server-pid), divided by the verified messages. Then the head-to-head runs:
echod and the C server under load at the same time. The control (full mode):
a second copy of the C server, as a fourth server in the matrix and against
the first head to head, measures how far apart each method puts two
identical servers on this machine: the resolution of the comparison, and the
band every judged cell is held to (bench/cells.py states the rule).
The timers stage (full mode) counts instructions per message under callgrind
at a low fixed rate, with and without connections draining. The judged
stages (full mode, bench/cells.py): UDP, connection churn, bulk transfer,
each head to head against C with its own C/twin control, and a scale run of
19,000 connections; with the TCP head to head and idle memory, every cell
gets a PASS or a FAIL.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cells as judge  # noqa: E402
from common import (BENCH, CONTROL, HEAD_TO_HEAD, LOAD_CPU, MAX_ATTEMPTS,  # noqa: E402
                    MAX_STEAL, RESULTS, ROOT, SERVER_CPU, Server, build, count_syscalls,
                    head_to_head, measure, med, rotated, run_cell, running, servers, spread)


# The servers of the matrix: the three compared, then the C server's twin for the control.
MATRIX_SERVERS = ("echod", "c-epoll", "tokio", "c-epoll-twin")


def matrix(mode):
    if mode == "quick":
        return [(50, 64, 1), (50, 64, 16)]
    cells = [(c, l, 1) for c in (1, 50, 500, 2000) for l in (64, 512, 4096)]
    return cells + [(50, l, 16) for l in (64, 512, 4096)]


def run_matrix(cells_, rounds, duration, warmup, names):
    """Per cell: fresh servers, all of them running (idle ones cost nothing), then `rounds`
    rounds of one run each, back to back, in an order that rotates between rounds."""
    results = []
    names = list(names)
    for cell in cells_:
        with running(names) as started:
            for r in range(rounds):
                for name in rotated(names, r):
                    res = measure(started[name], name, *cell, duration, warmup)
                    res["round"] = r
                    results.append(res)
                    print(f"round {r} {name:8} c={cell[0]:<5} l={cell[1]:<5} k={cell[2]:<3} "
                          f"{res['msgs_per_sec']:>12,.0f} msg/s  p99 {res['p99_us']:>9.1f} us  "
                          f"cpu {res['cpu_us_per_msg']:.3f} us/msg  ok={res['ok']}",
                          file=sys.stderr, flush=True)
    return results


# The syscall count: rounds per server, seconds per run, and the servers (with the twin, whose
# spread against the C server shows how much of the epoll_wait share is timing, not code).
SYSCALL_ROUNDS = 5
SYSCALL_SECONDS = 3
SYSCALL_SERVERS = ("echod", "c-epoll", "c-epoll-twin")


def syscall_rounds():
    """Each server counted SYSCALL_ROUNDS times, in an order that rotates between rounds."""
    names = list(SYSCALL_SERVERS)
    runs = []
    for r in range(SYSCALL_ROUNDS):
        for name in rotated(names, r):
            run = count_syscalls(name, servers()[name], SYSCALL_SECONDS)
            run["round"] = r
            runs.append(run)
            print(f"syscalls round {r} {name}: {run['per_msg']:.3f}/msg", file=sys.stderr,
                  flush=True)
    return runs


# The timers stage: 2,000 echo connections at a fixed 2,000 msg/s in all, so about one message
# per loop turn, with the server under callgrind (instruction counts do not depend on the host's
# noise). echod runs with --idle-timeout 5 (each load connection sends about once a second, so
# only the idle clients time out), once alone and once while a client opens an idle connection
# every 100 ms, so that some connection is always draining; the C server (which has no idle
# timeout) under the same load and idle clients. Draining must cost per tick, never per
# message: with a pass over every connection per turn (4162dc4), echod measured 20,298 here.
TIMER_CONNS, TIMER_RATE, TIMER_MESSAGES, TIMER_IDLE_TIMEOUT = 2000, 2000, 10000, 5
TIMER_RUNS = (("echod", False), ("echod", True), ("c-epoll", True))
IDLE_OPENER = """
import socket, sys, time
held = []
while True:
    held.append(socket.create_connection((sys.argv[1], int(sys.argv[2]))))
    time.sleep(0.1)
"""


def timer_stage():
    """Instructions per message for each of TIMER_RUNS; [] (said loudly) without valgrind."""
    if shutil.which("valgrind") is None:
        print("WARNING: valgrind missing: the timers stage is SKIPPED", file=sys.stderr,
              flush=True)
        return []
    baselines = {name: timer_baseline(name) for name in dict.fromkeys(n for n, _ in TIMER_RUNS)}
    runs = [timer_run(name, idle_clients) for name, idle_clients in TIMER_RUNS]
    for run in runs:
        run["baseline"] = baselines[run["server"]]
        run["per_msg"] = (run["instructions"] - run["baseline"]) / run["messages"]
        print(f"timers {run['server']} idle_clients={run['idle_clients']}: "
              f"{run['per_msg']:,.0f} instr/msg", file=sys.stderr, flush=True)
    return runs


@contextlib.contextmanager
def under_callgrind(name, tag, counted):
    """Server `name` under callgrind (echod with the stage's idle timeout); stopped on the way
    out, when its whole instruction count is stored in `counted["instructions"]`."""
    profile = RESULTS / f"callgrind-{name}-{tag}.out"
    argv = servers()[name] + (["--idle-timeout", str(TIMER_IDLE_TIMEOUT)] if name == "echod"
                              else [])
    server = Server(["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}"] + argv)
    try:
        yield server
    finally:
        server.stop()
    counted["instructions"] = int(re.search(r"^summary: (\d+)", profile.read_text(),
                                            re.M).group(1))


def timer_baseline(name):
    """Instructions of a start and a stop without load, subtracted from the loaded runs."""
    counted = {}
    with under_callgrind(name, "baseline", counted):
        time.sleep(1)
    return counted["instructions"]


def timer_run(name, idle_clients):
    """The stage's load against `name`, with or without the idle-connection opener."""
    counted, opener = {}, None
    with under_callgrind(name, "idle" if idle_clients else "alone", counted) as server:
        try:
            if idle_clients:
                host, port = server.addr.rsplit(":", 1)
                opener = subprocess.Popen(["taskset", "-c", LOAD_CPU, sys.executable, "-c",
                                           IDLE_OPENER, host, port])
                time.sleep(TIMER_IDLE_TIMEOUT + 1)  # the first idle connections drain
            out = subprocess.run(["taskset", "-c", LOAD_CPU, str(BENCH), server.addr,
                                  "-c", str(TIMER_CONNS), "-n", str(TIMER_MESSAGES),
                                  "--rate", str(TIMER_RATE), "--json"],
                                 capture_output=True, text=True, timeout=300)
        finally:
            if opener is not None:
                opener.kill()
                opener.wait()
    if out.returncode != 0:
        raise RuntimeError(f"timers stage: echod-bench failed against {name} "
                           f"(exit {out.returncode}): {out.stderr}{out.stdout[-500:]}")
    return {"server": name, "idle_clients": idle_clients,
            "messages": json.loads(out.stdout)["messages"],
            "instructions": counted["instructions"]}


def idle_memory(name, argv, conns=10000, hold=6):
    """RSS growth per idle connection; repeated (up to MAX_ATTEMPTS) when the server was not
    seen holding all `conns` (e.g. the host stalled the connects past the hold)."""
    for _ in range(MAX_ATTEMPTS):
        row = idle_memory_once(name, argv, conns, hold)
        if row["held_fds"] - row["fds_before"] >= 0.95 * conns:
            break
        print(f"  ({name} held {row['held_fds']} of {conns}: repeating)", file=sys.stderr,
              flush=True)
    return row


def idle_memory_once(name, argv, conns, hold):
    server = Server(argv)
    try:
        time.sleep(0.3)
        before, fds_before = server.rss_kib(), server.fds()
        bench = subprocess.Popen(["taskset", "-c", LOAD_CPU, str(BENCH), server.addr, "-c",
                                  str(conns), "-l", "64", "-d", str(hold), "--idle", "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        # Until the server holds them all, or its count stops growing near the target (a
        # server may leave a few in its accept queue: tokio does), while the bench holds on.
        deadline = time.time() + hold + 30
        last, steady_since = -1, time.time()
        while time.time() < deadline and bench.poll() is None:
            fds = server.fds()
            if fds != last:
                last, steady_since = fds, time.time()
            if fds >= conns or (fds >= 0.95 * conns and time.time() - steady_since > 1.0):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        held = server.fds()
        after = server.rss_kib()
        bench.communicate(timeout=hold + 60)
    finally:
        server.stop()
    return {"server": name, "conns": conns, "held_fds": held, "fds_before": fds_before,
            "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_conn": (after - before) / max(held - fds_before, 1)}


def workers_figure(rounds, duration, warmup):
    rows = []
    for r in range(rounds):
        for cell in [(50, 64, 16), (500, 64, 1)]:
            for workers, cpus in [(1, SERVER_CPU), (2, "0,1")]:
                res = run_cell(f"echod x{workers}", servers(workers)["echod"], *cell, duration,
                               warmup, cpus)
                res["round"] = r
                res["workers"] = workers
                rows.append(res)
                print(f"workers={workers} {cell} {res['msgs_per_sec']:,.0f} msg/s "
                      f"cpu {res['cpu_us_per_msg']:.3f}", file=sys.stderr, flush=True)
    return rows


def summarize(results):
    table = {}
    for r in results:
        key = (r["conns"], r["length"], r["depth"])
        table.setdefault(key, {}).setdefault(r["server"], []).append(r)
    return table


def paired(cell, peer, field, own="echod"):
    """own / peer for each round both ran: the servers of one round ran back to back,
    so the ratio cancels the machine's slow drift, which moves all servers alike."""
    mine = {r["round"]: r[field] for r in cell.get(own, [])}
    theirs = {r["round"]: r[field] for r in cell.get(peer, [])}
    return [mine[k] / theirs[k] for k in sorted(mine) if k in theirs and theirs[k]]


def machine():
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return (f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, "
            f"{rustc}, {cc}")


def plot(table, path):
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=False)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib unavailable: no plot", file=sys.stderr)
        return False
    lengths = (64, 512, 4096)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), sharex=True)
    for col, length in enumerate(lengths):
        for name, style in (("echod", "o-"), ("c-epoll", "s--"), ("tokio", "^:")):
            xs, rate, cpu = [], [], []
            for conns in (1, 50, 500, 2000):
                runs = table.get((conns, length, 1), {}).get(name, [])
                if runs:
                    xs.append(conns)
                    rate.append(med([r["msgs_per_sec"] for r in runs]) / 1000)
                    cpu.append(med([r["cpu_us_per_msg"] for r in runs]))
            axes[0][col].plot(xs, rate, style, label=name)
            axes[1][col].plot(xs, cpu, style, label=name)
        axes[0][col].set_title(f"{length} B messages, depth 1")
        axes[0][col].set_xscale("log")
        axes[1][col].set_xlabel("connections")
        axes[0][col].set_ylim(bottom=0)
        axes[1][col].set_ylim(bottom=0)
    axes[0][0].set_ylabel("thousand messages / s")
    axes[1][0].set_ylabel("server CPU µs / message")
    axes[0][0].legend()
    fig.suptitle("echod vs C epoll vs tokio (server on CPU 0, echod-bench on CPU 1; medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def tcp_band(control):
    """h and the per-cell median CPU ratios of the TCP control (C / twin, head to head), by
    the rule in bench/cells.py: the band is [1/h, h], h the largest distance of a cell's
    median from 1, either way."""
    rows = [dict(r, pair=list(CONTROL)) for r in control]
    return judge.band(rows, CONTROL, "cpu_us_per_msg")


def pair_table(w, rows, pair, bar=None, verdicts=None):
    """Writes the table of one head-to-head stage (first server / second, per rep). Returns
    the per-cell median CPU ratios, the cells whose median CPU ratio is at most 1.00, and
    the cells at 500 and 2,000 connections (depth 1): those at most 1.00 in p99, and all.
    With `bar` (the control band's upper edge h), a cell passes when its median CPU ratio is
    at most `bar` and every run was ok; each cell's verdict goes to `verdicts` too."""
    a, b = pair
    judged = bar is not None
    w(f"| conns | bytes | depth | CPU µs/msg {a} | CPU µs/msg {b} | CPU ratio | "
      f"p99 µs {a} | p99 µs {b} | p99 ratio |" + (" pass if | verdict |" if judged else ""))
    w("|---:|---:|---:|---:|---:|---|---:|---:|---|" + ("---|---|" if judged else ""))
    medians = {}
    cpu_below = p99_below = p99_cells = 0
    cells = sorted({(r["conns"], r["length"], r["depth"]) for r in rows},
                   key=lambda c: (c[2], c[0], c[1]))
    finite = lambda xs: [x for x in xs if x == x and x not in (float("inf"), float("-inf"))]
    for cell in cells:
        reps = [r for r in rows if (r["conns"], r["length"], r["depth"]) == cell]
        ok = all(r[a]["ok"] and r[b]["ok"] for r in reps)
        cr = finite([r[a]["cpu_us_per_msg"] / r[b]["cpu_us_per_msg"] for r in reps
                     if r[b]["cpu_us_per_msg"]]) or [float("nan")]
        pr = finite([r[a]["p99_us"] / r[b]["p99_us"] for r in reps if r[b]["p99_us"]]) \
            or [float("nan")]
        medians[cell] = med(cr)
        cpu_below += med(cr) <= 1.0
        if cell[2] == 1 and cell[0] in (500, 2000):
            p99_cells += 1
            p99_below += med(pr) <= 1.0
        col = lambda n, f: med([r[n][f] for r in reps])
        verdict, ratio_text = "", f"{med(cr):.3f}"
        if judged:
            passed = ok and med(cr) <= bar
            ratio_text, bar_text = judge.shown(med(cr), bar)
            verdict = f" ≤ {bar_text} | {judge.verdict(passed)} |"
            if verdicts is not None:
                verdicts.append(("TCP", f"{cell[0]} conns, {cell[1]} B, depth {cell[2]}",
                                 "CPU/message", med(cr), ("≤", bar, "(band)"), passed))
        w(f"| {cell[0]} | {cell[1]} | {cell[2]}{'' if ok else ' (errors!)'} | "
          f"{col(a, 'cpu_us_per_msg'):.3f} | {col(b, 'cpu_us_per_msg'):.3f} | "
          f"{ratio_text} ({min(cr):.2f}-{max(cr):.2f}) | {col(a, 'p99_us'):.0f} | "
          f"{col(b, 'p99_us'):.0f} | {med(pr):.2f} ({min(pr):.2f}-{max(pr):.2f}) |" + verdict)
    if "repeats" in rows[0]:
        w(f"\nReps repeated because the hypervisor stole more than {MAX_STEAL:.0%} of CPUs "
          f"0-1: {sum(r['repeats'] for r in rows)}; kept despite it after {MAX_ATTEMPTS} "
          f"attempts: {sum(r['steal'] > MAX_STEAL for r in rows)}.")
    return medians, cpu_below, p99_below, p99_cells


def write_report(args, table, syscalls, memory, workers, command, h2h=(),
                 control=(), timers=(), judged=None, stage_seconds=None):
    """The report. `judged`: the saved data of the judged stages (udp, churn, bulk, scale),
    by name; `stage_seconds`: how long each stage took, by name."""
    judged = judged or {}
    verdicts = []
    out = []
    w = out.append
    w("# Benchmarks: echod beside a C epoll server and tokio\n")
    w("Generated by `make bench` (`bench/run.py full`). Each table is one stage of a run, "
      "with every server it compares under the same load in that stage; a stage re-run "
      "alone (`--resume`) is named under \"Reading the tables\".\n")
    w(f"- Machine: {machine()}.")
    w(f"- Command: `{command}` ({args.rounds} round{'s' if args.rounds != 1 else ''} of "
      f"{args.warmup} s warm-up + {args.duration} s measured per server and cell in the TCP "
      "matrix, as many head-to-head reps; the servers of a round run back to back, in an "
      "order that rotates between rounds).")
    w("- Server pinned to CPU 0, echod-bench to CPU 1 (`taskset`), loopback only. Each cell "
      "starts fresh servers, kept running through its rounds; every run opens its own "
      "connections. CPU per message = the server's CPU time (user + system, "
      "`echod-bench --server-pid`, read to the nanosecond from the process CPU clock that "
      "/proc/PID/stat's utime+stime round to ticks) over the measured window only, after the "
      "warm-up, / verified messages.")
    w("- Peers: `bench/peers/c-epoll-echo.c` (edge-triggered epoll, one buffer, write at once, "
      "queue only the remainder; `cc -O2`) and `bench/peers/tokio-echo` (current-thread "
      "runtime, a task per connection, `read`/`write_all`).")
    w("- Medians over the rounds; `±` is half the min-max range over the rounds, relative to "
      "the median. Latencies from echod-bench's HDR histogram, in µs. The paired columns "
      "give, for each round, echod's figure divided by the peer's from the same round (they "
      "ran back to back), as median (min-max) over the rounds: the machine drifts by up to 2x "
      "between rounds, and pairing cancels what moves all servers alike.")
    if judged_reps(judged):
        w(f"- Judged stages (UDP, churn, bulk): {judged_reps(judged)} head-to-head rep(s) per "
          "pair and cell (`--reps`), each of fresh processes, the pairs interleaved in a "
          "rotating order; a rep in which a run failed is repeated like a stolen one (up to "
          f"{MAX_ATTEMPTS} attempts, the last kept).")
    w("")
    verdicts_at = len(out)
    if table:
        matrix_section(w, table)
    if h2h or control:
        h2h_sections(w, h2h, control, verdicts)
    later_sections(w, syscalls, memory, workers, timers, verdicts)
    for name, section in (("udp", judge.report_udp), ("churn", judge.report_churn),
                          ("bulk", judge.report_bulk), ("scale", judge.report_scale)):
        if judged.get(name):
            section(w, judged[name], verdicts)
    if stage_seconds:
        w("\n## Time per stage\n")
        w("Wall-clock minutes each stage took in the run that produced it (steal repeats "
          "included).\n")
        w("| stage | minutes |")
        w("|---|---:|")
        for name, secs in stage_seconds.items():
            w(f"| {name} | {secs / 60:.1f} |")
        w(f"| total | {sum(stage_seconds.values()) / 60:.1f} |")
    tail = out[verdicts_at:]
    del out[verdicts_at:]
    judge.report_verdicts(w, verdicts)
    out.extend(tail)
    return "\n".join(out) + "\n"


def judged_reps(judged):
    rows = [r for name in ("udp", "churn", "bulk") for r in (judged.get(name) or {}).get(
        "rows", [])]
    return 1 + max(r["rep"] for r in rows) if rows else 0


def matrix_section(w, table):
    """The matrix's tables: every server run back to back, paired by round."""
    header = ("| conns | bytes | server | msgs/s | p50 µs | p99 µs | max µs | CPU µs/msg | ± | "
              "CPU echod/peer, paired | p99 echod/peer, paired |")
    rule = "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|"
    keys = sorted(table)
    below = {"c-epoll": 0, "tokio": 0}
    for depth, title in ((1, "Depth 1 (one message in flight per connection)"),
                         (16, "Depth 16 (sixteen messages in flight per connection)")):
        w(f"## {title}\n")
        w(header)
        w(rule)
        for key in [k for k in keys if k[2] == depth]:
            cell = table[key]
            for name in ("echod", "c-epoll", "tokio"):
                runs = cell.get(name, [])
                if not runs:
                    continue
                cpu = [r["cpu_us_per_msg"] for r in runs]
                rate = [r["msgs_per_sec"] for r in runs]
                ratio = p99_ratio = ""
                if name != "echod":
                    cr = paired(cell, name, "cpu_us_per_msg")
                    pr = paired(cell, name, "p99_us")
                    ratio = f"{med(cr):.2f} ({min(cr):.2f}-{max(cr):.2f})" if cr else ""
                    p99_ratio = f"{med(pr):.2f} ({min(pr):.2f}-{max(pr):.2f})" if pr else ""
                    if cr and med(cr) <= 1.0:
                        below[name] += 1
                bad = "" if all(r["ok"] for r in runs) else " (errors!)"
                w(f"| {key[0]} | {key[1]} | {name}{bad} | {med(rate):,.0f} | "
                  f"{med([r['p50_us'] for r in runs]):.0f} | {med([r['p99_us'] for r in runs]):.0f} | "
                  f"{med([r['max_us'] for r in runs]):.0f} | {med(cpu):.3f} | {spread(cpu)} | "
                  f"{ratio} | {p99_ratio} |")
        w("")
    runs = [r for cell in table.values() for rs in cell.values() for r in rs]
    if runs and "repeats" in runs[0]:
        stolen = [r for r in runs if r["steal"] > MAX_STEAL]
        w(f"Runs repeated because the hypervisor stole more than {MAX_STEAL:.0%} of CPUs 0-1 "
          f"while they ran: {sum(r['repeats'] for r in runs)} (for {len(runs)} runs kept); "
          f"kept despite it after {MAX_ATTEMPTS} attempts: {len(stolen)}.\n")
    w(f"Cells where echod's paired CPU ratio is at most 1.00: {below['c-epoll']} of {len(keys)} "
      f"against the C peer, {below['tokio']} of {len(keys)} against tokio.\n")
    keys = sorted(keys, key=lambda k: (k[2], k[0], k[1]))
    twin = [paired(table[k], "c-epoll-twin", "cpu_us_per_msg", "c-epoll") for k in keys]
    twin_p99 = [paired(table[k], "c-epoll-twin", "p99_us", "c-epoll") for k in keys]
    if all(twin):
        w("### Control: the C server against a copy of itself, run the same way\n")
        w("Each cell's rounds also ran a second copy of the C server (`c-epoll-twin`, the same "
          "binary) in the rotation. The servers are identical, so these paired ratios are what "
          "this method puts between two equal servers on this machine.\n")
        w("| conns | bytes | depth | CPU C/twin, paired | p99 C/twin, paired |")
        w("|---:|---:|---:|---|---|")
        for key, cr, pr in zip(keys, twin, twin_p99):
            w(f"| {key[0]} | {key[1]} | {key[2]} | {med(cr):.2f} ({min(cr):.2f}-{max(cr):.2f}) | "
              f"{med(pr):.2f} ({min(pr):.2f}-{max(pr):.2f}) |")
        medians = [med(cr) for cr in twin]
        w(f"\nIdentical servers: the paired CPU median is at most 1.00 in "
          f"{sum(m <= 1.0 for m in medians)} of {len(keys)} cells and spans "
          f"{min(medians):.2f}-{max(medians):.2f}.\n")


def h2h_sections(w, h2h, control, verdicts):
    """The TCP head to head (echod / C, judged against the control's band) and the control
    (C / twin) itself."""
    h, band_medians = tcp_band(control) if control else (None, {})
    if h != h:  # NaN: no usable control
        h = None
    if h2h:
        w("\n## Head to head: echod and the C server at the same time\n")
        w("The tables above run the servers one after another, as the issue asks; on this "
          "shared virtual machine a server's own figure moves by tens of percent between runs "
          "seconds apart, more than any difference between the servers. Here both run at once "
          "for every rep: each pinned to CPU 0 with its own echod-bench on CPU 1, so whatever "
          "the host does in that window hits both. Every rep starts a fresh pair of server "
          "processes, in alternating order, so that what one process's memory layout does "
          "to its caches is averaged over the reps too. The two share the core, so the absolute "
          "figures are not those above; the ratio is the point. Ratios are echod / C per rep, "
          f"median (min-max) over {max(r['rep'] for r in h2h) + 1} reps."
          + (" Pass: echod/C at most h, the upper edge of the control's band (below: "
             "inside the band of two identical C servers, or below it), and every run ok."
             if h else "") + "\n")
        h2h_medians, cpu_below, p99_below, p99_cells = pair_table(w, h2h, HEAD_TO_HEAD, h,
                                                                  verdicts)
        w(f"\nHead to head, echod's median CPU per message is at most C's in {cpu_below} of "
          f"{len(h2h_medians)} cells, and its median p99 at most C's in {p99_below} of the "
          f"{p99_cells} cells at 500 and 2,000 connections.\n")
    if control:
        w("\n## Control: the C server against a copy of itself\n")
        w("The same head-to-head runs with two copies of the C server, one in each role: the "
          "servers are identical, so every ratio below is what the method itself puts between "
          "two equal servers on this machine. It is the yardstick for the table above.\n")
        medians, cpu_below, p99_below, p99_cells = pair_table(w, control, CONTROL)
        lo, hi = min(medians.values()), max(medians.values())
        w(f"\nIdentical servers: the median CPU ratio is at most 1.00 in {cpu_below} of "
          f"{len(medians)} cells and spans {lo:.3f}-{hi:.3f}; the median p99 ratio is at most "
          f"1.00 in {p99_below} of {p99_cells} cells at 500 and 2,000 connections.")
        if h2h:
            mine = [v for k, v in h2h_medians.items() if k in medians]
            inside = sum(v <= hi for v in mine)
            w(f"echod / C spans {min(mine):.3f}-{max(mine):.3f}; in {inside} of {len(mine)} "
              f"cells it is at most {hi:.3f}, the highest ratio between the identical "
              "servers.")
        if h:
            w("\n" + judge.band_text(h, band_medians, "CPU per message, C/twin") +
              " The band: [1/h, h], h = the largest distance of any cell's median C/twin ratio "
              "from 1, either way (the two roles are interchangeable, so the method's noise "
              "is symmetric); it is built from medians over as many reps as echod's. A cell "
              "passes when echod/C is at most h.\n")


def later_sections(w, syscalls, memory, workers, timers, verdicts):
    """Syscalls per message, idle memory (judged), workers, timers."""
    if syscalls:
        rounds = 1 + max(r.get("round", 0) for r in syscalls)
        seconds = syscalls[0].get("seconds", 5)
        w("\n## Syscalls per message (depth 1, 50 connections, 64 B)\n")
        w(f"Counted with `perf stat -e 'syscalls:sys_enter_*' -p PID` over whole {seconds} s "
          f"bench runs (connection setup included), {rounds} per server in a rotating order; "
          "`c-epoll-twin` is a second copy of the C server. Median (min-max) over the runs; "
          "the breakdown gives each syscall's median per message.\n")
        # Runs saved before the judged stages counted per message only.
        judge.syscall_table(w, [{"units": r["messages"], "per_unit": r["per_msg"], **r}
                                for r in syscalls], "message")
    if memory:
        w("\n## Memory per idle connection (10,000 connections, `echod-bench --idle`)\n")
        w("RSS growth of the server process while 10,000 idle connections are open, divided by "
          "the connections it holds (descriptors held minus those it had before). The kernel's own per-socket memory (socket structs, buffers) is not "
          "in RSS; see the note below.\n")
        w("| server | fds held | RSS before KiB | RSS held KiB | KiB per connection |")
        w("|---|---:|---:|---:|---:|")
        for m in memory:
            w(f"| {m['server']} | {m['held_fds']:,} | {m['rss_before_kib']:,} | "
              f"{m['rss_after_kib']:,} | {m['kib_per_conn']:.3f} |")
        ok = judge.memory_verdict(memory, verdicts)
        if ok is not None:
            w(f"\nPass: echod at most {judge.MEMORY_BAR_KIB} KiB per connection: "
              f"{judge.verdict(ok)}.")
    if workers:
        w("\n## One worker or two (`--workers`)\n")
        w("One worker pinned to CPU 0; two workers allowed CPUs 0 and 1, while echod-bench stays "
          "on CPU 1. On this 2-core machine the second worker competes with the load generator "
          "for CPU 1, so this shows the cost of sharing a core, not the scaling a machine with "
          "spare cores would show.\n")
        w("| cell (conns, bytes, depth) | workers | msgs/s | p99 µs | CPU µs/msg |")
        w("|---|---:|---:|---:|---:|")
        for cell in sorted({(r["conns"], r["length"], r["depth"]) for r in workers}):
            for n in (1, 2):
                runs = [r for r in workers if r["workers"] == n and
                        (r["conns"], r["length"], r["depth"]) == cell]
                w(f"| {cell} | {n} | {med([r['msgs_per_sec'] for r in runs]):,.0f} | "
                  f"{med([r['p99_us'] for r in runs]):.0f} | "
                  f"{med([r['cpu_us_per_msg'] for r in runs]):.3f} |")
    if timers:
        w("\n## Timers under load (callgrind)\n")
        w(f"Each server under callgrind, with {TIMER_CONNS:,} echo connections at a fixed "
          f"{TIMER_RATE:,} messages/s in all ({TIMER_MESSAGES:,} messages, 64 B), so about one "
          "message per loop turn. echod runs with "
          f"`--idle-timeout {TIMER_IDLE_TIMEOUT}`; \"idle clients\" is a client that opens an "
          "idle connection every 100 ms, so that echod always has some connection timing out "
          "and draining; the C server has no idle timeout and just holds them. Instructions "
          "of the whole run, less those of a start and stop without load, per message "
          "(accepting and closing the connections included).\n")
        w("| server | idle clients | instructions per message |")
        w("|---|---|---:|")
        for run in timers:
            w(f"| {run['server']} | {'yes' if run['idle_clients'] else 'no'} | "
              f"{run['per_msg']:,.0f} |")


START, END = "<!-- generated by bench/run.py: start -->", "<!-- generated by bench/run.py: end -->"


def write_between_markers(path, report):
    """Replaces the generated part of `path`, keeping hand-written analysis around it."""
    block = f"{START}\n{report}{END}\n"
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        head, rest = old.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        path.write_text(head + block + tail)
    else:
        path.write_text(block + old)


# Every stage of a full run, in the order they run. quick runs the first two only.
FULL_STAGES = ("matrix", "head-to-head", "control", "syscalls", "memory", "workers", "timers",
               "udp", "churn", "bulk", "scale")
QUICK_STAGES = ("matrix", "head-to-head")
# What a stage saves when it has not run (and no earlier run saved it).
EMPTY = {"udp": {}, "churn": {}, "bulk": {}, "scale": {}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["full", "quick"])
    parser.add_argument("--rounds", type=int, default=None,
                        help="TCP matrix rounds and head-to-head reps; default: 6 (full), "
                             "4 (quick)")
    parser.add_argument("--reps", type=int, default=None,
                        help="head-to-head reps per pair and cell of the udp, churn and bulk "
                             "stages; default: --rounds")
    parser.add_argument("--duration", type=float, default=1.5, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run")
    parser.add_argument("--stages", default=None,
                        help="comma-separated stages to run (full: " + ",".join(FULL_STAGES) +
                             "); the others are read from what earlier runs saved, so the "
                             "report still has every stage")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the stages an interrupted run of the same mode saved")
    parser.add_argument("--from-json", default=None,
                        help="rewrite the report from a saved results JSON instead of running")
    parser.add_argument("--out", default=None,
                        help="default: docs/BENCHMARKS.md (full), bench/results/quick.md (quick)")
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 4 if args.mode == "quick" else 6
    if args.reps is None:
        args.reps = args.rounds
    known = FULL_STAGES if args.mode == "full" else QUICK_STAGES
    wanted = known if args.stages is None else tuple(x.strip() for x in args.stages.split(",")
                                                     if x.strip())
    unknown = [x for x in wanted if x not in known]
    if unknown:
        parser.error(f"unknown stage(s) for {args.mode}: {', '.join(unknown)} "
                     f"(known: {', '.join(known)})")
    command = "make bench" if args.mode == "full" else "make bench-quick"
    if args.from_json:
        raw = json.loads(Path(args.from_json).read_text())
    else:
        build()
        RESULTS.mkdir(parents=True, exist_ok=True)
        times_file = RESULTS / f"{args.mode}-stage-times.json"
        stage_seconds = json.loads(times_file.read_text()) if times_file.exists() else {}

        def stage(name, run):
            """Runs one stage and saves it, when it is wanted (with --resume, loads it if an
            earlier run saved it); loads what an earlier run saved when it is not."""
            saved = RESULTS / f"{args.mode}-stage-{name}.json"
            if name not in wanted or (args.resume and saved.exists()):
                if saved.exists():
                    print(f"stage {name}: reusing {saved}", file=sys.stderr, flush=True)
                    return json.loads(saved.read_text())
                if name in wanted or args.stages is not None:
                    print(f"stage {name}: not run, nothing saved", file=sys.stderr, flush=True)
                return EMPTY.get(name, [])
            t0 = time.monotonic()
            print(f"stage {name}: running", file=sys.stderr, flush=True)
            data = run()
            stage_seconds[name] = time.monotonic() - t0
            saved.write_text(json.dumps(data))
            times_file.write_text(json.dumps(stage_seconds, indent=1))
            print(f"stage {name}: {stage_seconds[name] / 60:.1f} min", file=sys.stderr,
                  flush=True)
            return data

        cells = matrix(args.mode)
        # The C server's twin (the control) only in full mode: quick stays under two minutes.
        names = MATRIX_SERVERS if args.mode == "full" else MATRIX_SERVERS[:3]
        d, wu = args.duration, args.warmup
        raw = {"duration": d, "warmup": wu}
        raw["results"] = stage("matrix", lambda: run_matrix(cells, args.rounds, d, wu, names))
        raw["head_to_head"] = stage("head-to-head",
                                    lambda: head_to_head(cells, args.rounds, d, wu))
        if args.mode == "full":
            raw["control"] = stage("control",
                                   lambda: head_to_head(cells, args.rounds, d, wu, CONTROL))
            raw["syscalls"] = stage("syscalls", syscall_rounds)
            raw["memory"] = stage("memory", lambda: [idle_memory(n, servers()[n])
                                                     for n in ("echod", "c-epoll", "tokio")])
            raw["workers"] = stage("workers", lambda: workers_figure(3, d, wu))
            raw["timers"] = stage("timers", timer_stage)
            raw["udp"] = stage("udp", lambda: judge.udp_stage(args.reps, d, wu))
            raw["churn"] = stage("churn", lambda: judge.churn_stage(args.reps, d, wu))
            raw["bulk"] = stage("bulk", lambda: judge.bulk_stage(args.reps, d, wu))
            raw["scale"] = stage("scale", lambda: judge.scale_stage(wu))
        raw["stage_seconds"] = {k: v for k, v in stage_seconds.items() if k in known}
        (RESULTS / f"{args.mode}.json").write_text(json.dumps(raw, indent=1))
    results = raw.get("results", [])
    if results:
        args.rounds = 1 + max(r["round"] for r in results)
    args.duration = raw.get("duration", args.duration)
    args.warmup = raw.get("warmup", args.warmup)
    table = summarize(results)
    judged = {k: raw.get(k) for k in ("udp", "churn", "bulk", "scale")}
    report = write_report(args, table, raw.get("syscalls", []), raw.get("memory", []),
                          raw.get("workers", []), command, raw.get("head_to_head", []),
                          raw.get("control", []), raw.get("timers", []), judged,
                          raw.get("stage_seconds", {}))
    if args.mode == "full" and table:
        png = ROOT / "docs" / "benchmarks.png"
        if args.out:  # a trial report does not touch docs/
            png = Path(args.out).with_suffix(".png")
        if plot(table, png):
            report += f"\n![messages/s and server CPU per message]({png.name})\n"
    out = Path(args.out or (ROOT / "docs" / "BENCHMARKS.md" if args.mode == "full"
                            else RESULTS / "quick.md"))
    write_between_markers(out, report)
    print(report)
    print(f"written: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
