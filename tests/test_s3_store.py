"""The whole store on S3 (moto on loopback): real LightGBM models saved, loaded, rolled
back, deleted and verified by digest; the CLI on the same URL, configured from AWS_*."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from cas_repo import IntegrityError, ModelDeletedError, ModelStore
from cas_repo.qlib_support import synthetic as syn

from .s3_server import BUCKET, KEYS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
URL = f"s3://{BUCKET}/models"


@pytest.fixture(scope="module")
def lgbm_pair():
    """Two real LGBModels (40 and 50 rounds) and the dataset they predict."""
    dataset = syn.make_dataset(n_instruments=20, n_days=120)
    return dataset, syn.train_lgbm(dataset, num_boost_round=40), syn.train_lgbm(dataset, num_boost_round=50)


@pytest.fixture
def s3_store(s3, tmp_path):
    with ModelStore(URL, catalog=tmp_path / "catalog.duckdb",
                    backend_options=s3.options(allow_bucket_creation=True)) as store:
        yield store


def _same_predictions(a, b, dataset) -> bool:
    return np.array_equal(syn.predict(a, dataset), syn.predict(b, dataset))


def test_lightgbm_history_round_trips_through_s3(s3, s3_store, make_md, lgbm_pair):
    dataset, parent, child = lgbm_pair
    assert not _same_predictions(parent, child, dataset)
    s3_store.save_model(parent, make_md("alpha", IC=0.041))
    mark = s3.log_offset()
    s3_store.save_model(child, make_md("alpha", IC=0.043))
    # Three requests: one LIST to catch up with the log, one PUT of the pack (new chunks
    # and manifest), one create-only PUT of the commit.
    assert s3.operations_since(mark) == {"LIST": 1, "PUT": 2}

    mark = s3.log_offset()
    loaded, md = s3_store.load_model("alpha")
    counts = s3.operations_since(mark)
    assert md.version == 2 and md.metrics == {"IC": 0.043}
    assert _same_predictions(loaded, child, dataset)
    # One LIST (catch-up: nothing new), then the manifest and the chunks from the two saves'
    # packs: ranged GETs only, no HEAD.
    assert counts["LIST"] == 1 and set(counts) == {"LIST", "GET"} and counts["GET"] <= 4

    v3 = s3_store.rollback("alpha", 1)
    rolled, md3 = s3_store.load_model("alpha")
    assert (v3, md3.rollback_of) == (3, 1)
    assert _same_predictions(rolled, parent, dataset)

    s3_store.delete_model("alpha")
    with pytest.raises(ModelDeletedError) as info:
        s3_store.load_model("alpha")
    assert isinstance(info.value, FileNotFoundError)
    old, _ = s3_store.load_model("alpha", version=2)
    assert _same_predictions(old, child, dataset)
    s3_store.undelete_model("alpha")
    assert s3_store.get_model_metadata("alpha").version == 3


def test_a_resave_of_identical_bytes_stores_no_new_chunks(s3, s3_store, make_md, lgbm_pair):
    _, parent, _ = lgbm_pair
    s3_store.save_model(parent, make_md("beta"))
    physical = s3_store.stats().physical_bytes
    s3_store.save_model(parent, make_md("beta"))
    packs = list(s3_store.objects.list_packs())
    # The second save wrote no pack, only its commit in the log.
    assert len(packs) == 1
    assert s3_store.stats().physical_bytes == physical


def test_a_pack_tampered_with_on_the_server_fails_the_load(s3, s3_store, make_md, lgbm_pair):
    _, parent, _ = lgbm_pair
    s3_store.save_model(parent, make_md("gamma"))
    ((pack, info),) = s3_store.objects.list_packs()
    # Someone with write access to the bucket flips one byte of the model's pack.
    fs = pafs.S3FileSystem(endpoint_override=s3.endpoint, scheme="http", region="us-east-1", **KEYS)
    path = f"{BUCKET}/models/{info.key}"
    with fs.open_input_file(path) as f:
        raw = bytearray(f.readall())
    raw[len(raw) // 2] ^= 0x01
    with fs.open_output_stream(path) as f:
        f.write(bytes(raw))
    with pytest.raises(IntegrityError) as err:
        s3_store.load_model("gamma")
    assert err.value.model_id == "gamma" and err.value.version == 1
    assert s3_store.objects.verify_pack(pack) != pack


def test_a_remote_store_keeps_its_index_in_the_users_cache(s3, make_md):
    opts = s3.options(allow_bucket_creation=True)
    with ModelStore(URL, backend_options=opts) as a, ModelStore(URL, backend_options=opts) as b:
        a.save_model({"x": 1}, make_md("m"))
        assert a.catalog.path == b.catalog.path  # one index per store URL
        assert a.catalog.path.is_relative_to(os.environ["CAS_REPO_INDEX_DIR"])
        assert [h.version for h in b.history("m")] == [1]


def test_the_cli_reads_an_s3_store_configured_from_the_environment(s3, s3_store, make_md, lgbm_pair, tmp_path):
    _, parent, _ = lgbm_pair
    s3_store.save_model(parent, make_md("delta", IC=0.05))
    catalog = s3_store.catalog.path
    s3_store.close()  # release the catalog for the other process
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(s3.env(), PYTHONPATH=str(PROJECT_ROOT), CAS_REPO_CATALOG=str(catalog))
    proc = subprocess.run([sys.executable, "-m", "cas_repo.cli", "--repo", URL, "--json", "ls"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(proc.stdout)
    assert (row["model_id"], row["version"], row["metrics"]) == ("delta", 1, {"IC": 0.05})
    assert KEYS["secret_key"] not in proc.stdout + proc.stderr
