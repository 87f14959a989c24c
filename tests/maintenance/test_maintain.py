"""``maintain``: each rule of a store policy on a real store, its clock, grace, and the re-check at commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cas_repo import ModelStore
from cas_repo.errors import ModelDeletedError, ModelPurgedError, NoPolicyError
from cas_repo.maintenance import KeepBest, Policy, RetireModelsBelow, run_maintenance, set_policy
from cas_repo.maintenance.maintain import commit_plan, plan_maintenance

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


class Clock:
    """The time the store records events at; tests move it."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(store_dir, clock):
    with ModelStore(store_dir, clock=clock, backend_options={"fsync": False}) as s:
        yield s


def save(store, clock, make_md, model_id, n=1, step=DAY, **metrics):
    for i in range(n):
        store.save_model({"w": list(range(i, i + 50)), "m": model_id}, make_md(model_id, **metrics))
        clock.now += step


def retired(report):
    return [v.ref for v in report.retired]


def marks(store):
    with store.ledger.current() as st:
        return {f"{m}@{i + 1}": v.mark for m, e in st.models.items() for i, v in enumerate(e.versions) if v.mark}


def test_without_a_policy_maintain_says_how_to_set_one(store):
    with pytest.raises(NoPolicyError) as info:
        run_maintenance(store)
    assert "cas-repo policy set FILE" in info.value.for_cli() and isinstance(info.value, LookupError)


def test_keep_last_tagged_aliased_and_heads_are_kept(store, clock, make_md):
    save(store, clock, make_md, "m", 6)
    store.set_tags("m", {"keep": "yes"}, version=1)
    store.set_alias("m", "prod", 2)
    set_policy(store, Policy(keep_last=2, keep_tagged=("keep",)))
    report = run_maintenance(store, now=clock.now)
    assert retired(report) == ["m@3", "m@4"] and report.position is not None
    why = {v.ref: v.reasons for v in report.plan.kept}
    assert why == {"m@1": ("tag keep",), "m@2": ("alias prod",), "m@5": ("newest 2",), "m@6": ("head", "newest 2")}
    assert marks(store) == {"m@3": "retire", "m@4": "retire"}
    again = run_maintenance(store, now=clock.now)  # nothing left to do
    assert again.retired == () and again.position is None


def test_keep_best_uses_current_metrics_higher_or_lower_is_better(store, clock, make_md):
    for ic, mse in [(0.05, 0.3), (0.01, 0.1), (0.03, 0.5), (0.02, 0.4), (0.0, 0.9)]:
        save(store, clock, make_md, "m", IC=ic, mse=mse)
    store.log_metrics("m", {"IC": 0.08}, version=4)  # a backtest after the save supersedes 0.02
    policy = Policy(keep_last=1, keep_best=(KeepBest("IC", 2), KeepBest("mse", 1, higher_is_better=False)))
    set_policy(store, policy)
    report = run_maintenance(store, now=clock.now)
    assert retired(report) == ["m@3"]
    why = {v.ref: v.reasons for v in report.plan.kept}
    assert why["m@4"] == ("best 2 by IC",) and why["m@1"] == ("best 2 by IC",)
    assert why["m@2"] == ("best 1 by mse (lowest)",)


def test_retire_older_than_follows_the_clock_and_never_retires_heads(store, clock, make_md):
    save(store, clock, make_md, "m", 4, step=20 * DAY)  # saved at day 0, 20, 40, 60
    save(store, clock, make_md, "solo")
    set_policy(store, Policy(retire_older_than=timedelta(days=30)))
    now = T0 + 65 * DAY
    report = run_maintenance(store, dry_run=True, now=now)
    assert retired(report) == ["m@1", "m@2"] and marks(store) == {}  # a dry run changes nothing
    why = {v.ref: v.reasons for v in report.plan.kept}
    assert why["m@3"] == ("younger than 30d",) and why["solo@1"][0] == "head"
    assert retired(run_maintenance(store, now=now + 20 * DAY)) == ["m@1", "m@2", "m@3"]


def test_retire_models_below_spares_young_aliased_and_metricless_models(store, clock, make_md):
    save(store, clock, make_md, "weak", 2, IC=0.001)
    save(store, clock, make_md, "pinned", 1, IC=0.001)
    save(store, clock, make_md, "strong", 2, IC=0.001)
    store.log_metrics("strong", {"IC": 0.05}, version=1)
    save(store, clock, make_md, "nometric", 1, loss=0.2)
    store.set_alias("pinned", "prod", 1)
    clock.now += 40 * DAY
    save(store, clock, make_md, "young", 1, IC=0.001)
    rule = RetireModelsBelow("IC", 0.02, min_age=timedelta(days=30))
    set_policy(store, Policy(retire_models_below=rule, grace=timedelta(days=7)))
    report = run_maintenance(store, now=clock.now)
    assert [m.model_id for m in report.models_retired] == ["weak"]
    kept = {m.model_id: m.reason for m in report.plan.models if not m.retire}
    assert "alias prod pins it" in kept["pinned"] and "younger than 30d" in kept["young"]
    assert kept["nometric"] == "no version has IC" and "reaches" in kept["strong"]
    with pytest.raises(ModelDeletedError):
        store.load_model("weak")
    assert report.gc is not None and report.gc.purged == ()  # the grace has not passed
    later = run_maintenance(store, now=clock.now + 8 * DAY)
    assert sorted(later.gc.purged) == [("weak", 1), ("weak", 2)] and later.freed_bytes > 0


def test_lower_is_better_retires_models_above_the_threshold(store, clock, make_md):
    save(store, clock, make_md, "lossy", 1, mse=0.9)
    save(store, clock, make_md, "fine", 1, mse=0.1)
    rule = RetireModelsBelow("mse", 0.5, higher_is_better=False, min_age=timedelta(0))
    set_policy(store, Policy(retire_models_below=rule))
    assert [m.model_id for m in run_maintenance(store, now=clock.now).models_retired] == ["lossy"]


def test_grace_passes_before_retired_versions_are_purged(store, clock, make_md):
    save(store, clock, make_md, "m", 3)
    set_policy(store, Policy(keep_last=1, grace=timedelta(days=7)))
    first = run_maintenance(store, now=clock.now)
    assert retired(first) == ["m@1", "m@2"] and first.gc.purged == ()
    store.load_model("m", 1)  # retired, not gone: restorable until the grace has passed
    assert run_maintenance(store, now=clock.now + 6 * DAY).gc.purged == ()
    late = run_maintenance(store, now=clock.now + 8 * DAY)
    assert sorted(late.gc.purged) == [("m", 1), ("m", 2)]
    with pytest.raises(ModelPurgedError):
        store.load_model("m", 1)
    store.load_model("m")


def test_the_commit_leaves_out_what_changed_since_the_plan(store, clock, make_md):
    save(store, clock, make_md, "m", 4)
    save(store, clock, make_md, "n", 3)
    save(store, clock, make_md, "weak", 2, IC=0.0)
    save(store, clock, make_md, "weak2", 1, IC=0.0)
    policy = Policy(keep_last=1, retire_models_below=RetireModelsBelow("IC", 0.02, min_age=timedelta(0)))
    plan = plan_maintenance(store, policy, clock.now)
    assert [v.ref for v in plan.retire] == ["m@1", "m@2", "m@3", "n@1", "n@2"]
    assert [m.model_id for m in plan.retire_models] == ["weak", "weak2"]
    # Meanwhile: m is tagged (a keep rule might hold now), n@2 gets an alias, weak gains a
    # version, and another machine tombstones weak2.
    store.set_tags("m", {"keep": "yes"}, version=2)
    store.set_alias("n", "prod", 2)
    save(store, clock, make_md, "weak", 1, IC=0.0)
    store.delete_model("weak2")
    position, done, models, left = commit_plan(store, plan, clock.now)
    assert [v.ref for v in done] == ["n@1"] and models == [] and position is not None
    reasons = dict(left)
    assert set(reasons) == {"m@1", "m@2", "m@3", "n@2", "weak", "weak2"}
    assert "alias" in reasons["n@2"] and "tombstoned already" in reasons["weak2"] and "changed" in reasons["weak"]
