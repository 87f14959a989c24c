"""Chart and graph geometry for the web view, as values; the templates draw them as SVG.

Nothing here builds markup: coordinates are numbers and labels stay text, so the
templates' autoescaping is the only place a label turns into HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 640, 220, 64, 30, 12, 16
MARKERS = 200


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    label: str  # x label (a version)
    value: str  # the value, formatted
    tick: bool = True  # whether the x axis prints the label (about a dozen do)
    marker: bool = True  # a dot per version, up to MARKERS versions (beyond, the line alone)


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class LineChart:
    """One metric over versions: a polyline through one point per version that has it."""

    title: str
    points: tuple[Point, ...]
    ticks: tuple[Tick, ...]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str
    value: str
    tick: bool = True


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    width: int = WIDTH
    height: int = HEIGHT


def _ticks(lo: float, hi: float, fmt) -> tuple[Tick, ...]:
    h = HEIGHT - TOP - BOTTOM
    return tuple(Tick(TOP + h - h * k / 4, fmt(lo + (hi - lo) * k / 4)) for k in range(5))


def _labelled(i: int, n: int, labels: int = 12) -> bool:
    return i % max(1, -(-n // labels)) == 0 or i == n - 1


def line_chart(title: str, xs: Sequence[int], ys: Sequence[float]) -> LineChart:
    """``ys`` against versions ``xs`` (same length), scaled into the plot area."""
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - (abs(lo) or 1) * 0.1, hi + (abs(hi) or 1) * 0.1
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = len(xs)
    points = tuple(
        Point(LEFT + (w * i / (n - 1) if n > 1 else w / 2), TOP + h - h * (y - lo) / (hi - lo),
              f"v{x}", f"{y:.6g}", _labelled(i, n), n <= MARKERS)
        for i, (x, y) in enumerate(zip(xs, ys)))
    return LineChart(title, points, _ticks(lo, hi, lambda v: f"{v:.4g}"))


def bar_chart(title: str, xs: Sequence[int], ys: Sequence[int], fmt) -> BarChart:
    """Non-negative ``ys`` as bars per version."""
    hi = max(max(ys, default=0), 1)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = w / max(len(xs), 1)
    bw = max(min(step * 0.7, 40), 1)
    bars = tuple(Bar(LEFT + step * i + (step - bw) / 2, TOP + h - h * y / hi, bw, h * y / hi, f"v{x}", fmt(y),
                     _labelled(i, len(xs)))
                 for i, (x, y) in enumerate(zip(xs, ys)))
    return BarChart(title, bars, _ticks(0, hi, fmt))


@dataclass(frozen=True, slots=True)
class Node:
    key: str  # "model@version", or "dataset"
    x: float
    y: float
    label: str
    kind: str  # "self", "version" or "dataset"


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    relation: str  # "parent", "rollback_of" or "trained on"
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int


NODE_W, NODE_H, COL, ROW = 150, 30, 200, 48


def layered_graph(center: str, depths: dict[str, int], edges: Sequence[tuple[str, str, str]],
                  dataset: str | None = None) -> Graph:
    """Nodes in columns by depth (ancestors left, descendants right); edges child → parent.

    ``depths`` maps each node key to its signed distance from ``center`` (ancestors
    negative); ``edges`` are ``(child, parent, relation)``; ``dataset`` adds a node the
    centre was trained on.
    """
    cols: dict[int, list[str]] = {}
    for key, d in sorted(depths.items(), key=lambda kv: (kv[1], kv[0])):
        cols.setdefault(d, []).append(key)
    lo = min(cols) if cols else 0
    if dataset is not None:
        lo = min(lo, -1)
    rows = max([len(v) for v in cols.values()] + [2 if dataset else 1])
    pos: dict[str, tuple[float, float]] = {}
    for d, keys in cols.items():
        for i, key in enumerate(keys):
            pos[key] = (20 + (d - lo) * COL, 20 + i * ROW)
    nodes = [Node(k, x, y, k, "self" if k == center else "version") for k, (x, y) in pos.items()]
    drawn = [(a, b, r) for a, b, r in edges if a in pos and b in pos]
    if dataset is not None:
        x, y = 20 + (-1 - lo) * COL, 20 + len(cols.get(-1, [])) * ROW
        pos["dataset"] = (x, y)
        nodes.append(Node("dataset", x, y, dataset, "dataset"))
        drawn.append((center, "dataset", "trained on"))
    out = []
    for a, b, r in drawn:
        (ax, ay), (bx, by) = pos[a], pos[b]
        # An edge leaves the child's left side and ends at the parent's right side.
        out.append(Edge(a, b, r, ax, ay + NODE_H / 2, bx + NODE_W, by + NODE_H / 2))
    width = 40 + (max(cols, default=0) - lo) * COL + NODE_W
    return Graph(tuple(nodes), tuple(out), int(width), int(40 + rows * ROW))
