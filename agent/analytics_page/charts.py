"""Inline SVG charts, drawn on the server: no script, no chart library, nothing fetched.

- `bar_rows`: a horizontal bar chart as rows of (label, bar, value), the label and the value HTML text
  beside a small SVG bar each, so the text keeps its size on a phone while the bars stretch or shrink
  with the width (a funnel's steps, goal categories, uptime per target);
- `line_chart`: one SVG with a y axis of round numbers, the buckets along x and one line per series
  (a trend), scaled to the width by its viewBox.

Colours come from classes (style.py), labels are escaped here: they are event names, property values
and target names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from agent.analytics_page.layout import esc, number

SERIES_CLASSES = 8
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 30


@dataclass(frozen=True, slots=True)
class Bar:
    label: str                 # HTML (escaped by the caller, may hold markup)
    value: float               # the bar's length, against the chart's largest
    text: str                  # HTML shown after the bar
    inner: float | None = None  # a second, darker bar inside the first (completed of started), same scale
    bad: bool = False          # drawn in the failure colour


def bar_rows(bars: Sequence[Bar], title: str, scale: float | None = None) -> str:
    """Rows of label | bar | value; bars scaled against `scale` (default: the largest value)."""
    top = scale if scale is not None else max((b.value for b in bars), default=0.0)
    rows = []
    for b in bars:
        width = _share(b.value, top)
        inner = ""
        if b.inner is not None:
            inner = f'<rect class="fill2" x="0" y="2" width="{_share(b.inner, top):.2f}" height="6"/>'
        fill = "fill bad" if b.bad else "fill"
        rows.append(f'<span class="bar-label">{b.label}</span>'
                    f'<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-hidden="true">'
                    f'<rect class="track" x="0" y="0" width="100" height="10"/>'
                    f'<rect class="{fill}" x="0" y="0" width="{width:.2f}" height="10"/>{inner}</svg>'
                    f'<span class="bar-value">{b.text}</span>')
    return f'<div class="bars" role="figure" aria-label="{esc(title)}">{"".join(rows)}</div>'


def _share(value: float, top: float) -> float:
    if top <= 0 or not math.isfinite(value) or value <= 0:
        return 0.0
    return min(100.0, 100.0 * value / top)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k at or above `value` (an axis top); 1 for nothing."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value * (1 - 1e-12):
            return step * magnitude
    return 10 * magnitude


@dataclass(frozen=True, slots=True)
class Line:
    name: str                            # plain text, escaped here
    values: Sequence[float | int | None]  # one per bucket; None: no value (a gap)


def line_chart(lines: Sequence[Line], labels: Sequence[str], title: str) -> str:
    """An SVG line chart of `lines` over the buckets named by `labels` (plain text), with a legend."""
    count = len(labels)
    finite = [float(v) for line in lines for v in line.values if v is not None and math.isfinite(v)]
    bottom = min(0.0, min(finite, default=0.0))
    top = nice_ceiling(max(finite, default=0.0)) if max(finite, default=0.0) > 0 else 1.0
    span = top - bottom or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / count if count else 0)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - bottom) / span)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{esc(title)}">'
             f"<title>{esc(title)}</title>"]
    for k in range(5):
        level = bottom + span * k / 4
        at = y(level)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{at:.1f}" y2="{at:.1f}"/>'
                     f'<text class="axis" x="{LEFT - 6}" y="{at + 4:.1f}" text-anchor="end">{_tick(level)}</text>')
    step = max(1, math.ceil(count / 6))
    for i in range(0, count, step):
        parts.append(f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle">{esc(labels[i])}</text>')
    for n, line in enumerate(lines):
        cls = f"s{n % SERIES_CLASSES}"
        segments: list[list[str]] = [[]]
        dots = []
        for i, v in enumerate(line.values[:count]):
            if v is None or not math.isfinite(v):
                segments.append([])
                continue
            point = f"{x(i):.1f},{y(float(v)):.1f}"
            segments[-1].append(point)
            if count <= 62:
                dots.append(f'<circle class="dot" cx="{x(i):.1f}" cy="{y(float(v)):.1f}" r="3">'
                            f"<title>{esc(line.name)} {esc(labels[i])}: {number(v)}</title></circle>")
        parts.append(f'<g class="series {cls}" data-series="{esc(line.name)}">')
        parts += [f'<polyline class="line" points="{" ".join(s)}"/>' for s in segments if len(s) > 1]
        parts += dots
        parts.append("</g>")
    parts.append("</svg>")
    legend = "".join(f'<li class="s{n % SERIES_CLASSES}">{esc(line.name)}</li>' for n, line in enumerate(lines))
    return "".join(parts) + f'<ul class="legend">{legend}</ul>'


def _tick(v: float) -> str:
    if abs(v) >= 10_000:
        return f"{v / 1000:,.0f}k"
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:.1f}"
