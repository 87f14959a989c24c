"""Properties of the retention engine: no version a rule keeps is ever retired, nor any head or aliased one."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas_repo import ModelMetadata, ModelStore
from cas_repo.maintenance import KeepBest, Policy, RetireModelsBelow, run_maintenance, set_policy
from cas_repo.maintenance.selection import VersionFacts, decide_versions

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# One version: (IC or None, tagged "keep", has an alias, age in days).
versions_st = st.lists(st.tuples(st.one_of(st.none(), st.sampled_from([0.0, 0.01, 0.03, 0.05])), st.booleans(),
                                 st.booleans(), st.integers(0, 60)), min_size=1, max_size=5)
stores_st = st.lists(versions_st, min_size=1, max_size=3)


@st.composite
def policies_st(draw) -> Policy:
    keep_last = draw(st.one_of(st.none(), st.integers(1, 3)))
    keep_best = draw(st.sampled_from([(), (KeepBest("IC", 1),), (KeepBest("IC", 2, higher_is_better=False),)]))
    older = draw(st.one_of(st.none(), st.sampled_from([timedelta(0), timedelta(days=20)])))
    floor = draw(st.one_of(st.none(), st.just(RetireModelsBelow("IC", 0.02, min_age=timedelta(days=10)))))
    if keep_last is None and not keep_best and older is None and floor is None:
        keep_last = 1  # a policy needs a rule that retires
    return Policy(keep_last=keep_last, keep_tagged=draw(st.sampled_from([(), ("keep",), ("keep=yes",)])),
                  keep_best=keep_best, retire_older_than=older, retire_models_below=floor, grace=timedelta(0))


def _kept_by_a_rule(policy: Policy, versions: list[tuple], now: datetime) -> dict[int, str]:
    """version -> a rule that keeps it, worked out from the generated data alone."""
    n = len(versions)
    keep: dict[int, str] = {n: "head"}
    for i, (_, tagged, aliased, age) in enumerate(versions, start=1):
        if aliased:
            keep[i] = "alias"
        if policy.keep_last is not None and n - i < policy.keep_last:
            keep[i] = "newest"
        if tagged and policy.keep_tagged:
            keep[i] = "tag"
        if policy.retire_older_than is not None and age * 86400 < policy.retire_older_than.total_seconds():
            keep[i] = "younger"
    for rule in policy.keep_best:
        scored = sorted(((ic if rule.higher_is_better else -ic, i) for i, (ic, *_) in enumerate(versions, start=1)
                         if ic is not None), reverse=True)
        for _, i in scored[:rule.n]:
            keep[i] = "best"
    return keep


def _build(root: str, data: list[list[tuple]], now: datetime) -> ModelStore:
    clock = [T0]
    store = ModelStore(root, clock=lambda: clock[0], backend_options={"fsync": False})
    for m, versions in enumerate(data):
        for i, (ic, tagged, _, age) in enumerate(versions):
            clock[0] = now - timedelta(days=age, seconds=len(versions) - i)
            metrics = {"IC": ic} if ic is not None else {"loss": 1.0}
            md = ModelMetadata(model_id=f"m{m}", experiment_name="e", model_type="LGBM", hyperparameters={},
                               metrics=metrics, created_at=datetime(2026, 1, 1), tags={"keep": "yes"} if tagged else {})
            store.save_model({"w": list(range(m * 100 + i, m * 100 + i + 20))}, md)
        for i, (_, _, aliased, _) in enumerate(versions, start=1):
            if aliased:
                store.set_alias(f"m{m}", f"a{i}", i)
    return store


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stores_st, policy=policies_st())
def test_a_store_never_loses_what_a_rule_keeps(data, policy):
    now = T0 + timedelta(days=100)
    with tempfile.TemporaryDirectory() as root, _build(root, data, now) as store:
        set_policy(store, policy)
        report = run_maintenance(store, now=now)
        run_maintenance(store, now=now + timedelta(days=1))  # a second run, past the grace: purges too
        with store.ledger.current() as state:
            for m, versions in enumerate(data):
                e = state.models[f"m{m}"]
                keep = _kept_by_a_rule(policy, versions, now)
                aliased = any(a for _, _, a, _ in versions)
                if e.deleted:  # only a whole model retired by retire_models_below
                    assert policy.retire_models_below is not None and not aliased
                    assert all(ic is None or ic < 0.02 for ic, *_ in versions)
                    assert any(ic is not None for ic, *_ in versions)
                    continue
                for version, rule in keep.items():
                    assert e.versions[version - 1].mark is None, (f"m{m}@{version}", rule, report.retired)
        for r in report.retired:
            assert r.model_id in {f"m{i}" for i in range(len(data))}


facts_st = st.lists(st.builds(
    VersionFacts, model_id=st.sampled_from(["a", "b"]), version=st.integers(1, 6),
    saved_at=st.integers(0, 90).map(lambda d: T0 + timedelta(days=d)), newer_versions=st.integers(0, 5),
    is_head=st.booleans(), ever_tags=st.sampled_from([(), ("keep=yes",), ("stage=prod",)]),
    aliases=st.sampled_from([(), ("prod",)]), metrics=st.dictionaries(st.just("IC"), st.floats(-1, 1), max_size=1),
    matched=st.booleans()), max_size=12)


@settings(max_examples=200)
@given(facts=facts_st, policy=policies_st())
def test_the_engine_retires_only_what_no_rule_keeps(facts, policy):
    now = T0 + timedelta(days=100)
    unique = list({(f.model_id, f.version): f for f in facts}.values())
    for v in decide_versions(unique, policy, now):
        f = next(x for x in unique if (x.model_id, x.version) == (v.model_id, v.version))
        if v.retire:
            assert not f.is_head and not f.aliases and f.matched
            assert policy.keep_last is None or f.newer_versions >= policy.keep_last
            assert policy.tag_rule(f.ever_tags) is None
            assert policy.retire_older_than is None or now - f.saved_at >= policy.retire_older_than
            for rule in policy.keep_best:
                ranked = sorted((x for x in unique if x.model_id == f.model_id and "IC" in x.metrics),
                                key=lambda x: (-x.metrics["IC"] if rule.higher_is_better else x.metrics["IC"],
                                               -x.version))
                assert f not in ranked[:rule.n]
        else:
            assert v.reasons
