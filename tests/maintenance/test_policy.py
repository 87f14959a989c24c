"""The store's policy: validated values, and a log operation folded alike everywhere it is read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cas_repo import ModelStore
from cas_repo.errors import InvalidPolicyError, PolicyChangedError, RetentionPolicyError
from cas_repo.log import checkpoint
from cas_repo.log.ops import PolicyOp, op_from_json, op_to_json
from cas_repo.log.state import StoreState
from cas_repo.maintenance import (
    KeepBest,
    Policy,
    RetireModelsBelow,
    clear_policy,
    current_policy,
    load_policy_file,
    policy_diff,
    policy_history,
    rebuild_catalog,
    set_policy,
)
from cas_repo.maintenance.policy import policy_record

FULL = {
    "keep_last": 5, "keep_tagged": ["stage=prod", "keep"], "retire_older_than": "90d", "grace": "14d",
    "where": "model_type = 'LGBM'", "repack_below": 0.4,
    "keep_best": [{"metric": "IC", "n": 3}, {"metric": "mse", "n": 1, "higher_is_better": False}],
    "retire_models_below": {"metric": "IC", "threshold": 0.02, "min_age": "30d"},
}


def test_a_policy_has_one_canonical_json_and_toml_form(tmp_path):
    policy = Policy.from_json(FULL)
    assert policy.keep_best[1] == KeepBest("mse", 1, False)
    assert policy.retire_models_below == RetireModelsBelow("IC", 0.02, True, timedelta(days=30))
    canonical = policy.to_json()
    assert canonical["grace"] == "2w" and canonical["keep_best"][0]["higher_is_better"] is True
    assert Policy.from_json(canonical) == policy
    toml = tmp_path / "p.toml"
    toml.write_text(policy.to_toml())
    assert load_policy_file(toml) == policy
    js = tmp_path / "p.json"
    js.write_text(json.dumps(FULL))
    assert load_policy_file(js) == policy
    # Defaults are written out, so the log records exactly what a run applies.
    assert Policy(keep_last=2).to_json() == {"grace": "1w", "keep_last": 2, "repack_below": 0.5}


@pytest.mark.parametrize(("change", "field"), [
    ({"keep_last": 0}, "keep_last"),
    ({"keep_lst": 3}, "keep_lst"),
    ({"keep_tagged": "prod"}, "keep_tagged"),
    ({"keep_best": [{"metric": "IC"}]}, "keep_best.n"),
    ({"keep_best": [{"metric": "IC", "n": 2, "best": True}]}, "keep_best.best"),
    ({"retire_older_than": "ninety days"}, "retire_older_than"),
    ({"retire_models_below": {"metric": "IC", "threshold": "low"}}, "retire_models_below.threshold"),
    ({"retire_models_below": {"metric": "IC"}}, "retire_models_below.threshold"),
    ({"repack_below": 2}, "repack_below"),
    ({"grace": -1}, "grace"),
])
def test_a_bad_policy_is_refused_naming_the_field(change, field):
    with pytest.raises(InvalidPolicyError) as info:
        Policy.from_json({**FULL, **change})
    assert info.value.field == field and field.split(".")[-1] in str(info.value)
    assert isinstance(info.value, RetentionPolicyError) and isinstance(info.value, ValueError)


def test_a_policy_needs_a_rule_that_retires(tmp_path):
    with pytest.raises(InvalidPolicyError, match="keep_tagged only keeps"):
        Policy.from_json({"keep_tagged": ["prod"]})
    bad = tmp_path / "bad.toml"
    bad.write_text("keep_last = [")
    with pytest.raises(InvalidPolicyError, match="not valid TOML"):
        load_policy_file(bad)


def test_policy_diff_names_each_changed_field():
    a, b = Policy(keep_last=3), Policy(keep_last=5, keep_tagged=("prod",))
    assert policy_diff(a, b) == ["- keep_last = 3", "+ keep_last = 5", '+ keep_tagged = ["prod"]']
    assert policy_diff(b, b) == []
    assert "+ keep_last = 3" in policy_diff(None, a)


def test_the_op_round_trips_through_its_json():
    op = PolicyOp(Policy(keep_last=2).to_json(), 7, datetime(2026, 1, 2, tzinfo=UTC), "host/1/ab")
    assert op_to_json(op)["op"] == "policy" and op_from_json(op_to_json(op)) == op
    cleared = PolicyOp(None, 9, datetime(2026, 1, 3, tzinfo=UTC), "host/1/ab")
    assert op_from_json(op_to_json(cleared)) == cleared and cleared.cleared


def test_set_show_history_clear_through_the_log_checkpoint_and_catalog(store_dir, monkeypatch):
    monkeypatch.setenv("CAS_REPO_USER", "ada")
    first, second = Policy(keep_last=3), Policy(keep_last=5, grace=timedelta(days=2))
    with ModelStore(store_dir) as store:
        assert current_policy(store) is None and policy_history(store) == []
        a = set_policy(store, first)
        assert a.previous is None and a.position is not None
        assert set_policy(store, first).position is None  # that is the policy already: no commit
        b = set_policy(store, second)
        assert b.previous is not None and b.previous.policy == first and b.previous.position == a.position
        now = current_policy(store)
        assert now is not None and now.policy == second and now.author == "ada" and now.previous == a.position
        store.checkpoint()
        c = clear_policy(store)
        assert current_policy(store) is None and clear_policy(store).position is None
        history = policy_history(store)
        assert [(r.position, r.previous, r.policy) for r in history] == [
            (a.position, None, first), (b.position, a.position, second), (c.position, b.position, None)]
        assert {r.author for r in history} == {"ada"} and history[0].host == history[0].writer.split("/")[0]
        set_policy(store, first)
        position = store.checkpoint()
    with ModelStore(store_dir) as again:  # starts from the checkpoint
        with again.ledger.current() as st:
            assert st.position == position and st.policy == first.to_json()
        record = policy_record(again)
        assert record is not None and record.policy == first and record.previous == c.position
    report = rebuild_catalog(store_dir)  # a catalog folded from scratch agrees
    assert not report.problems
    with ModelStore(store_dir) as again:
        assert [r.policy for r in policy_history(again)] == [first, second, None, first]
        rows = again.sql("SELECT cleared, author FROM v_policy_history ORDER BY log_position").to_pylist()
        assert [r["cleared"] for r in rows] == [False, False, True, False]


def test_a_checkpoint_without_a_policy_field_still_decodes(store, make_md):
    store.save_model({"w": 1}, make_md("m"))
    with store.ledger.current() as st:
        data = checkpoint.encode(st)
        assert st.policy_op is None
    back = checkpoint.decode(data)
    assert back.policy is None and back.policy_position is None


def test_a_lost_race_sets_the_policy_again_on_the_winners(store_dir):
    """Two processes set the policy at once: both are recorded, in log order, each naming the one before."""
    with ModelStore(store_dir) as one, ModelStore(store_dir) as other:
        base = set_policy(one, Policy(keep_last=1)).position
        other.ledger.refresh()
        winner = Policy(keep_last=2)
        builds = []
        real = other.ledger.commit

        def racing(build):
            def interleaved(st: StoreState):
                if not builds:  # the first build: another machine commits before this one lands
                    set_policy(one, winner)
                builds.append(st.position)
                return build(st)
            return real(interleaved)

        other.ledger.commit = racing  # type: ignore[method-assign]
        result = set_policy(other, Policy(keep_last=3))
        assert len(builds) == 2  # built again on the winner's state
        assert result.previous is not None and result.previous.policy == winner
        history = policy_history(one)
        assert [h.policy.keep_last for h in history if h.policy] == [1, 2, 3]
        assert [h.previous for h in history] == [None, base, history[1].position]


def test_an_expected_policy_that_changed_is_refused(store):
    first = set_policy(store, Policy(keep_last=1)).position
    set_policy(store, Policy(keep_last=2))
    with pytest.raises(PolicyChangedError, match="current_policy"):
        set_policy(store, Policy(keep_last=3), expected=first)
    assert current_policy(store).policy.keep_last == 2


def test_a_replayed_op_over_a_stale_previous_is_refused_by_every_fold():
    st = StoreState()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert st.apply(1, [PolicyOp({"keep_last": 1}, None, at, "h/1/a")])
    assert st.apply(2, [PolicyOp({"keep_last": 2}, None, at, "h/1/b")]) == []  # not over commit 1
    assert st.apply(3, [PolicyOp({"keep_last": 3}, 1, at, "h/1/c"), PolicyOp(None, 3, at, "h/1/c")]) != []
    assert st.policy_position == 3 and st.policy == {"keep_last": 3} and st.refused == [(2, 0), (3, 1)]


def test_the_documented_example_policy_is_valid(tmp_path):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "maintenance.md").read_text()
    example = doc.split("### The policy file", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    file = tmp_path / "policy.toml"
    file.write_text(example)
    policy = load_policy_file(file)
    assert policy.keep_last == 5 and len(policy.keep_best) == 2 and policy.retire_models_below is not None
