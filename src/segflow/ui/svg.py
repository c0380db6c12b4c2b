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


def columns(
    values: Sequence[int],
    *,
    stacked: Sequence[int] = (),
    names: tuple[str, str] = ("live", "backfill"),
    width: int = 560,
    height: int = 120,
) -> Markup:
    """Vertical columns over time (oldest left), e.g. events per minute; ``stacked`` (same
    length) is drawn on top of ``values`` in the second colour, the two ``names`` in titles.

    >>> chart = columns([1, 2], stacked=[0, 5])
    >>> chart.count("<rect"), "2 live + 5 backfill" in chart
    (3, True)
    """
    extra = list(stacked) or [0] * len(values)
    totals = [v + e for v, e in zip(values, extra, strict=True)]
    top, n = max(totals, default=0) or 1, max(len(values), 1)
    step = width / n
    parts = [_open(width, height + 16, "columns")]
    for i, (value, more) in enumerate(zip(values, extra, strict=True)):
        title = f"{value} {names[0]} + {more} {names[1]}" if stacked else f"{value}"
        base = float(height)
        for series, count in enumerate((value, more)):
            if not count:
                continue
            h = (height - 4) * count / top
            base -= h
            parts.append(
                f'<rect x="{i * step + 1:.1f}" y="{base:.1f}" width="{max(step - 2, 1):.1f}"'
                f' height="{h:.1f}" fill="{colour(series)}" class="{escape(names[series])}">'
                f"<title>{escape(title)}</title></rect>"
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


def sparkline(values: Sequence[float], *, width: int = 140, height: int = 28) -> Markup:
    """A small line of ``values`` (oldest left), e.g. a segment's size per day."""
    if not values:
        return Markup("")
    top, n = max(values) or 1, max(len(values) - 1, 1)
    points = " ".join(
        f"{i * width / n:.1f},{height - 2 - (height - 4) * v / top:.1f}"
        for i, v in enumerate(values)
    )
    return Markup(
        _open(width, height, "spark")
        + f'<polyline points="{points}" fill="none" stroke="{colour(0)}" stroke-width="1.5">'
        f"<title>{escape(f'{values[0]:,.0f} -> {values[-1]:,.0f}')}</title></polyline></svg>"
    )


Series = tuple[str, Sequence[tuple[float, float]]]


def xy(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    x_max: float | None = None,
    y_max: float | None = None,
    diagonal: bool = False,
    width: int = 380,
    height: int = 240,
) -> Markup:
    """Lines with dots, one per ``(label, [(x, y), ...])``, on axes from 0; ``diagonal`` draws
    y = x (a calibration chart's perfect line)."""
    xs = [x for _, pts in series for x, _ in pts] or [1.0]
    ys = [y for _, pts in series for _, y in pts] or [1.0]
    x_top = x_max if x_max is not None else (max(xs) or 1.0)
    y_top = y_max if y_max is not None else (max(ys) or 1.0)
    left, bottom, pad = 44, 34, 10
    w, h = width - left - pad, height - bottom - pad

    def at(x: float, y: float) -> str:
        return f"{left + w * x / x_top:.1f},{pad + h - h * y / y_top:.1f}"

    parts = [_open(width, height, "xy"),
             f'<polyline points="{at(0, y_top)} {at(0, 0)} {at(x_top, 0)}" fill="none" stroke="#999"/>',
             f'<text x="{left - 4}" y="{pad + 4}" text-anchor="end">{_num(y_top)}</text>',
             f'<text x="{left - 4}" y="{pad + h}" text-anchor="end">0</text>',
             f'<text x="{left + w}" y="{pad + h + 14}" text-anchor="end">{_num(x_top)}</text>',
             f'<text x="{left + w / 2:.0f}" y="{height - 4}" text-anchor="middle">{escape(x_label)}</text>',
             f'<text x="12" y="{pad + h / 2:.0f}" transform="rotate(-90 12 {pad + h / 2:.0f})"'
             f' text-anchor="middle">{escape(y_label)}</text>']  # fmt: skip
    if diagonal:
        top = min(x_top, y_top)
        parts.append(f'<polyline points="{at(0, 0)} {at(top, top)}" fill="none" stroke="#bbb"'
                     ' stroke-dasharray="4 3"/>')  # fmt: skip
    for i, (label, pts) in enumerate(series):
        line = " ".join(at(x, y) for x, y in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour(i)}" stroke-width="2">'
                     f"<title>{escape(label)}</title></polyline>")  # fmt: skip
        for x, y in pts:
            cx, cy = at(x, y).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour(i)}">'
                         f"<title>{escape(label)}: {_num(x)}, {_num(y)}</title></circle>")  # fmt: skip
        parts.append(
            f'<text x="{left + 8}" y="{pad + 14 + 14 * i}" fill="{colour(i)}">{escape(label)}</text>'
        )
    return Markup("".join([*parts, "</svg>"]))


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.2g}"
