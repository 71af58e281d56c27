"""Chart geometry for the run report: line charts, grouped bars with intervals, a confusion-matrix heat map.

The functions here only compute coordinates (plain dataclasses); ``templates/charts.html.j2`` draws them as inline
SVG. No plotting library: the report must open offline, and the charts are simple.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")


@dataclass
class Tick:
    """One axis tick: its position in pixels and its label."""

    pos: float
    label: str


@dataclass
class Line:
    """One series of a line chart."""

    name: str
    color: str
    points: str  # "x1,y1 x2,y2 ..." for <polyline>
    markers: list[tuple[float, float, str]] = field(default_factory=list)  # (x, y, tooltip)
    dashed: bool = False


@dataclass
class Frame:
    """What the line and bar charts share: a title, the size, and the plot area's edges in pixels.

    Pixel y grows downwards: ``top`` < ``bottom``.
    """

    title: str
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float

    def x_scale(self, low: float, high: float) -> Callable[[float], float]:
        """Pixel x of a value on an x axis from ``low`` (at ``left``) to ``high`` (at ``right``)."""
        return lambda x: self.left + (x - low) / ((high - low) or 1.0) * (self.right - self.left)

    def y_scale(self, low: float, high: float) -> Callable[[float], float]:
        """Pixel y of a value on a y axis from ``low`` (at ``bottom``) to ``high`` (at ``top``)."""
        return lambda y: self.bottom - (y - low) / ((high - low) or 1.0) * (self.bottom - self.top)


@dataclass
class LineChart(Frame):
    """A line chart's geometry."""

    x_label: str
    y_label: str
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    lines: list[Line]


@dataclass
class Bar:
    """One bar, with its error bar when an interval is known."""

    x: float
    y: float
    width: float
    height: float
    color: str
    model: str
    value_label: str
    tooltip: str
    err_low: float | None = None  # pixel y of the interval's ends
    err_high: float | None = None


@dataclass
class BarChart(Frame):
    """A grouped bar chart's geometry: one group per metric, one bar per model."""

    y_ticks: list[Tick]
    groups: list[tuple[float, str]]  # (centre x, metric name)
    bars: list[Bar]
    legend: list[tuple[str, str]]  # (model, colour)
    zero: float | None = None  # pixel y of the 0 line when the axis goes below 0


@dataclass
class Cell:
    """One cell of the heat map."""

    x: float
    y: float
    size: float
    fill: str
    text: str
    text_color: str
    tooltip: str


@dataclass
class HeatMap:
    """A confusion matrix's geometry (rows: reference class, columns: predicted class)."""

    title: str
    width: int
    height: int
    left: float
    top: float
    cell: float
    row_labels: list[tuple[float, str, str]]  # (y centre, short label, full label)
    column_labels: list[tuple[float, str, str]]  # (x centre, short label, full label)
    cells: list[Cell]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]`` (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = [round(start, 12)]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(start + len(ticks) * step, 12))
    return ticks


def format_number(value: float) -> str:
    """A short label for a tick or a value: ``0.25``, ``1.2k``, ``3e-05``."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 1000:
        return f"{value / 1000:.1f}k"
    if magnitude < 0.001:
        return f"{value:.0e}"
    return f"{value:.4g}"


def _bar_label(value: float) -> str:
    """A bar's value, short enough not to run into its neighbour's: ``0.563``, ``0.07``, ``12.5``, ``1.2k``."""
    if abs(value) >= 100:
        return format_number(value)
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _shorten(text: str, limit: int = 14) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ticks(scale: Callable[[float], float], values: Sequence[float]) -> list[Tick]:
    return [Tick(round(scale(v), 2), format_number(v)) for v in values]


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    x_label: str = "step",
    y_label: str = "",
    width: int = 640,
    height: int = 260,
    dashed: Sequence[str] = (),
) -> LineChart | None:
    """Lays out ``series`` (name, [(x, y), ...]) on shared axes; None when no series has a finite point."""
    clean = [
        (name, [(float(x), float(y)) for x, y in points if math.isfinite(float(x)) and math.isfinite(float(y))])
        for name, points in series
    ]
    clean = [(name, points) for name, points in clean if points]
    if not clean:
        return None
    xs = [x for _, points in clean for x, _ in points]
    ys = [y for _, points in clean for _, y in points]
    x_ticks_values = nice_ticks(min(xs), max(xs))
    y_ticks_values = nice_ticks(min(ys), max(ys))
    frame = Frame(title, width, height, left=60.0, right=width - 16.0, top=34.0, bottom=height - 40.0)
    px = frame.x_scale(x_ticks_values[0], x_ticks_values[-1])
    py = frame.y_scale(y_ticks_values[0], y_ticks_values[-1])
    lines = []
    for index, (name, points) in enumerate(clean):
        color = PALETTE[index % len(PALETTE)]
        coords = [(round(px(x), 2), round(py(y), 2)) for x, y in points]
        # Few points (an evaluation every N steps) read better as dots than as a bare line.
        markers = (
            [
                (cx, cy, f"{name} at {x_label} {format_number(x)}: {y:.4g}")
                for (cx, cy), (x, y) in zip(coords, points, strict=True)
            ]
            if len(points) <= 30
            else []
        )
        lines.append(
            Line(
                name=name,
                color=color,
                points=" ".join(f"{x},{y}" for x, y in coords),
                markers=markers,
                dashed=name in dashed,
            )
        )
    return LineChart(
        **vars(frame),
        x_label=x_label,
        y_label=y_label,
        x_ticks=_ticks(px, x_ticks_values),
        y_ticks=_ticks(py, y_ticks_values),
        lines=lines,
    )


def bar_chart(
    title: str,
    metrics: Sequence[str],
    models: Sequence[str],
    values: dict[str, dict[str, float]],
    intervals: dict[str, dict[str, tuple[float, float]]] | None = None,
    *,
    colors: dict[str, str] | None = None,
    width: int = 640,
    height: int = 280,
) -> BarChart | None:
    """Grouped bars: ``values[metric][model]``, with ``intervals[metric][model] = (low, high)`` as error bars.

    None when there is nothing to draw. The y axis starts at 0 and covers every value and interval end.
    """
    intervals = intervals or {}
    colors = colors or {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    present = [m for m in metrics if any(math.isfinite(v) for v in values.get(m, {}).values())]
    if not present or not models:
        return None
    tops = [v for m in present for v in values[m].values() if math.isfinite(v)]
    tops += [end for m in present for pair in intervals.get(m, {}).values() for end in pair if math.isfinite(end)]
    low = min(0.0, min(tops))
    high = max(tops + [1e-9])
    ticks = nice_ticks(low, high)
    frame = Frame(title, width, height, left=56.0, right=width - 12.0, top=52.0, bottom=height - 44.0)
    py = frame.y_scale(ticks[0], ticks[-1])
    group_width = (frame.right - frame.left) / len(present)
    bar_width = min(48.0, group_width * 0.8 / len(models))
    bars, groups = [], []
    for g, metric in enumerate(present):
        centre = frame.left + group_width * (g + 0.5)
        groups.append((round(centre, 2), _shorten(metric, 22)))
        start = centre - bar_width * len(models) / 2
        for b, model in enumerate(models):
            value = values[metric].get(model)
            if value is None or not math.isfinite(value):
                continue
            y_value, y_zero = py(value), py(0.0)
            interval = intervals.get(metric, {}).get(model)
            tooltip = f"{model} {metric}: {value:.4f}"
            if interval:
                tooltip += f" (interval {interval[0]:.4f} to {interval[1]:.4f})"
            bars.append(
                Bar(
                    x=round(start + b * bar_width + 1, 2),
                    y=round(min(y_value, y_zero), 2),
                    width=round(bar_width - 2, 2),
                    height=round(max(abs(y_zero - y_value), 0.5), 2),
                    color=colors.get(model, PALETTE[b % len(PALETTE)]),
                    model=model,
                    value_label=_bar_label(value),
                    tooltip=tooltip,
                    err_low=round(py(interval[0]), 2) if interval else None,
                    err_high=round(py(interval[1]), 2) if interval else None,
                )
            )
    return BarChart(
        **vars(frame),
        y_ticks=_ticks(py, ticks),
        groups=groups,
        bars=bars,
        legend=[(m, colors.get(m, PALETTE[i % len(PALETTE)])) for i, m in enumerate(models)],
        zero=round(py(0.0), 2) if ticks[0] < 0 else None,
    )


def heat_map(title: str, labels: Sequence[str], matrix: Sequence[Sequence[float]]) -> HeatMap | None:
    """A confusion matrix as a heat map; cells are shaded by their share of the row (the reference class)."""
    n = len(labels)
    if not n or len(matrix) != n or any(len(row) != n for row in matrix):
        return None
    cell = max(28.0, min(56.0, 420.0 / n))
    left, top = 130.0, 70.0
    cells = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            # Blue ramp from white; text turns white on dark cells.
            shade = int(round(255 - share * (255 - 60)))
            fill = f"rgb({shade},{int(round(255 - share * (255 - 114)))},{int(round(255 - share * (255 - 178)))})"
            cells.append(
                Cell(
                    x=round(left + j * cell, 2),
                    y=round(top + i * cell, 2),
                    size=round(cell, 2),
                    fill=fill,
                    text=format_number(float(count)) if count else "",
                    text_color="#ffffff" if share > 0.55 else "#1a1a1a",
                    tooltip=f"reference {labels[i]}, predicted {labels[j]}: {format_number(float(count))}"
                    f" ({share:.0%} of the row)",
                )
            )
    return HeatMap(
        title=title,
        width=int(left + n * cell + 20),
        height=int(top + n * cell + 40),
        left=left,
        top=top,
        cell=cell,
        row_labels=[
            (round(top + (i + 0.5) * cell, 2), _shorten(label or "(empty)"), label)
            for i, label in enumerate(labels)
        ],
        column_labels=[
            (round(left + (j + 0.5) * cell, 2), _shorten(label or "(empty)", 10), label)
            for j, label in enumerate(labels)
        ],
        cells=cells,
    )
