"""Qlib's own OnlineManager and RollingStrategy serving from cas-repo: real LGBModels on
synthetic data, the online set an alias, signals before and after a production rollback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cas_repo import ModelStore
from cas_repo.qlib_support import synthetic as syn

pytest.importorskip("qlib")

WINDOW = 20


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """First training (test window 80-99), then routines on days 101 and 121 (one new window
    each); the store, the manager, and the signals after each step."""
    from qlib.workflow.online.manager import OnlineManager
    from qlib.workflow.task.gen import RollingGen

    from cas_repo.qlib_support.online import CasRollingStrategy

    tmp = tmp_path_factory.mktemp("online")
    frame = syn.make_frame(n_instruments=30, n_days=160, n_features=6, signal=0.5)
    days = frame.index.get_level_values("datetime").unique()
    task = syn.rolling_task(frame, tmp, train_days=60, valid_days=20, test_days=WINDOW)
    with syn.offline_qlib(tmp):
        store = ModelStore(tmp / "cas")
        strategy = CasRollingStrategy("rolling_lgb", task, RollingGen(step=WINDOW, rtype=RollingGen.ROLL_SD),
                                      store=store)
        manager = OnlineManager(strategy, begin_time=days[100])
        manager.first_train()
        after_first = [m.ref for m in strategy.tool.online_models()]
        manager.routine(days[101])
        manager.routine(days[121])
        before = manager.prepare_signals(over_write=True).copy()
        model_id = strategy.tool.online_models()[0].model_id
        store.set_alias(model_id, "online", 2)  # the production rollback
        after = manager.prepare_signals(over_write=True).copy()
        yield {"store": store, "strategy": strategy, "manager": manager, "days": days, "model_id": model_id,
               "after_first": after_first, "before": before, "after": after}
        store.close()


def test_every_trained_model_is_a_version_with_its_rolling_window_in_the_lineage(served):
    store, model_id, days = served["store"], served["model_id"], served["days"]
    assert model_id == "rolling_lgb.LGBModel"
    history = store.history(model_id)
    assert [h.version for h in history] == [1, 2, 3]
    starts = [pd.Timestamp(h.lineage["segments"]["test"][0]) for h in history]
    assert starts == [days[80], days[100], days[120]]
    assert [h.parents for h in history] == [[], [f"{model_id}@1"], [f"{model_id}@2"]]
    assert all(h.qlib_recorder_id for h in history) and len({h.qlib_recorder_id for h in history}) == 3
    assert served["after_first"] == [f"{model_id}@1"]
    moves = [(c.from_version, c.to_version) for c in store.alias_history(model_id, "online")]
    assert moves == [(None, 1), (1, 2), (2, 3), (3, 2)]


def test_signals_come_from_the_online_version_and_follow_the_rollback(served):
    from qlib.model.ens.ensemble import AverageEnsemble

    from cas_repo.qlib_support.online import OnlineModel

    store, model_id, days = served["store"], served["model_id"], served["days"]
    before, after = served["before"], served["after"]
    latest = slice(days[120], None)

    def expected(version):
        pred = OnlineModel(store, model_id, version).predict(days[120], open_end=True)
        return AverageEnsemble()({"only": pred})

    # The newest window's signals: from v3 before the rollback, from v2 after it.
    pd.testing.assert_series_equal(before.loc[latest], expected(3).loc[latest], check_names=False)
    pd.testing.assert_series_equal(after.loc[latest], expected(2).loc[latest], check_names=False)
    assert not np.allclose(before.loc[latest].to_numpy(), after.loc[latest].to_numpy())
    # Earlier windows are served by the models trained for them, unchanged by the rollback.
    earlier = slice(days[80], days[119])
    pd.testing.assert_series_equal(before.loc[earlier], after.loc[earlier])
    assert before.index.get_level_values("datetime").min() == days[80]
    assert after.index.get_level_values("datetime").max() == days[-1]


def test_the_online_tool_speaks_qlibs_interface(served):
    from qlib.workflow.online.utils import OnlineTool

    store, model_id = served["store"], served["model_id"]
    tool = served["strategy"].tool
    assert isinstance(tool, OnlineTool)
    assert [m.ref for m in tool.online_models()] == [f"{model_id}@2"]
    assert tool.get_online_tag(f"{model_id}@2") == "online"
    assert tool.get_online_tag(f"{model_id}@3") == "offline"
    online = tool.online_models()[0]
    task = online.load_object("task")
    assert task["dataset"]["kwargs"]["segments"]["test"][0] == served["days"][100]
    assert type(online.load_object("params.pkl")).__name__ == "LGBModel"
    preds = tool.update_online_pred()
    assert list(preds) == [f"{model_id}@2"] and preds[f"{model_id}@2"].index.get_level_values(0).max() \
        == served["days"][-1]
    tool.set_online_tag("offline", f"{model_id}@3")  # not online: nothing moves
    assert store.aliases(model_id) == {"online": 2}
    tool.set_online_tag("online", f"{model_id}@3")
    assert tool.get_online_tag(f"{model_id}@3") == "online"
    tool.set_online_tag("offline", [f"{model_id}@3"])
    assert tool.online_models() == []
    tool.reset_online_tag([f"{model_id}@2"])
    assert [m.ref for m in tool.online_models()] == [f"{model_id}@2"]
    # the recorders the manager got from its trainer map to the same versions
    recorders = [r for models in served["manager"].history.values() for r in models[served["strategy"]]]
    assert sorted(tool.adopt(r).version for r in recorders) == [1, 2, 3]
