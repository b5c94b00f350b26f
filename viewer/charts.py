"""Charts as inline SVG, drawn on the server: no script, no chart library, nothing to download.

`line_chart` draws one line per series over integer x values (rounds) with y in [0, 1]
(held-out accuracy); `heat_row` gives the fill of a heatmap cell for a probability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

__all__ = ["PALETTE", "heat_fill", "line_chart"]


def line_chart(
    series: Mapping[str, Sequence[tuple[int, float]]],
    *,
    width: int = 640,
    height: int = 260,
    title: str = "",
    dashed: Sequence[str] = (),
) -> str:
    """An SVG line chart: one polyline per series of (x, y) points, y in [0, 1], a legend, axes
    with the x values as ticks. `dashed`: series drawn dashed (a second run in a comparison)."""
    left, right, top, bottom = 44, 150, 24, 30
    xs = sorted({x for points in series.values() for x, _ in points})
    if not xs:
        return '<p class="muted">no held-out measurements yet</p>'
    x0, x1 = xs[0], max(xs[-1], xs[0] + 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + (1 - max(0.0, min(1.0, y))) * plot_h

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>" if title else "",
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = py(tick)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    for x in xs:
        parts.append(f'<text x="{px(x):.1f}" y="{height - 10}" text-anchor="middle">{x}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height}" text-anchor="middle" '
        'class="axis-label">round</text>'
    )
    for i, (name, points) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5 4"' if name in dashed else ""
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(points))
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{coords}">'
            f"<title>{escape(name)}</title></polyline>"
        )
        for x, y in points:
            parts.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}">'
                f"<title>{escape(name)} round {x}: {y:.3f}</title></circle>"
            )
        ly = top + 14 * i + 6
        parts.append(
            f'<line x1="{width - right + 12}" x2="{width - right + 30}" y1="{ly}" y2="{ly}" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{width - right + 34}" y="{ly + 4}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def heat_fill(p: float | None) -> str:
    """The background of a heatmap cell for probability `p` (white at 0, dark blue at 1)."""
    if p is None:
        return "transparent"
    p = max(0.0, min(1.0, p))
    shade = int(255 - 200 * p)
    return f"rgb({shade},{shade + int(30 * p)},255)"
