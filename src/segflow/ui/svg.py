"""Charts as inline SVG, drawn on the server (no charting library, nothing to download).

Each function returns markup (``markupsafe.Markup``) with every label escaped.

>>> "<rect" in bars([("a", 3), ("b", 1)])
True
>>> "<circle" in scatter([[0.0, 0.0, 1], [1.0, 2.0, 2]])
True
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def bars(rows: Sequence[tuple[str, int]], *, width: int = 560, row_h: int = 22) -> Markup:
    """Horizontal bars, one per ``(label, value)``."""
    top = max((v for _, v in rows), default=0) or 1
    label_w, h = 220, row_h * max(len(rows), 1)
    parts = [_open(width, h, "bars")]
    for i, (label, value) in enumerate(rows):
        y, w = i * row_h, (width - label_w - 60) * value / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label[:32])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour(0)}">'
            f"<title>{escape(label)}: {value}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{value:,}</text>'
        )
    return Markup("".join([*parts, "</svg>"]))


def columns(values: Sequence[int], *, width: int = 560, height: int = 120) -> Markup:
    """Vertical columns over time (oldest left), e.g. events per minute."""
    top, n = max(values, default=0) or 1, max(len(values), 1)
    step = width / n
    parts = [_open(width, height + 16, "columns")]
    for i, value in enumerate(values):
        h = (height - 4) * value / top
        parts.append(
            f'<rect x="{i * step + 1:.1f}" y="{height - h:.1f}" width="{max(step - 2, 1):.1f}"'
            f' height="{h:.1f}" fill="{colour(0)}"><title>{value}</title></rect>'
        )
    parts.append(f'<text x="0" y="{height + 14}">-{n} min</text>')
    parts.append(
        f'<text x="{width}" y="{height + 14}" text-anchor="end">now · max {top}/min</text>'
    )
    return Markup("".join([*parts, "</svg>"]))


def scatter(
    points: Sequence[Sequence[float]],
    centroids: Sequence[Sequence[float]] = (),
    *,
    order: Sequence[int] = (),
    size: int = 460,
) -> Markup:
    """``[x, y, cluster]`` points coloured by cluster (``order`` maps a cluster to a colour)."""
    every = [*points, *centroids]
    if not every:
        return Markup(_open(size, size, "scatter") + "</svg>")
    xs, ys = [p[0] for p in every], [p[1] for p in every]
    x0, y0 = min(xs), min(ys)
    sx, sy = (max(xs) - x0) or 1.0, (max(ys) - y0) or 1.0
    pad = 12

    def at(p: Sequence[float]) -> tuple[float, float]:
        return pad + (p[0] - x0) / sx * (size - 2 * pad), size - pad - (p[1] - y0) / sy * (
            size - 2 * pad
        )

    def fill(cluster: float) -> str:
        c = int(cluster)
        return colour(order.index(c) if c in order else c)

    parts = [_open(size, size, "scatter")]
    for p in points:
        x, y = at(p)
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{fill(p[2])}" opacity=".7"/>'
        )
    for p in centroids:
        x, y = at(p)
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{fill(p[2])}" stroke="#000"'
            f' stroke-width="2"><title>cluster {int(p[2])}</title></circle>'
        )
    return Markup("".join([*parts, "</svg>"]))


def _open(width: int, height: int, kind: str) -> str:
    return (
        f'<svg class="chart {kind}" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">'
    )
