"""The dedup audit: exact figures against an independent count, its SQL as documented, its HTML."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pytest

from cas_repo.catalog.audit import AUDIT_QUERIES, AUDIT_WITH, audit_sql
from cas_repo.compression import maybe_compress
from cas_repo.content import to_content
from cas_repo.maintenance import audit, render_html

DOCS = Path(__file__).resolve().parents[2] / "docs" / "maintenance.md"


def stored(entry) -> int:
    return len(maybe_compress(entry.data)[1]) if entry.compress else len(entry.data)


@pytest.fixture
def twins_and_three(store, make_md, rng):
    """10 identical saves (5 under each of two model_ids) and 3 distinct models."""
    same = {"w": rng.standard_normal(70_000), "name": "twin"}
    distinct = [{"w": rng.standard_normal(n), "text": "abc" * n} for n in (3_000, 20_000, 50_000)]
    for i in range(10):
        store.save_model(same, make_md("twin-a" if i < 5 else "twin-b"))
    for i, model in enumerate(distinct):
        store.save_model(model, make_md(f"d{i}", experiment="other"))
    return store, same, distinct


def test_ten_identical_saves_and_three_models_give_the_exact_counts(twins_and_three, store_dir):
    store, same, distinct = twins_and_three
    # The independent count: what the serializer and chunker produce, and what is on disk.
    contents = [to_content(same)] + [to_content(m) for m in distinct]
    entries = {}
    for c in contents:
        entries.update({d.hex: (len(e.data), stored(e)) for d, e in c.entries.items()})
        entries[c.digest.hex] = (len(c.manifest_bytes), len(c.manifest_bytes))
    pack_files = [p for p in (store_dir / "objects" / "packs").rglob("*") if p.is_file()]
    report = audit(store)
    t = report.totals
    # Identical saves store nothing: one pack per distinct content, and events are log commits.
    assert (t.models, t.versions, t.packs) == (5, 13, len(pack_files)) and len(pack_files) == 4
    assert (t.objects, t.manifests, t.records, t.history_bytes) == (len(entries), 4, 0, 0)
    assert t.chunks == len(entries) - 4
    assert t.logical_bytes == 10 * contents[0].manifest.size + sum(c.manifest.size for c in contents[1:])
    assert t.physical_bytes == sum(p.stat().st_size for p in pack_files)
    assert t.content_bytes == sum(size for size, _ in entries.values())
    assert t.content_stored_bytes == sum(st for _, st in entries.values())
    assert t.unreferenced_bytes == 0
    assert t.dedup_ratio == pytest.approx(t.logical_bytes / t.physical_bytes)
    assert report.walk is not None and report.walk.agrees
    assert report.walk.distinct_entries == t.objects and report.walk.pack_bytes == t.physical_bytes
    # The history lives in the log: one commit per save, sized as on disk.
    commits = [p for p in (store_dir / "objects" / "log").iterdir() if p.is_file()]
    assert (report.log.commits, report.log.checkpoints, report.log.checkpoint_bytes) == (13, 0, 0)
    assert report.log.log_bytes == sum(p.stat().st_size for p in commits) > 0
    store.checkpoint()
    again = audit(store).log
    checkpoints = list((store_dir / "objects" / "checkpoints").iterdir())
    assert (again.checkpoints, again.checkpoint_bytes) == (1, checkpoints[0].stat().st_size)
    assert again.total_bytes == report.log.log_bytes + checkpoints[0].stat().st_size

    models = {m.model_id: m for m in report.models}
    twin_bytes = sum(entries[d][1] for d in [c.hex for c in contents[0].entries] + [contents[0].digest.hex])
    for name in ("twin-a", "twin-b"):
        assert (models[name].versions, models[name].physical_bytes) == (5, twin_bytes)
        assert (models[name].reclaimable_bytes, models[name].shared_bytes) == (0, twin_bytes)
    for i, c in enumerate(contents[1:]):
        own = {d.hex for d in c.entries} | {c.digest.hex}
        others = set().union(*({d.hex for d in o.entries} | {o.digest.hex} for o in contents if o is not c))
        m = models[f"d{i}"]
        assert m.physical_bytes == sum(entries[d][1] for d in own)
        assert m.reclaimable_bytes == sum(entries[d][1] for d in own - others)
    assert all(v.unique_bytes == 0 and v.shared_bytes == twin_bytes for v in report.versions
               if v.model_id.startswith("twin"))
    [group] = report.identical_versions
    assert group.refs == tuple(f"twin-{x}@{v}" for x in "ab" for v in range(1, 6))
    assert (group.versions, group.models, group.manifest) == (10, 2, contents[0].digest.hex)
    top = report.shared_chunks[0]
    assert top.versions == 10 and top.models == 2
    experiments = {e.experiment_name: e for e in report.experiments}
    assert experiments["exp"].physical_bytes == twin_bytes
    assert sum(e.logical_bytes for e in report.experiments) == t.logical_bytes
    assert sum(g.new_bytes for g in report.growth) == t.content_stored_bytes


def test_every_number_is_reproduced_by_the_documented_sql(twins_and_three, store_dir, tmp_path):
    store, _, _ = twins_and_three
    store.delete_model("d0")
    report = audit(store).to_json()
    index = store.catalog.path
    store.close()
    docs = DOCS.read_text()
    for text in [AUDIT_WITH, *AUDIT_QUERIES.values()]:
        assert text.strip() in docs, "docs/maintenance.md must quote the audit SQL verbatim"
    copy = tmp_path / "copy.duckdb"
    shutil.copy(index, copy)
    con = duckdb.connect(str(copy), read_only=True)
    try:
        for name, key in [("totals", "totals"), ("models", "models"), ("experiments", "experiments"),
                          ("versions", "versions"), ("shared_chunks", "shared_chunks"),
                          ("identical_versions", "identical_versions"), ("growth", "growth")]:
            cur = con.execute(audit_sql(name))
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
            got = report[key] if isinstance(report[key], (list, tuple)) else [report[key]]
            assert len(rows) == len(got)
            for row, mine in zip(rows, got):
                for col, value in row.items():
                    expected = mine[col]
                    if hasattr(value, "isoformat"):
                        assert expected.replace(tzinfo=None) == value
                    else:
                        assert (list(expected) if isinstance(expected, tuple) else expected) == value, (name, col)
    finally:
        con.close()


def test_the_audit_agrees_with_the_store_or_says_where_not(store, store_dir, make_md):
    store.save_model({"w": np.arange(10_000)}, make_md())
    assert audit(store).walk.agrees
    from cas_repo.digest import hash_bytes
    from cas_repo.location import CHUNK
    from cas_repo.objects.store import NewEntry

    store.objects.write([NewEntry(hash_bytes(b"o" * 99), CHUNK, b"o" * 99)])
    walk = audit(store).walk
    assert not walk.agrees and "2 packs" in walk.differences[0]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs


def test_the_html_report_is_self_contained_with_charts(store, make_md, rng):
    for i in range(3):
        store.save_model({"w": rng.standard_normal(5_000), "i": i}, make_md("m"))
    store.save_model({"w": 1}, make_md("x", experiment="<script>alert(1)</script> & co"))
    html = render_html(audit(store))
    parsed = _Tags()
    parsed.feed(html)
    assert parsed.tags.count("svg") >= 2 and "polyline" in parsed.tags
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    assert not [v for k, v in parsed.attrs if k in ("src", "href")]
    assert re.findall(r"https?://[^\"' ]+", html) == ["http://www.w3.org/2000/svg"] * html.count("<svg")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html


def test_an_empty_store_audits_to_zeros(store):
    report = audit(store)
    assert report.totals.versions == 0 and report.totals.dedup_ratio == 0.0 and report.walk.agrees
    assert "No versions yet" in render_html(report)


def test_audit_of_a_store_after_purge_counts_only_stored_versions(store, make_md, rng):
    from datetime import timedelta

    from cas_repo.maintenance import run_gc

    store.save_model({"w": rng.standard_normal(20_000)}, make_md("gone"))
    store.save_model({"w": rng.standard_normal(20_000)}, make_md("kept"))
    store.delete_model("gone")
    run_gc(store, grace=timedelta(0), purge_older_than=timedelta(0))
    run_gc(store, grace=timedelta(0))
    report = audit(store)
    assert (report.totals.versions, report.totals.purged_versions) == (1, 1)
    assert [m.model_id for m in report.models] == ["kept"]
    assert report.walk.agrees and report.totals.unreferenced_bytes == 0
