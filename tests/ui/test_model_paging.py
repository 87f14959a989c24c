"""A model's page lists a page of its versions and events, with links to the rest."""

from __future__ import annotations

import re
from datetime import datetime

from cas_repo import ModelMetadata, ModelStore
from cas_repo.ui import pages
from cas_repo.ui.render import page


def _md(i: int) -> ModelMetadata:
    return ModelMetadata(model_id="long", experiment_name="e", model_type="LGBM", hyperparameters={"i": i},
                         metrics={"IC": i / 100}, created_at=datetime(2026, 1, 1))


def _html(ctx: dict) -> str:
    return page("model.html", at=None, path="/model", params={}, **ctx)


def test_model_page_pages_its_versions_newest_first_and_shows_all_on_request(tmp_path, monkeypatch):
    monkeypatch.setattr(pages, "TABLE_VERSIONS", 4)
    monkeypatch.setattr(pages, "TIMELINE_EVENTS", 3)
    with ModelStore(tmp_path / "cas") as store:
        for i in range(10):
            store.save_model(i, _md(i))
        first = pages.model_page(store, "long", None)
        assert [v.version for v, _ in first["table"]] == [7, 8, 9, 10]
        assert [e.version for e in first["timeline"]] == [8, 9, 10] and len(first["events"]) == 10
        assert (first["page"], first["pages"]) == (1, 3)
        html = _html(first)
        assert 'id="older"' in html and 'id="newer"' not in html and "page=2" in html and "all=1" in html
        assert len(re.findall(r'<li class="event', html)) == 3
        # Every version stays in the charts.
        assert [len(c.points) for c in first["metric_charts"]] == [10]

        last = pages.model_page(store, "long", None, page=3)
        assert [v.version for v, _ in last["table"]] == [1, 2]
        assert 'id="newer"' in _html(last) and 'id="older"' not in _html(last)
        assert pages.model_page(store, "long", None, page=99)["page"] == 3  # past the end: the oldest page

        everything = pages.model_page(store, "long", None, show_all=True)
        assert [v.version for v, _ in everything["table"]] == list(range(1, 11))
        assert len(everything["timeline"]) == 10
        assert 'id="versions-shown"' not in _html(everything)
