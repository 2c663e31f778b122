"""Charts drawn on the server as inline SVG: shapes with their coordinates, which ``templates/chart.html``
writes out (autoescaped like everything else; colours come from the stylesheet, so the page's
Content-Security-Policy needs no inline style). No JavaScript library, nothing from the internet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    kind: str  # CSS class: series-a, series-b, gain, loss
    title: str  # the tooltip: the exact figure


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "start"
    kind: str = ""  # CSS class: "axis-title" for the name of an axis
    rotate: bool = False  # written upwards (the vertical axis' name)


@dataclass
class Chart:
    width: int
    height: int
    title: str
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    lines: list[tuple[float, float, float, float, str]] = field(default_factory=list)
    polyline: str = ""
    points: list[tuple[float, float, str]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (CSS class, text)


def compare_bars(
    rows: Sequence[tuple[str, float, float | None]],
    a_name: str,
    b_name: str,
    title: str,
    *,
    x_label: str = "",
    diff_label: str = "",
) -> Chart:
    """Horizontal bars, two per row (e.g. per-class F1 of a version, series a, against the champion, series
    b), on a 0-1 scale; the difference is written at the end of each row, green for a gain, red for a
    loss. ``x_label`` names the bars' scale and ``diff_label`` the difference column (under them)."""
    row_h, left, bar_w = 22, 230, 380
    bottom = 30 + row_h * len(rows)
    height = bottom + 30
    chart = Chart(720, height, title, legend=[("series-a", a_name), ("series-b", b_name)])
    for i, (label, a, b) in enumerate(rows):
        y = 30 + i * row_h
        chart.labels.append(Label(left - 6, y + 13, label[:34], "end"))
        chart.rects.append(Rect(left, y + 2, bar_w * max(0.0, min(1.0, a)), 8, "series-a", f"{a:.3f}"))
        if b is not None:
            chart.rects.append(Rect(left, y + 11, bar_w * max(0.0, min(1.0, b)), 8, "series-b", f"{b:.3f}"))
            diff = a - b
            chart.labels.append(Label(left + bar_w + 8, y + 14, f"{diff:+.3f}"))
            kind = "gain" if diff >= 0 else "loss"
            chart.rects.append(
                Rect(left + bar_w + 60, y + 4, min(60.0, abs(diff) * 300), 12, kind, f"{diff:+.3f}")
            )
    chart.lines.append((left, 24, left, bottom + 4, "axis"))
    chart.labels.append(Label(left, bottom + 16, "0", "middle"))
    chart.labels.append(Label(left + bar_w, bottom + 16, "1", "middle"))
    if x_label:
        chart.labels.append(Label(left + bar_w / 2, bottom + 16, x_label, "middle", "axis-title"))
    if diff_label:
        chart.labels.append(Label(left + bar_w + 24, bottom + 16, diff_label, "start", "axis-title"))
    return chart


def grouped_bars(
    rows: Sequence[tuple[str, float, float]],
    a_name: str,
    b_name: str,
    title: str,
    *,
    x_label: str = "",
    y_label: str = "",
) -> Chart:
    """Vertical bars, two per category (e.g. the share of each class among predictions, a, and in the
    training labels, b); ``x_label`` and ``y_label`` name the axes."""
    width, height, bottom, top = 720, 280, 200, 30
    peak = max([a for _, a, _ in rows] + [b for _, _, b in rows] + [1e-9])
    step = (width - 60) / max(1, len(rows))
    chart = Chart(width, height, title, legend=[("series-a", a_name), ("series-b", b_name)])
    for i, (label, a, b) in enumerate(rows):
        x = 50 + i * step
        for offset, value, kind in ((0.1, a, "series-a"), (0.5, b, "series-b")):
            h = (bottom - top) * value / peak
            chart.rects.append(
                Rect(x + step * offset, bottom - h, step * 0.38, h, kind, f"{label}: {value:.1%}")
            )
        # many categories: every other label a line lower, so that neighbours do not overlap
        low = 12 if len(rows) > 14 and i % 2 else 0
        chart.labels.append(Label(x + step * 0.5, bottom + 14 + low, label, "middle"))
    chart.lines.append((45, bottom, width - 10, bottom, "axis"))
    chart.labels.append(Label(40, top + 4, f"{peak:.0%}", "end"))
    chart.labels.append(Label(40, bottom, "0", "end"))
    _axis_titles(chart, x_label, y_label, (50 + width - 10) / 2, bottom + 44, (top + bottom) / 2)
    return chart


def _axis_titles(chart: Chart, x_label: str, y_label: str, x_mid: float, x_y: float, y_mid: float) -> None:
    if x_label:
        chart.labels.append(Label(x_mid, x_y, x_label, "middle", "axis-title"))
    if y_label:
        chart.labels.append(Label(14, y_mid, y_label, "middle", "axis-title", rotate=True))


def daily_line(
    days: Sequence[tuple[str, float]],
    title: str,
    *,
    as_percent: bool,
    threshold: float | None = None,
    x_label: str = "",
    y_label: str = "",
) -> Chart:
    """A value by day: a line with a point per day (and a dashed threshold line); ``x_label`` and
    ``y_label`` name the axes."""
    width, height, bottom, top, left = 720, 236, 180, 30, 60
    values = [v for _, v in days]
    peak = 1.0 if as_percent else max([*values, 1.0])
    span = width - left - 20
    step = span / max(1, len(days) - 1)
    chart = Chart(width, height, title)

    def y_of(v: float) -> float:
        return bottom - (bottom - top) * v / peak

    coords = []
    for i, (day, value) in enumerate(days):
        x = left + i * step if len(days) > 1 else left + span / 2
        y = y_of(value)
        coords.append(f"{x:.1f},{y:.1f}")
        shown = f"{value:.1%}" if as_percent else f"{value:g}"
        chart.points.append((x, y, f"{day}: {shown}"))
        if i == 0 or i == len(days) - 1 or len(days) <= 10:
            chart.labels.append(Label(x, bottom + 14, day[5:], "middle"))
    chart.polyline = " ".join(coords)
    chart.lines.append((left, bottom, width - 10, bottom, "axis"))
    chart.lines.append((left, top, left, bottom, "axis"))
    chart.labels.append(Label(left - 6, top + 4, "100 %" if as_percent else f"{peak:g}", "end"))
    chart.labels.append(Label(left - 6, bottom, "0", "end"))
    if threshold is not None:
        chart.lines.append((left, y_of(threshold), width - 10, y_of(threshold), "threshold"))
    _axis_titles(chart, x_label, y_label, left + span / 2, bottom + 34, (top + bottom) / 2)
    return chart
