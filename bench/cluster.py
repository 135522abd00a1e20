#!/usr/bin/env python3
"""Several nodes through Redis (issue 15): what the Redis broker costs.

    bench/cluster.py [--quick] [--subscribers N] [--duration S] [--rate R]
                     [--in-flight K] [--publishers P] [--nodes 3] [--history 100]
                     [--scenarios memory,redis1,redis3] [--loads rate,saturation]
                     [--out DIR] [--skip-build] [--report-only DIR]

One command from a fresh clone (needs redis-server: scripts/install-peers
installs Debian's). Builds herald in release mode (cargo skips what is
built), then for each scenario and each load starts everything itself on
free ports of 127.0.0.1, runs `herald bench fanout`, and stops everything:

- `memory`: one `herald serve --threads 1`, the in-process broker;
- `redis1`: the same node with `--broker redis://...`, and a redis-server;
- `redis3`: three such nodes on one redis-server; the subscribers are
  spread round robin over the three, the publishers post to the first.

The server side (every node and redis-server) runs on CPU 0 (taskset), the
generator on CPU 1, as in bench/fanout.py: the scenarios get the same one
core, so CPU per delivery is the figure that compares them, and
deliveries/s at saturation is what one core does with each layout.

Two loads, as bench/fanout.py's: `rate` (R publications/s, open loop) and
`saturation` (closed loop, at most K publications in flight from P
publisher connections). Per scenario and load: deliveries/s,
publish-to-delivery p50/p99 (to the last subscriber, and per delivery),
the time until the API answered a publication, CPU per delivery and per
publication of the herald nodes (/proc/PID/stat) and of redis-server; from
redis `INFO commandstats` and `INFO stats` read just before the first
publication and just after the last delivery (`herald bench fanout
--exec-subscribed/--exec-delivered`): calls per publication by command name
and the bytes in and out of Redis per publication.

The channel is `bench:fanout` in a `bench` namespace that keeps
`--history` publications (100 by default, so the script's XADD runs: a
cluster recovers from Redis's history; `--history 0` leaves it out).

Writes DIR (default bench/results/<date>-cluster/): cluster.md,
cluster.json (every run's raw `herald bench fanout --json`, the Redis
snapshots, the machine) and chart.svg. Python 3 standard library only.
"""

import argparse
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape

# Helpers the fan-out benchmark already has (this directory is on sys.path
# when a script of it runs).
from fanout import get, log, num, ratio, sh

ROOT = Path(__file__).resolve().parent.parent
HERALD = ROOT / "target" / "release" / "herald"
SERVER_CPU = "0"
CLIENT_CPU = "1"

# key, label, nodes (None: --nodes), broker
SCENARIOS = [
    ("memory", "1 node, memory broker", 1, "memory"),
    ("redis1", "1 node + Redis", 1, "redis"),
    ("redis3", "{n} nodes + Redis", None, "redis"),
]
COLORS = {"memory": "#2ca02c", "redis1": "#1f77b4", "redis3": "#d62728"}
CHANNEL = "bench:fanout"
# Syscalls counted with `perf stat` over the publishing phase (tracepoints
# counted in the kernel: a few tens of ns per syscall, alike in every
# scenario).
SYSCALLS = ["write", "writev", "sendto", "sendmsg", "read", "readv", "recvfrom", "recvmsg",
            "epoll_wait", "epoll_pwait"]
PERF_EVENTS = ",".join(["raw_syscalls:sys_enter", *(f"syscalls:sys_enter_{c}" for c in SYSCALLS)])
# INFO sections read around the publishing phase: small, so that the
# reply to the first one (counted in the output bytes) is easy to subtract.
INFO_SECTIONS = ["stats", "commandstats", "cpu"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, name, log_path, seconds=30):
    deadline = time.time() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start: {log_path.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"{name} did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)


class Process:
    """A server-side process pinned to the server CPU, stopped with SIGINT
    (then SIGKILL after 30 s); ready when its port accepts."""

    def __init__(self, name, port, argv, logs):
        self.name, self.log_path = name, logs / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *map(str, argv)], stdout=self.log, stderr=self.log,
            cwd=ROOT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.pid = self.proc.pid
        try:
            wait_port(port, self.proc, name, self.log_path)
        except RuntimeError:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def node_config(path, port, history):
    path.write_text(
        f'listen = "127.0.0.1:{port}"\ndemos = false\nmax_connections = 100000\n'
        f"[namespaces.bench]\nhistory_size = {history}\nhistory_ttl = 300\n")


def resp_len(args):
    """Bytes of a command as redis-cli sends it (a RESP array of bulk strings)."""
    n = len(f"*{len(args)}\r\n")
    for a in args:
        n += len(f"${len(a.encode())}\r\n") + len(a.encode()) + 2
    return n


def parse_info(text):
    """INFO's `key:value` lines; commandstats' values as dicts."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        if k.startswith("cmdstat_"):
            out[k] = {a: float(b) for a, b in (kv.split("=") for kv in v.split(","))}
        else:
            out[k] = v
    return out


def proc_cpu(stat_text):
    """utime + stime in seconds from a /proc/PID/stat line (USER_HZ = 100)."""
    f = stat_text[stat_text.rfind(")") + 2:].split()
    return int(f[11]) / 100, int(f[12]) / 100


def snapshot_cmd(redis_port, redis_pid, prefix):
    """The shell command `herald bench fanout` runs at a phase edge: INFO
    and redis-server's /proc stat into files (the CPU read first, so the
    INFO command's own work falls outside the window)."""
    return (f"cat /proc/{redis_pid}/stat > {prefix}.stat && "
            f"redis-cli -h 127.0.0.1 -p {redis_port} INFO {' '.join(INFO_SECTIONS)} > {prefix}.info")


def perf_usable():
    return subprocess.run(["perf", "stat", "-x,", "-e", PERF_EVENTS, "--", "true"],
                          capture_output=True).returncode == 0 if sh("command -v perf") else False


def perf_start(pids, prefix):
    """Shell: a background `perf stat` on `pids` (its pid in PREFIX.pid)."""
    return (f"perf stat -x, -o {prefix}.perf -e {PERF_EVENTS} -p {','.join(map(str, pids))} "
            f">/dev/null 2>&1 </dev/null & echo $! > {prefix}.pid")


def perf_stop(prefix):
    """Shell: stop the `perf stat` of PREFIX (it prints its counts) and wait for it."""
    return (f"p=$(cat {prefix}.pid) && kill -INT $p && "
            f"while kill -0 $p 2>/dev/null; do sleep 0.05; done")


def perf_counts(prefix, deliveries, publications):
    """Per delivery and per publication: all syscalls and each counted one."""
    counts = {}
    path = Path(f"{prefix}.perf")
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        f = line.split(",")
        if len(f) < 3 or not f[0].isdigit():
            continue
        name = f[2].split(":")[1].removeprefix("sys_enter_").removeprefix("sys_enter")
        counts[name or "all"] = int(f[0])
    if not counts:
        return None
    return {
        "counts": counts,
        "per_delivery": {k: v / deliveries for k, v in counts.items() if v} if deliveries else None,
        "per_publication": {k: v / publications for k, v in counts.items() if v} if publications else None,
    }


def stop_leftover(prefix):
    """A perf left running by a generator that failed before its last hook."""
    pidfile = Path(f"{prefix}.pid")
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGINT)
        except (ValueError, ProcessLookupError):
            pass


def redis_delta(before_prefix, after_prefix, publications, deliveries):
    """Calls per publication by command, bytes in and out per publication,
    redis-server's CPU per publication and per delivery, over the window."""
    b_text, a_text = Path(f"{before_prefix}.info").read_text(), Path(f"{after_prefix}.info").read_text()
    b, a = parse_info(b_text), parse_info(a_text)
    (bu, bs), (au, ast) = (proc_cpu(Path(f"{p}.stat").read_text()) for p in (before_prefix, after_prefix))
    # The reply to the first INFO was written after its numbers were taken,
    # and the request of the second read before: both fall in the window.
    # redis-cli prints the bulk string's text with CRLF turned to LF.
    info_request = resp_len(["INFO", *INFO_SECTIONS])
    raw_reply = len(b_text.rstrip("\n").replace("\n", "\r\n").encode())
    info_reply = len(f"${raw_reply}\r\n") + raw_reply + 2
    pubs = max(publications, 1)
    commands = {}
    for k, v in a.items():
        if not k.startswith("cmdstat_"):
            continue
        name = k.removeprefix("cmdstat_")
        calls = v["calls"] - b.get(k, {}).get("calls", 0)
        usec = v["usec"] - b.get(k, {}).get("usec", 0)
        if name == "info":
            calls -= 1  # ours (the second snapshot)
            if calls <= 0:
                continue
        if calls > 0:
            commands[name] = {"calls": calls, "per_publication": calls / pubs,
                              "usec": usec, "usec_per_call": usec / calls}
    bytes_in = int(a["total_net_input_bytes"]) - int(b["total_net_input_bytes"]) - info_request
    bytes_out = int(a["total_net_output_bytes"]) - int(b["total_net_output_bytes"]) - info_reply
    cpu = (au - bu) + (ast - bs)
    rusage = (float(a["used_cpu_user"]) + float(a["used_cpu_sys"])
              - float(b["used_cpu_user"]) - float(b["used_cpu_sys"]))
    return {
        "commands": dict(sorted(commands.items(), key=lambda kv: -kv[1]["calls"])),
        "calls_per_publication": sum(c["calls"] for c in commands.values()) / pubs,
        "bytes_in": bytes_in, "bytes_out": bytes_out,
        "bytes_in_per_publication": bytes_in / pubs, "bytes_out_per_publication": bytes_out / pubs,
        "cpu_s": cpu, "cpu_user_s": au - bu, "cpu_system_s": ast - bs,
        "cpu_us_per_publication": cpu * 1e6 / pubs,
        "cpu_us_per_delivery": cpu * 1e6 / deliveries if deliveries else None,
        "rusage_cpu_s": rusage,
        "pubsub_channels": a.get("pubsub_channels"),
    }


def run_one(key, nodes, broker, load, opts, work, rnd):
    """Starts redis (if any) and the nodes, runs the generator, stops all."""
    logs = work / "logs"
    tag = f"{key}-{load}-r{rnd + 1}"
    snap = work / ".snap" / tag
    started = []
    try:
        redis = None
        if broker == "redis":
            rport = free_port()
            redis = Process(f"{tag}-redis", rport, [
                "redis-server", "--port", rport, "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--protected-mode", "yes"], logs)
            started.append(redis)
        urls, pids = [], []
        for i in range(nodes):
            port = free_port()
            cfg = work / f".{tag}-node{i}.toml"
            node_config(cfg, port, opts.history)
            argv = [HERALD, "serve", "--threads", "1", "--config", cfg]
            if redis:
                argv += ["--broker", f"redis://127.0.0.1:{rport}"]
            n = Process(f"{tag}-node{i}", port, argv, logs)
            started.append(n)
            urls.append(f"http://127.0.0.1:{port}")
            pids.append(n.pid)
        time.sleep(0.5)
        cmd = ["taskset", "-c", CLIENT_CPU, HERALD, "bench", "fanout", "--channel", CHANNEL,
               "--subscribers", opts.subscribers, "--duration", f"{opts.duration}s", "--drain", "15s",
               "--size", opts.size, "--json"]
        for u in urls:
            cmd += ["--server", u]
        for p in pids:
            cmd += ["--server-pid", p]
        if load == "saturation":
            cmd += ["--in-flight", opts.in_flight, "--publishers", opts.publishers]
        else:
            cmd += ["--rate", opts.rate, "--publishers", opts.rate_publishers]
        snap.parent.mkdir(exist_ok=True)
        for old in snap.parent.glob(f"{tag}.*"):
            old.unlink()
        before, after = [], []
        if opts.syscalls:
            before.append(perf_start(pids, f"{snap}.nodes"))
            after.append(perf_stop(f"{snap}.nodes"))
            if redis:
                before.append(perf_start([redis.pid], f"{snap}.redis"))
                after.append(perf_stop(f"{snap}.redis"))
            before.append("sleep 0.3")  # perf attached before the first publication
        if redis:
            before.append(snapshot_cmd(rport, redis.pid, f"{snap}.before"))
            after.insert(0, snapshot_cmd(rport, redis.pid, f"{snap}.after"))
        if before:
            cmd += ["--exec-subscribed", "; ".join(before), "--exec-delivered", "; ".join(after)]
        cmd = [str(c) for c in cmd]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.duration + 240)
        except subprocess.TimeoutExpired:
            return {"error": "timed out", "cmd": " ".join(cmd)}
        line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            return {"error": f"exit {p.returncode}: {p.stderr.strip()[-500:]}", "cmd": " ".join(cmd)}
        r["exit"] = p.returncode
        r["nodes"] = nodes
        if redis:
            r["redis"] = redis_delta(f"{snap}.before", f"{snap}.after", r["publications"], r["deliveries"])
        if opts.syscalls:
            r["syscalls"] = perf_counts(f"{snap}.nodes", r["deliveries"], r["publications"])
            if redis:
                r["redis"]["syscalls"] = perf_counts(f"{snap}.redis", r["deliveries"], r["publications"])
        return r
    finally:
        if opts.syscalls:
            stop_leftover(f"{snap}.nodes")
            stop_leftover(f"{snap}.redis")
        for proc in reversed(started):
            proc.stop()


def machine(loadavg):
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": sh("nproc"),
        "cpu": sh("lscpu | grep 'Model name' | sed 's/.*: *//'"),
        "kernel": sh("uname -srvm"),
        "loadavg_start": loadavg,
        "rustc": sh("rustc --version"),
        "redis": sh("redis-server --version"),
        "commit": sh(f"git -C {ROOT} rev-parse HEAD") + (
            " (+ uncommitted changes in crates/)" if sh(f"git -C {ROOT} status --porcelain -- crates") else ""),
        "herald_server_last_change": sh(
            f"git -C {ROOT} log -1 --format='%h %cI %s' -- crates/herald-server crates/herald crates/herald-proto"),
        "ulimit_n": sh("ulimit -n"),
    }


# ----- the report -----------------------------------------------------------------


def count(v):
    """A count (the median of two rounds may end in .5)."""
    return "–" if v is None else f"{v:,.0f}" if v == int(v) else f"{v:,.1f}"


def ms(r, *path):
    v = get(r, *path)
    return num(v / 1e3, 1) if v is not None else "–"


def herald_us_per_publication(r):
    c, pubs = get(r, "server_cpu"), r.get("publications")
    return (c["user_s"] + c["system_s"]) * 1e6 / pubs if c and pubs else None


def total_us_per_delivery(r):
    """herald nodes + redis-server, CPU per delivery."""
    h = get(r, "server_cpu", "us_per_delivery")
    return h + (get(r, "redis", "cpu_us_per_delivery") or 0) if h is not None else None


def labels(opts):
    return {k: label.format(n=opts.nodes) for k, label, *_ in SCENARIOS}


def busy_core(r):
    """Share of one core the server side (nodes + redis-server) used."""
    wall = r.get("wall_seconds")
    c = get(r, "server_cpu")
    if not wall or not c:
        return None
    return (c["user_s"] + c["system_s"] + (get(r, "redis", "cpu_s") or 0)) / wall


def table(runs, load, opts):
    """Throughput and latency."""
    rows = [
        "| scenario | deliveries/s | all reached p50 / p99 (ms) | each delivery p50 / p99 (ms) | API answered p50 / p99 (ms) | missed pubs | server core busy (nodes + redis) | waiting for a CPU: nodes, generator |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label in labels(opts).items():
        r = runs.get(key, {}).get(load)
        if r is None:
            continue
        if "error" in r and "deliveries_per_sec" not in r:
            rows.append(f"| {label} | error: {escape(r['error'][:120])} |" + " |" * 6)
            continue
        wall = r.get("wall_seconds") or 0
        w = lambda who: (f"{100 * get(r, who, 'runqueue_wait_s') / wall:.0f} %"
                         if wall and get(r, who, "runqueue_wait_s") is not None else "–")
        extra = [f"{r[k]} {t}" for k, t in (("out_of_order", "out of order"),
                                              ("connections_lost", "connections lost")) if r.get(k)]
        b = busy_core(r)
        rows.append(
            f"| {label} | {num(r.get('deliveries_per_sec'))} "
            f"| {ms(r, 'all_reached_us', 'p50')} / {ms(r, 'all_reached_us', 'p99')} "
            f"| {ms(r, 'delivery_us', 'p50')} / {ms(r, 'delivery_us', 'p99')} "
            f"| {ms(r, 'publish_answered_us', 'p50')} / {ms(r, 'publish_answered_us', 'p99')} "
            f"| {count(r.get('missed_publications'))} of {count(r.get('publications'))}{' (' + ', '.join(extra) + ')' if extra else ''} "
            f"| {f'{100 * b:.0f} %' if b is not None else '–'} "
            f"| {w('server_cpu')}, {w('generator_cpu')} |")
    return "\n".join(rows)


def cpu_table(runs, load, opts):
    """Where the server side's CPU and syscalls go."""
    rows = [
        "| scenario | herald CPU / delivery (us): total, user, kernel | redis CPU / delivery (us) | all CPU / delivery (us) | herald CPU / publication (us) | redis CPU / publication (us) | node syscalls / delivery | deliveries per writev | redis syscalls / publication |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in labels(opts).items():
        r = runs.get(key, {}).get(load)
        if r is None or "deliveries_per_sec" not in r:
            continue
        writev = get(r, "syscalls", "per_delivery", "writev")
        rows.append(
            f"| {label} "
            f"| {num(get(r, 'server_cpu', 'us_per_delivery'), 2)}, {num(get(r, 'server_cpu', 'user_us_per_delivery'), 2)}, {num(get(r, 'server_cpu', 'system_us_per_delivery'), 2)} "
            f"| {num(get(r, 'redis', 'cpu_us_per_delivery'), 3)} "
            f"| {num(total_us_per_delivery(r), 2)} "
            f"| {num(herald_us_per_publication(r))} "
            f"| {num(get(r, 'redis', 'cpu_us_per_publication'))} "
            f"| {num(get(r, 'syscalls', 'per_delivery', 'all'), 3)} "
            f"| {num(1 / writev, 1) if writev else '–'} "
            f"| {num(get(r, 'redis', 'syscalls', 'per_publication', 'all'), 2)} |")
    return "\n".join(rows)


def round_ratio(rounds, key, load, f):
    """Median [min-max] over rounds of f(scenario) / f(memory broker) within
    each round: the two ran back to back there, so a drift of the machine's
    speed between rounds does not enter it."""
    a, b = get(rounds, key, load) or [], get(rounds, "memory", load) or []
    rs = sorted(x / y for x, y in ((f(p), f(q)) for p, q in zip(a, b)
                                   if "deliveries_per_sec" in p and "deliveries_per_sec" in q) if x and y)
    if not rs:
        return "–"
    if len(rs) == 1:
        return f"{rs[0]:.2f}x"
    return f"{statistics.median(rs):.2f}x [{rs[0]:.2f}-{rs[-1]:.2f}]"


def ratios(rounds, opts):
    lines = [
        "| scenario / 1 node, memory broker | CPU per delivery, nodes + redis, at the rate | the same at saturation | deliveries/s at saturation | p50 all reached at the rate | p99 all reached at the rate | p99 all reached at saturation |",
        "|---|---|---|---|---|---|---|",
    ]
    p = lambda q: lambda r: get(r, "all_reached_us", q)
    for key, label in labels(opts).items():
        if key == "memory" or key not in rounds:
            continue
        lines.append(
            f"| {label} "
            f"| {round_ratio(rounds, key, 'rate', total_us_per_delivery)} "
            f"| {round_ratio(rounds, key, 'saturation', total_us_per_delivery)} "
            f"| {round_ratio(rounds, key, 'saturation', lambda r: r.get('deliveries_per_sec'))} "
            f"| {round_ratio(rounds, key, 'rate', p('p50'))} "
            f"| {round_ratio(rounds, key, 'rate', p('p99'))} "
            f"| {round_ratio(rounds, key, 'saturation', p('p99'))} |")
    return "\n".join(lines)


def merge(records):
    """One record of several rounds: each number the median over the rounds."""
    records = [r for r in records if r is not None]
    if not records:
        return None
    first = records[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for r in records if isinstance(r, dict) for k in r))
        return {k: merge([r.get(k) for r in records if isinstance(r, dict)]) for k in keys}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return statistics.median(r for r in records if isinstance(r, (int, float)))
    return first


def medians(rounds):
    """{scenario: {load: median record}} from {scenario: {load: [round records]}};
    a round that failed counts only when every round failed."""
    out = {}
    for key, loads in rounds.items():
        for load, rs in loads.items():
            ok = [r for r in rs if "deliveries_per_sec" in r]
            out.setdefault(key, {})[load] = merge(ok) if ok else rs[0]
    return out


def redis_table(runs, opts):
    names = []
    for key in runs:
        for load in runs[key]:
            for n in (get(runs, key, load, "redis", "commands") or {}):
                if n not in names:
                    names.append(n)
    cols = [(k, l) for k in runs for l in runs[k] if get(runs, k, l, "redis")]
    if not cols:
        return "No Redis scenario ran."
    lab = labels(opts)
    head = "| per publication | " + " | ".join(f"{lab[k]}, {l}" for k, l in cols) + " |"
    rows = [head, "|---|" + "---|" * len(cols)]
    for n in names:
        rows.append(f"| `{n.upper()}` calls (µs per call) | " + " | ".join(
            (f"{c['per_publication']:.3f} ({c['usec_per_call']:.1f})"
             if (c := get(runs, k, l, "redis", "commands", n)) else "–") for k, l in cols) + " |")
    rows.append("| all commands | " + " | ".join(
        f"{get(runs, k, l, 'redis', 'calls_per_publication'):.2f}" for k, l in cols) + " |")
    rows.append("| bytes into Redis | " + " | ".join(
        num(get(runs, k, l, "redis", "bytes_in_per_publication"), 0) for k, l in cols) + " |")
    rows.append("| bytes out of Redis | " + " | ".join(
        num(get(runs, k, l, "redis", "bytes_out_per_publication"), 0) for k, l in cols) + " |")
    rows.append("| redis-server CPU (µs) | " + " | ".join(
        num(get(runs, k, l, "redis", "cpu_us_per_publication"), 1) for k, l in cols) + " |")
    rows.append("| publications in the window | " + " | ".join(
        count(get(runs, k, l, "publications")) for k, l in cols) + " |")
    return "\n".join(rows)


def chart(runs, path, opts):
    panels = [
        ("rate", total_us_per_delivery, "CPU per delivery at the rate, nodes + redis (us)"),
        ("rate", lambda r: get(r, "all_reached_us", "p99"), "p99 until the last subscriber, at the rate (us)"),
        ("saturation", lambda r: r.get("deliveries_per_sec"), "deliveries/s at saturation"),
        ("saturation", total_us_per_delivery, "CPU per delivery at saturation, nodes + redis (us)"),
    ]
    lab = labels(opts)
    runs = medians(runs)
    w, h, pad_l, pad_t, bar_h = 380, 130, 150, 28, 22
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * 2}" height="{h * 2}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w * 2}" height="{h * 2}" fill="white"/>']
    for i, (load, value, title) in enumerate(panels):
        x0, y0 = (i % 2) * w, (i // 2) * h
        svg.append(f'<text x="{x0 + 10}" y="{y0 + 18}" font-weight="bold">{escape(title)}</text>')
        vals = [(lab[k], k, value(runs[k][load]) if load in runs[k] and "deliveries_per_sec" in runs[k][load] else None)
                for k in lab if k in runs]
        top = max((v for _, _, v in vals if v), default=1)
        for j, (label, key, v) in enumerate(vals):
            y = y0 + pad_t + j * (bar_h + 4)
            svg.append(f'<text x="{x0 + pad_l - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
            if v:
                bw = (w - pad_l - 70) * v / top
                svg.append(f'<rect x="{x0 + pad_l}" y="{y}" width="{bw:.1f}" height="{bar_h}" fill="{COLORS[key]}"/>')
                svg.append(f'<text x="{x0 + pad_l + bw + 4:.1f}" y="{y + 15}">{escape(num(v, 2 if v < 10 else 0))}</text>')
    svg.append("</svg>")
    path.write_text("\n".join(svg) + "\n")


def busy(mach):
    """A sentence on the machine's load when the run began and ended."""
    start = float(mach["loadavg_start"].split()[0])
    end = float(mach.get("loadavg_end", "0").split()[0])
    cores = int(mach["nproc"] or 1)
    if max(start, end) > 0.5 * cores:
        return (f"**The machine was busy**: load average {start:.2f} at the start and {end:.2f} at the end "
                f"on {cores} cores (other work shared them). Compare the ratios and the CPU per delivery; "
                f"deliveries/s and latencies are the machine's as much as herald's.")
    return f"The machine was quiet: load average {start:.2f} at the start and {end:.2f} at the end on {cores} cores."


def report(out, opts, mach, rounds, elapsed):
    lab = labels(opts)
    runs = medians(rounds)
    md = [
        f"# Several nodes through Redis ({mach['date'][:10]})",
        "",
        f"- commit measured: `{mach['commit']}`; last change to herald's server crates: `{mach['herald_server_last_change']}`",
        f"- machine: {mach['nproc']} cores ({mach['cpu']}), {mach['kernel']}, load `{mach['loadavg_start']}` at start, "
        f"`{mach.get('loadavg_end', '?')}` at end; {mach['redis']}",
        f"- every herald node (`herald serve --threads 1`) and redis-server (`--save \"\" --appendonly no`) on CPU "
        f"{SERVER_CPU}, the generator (`herald bench fanout`, 1 thread) on CPU {CLIENT_CPU} (taskset)",
        f"- {opts.subscribers} subscribers on `{CHANNEL}` (namespace `bench`: history {opts.history}), "
        f"{opts.size}-byte payloads; with {opts.nodes} nodes the subscribers are spread round robin and the "
        f"publishers post to the first node; each load {opts.duration} s of publishing; """
        f"{opts.rounds} round(s), the scenarios' order rotating by one per round; cells are the median over "
        f"rounds, ratios the median [min-max] of the ratios within each round"
        + (f"; took {elapsed / 60:.1f} min" if elapsed else ""),
        "",
        busy(mach),
        "",
        "Command: `" + mach.get("command", "bench/cluster.py") + "`",
        "",
        f"## {opts.rate:g} publications/s (open loop, {opts.rate_publishers} publishers taking turns)",
        "",
        table(runs, "rate", opts),
        "",
        cpu_table(runs, "rate", opts),
        "",
        f"## Saturation (closed loop, at most {opts.in_flight} publications in flight, {opts.publishers} publishers)",
        "",
        table(runs, "saturation", opts),
        "",
        cpu_table(runs, "saturation", opts),
        "",
        "## Ratios: through Redis against the memory broker (same run)",
        "",
        ratios(rounds, opts),
        "",
        "## Redis per publication",
        "",
        "From `INFO commandstats` and `INFO stats` just before the first publication and just after the last "
        "delivery (the median of the rounds). Commands a script runs (`HGET`, `HINCRBY`, `XADD`, `PEXPIRE`, "
        "`EXPIRE`, `PUBLISH` inside the publish script) are counted under their own names as well as under the "
        "`EVALSHA` that ran them, so *all commands* counts a script's work twice; the µs per call of `EVALSHA` "
        "includes theirs. `SCRIPT|LOAD` is the first publication of a node's connection (its `EVALSHA` gets "
        "`NOSCRIPT`, loads, retries). Everything else in the window is a node's background work, divided by "
        "the publications of the run: each node's heartbeat every 2 s is a `SET` and a `ZADD` (the node "
        "registry) and a `PUBLISH` (a probe through its own pub/sub), so at a low rate these weigh more per "
        "publication. Bytes are Redis's `total_net_input_bytes` / `total_net_output_bytes`, without the "
        "snapshots' own `INFO`.",
        "",
        redis_table(runs, opts),
        "",
        "## How to read this",
        "",
        "- *all reached*: per publication, from the publisher's timestamp to the moment the last subscriber",
        "  had it; *each delivery*: the same per delivery; *API answered*: from the publisher's request to",
        "  the HTTP answer (with the memory broker the answer comes after the local fan-out is queued; with",
        "  Redis, after the publish script's round trip, and the fan-out follows when the node gets the",
        "  pub/sub message).",
        "- *herald CPU*: utime + stime of every node (/proc/PID/stat, 10 ms ticks) from the first",
        "  publication to the last delivery, summed; *redis CPU*: redis-server's, over the same window",
        "  (taken by the generator's hooks). *per publication*: the same over the publications.",
        "- *server core busy*: the nodes' and redis-server's CPU time over the wall time: below 100 %",
        "  at saturation, the server core was not what limited deliveries/s (the round trips were).",
        "- *syscalls*: `perf stat` on the syscall tracepoints of the nodes and of redis-server over the",
        "  same window; *deliveries per writev*: how many deliveries one `writev` carried on average",
        "  (publications queued for a subscriber go out together).",
        "- At 10/s CPU includes what the processes do while idle (keepalive pings, timers).",
        "- *waiting for a CPU*: time runnable without a CPU (/proc/PID/task/*/schedstat) over the wall",
        "  time. All the server side shares one core, so with several nodes they wait for each other.",
    ]
    (out / "cluster.md").write_text("\n".join(md) + "\n")


def main():
    global SERVER_CPU, CLIENT_CPU
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 subscribers, 5 s per load, 1 round")
    ap.add_argument("--subscribers", type=int)
    ap.add_argument("--duration", type=float, help="seconds of publishing per load (default 8)")
    ap.add_argument("--rounds", type=int, help="rounds of every scenario and load (default 2)")
    ap.add_argument("--rate", type=float, default=5.0, help="publications/s of the rate load")
    ap.add_argument("--rate-publishers", type=int, default=4,
                    help="publisher connections taking turns at the rate (each waits for its answers)")
    ap.add_argument("--in-flight", type=int, default=64, help="publications in flight at saturation")
    ap.add_argument("--publishers", type=int, default=32,
                    help="publisher connections at saturation: enough that --in-flight, not the publishers "
                         "waiting for their answers, is the limit (Redis's answers come later)")
    ap.add_argument("--size", type=int, default=100, help="payload bytes")
    ap.add_argument("--nodes", type=int, default=3, help="nodes of the multi-node scenario")
    ap.add_argument("--history", type=int, default=100, help="history_size of the channel's namespace")
    ap.add_argument("--scenarios", default=",".join(s[0] for s in SCENARIOS))
    ap.add_argument("--loads", default="rate,saturation")
    ap.add_argument("--server-cpus", default=SERVER_CPU, help="taskset CPU list of nodes and redis-server")
    ap.add_argument("--generator-cpus", default=CLIENT_CPU, help="taskset CPU list of the generator")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--no-syscalls", dest="syscalls", action="store_false",
                    help="do not count syscalls with perf stat")
    ap.add_argument("--out", type=Path, help="results directory (default bench/results/<date>-cluster)")
    ap.add_argument("--report-only", type=Path, metavar="DIR",
                    help="rewrite DIR's cluster.md and chart.svg from its cluster.json")
    opts = ap.parse_args()
    if opts.report_only:
        saved = json.loads((opts.report_only / "cluster.json").read_text())
        o = argparse.Namespace(**saved["options"])
        SERVER_CPU, CLIENT_CPU = o.server_cpus, o.generator_cpus
        report(opts.report_only, o, saved["machine"], saved["runs"], saved.get("elapsed", 0))
        chart(saved["runs"], opts.report_only / "chart.svg", o)
        return
    SERVER_CPU, CLIENT_CPU = opts.server_cpus, opts.generator_cpus
    opts.subscribers = opts.subscribers or (2000 if opts.quick else 10_000)
    opts.duration = opts.duration or (5.0 if opts.quick else 8.0)
    opts.rounds = opts.rounds or (1 if opts.quick else 2)
    wanted = opts.scenarios.split(",")
    unknown = set(wanted) - {s[0] for s in SCENARIOS}
    if unknown:
        sys.exit(f"cluster: unknown scenario {', '.join(sorted(unknown))}")
    if opts.syscalls and not perf_usable():
        log("cluster: perf stat cannot count syscall tracepoints here: no syscall counts")
        opts.syscalls = False
    if any(b == "redis" for k, _, _, b in SCENARIOS if k in wanted) and not sh("command -v redis-server"):
        sys.exit("cluster: redis-server not found (scripts/install-peers installs Debian's)")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = opts.subscribers + 200
    if soft < need:
        if hard < need:
            sys.exit(f"cluster: ulimit -n is {hard}; {need} files needed by the generator")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    out = opts.out or ROOT / "bench" / "results" / f"{dt.date.today().isoformat()}-cluster"
    (out / "logs").mkdir(parents=True, exist_ok=True)
    # The commit is read before building, so a commit made during the run
    # does not take its place.
    mach = machine(sh("cat /proc/loadavg"))
    mach["command"] = os.environ.get("BENCH_COMMAND") or " ".join(["bench/cluster.py", *sys.argv[1:]])
    if not opts.skip_build:
        log("cluster: building herald (release)")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "herald-cli"], cwd=ROOT, check=True)
    log(f"cluster: measuring commit {mach['commit']}")
    runs = {}
    t0 = time.time()
    order = [s for s in SCENARIOS if s[0] in wanted]
    for rnd in range(opts.rounds):
        # The scenarios of one load back to back, their order rotating by
        # one per round.
        for load, (key, label, nodes, broker) in (
                (load, s) for load in opts.loads.split(",")
                for s in order[rnd % len(order):] + order[:rnd % len(order)]):
            nodes = nodes or opts.nodes
            log(f"cluster: round {rnd + 1}/{opts.rounds}: {label.format(n=nodes)}, {load}, "
                f"{opts.subscribers} subscribers")
            r = run_one(key, nodes, broker, load, opts, out, rnd)
            runs.setdefault(key, {}).setdefault(load, []).append(r)
            if "error" in r and "deliveries_per_sec" not in r:
                log(f"cluster:   error: {r['error']}")
            else:
                log(f"cluster:   {r['deliveries_per_sec']:,} deliveries/s, p99 all reached "
                    f"{r['all_reached_us']['p99'] / 1e3:.1f} ms, missed {r['missed_publications']}, "
                    f"herald {get(r, 'server_cpu', 'us_per_delivery')} us/delivery, "
                    f"redis {get(r, 'redis', 'cpu_us_per_delivery')} us/delivery, "
                    f"{get(r, 'redis', 'calls_per_publication')} redis calls/publication")
            time.sleep(1)
    elapsed = time.time() - t0
    mach["loadavg_end"] = sh("cat /proc/loadavg")
    (out / "cluster.json").write_text(json.dumps(
        {"machine": mach, "options": {**vars(opts), "out": str(out)}, "elapsed": elapsed, "runs": runs},
        indent=2, default=str) + "\n")
    report(out, opts, mach, runs, elapsed)
    chart(runs, out / "chart.svg", opts)
    log(f"cluster: wrote {out}/cluster.md")


if __name__ == "__main__":
    main()
