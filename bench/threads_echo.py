#!/usr/bin/env python3
"""Echo on 2 server threads: one current-thread runtime per thread (SO_REUSEPORT)
against tokio's multi-thread runtime, and 1 thread, in the same run.

    bench/threads_echo.py [--rounds 3] [--duration 5] [--out DIR]
                          [--server-cpus 0,1] [--generator-cpus 0,1]

Needs target/release/herald (cargo build --release -p herald-cli). For each
round, each scenario, each server (order rotated per round): start
`herald echo --no-deflate` pinned to --server-cpus, run `herald bench echo`
(one thread) pinned to --generator-cpus, stop the server. Besides
`herald bench echo --json`, reads per server thread the CPU time
(/proc/PID/task/*/stat) and the time runnable without a CPU
(/proc/PID/task/*/schedstat) over the measured window, so the report shows
whether both server threads worked. Writes results.json and results.md.
Python 3 standard library only.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERALD = ROOT / "target" / "release" / "herald"
TICK = os.sysconf("SC_CLK_TCK")

SERVERS = [
    ("per-thread", "2 threads: a current-thread runtime each, SO_REUSEPORT", ["--threads", "2"]),
    ("multi-thread", "2 threads: tokio multi-thread runtime, one listener", ["--threads", "2", "--multi-thread"]),
    ("one", "1 thread", ["--threads", "1"]),
]
# name, connections, size: the 80 x 1 KiB, and small messages.
SCENARIOS = [("80x1KiB", 80, 1024), ("100x20B", 100, 20)]


def threads_of(pid):
    """{tid: (name, cpu seconds, runqueue wait seconds)}."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            wait = int((task / "schedstat").read_text().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
        out[task.name] = (name, cpu, wait)
    return out


def run_one(args, flags, conns, size, port):
    server = subprocess.Popen(
        ["taskset", "-c", args.server_cpus, HERALD, "echo", "--no-deflate",
         "--listen", f"127.0.0.1:{port}", *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("server did not start")
                time.sleep(0.05)
        warmup = 1.0
        gen = subprocess.Popen(
            ["taskset", "-c", args.generator_cpus, HERALD, "bench", "echo",
             "--url", f"ws://127.0.0.1:{port}", "--connections", str(conns), "--size", str(size),
             "--duration", f"{args.duration}s", "--warmup", f"{warmup}s",
             "--server-pid", str(server.pid), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        # The generator connects, warms up, then measures: sample the
        # server's threads over most of the measured window.
        marks = {}

        def sample():
            time.sleep(warmup + 0.5)
            marks["a"] = (time.time(), threads_of(server.pid))
            time.sleep(args.duration - 1.0)
            marks["b"] = (time.time(), threads_of(server.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        out, _ = gen.communicate(timeout=args.duration + 60)
        sampler.join()
        r = json.loads(out.strip().splitlines()[-1])
        (ta, a), (tb, b) = marks["a"], marks["b"]
        wall = tb - ta
        per = []
        for tid, (name, cpu, wait) in sorted(b.items()):
            if tid in a:
                d_cpu, d_wait = cpu - a[tid][1], wait - a[tid][2]
                if d_cpu > 0.01 or d_wait > 0.01:
                    per.append({"thread": name, "cpu_util": round(d_cpu / wall, 3),
                                "runqueue_wait": round(d_wait / wall, 3)})
        r["server_threads"] = per
        return r
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--server-cpus", default="0,1")
    ap.add_argument("--generator-cpus", default="0,1")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / f"{dt.date.today()}-threads" / "echo"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_start = Path("/proc/loadavg").read_text().strip()
    runs = []
    port = 19700
    for rnd in range(args.rounds):
        order = SERVERS[rnd % len(SERVERS):] + SERVERS[:rnd % len(SERVERS)]
        for scen, conns, size in SCENARIOS:
            for key, _, flags in order:
                port += 1
                r = run_one(args, flags, conns, size, port)
                r.update(round=rnd, server=key, scenario_name=scen)
                runs.append(r)
                print(f"round {rnd} {scen} {key}: {r['messages_per_sec']:,.0f} msg/s, "
                      f"server {r['server_cpu'].get('us_per_message')} us/msg, threads {r['server_threads']}",
                      file=sys.stderr, flush=True)
    load_end = Path("/proc/loadavg").read_text().strip()
    (out / "results.json").write_text(json.dumps(
        {"args": vars(args), "load_start": load_start, "load_end": load_end, "runs": runs}, indent=2) + "\n")
    md = [f"# Echo on 2 server threads ({dt.date.today()})", "",
          f"- `bench/threads_echo.py {' '.join(sys.argv[1:])}`; server on CPUs {args.server_cpus}, "
          f"generator (`herald bench echo`, one thread) on CPUs {args.generator_cpus}: they share the cores",
          f"- {os.cpu_count()} cores; load average at start `{load_start}`, at end `{load_end}` "
          "(two other agents were compiling)",
          f"- {args.rounds} rounds, {args.duration} s measured per run (1 s warm-up); cells are medians over rounds",
          ""]
    for scen, conns, size in SCENARIOS:
        md += [f"## {conns} connections x {size} B", "",
               "| server | messages/s | server CPU / message (us) | per server thread: CPU use, waiting for a CPU (medians) | generator CPU |",
               "|---|---|---|---|---|"]
        for key, label, _ in SERVERS:
            rs = [r for r in runs if r["server"] == key and r["scenario_name"] == scen]
            if not rs:
                continue
            mps = median([r["messages_per_sec"] for r in rs])
            cpu = median([r["server_cpu"].get("us_per_message") for r in rs])
            gen = median([r.get("generator_cpu_util") for r in rs])
            # Threads by rank of CPU use, so a busy one and an idle one show.
            ranks = max(len(r["server_threads"]) for r in rs)
            cells = []
            for i in range(ranks):
                us = [sorted(r["server_threads"], key=lambda t: -t["cpu_util"])[i] for r in rs
                      if len(r["server_threads"]) > i]
                cells.append(f"{100 * median([t['cpu_util'] for t in us]):.0f} %, "
                             f"{100 * median([t['runqueue_wait'] for t in us]):.0f} %")
            md.append(f"| {label} | {mps:,.0f} | {cpu} | {'; '.join(cells)} | "
                      f"{100 * gen:.0f} % |" if gen is not None else "| |")
        md.append("")
    (out / "results.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out}/results.md", file=sys.stderr)


if __name__ == "__main__":
    main()
