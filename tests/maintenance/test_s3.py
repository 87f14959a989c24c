"""The maintenance tools on an S3 store (moto on loopback): same results as on a folder."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from cas_repo import ModelStore
from cas_repo.errors import ModelPurgedError
from cas_repo.maintenance import audit, fsck, rebuild_catalog, run_gc

from ..s3_server import BUCKET

URL = f"s3://{BUCKET}/maint"


def test_gc_fsck_audit_and_rebuild_on_s3(s3, tmp_path, make_md, rng):
    catalog = tmp_path / "catalog.duckdb"
    options = s3.options(allow_bucket_creation=True)
    shared = rng.standard_normal(30_000)
    with ModelStore(URL, catalog=catalog, backend_options=options) as store:
        store.save_model({"s": shared, "own": rng.standard_normal(60_000)}, make_md("a"))
        store.save_model({"s": shared, "own": rng.standard_normal(2_000)}, make_md("b"))
        store.delete_model("a")
        first = run_gc(store, grace=timedelta(0), purge_older_than=timedelta(0))
        assert first.purged == (("a", 1),) and len(first.repacked) == 1 and first.position is not None
        assert run_gc(store, grace=timedelta(0)).position is None  # the old pack went in the first run
        assert fsck(store, full=True).findings == ()
        report = audit(store)
        assert report.walk.agrees and report.totals.unreferenced_bytes == 0
        assert np.array_equal(store.load_model("b")[0]["s"], shared)
        history = [(m.model_id, m.version, m.deleted) for m in store.list_models(include_deleted=True)]
    catalog.unlink()
    assert rebuild_catalog(URL, catalog=catalog, backend_options=options).problems == ()
    with ModelStore(URL, catalog=catalog, backend_options=options) as store:
        assert [(m.model_id, m.version, m.deleted) for m in store.list_models(include_deleted=True)] == history
        with pytest.raises(ModelPurgedError):
            store.load_model("a", 1)
        store.load_model("b")
