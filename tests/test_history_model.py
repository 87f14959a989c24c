"""Views, head table and time travel against an independent in-memory model of history.

Hypothesis draws sequences of saves, rollbacks, deletes, undeletes and tag changes; a
plain-Python model replays them and snapshots its state after each event. The store's
answers — now (views, list_models, history) and as of every event time and the gaps
between them — must equal the snapshot in force at that time.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas_repo import ModelDeletedError, ModelMetadata, ModelNotFoundError, ModelStore

from .budget import examples

IDS = ("a", "b", "c")
PAYLOADS = ("alpha", "beta", "gamma")  # small picklable models; repeats share a manifest
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """Each call is one minute after the previous one; remembers the last time given."""

    def __init__(self) -> None:
        self.last = T0

    def __call__(self) -> datetime:
        self.last += timedelta(minutes=1)
        return self.last


@dataclass
class Version:
    payload: int
    tags: dict[str, str]
    parents: list[str]
    kind: str = "save"
    rollback_of: int | None = None


@dataclass
class Model:
    versions: list[Version] = field(default_factory=list)
    deleted: bool = False
    events: list[str] = field(default_factory=list)


class Expected:
    """What the store should hold, and every state it went through, with times."""

    def __init__(self) -> None:
        self.models: dict[str, Model] = {}
        self.timeline: list[tuple[datetime, dict[str, Model]]] = []

    def record(self, at: datetime) -> None:
        self.timeline.append((at, copy.deepcopy(self.models)))

    def at(self, t: datetime) -> dict[str, Model]:
        state: dict[str, Model] = {}
        for when, snap in self.timeline:
            if when <= t:
                state = snap
        return state


ops = st.lists(st.one_of(
    st.tuples(st.just("save"), st.sampled_from(IDS), st.integers(0, 2),
              st.dictionaries(st.sampled_from(["stage", "owner"]), st.sampled_from(["dev", "prod"]), max_size=2),
              st.booleans()),
    st.tuples(st.just("rollback"), st.sampled_from(IDS), st.integers(1, 4)),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.tuples(st.just("undelete"), st.sampled_from(IDS)),
    st.tuples(st.just("tag"), st.sampled_from(IDS), st.sampled_from(["stage", "owner"]),
              st.sampled_from(["dev", "prod", None]), st.one_of(st.none(), st.integers(1, 3))),
), min_size=1, max_size=18)


def _md(model_id: str, tags: dict[str, str], parents: list[str]) -> ModelMetadata:
    return ModelMetadata(model_id=model_id, experiment_name="exp", model_type="LGBM",
                         hyperparameters={"num_leaves": 31}, metrics={"IC": 0.05},
                         created_at=datetime(2026, 1, 1), tags=dict(tags), parents=list(parents))


def _apply(store: ModelStore, clock: Clock, exp: Expected, op: tuple) -> None:
    kind, mid = op[0], op[1]
    m = exp.models.get(mid)
    if kind == "save":
        _, _, payload, tags, with_parent = op
        # A parent: the newest version of some other existing model, if any.
        others = sorted(k for k, v in exp.models.items() if k != mid and v.versions)
        parents = [f"{others[0]}@{len(exp.models[others[0]].versions)}"] if with_parent and others else []
        store.save_model(PAYLOADS[payload], _md(mid, tags, parents))
        m = exp.models.setdefault(mid, Model())
        m.versions.append(Version(payload, dict(tags), parents))
        m.deleted = False  # a save brings a tombstoned model back
        m.events.append("save")
    elif kind == "rollback":
        to = op[2]
        if m is None or to > len(m.versions):
            with pytest.raises(ModelNotFoundError):
                store.rollback(mid, to)
            return
        if m.deleted:
            with pytest.raises(ModelDeletedError):
                store.rollback(mid, to)
            return
        assert store.rollback(mid, to) == len(m.versions) + 1
        target = m.versions[to - 1]
        m.versions.append(Version(target.payload, dict(target.tags), list(target.parents), "rollback", to))
        m.events.append("rollback")
    elif kind in ("delete", "undelete"):
        if m is None:
            with pytest.raises(ModelNotFoundError):
                getattr(store, f"{kind}_model")(mid)
            return
        getattr(store, f"{kind}_model")(mid)
        if m.deleted == (kind == "delete"):
            return  # no change, no event
        m.deleted = kind == "delete"
        m.events.append(kind)
    else:
        _, _, key, value, version = op
        if m is None or (version is not None and version > len(m.versions)):
            with pytest.raises(ModelNotFoundError):
                store.set_tags(mid, {key: value}, version)
            return
        if version is None and m.deleted:
            with pytest.raises(ModelDeletedError):
                store.set_tags(mid, {key: value})
            return
        store.set_tags(mid, {key: value}, version)
        target = m.versions[(version or len(m.versions)) - 1]
        if value is None:
            target.tags.pop(key, None)
        else:
            target.tags[key] = value
        m.events.append("tag")
    exp.record(clock.last)


def _check_as_of(store: ModelStore, exp: Expected, t: datetime, digests: dict[int, str]) -> None:
    state = exp.at(t)
    snap = store.as_of(t)
    assert {m.model_id: (m.version, m.deleted) for m in snap.models()} == \
        {k: (len(v.versions), v.deleted) for k, v in state.items()}
    listed = {md.model_id: md for md in snap.list_models(include_deleted=True)}
    assert set(listed) == set(state)
    for mid, m in state.items():
        head = m.versions[-1]
        md = listed[mid]
        assert (md.version, md.tags, md.deleted, md.digest) == (len(m.versions), head.tags, m.deleted,
                                                                digests[head.payload])
    assert {md.model_id for md in snap.list_models()} == {k for k, v in state.items() if not v.deleted}
    for mid in IDS:
        m = state.get(mid)
        if m is None:
            with pytest.raises(ModelNotFoundError):
                snap.get_model_metadata(mid)
        elif m.deleted:
            with pytest.raises(ModelDeletedError):
                snap.get_model_metadata(mid)
        else:
            md = snap.get_model_metadata(mid)
            assert (md.version, md.tags) == (len(m.versions), m.versions[-1].tags)
        if m is not None:  # an explicit version carries that time's tags, deleted or not
            assert snap.get_model_metadata(mid, 1).tags == m.versions[0].tags


def _check_now(store: ModelStore, exp: Expected, digests: dict[int, str]) -> None:
    rows = store.sql("SELECT model_id, version, kind, rollback_of, digest, tags, parents FROM v_versions "
                     "ORDER BY model_id, version").to_pylist()
    want = [(mid, i + 1, v.kind, v.rollback_of, digests[v.payload], sorted(v.tags.items()), sorted(v.parents))
            for mid, m in sorted(exp.models.items()) for i, v in enumerate(m.versions)]
    assert [(r["model_id"], r["version"], r["kind"], r["rollback_of"], r["digest"], sorted(r["tags"]),
             sorted(r["parents"])) for r in rows] == want
    models = {r["model_id"]: r for r in store.sql("SELECT * FROM v_models").to_pylist()}
    assert {k: (r["head_version"], r["deleted"], sorted(r["tags"])) for k, r in models.items()} == \
        {k: (len(m.versions), m.deleted, sorted(m.versions[-1].tags.items())) for k, m in exp.models.items()}
    events = store.sql("SELECT model_id, list(kind ORDER BY seq) AS kinds FROM v_events GROUP BY ALL").to_pylist()
    assert {r["model_id"]: r["kinds"] for r in events} == {k: m.events for k, m in exp.models.items()}
    tags = store.sql("SELECT model_id, version, key, value FROM v_tags ORDER BY ALL").to_pylist()
    assert [tuple(r.values()) for r in tags] == sorted(
        (mid, i + 1, k, val) for mid, m in exp.models.items() for i, v in enumerate(m.versions)
        for k, val in v.tags.items())
    # The library's readers (head table, history) agree with the views.
    listed = {md.model_id: md for md in store.list_models(include_deleted=True)}
    for mid, m in exp.models.items():
        assert (listed[mid].version, listed[mid].tags, listed[mid].deleted) == \
            (len(m.versions), m.versions[-1].tags, m.deleted)
        assert [h.tags for h in store.history(mid)] == [v.tags for v in m.versions]
        if not m.deleted:
            assert store.get_model_metadata(mid).tags == m.versions[-1].tags


def _expected_ancestors(exp: Expected, mid: str, version: int) -> set[tuple[str, int]]:
    seen: set[tuple[str, int]] = set()
    todo = [(mid, version)]
    while todo:
        m, v = todo.pop()
        ver = exp.models[m].versions[v - 1]
        edges = [(p.split("@")[0], int(p.split("@")[1])) for p in ver.parents]
        if ver.rollback_of:
            edges.append((m, ver.rollback_of))
        for e in edges:
            if e not in seen and e != (mid, version):
                seen.add(e)
                todo.append(e)
    return seen


@pytest.mark.slow
@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_views_and_time_travel_match_the_model(sequence):
    clock = Clock()
    exp = Expected()
    with tempfile.TemporaryDirectory() as tmp, ModelStore(tmp, clock=clock) as store:
        for op in sequence:
            _apply(store, clock, exp, op)
        digests = {}
        for mid, m in exp.models.items():
            for i, v in enumerate(m.versions):
                digests.setdefault(v.payload, store.get_model_metadata(mid, i + 1).digest)
        assert len(set(digests.values())) == len(digests)
        _check_now(store, exp, digests)
        times = [T0 - timedelta(seconds=1)]
        for when, _ in exp.timeline:
            times += [when, when + timedelta(seconds=30)]
        for t in times:
            _check_as_of(store, exp, t, digests)
        for mid, m in exp.models.items():
            for v in range(1, len(m.versions) + 1):
                got = {(n.model_id, n.version) for n in store.lineage(mid, v).ancestors}
                assert got == _expected_ancestors(exp, mid, v)
