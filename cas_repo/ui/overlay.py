"""Geometry of the compare page's charts: one metric, one line per model, the compared
versions marked (values only; the template draws the SVG and escapes every label)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, Tick

PALETTE = ("#1f5f99", "#e39b3a", "#1a7f37", "#c62828", "#7b4fb0", "#00838f", "#6d4c41", "#ad1457")


@dataclass(frozen=True, slots=True)
class Dot:
    x: float
    y: float
    label: str  # "model@version"
    value: str
    marked: bool  # one of the compared versions


@dataclass(frozen=True, slots=True)
class Series:
    """One model's values of the metric over its versions."""

    label: str
    color: str
    dots: tuple[Dot, ...]

    @property
    def polyline(self) -> str:
        return " ".join(f"{d.x:.1f},{d.y:.1f}" for d in self.dots)


@dataclass(frozen=True, slots=True)
class OverlayChart:
    title: str
    series: tuple[Series, ...]
    ticks: tuple[Tick, ...]
    xticks: tuple[tuple[float, str], ...]
    width: int = WIDTH
    height: int = HEIGHT


def overlay_chart(title: str, lines: Sequence[tuple[str, Sequence[int], Sequence[float], Collection[int]]]
                  ) -> OverlayChart:
    """``lines`` of ``(model_id, versions, values, marked versions)`` on one version axis."""
    ys = [y for _, _, vals, _ in lines for y in vals]
    xs = [x for _, vers, _, _ in lines for x in vers]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - (abs(lo) or 1) * 0.1, hi + (abs(hi) or 1) * 0.1
    x0, x1 = (min(xs), max(xs)) if xs else (1, 1)
    # The plot starts below the title line, so a top value's ring never covers it.
    top = TOP + 16
    w, h = WIDTH - LEFT - RIGHT - 20, HEIGHT - top - BOTTOM

    def px(x: int) -> float:
        return LEFT + 10 + (w * (x - x0) / (x1 - x0) if x1 > x0 else w / 2)

    def py(y: float) -> float:
        return top + h - h * (y - lo) / (hi - lo)

    series = tuple(
        Series(model, PALETTE[i % len(PALETTE)], tuple(
            Dot(px(x), py(y), f"{model}@{x}", f"{y:.6g}", x in marked) for x, y in zip(vers, vals)))
        for i, (model, vers, vals, marked) in enumerate(lines))
    ticks = tuple(Tick(top + h - h * k / 4, f"{lo + (hi - lo) * k / 4:.4g}") for k in range(5))
    step = max(1, -(-(x1 - x0 + 1) // 12))
    xticks = tuple((px(x), f"v{x}") for x in range(x0, x1 + 1, step)) if xs else ()
    return OverlayChart(title, series, ticks, xticks)
