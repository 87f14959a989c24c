"""``make demo`` records what it trained: real hyperparameters and lineage."""

from __future__ import annotations

import io

from cas_repo import ModelStore
from cas_repo.cli.render import Output
from cas_repo.demo import run


def test_the_demo_records_the_hyperparameters_and_parents_its_models_really_have(tmp_path):
    run(str(tmp_path / "cas"), Output(io.StringIO(), io.StringIO()), rounds=20)
    with ModelStore(tmp_path / "cas") as store:
        for model_id in ("alpha", "beta"):
            for md in store.history(model_id):
                model, _ = store.load_model(model_id, md.version)
                assert {k: md.hyperparameters[k] for k in model.params} == model.params
                assert md.hyperparameters["num_boost_round"] == model.model.num_trees()
        assert store.diff("alpha@1", "beta@1").hyperparameters["num_leaves"] == (31, 63)
        alpha = {md.version: md for md in store.history("alpha")}
        beta = {md.version: md for md in store.history("beta")}
        # versions 3 and 4 continue alpha@2 (= alpha@1) by 10 rounds each; beta@2 continues beta@1
        assert [alpha[v].parents for v in (1, 2, 3, 4)] == [[], [], ["alpha@2"], ["alpha@3"]]
        assert [alpha[v].hyperparameters["num_boost_round"] for v in (1, 3, 4)] == [20, 30, 40]
        assert beta[2].parents == ["beta@1"]
        assert beta[2].hyperparameters["num_boost_round"] == beta[1].hyperparameters["num_boost_round"] + 10
        assert alpha[5].rollback_of == 1
