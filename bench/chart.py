"""A small SVG chart of a bench run, standard library only.

One panel per echo scenario (messages/s, median bar, min-max whisker),
then panels for the counted costs (instructions per message, lower is
better), idle memory per connection and server CPU per handshake.
"""

import statistics
from xml.sax.saxutils import escape

COLORS = {
    "herald": "#d62728",
    "herald-loop": "#ff7f0e",
    "tokio-tungstenite": "#1f77b4",
    "fastwebsockets": "#2ca02c",
    "node-ws": "#9467bd",
    "python-websockets": "#8c564b",
    "tcp-echo": "#bbbbbb",
}

PANEL_W, PANEL_H = 250, 190
PAD_L, PAD_B, PAD_T = 56, 34, 30


def _get(d, path):
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def _fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.1f}"


def _panel(x0, y0, title, bars, lower_better=False):
    """bars: [(key, median, lo, hi)]"""
    out = []
    out.append(f'<g transform="translate({x0},{y0})">')
    out.append(f'<text x="{PANEL_W / 2}" y="16" text-anchor="middle" font-size="12" font-weight="bold">'
               f'{escape(title)}</text>')
    if lower_better:
        out.append(f'<text x="{PANEL_W / 2}" y="28" text-anchor="middle" font-size="9" fill="#666">'
                   'lower is better</text>')
    bars = [b for b in bars if b[1] is not None]
    if not bars:
        out.append("</g>")
        return out
    top = max(max(b[3] for b in bars), max(b[1] for b in bars)) * 1.1 or 1
    h = PANEL_H - PAD_B - PAD_T
    w = PANEL_W - PAD_L - 10
    out.append(f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{PAD_T + h}" stroke="#333"/>')
    out.append(f'<line x1="{PAD_L}" y1="{PAD_T + h}" x2="{PAD_L + w}" y2="{PAD_T + h}" stroke="#333"/>')
    for i in range(5):
        v = top * i / 4
        y = PAD_T + h - h * i / 4
        out.append(f'<line x1="{PAD_L - 3}" y1="{y:.1f}" x2="{PAD_L + w}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{PAD_L - 5}" y="{y + 3:.1f}" text-anchor="end" font-size="9">{_fmt(v)}</text>')
    slot = w / len(bars)
    bw = slot * 0.7
    for i, (key, med, lo, hi) in enumerate(bars):
        x = PAD_L + slot * i + (slot - bw) / 2
        bh = h * med / top
        color = COLORS.get(key, "#999")
        out.append(f'<rect x="{x:.1f}" y="{PAD_T + h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                   f'fill="{color}"><title>{escape(key)}: {med:,.1f}</title></rect>')
        if hi > lo:
            cx = x + bw / 2
            y_lo, y_hi = PAD_T + h - h * lo / top, PAD_T + h - h * hi / top
            out.append(f'<line x1="{cx:.1f}" y1="{y_lo:.1f}" x2="{cx:.1f}" y2="{y_hi:.1f}" stroke="#000"/>')
            for yy in (y_lo, y_hi):
                out.append(f'<line x1="{cx - 3:.1f}" y1="{yy:.1f}" x2="{cx + 3:.1f}" y2="{yy:.1f}" stroke="#000"/>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{PAD_T + h - bh - 3:.1f}" text-anchor="middle" '
                   f'font-size="8">{_fmt(med)}</text>')
    out.append("</g>")
    return out


def write(path, data, servers, scenarios, ceiling):
    runs = data["runs"]
    keys = [s.key for s in servers if s.key in data["options"]["servers"]]
    scen = [s for s in scenarios if s["id"] in data["options"]["scenarios"]]

    def stat(key, sc_id, p):
        vals = [_get(r["out"], p) for r in runs if r["server"] == key and r["scenario"] == sc_id]
        vals = [v for v in vals if isinstance(v, (int, float))]
        if not vals:
            return None
        return (key, statistics.median(vals), min(vals), max(vals))

    panels = []
    for s in scen:
        if s["kind"] == "echo":
            bars = [stat(k, s["id"], ["messages_per_sec"]) for k in keys + [ceiling.key]]
            panels.append((f"{s['label']}: msg/s", [b for b in bars if b], False))
    instr = data["counts"].get("instructions") or {}
    for s in scen:
        if s["kind"] in ("echo", "handshake") and any(s["id"] in instr.get(k, {}) for k in keys):
            bars = [(k, instr[k][s["id"]], instr[k][s["id"]], instr[k][s["id"]])
                    for k in keys if s["id"] in instr.get(k, {}) and k != "tokio-tungstenite"]
            what = "instr/handshake" if s["kind"] == "handshake" else "instr/msg"
            panels.append((f"{s['label']}: {what}", bars, True))
    for s in scen:
        if s["kind"] == "idle":
            bars = [stat(k, s["id"], ["server_bytes_per_connection"]) for k in keys]
            panels.append(("idle: bytes/connection", [b for b in bars if b], True))
        if s["kind"] == "handshake":
            bars = [stat(k, s["id"], ["server_cpu", "us_per_handshake"]) for k in keys]
            panels.append(("server µs/handshake", [b for b in bars if b], True))

    cols = 4
    rows = (len(panels) + cols - 1) // cols
    legend_h = 40
    W, H = cols * PANEL_W + 20, rows * PANEL_H + legend_h + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" viewBox="0 0 {W} {H}">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">herald vs peers, '
           f'{escape(data["machine"]["date"][:10])} (median, min-max over rounds)</text>']
    for i, (title, bars, lower) in enumerate(panels):
        out += _panel(10 + (i % cols) * PANEL_W, 30 + (i // cols) * PANEL_H, title, bars, lower)
    x = 10
    y = 30 + rows * PANEL_H + 15
    for k in keys + [ceiling.key]:
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{COLORS.get(k, "#999")}"/>')
        label = "raw TCP echo (ceiling)" if k == ceiling.key else k
        out.append(f'<text x="{x + 16}" y="{y + 10}" font-size="11">{escape(label)}</text>')
        x += 20 + 7 * len(label)
    out.append("</svg>")
    path.write_text("\n".join(out))
