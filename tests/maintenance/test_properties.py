"""Properties over random histories: gc never loses a retained byte; the audit always adds up."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas_repo import ModelMetadata, ModelStore
from cas_repo.errors import ModelPurgedError
from cas_repo.maintenance import RetentionPolicy, apply_retention, audit, fsck, rebuild_catalog, run_gc

_RNG = np.random.default_rng(3)
# Contents overlap on purpose: a shared base array plus small distinct parts.
_BASE = _RNG.standard_normal(20_000)
CONTENTS = [{"base": _BASE, "own": _RNG.standard_normal(n)} for n in (10, 3_000, 9_000)] + [{"solo": 1}]
MODELS = ("a", "b", "c")

ops = st.lists(st.one_of(
    st.tuples(st.just("save"), st.sampled_from(MODELS), st.integers(0, len(CONTENTS) - 1)),
    st.tuples(st.just("delete"), st.sampled_from(MODELS)),
    st.tuples(st.just("undelete"), st.sampled_from(MODELS)),
    st.tuples(st.just("retain"), st.integers(1, 2)),
    st.tuples(st.just("gc"), st.booleans()),
), min_size=1, max_size=12)


def _apply(store: ModelStore, op: tuple) -> None:
    kind = op[0]
    known = {m.model_id for m in store.list_models(include_deleted=True)}
    if kind == "save":
        store.save_model(CONTENTS[op[2]], ModelMetadata(op[1], "exp", "LGBM", {}, {"IC": 0.1}, datetime(2026, 1, 1)))
    elif kind in ("delete", "undelete") and op[1] in known:
        (store.delete_model if kind == "delete" else store.undelete_model)(op[1])
    elif kind == "retain":
        apply_retention(store, RetentionPolicy(keep_last=op[1]))
    elif kind == "gc":
        run_gc(store, grace=timedelta(0), purge_older_than=timedelta(0) if op[1] else None)


def _expect_loadable(store: ModelStore) -> None:
    """Every version that was not purged loads and verifies; purged ones say so."""
    for md in store.list_models(include_deleted=True):
        for v in store.history(md.model_id):
            try:
                store.load_model(md.model_id, v.version)
            except ModelPurgedError:
                pass


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops)
def test_any_history_then_gc_loses_nothing_retained_and_the_audit_adds_up(history):
    root = tempfile.mkdtemp(prefix="cas-prop-")
    try:
        with ModelStore(root, backend_options={"fsync": False}) as store:
            for op in history:
                _apply(store, op)
            run_gc(store, grace=timedelta(0), purge_older_than=timedelta(0), repack_below=1.0)
            run_gc(store, grace=timedelta(0))  # deletes the packs the repack emptied
            _expect_loadable(store)
            assert fsck(store, full=True).findings == ()
            report = audit(store)
            t = report.totals
            assert report.walk.agrees and t.unreferenced_bytes == 0
            assert sum(m.logical_bytes for m in report.models) == t.logical_bytes
            assert sum(g.new_bytes for g in report.growth) == t.content_stored_bytes
            assert sum(v.logical_bytes for v in report.versions) == t.logical_bytes
            for m in report.models:
                assert m.reclaimable_bytes + m.shared_bytes == m.physical_bytes
            heads = [(m.model_id, m.version, m.deleted) for m in store.list_models(include_deleted=True)]
        rebuild_catalog(root)
        with ModelStore(root) as again:
            assert [(m.model_id, m.version, m.deleted) for m in again.list_models(include_deleted=True)] == heads
            _expect_loadable(again)
    finally:
        shutil.rmtree(root, ignore_errors=True)
