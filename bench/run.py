#!/usr/bin/env python3
"""The side-by-side benchmark: herald against its peers, in one run.

Run through scripts/bench, which builds and installs everything first.

    bench/run.py [--quick] [--rounds N] [--duration S] [--only SERVER,...]
                 [--scenarios ID,...] [--skip-callgrind] [--skip-criterion]

For each round, each scenario, and each server (the server order rotates by
one per round, so slow drift of the machine hits every server alike):
start the server alone on CPU 0, run `herald bench` on CPU 1, stop the
server. Then, once per scenario and server, count what does not depend on
the machine's speed: user-space instructions per echoed message under
callgrind (Rust servers), and syscalls per message (perf's syscall
tracepoints, or strace -c -f). Writes bench/results/<date>/: results.md,
results.json (every run), chart.svg, callgrind annotations, criterion.txt.

Python 3 standard library only.
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HERALD = ROOT / "target" / "release" / "herald"
PEERS = BENCH / "peers" / "target" / "release"

SERVER_CPU = "0"
CLIENT_CPU = "1"
# Niceness of servers and generator (set by --nice): on a shared machine,
# background work then takes less from the runs.
NICE = ["nice", "-n", "0"]


# ----- servers -------------------------------------------------------------


class Server:
    def __init__(self, key, label, port, cmd, rust, deflate=None, scale=1.0):
        self.key = key
        self.label = label
        self.port = port
        self._cmd = cmd
        self.rust = rust
        # Command line with permessage-deflate on, or None if unsupported.
        self._deflate = deflate
        # Message counts under callgrind are scaled by this (a slow server
        # would otherwise take minutes; the count is linear in messages).
        self.scale = scale

    def supports(self, scenario):
        return not scenario.get("deflate") or self._deflate is not None

    def cmd(self, deflate=False):
        c = self._deflate if deflate else self._cmd
        return [str(a).format(port=self.port) for a in c]


SERVERS = [
    Server(
        "herald",
        "herald (tokio)",
        19101,
        [HERALD, "echo", "--listen", "127.0.0.1:{port}", "--no-deflate"],
        rust=True,
        deflate=[HERALD, "echo", "--listen", "127.0.0.1:{port}"],
    ),
    Server(
        "tokio-tungstenite",
        "tokio-tungstenite",
        19102,
        [PEERS / "tungstenite-echo", "127.0.0.1:{port}"],
        rust=True,
        scale=0.1,
    ),
    Server(
        "fastwebsockets",
        "fastwebsockets",
        19103,
        [PEERS / "fastwebsockets-echo", "127.0.0.1:{port}"],
        rust=True,
    ),
    Server(
        "node-ws",
        "Node ws",
        19104,
        ["node", BENCH / "node_echo.mjs", "{port}"],
        rust=False,
        deflate=["node", BENCH / "node_echo.mjs", "{port}", "--deflate"],
    ),
    Server(
        "python-websockets",
        "Python websockets",
        19105,
        [sys.executable, BENCH / "python_echo.py", "{port}"],
        rust=False,
        deflate=[sys.executable, BENCH / "python_echo.py", "{port}", "--deflate"],
    ),
    # The same herald-proto core on herald's own event loop
    # (`herald::event_loop`): callbacks, no task per connection.
    Server(
        "herald-loop",
        "herald (event loop)",
        19107,
        [HERALD, "echo", "--event-loop", "--listen", "127.0.0.1:{port}", "--no-deflate"],
        rust=True,
        deflate=[HERALD, "echo", "--event-loop", "--listen", "127.0.0.1:{port}"],
    ),
]
TCP_ECHO = Server(
    "tcp-echo", "raw TCP echo (generator ceiling)", 19109,
    [PEERS / "tcp-echo", "127.0.0.1:{port}"], rust=True,
)

# id, what, params. `messages` is the fixed count for the counted runs.
SCENARIOS = [
    {"id": "bin-100x20", "label": "binary 100 x 20 B", "kind": "echo", "connections": 100, "size": 20, "messages": 10000},
    {"id": "bin-10x1k", "label": "binary 10 x 1 KiB", "kind": "echo", "connections": 10, "size": 1024, "messages": 10000},
    {"id": "bin-200x16k", "label": "binary 200 x 16 KiB", "kind": "echo", "connections": 200, "size": 16384, "messages": 4000},
    {"id": "text-100x20", "label": "text 100 x 20 B", "kind": "echo", "connections": 100, "size": 20, "text": True, "messages": 10000},
    {"id": "text-10x1k", "label": "text 10 x 1 KiB", "kind": "echo", "connections": 10, "size": 1024, "text": True, "messages": 10000},
    {"id": "text-200x16k", "label": "text 200 x 16 KiB", "kind": "echo", "connections": 200, "size": 16384, "text": True, "messages": 4000},
    {"id": "deflate-10x1k", "label": "deflate text 10 x 1 KiB", "kind": "echo", "connections": 10, "size": 1024, "text": True, "deflate": True, "messages": 3000},
    {"id": "idle-10k", "label": "idle 10,000 conns", "kind": "idle", "connections": 10000},
    {"id": "handshake", "label": "handshake + close", "kind": "handshake", "concurrency": 8, "messages": 1000},
]

SYSCALLS = [
    "read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "futex", "accept4",
    "close", "shutdown", "setsockopt", "getsockopt", "mmap", "munmap", "madvise",
    "brk", "ioctl", "getpid", "getrandom", "clock_gettime",
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Running:
    """A server process pinned to the server CPU, stderr to a log file."""

    def __init__(self, server, scratch, deflate=False, wrapper=(), tag=""):
        self.server = server
        self.log_path = scratch / f"{server.key}{tag}.log"
        cmd = [*NICE, "taskset", "-c", SERVER_CPU, *wrapper, *server.cmd(deflate)]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(c) for c in cmd], stdout=self.log, stderr=self.log, cwd=BENCH,
            start_new_session=True,
            # `stop` sends SIGINT; a shell starts background jobs with it
            # ignored, and a server without a handler would inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.time() + (60 if wrapper else 20)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{server.key} exited at start: {self.log_path.read_text()[-2000:]}")
            if "listening" in self.log_path.read_text():
                break
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"{server.key} did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.2)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def herald_bench(args, timeout):
    """Runs `herald bench ...` on the client CPU; returns its JSON."""
    cmd = [*NICE, "taskset", "-c", CLIENT_CPU, str(HERALD), "bench", *[str(a) for a in args], "--json"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out", "cmd": " ".join(cmd)}
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    try:
        out = json.loads(line)
    except json.JSONDecodeError:
        return {"error": f"exit {p.returncode}: {p.stderr.strip()[-500:]}", "cmd": " ".join(cmd)}
    if p.returncode != 0 and not out.get("first_error"):
        out["first_error"] = p.stderr.strip()[-300:]
    return out


def echo_args(server, sc, duration=None, warmup=None, messages=None):
    a = ["echo", "--url", f"ws://127.0.0.1:{server.port}/", "--connections", sc["connections"],
         "--size", sc["size"]]
    if sc.get("text"):
        a.append("--text")
    if sc.get("deflate"):
        a.append("--deflate")
    if server is TCP_ECHO:
        a.append("--tcp")
    if messages is not None:
        a += ["--messages", messages]
    else:
        a += ["--duration", f"{duration}s", "--warmup", f"{warmup}s"]
    return a


def timed_run(server, sc, opts, scratch):
    """One measured run of one scenario against a fresh server."""
    deflate = bool(sc.get("deflate"))
    srv = Running(server, scratch, deflate=deflate)
    try:
        budget = opts.duration + opts.warmup + 60
        if sc["kind"] == "echo":
            out = herald_bench(echo_args(server, sc, opts.duration, opts.warmup) + ["--server-pid", srv.pid], budget)
            metric = out.get("messages_per_sec")
        elif sc["kind"] == "idle":
            out = herald_bench(["idle", "--url", f"ws://127.0.0.1:{server.port}/", "--connections",
                                sc["connections"], "--server-pid", srv.pid, "--settle", "2"], 180)
            metric = out.get("server_bytes_per_connection")
        else:
            out = herald_bench(["handshake", "--url", f"ws://127.0.0.1:{server.port}/",
                                "--duration", f"{opts.duration}s", "--warmup", f"{opts.warmup}s",
                                "--concurrency", sc["concurrency"], "--server-pid", srv.pid], budget)
            metric = out.get("handshakes_per_sec")
    finally:
        srv.stop()
    if out.get("error") or out.get("errors"):
        log(f"    ! {server.key} {sc['id']}: {out.get('error') or out.get('first_error')}")
    return metric, out


# ----- counting: syscalls and instructions --------------------------------------


def have_perf_tracepoints():
    if not shutil.which("perf"):
        return False
    p = subprocess.run(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "true"],
                       capture_output=True, text=True)
    return p.returncode == 0 and "raw_syscalls:sys_enter" in p.stderr and "not supported" not in p.stderr


class SyscallCounter:
    """Counts a process's syscalls while a block runs: perf's tracepoints
    when the kernel lets us, else strace -c -f (slower, same counts)."""

    def __init__(self, pid, scratch, use_perf):
        self.out = scratch / f"syscalls-{pid}-{time.monotonic_ns()}.txt"
        if use_perf:
            events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in SYSCALLS]
            avail = [e for e in events if e.startswith("raw") or Path(
                f"/sys/kernel/tracing/events/syscalls/{e.split(':')[1]}").exists() or Path(
                f"/sys/kernel/debug/tracing/events/syscalls/{e.split(':')[1]}").exists()]
            if len(avail) == 1:
                avail = events  # tracefs not mounted where we look; let perf decide
            cmd = ["perf", "stat", "-x,", "-o", str(self.out), "-p", str(pid), "-e", ",".join(avail)]
        else:
            cmd = ["strace", "-c", "-f", "-o", str(self.out), "-p", str(pid)]
        self.perf = use_perf
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.7)

    def finish(self):
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        text = self.out.read_text() if self.out.exists() else ""
        counts = {}
        if self.perf:
            for line in text.splitlines():
                parts = line.split(",")
                if len(parts) >= 3 and parts[0].strip().isdigit():
                    ev = parts[2].strip()
                    name = "total" if ev == "raw_syscalls:sys_enter" else ev.replace("syscalls:sys_enter_", "")
                    counts[name] = int(parts[0])
        else:
            for line in text.splitlines():
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
                if m:
                    counts[m.group(2)] = int(m.group(1))
                m = re.match(r"\s*100\.00\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?total\s*$", line)
                if m:
                    counts["total"] = int(m.group(1))
        return counts


def count_syscalls(server, sc, n, scratch, use_perf):
    """Syscalls per message (or handshake): a run of n minus a run of 0,
    on one server process."""
    srv = Running(server, scratch, deflate=bool(sc.get("deflate")), tag="-sys")
    try:
        per = []
        for m in (0, n):
            c = SyscallCounter(srv.pid, scratch, use_perf)
            if sc["kind"] == "echo":
                out = herald_bench(echo_args(server, sc, messages=m), 300)
            else:
                out = herald_bench(["handshake", "--url", f"ws://127.0.0.1:{server.port}/",
                                    "--handshakes", m, "--concurrency", sc["concurrency"]], 300)
            per.append((c.finish(), out))
    finally:
        srv.stop()
    (base, _), (full, out) = per
    if out.get("error") or out.get("errors"):
        return None
    return {k: (full.get(k, 0) - base.get(k, 0)) / n for k in set(full) | set(base)
            if full.get(k, 0) - base.get(k, 0) > 0}


def callgrind_total(path):
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def count_instructions(server, sc, n, scratch, cache):
    """User-space instructions per echoed message (or handshake) under
    callgrind: (run of n) - (run of 0 with the same connections), each a
    fresh server process, so startup and handshakes cancel out."""
    def run(m):
        out_file = scratch / f"callgrind.{server.key}.{sc['id']}.{m}.out"
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
        srv = Running(server, scratch, deflate=bool(sc.get("deflate")), wrapper=wrapper, tag="-cg")
        try:
            if sc["kind"] == "echo":
                out = herald_bench(echo_args(server, sc, messages=m), 900)
            else:
                out = herald_bench(["handshake", "--url", f"ws://127.0.0.1:{server.port}/",
                                    "--handshakes", m, "--concurrency", sc["concurrency"],
                                    "--timeout", "60s"], 900)
        finally:
            srv.stop(timeout=300)
        if out.get("error") or out.get("errors"):
            raise RuntimeError(out.get("error") or out.get("first_error"))
        return callgrind_total(out_file), out_file

    key = (server.key, sc["kind"], sc.get("connections"), bool(sc.get("deflate")))
    if key not in cache:
        cache[key] = run(0)[0]
    total, out_file = run(n)
    return (total - cache[key]) / n, out_file


# ----- criterion -----------------------------------------------------------------


def run_criterion(opts, results_dir):
    """`cargo bench -p herald-proto`; the estimates criterion wrote."""
    start = time.time()
    # Bench targets only: the library's libtest harness refuses criterion's flags.
    cmd = ["cargo", "bench", "-p", "herald-proto", "--bench", "*"]
    if opts.quick:
        cmd += ["--", "--quick"]
    log("criterion: " + " ".join(cmd))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    (results_dir / "criterion.txt").write_text(p.stdout + "\n" + p.stderr[-5000:])
    rows = []
    crit = ROOT / "target" / "criterion"
    for bj in sorted(crit.glob("**/new/benchmark.json")):
        if bj.stat().st_mtime < start:
            continue
        try:
            b = json.loads(bj.read_text())
            e = json.loads((bj.parent / "estimates.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        ns = e["median"]["point_estimate"]
        thr = b.get("throughput") or {}
        rate = None
        if "Bytes" in thr:
            rate = f"{thr['Bytes'] / ns:.2f} GB/s"
        elif "BytesDecimal" in thr:
            rate = f"{thr['BytesDecimal'] / ns:.2f} GB/s"
        elif "Elements" in thr:
            per = ns / thr["Elements"]
            rate = f"{per:.1f} ns/elem ({thr['Elements'] / ns * 1e3:.1f} M/s)"
        rows.append({"id": b.get("full_id") or b.get("title"), "median_ns": ns, "rate": rate})
    # alloc_count is not criterion: keep its table as printed.
    alloc, inside = [], False
    for line in p.stdout.splitlines():
        if line.startswith("allocations while"):
            inside = True
        if inside:
            alloc.append(line)
            if line.startswith(("ok:", "FAIL")):
                inside = False
    return {"ok": p.returncode == 0, "rows": rows, "alloc_lines": alloc}


# ----- the machine ---------------------------------------------------------------


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except subprocess.TimeoutExpired:
        return ""


def machine():
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": sh("nproc"),
        "lscpu": sh("lscpu | head -16 | grep -v '^Flags'"),
        "kernel": sh("uname -srvm"),
        "memory": sh("free -h | head -2"),
        "loadavg": sh("cat /proc/loadavg"),
        "rustc": sh("rustc --version"),
        "node": sh("node --version"),
        "python": platform.python_version(),
        "herald_commit": sh(f"git -C {ROOT} rev-parse --short HEAD") + (
            " (+ uncommitted changes)" if sh(f"git -C {ROOT} status --porcelain -- crates") else ""),
        "versions": peer_versions(),
    }


def peer_versions():
    v = {}
    lock = BENCH / "peers" / "Cargo.lock"
    if lock.exists():
        text = lock.read_text()
        for name in ("tokio-tungstenite", "tungstenite", "fastwebsockets", "tokio", "hyper"):
            m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), text)
            if m:
                v[name] = m.group(1)
    pkg = BENCH / "node_modules" / "ws" / "package.json"
    if pkg.exists():
        v["ws (npm)"] = json.loads(pkg.read_text())["version"]
    v["websockets (PyPI)"] = sh(f"{sys.executable} -c 'import websockets; print(websockets.__version__)'")
    main_lock = (ROOT / "Cargo.lock").read_text()
    m = re.search(r'name = "tokio"\nversion = "([^"]+)"', main_lock)
    if m:
        v["tokio (herald)"] = m.group(1)
    return v


# ----- statistics and the report -------------------------------------------------


def summary(values):
    vals = [v for v in values if isinstance(v, (int, float))]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt_num(v, kind):
    if v is None:
        return "n/a"
    if kind == "bytes":
        return f"{v:,.0f} B" if v < 10_000 else f"{v / 1024:,.1f} KiB"
    if kind == "us":
        return f"{v:,.1f}"
    if kind == "ratio":
        return f"{v:.2f}x"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def cell(s, kind):
    if s is None:
        return "n/a"
    if s["n"] == 1:
        return fmt_num(s["median"], kind)
    return f"{fmt_num(s['median'], kind)} [{fmt_num(s['min'], kind)}-{fmt_num(s['max'], kind)}]"


# herald's two engines; each gets its own ratio row.
HERALD_KEYS = ("herald", "herald-loop")


def herald_rows(servers):
    """(key, label) of the herald engines in this run."""
    return [(sv.key, sv.label) for sv in servers if sv.key in HERALD_KEYS]


def ratio_row(cells, higher_better, key="herald", same_round=None):
    """herald / best peer (the best by median). With `same_round(key, peer)`
    giving one ratio per round in which both ran (back to back), the
    median of those with their min-max: the machine's speed shifts between
    rounds, and a ratio within a round is immune to that. Otherwise, from
    medians."""
    h = cells.get(key)
    peers = {k: v for k, v in cells.items() if not k.startswith("herald") and v is not None}
    if not h or not peers:
        return "n/a", None
    pick = max if higher_better else min
    best_key = pick(peers, key=lambda k: peers[k]["median"])
    best = peers[best_key]["median"]
    if not best:
        return "n/a", None
    rs = same_round(key, best_key) if same_round else []
    if len(rs) > 1:
        r = statistics.median(rs)
        return f"{r:.2f}x [{min(rs):.2f}-{max(rs):.2f}] vs {best_key}", r
    r = h["median"] / best
    return f"{r:.2f}x vs {best_key}", r


def write_report(results_dir, opts, mach, mach_end, runs, counts, criterion, elapsed):
    servers = [s for s in SERVERS if s.key in opts.servers]
    scen = [s for s in SCENARIOS if s["id"] in opts.scenarios]
    by = {}
    for r in runs:
        by.setdefault((r["server"], r["scenario"]), []).append(r)

    def dig(out, path):
        for p in path:
            out = out.get(p) if isinstance(out, dict) else None
        return out if isinstance(out, (int, float)) else None

    def stat(server, sc_id, path):
        return summary([dig(r["out"], path) for r in by.get((server, sc_id), [])])

    def same_round(sc_id, path):
        """Per-round ratios of `path` between two servers (see ratio_row)."""
        def ratios(key, peer):
            mine = {r["round"]: dig(r["out"], path) for r in by.get((key, sc_id), [])}
            theirs = {r["round"]: dig(r["out"], path) for r in by.get((peer, sc_id), [])}
            return [mine[n] / theirs[n] for n in mine
                    if mine[n] is not None and theirs.get(n)]
        return ratios

    L = []
    L.append(f"# herald vs peers: {mach['date'][:10]}")
    L.append("")
    L.append(f"`scripts/bench{' --quick' if opts.quick else ''}`: {opts.rounds} round(s), "
             f"{opts.duration} s measured after {opts.warmup} s warm-up per run, "
             f"servers pinned to CPU {SERVER_CPU} and `herald bench` to CPU {CLIENT_CPU}, both at nice {opts.nice}; "
             f"whole run {elapsed / 60:.1f} min. Cells: median [min-max] over rounds. "
             "Ratios are herald / best peer (> 1 is better for rates, < 1 for costs): for timed "
             "metrics the median [min-max] of the ratios within each round, where the two ran "
             "back to back; for counts, from medians.")
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append("```")
    L.append(f"date      {mach['date']}")
    L.append(f"nproc     {mach['nproc']}")
    L.append(f"kernel    {mach['kernel']}")
    L.append(f"loadavg   start {mach['loadavg']}   end {mach_end['loadavg']}")
    L.append(f"rustc     {mach['rustc']}; node {mach['node']}; python {mach['python']}")
    L.append(f"herald    {mach['herald_commit']}")
    L.append("peers     " + ", ".join(f"{k} {v}" for k, v in mach["versions"].items()))
    L.append(mach["lscpu"])
    L.append("```")
    L.append("")

    # --- messages/s -----------------------------------------------------------
    echo = [s for s in scen if s["kind"] == "echo"]
    if echo:
        L.append("## Echo: messages/s")
        L.append("")
        L.append("Every connection keeps one message in flight. Higher is better.")
        L.append("")
        hdr = ["server"] + [s["label"] for s in echo]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        cols = {}
        for s in echo:
            cols[s["id"]] = {sv.key: stat(sv.key, s["id"], ["messages_per_sec"]) for sv in servers
                             if sv.supports(s)}
        for sv in servers:
            L.append("| " + " | ".join([sv.label] + [cell(cols[s["id"]].get(sv.key), "n") if sv.supports(s) else "n/a (no deflate)" for s in echo]) + " |")
        for key, label in herald_rows(servers):
            ratio_cells = [ratio_row(cols[s["id"]], True, key,
                                     same_round(s["id"], ["messages_per_sec"]))[0] for s in echo]
            L.append(f"| **{label} / best peer** | " + " | ".join(f"**{c}**" for c in ratio_cells) + " |")
        if any((TCP_ECHO.key, s["id"]) in by for s in echo):
            L.append("| " + " | ".join([TCP_ECHO.label] + [cell(stat(TCP_ECHO.key, s["id"], ["messages_per_sec"]), "n") if (TCP_ECHO.key, s["id"]) in by else "" for s in echo]) + " |")
        L.append("")
        notes = []
        for s in echo:
            ceil = stat(TCP_ECHO.key, s["id"], ["messages_per_sec"])
            best = [v["median"] for v in cols[s["id"]].values() if v]
            if ceil and best:
                notes.append(f"{s['label']}: {ceil['median'] / max(best):.2f}x")
        if notes:
            L.append("**Is the generator the bottleneck?** The raw TCP echo does no WebSocket work "
                     "at all; the generator's rate against it, relative to the fastest WebSocket "
                     "server: " + "; ".join(notes) + ". Near 1.0x the generator's core, not the "
                     "server, sets the pace (the server's CPU below 100 % says the same), so "
                     "messages/s ratios between the fast servers are compressed towards 1; the "
                     "server CPU per message and instructions per message below do not have "
                     "that limit.")
            L.append("")
        L.append("Server CPU utilisation during the measured window (from /proc/PID/stat; "
                 "below ~95 % the server was not the bottleneck) and, after the slash, "
                 "the generator's:")
        L.append("")
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for sv in servers:
            row = [sv.label]
            for s in echo:
                su = stat(sv.key, s["id"], ["server_cpu", "util"])
                gu = stat(sv.key, s["id"], ["generator_cpu_util"])
                row.append(f"{su['median'] * 100:.0f} % / {gu['median'] * 100:.0f} %" if su and gu else "n/a")
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        L.append("Server CPU time per message, µs (lower is better):")
        L.append("")
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        cpu_cols = {s["id"]: {sv.key: stat(sv.key, s["id"], ["server_cpu", "us_per_message"]) for sv in servers if sv.supports(s)} for s in echo}
        for sv in servers:
            L.append("| " + " | ".join([sv.label] + [cell(cpu_cols[s["id"]].get(sv.key), "us") for s in echo]) + " |")
        for key, label in herald_rows(servers):
            L.append(f"| **{label} / best peer** | " + " | ".join(f"**{ratio_row(cpu_cols[s['id']], False, key, same_round(s['id'], ['server_cpu', 'us_per_message']))[0]}**" for s in echo) + " |")
        L.append("")
        L.append("Round-trip time p50 / p99, µs (median over rounds):")
        L.append("")
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for sv in servers:
            row = [sv.label]
            for s in echo:
                p50 = stat(sv.key, s["id"], ["rtt_us", "p50"])
                p99 = stat(sv.key, s["id"], ["rtt_us", "p99"])
                row.append(f"{p50['median']:,.0f} / {p99['median']:,.0f}" if p50 and p99 else "n/a")
            L.append("| " + " | ".join(row) + " |")
        L.append("")

    # --- counted ----------------------------------------------------------------
    counted = [s for s in scen if s["kind"] in ("echo", "handshake")]
    if counts.get("instructions"):
        L.append("## User-space instructions per echoed message (callgrind)")
        L.append("")
        L.append("`valgrind --tool=callgrind` on the server, `herald bench echo --messages N`; "
                 "(total of a run of N) - (total of a run of 0 with the same connections), / N. "
                 "Deterministic up to how the messages batch per wakeup. Lower is better. "
                 "The handshake column is per handshake + close. "
                 "Issue 4's target: herald <= 0.85x fastwebsockets.")
        L.append("")
        hdr = ["server"] + [s["label"] for s in counted]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for sv in servers:
            if not sv.rust:
                continue
            row = [sv.label]
            for s in counted:
                v = counts["instructions"].get(sv.key, {}).get(s["id"])
                row.append(f"{v:,.0f}" if v is not None else "n/a")
            L.append("| " + " | ".join(row) + " |")
        for (key, label), peer in ((h, p) for h in herald_rows(servers)
                                   for p in ("fastwebsockets", "tokio-tungstenite")):
            row = [f"**{label} / {peer}**"]
            for s in counted:
                h = counts["instructions"].get(key, {}).get(s["id"])
                p = counts["instructions"].get(peer, {}).get(s["id"])
                mark = ""
                if h and p and peer == "fastwebsockets":
                    mark = " ✓" if h / p <= 0.85 else " ✗"
                row.append(f"**{h / p:.2f}x**{mark}" if h and p else "n/a")
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        L.append("tokio-tungstenite's count is almost all `memset` of its 128 KiB read "
                 "buffer per read (see callgrind/); valgrind counts every byte of a "
                 "`rep stosb` as an instruction, so this metric overstates that cost "
                 "against real CPU time, which the table above gives.")
        L.append("")
    if counts.get("syscalls"):
        L.append("## Syscalls per echoed message (handshake: per handshake + close)")
        L.append("")
        L.append(f"Counted with {counts['syscall_tool']} on the server process: run of N minus run of 0. "
                 "The largest kinds follow the total.")
        L.append("")
        hdr = ["server"] + [s["label"] for s in counted]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for sv in servers:
            row = [sv.label]
            for s in counted:
                c = counts["syscalls"].get(sv.key, {}).get(s["id"])
                if not c:
                    row.append("n/a")
                    continue
                top = sorted(((k, v) for k, v in c.items() if k != "total"), key=lambda kv: -kv[1])[:3]
                row.append(f"**{c.get('total', 0):.2f}** (" + ", ".join(f"{k} {v:.2f}" for k, v in top) + ")")
            L.append("| " + " | ".join(row) + " |")
        L.append("")

    # --- idle and handshake -------------------------------------------------------
    idle = [s for s in scen if s["kind"] == "idle"]
    hs = [s for s in scen if s["kind"] == "handshake"]
    if idle or hs:
        L.append("## Memory and handshakes")
        L.append("")
        hdr = ["server"]
        cols = []
        for s in idle:
            hdr += [f"RSS per idle connection ({s['connections']:,})", "connects/s (client)"]
            cols += [(s["id"], ["server_bytes_per_connection"], "bytes", False),
                     (s["id"], ["connects_per_sec"], "n", True)]
        for s in hs:
            hdr += ["handshakes/s", "server CPU per handshake, µs", "upgrade latency p50 / p99, µs"]
            cols += [(s["id"], ["handshakes_per_sec"], "n", True),
                     (s["id"], ["server_cpu", "us_per_handshake"], "us", False),
                     (s["id"], None, "lat", None)]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        per_col = []
        for sc_id, path, kind, hb in cols:
            per_col.append({sv.key: stat(sv.key, sc_id, path) if path else None for sv in servers})
        for sv in servers:
            row = [sv.label]
            for (sc_id, path, kind, hb), c in zip(cols, per_col):
                if kind == "lat":
                    p50 = stat(sv.key, sc_id, ["upgrade_us", "p50"])
                    p99 = stat(sv.key, sc_id, ["upgrade_us", "p99"])
                    row.append(f"{p50['median']:,.0f} / {p99['median']:,.0f}" if p50 and p99 else "n/a")
                else:
                    row.append(cell(c.get(sv.key), kind))
            L.append("| " + " | ".join(row) + " |")
        for key, label in herald_rows(servers):
            row = [f"**{label} / best peer**"]
            for (sc_id, path, kind, hb), c in zip(cols, per_col):
                # Timed columns pair rounds; idle RSS is a count, by medians.
                paired = same_round(sc_id, path) if kind != "bytes" else None
                row.append("" if kind == "lat" else f"**{ratio_row(c, hb, key, paired)[0]}**")
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        L.append("Issue 4's targets: idle memory <= 1 KiB per connection; server CPU per "
                 "handshake <= 24 µs (from /proc/PID/stat utime+stime over the measured "
                 "window / handshakes; the client's core saturates first, so handshakes/s "
                 "says less).")
        L.append("")

    # --- criterion ------------------------------------------------------------------
    if criterion:
        L.append("## herald-proto micro-benchmarks (criterion)")
        L.append("")
        if not criterion["ok"]:
            L.append("`cargo bench -p herald-proto` failed; see criterion.txt.")
            L.append("")
        if criterion["rows"]:
            L.append("| benchmark | median | rate |")
            L.append("|---|---|---|")
            for r in criterion["rows"]:
                ns = r["median_ns"]
                t = f"{ns:,.1f} ns" if ns < 10_000 else f"{ns / 1000:,.1f} µs"
                L.append(f"| `{r['id']}` | {t} | {r['rate'] or ''} |")
            L.append("")
        if criterion["alloc_lines"]:
            L.append("```")
            L += criterion["alloc_lines"]
            L.append("```")
            L.append("")

    L.append("## Files")
    L.append("")
    L.append("- `results.json`: every run's full `herald bench` output, the counts, the machine.")
    L.append("- `chart.svg`: messages/s per scenario (median, min-max whiskers), instructions per message.")
    L.append("- `callgrind/`: `callgrind_annotate` of the Rust servers' counted runs.")
    L.append("- `criterion.txt`: the output of `cargo bench -p herald-proto`.")
    if (results_dir / "analysis.md").exists():
        L.append("- `analysis.md`: where herald is behind and why, written after the run.")
    L.append("")
    (results_dir / "results.md").write_text("\n".join(L))


# ----- main ---------------------------------------------------------------------


def rewrite_report(path):
    data = json.loads(path.read_text())
    opts = argparse.Namespace(**data["options"])
    write_report(path.parent, opts, data["machine"], data["machine_end"], data["runs"],
                 data["counts"], data["criterion"], data["elapsed_s"])
    sys.path.insert(0, str(BENCH))
    import chart  # noqa: E402

    chart.write(path.parent / "chart.svg", data, SERVERS, SCENARIOS, TCP_ECHO)
    log(f"rewrote {path.parent / 'results.md'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 3 s per run, smaller counts")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--only", help="servers, comma-separated: " + ",".join(s.key for s in SERVERS))
    ap.add_argument("--scenarios", help="comma-separated: " + ",".join(s["id"] for s in SCENARIOS))
    ap.add_argument("--skip-timed", action="store_true", help="only the counted runs")
    ap.add_argument("--keep-scratch", action="store_true",
                    help="keep <results>/scratch: server logs, raw callgrind profiles")
    ap.add_argument("--skip-callgrind", action="store_true")
    ap.add_argument("--skip-syscalls", action="store_true")
    ap.add_argument("--skip-criterion", action="store_true")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the raw TCP echo runs")
    ap.add_argument("--out", help="results directory (default bench/results/<date>[-quick])")
    ap.add_argument("--report", metavar="RESULTS_JSON",
                    help="only rewrite results.md and chart.svg next to an existing results.json")
    ap.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0,
                    help="niceness of servers and generator (default -10 as root, else 0)")
    opts = ap.parse_args()
    if opts.report:
        return rewrite_report(Path(opts.report))
    opts.rounds = opts.rounds or (1 if opts.quick else 3)
    opts.duration = opts.duration or (3.0 if opts.quick else 4.0)
    opts.warmup = opts.warmup if opts.warmup is not None else 1.0
    opts.servers = opts.only.split(",") if opts.only else [s.key for s in SERVERS]
    opts.scenarios = opts.scenarios.split(",") if opts.scenarios else [s["id"] for s in SCENARIOS]
    for k in opts.servers:
        if k not in [s.key for s in SERVERS]:
            ap.error(f"unknown server {k}")
    for k in opts.scenarios:
        if k not in [s["id"] for s in SCENARIOS]:
            ap.error(f"unknown scenario {k}")
    count_scale = 0.25 if opts.quick else 1.0
    NICE[2] = str(opts.nice)

    started = time.time()
    date = dt.date.today().isoformat()
    results_dir = Path(opts.out) if opts.out else BENCH / "results" / (date + ("-quick" if opts.quick else ""))
    results_dir.mkdir(parents=True, exist_ok=True)
    scratch = results_dir / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    (results_dir / "callgrind").mkdir(exist_ok=True)
    mach = machine()
    log(f"results in {results_dir}; load average {mach['loadavg']}")

    criterion = None
    if not opts.skip_criterion:
        criterion = run_criterion(opts, results_dir)

    servers = [s for s in SERVERS if s.key in opts.servers]
    scen = [s for s in SCENARIOS if s["id"] in opts.scenarios]
    runs = []
    for rnd in range(0 if opts.skip_timed else opts.rounds):
        order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
        for sc in scen:
            todo = [s for s in order if s.supports(sc)]
            if sc["kind"] == "echo" and not sc.get("text") and not sc.get("deflate") and not opts.no_ceiling:
                todo.append(TCP_ECHO)
            for sv in todo:
                metric, out = timed_run(sv, sc, opts, scratch)
                runs.append({"round": rnd + 1, "server": sv.key, "scenario": sc["id"], "out": out})
                m = f"{metric:,.0f}" if isinstance(metric, (int, float)) else "n/a"
                util = (out.get("server_cpu") or {}).get("util")
                u = f" (server CPU {util * 100:.0f} %)" if util is not None else ""
                log(f"round {rnd + 1}/{opts.rounds} {sc['id']:<14} {sv.key:<18} {m}{u}")

    counts = {"instructions": {}, "syscalls": {}}
    if not opts.skip_syscalls:
        use_perf = have_perf_tracepoints()
        if not use_perf and not shutil.which("strace"):
            log("no perf tracepoints and no strace: syscalls not counted")
        else:
            counts["syscall_tool"] = "perf stat -e raw_syscalls:sys_enter" if use_perf else "strace -c -f"
            for sc in scen:
                if sc["kind"] not in ("echo", "handshake"):
                    continue
                for sv in servers:
                    if not sv.supports(sc):
                        continue
                    n = max(100, int(sc["messages"] * count_scale))
                    try:
                        c = count_syscalls(sv, sc, n, scratch, use_perf)
                    except Exception as e:  # noqa: BLE001 - report and go on
                        log(f"    ! syscalls {sv.key} {sc['id']}: {e}")
                        c = None
                    counts["syscalls"].setdefault(sv.key, {})[sc["id"]] = c
                    if c:
                        log(f"syscalls {sc['id']:<14} {sv.key:<18} {c.get('total', 0):.2f} per message")

    if not opts.skip_callgrind and shutil.which("valgrind"):
        cache = {}
        for sc in scen:
            if sc["kind"] not in ("echo", "handshake"):
                continue
            for sv in servers:
                if not sv.rust or not sv.supports(sc):
                    continue
                n = max(100, int(sc["messages"] * count_scale * sv.scale))
                try:
                    per, out_file = count_instructions(sv, sc, n, scratch, cache)
                except Exception as e:  # noqa: BLE001
                    log(f"    ! callgrind {sv.key} {sc['id']}: {e}")
                    continue
                counts["instructions"].setdefault(sv.key, {})[sc["id"]] = per
                log(f"callgrind {sc['id']:<14} {sv.key:<18} {per:,.0f} instructions per message")
                ann = sh(f"callgrind_annotate --threshold=99 {out_file} 2>/dev/null | head -60")
                incl = sh(f"callgrind_annotate --inclusive=yes {out_file} 2>/dev/null | sed -n '20,90p'")
                (results_dir / "callgrind" / f"{sv.key}.{sc['id']}.txt").write_text(
                    f"# {sv.key}, {sc['label']}: {n} messages; {per:,.1f} instructions per message "
                    f"after subtracting the baseline run\n\n## self\n\n{ann}\n\n## inclusive\n\n{incl}\n")

    mach_end = machine()
    elapsed = time.time() - started
    data = {"machine": mach, "machine_end": mach_end, "options": {k: v for k, v in vars(opts).items()},
            "runs": runs, "counts": counts, "criterion": criterion, "elapsed_s": elapsed}
    (results_dir / "results.json").write_text(json.dumps(data, indent=1, default=str))
    write_report(results_dir, opts, mach, mach_end, runs, counts, criterion, elapsed)
    sys.path.insert(0, str(BENCH))
    import chart  # noqa: E402

    chart.write(results_dir / "chart.svg", data, SERVERS, SCENARIOS, TCP_ECHO)
    if not opts.keep_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"done in {elapsed / 60:.1f} min: {results_dir / 'results.md'}")


if __name__ == "__main__":
    main()
