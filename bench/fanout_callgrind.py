#!/usr/bin/env python3
"""Instructions per fan-out delivery, counted by callgrind.

    bench/fanout_callgrind.py [--subscribers 2000] [--publications 30]
                              [--only herald,sendloop] [--out DIR] [--top 40]

For each server: starts it under `valgrind --tool=callgrind` on CPU 0,
runs `herald bench fanout` (not under valgrind) on CPU 1 with N subscribers
on one channel and P publications at 10/s, and has the generator dump
callgrind's counts twice (`--exec-subscribed` / `--exec-delivered`, each
`callgrind_control -d PID`): the first dump holds start-up, the handshakes,
`connect` and `subscribe`; the second only the publishing phase (the
HTTP publish requests, the fan-out, the writes). Instructions per delivery
= the second dump's total / deliveries. Counts do not depend on the
machine's speed or load, so this is the figure to compare between commits.

Writes DIR/results.md (the counts and the command), DIR/results.json and,
per server, DIR/<server>.annotate.txt: `callgrind_annotate --inclusive=yes`
of the publishing phase, its top functions. Needs valgrind and the release
builds (`cargo build --release -p herald-cli`, and `cargo build --release`
in bench/peers); bench/fanout.py builds both.
"""

import argparse
import datetime as dt
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERALD = ROOT / "target" / "release" / "herald"
PEERS = ROOT / "bench" / "peers" / "target" / "release"

# key, label, port, command
SERVERS = [
    ("herald", "herald serve (1 thread)", 19211,
     [HERALD, "serve", "--listen", "127.0.0.1:{port}", "--no-demos", "--threads", "1"]),
    ("sendloop", "send loop (baseline)", 19212, [PEERS / "fanout-sendloop", "127.0.0.1:{port}"]),
    ("combining", "combining (baseline)", 19213, [PEERS / "fanout-combining", "127.0.0.1:{port}"]),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def total_ir(path):
    """The `summary:` (or `totals:`) of a callgrind dump: instructions."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def wait_port(port, proc, deadline):
    while True:
        if proc.poll() is not None:
            raise RuntimeError("server exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)


def measure(key, port, cmd, opts, out):
    prefix = out / f"{key}.callgrind"
    log_path = out / f"{key}.log"
    with open(log_path, "w") as server_log:
        argv = ["taskset", "-c", "0", "valgrind", "--tool=callgrind",
                f"--callgrind-out-file={prefix}.%p", *[str(c).format(port=port) for c in cmd]]
        proc = subprocess.Popen(argv, stdout=server_log, stderr=server_log, start_new_session=True)
        try:
            wait_port(port, proc, time.time() + 120)
            time.sleep(1)
            dump = f"callgrind_control -d {proc.pid} >/dev/null"
            duration = opts.publications / opts.rate
            gen = ["taskset", "-c", "1", str(HERALD), "bench", "fanout",
                   "--server", f"http://127.0.0.1:{port}", "--subscribers", str(opts.subscribers),
                   "--rate", str(opts.rate), "--duration", f"{duration}s", "--drain", "120s",
                   "--size", str(opts.size), "--settle", "0s", "--concurrency", "16",
                   "--exec-subscribed", dump, "--exec-delivered", dump, "--json"]
            log(f"fanout_callgrind: {key}: {' '.join(gen)}")
            p = subprocess.run(gen, capture_output=True, text=True, timeout=1800)
            if p.returncode != 0:
                raise RuntimeError(f"generator failed: {p.stdout[-2000:]} {p.stderr[-2000:]}")
            run = json.loads(p.stdout)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    dumps = sorted(out.glob(f"{key}.callgrind.{proc.pid}.*"), key=lambda f: int(f.suffix[1:]))
    if len(dumps) < 2:
        raise RuntimeError(f"expected two dumps, found {dumps}")
    connect_ir, publish_ir = total_ir(dumps[0]), total_ir(dumps[1])
    deliveries = run["deliveries"]
    annotate = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", f"--threshold=100", str(dumps[1])],
        capture_output=True, text=True).stdout
    lines = annotate.splitlines()
    # Header, then the top functions by inclusive cost.
    start = next((i for i, l in enumerate(lines) if re.match(r"^-+$", l) and i > 10), 0)
    (out / f"{key}.annotate.txt").write_text(
        f"# {key}: callgrind_annotate --inclusive=yes of the publishing phase only\n"
        f"# {deliveries} deliveries; divide a row's Ir by that for its cost per delivery\n\n"
        + "\n".join(lines[: start + opts.top + 4]) + "\n")
    return {
        "server": key, "subscribers": run["subscribers"], "publications": run["publications"],
        "deliveries": deliveries, "missed": run["missed_publications"],
        "connect_ir": connect_ir, "publish_ir": publish_ir,
        "ir_per_delivery": publish_ir / deliveries if deliveries else None,
        "connect_ir_per_subscriber": connect_ir / run["subscribers"],
        "dump": dumps[1].name,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--publications", type=int, default=30)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--only", default="herald,sendloop")
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument("--keep", action="store_true", help="keep the callgrind dumps")
    ap.add_argument("--out", type=Path,
                    default=ROOT / "bench" / "results" / f"{dt.date.today()}-fanout-callgrind")
    opts = ap.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    for old in opts.out.glob("*.callgrind.*"):
        old.unlink()
    wanted = opts.only.split(",")
    results = []
    for key, label, port, cmd in SERVERS:
        if key in wanted:
            r = measure(key, port, cmd, opts, opts.out)
            r["label"] = label
            log(f"fanout_callgrind: {key}: {r['ir_per_delivery']:.0f} instructions per delivery")
            results.append(r)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    command = "bench/fanout_callgrind.py " + " ".join(sys.argv[1:])
    (opts.out / "results.json").write_text(json.dumps(
        {"commit": commit, "dirty": bool(dirty), "command": command, "results": results},
        indent=1) + "\n")
    md = [f"# Instructions per fan-out delivery (callgrind, {dt.date.today()})", "",
          f"- commit: `{commit}`{' (with uncommitted changes)' if dirty else ''}",
          f"- command: `{command}`",
          f"- {opts.subscribers} subscribers on one channel, {opts.publications} publications at "
          f"{opts.rate:g}/s, {opts.size}-byte data; server under callgrind on CPU 0, "
          "generator (not under valgrind) on CPU 1",
          "- publishing phase only: callgrind dumped once all were subscribed and again once "
          "every publication had reached every subscriber", "",
          "| server | deliveries | missed | instructions per delivery | connect + subscribe, per subscriber |",
          "|---|---|---|---|---|"]
    for r in results:
        md.append(f"| {r['label']} | {r['deliveries']:,} | {r['missed']} | "
                  f"**{r['ir_per_delivery']:,.0f}** | {r['connect_ir_per_subscriber']:,.0f} |")
    md += ["", "Top functions (inclusive) of each server's publishing phase: `<server>.annotate.txt`."]
    (opts.out / "results.md").write_text("\n".join(md) + "\n")
    # The dumps are large and reproducible: keep only the annotations.
    if not opts.keep:
        for f in opts.out.glob("*.callgrind.*"):
            f.unlink()
    print("\n".join(md))


if __name__ == "__main__":
    main()
