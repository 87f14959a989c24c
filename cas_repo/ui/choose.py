"""The compare and leaderboard pages: what they show, read from a store (blocking).

Both read the store as it stands now; neither changes it. Errors in what a visitor typed
(a reference, a filter) are shown on the page beside the form, as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..catalog import browse
from ..catalog import search as catalog_search
from ..comparison import Comparison
from ..errors import CasRepoError, InvalidMetadataError
from ..filters import Filter, parse_filter
from ..maintenance.html_report import human
from ..metadata import split_ref
from ..repository import ModelStore
from .overlay import OverlayChart, overlay_chart

CANDIDATES = 50  # versions offered as checkboxes on the compare page (the newest)
BOARD_LIMIT = 200


def compare_page(store: ModelStore, refs: Sequence[str]) -> dict[str, Any]:
    """The chosen versions side by side, with one chart per metric; the picker either way."""
    # One catalog session for the page: the store's reads below re-enter it.
    with store.catalog.session():
        return _compare(store, refs)


def _compare(store: ModelStore, refs: Sequence[str]) -> dict[str, Any]:
    chosen = [r.strip() for r in refs if r.strip()]
    ctx: dict[str, Any] = {"chosen": chosen, "comparison": None, "charts": [], "error": None,
                           "candidates": store.search_versions(limit=CANDIDATES)}
    if len(chosen) == 1:
        ctx["error"] = "Pick at least two versions to compare."
    elif chosen:
        try:
            for r in chosen:
                if split_ref(r)[1:] == (None, None):
                    raise InvalidMetadataError(f"{r!r} names a model, not a version: write {r}@3 or {r}@prod")
            c = store.compare(chosen)
        except CasRepoError as exc:
            ctx["error"] = str(exc)
        else:
            ctx["comparison"] = c
            ctx["charts"] = _charts(store, c)
    ctx["picked"] = set(chosen)
    offered = {f"{m.model_id}@{m.version}" for m in ctx["candidates"]}
    ctx["typed"] = [r for r in chosen if r not in offered]
    ctx["human"] = human
    return ctx


def _charts(store: ModelStore, c: Comparison) -> list[OverlayChart]:
    """One overlaid chart per metric: each compared model's values over its versions."""
    models = list(dict.fromkeys(m.model_id for m in c.versions))
    f = Filter().also("model_id", "IN", tuple(models)) if models else Filter()
    history = store.search_versions(f, ["version"], include_deleted=True)
    marked = {m: {v.saved_version() for v in c.versions if v.model_id == m} for m in models}
    charts = []
    for row in c.metrics:
        lines = []
        for m in models:
            pts = [(v.saved_version(), v.metrics[row.name]) for v in history
                   if v.model_id == m and row.name in v.metrics]
            lines.append((m, [p[0] for p in pts], [p[1] for p in pts], marked[m]))
        charts.append(overlay_chart(row.name, lines))
    return charts


def leaderboard_page(store: ModelStore, metric: str | None, experiment: str | None, lower: bool,
                     where: str | None) -> dict[str, Any]:
    """Each model's best version by ``metric`` (the first metric name when none is given)."""
    with store.catalog.session() as s:  # one session for the page: the leaderboard's read re-enters it
        names = catalog_search.metric_names(s)
        experiments = browse.facets(s).experiments
        metric = metric or ("IC" if "IC" in names else (names[0] if names else None))
        ctx: dict[str, Any] = {"metric": metric, "metrics": names, "experiments": experiments,
                               "experiment": experiment or "", "lower": lower, "where": where or "",
                               "board": None, "error": None, "widths": {}, "others": []}
        if metric is None:
            return ctx
        try:
            board = store.leaderboard(metric, experiment, not lower, parse_filter(where), BOARD_LIMIT)
        except CasRepoError as exc:
            ctx["error"] = str(exc)
            return ctx
    ctx["board"] = board
    top = max((abs(st.value) for st in board.standings), default=0.0) or 1.0
    ctx["widths"] = {st.ref: round(100 * abs(st.value) / top, 1) for st in board.standings}
    ctx["others"] = sorted({k for st in board.standings for k in st.metrics} - {metric})
    return ctx
