"""Following the log: one Change per admitted operation, in log order, from this process or another."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas_repo import CasModelRepository, ModelMetadata, ModelStore
from cas_repo.errors import InvalidWatchFilterError
from cas_repo.follow import KINDS
from cas_repo.log.ops import AdoptEntries, AliasMove, EventOp, ForgetPacks, MarkOp, MetricsOp, MoveEntries, SaveOp
from cas_repo.log.state import StoreState
from cas_repo.maintenance import Policy, clear_policy, set_policy

from .budget import examples
from .commits import hand_made
from .s3_server import fresh_url

ROOT = Path(__file__).resolve().parents[1]
AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
PACK = "ab" * 32


def md(model_id: str, **tags: str) -> ModelMetadata:
    return ModelMetadata(model_id, "exp", "LGBM", {"num_leaves": 31}, {"IC": 0.05}, datetime(2026, 1, 2), tags=tags)


def every_kind(store: ModelStore) -> None:
    """One commit of each kind of change, in the order of KINDS."""
    store.save_model({"w": 1}, md("m1", stage="dev"))
    store.save_model({"w": 2}, md("m1"))
    store.rollback("m1", 1)
    store.delete_model("m1")
    store.undelete_model("m1")
    store.set_tags("m1", {"stage": "prod", "stale": None}, version=1)

    def mark(kind: str):
        return lambda st: [MarkOp("m1", st.models["m1"].seq + 1, kind, 2, AT, "",
                                  *((7, 3) if kind == "purge" else ()))]

    for kind in ("retire", "restore", "purge"):
        store.ledger.commit(mark(kind))
    store.log_metrics("m1", {"sharpe": 1.5}, version=3)
    store.set_alias("m1", "prod", 3)
    store.ledger.commit(lambda st: [ForgetPacks((PACK,), AT), MoveEntries((PACK,), (), (), AT)])
    store.ledger.commit(lambda st: [AdoptEntries((), (), (), AT)])
    set_policy(store, Policy(keep_last=3))
    clear_policy(store)


@pytest.fixture(params=["folder", "seaweedfs"])
def any_store(request, tmp_path):
    if request.param == "folder":
        with ModelStore(tmp_path / "cas") as store:
            yield store
    else:
        seaweed = request.getfixturevalue("seaweed")
        with ModelStore(fresh_url(), catalog=tmp_path / "index.duckdb", backend_options=seaweed.options()) as store:
            yield store


def test_every_kind_of_change_with_its_fields(any_store):
    store = any_store
    every_kind(store)
    got = list(store.follow(0, idle_timeout=0))
    assert [c.kind for c in got] == ["save", *KINDS[:5], "retire", "restore", "purge", "metrics", "alias", "gc", "gc",
                                     "adopt", "policy", "policy"]
    assert [(c.position, c.index) for c in got][-6:] == [(11, 0), (12, 0), (12, 1), (13, 0), (14, 0), (15, 0)]
    store_id = store.ledger.log.store_id()
    assert all(c.id == f"{store_id}:{c.position}:{c.index}" for c in got) and len({c.id for c in got}) == len(got)
    by = {c.kind: c for c in reversed(got)}  # the first of each kind
    save, rollback, tag = by["save"], by["rollback"], by["tag"]
    assert (save.model_id, save.version, save.details["tags"], save.details["metrics"]) == ("m1", 1, {"stage": "dev"},
                                                                                           {"IC": 0.05})
    assert (rollback.version, rollback.details["rollback_of"], rollback.details["new_bytes"]) == (3, 1, 0)
    assert (tag.version, tag.details["tags"]) == (1, {"stage": "prod", "stale": None})
    assert by["purge"].details == {"record": by["purge"].details["record"], "logical_size": 7, "new_bytes": 3}
    assert by["metrics"].details["metrics"] == {"sharpe": 1.5}
    alias = by["alias"]
    assert (alias.model_id, alias.alias, alias.version, alias.previous) == ("m1", "prod", 3, None)
    gcs = [c for c in got if c.kind == "gc"]
    assert [c.details["action"] for c in gcs] == ["forget", "move"] and gcs[0].details["packs_forgotten"] == 1
    assert gcs[0].model_id is None and by["adopt"].details == {"entries": 0, "packs": 0, "manifests": 0}
    assert all(c.author == store.ledger.author and c.writer == store.ledger.writer for c in got)
    assert all(c.host == store.ledger.writer.split("/")[0] and c.at.tzinfo is not None for c in got)
    assert by["retire"].at == AT
    policies = [c for c in got if c.kind == "policy"]
    assert [(c.previous, c.details["cleared"]) for c in policies] == [(None, False), (14, True)]
    assert policies[0].details["policy"]["keep_last"] == 3 and policies[1].details["policy"] is None
    as_json = alias.to_json()
    assert as_json["format"] == "cas-repo/event/1" and as_json["at"] == alias.at.isoformat()
    assert {k: as_json[k] for k in ("id", "kind", "alias", "previous")} == \
        {"id": alias.id, "kind": "alias", "alias": "prod", "previous": None}


def test_filters_by_model_kind_and_alias(store):
    for m in ("lgbm_a", "lgbm_b", "mlp"):
        store.save_model({"m": m}, md(m))
    store.set_alias("lgbm_a", "prod", 1)
    store.set_alias("mlp", "prod", 1)
    store.set_alias("mlp", "staging", 1)
    store.remove_alias("mlp", "prod")

    def follow(**filters):
        return [(c.kind, c.model_id, c.alias) for c in store.follow(0, idle_timeout=0, **filters)]

    assert follow(models="mlp") == [("save", "mlp", None), ("alias", "mlp", "prod"), ("alias", "mlp", "staging"),
                                    ("alias", "mlp", "prod")]
    assert follow(models=["lgbm_*"], kinds=["save"]) == [("save", "lgbm_a", None), ("save", "lgbm_b", None)]
    assert follow(aliases="prod") == [("alias", "lgbm_a", "prod"), ("alias", "mlp", "prod"), ("alias", "mlp", "prod")]
    assert follow(aliases="prod", models="mlp", kinds="alias")[-1] == ("alias", "mlp", "prod")
    assert follow(aliases=["stag*"]) == [("alias", "mlp", "staging")]
    assert follow(kinds="delete") == []
    removed = list(store.follow(0, idle_timeout=0, aliases="prod", models="mlp"))[-1]
    assert (removed.version, removed.previous, removed.details) == (None, 1, {"removed": True})


def test_a_bad_filter_or_start_is_refused_with_advice(store):
    store.save_model({"w": 1}, md("m1"))
    with pytest.raises(InvalidWatchFilterError, match="the kinds are save, rollback"):
        store.follow(kinds=["saved"])
    with pytest.raises(InvalidWatchFilterError, match="past the log's end"):
        store.follow(5)
    with pytest.raises(InvalidWatchFilterError, match=">= 0"):
        store.follow(-1)
    with pytest.raises(InvalidWatchFilterError, match="poll"):
        store.follow(poll=0)
    assert store.log_position() == 1


def test_refused_operations_are_not_followed(store):
    store.save_model({"w": 1}, md("m1"))
    # A hand-made commit: a good tag event, then a save that skips a version (refused by every fold).
    good = EventOp("m1", 2, "tag", 1, AT, "", False, {"k": "v"})
    bad = SaveOp.from_metadata(md("m1"), version=5, seq=3, kind="save", manifest="cd" * 32, at=AT, logical_size=1,
                               new_bytes=0)
    assert store.ledger.log.create(2, hand_made(store, 2, (bad, good)))
    store.set_alias("m1", "prod", 1)
    got = list(store.follow(0, idle_timeout=0))
    with store.ledger.current() as state:
        assert state.refused == [(2, 0)]
    assert [(c.position, c.index, c.kind) for c in got] == [(1, 0, "save"), (2, 1, "tag"), (3, 0, "alias")]


def test_follow_from_the_end_sees_only_new_changes_and_stops_when_asked(store):
    store.save_model({"w": 1}, md("m1"))
    stop = threading.Event()
    follower = store.follow(stop=stop, poll=0.01)  # the start is taken now, not at the first next()
    store.save_model({"w": 2}, md("m1"))
    first = next(follower)
    assert (first.kind, first.version, first.position) == ("save", 2, 2)
    stop.set()
    assert list(follower) == []


def test_follow_sees_commits_of_another_process(store_dir):
    with ModelStore(store_dir) as store:
        store.save_model({"w": 0}, md("m1"))
        follower = store.follow(poll=0.02, idle_timeout=60)
        writer = ("from datetime import datetime\nfrom cas_repo import ModelMetadata, ModelStore\n"
                  f"with ModelStore({str(store_dir)!r}) as s:\n"
                  "    for i in (1, 2):\n"
                  "        s.save_model({'w': i}, ModelMetadata('other', 'e', 'LGBM', {}, {}, datetime(2026, 1, 1)))\n"
                  "    s.set_alias('other', 'prod', 2)\n")
        proc = subprocess.Popen([sys.executable, "-c", writer], env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            got = [next(follower) for _ in range(3)]
        finally:
            assert proc.wait(timeout=60) == 0
    assert [(c.kind, c.model_id, c.version) for c in got] == [("save", "other", 1), ("save", "other", 2),
                                                              ("alias", "other", 2)]
    assert len({c.writer for c in got}) == 1 and got[0].writer != store.ledger.writer


def test_the_async_facade_follows_without_blocking_the_loop(tmp_path):
    async def scenario() -> list[str]:
        async with CasModelRepository(tmp_path / "cas") as repo:
            await repo.save_model({"w": 1}, md("m1"))
            follower = repo.follow(0, poll=0.02)
            seen: list[str] = []
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)

            ticker = asyncio.create_task(tick())
            async for change in follower:
                seen.append(change.kind)
                if len(seen) == 1:
                    await repo.set_alias("m1", "prod", 1)
                else:
                    break
            await follower.aclose()
            ticker.cancel()
            assert ticks > 0  # the loop kept running while the follower waited
            with pytest.raises(InvalidWatchFilterError):
                async for _ in repo.follow(kinds="nope"):
                    pass
            return seen

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == ["save", "alias"]


# -- the change stream is the admitted operations, whatever the operations ------------------------

_MODELS = ("a", "b")
_op = st.one_of(
    st.tuples(st.just("save"), st.sampled_from(_MODELS), st.integers(1, 3), st.integers(1, 4)),
    st.tuples(st.sampled_from(["delete", "undelete", "tag"]), st.sampled_from(_MODELS), st.integers(1, 3),
              st.integers(1, 6)),
    st.tuples(st.just("metrics"), st.sampled_from(_MODELS), st.integers(1, 3), st.integers(1, 6)),
    st.tuples(st.just("alias"), st.sampled_from(_MODELS), st.sampled_from([None, 1, 2]), st.sampled_from([None, 1])),
    st.tuples(st.just("forget"), st.just(""), st.just(0), st.just(0)),
)


def _build(spec: tuple) -> object:
    kind, model, a, b = spec
    if kind == "save":
        return SaveOp.from_metadata(md(model), version=a, seq=b, kind="save", manifest="cd" * 32, at=AT,
                                    logical_size=1, new_bytes=0)
    if kind in ("delete", "undelete", "tag"):
        return EventOp(model, b, kind, a, AT, "", kind == "delete", {"k": "v"} if kind == "tag" else {})
    if kind == "metrics":
        return MetricsOp(model, b, a, AT, "", {"ic": 0.1})
    if kind == "alias":
        return AliasMove(model, "prod", a, b, AT, "by hand")
    return ForgetPacks((PACK,), AT)


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commits=st.lists(st.lists(_op, min_size=1, max_size=3), min_size=1, max_size=6))
def test_the_change_stream_is_the_admitted_operations(tmp_path_factory, commits):
    fold = StoreState()
    expected = []
    with ModelStore(tmp_path_factory.mktemp("cas")) as store:
        for position, specs in enumerate(commits, start=1):
            ops = tuple(_build(s) for s in specs)
            assert store.ledger.log.create(position, hand_made(store, position, ops))
            store.log_position()
            admitted = fold.apply(position, ops)
            expected += [(position, i, op) for i, op in enumerate(ops) if any(op is a for a in admitted)]
        got = list(store.follow(0, idle_timeout=0))
    assert [(c.position, c.index) for c in got] == [(p, i) for p, i, _ in expected]
    assert [c.kind for c in got] == [_kind(op) for _, _, op in expected]


def _kind(op: object) -> str:
    return "gc" if isinstance(op, ForgetPacks) else "alias" if isinstance(op, AliasMove) else op.kind  # type: ignore[attr-defined]
