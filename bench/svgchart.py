"""The bench's chart, as a hand-written SVG (no plotting library needed).

Two panels side by side, grouped by concurrency, one bar per target:
throughput (req/s, linear) and p99 latency (ms, log scale, with the 5 ms
target). Under each group: the ratio (3)/(2). Below: the target checks.
"""

from __future__ import annotations

import math
from html import escape

COLORS = {1: "#9e9e9e", 2: "#4e79a7", 3: "#e15759", 4: "#f28e2b", 5: "#59a14f"}


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    if v >= 10000:
        return f"{v / 1000:.0f}k"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    if v >= 10:
        return f"{v:.0f}"
    if v >= 1:
        return f"{v:.1f}"
    return f"{v:.2f}"


def render(meta: dict, summary: list[dict], targets: dict, checks: dict) -> str:
    concs = meta["concurrency"]
    tids = [t for t in meta["targets"]]
    by = {(s["concurrency"], s["target"]): s for s in summary}
    W, H = 1200, 640
    panel_w, panel_h = 520, 360
    top = 90
    lefts = [70, 660]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="28" text-anchor="middle" font-size="18" font-weight="bold">'
        f'hitcounter: whole stack on one machine ({meta["cpus"]} cores shared by wrk and every server)</text>',
        f'<text x="{W / 2}" y="50" text-anchor="middle" fill="#444">'
        f'{escape(meta["date"])} - commit {escape(meta["git_commit"])} - {meta["apps"]} app processes - '
        f'{meta["duration_s"]:g}s runs x {meta["reps"]} reps, interleaved - nginx: {escape(meta["nginx_source"])}</text>',
    ]
    extra = []
    if meta.get("app_env"):
        extra.append("app env: " + " ".join(meta["app_env"]))
    if meta.get("nginx_set"):
        extra.append("nginx: " + " ".join(meta["nginx_set"]))
    if meta.get("nginx_access_log") != "project":
        extra.append(f"access_log {meta.get('nginx_access_log')}")
    if meta.get("pg_set"):
        extra.append("pg: " + " ".join(meta["pg_set"]))
    if extra:
        out.append(f'<text x="{W / 2}" y="68" text-anchor="middle" fill="#a00">{escape("; ".join(extra))}</text>')

    group_w = panel_w / max(1, len(concs))
    bar_w = min(28.0, (group_w - 24) / max(1, len(tids)))

    def panel(idx: int, title: str, value, log_scale: bool, unit: str, line: float | None):
        x0, y0 = lefts[idx], top
        values = [value(by[(c, t)]) for c in concs for t in tids if (c, t) in by]
        if log_scale:
            lo = 10 ** math.floor(math.log10(max(1e-3, min(v for v in values if v > 0) if any(values) else 0.1)))
            hi = 10 ** math.ceil(math.log10(max(values + [line or 0, lo * 10])))

            def y(v):
                v = max(v, lo)
                return y0 + panel_h - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * panel_h

            ticks = []
            t = lo
            while t <= hi * 1.0001:
                ticks.append(t)
                t *= 10
        else:
            hi = _nice_max(max(values) if values else 1)

            def y(v):
                return y0 + panel_h - v / hi * panel_h

            ticks = [hi * i / 5 for i in range(6)]
        out.append(f'<text x="{x0 + panel_w / 2}" y="{y0 - 12}" text-anchor="middle" font-size="14" '
                   f'font-weight="bold">{escape(title)}</text>')
        for t in ticks:
            out.append(f'<line x1="{x0}" x2="{x0 + panel_w}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e5e5"/>')
            out.append(f'<text x="{x0 - 6}" y="{y(t) + 4:.1f}" text-anchor="end" fill="#555">{_fmt(t)}</text>')
        out.append(f'<line x1="{x0}" x2="{x0}" y1="{y0}" y2="{y0 + panel_h}" stroke="#333"/>')
        out.append(f'<line x1="{x0}" x2="{x0 + panel_w}" y1="{y0 + panel_h}" y2="{y0 + panel_h}" stroke="#333"/>')
        out.append(f'<text x="{x0 - 50}" y="{y0 + panel_h / 2}" transform="rotate(-90 {x0 - 50} {y0 + panel_h / 2})" '
                   f'text-anchor="middle" fill="#333">{escape(unit)}</text>')
        if line is not None:
            out.append(f'<line x1="{x0}" x2="{x0 + panel_w}" y1="{y(line):.1f}" y2="{y(line):.1f}" '
                       'stroke="#c00" stroke-dasharray="6 4"/>')
        for gi, c in enumerate(concs):
            gx = x0 + gi * group_w + (group_w - bar_w * len(tids)) / 2
            for bi, t in enumerate(tids):
                s = by.get((c, t))
                if not s:
                    continue
                v = value(s)
                bx = gx + bi * bar_w
                bad = s["non_2xx"] + s["socket_errors"]
                by_ = y(v)
                h = y0 + panel_h - by_
                out.append(f'<rect x="{bx + 1:.1f}" y="{by_:.1f}" width="{bar_w - 2:.1f}" height="{max(0.5, h):.1f}" '
                           f'fill="{COLORS.get(t, "#777")}"><title>{escape(targets[t]["name"])} c={c}: '
                           f'{_fmt(v)} {escape(unit)}</title></rect>')
                out.append(f'<text x="{bx + bar_w / 2:.1f}" y="{by_ - 3:.1f}" text-anchor="middle" font-size="9" '
                           f'fill="#222">{_fmt(v)}{"*" if s.get("noisy_reps") else ""}</text>')
                if bad and idx == 0:
                    out.append(f'<text x="{bx + bar_w / 2:.1f}" y="{by_ - 13:.1f}" text-anchor="middle" '
                               f'font-size="9" fill="#c00">{_fmt(bad)} err</text>')
            cx = x0 + gi * group_w + group_w / 2
            out.append(f'<text x="{cx:.1f}" y="{y0 + panel_h + 18}" text-anchor="middle" font-weight="bold">'
                       f'c={c}</text>')
            if idx == 0 and (c, 3) in by and (c, 2) in by:
                ratio = by[(c, 3)].get("ok_rps", by[(c, 3)]["rps"]) / max(1e-9, by[(c, 2)].get("ok_rps", by[(c, 2)]["rps"]))
                errs = by[(c, 3)]["non_2xx"] + by[(c, 2)]["non_2xx"]
                good = ratio >= 0.6 and not errs
                out.append(f'<text x="{cx:.1f}" y="{y0 + panel_h + 34}" text-anchor="middle" '
                           f'fill="{"#060" if good else "#c00"}">(3)/(2) = {ratio * 100:.0f}%'
                           f'{" (with errors)" if errs else ""}</text>')

    panel(0, "Throughput: 2xx answers/s (higher is better)", lambda s: s.get("ok_rps", s["rps"]), False,
          "2xx answers per second", None)
    panel(1, "p99 latency (lower is better; log scale; dashed: 5 ms)", lambda s: s["p99_ms"], True, "p99 (ms)", 5.0)

    # Legend.
    lx, ly = 70, top + panel_h + 60
    for i, t in enumerate(tids):
        x = lx + i * 220
        out.append(f'<rect x="{x}" y="{ly - 10}" width="14" height="14" fill="{COLORS.get(t, "#777")}"/>')
        out.append(f'<text x="{x + 20}" y="{ly + 2}">({t}) {escape(targets[t]["name"])}</text>')
    notes = []
    if meta.get("skipped"):
        notes.append(meta["skipped"])
    if any(s.get("noisy_reps") for s in summary):
        notes.append("* other work on the machine used the cores during at least one rep: low")
    if notes:
        out.append(f'<text x="{lx}" y="{ly + 22}" fill="#555">{escape("   ".join(notes))}</text>')
    # Checks.
    cy = ly + 44
    for line in checks.get("lines", []):
        color = "#060" if "[PASS]" in line else "#c00" if "[FAIL]" in line else "#222"
        out.append(f'<text x="{lx}" y="{cy}" fill="{color}" xml:space="preserve" font-family="DejaVu Sans Mono, monospace" '
                   f'font-size="11">{escape(line)}</text>')
        cy += 15
    out.append("</svg>")
    # Grow the canvas if the check lines ran past it.
    svg = "\n".join(out) + "\n"
    if cy > H:
        svg = svg.replace(f'height="{H}" viewBox="0 0 {W} {H}"', f'height="{cy + 10}" viewBox="0 0 {W} {cy + 10}"', 1)
        svg = svg.replace(f'<rect width="{W}" height="{H}"', f'<rect width="{W}" height="{cy + 10}"', 1)
    return svg
