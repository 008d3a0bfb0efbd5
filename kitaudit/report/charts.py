"""Hand-written SVG for the report: signing coverage over time, violations by rule, and
the lineage graph (a layered left-to-right layout).

Every function returns a complete ``<svg>`` element as text (UTF-8, no external
references, no scripts), usable inline in HTML and as a standalone ``.svg`` file. All
text is escaped. Sizes are in user units with a ``viewBox`` so the drawings scale.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

FONT = ("font-family=\"-apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, "
        "sans-serif\"")
COLORS = {"fail": "#c62828", "error": "#6a1b9a", "warn": "#e08a00", "waived": "#607d8b",
          "pass": "#2e7d32", "ink": "#1f2933", "muted": "#616e7c", "grid": "#e4e7eb",
          "accent": "#1565c0", "fill": "#e3f0fc"}
MAX_NODES = 120


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{_e(label)}" '
            f'{FONT} font-size="12">\n<title>{_e(label)}</title>\n' + "\n".join(body)
            + "\n</svg>")


def _empty(label: str, message: str, width: int = 640) -> str:
    return _svg(width, 60, label, [
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="59" rx="6" fill="#f8f9fa" '
        f'stroke="{COLORS["grid"]}"/>',
        f'<text x="{width / 2}" y="35" text-anchor="middle" fill="{COLORS["muted"]}">'
        f'{_e(message)}</text>'])


# ---------------------------------------------------------------------- coverage
def signing_coverage_svg(series: list[dict[str, Any]], *, width: int = 640,
                         height: int = 240) -> str:
    """Line chart of the signed share of ModelKits per crawl (0–100 %)."""
    label = "Signing coverage over time"
    if not series:
        return _empty(label, "No complete crawl with ModelKits yet.", width)
    left, right, top, bottom = 48, 36, 16, 44
    pw, ph = width - left - right, height - top - bottom
    n = len(series)

    def x(i: int) -> float:
        return left + (pw / 2 if n == 1 else pw * i / (n - 1))

    def y(v: float) -> float:
        return top + ph * (1 - v)

    body = []
    for pct in (0, 25, 50, 75, 100):
        yy = y(pct / 100)
        body.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{width - right}" y2="{yy:.1f}" '
                    f'stroke="{COLORS["grid"]}"/>')
        body.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" '
                    f'fill="{COLORS["muted"]}">{pct}%</text>')
    pts = [(x(i), y(p["coverage"])) for i, p in enumerate(series)]
    if n > 1:
        area = (f"M{pts[0][0]:.1f},{y(0):.1f} " + " ".join(f"L{a:.1f},{b:.1f}" for a, b in pts)
                + f" L{pts[-1][0]:.1f},{y(0):.1f} Z")
        body.append(f'<path d="{area}" fill="{COLORS["fill"]}"/>')
        line = "M" + " L".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        body.append(f'<path d="{line}" fill="none" stroke="{COLORS["accent"]}" '
                    f'stroke-width="2.5" stroke-linejoin="round"/>')
    step = max(1, n // 8)
    for i, (p, (a, b)) in enumerate(zip(series, pts, strict=True)):
        exact = p.get("exact", True)
        dot = COLORS["accent"] if exact else "#fff"
        body.append(
            f'<circle cx="{a:.1f}" cy="{b:.1f}" r="4.5" fill="{dot}" '
            f'stroke="{COLORS["accent"]}" stroke-width="2"><title>crawl {_e(p["crawl_id"])}: '
            f'{_e(p["signed"])} of {_e(p["modelkits"])} signed '
            f'({p["coverage"] * 100:.0f}%){"" if exact else ", approximate"}</title></circle>')
        if i % step == 0 or i == n - 1:
            when = str(p.get("at") or "")[:10]
            pos = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
            body.append(f'<text x="{a:.1f}" y="{height - bottom + 16}" text-anchor="{pos}" '
                        f'fill="{COLORS["muted"]}">{_e(when)}</text>')
            body.append(f'<text x="{a:.1f}" y="{height - bottom + 30}" text-anchor="{pos}" '
                        f'fill="{COLORS["muted"]}" font-size="10">crawl {_e(p["crawl_id"])}'
                        f'</text>')
    last = series[-1]
    lx, ly = pts[-1]
    anchor = "end" if n > 1 else "middle"
    body.append(f'<text x="{lx - (8 if n > 1 else 0):.1f}" y="{max(ly - 10, 12):.1f}" '
                f'text-anchor="{anchor}" font-weight="600" fill="{COLORS["ink"]}">'
                f'{last["coverage"] * 100:.0f}% ({_e(last["signed"])}/{_e(last["modelkits"])})'
                f'</text>')
    return _svg(width, height, label, body)


# ---------------------------------------------------------------------- violations
def violations_by_rule_svg(rows: list[dict[str, Any]], *, width: int = 640,
                           limit: int = 20) -> str:
    """Horizontal stacked bars per rule: fail, error, warn, waived."""
    label = "Rule results that are not a pass, by rule"
    if not rows:
        return _empty(label, "No failing, warning or waived rule results.", width)
    rows = rows[:limit]
    keys = ("fail", "error", "warn", "waived")
    label_w, right, bar_h, gap, top = 250, 40, 18, 8, 34
    height = top + len(rows) * (bar_h + gap) + 8
    total_max = max(sum(r[k] for k in keys) for r in rows) or 1
    pw = width - label_w - right
    body = []
    lx = label_w
    for k in keys:  # legend
        body.append(f'<rect x="{lx}" y="8" width="12" height="12" rx="2" fill="{COLORS[k]}"/>')
        body.append(f'<text x="{lx + 16}" y="18" fill="{COLORS["ink"]}">{k}</text>')
        lx += 70
    for i, r in enumerate(rows):
        yy = top + i * (bar_h + gap)
        name = _short(f"{r['policy']} / {r['rule']}", 40)
        body.append(f'<text x="{label_w - 8}" y="{yy + bar_h - 5}" text-anchor="end" '
                    f'fill="{COLORS["ink"]}"><title>{_e(r["policy"])}/{_e(r["rule"])}</title>'
                    f'{_e(name)}</text>')
        xx = float(label_w)
        for k in keys:
            v = r[k]
            if not v:
                continue
            w = pw * v / total_max
            body.append(f'<rect x="{xx:.1f}" y="{yy}" width="{max(w, 1.5):.1f}" '
                        f'height="{bar_h}" fill="{COLORS[k]}"><title>{_e(k)}: {v}</title></rect>')
            if w >= 18:
                body.append(f'<text x="{xx + w / 2:.1f}" y="{yy + bar_h - 5}" '
                            f'text-anchor="middle" fill="#fff" font-size="11">{v}</text>')
            xx += w
        body.append(f'<text x="{xx + 6:.1f}" y="{yy + bar_h - 5}" fill="{COLORS["muted"]}">'
                    f'{sum(r[k] for k in keys)}</text>')
    return _svg(width, height, label, body)


# ---------------------------------------------------------------------- lineage
def _layers(nodes: list[str], parents: dict[str, list[str]]) -> dict[str, int]:
    """Longest-path layering (roots at 0); cycles are broken by ignoring back edges."""
    layer: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(n: str) -> int:
        if n in layer:
            return layer[n]
        if n in visiting:
            return 0
        visiting.add(n)
        d = 0
        for p in parents.get(n, []):
            d = max(d, depth(p) + 1)
        visiting.discard(n)
        layer[n] = d
        return d

    for n in nodes:
        depth(n)
    return layer


def lineage_layout(lineage: dict[str, Any], *, max_nodes: int = MAX_NODES
                   ) -> dict[str, Any]:
    """Positions for the nodes taking part in a base-model edge: layer (column) by longest
    path from a root, order within a column by the mean position of the parents
    (barycentre, two sweeps) to keep edges short and crossings few."""
    edges = [(e["from"], e["to"]) for e in lineage.get("edges", [])]
    involved = []
    for a, b in edges:
        for n in (a, b):
            if n not in involved:
                involved.append(n)
    dropped = 0
    if len(involved) > max_nodes:
        dropped = len(involved) - max_nodes
        keep = set(involved[:max_nodes])
        involved = involved[:max_nodes]
        edges = [(a, b) for a, b in edges if a in keep and b in keep]
    parents: dict[str, list[str]] = defaultdict(list)
    children: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        parents[b].append(a)
        children[a].append(b)
    layer = _layers(involved, parents)
    columns: dict[int, list[str]] = defaultdict(list)
    for n in involved:
        columns[layer[n]].append(n)
    pos: dict[str, float] = {}
    for c in sorted(columns):
        for i, n in enumerate(columns[c]):
            pos[n] = i
    def sweep(order: list[int], neighbours: dict[str, list[str]]) -> None:
        for c in order:
            def bary(n: str) -> float:
                ps = [pos[p] for p in neighbours.get(n, []) if p in pos]
                return sum(ps) / len(ps) if ps else pos[n]
            columns[c].sort(key=bary)
            for i, n in enumerate(columns[c]):
                pos[n] = i

    for _round in range(2):
        sweep(sorted(columns)[1:], parents)
        sweep(sorted(columns, reverse=True)[1:], children)
    return {"columns": {c: columns[c] for c in sorted(columns)}, "edges": edges,
            "dropped": dropped}


def lineage_svg(lineage: dict[str, Any], *, max_nodes: int = MAX_NODES) -> str:
    """Base models (left) and the ModelKits derived from them (right)."""
    label = "Lineage: base models and the ModelKits derived from them"
    if not lineage.get("edges"):
        return _empty(label, "No base-model relations recorded for the ModelKits in scope.")
    layout = lineage_layout(lineage, max_nodes=max_nodes)
    info = {n["id"]: n for n in lineage.get("nodes", [])}
    node_w, node_h, col_gap, row_gap, pad = 210, 46, 70, 14, 12
    cols = layout["columns"]
    width = pad * 2 + len(cols) * node_w + (len(cols) - 1) * col_gap
    legend_h = 26
    top = pad + legend_h
    step = node_h + row_gap
    parents: dict[str, list[str]] = {}
    for a, b in layout["edges"]:
        parents.setdefault(b, []).append(a)
    # first column stacked from the top; every later node as level with its parents as
    # the nodes above it in its column allow (edges stay straight where they can)
    ys: dict[str, float] = {}
    for c, names in cols.items():
        floor = float(top)
        for n in names:
            ps = [ys[p] for p in parents.get(n, []) if p in ys]
            want = sum(ps) / len(ps) if ps and c > 0 else floor
            ys[n] = max(want, floor)
            floor = ys[n] + step
    height = max(ys.values()) + node_h + pad
    xy: dict[str, tuple[float, float]] = {
        n: (pad + c * (node_w + col_gap), ys[n]) for c, names in cols.items() for n in names}
    body = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{COLORS["muted"]}"/></marker></defs>']
    lx = pad
    for text, stroke, fill, dash in (("signed", COLORS["pass"], "#fff", ""),
                                     ("not signed", COLORS["fail"], "#fff", ""),
                                     ("outside scope / external", COLORS["muted"], "#f5f7fa",
                                      ' stroke-dasharray="4 3"')):
        body.append(f'<rect x="{lx}" y="{pad}" width="14" height="12" rx="3" fill="{fill}" '
                    f'stroke="{stroke}" stroke-width="2"{dash}/>')
        body.append(f'<text x="{lx + 20}" y="{pad + 10}" fill="{COLORS["ink"]}">{text}</text>')
        lx += 40 + len(text) * 7
    for a, b in layout["edges"]:
        (x1, y1), (x2, y2) = xy[a], xy[b]
        sx, sy = x1 + node_w, y1 + node_h / 2
        tx, ty = x2, y2 + node_h / 2
        if tx <= sx:  # same or earlier column (cycle): route around
            d = (f"M{sx:.1f},{sy:.1f} C{sx + 40:.1f},{sy:.1f} {tx - 40:.1f},{ty:.1f} "
                 f"{tx:.1f},{ty:.1f}")
        else:
            mx = (sx + tx) / 2
            d = f"M{sx:.1f},{sy:.1f} C{mx:.1f},{sy:.1f} {mx:.1f},{ty:.1f} {tx - 2:.1f},{ty:.1f}"
        body.append(f'<path d="{d}" fill="none" stroke="{COLORS["muted"]}" '
                    f'stroke-width="1.5" marker-end="url(#arrow)"/>')
    for n, (x, y) in xy.items():
        node = info.get(n, {"label": n, "kind": "external"})
        kind = node.get("kind")
        if kind == "modelkit":
            stroke = COLORS["pass"] if node.get("signed") else COLORS["fail"]
            fill, dash = "#fff", ""
        else:
            stroke, fill, dash = COLORS["muted"], "#f5f7fa", ' stroke-dasharray="4 3"'
        title = node.get("reference") or ", ".join(node.get("tags") or []) or n
        digest = node.get("digest") or ""
        sub = (node.get("tags") or [""])[0].rpartition("/")[2] if node.get("tags") else \
            (digest[:19] if digest else _short(node.get("reference") or "", 30))
        body.append(f'<g class="node"><title>{_e(title)}{" " + _e(digest) if digest else ""}'
                    f'</title>')
        body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{node_w}" height="{node_h}" rx="7" '
                    f'fill="{fill}" stroke="{stroke}" stroke-width="2"{dash}/>')
        body.append(f'<text x="{x + 10:.1f}" y="{y + 19:.1f}" font-weight="600" '
                    f'fill="{COLORS["ink"]}">{_e(_short(str(node.get("label") or n), 26))}'
                    f'</text>')
        body.append(f'<text x="{x + 10:.1f}" y="{y + 36:.1f}" fill="{COLORS["muted"]}" '
                    f'font-size="11">{_e(_short(sub, 30))}</text>')
        v = node.get("violations")
        if kind == "modelkit" and v:
            bx = x + node_w - 12
            body.append(f'<circle cx="{bx:.1f}" cy="{y + 12:.1f}" r="9" fill="{COLORS["fail"]}">'
                        f'<title>{v} violations</title></circle>')
            body.append(f'<text x="{bx:.1f}" y="{y + 16:.1f}" text-anchor="middle" fill="#fff" '
                        f'font-size="10" font-weight="700">{v if v < 100 else "99+"}</text>')
        body.append("</g>")
    if layout["dropped"]:
        body.append(f'<text x="{pad}" y="{height - 2}" fill="{COLORS["muted"]}">'
                    f'{layout["dropped"]} more nodes not drawn</text>')
    return _svg(width, height, label, body)
