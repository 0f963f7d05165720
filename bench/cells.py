"""The stages of bench/run.py that judge echod cell by cell (issue 16): UDP, connection
churn, bulk transfer and scale, and the pass rules, with the control band of two identical
C servers, that turn every cell into a PASS or a FAIL.

The band. Each head-to-head stage also runs a control: the C server against a second copy
of itself (the twin), with the same method, in the same session. Every control ratio's
distance from 1 is therefore what the method alone puts between two equal servers. A
stage's band is [1/h, h], where h is the largest distance of any of the stage's control
cells' median ratios from 1, either way (max over cells of max(m, 1/m)): the band is
symmetric because the two roles are interchangeable, and it is built from medians over the
same number of reps as echod's median it is compared with (not from single reps, which
would widen it unfairly). A cost cell (CPU per message, datagram or connection) passes when
echod/C is at most h (inside the band, or below it); a throughput cell (bytes per CPU
second) when echod/C is at least 1/h. Were echod exactly as costly as C, its median would
fall above all N control medians' distances by chance with probability about
1/(2(N+1)): a stage of few cells has a narrow, noisy band, which the report states.
"""

import math
import subprocess
import sys
import time

from common import (MAX_ATTEMPTS, MAX_STEAL, Server, bench_argv, count_syscalls, duel, figures,
                    med, raise_nofile, rotated, servers, udp_servers, unstolen)

# UDP: sockets, datagram bytes, datagrams in flight per socket.
UDP_CELLS = [(s, l, k) for s in (1, 16, 64) for k in (1, 8) for l in (64, 1400)]
UDP_PAIRS = (("echod", "c-udp"), ("c-udp", "c-udp-twin"))
UDP_KEY_CELL = (16, 64, 8)
UDP_KEY_BAR = 0.80  # the bar: echod at most 0.8 of the naive loop's CPU per datagram
UDP_SYSCALL_SERVERS = ("echod", "c-udp", "c-udp-twin")
UDP_SYSCALL_ROUNDS = 2

# Churn: connections, each closed after one verified echo and replaced at once.
CHURN_CELLS = [(50, 64, 1), (500, 64, 1)]
CHURN_EXTRA = ["--conn-messages", "1"]
CHURN_PAIRS = (("echod", "c-epoll"), ("tokio", "c-epoll"), ("c-epoll", "c-epoll-twin"))
CHURN_SYSCALL_SERVERS = ("echod", "c-epoll", "tokio", "c-epoll-twin")

# Bulk: 64 KiB messages, four in flight per connection.
BULK_CELLS = [(1, 65536, 4), (8, 65536, 4)]
BULK_PAIRS = (("echod", "c-epoll"), ("c-epoll", "c-epoll-twin"))

SYSCALL_SECONDS = 2

# Scale: one echod, this many concurrent connections, every echo verified.
SCALE_CONNS = 19000
SCALE_SECONDS = 3

# Idle memory: echod's RSS growth per idle connection at most this.
MEMORY_BAR_KIB = 0.12


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def interleaved(cells, pairs, reps, duration, warmup, kind="tcp", extra=(), metric=None):
    """Per cell and rep, one head-to-head rep (`duel`) of every pair, the pairs in an order
    that rotates with the rep: echod's duels and the control's interleave in time, so the
    band measures the noise of the very minutes echod was measured in."""
    rows = []
    for cell in cells:
        for rep in range(reps):
            for pair in rotated(pairs, rep):
                row = duel(pair, cell, rep, duration, warmup, kind, extra)
                rows.append(row)
                a, b = pair
                log(f"{a}/{b} {cell} rep {rep}: {metric} {row[a][metric]:.4g} vs "
                    f"{row[b][metric]:.4g}, ok {row[a]['ok']}/{row[b]['ok']}"
                    + (f", lost {row[a]['lost']}/{row[b]['lost']}" if kind == "udp" else ""))
    return rows


def syscall_runs(names, table, rounds, cells, kind="tcp", extra=(), per="messages"):
    runs = []
    for cell in cells:
        for r in range(rounds):
            for name in rotated(names, r):
                run = count_syscalls(name, table[name], SYSCALL_SECONDS, *cell, extra=extra,
                                     kind=kind, per=per)
                run["round"] = r
                runs.append(run)
                log(f"syscalls {cell} round {r} {name}: {run['per_unit']:.3f} per {per}")
    return runs


def udp_stage(reps, duration, warmup):
    rows = interleaved(UDP_CELLS, UDP_PAIRS, reps, duration, warmup, "udp", ["--udp"],
                       "cpu_us_per_msg")
    calls = syscall_runs(UDP_SYSCALL_SERVERS, udp_servers(), UDP_SYSCALL_ROUNDS, [UDP_KEY_CELL],
                         "udp", ["--udp"], "messages")
    return {"rows": rows, "syscalls": calls}


def churn_stage(reps, duration, warmup):
    rows = interleaved(CHURN_CELLS, CHURN_PAIRS, reps, duration, warmup, "tcp", CHURN_EXTRA,
                       "cpu_us_per_conn")
    calls = syscall_runs(CHURN_SYSCALL_SERVERS, servers(), 1, CHURN_CELLS, "tcp", CHURN_EXTRA,
                         "connections_opened")
    return {"rows": rows, "syscalls": calls}


def bulk_stage(reps, duration, warmup):
    return {"rows": interleaved(BULK_CELLS, BULK_PAIRS, reps, duration, warmup, "tcp", (),
                                "bytes_per_cpu_s")}


def scale_stage(warmup):
    """One echod, SCALE_CONNS connections at depth 1, 64 B: every connection established,
    every echo verified (echod-bench's ok). Repeated (up to MAX_ATTEMPTS) only while the
    hypervisor steals, like every run."""
    limit = raise_nofile()
    server = Server(servers()["echod"])
    peak = {"fds": 0}
    try:
        argv = bench_argv(server.addr, SCALE_CONNS, 64, 1, SCALE_SECONDS,
                          ["--warmup", str(warmup), "--server-pid", str(server.proc.pid)])
        rss_before = server.rss_kib()

        def once():
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            while proc.poll() is None:
                peak["fds"] = max(peak["fds"], server.fds())
                peak["rss"] = max(peak.get("rss", 0), server.rss_kib())
                time.sleep(0.2)
            out, err = proc.communicate()
            return out, err, proc.returncode

        (out, err, code), steal, repeats = unstolen(once)
    finally:
        server.stop()
    fig = figures(out, code)
    row = {"conns": SCALE_CONNS, "nofile": limit, "steal": steal, "repeats": repeats,
           "peak_fds": peak["fds"], "rss_before_kib": rss_before,
           "peak_rss_kib": peak.get("rss", 0), "stderr": err[-500:], **fig}
    row["pass"] = bool(fig["ok"] and fig["connections"] == SCALE_CONNS and fig["errors"] == 0
                       and fig["messages"] > 0)
    log(f"scale: {fig['connections']} connections, {fig['messages']} echoes verified, "
        f"errors {fig['errors']}, ok {fig['ok']}, peak fds {peak['fds']}")
    return row


# ---------------------------------------------------------------- report


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def cell_of(row):
    return (row["conns"], row["length"], row["depth"])


def ratios(rows, pair, metric, cell):
    """Per rep of `pair` in `cell`: first server's metric / second's."""
    a, b = pair
    return [r[a][metric] / r[b][metric] for r in rows
            if list(r["pair"]) == list(pair) and cell_of(r) == cell
            and _finite(r[a][metric]) and _finite(r[b][metric])]


def cells_of(rows):
    return sorted({cell_of(r) for r in rows}, key=lambda c: (c[2], c[0], c[1]))


def band(rows, pair, metric):
    """h, and the per-cell median ratios of the control `pair` (see the module doc)."""
    medians = {}
    for cell in cells_of([r for r in rows if list(r["pair"]) == list(pair)]):
        rs = ratios(rows, pair, metric, cell)
        if rs:
            medians[cell] = med(rs)
    if not medians:
        return float("nan"), medians
    return max(max(m, 1 / m) for m in medians.values()), medians


def fmt_ratios(rs, digits=2):
    if not rs:
        return "n/a"
    return f"{med(rs):.{digits}f} ({min(rs):.2f}-{max(rs):.2f})"


def verdict(ok):
    return "**PASS**" if ok else "**FAIL**"


def band_text(h, medians, what):
    n = len(medians)
    return (f"Band ({what}): the control's per-cell median ratios span "
            f"{min(medians.values()):.3f}-{max(medians.values()):.3f} over {n} cells, so "
            f"h = {h:.3f} and the band is [{1 / h:.3f}, {h:.3f}]. Were echod exactly as good "
            f"as C, a cell would fail by chance with probability about "
            f"{1 / (2 * (n + 1)):.0%}.")


def stolen_text(rows):
    return (f"Reps repeated because the hypervisor stole more than {MAX_STEAL:.0%} of CPUs "
            f"0-1: {sum(r['repeats'] for r in rows)}; kept despite it after {MAX_ATTEMPTS} "
            f"attempts: {sum(r['steal'] > MAX_STEAL for r in rows)}.")


def reps_of(rows):
    return 1 + max(r["rep"] for r in rows)


def syscall_table(w, runs, unit):
    w(f"| server | runs | {unit}s (median) | syscalls per {unit} | breakdown |")
    w("|---|---:|---:|---|---|")
    for name in dict.fromkeys(r["server"] for r in runs):
        mine = [r for r in runs if r["server"] == name]
        per = [r["per_unit"] for r in mine]
        calls = sorted({c for r in mine for c in r["counts"]},
                       key=lambda c: (-sum(r["counts"].get(c, 0) for r in mine), c))
        breakdown = ", ".join(
            f"{c} {med([r['counts'].get(c, 0) / r['units'] for r in mine]):.3f}"
            for c in calls if med([r['counts'].get(c, 0) / r['units'] for r in mine]) >= 0.0005)
        w(f"| {name} | {len(mine)} | {med([r['units'] for r in mine]):,.0f} | {med(per):.3f} "
          f"({min(per):.3f}-{max(per):.3f}) | {breakdown} |")


def report_udp(w, data, verdicts):
    rows = data["rows"]
    pair, control = UDP_PAIRS
    metric = "cpu_us_per_msg"
    h, medians = band(rows, control, metric)
    w("\n## UDP: echod beside the naive C loop (head to head)\n")
    w("`echod --udp` against `bench/peers/c-udp-echo.c` (epoll, then `recvfrom`/`sendto` one "
      "datagram at a time until EAGAIN), each pinned to CPU 0 with its own `echod-bench --udp "
      "-c SOCKETS --pipeline DEPTH -l BYTES` on CPU 1, both at once; the control is the C loop "
      "against a copy of itself, its reps interleaved with echod's. Server CPU per verified "
      f"datagram; ratios per rep, median (min-max) over {reps_of(rows)} reps. A datagram lost "
      "(no reply within 1 s) is not an error; loss is the total over the reps. "
      f"Pass: echod/C at most {UDP_KEY_BAR:.2f} in the {UDP_KEY_CELL[0]} sockets x depth "
      f"{UDP_KEY_CELL[2]} x {UDP_KEY_CELL[1]} B cell (the issue's bar), at most h (inside the "
      "band or below) in the others.\n")
    w("| sockets | bytes | depth | CPU µs/dgram echod | CPU µs/dgram C | echod/C | C/twin | "
      "dgram/s echod | dgram/s C | lost echod / C | pass if | verdict |")
    w("|---:|---:|---:|---:|---:|---|---|---:|---:|---|---|---|")
    for cell in cells_of([r for r in rows if list(r["pair"]) == list(pair)]):
        reps = [r for r in rows if list(r["pair"]) == list(pair) and cell_of(r) == cell]
        rs = ratios(rows, pair, metric, cell)
        col = lambda n, f: med([r[n][f] for r in reps])
        key = cell == UDP_KEY_CELL
        bar = UDP_KEY_BAR if key else h
        ok = bool(rs) and med(rs) <= bar and all(r[n]["ok"] for r in reps for n in pair)
        errors = "" if all(r[n]["ok"] for r in reps for n in pair) else " (errors!)"
        ratio_text, bar_text = judged_ratio(rs, bar)
        w(f"| {cell[0]} | {cell[1]} | {cell[2]}{errors} | {col(pair[0], metric):.3f} | "
          f"{col(pair[1], metric):.3f} | {ratio_text} | "
          f"{fmt_ratios(ratios(rows, control, metric, cell), 3)} | "
          f"{col(pair[0], 'msgs_per_sec'):,.0f} | {col(pair[1], 'msgs_per_sec'):,.0f} | "
          f"{sum(r[pair[0]]['lost'] for r in reps):,} / {sum(r[pair[1]]['lost'] for r in reps):,}"
          f" | ≤ {bar_text} | {verdict(ok)} |")
        verdicts.append(("UDP", f"{cell[0]} sockets, {cell[1]} B, depth {cell[2]}",
                         "CPU/datagram", med(rs) if rs else float("nan"),
                         ("≤", bar, "(issue's bar)" if key else "(band)"), ok))
    if medians:
        w("\n" + band_text(h, medians, "CPU per datagram, C/twin"))
    w(stolen_text(rows))
    calls = data.get("syscalls", [])
    if calls:
        w(f"\n### UDP syscalls per datagram ({UDP_KEY_CELL[0]} sockets, depth {UDP_KEY_CELL[2]},"
          f" {UDP_KEY_CELL[1]} B)\n")
        w(f"`perf stat -e 'syscalls:sys_enter_*' -p PID` over whole {calls[0]['seconds']} s "
          "`echod-bench --udp` runs (one server at a time), divided by the verified datagrams; "
          "median (min-max) over the runs; the breakdown gives each syscall's median per "
          "datagram.\n")
        syscall_table(w, calls, "datagram")


def report_churn(w, data, verdicts):
    rows = data["rows"]
    mine, tokio, control = CHURN_PAIRS
    metric = "cpu_us_per_conn"
    h, medians = band(rows, control, metric)
    w("\n## Connection churn (head to head)\n")
    w("`echod-bench --conn-messages 1 -c N`: every connection is closed after one verified "
      "64 B echo and replaced at once, so the server accepts, echoes once and closes, N "
      "connections at a time. Pairs run head to head (both at once, each with its own "
      "echod-bench): echod against C, tokio against C, and the control C against its twin, "
      "the three interleaved rep by rep. Server CPU per connection = server CPU over the "
      "measured window / connections completed in it; connections/s from each pair's own "
      f"echod-bench (the two servers share CPU 0). Median (min-max) over {reps_of(rows)} reps. "
      "Pass: echod/C at most h.\n")
    w("| conns | CPU µs/conn echod | C | tokio | echod/C | tokio/C | C/twin | conns/s echod | "
      "C | tokio | pass if | verdict |")
    w("|---:|---:|---:|---:|---|---|---|---:|---:|---:|---|---|")
    for cell in cells_of([r for r in rows if list(r["pair"]) == list(mine)]):
        ours = [r for r in rows if list(r["pair"]) == list(mine) and cell_of(r) == cell]
        theirs = [r for r in rows if list(r["pair"]) == list(tokio) and cell_of(r) == cell]
        rs = ratios(rows, mine, metric, cell)
        good = all(r[n]["ok"] for r in ours for n in mine)
        ok = bool(rs) and med(rs) <= h and good
        col = lambda reps, n, f: med([r[n][f] for r in reps])
        ratio_text, bar_text = judged_ratio(rs, h)
        w(f"| {cell[0]}{'' if good else ' (errors!)'} | {col(ours, 'echod', metric):.2f} | "
          f"{col(ours, 'c-epoll', metric):.2f} | {col(theirs, 'tokio', metric):.2f} | "
          f"{ratio_text} | {fmt_ratios(ratios(rows, tokio, metric, cell), 3)} | "
          f"{fmt_ratios(ratios(rows, control, metric, cell), 3)} | "
          f"{col(ours, 'echod', 'conns_per_sec'):,.0f} | "
          f"{col(ours, 'c-epoll', 'conns_per_sec'):,.0f} | "
          f"{col(theirs, 'tokio', 'conns_per_sec'):,.0f} | ≤ {bar_text} | {verdict(ok)} |")
        verdicts.append(("churn", f"{cell[0]} connections, 1 echo each", "CPU/connection",
                         med(rs) if rs else float("nan"), ("≤", h, "(band)"), ok))
    if medians:
        w("\n" + band_text(h, medians, "CPU per connection, C/twin"))
    w(stolen_text(rows))
    calls = data.get("syscalls", [])
    if calls:
        w("\n### Syscalls per connection (churn)\n")
        w(f"`perf stat -e 'syscalls:sys_enter_*' -p PID` over whole {calls[0]['seconds']} s "
          "runs (one server at a time), divided by the connections echod-bench opened.\n")
        for conns in sorted({r["conns"] for r in calls}):
            w(f"\n{conns} connections:\n")
            syscall_table(w, [r for r in calls if r["conns"] == conns], "connection")


def report_bulk(w, data, verdicts):
    rows = data["rows"]
    mine, control = BULK_PAIRS
    metric = "bytes_per_cpu_s"
    h, medians = band(rows, control, metric)
    w("\n## Bulk: 64 KiB messages, four in flight (head to head)\n")
    w("`echod-bench -l 65536 --pipeline 4 -c N`, echod against C and the control C against "
      "its twin, interleaved rep by rep. Bytes per server CPU-second = payload bytes echoed "
      "in the measured window / server CPU seconds in it (the inverse of CPU per message "
      f"times the length). Median (min-max) over {reps_of(rows)} reps. Pass: echod/C at least "
      "1/h, the band's lower edge (echod moves at least as many bytes per CPU-second as C, "
      "within what two identical servers differ by).\n")
    w("| conns | MB per CPU-s echod | MB per CPU-s C | echod/C | C/twin | MB/s echod | MB/s C | "
      "pass if | verdict |")
    w("|---:|---:|---:|---|---|---:|---:|---|---|")
    for cell in cells_of([r for r in rows if list(r["pair"]) == list(mine)]):
        ours = [r for r in rows if list(r["pair"]) == list(mine) and cell_of(r) == cell]
        rs = ratios(rows, mine, metric, cell)
        good = all(r[n]["ok"] for r in ours for n in mine)
        ok = bool(rs) and med(rs) >= 1 / h and good
        col = lambda n, f: med([r[n][f] for r in ours])
        mbps = lambda n: med([r[n]["msgs_per_sec"] * cell[1] / 1e6 for r in ours])
        ratio_text, bar_text = judged_ratio(rs, 1 / h)
        w(f"| {cell[0]}{'' if good else ' (errors!)'} | {col('echod', metric) / 1e6:,.0f} | "
          f"{col('c-epoll', metric) / 1e6:,.0f} | {ratio_text} | "
          f"{fmt_ratios(ratios(rows, control, metric, cell), 3)} | {mbps('echod'):,.0f} | "
          f"{mbps('c-epoll'):,.0f} | ≥ {bar_text} | {verdict(ok)} |")
        verdicts.append(("bulk", f"{cell[0]} connections, 64 KiB, depth 4", "bytes/CPU-s",
                         med(rs) if rs else float("nan"), ("≥", 1 / h, "(band)"), ok))
    if medians:
        w("\n" + band_text(h, medians, "bytes per CPU-second, C/twin"))
    w(stolen_text(rows))


def report_scale(w, row, verdicts):
    w(f"\n## Scale: {row['conns']:,} concurrent connections on one echod\n")
    w(f"One echod (`--max-connections 20000`), `echod-bench -c {row['conns']} -l 64 "
      f"--pipeline 1 -d {SCALE_SECONDS}` after a warm-up, descriptor limit {row['nofile']:,}. "
      "Pass: every connection established and every echo verified (echod-bench's ok, no "
      "errors).\n")
    w("| connections | echoes verified | msgs/s | p99 µs | errors | peak server fds | "
      "peak server RSS KiB | verdict |")
    w("|---:|---:|---:|---:|---:|---:|---:|---|")
    w(f"| {row['connections']:,} | {row['messages']:,} | {row['msgs_per_sec']:,.0f} | "
      f"{row['p99_us']:,.0f} | {row['errors']} | {row['peak_fds']:,} | "
      f"{row['peak_rss_kib']:,} | {verdict(row['pass'])} |")
    if not row["pass"] and row.get("stderr"):
        w(f"\necho-bench said: `{row['stderr'].strip()[-300:]}`")
    verdicts.append(("scale", f"{row['conns']:,} connections", "echoes verified",
                     float("nan"), "all, no errors", row["pass"]))


def memory_verdict(memory, verdicts):
    for m in memory:
        if m["server"] == "echod":
            ok = m["kib_per_conn"] <= MEMORY_BAR_KIB
            verdicts.append(("idle memory", f"{m['conns']:,} idle connections", "KiB/connection",
                             m["kib_per_conn"], ("≤", MEMORY_BAR_KIB, "KiB (absolute)"), ok))
            return ok
    return None


def shown(value, bar):
    """value and bar with 3 decimals, or as many more (up to 6) as it takes to tell them
    apart: a FAIL must not print the same figure as its bar."""
    for digits in range(3, 7):
        v, b = f"{value:.{digits}f}", f"{bar:.{digits}f}"
        if v != b:
            break
    return v, b


def judged_ratio(rs, bar):
    """The ratio column (median (min-max)) and the bar, told apart (`shown`)."""
    if not rs:
        return "n/a", f"{bar:.3f}"
    v, b = shown(med(rs), bar)
    return f"{v} ({min(rs):.2f}-{max(rs):.2f})", b


def report_verdicts(w, verdicts):
    if not verdicts:
        return
    passed = sum(v[5] for v in verdicts)
    w("\n## Verdicts, cell by cell\n")
    w("Every judged cell of this report, with its rule (the bands and bars are explained in "
      "each stage's section; for ratios, echod / C, head to head). "
      f"{passed} of {len(verdicts)} pass.\n")
    w("| stage | cell | measure | value | pass if | verdict |")
    w("|---|---|---|---:|---|---|")
    for stage, cell, what, value, rule, ok in verdicts:
        value_text = "—"
        if isinstance(rule, tuple):  # (operator, bar, note)
            op, bar, note = rule
            value_text, bar_text = shown(value, bar)
            rule = f"{op} {bar_text} {note}"
        w(f"| {stage} | {cell} | {what} | {value_text} | {rule} | {verdict(ok)} |")
    w("")
