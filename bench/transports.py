#!/usr/bin/env python3
"""The transports benchmark: polling or push, measured side by side.

    bench/transports.py [--clients N] [--duration S] [--quick] [--out DIR]

One command from a fresh clone: builds herald (release), starts `herald
serve` alone on CPU 0 (taskset) with a `bench` namespace that keeps
history (polls are answered from it), runs `herald bench transports` on
CPU 1 (1,000 clients per transport by default, each subscribed to a
channel of its own and one shared channel; two scenarios: one publication
per client per minute, and a broadcast of one a second), stops the server,
and writes DIR/transports.md, transports.json and transports.svg (default
DIR: bench/results/<date>/). Python 3 standard library only.

Bytes are TCP payload counted at the client sockets (HTTP heads and bodies,
WebSocket frames), per delivered publication, from the first publication
to the end of the drain: set-up (connecting, subscribing) is not counted.
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import time
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERALD = ROOT / "target" / "release" / "herald"
SERVER_CPU, CLIENT_CPU = "0", "1"

# The model the field cites (websocket.org, "HTML5 Web Sockets: A Quantum
# Leap in Scalability for the Web"): 871 bytes of HTTP headers per polling
# request and response, against a 2-byte WebSocket frame header.
MODEL_HEADER_BYTES = 871
MODEL_FRAME_BYTES = 2


def log(*a):
    print("transports:", *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--duration", default="30s")
    ap.add_argument("--drain", default="7s")
    ap.add_argument("--quick", action="store_true", help="100 clients, 8 s per scenario")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--report-only", type=Path, metavar="DIR", help="rewrite DIR's transports.md and .svg from its transports.json")
    opts = ap.parse_args()
    if opts.report_only:
        saved = json.loads((opts.report_only / "transports.json").read_text())
        write(opts.report_only, saved)
        return
    if opts.quick:
        opts.clients, opts.duration = 100, "8s"
    out = opts.out or ROOT / "bench" / "results" / datetime.date.today().isoformat()
    out.mkdir(parents=True, exist_ok=True)

    # The commit the binary is built from (recorded before building, so a
    # commit made during the run does not take its place).
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    log("building herald (release)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "herald-cli"], cwd=ROOT, check=True)
    port = free_port()
    config = out / ".transports-server.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\ndemos = false\nmax_connections = 100000\n'
        "[namespaces.bench]\nhistory_size = 100\nhistory_ttl = 300\n"
    )
    server = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, str(HERALD), "serve", "--threads", "1", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        started = time.time()
        cmd = ["taskset", "-c", CLIENT_CPU, str(HERALD), "bench", "transports",
               "--server", f"http://127.0.0.1:{port}", "--clients", str(opts.clients),
               "--duration", opts.duration, "--drain", opts.drain,
               "--server-pid", str(server.pid), "--json"]
        log(" ".join(cmd[3:]))
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode not in (0, 1) or not run.stdout.strip():
            log("failed:", run.stderr[-2000:])
            sys.exit(1)
        runs = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    finally:
        server.terminate()
        server.wait(timeout=30)
        config.unlink(missing_ok=True)
    saved = {
        "commit": commit,
        "command": "bench/transports.py " + " ".join(sys.argv[1:]),
        "clients": opts.clients,
        "duration": opts.duration,
        "minutes": round((time.time() - started) / 60, 1),
        "load": Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else "",
        "runs": runs,
    }
    (out / "transports.json").write_text(json.dumps(saved, indent=1) + "\n")
    write(out, saved)
    log(f"wrote {out}/transports.md")


def num(v, digits=1):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def write(out, saved):
    runs = saved["runs"]
    md = [
        "# Polling or push: every herald transport, one run",
        "",
        f"- commit measured: `{saved['commit']}`; command: `{saved['command']}`; took {saved['minutes']} min",
        f"- {saved['clients']} clients per transport, each subscribed to a channel of its own and to one shared channel;"
        f" {saved['duration']} of publishing per scenario; `herald serve --threads 1` on CPU 0, the generator on CPU 1",
        f"- load average at the end: `{saved['load']}` (a shared 2-core machine: latencies and CPU are the machine's;"
        " bytes, requests and losses are not affected)",
        "",
        "Bytes: TCP payload at the client sockets (HTTP heads and bodies, WebSocket frames; not IP/TCP headers),"
        " per delivered publication, from the first publication to the end of the drain. Lost: never delivered by"
        " the end of the drain; duplicated: delivered twice to the same client.",
        "",
    ]
    for scenario, title in (("personal", "One publication per client per minute (its own channel)"),
                            ("broadcast", "A broadcast of one publication a second (the shared channel)")):
        rows = [r for r in runs if r["scenario"] == scenario]
        if not rows:
            continue
        md += [f"## {title}", "",
               "| transport | delivered | lost | dup | bytes/msg down | bytes/msg up | latency p50 / p99 (ms) | requests/s | server CPU/msg (us) |",
               "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            md.append(f"| {r['transport']} | {r['delivered']:,} of {r['expected']:,} | {r['lost']} | {r['duplicated']} | "
                      f"{num(r['bytes_down_per_message'])} | {num(r['bytes_up_per_message'])} | "
                      f"{num(r['latency_p50_ms'])} / {num(r['latency_p99_ms'])} | {num(r['requests_per_second'])} | "
                      f"{num(r['server_cpu_us_per_message'])} |")
        md.append("")
    n = saved["clients"]
    md += [
        "## Next to the header-overhead model the field cites",
        "",
        f"websocket.org's model: polling costs {MODEL_HEADER_BYTES} bytes of HTTP headers per request and response, a WebSocket"
        f" message a {MODEL_FRAME_BYTES}-byte frame header. For {n:,} clients polling every second that is"
        f" {MODEL_HEADER_BYTES * n / 1000:,.0f} KB/s of headers whether or not anything happened, against"
        f" {MODEL_FRAME_BYTES * n / 1000:,.1f} KB/s for one message a second to each over WebSocket.",
        "",
        "| transport | measured bytes per delivered publication, both ways (broadcast) | measured (personal) |",
        "|---|---|---|",
    ]
    by = {(r["transport"], r["scenario"]): r for r in runs}
    for t in dict.fromkeys(r["transport"] for r in runs):
        cells = []
        for s in ("broadcast", "personal"):
            r = by.get((t, s))
            cells.append(num(r["bytes_down_per_message"] + r["bytes_up_per_message"]) if r else "-")
        md.append(f"| {t} | {cells[0]} | {cells[1]} |")
    md += ["", "Measured headers are smaller than the model's (no cookies, no browser headers), but the shape holds:"
           " polling pays per request whether or not there is news, push pays per message.", ""]
    (out / "transports.md").write_text("\n".join(md))
    chart(runs, out / "transports.svg")


def chart(runs, path):
    """Bytes per delivered publication (both ways), log scale, per scenario."""
    import math
    w, bar_h, pad_l = 560, 18, 170
    groups = [s for s in ("personal", "broadcast") if any(r["scenario"] == s for r in runs)]
    h_group = 40 + bar_h * 8
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h_group * len(groups) + 20}" '
           'font-family="sans-serif" font-size="11">']
    values = [r["bytes_down_per_message"] + r["bytes_up_per_message"] for r in runs]
    top = math.log10(max(max(values), 10))
    for g, scenario in enumerate(groups):
        y0 = g * h_group
        svg.append(f'<text x="10" y="{y0 + 18}" font-weight="bold">{escape(scenario)}: bytes on the wire per delivered'
                   ' publication (log scale)</text>')
        rows = [r for r in runs if r["scenario"] == scenario]
        for k, r in enumerate(rows):
            v = r["bytes_down_per_message"] + r["bytes_up_per_message"]
            y = y0 + 28 + k * bar_h
            bw = max(1.0, (w - pad_l - 70) * math.log10(max(v, 1)) / top)
            color = "#c0392b" if "poll" in r["transport"] else "#2471a3"
            svg.append(f'<text x="{pad_l - 6}" y="{y + 13}" text-anchor="end">{escape(r["transport"])}</text>')
            svg.append(f'<rect x="{pad_l}" y="{y}" width="{bw:.1f}" height="{bar_h - 4}" fill="{color}"/>')
            svg.append(f'<text x="{pad_l + bw + 4:.1f}" y="{y + 13}">{num(v, 0)}</text>')
    svg.append("</svg>")
    path.write_text("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
