"""The web view on the 100k-version store: how long the server takes to answer each page."""

from __future__ import annotations

import sys
import urllib.parse
import urllib.request
from typing import Any

from .framework import Result, bounded, explain, measure, scratch, timed
from .scale_child import MODEL_ID

TITLE = "Web view at 100k versions"
ABOUT = (
    "`cas-repo ui` serving the store of the *A store of 100k versions* section (10,000 models × 10 "
    "versions, the cached one under `.bench/`; `--quick`: 50 × 4 in a temp folder) from a thread "
    "of this process on 127.0.0.1; each figure is one whole GET, from sending the request to the "
    "last byte of the page (the page is read from the catalog index and rendered on the server; no "
    "browser). The index is caught up once before timing. *Models page*: 50 of 10,000 models, "
    "filtered, sorted and paged in DuckDB; *a model's page*: its 10-version timeline, metric charts, "
    "hyperparameters and bytes per version (a 1,000-version model's page lists its newest 100 "
    "versions and events, with links to older pages and to all, and charts every version). The last "
    "rows use the 100,000-model, 1M-version catalog of *SQL at 1M versions* instead (a catalog with "
    "no store behind it, so the page is built and rendered in this process without HTTP).")

PAGE_BOUND_MS = 300.0


def _get(url: str) -> int:
    with urllib.request.urlopen(url) as r:
        return len(r.read())


def run(quick: bool, log: Any = None) -> list[Result]:
    from cas_repo import ModelStore
    from cas_repo.ui.app import create_app
    from cas_repo.ui.server import Background

    from .scale_store import build_store, cached_store

    log = log or (lambda text: sys.stderr.write(text + "\n"))
    n_models, versions = (50, 4) if quick else (10_000, 10)
    rows: list[Result] = []
    with scratch("ui") as base:
        if quick:
            root = base / "store"
            build_store(root, n_models, versions)
        else:
            root, _ = cached_store(n_models, versions, log)
        with ModelStore(root) as store:
            catch_up, _ = timed(lambda: store.sql("SELECT count(*) FROM v_versions"))
            rows.append(Result("ui", "setup: index caught up with the log (untimed below)", catch_up, "s"))
            with Background(create_app(store)) as url:
                pages = {
                    "models page (first 50, newest first)": "/",
                    "models page sorted by IC, page 100": "/?" + urllib.parse.urlencode({"metric": "IC", "page": 100}),
                    "models page filtered by experiment and tag": "/?" + urllib.parse.urlencode(
                        {"experiment": "exp07", "tag": "dataset=synthetic", "metric": "IC", "order": "asc"}),
                    f"a model's page ({versions} versions)": "/model?id=" + MODEL_ID.format(n_models // 2),
                    "a version's page (lineage, sharing)": "/version?" + urllib.parse.urlencode(
                        {"id": MODEL_ID.format(n_models // 2), "v": versions}),
                    "models page as of a past time": "/?at=2000-01-01",
                }
                for name, path in pages.items():
                    t = measure(lambda p=path: _get(url.rstrip("/") + p), repeats=5 if quick else 15, warmup=2)
                    r = t.result("ui", f"{name} ({n_models * versions:,} versions)", unit="ms")
                    if name.startswith(("models page (", "models page sorted", "models page filtered", "a model's")):
                        r = explain(bounded(r, "<=", PAGE_BOUND_MS),
                                    "the page's SQL scans the models and versions tables once per request")
                    rows.append(r)
    if not quick:
        rows += _hundred_thousand_models()
    return rows


def _hundred_thousand_models() -> list[Result]:
    """The models page and a 1,000-version model's page on the 1M-version catalog of the
    *SQL at 1M versions* section (100,000 models): reads and rendering in this process."""
    from types import SimpleNamespace

    from cas_repo.catalog import Catalog
    from cas_repo.ui import pages
    from cas_repo.ui.render import page

    from .catalog_scale import _cached_catalog

    path, _ = _cached_catalog(100_000, 1_000_000)
    catalog = Catalog(path)
    # The pages read only `store.catalog` for these two: the catalog itself, no log behind it.
    store = SimpleNamespace(catalog=catalog)
    out = []
    try:
        for name, build, template in (
                ("models page (first 50)", lambda: pages.models_page(store, pages.ModelQuery(), None), "models.html"),
                ("models page sorted by IC, page 1,000",
                 lambda: pages.models_page(store, pages.ModelQuery(metric="IC", page=1000), None), "models.html"),
                ("a 1,000-version model's page", lambda: pages.model_page(store, "m000000", None), "model.html")):
            t = measure(lambda b=build, tpl=template: page(tpl, at=None, path="/", params={}, **b()),
                        repeats=10, warmup=1)
            out.append(explain(
                bounded(t.result("ui", f"{name}: catalog reads + rendering (100,000 models, 1M versions)"),
                        "<=", PAGE_BOUND_MS),
                "a 1,000-version model's page reads its 1,000 events (through the events table's model_id "
                "index: that table stays in log order) and its 1,000 version rows by min/max from the "
                "versions table kept in model order, draws 5 charts of 1,000 points and lists 100 versions "
                "and 100 events"))
    finally:
        catalog.close()
    return out
