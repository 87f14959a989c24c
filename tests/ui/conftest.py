"""A real store with small real Qlib models, served by the web view on a loopback port."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.ui.app import create_app
from cas_repo.ui.server import Background

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
# Text a store may hold that must reach the page as text, never as markup or script.
HOSTILE_EXPERIMENT = '<script>alert("exp")</script> é ü 数据'
HOSTILE_TAG = '"><img src=x onerror=alert(1)>'
HOSTILE_HP_KEY, HOSTILE_HP_VALUE = "<b>k</b>", "<script>alert('hp')</script> ☃"
HOSTILE_AUTHOR = '<b>ann</b> "><script>alert("by")</script>'
# After alpha's first save and its `prod` alias, before its second save: only alpha@1
# existed then, and prod pointed at it.
AS_OF = T0 + 2.5 * HOUR
# Between staging's set on alpha@2 and prod's move from alpha@1 to alpha@2.
ALIASES_AS_OF = T0 + 4.5 * HOUR
# After alpha@1's sharpe was logged, before alpha@2's.
METRICS_AS_OF = T0 + 13.5 * HOUR


def _md(model_id: str, ic: float, *, experiment: str = "csi300", num_leaves: int = 31, **kw) -> ModelMetadata:
    return ModelMetadata(model_id=model_id, experiment_name=experiment, model_type="LGBM",
                         hyperparameters=kw.pop("hp", {"num_leaves": num_leaves, "learning_rate": 0.05}),
                         metrics={"IC": ic, "Rank IC": ic + 0.01}, created_at=datetime(2026, 3, 1), **kw)


@pytest.fixture(scope="package")
def ui_store(tmp_path_factory):
    """alpha: v1 (trained on a Qlib dataset), v2 (parent v1), tag, v3 = rollback to v1;
    its `prod` alias set on v1 then moved to v2, `staging` set on v2 then removed;
    beta: v1 (parent alpha@2), then deleted; evil-1: hostile text in its metadata, alias
    `shadow-2`; then a `sharpe` logged for alpha@1 and alpha@2. One commit per hour from
    T0 + 1h, each by a hostile author name."""
    from cas_repo.qlib_support import synthetic as syn

    dataset = syn.make_dataset(syn.make_frame(n_instruments=10, n_days=80, n_features=5))
    small, larger = syn.train_lgbm(dataset, num_boost_round=5), syn.train_lgbm(dataset, num_boost_round=8)
    root = tmp_path_factory.mktemp("ui") / "cas"
    ticks = iter(T0 + h * HOUR for h in range(1, 100))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CAS_REPO_USER", HOSTILE_AUTHOR)
        with ModelStore(root, clock=lambda: next(ticks)) as store:
            store.save_model(small, _md("alpha", 0.031), dataset=dataset)                          # 10:00
            store.set_alias("alpha", "prod", 1)                                                    # 11:00
            store.save_model(larger, _md("alpha", 0.052, num_leaves=63, parents=["alpha@1"]))      # 12:00
            store.set_alias("alpha", "staging", 2)                                                 # 13:00
            store.set_tags("alpha", {"stage": "prod"})                                             # 14:00
            store.set_alias("alpha", "prod", 2)                                                    # 15:00
            store.rollback("alpha", 1)                                                             # 16:00
            store.remove_alias("alpha", "staging")                                                 # 17:00
            store.save_model(larger, _md("beta", 0.02, experiment="csi500", parents=["alpha@2"]))  # 18:00
            store.delete_model("beta")                                                             # 19:00
            store.save_model(small, _md("evil-1", 0.01, experiment=HOSTILE_EXPERIMENT,             # 20:00
                                        hp={HOSTILE_HP_KEY: HOSTILE_HP_VALUE}, tags={"note": HOSTILE_TAG}))
            store.set_alias("evil-1", "shadow-2", 1)                                               # 21:00
            store.log_metrics("alpha@1", {"sharpe": 0.9})                                          # 22:00
            store.log_metrics("alpha@2", {"sharpe": 1.4})                                          # 23:00
    with ModelStore(root) as store:
        yield store


@pytest.fixture(scope="package")
def ui_url(ui_store):
    with Background(create_app(ui_store)) as url:
        yield url.rstrip("/")
