"""Real Qlib LightGBM models through the store: identical predictions, shared bytes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.qlib_support import synthetic

pytestmark = pytest.mark.xdist_group("qlib")


@pytest.fixture(scope="module")
def dataset():
    return synthetic.make_dataset(synthetic.make_frame(seed=1))


@pytest.fixture(scope="module")
def lgbm(dataset):
    return synthetic.train_lgbm(dataset, num_boost_round=100)


def _md(model_id, **kw):
    from datetime import datetime

    return ModelMetadata(model_id=model_id, experiment_name="qlib_test", model_type="LGBM",
                         hyperparameters={"num_boost_round": 100, "num_leaves": 31},
                         metrics={"IC": 0.05}, created_at=datetime(2026, 1, 1), **kw)


def test_saved_lgbm_predicts_identically_in_a_fresh_process(tmp_path, dataset, lgbm):
    expected = synthetic.predict(lgbm, dataset)
    np.save(tmp_path / "expected.npy", expected)
    with ModelStore(tmp_path / "cas") as store:
        store.save_model(lgbm, _md("lgbm"))
    script = textwrap.dedent(f"""
        import numpy as np
        from cas_repo import ModelStore
        from cas_repo.qlib_support import synthetic
        ds = synthetic.make_dataset(synthetic.make_frame(seed=1))
        with ModelStore({str(tmp_path / 'cas')!r}) as store:
            model, md = store.load_model("lgbm")
        assert type(model).__name__ == "LGBModel", type(model)
        got = synthetic.predict(model, ds)
        np.testing.assert_array_equal(got, np.load({str(tmp_path / 'expected.npy')!r}))
        print("OK", md.version)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK 1" in result.stdout


def test_continued_training_shares_most_bytes_with_its_parent(tmp_path, dataset, lgbm):
    child = synthetic.continue_training(lgbm, dataset, extra_rounds=10)
    assert child.model.num_trees() > lgbm.model.num_trees()
    with ModelStore(tmp_path / "cas") as store:
        store.save_model(lgbm, _md("lgbm"))
        before = store.stats()
        store.save_model(child, _md("lgbm", parents=["lgbm@1"]))
        after = store.stats()
        overlap = store.diff("lgbm@1", "lgbm@2").content
        assert overlap.shared_fraction >= 0.80, overlap
        # The store's own accounting agrees: the child added few unique bytes.
        assert after.unique_bytes - before.unique_bytes == overlap.added_bytes
        loaded, md = store.load_model("lgbm")
        assert md.parents == ["lgbm@1"]
        np.testing.assert_array_equal(synthetic.predict(loaded, dataset), synthetic.predict(child, dataset))
        old, _ = store.load_model("lgbm", 1)
        np.testing.assert_array_equal(synthetic.predict(old, dataset), synthetic.predict(lgbm, dataset))
