#!/usr/bin/env python3
"""The fan-out benchmark: herald serve against two baselines and the field.

    bench/fanout.py [--quick] [--subscribers N] [--duration S] [--rate R]
                    [--in-flight K] [--only SERVER,...] [--skip-install]
                    [--server-threads 1,2] [--server-cpus 0] [--generator-cpus 1]

One command from a fresh clone: builds herald and bench/peers in release
mode, installs the Node peers from bench/package-lock.json (only when
node_modules does not match it), then for each server and each load:
starts the server alone on CPU 0 (taskset), runs `herald bench fanout` on
CPU 1 with N subscribers on one channel (10,000 by default), and stops the
server. Two loads:

- `rate`: R publications/s (10 by default) for S seconds, open loop;
- `saturation`: closed loop, at most K publications (64 by default) on
  their way to some subscriber at any time, from P publisher connections
  (8 by default): the most deliveries/s the server sustains without
  unbounded queues. Several publishers matter: a server that answers a
  publication only after its fan-out (herald on one thread) would
  otherwise never have more than one publication queued per subscriber.

`--server-threads 1,2` adds `herald serve --threads 2` (key `herald-t2`)
beside the one-thread run (`2mt`: `--threads 2 --multi-thread`), with a ratio table of the two; `--server-cpus`
and `--generator-cpus` change the pinning (see bench/README.md, "Threads",
for what each placement measures on a 2-core machine).

Servers: herald serve (one thread), the send-loop and combining baselines
(bench/peers fanout-sendloop, fanout-combining), Node `ws` (fanout_ws.mjs)
and Socket.IO 4 (fanout_socketio.mjs). Writes bench/results/<date>-fanout/
results.md, results.json and chart.svg. Python 3 standard library only.
"""

import argparse
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HERALD = ROOT / "target" / "release" / "herald"
PEERS = BENCH / "peers" / "target" / "release"
SERVER_CPU = "0"
CLIENT_CPU = "1"

# key, label, port, command, generator protocol
SERVERS = [
    ("herald", "herald serve (1 thread)", 19201,
     [HERALD, "serve", "--listen", "127.0.0.1:{port}", "--no-demos", "--threads", "1"], "herald"),
    ("sendloop", "send loop (baseline)", 19202, [PEERS / "fanout-sendloop", "127.0.0.1:{port}"], "herald"),
    ("combining", "combining (baseline)", 19203, [PEERS / "fanout-combining", "127.0.0.1:{port}"], "herald"),
    ("socketio", "Socket.IO 4", 19204, ["node", BENCH / "fanout_socketio.mjs", "{port}"], "socketio"),
    ("ws", "Node ws loop", 19205, ["node", BENCH / "fanout_ws.mjs", "{port}"], "herald"),
]
COLORS = {"herald": "#d62728", "sendloop": "#1f77b4", "combining": "#2ca02c",
          "socketio": "#8c564b", "ws": "#9467bd"}
THREAD_COLORS = ["#ff7f0e", "#e377c2", "#bcbd22"]


def add_thread_counts(counts):
    """herald serve --threads N for each N of `counts` but 1, after the 1-thread entry."""
    at = next(i for i, s in enumerate(SERVERS) if s[0] == "herald")
    _, _, port, cmd, protocol = SERVERS[at]
    for j, c in enumerate(c for c in counts if c != "1"):
        # "2mt": --threads 2 --multi-thread, tokio's multi-thread runtime.
        n, mt = c.removesuffix("mt"), c.endswith("mt")
        key = f"herald-t{c}"
        label = f"herald serve ({n} threads{', tokio multi-thread' if mt else ''})"
        SERVERS.insert(at + 1 + j, (key, label, port + 100 * (j + 1),
                                    [*cmd[:-1], n, *(["--multi-thread"] if mt else [])], protocol))
        COLORS[key] = THREAD_COLORS[j % len(THREAD_COLORS)]
    if "1" not in counts:
        del SERVERS[at]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except subprocess.TimeoutExpired:
        return ""


def step(what, cmd, cwd=ROOT, env=None):
    log(f"fanout: {what}")
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        log(p.stdout[-3000:], p.stderr[-3000:])
        sys.exit(f"fanout: failed: {' '.join(map(str, cmd))}")


def node_modules_current():
    lock = BENCH / "package-lock.json"
    have = BENCH / "node_modules" / ".package-lock.json"
    if not have.exists():
        return False
    want = json.loads(lock.read_text())["packages"]
    got = json.loads(have.read_text()).get("packages", {})
    return all(k == "" or (k in got and got[k].get("version") == v.get("version"))
               for k, v in want.items())


def install():
    """Idempotent: cargo skips what is built, npm runs only on a mismatch."""
    step("building herald (release)", ["cargo", "build", "--release", "-q", "-p", "herald-cli"])
    step("building bench/peers (release)", ["cargo", "build", "--release", "-q", "--locked"],
         cwd=BENCH / "peers")
    if not node_modules_current():
        step("npm: installing bench/package-lock.json",
             ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH)


class Running:
    """A server pinned to the server CPU; ready when its port accepts."""

    def __init__(self, key, port, cmd, scratch):
        self.log_path = scratch / f"{key}.log"
        self.log = open(self.log_path, "w")
        argv = ["taskset", "-c", SERVER_CPU, *[str(c).format(port=port) for c in cmd]]
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=self.log, cwd=BENCH, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{key} exited at start: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"{key} did not start: {self.log_path.read_text()[-2000:]}")
                time.sleep(0.05)
        time.sleep(0.5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def generator(port, protocol, pid, opts, load):
    cmd = ["taskset", "-c", CLIENT_CPU, HERALD, "bench", "fanout",
           "--server", f"http://127.0.0.1:{port}", "--protocol", protocol,
           "--subscribers", opts.subscribers, "--threads", opts.threads,
           "--duration", f"{opts.duration}s", "--drain", "15s",
           "--size", opts.size, "--server-pid", pid, "--json"]
    if load == "saturation":
        cmd += ["--in-flight", opts.in_flight, "--publishers", opts.publishers]
    else:
        cmd += ["--rate", opts.rate]
    cmd = [str(c) for c in cmd]
    timeout = opts.duration + 240
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out", "cmd": " ".join(cmd)}
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    try:
        out = json.loads(line)
    except json.JSONDecodeError:
        return {"error": f"exit {p.returncode}: {p.stderr.strip()[-500:]}", "cmd": " ".join(cmd)}
    out["exit"] = p.returncode
    return out


class ThreadGauges:
    """Polls herald's /metrics during a run for herald_thread_connections{thread}:
    the most connections each server thread held at once (how the kernel spread them)."""

    def __init__(self, port):
        self.url, self.most, self.stop = f"http://127.0.0.1:{port}/metrics", {}, threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def poll(self):
        while not self.stop.wait(1.0):
            try:
                text = urllib.request.urlopen(self.url, timeout=2).read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith('herald_thread_connections{thread="'):
                    name, value = line.rsplit(" ", 1)
                    t = name.split('"')[1]
                    self.most[t] = max(self.most.get(t, 0), int(float(value)))

    def done(self):
        self.stop.set()
        self.thread.join()
        return dict(sorted(self.most.items()))


def machine():
    herald_src = sh(f"git -C {ROOT} log -1 --format='%h %cI %s' -- crates/herald-server crates/herald crates/herald-proto")
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": sh("nproc"),
        "cpu": sh("lscpu | grep 'Model name' | sed 's/.*: *//'"),
        "kernel": sh("uname -srvm"),
        "loadavg_start": sh("cat /proc/loadavg"),
        "rustc": sh("rustc --version"),
        "node": sh("node --version"),
        "commit": sh(f"git -C {ROOT} rev-parse HEAD") + (
            " (+ uncommitted changes in crates/)" if sh(f"git -C {ROOT} status --porcelain -- crates") else ""),
        "herald_server_last_change": herald_src,
        "ulimit_n": sh("ulimit -n"),
        "versions": {
            "socket.io (npm)": npm_version("socket.io"),
            "ws (npm)": npm_version("ws"),
        },
    }


def npm_version(name):
    pkg = BENCH / "node_modules" / name / "package.json"
    return json.loads(pkg.read_text())["version"] if pkg.exists() else None


# ----- the report -----------------------------------------------------------------


def get(r, *path):
    for p in path:
        r = r.get(p) if isinstance(r, dict) else None
    return r


def num(v, d=0):
    if v is None:
        return "–"
    if isinstance(v, float) and d == 0 and abs(v) < 10:
        d = 2
    return f"{v:,.{d}f}"


def wait(r, who):
    """Share of the wall time the process was runnable but had no CPU."""
    w, wall = get(r, who, "runqueue_wait_s"), r.get("wall_seconds")
    return f"{100 * w / wall:.0f} %" if w is not None and wall else "–"


def per_core(r):
    """Deliveries per second of server CPU time (all of it, user + kernel)."""
    us = get(r, "server_cpu", "us_per_delivery")
    return 1e6 / us if us else None


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "–"


def table(runs, load):
    rows = [
        "| server | deliveries/s | all reached p50 / p99 (ms) | missed pubs | server CPU / delivery (us): total, user, kernel | deliveries per server CPU-second | server RSS / subscribed conn | generator CPU | waiting for a CPU: server, generator |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label, *_ in SERVERS:
        r = runs.get(key, {}).get(load)
        if r is None:
            continue
        if "error" in r and "deliveries_per_sec" not in r:
            rows.append(f"| {label} | error: {escape(r['error'][:120])} | | | | | | | |")
            continue
        missed = r.get("missed_publications")
        extra = []
        if r.get("out_of_order"):
            extra.append(f"{r['out_of_order']} out of order")
        if r.get("connections_lost"):
            extra.append(f"{r['connections_lost']} connections lost")
        rows.append(
            f"| {label} | {num(r.get('deliveries_per_sec'))} "
            f"| {num(get(r, 'all_reached_us', 'p50') / 1e3, 1)} / {num(get(r, 'all_reached_us', 'p99') / 1e3, 1)} "
            f"| {missed} of {r.get('publications')}{' (' + ', '.join(extra) + ')' if extra else ''} "
            f"| {num(get(r, 'server_cpu', 'us_per_delivery'), 2)}, {num(get(r, 'server_cpu', 'user_us_per_delivery'), 2)}, {num(get(r, 'server_cpu', 'system_us_per_delivery'), 2)} "
            f"| {num(per_core(r))} "
            f"| {num(r.get('server_bytes_per_connection'))} B "
            f"| {num(100 * get(r, 'generator_cpu', 'util'), 0)} % "
            f"| {wait(r, 'server_cpu')}, {wait(r, 'generator_cpu')} |")
    return "\n".join(rows)


def ratios(runs):
    h = runs.get("herald", {})
    lines = [
        "| herald / peer | CPU per delivery at the rate (lower is better) | p99 all reached at the rate (lower is better) | saturation deliveries/s (higher is better) | deliveries per server CPU-second at saturation (higher is better) | RSS per connection (lower is better) |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, *_ in SERVERS:
        if key.startswith("herald") or key not in runs:
            continue
        p = runs[key]
        lines.append(
            f"| herald / {label} "
            f"| {ratio(get(h, 'rate', 'server_cpu', 'us_per_delivery'), get(p, 'rate', 'server_cpu', 'us_per_delivery'))} "
            f"| {ratio(get(h, 'rate', 'all_reached_us', 'p99'), get(p, 'rate', 'all_reached_us', 'p99'))} "
            f"| {ratio(get(h, 'saturation', 'deliveries_per_sec'), get(p, 'saturation', 'deliveries_per_sec'))} "
            f"| {ratio(per_core(h.get('saturation') or {}), per_core(p.get('saturation') or {}))} "
            f"| {ratio(get(h, 'rate', 'server_bytes_per_connection'), get(p, 'rate', 'server_bytes_per_connection'))} |")
    return "\n".join(lines)


def thread_ratios(runs):
    """herald serve --threads N against --threads 1, same placement, same run."""
    one = runs.get("herald")
    keys = [k for k, *_ in SERVERS if k.startswith("herald-t") and k in runs]
    if not one or not keys:
        return None
    lines = [
        "| N threads / 1 thread | deliveries/s at saturation (higher is better) | CPU per delivery at saturation (lower is better) | CPU per delivery at the rate (lower is better) | p99 all reached at the rate (lower is better) | p99 all reached at saturation (lower is better) |",
        "|---|---|---|---|---|---|",
    ]
    for key in keys:
        t = runs[key]
        label = next(label for k, label, *_ in SERVERS if k == key)
        lines.append(
            f"| {label} / 1 thread "
            f"| {ratio(get(t, 'saturation', 'deliveries_per_sec'), get(one, 'saturation', 'deliveries_per_sec'))} "
            f"| {ratio(get(t, 'saturation', 'server_cpu', 'us_per_delivery'), get(one, 'saturation', 'server_cpu', 'us_per_delivery'))} "
            f"| {ratio(get(t, 'rate', 'server_cpu', 'us_per_delivery'), get(one, 'rate', 'server_cpu', 'us_per_delivery'))} "
            f"| {ratio(get(t, 'rate', 'all_reached_us', 'p99'), get(one, 'rate', 'all_reached_us', 'p99'))} "
            f"| {ratio(get(t, 'saturation', 'all_reached_us', 'p99'), get(one, 'saturation', 'all_reached_us', 'p99'))} |")
    spread = [f"{label}, {load}: {get(runs, key, load, 'thread_connections_most')}"
              for key, label, *_ in SERVERS if key.startswith("herald-t") and key in runs
              for load in ("rate", "saturation") if get(runs, key, load, "thread_connections_most")]
    if spread:
        lines += ["", "Most connections each thread held (`herald_thread_connections{thread}`, polled "
                  "from /metrics every second): " + "; ".join(spread) + "."]
    return "\n".join(lines)


def headroom(runs):
    c = get(runs, "combining", "saturation")
    if not c or "deliveries_per_sec" not in c:
        return "No saturation run against the combining baseline: no headroom figure."
    wall = c.get("wall_seconds") or 0
    g = 100 * (get(c, "generator_cpu", "util") or 0)
    s = 100 * (get(c, "server_cpu", "util") or 0)
    gw = 100 * (get(c, "generator_cpu", "runqueue_wait_s") or 0) / wall if wall else 0
    sw = 100 * (get(c, "server_cpu", "runqueue_wait_s") or 0) / wall if wall else 0
    text = (
        f"Against the combining baseline at saturation ({num(c.get('deliveries_per_sec'))} deliveries/s) "
        f"the generator ran **{g:.0f} %** of the time on CPU 1 and waited for a CPU {gw:.0f} %; "
        f"the server ran **{s:.0f} %** on CPU 0 and waited {sw:.0f} %. ")
    if g + gw < 85:
        text += ("The generator was idle part of the time: it had headroom, and the saturation "
                 "figures are the servers'.")
    elif g < 85:
        text += ("The generator was runnable nearly all the time but got a CPU only part of it: "
                 "other work on the machine, not the generator's own cost, limited this run; "
                 "the saturation figures are the machine's, and CPU per delivery is the figure to compare.")
    else:
        text += ("The generator used nearly all of its core: the saturation figures are the "
                 "generator's ceiling, not the servers' (see bench/README.md).")
    return text


def chart(runs, path):
    panels = [
        ("rate", ("server_cpu", "us_per_delivery"), "server CPU per delivery at the rate (us)"),
        ("rate", ("all_reached_us", "p99"), "p99 until the last subscriber has it (us)"),
        ("saturation", ("deliveries_per_sec",), "deliveries/s at saturation"),
        ("rate", ("server_bytes_per_connection",), "server RSS per subscribed connection (B)"),
    ]
    w, h, pad_l, pad_t, bar_h = 360, 170, 150, 28, 22
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * 2}" height="{h * 2}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w * 2}" height="{h * 2}" fill="white"/>']
    for i, (load, field, title) in enumerate(panels):
        x0, y0 = (i % 2) * w, (i // 2) * h
        svg.append(f'<text x="{x0 + 10}" y="{y0 + 18}" font-weight="bold">{escape(title)}</text>')
        vals = [(label, key, get(runs, key, load, *field)) for key, label, *_ in SERVERS if key in runs]
        top = max((v for _, _, v in vals if v), default=1)
        for j, (label, key, v) in enumerate(vals):
            y = y0 + pad_t + j * (bar_h + 4)
            svg.append(f'<text x="{x0 + pad_l - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
            if v:
                bw = (w - pad_l - 60) * v / top
                svg.append(f'<rect x="{x0 + pad_l}" y="{y}" width="{bw:.1f}" height="{bar_h}" fill="{COLORS[key]}"/>')
                svg.append(f'<text x="{x0 + pad_l + bw + 4:.1f}" y="{y + 15}">{escape(num(v, 1 if v < 100 else 0))}</text>')
    svg.append("</svg>")
    path.write_text("\n".join(svg) + "\n")


def report(results_dir, opts, mach, runs, elapsed, quick):
    md = [
        f"# Fan-out: herald serve against baselines and the field ({mach['date'][:10]})",
        "",
        "Measured herald: the commit below.",
        "",
        f"- commit measured: `{mach['commit']}`; last change to herald's server crates: `{mach['herald_server_last_change']}`",
        f"- machine: {mach['nproc']} cores ({mach['cpu']}), {mach['kernel']}, load at start `{mach['loadavg_start']}`; shared with other work",
        f"- {mach['rustc']}, node {mach['node']}, socket.io {mach['versions']['socket.io (npm)']}, ws {mach['versions']['ws (npm)']}",
        f"- server on CPU {getattr(opts, 'server_cpus', '0')} (taskset), generator (`herald bench fanout`, "
        f"{opts.threads} thread(s)) on CPU {getattr(opts, 'generator_cpus', '1')}",
        f"- {opts.subscribers} subscribers on one channel, {opts.size}-byte payloads, no permessage-deflate; "
        f"each load {opts.duration} s of publishing; one run per cell{' (quick mode)' if quick else ''}"
        + (f"; took {elapsed / 60:.1f} min" if elapsed else ""),
        "",
        "Command: `" + mach.get("command", "bench/fanout.py") + "`",
        "",
        f"## {opts.rate} publications/s",
        "",
        table(runs, "rate"),
        "",
        f"## Saturation (closed loop, at most {opts.in_flight} publications in flight, "
        f"{getattr(opts, 'publishers', 1)} publisher connections)",
        "",
        table(runs, "saturation"),
        "",
        "## Ratios",
        "",
        ratios(runs),
        "",
        *(["## Threads", "", thread_ratios(runs), ""] if thread_ratios(runs) else []),
        "## Generator headroom",
        "",
        headroom(runs),
        "",
        "## How to read this",
        "",
        "- *all reached*: per publication, from the publisher's timestamp to the moment the last",
        "  subscriber had it (the generator's clock; same machine). Its p50/p99 are over publications.",
        "- *missed pubs*: publications that did not reach every subscriber within the drain time (15 s).",
        "- *server CPU / delivery*: the server process's utime and stime (/proc/PID/stat, 10 ms ticks)",
        "  from the first publication to the last delivery, divided by deliveries. At 10/s this",
        "  includes whatever the server does while idle (herald's keepalive pings, Node's timers).",
        "- *RSS / subscribed conn*: /proc/PID/status VmRSS after all subscribed minus before the first",
        "  connection, over the subscribers. Node's includes whatever its GC has not returned.",
        "- The generator speaks herald's protocol to herald, the baselines and the Node ws peer, and",
        "  Engine.IO 4 / Socket.IO to Socket.IO (pongs its pings); every payload is checked for its",
        "  sequence number: every subscriber must see every publication in order.",
        "- *waiting for a CPU*: time the process's threads were runnable but not running",
        "  (/proc/PID/task/*/schedstat, summed over threads, so Node's helper threads count),",
        "  over the measured wall time. Well above zero means other",
        "  work on the machine took CPU from the run: then deliveries/s and latencies are the",
        "  machine's, not the server's, and CPU per delivery (and deliveries per CPU-second) are",
        "  the figures to compare.",
    ]
    (results_dir / "results.md").write_text("\n".join(md) + "\n")


def main():
    global SERVER_CPU, CLIENT_CPU
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 subscribers, 5 s per load")
    ap.add_argument("--subscribers", type=int)
    ap.add_argument("--threads", type=int, default=1, help="generator threads (all on CPU 1)")
    ap.add_argument("--duration", type=float, help="seconds of publishing per load (default 10)")
    ap.add_argument("--rate", type=float, default=10.0, help="publications/s of the rate load")
    ap.add_argument("--in-flight", type=int, default=64, help="publications in flight at saturation")
    ap.add_argument("--publishers", type=int, default=8,
                    help="publisher connections at saturation (the rate load uses one)")
    ap.add_argument("--size", type=int, default=100, help="payload bytes")
    ap.add_argument("--only", help="comma-separated server keys: " + ",".join(s[0] for s in SERVERS))
    ap.add_argument("--loads", default="rate,saturation")
    ap.add_argument("--skip-install", action="store_true")
    ap.add_argument("--out", help="results directory (default bench/results/<date>-fanout)")
    ap.add_argument("--server-threads", default="1",
                    help="comma-separated thread counts of herald serve (1,2: both, side by side; "
                         "2mt: 2 threads on tokio's multi-thread runtime)")
    ap.add_argument("--server-cpus", default=SERVER_CPU, help="taskset CPU list of the servers")
    ap.add_argument("--generator-cpus", default=CLIENT_CPU, help="taskset CPU list of the generator")
    ap.add_argument("--report-only", metavar="DIR", help="rewrite DIR's results.md and chart.svg from its results.json")
    opts = ap.parse_args()
    if opts.report_only:
        d = Path(opts.report_only)
        saved = json.loads((d / "results.json").read_text())
        o = argparse.Namespace(**saved["options"])
        add_thread_counts(getattr(o, "server_threads", "1").split(","))
        report(d, o, saved["machine"], saved["runs"], saved.get("elapsed", 0), o.quick)
        chart(saved["runs"], d / "chart.svg")
        return
    quick = opts.quick
    SERVER_CPU, CLIENT_CPU = opts.server_cpus, opts.generator_cpus
    add_thread_counts(opts.server_threads.split(","))
    opts.subscribers = opts.subscribers or (2000 if quick else 10_000)
    opts.duration = opts.duration or (5.0 if quick else 10.0)
    if not opts.skip_install:
        install()
    soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    need = opts.subscribers + 200
    if soft < need:
        __import__("resource").setrlimit(__import__("resource").RLIMIT_NOFILE, (min(hard, need), hard))
        if min(hard, need) < need:
            sys.exit(f"fanout: ulimit -n is {hard}; {need} files needed per process")
    only = set(opts.only.split(",")) if opts.only else None
    loads = opts.loads.split(",")
    results_dir = Path(opts.out) if opts.out else BENCH / "results" / f"{dt.date.today().isoformat()}-fanout"
    results_dir.mkdir(parents=True, exist_ok=True)
    scratch = results_dir / "logs"
    scratch.mkdir(exist_ok=True)
    mach = machine()
    mach["command"] = " ".join(["bench/fanout.py", *sys.argv[1:]])
    log(f"fanout: measuring commit {mach['commit']}")
    runs = {}
    t0 = time.time()
    for key, label, port, cmd, protocol in SERVERS:
        if only and key not in only and not (key.startswith("herald-t") and "herald" in only):
            continue
        for load in loads:
            log(f"fanout: {label}, {load}, {opts.subscribers} subscribers")
            server = Running(key, port, cmd, scratch)
            gauges = ThreadGauges(port) if key.startswith("herald-t") else None
            try:
                r = generator(port, protocol, server.proc.pid, opts, load)
            finally:
                if gauges:
                    r_threads = gauges.done()
                server.stop()
            if gauges:
                r["thread_connections_most"] = r_threads
            runs.setdefault(key, {})[load] = r
            if "error" in r and "deliveries_per_sec" not in r:
                log(f"fanout:   error: {r['error']}")
            else:
                log(f"fanout:   {r['deliveries_per_sec']:,} deliveries/s, p99 all reached "
                    f"{r['all_reached_us']['p99'] / 1e3:.1f} ms, missed {r['missed_publications']}, "
                    f"server {get(r, 'server_cpu', 'us_per_delivery')} us/delivery, "
                    f"{r.get('server_bytes_per_connection')} B/conn, generator {100 * r['generator_cpu']['util']:.0f} %")
            time.sleep(1)
    elapsed = time.time() - t0
    mach["loadavg_end"] = sh("cat /proc/loadavg")
    (results_dir / "results.json").write_text(json.dumps(
        {"machine": mach, "options": {**vars(opts), "quick": quick}, "elapsed": elapsed, "runs": runs},
        indent=2) + "\n")
    report(results_dir, opts, mach, runs, elapsed, quick)
    chart(runs, results_dir / "chart.svg")
    log(f"fanout: wrote {results_dir}/results.md")


if __name__ == "__main__":
    main()
