"""Aliases: movable names for versions — moves, references, errors, and what they pin."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cas_repo import (
    AliasNotFoundError,
    AliasTargetError,
    CasModelRepository,
    CasRepoError,
    IntegrityError,
    InvalidAliasError,
    InvalidModelIdError,
    ModelDeletedError,
    ModelStore,
    compression,
)
from cas_repo.canonical import canonical_json
from cas_repo.log import checkpoint
from cas_repo.log.ops import AliasMove, MarkOp, op_from_json, op_to_json
from cas_repo.log.state import Head, admit
from cas_repo.maintenance import RetentionPolicy, apply_retention, audit, run_gc
from cas_repo.metadata import split_ref

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def three(store_dir, make_md, clock):
    """A store whose model "m" has versions 1-3, payload = version number (plus an array)."""
    with ModelStore(store_dir, clock=clock) as s:
        for v in (1, 2, 3):
            s.save_model({"v": v, "w": np.full(30_000, v, dtype=np.float32)}, make_md("m", IC=v / 10))
        yield s


def _packs(store: ModelStore) -> int:
    return len(list(store.objects.backend.list("packs/")))


def test_promote_and_roll_back_move_a_pointer_and_write_no_model_bytes(three):
    packs = _packs(three)
    assert three.set_alias("m", "prod", 2) is None
    assert three.load_model("m@prod")[0]["v"] == 2
    assert three.set_alias("m", "prod", 3) == 2  # promotion
    assert three.load_model("m@prod")[1].version == 3
    assert three.set_alias("m", "prod", 2) == 3  # production rollback
    assert three.load_model("m@prod")[0]["v"] == 2
    assert three.set_alias("m", "prod", 2) == 2  # already there: nothing recorded
    assert three.set_alias("m", "shadow", 3) is None
    assert three.aliases("m") == {"prod": 2, "shadow": 3}
    assert _packs(three) == packs
    assert [h.version for h in three.history("m")] == [1, 2, 3]  # no new version either
    moves = [(c.alias, c.from_version, c.to_version) for c in three.alias_history("m")]
    assert moves == [("prod", None, 2), ("prod", 2, 3), ("prod", 3, 2), ("shadow", None, 3)]
    assert {c.moved_by for c in three.alias_history("m")} == {three.ledger.writer}
    assert three.remove_alias("m", "shadow") == 3
    assert three.remove_alias("m", "shadow") is None
    assert three.alias_history("m", "shadow")[-1].to_version is None
    assert three.aliases("m") == {"prod": 2}


def test_a_reference_works_wherever_a_version_is_taken(three):
    three.set_alias("m", "prod", 1)
    assert three.get_model_metadata("m@prod").version == 1
    assert three.get_model_metadata("m@3").version == 3
    assert three.load_model("m@2")[0]["v"] == 2
    d = three.diff("m@prod", "m@3")
    assert (d.a.version, d.b.version, d.metrics["IC"]) == (1, 3, (0.1, 0.3))
    assert three.lineage("m@prod").version == 1
    assert [md.version for _, md in three.load_models(["m@prod", "m"])] == [1, 3]


def test_as_of_answers_which_version_was_prod_then(three, clock):
    three.set_alias("m", "prod", 1)
    t1 = clock.now
    three.set_alias("m", "prod", 3)
    t2 = clock.now
    three.remove_alias("m", "prod")
    assert three.as_of(t1).aliases("m") == {"prod": 1}
    assert three.as_of(t1).load_model("m@prod")[0]["v"] == 1
    assert three.as_of(t2).get_model_metadata("m@prod").version == 3
    assert three.as_of(clock.now).aliases("m") == {}
    with pytest.raises(AliasNotFoundError, match="had no alias 'prod'"):
        three.as_of(T0).load_model("m@prod")


@pytest.mark.parametrize("ref", ["m@Prod", "m@", "m@a@b", "m@1x", "m@-x", "@prod"])
def test_ambiguous_or_malformed_references_are_refused(three, ref):
    with pytest.raises(CasRepoError) as err:
        three.load_model(ref)
    assert isinstance(err.value, (InvalidAliasError, InvalidModelIdError)) and isinstance(err.value, ValueError)


def test_the_reference_rule():
    assert split_ref("m.v2") == ("m.v2", None, None)
    assert split_ref("m.v2@12") == ("m.v2", 12, None)
    assert split_ref("m.v2@prod-2") == ("m.v2", None, "prod-2")
    with pytest.raises(InvalidAliasError, match="not both"):
        split_ref("m@3", 4)


def test_model_ids_cannot_hold_an_at_sign(store, make_md):
    with pytest.raises(InvalidModelIdError):
        store.save_model(1, make_md("lgb@prod"))


@pytest.mark.parametrize("name", ["Prod", "1st", "", "a" * 65, "pr od", "prod!", "_x"])
def test_alias_names_are_checked(three, name):
    with pytest.raises(InvalidAliasError, match=r"\[a-z\]|lowercase"):
        three.set_alias("m", name, 1)


def test_an_alias_cannot_point_at_a_missing_or_tombstoned_version(three):
    with pytest.raises(AliasTargetError, match="does not exist"):
        three.set_alias("m", "prod", 4)
    with pytest.raises(AliasTargetError, match="does not exist"):
        three.set_alias("nope", "prod", 1)
    with pytest.raises(AliasNotFoundError, match=r"aliases\(.m.\)"):
        three.load_model("m@prod")
    three.set_alias("m", "prod", 2)
    three.delete_model("m")
    with pytest.raises(AliasTargetError, match="undelete_model"):
        three.set_alias("m", "prod", 1)
    with pytest.raises(ModelDeletedError):
        three.load_model("m@prod")  # a tombstoned model serves nothing
    assert three.get_model_metadata("m", 2).version == 2  # its history stays readable
    three.undelete_model("m")
    assert three.load_model("m@prod")[0]["v"] == 2


def test_gc_never_purges_an_aliased_version_and_an_alias_cannot_take_a_purged_one(three):
    three.set_alias("m", "prod", 1)
    three.delete_model("m")
    report = run_gc(three, grace=timedelta(0), purge_older_than=timedelta(0))
    assert sorted(report.purged) == [("m", 2), ("m", 3)]
    three.undelete_model("m")
    assert three.load_model("m@prod")[0]["w"][0] == 1  # its content is whole
    with pytest.raises(AliasTargetError, match="purged"):
        three.set_alias("m", "prod", 2)
    assert audit(three).pins[0].version == 1


def test_retention_reports_an_aliased_version_as_protected(three):
    three.set_alias("m", "prod", 1)
    report = apply_retention(three, RetentionPolicy(keep_last=1))
    assert [r.version for r in report.retired] == [2]
    assert [r.version for r in report.protected] == [1]
    pins = audit(three, walk=False).pins
    assert [(p.model_id, p.alias, p.version) for p in pins] == [("m", "prod", 1)]


def test_the_shared_rule_admits_a_move_only_from_where_the_alias_is():
    at = T0

    def heads():
        return {"m": Head(3, 3, False, {"prod": 2})}

    def ok(op, h=None):
        return admit(op, h if h is not None else heads())

    assert ok(AliasMove("m", "prod", 3, 2, at, "w"))
    assert not ok(AliasMove("m", "prod", 3, None, at, "w"))  # stale: prod is at 2
    assert not ok(AliasMove("m", "prod", 4, 2, at, "w"))  # no version 4
    assert not ok(AliasMove("m", "prod", 2, 2, at, "w"))  # no move
    assert not ok(AliasMove("x", "prod", 1, None, at, "w"))  # no model
    assert ok(AliasMove("m", "prod", None, 2, at, "w"))  # removal
    assert not ok(AliasMove("m", "prod", 1, 2, at, "w"), {"m": Head(3, 3, True, {"prod": 2})})  # tombstoned
    assert not ok(MarkOp("m", 4, "purge", 2, at, ""))  # prod pins version 2
    assert ok(MarkOp("m", 4, "purge", 1, at, ""))
    op = AliasMove("m", "prod", None, 2, at, "host/1/ab")
    assert op_from_json(op_to_json(op)) == op


def test_checkpoints_carry_aliases_and_unchained_ones_are_replayed_past(three, caplog):
    three.set_alias("m", "prod", 2)
    with three.ledger.current() as st:
        again = checkpoint.decode(checkpoint.encode(st))
    assert again.models["m"].aliases == {"prod": 2}
    three.checkpoint()
    with ModelStore(three.url) as other:  # starts from the checkpoint, nothing after it
        assert other.aliases("m") == {"prod": 2}
    # A checkpoint from before the chain (format 1: no aliases, no digest): refused, and a
    # process that finds only such a checkpoint replays the log instead.
    with three.ledger.current() as st:
        obj = json.loads(compression.decompress_all(memoryview(checkpoint.encode(st))[40:]))
        position = st.position
    obj["format"] = "cas-repo/checkpoint/1"
    del obj["aliases"], obj["chain"], obj["chain_before"]
    old = b"CASCKPT1" + compression.compress_all(canonical_json(obj))
    with pytest.raises(IntegrityError, match="before log commits were chained"):
        checkpoint.decode(old)
    backend = three.ledger.log.backend
    for p in three.ledger.log.checkpoints():
        backend.delete(f"checkpoints/{p:020d}")
    assert backend.create(f"checkpoints/{position:020d}", old)
    with caplog.at_level(logging.WARNING), ModelStore(three.url) as other:
        assert other.aliases("m") == {"prod": 2} and other.get_model_metadata("m").version == 3
    assert f"checkpoint {position} of" in caplog.text and "before log commits were chained" in caplog.text


def test_the_async_facade_has_the_same_methods(three):
    async def go():
        repo = CasModelRepository(three)
        assert await repo.set_alias("m", "prod", 3) is None
        model, md = await repo.load_model("m@prod")
        assert (model["v"], md.version) == (3, 3)
        assert await repo.aliases("m") == {"prod": 3}
        assert [c.to_version for c in await repo.alias_history("m")] == [3]
        assert await repo.remove_alias("m", "prod") == 3

    asyncio.run(go())
    assert CasModelRepository.set_alias.__doc__ == ModelStore.set_alias.__doc__
