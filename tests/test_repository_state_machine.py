"""The repository as a state machine, checked against a plain in-memory model of it.

Two stores share one store folder, each with its own catalog index (two machines on one
bucket, as far as the store can tell): every rule acts through one of them, and both must
agree with the model at every step, and their indexes with a rebuild from scratch.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cas_repo import (
    AliasNotFoundError,
    AliasTargetError,
    ModelDeletedError,
    ModelMetadata,
    ModelNotFoundError,
    ModelStore,
)
from cas_repo.catalog import feed

from .budget import examples

IDS = st.sampled_from(["alpha", "beta", "gamma.v2"])
ALIASES = st.sampled_from(["prod", "shadow"])
PAYLOADS = st.integers(min_value=0, max_value=5)


def _payload(n: int):
    # Some payloads carry an out-of-band array so buffers and chunks are exercised too.
    return {"n": n, "w": np.full(20_000 * (n % 2), n, dtype=np.float32)}


class RepositoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="cas-sm-")
        self.stores = [self._open(i) for i in range(2)]
        self.who = 0
        # model_id -> list of payload numbers per version (index 0 is version 1)
        self.versions: dict[str, list[int]] = {}
        self.rollbacks: dict[tuple[str, int], int] = {}
        self.deleted: set[str] = set()
        self.digests: dict[int, str] = {}
        self.aliases: dict[tuple[str, str], int] = {}  # (model_id, alias) -> version
        self.logged: dict[tuple[str, int], dict[str, float]] = {}  # metrics logged after the save

    def _open(self, i: int) -> ModelStore:
        return ModelStore(f"{self.dir}/cas", catalog=f"{self.dir}/index-{i}/catalog.duckdb")

    @property
    def store(self) -> ModelStore:
        return self.stores[self.who]

    def teardown(self) -> None:
        self.teardown_check()
        for s in self.stores:
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(who=st.integers(0, 1))
    def switch(self, who):
        self.who = who

    @rule(model_id=IDS, n=PAYLOADS)
    def save(self, model_id, n):
        md = ModelMetadata(model_id, "exp", "LGBM", {"n": n}, {"IC": n / 10}, datetime(2026, 1, 1),
                           tags={"n": str(n)}, parents=[f"{model_id}@1"] if model_id in self.versions else [])
        self.store.save_model(_payload(n), md)
        self.versions.setdefault(model_id, []).append(n)
        self.deleted.discard(model_id)  # a save makes a model live again
        assert md.version == len(self.versions[model_id])
        assert self.digests.setdefault(n, md.digest) == md.digest  # same bytes, same digest

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def save_duplicate_of_head(self, data):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        n = self.versions[model_id][-1]
        before = self.store.stats()
        self.save(model_id, n)
        after = self.store.stats()
        assert after.unique_bytes == before.unique_bytes

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def load_any_version(self, data):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        version = data.draw(st.integers(1, len(self.versions[model_id])))
        model, md = self.store.load_model(model_id, version)
        assert model["n"] == self.versions[model_id][version - 1]
        assert md.version == version
        assert md.rollback_of == self.rollbacks.get((model_id, version))

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def rollback(self, data):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        target = data.draw(st.integers(1, len(self.versions[model_id])))
        if model_id in self.deleted:
            with pytest.raises(ModelDeletedError):
                self.store.rollback(model_id, target)
            return
        new = self.store.rollback(model_id, target)
        self.versions[model_id].append(self.versions[model_id][target - 1])
        assert new == len(self.versions[model_id])
        self.rollbacks[(model_id, new)] = target

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def delete(self, data):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        self.store.delete_model(model_id)
        self.deleted.add(model_id)

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def undelete(self, data):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        self.store.undelete_model(model_id)
        self.deleted.discard(model_id)

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), value=st.sampled_from(["a", "b", None]))
    def tag(self, data, value):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        version = data.draw(st.integers(1, len(self.versions[model_id])))
        self.store.set_tags(model_id, {"stage": value}, version)
        assert self.store.get_model_metadata(model_id, version).tags.get("stage") == value

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), alias=ALIASES)
    def move_alias(self, data, alias):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        version = data.draw(st.integers(1, len(self.versions[model_id])))
        if model_id in self.deleted:
            with pytest.raises(AliasTargetError):
                self.store.set_alias(model_id, alias, version)
            return
        before = self.store.set_alias(model_id, alias, version)
        assert before == self.aliases.get((model_id, alias))
        self.aliases[(model_id, alias)] = version

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), alias=ALIASES)
    def remove_alias(self, data, alias):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        assert self.store.remove_alias(model_id, alias) == self.aliases.pop((model_id, alias), None)

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), alias=ALIASES)
    def load_by_alias(self, data, alias):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        version = self.aliases.get((model_id, alias))
        if model_id in self.deleted:
            with pytest.raises(ModelDeletedError):
                self.store.load_model(f"{model_id}@{alias}")
        elif version is None:
            with pytest.raises(AliasNotFoundError):
                self.store.load_model(f"{model_id}@{alias}")
        else:
            model, md = self.store.load_model(f"{model_id}@{alias}")
            assert (model["n"], md.version) == (self.versions[model_id][version - 1], version)

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), name=st.sampled_from(["IC", "sharpe"]), value=st.floats(-5, 5))
    def log_metrics(self, data, name, value):
        model_id = data.draw(st.sampled_from(sorted(self.versions)))
        version = data.draw(st.integers(1, len(self.versions[model_id])))
        if model_id in self.deleted:
            with pytest.raises(ModelDeletedError):
                self.store.log_metrics(f"{model_id}@{version}", {name: value})
            return
        assert self.store.log_metrics(f"{model_id}@{version}", {name: value}) == version
        self.logged.setdefault((model_id, version), {})[name] = value

    @rule(checkpoint=st.booleans())
    def reopen(self, checkpoint):
        if checkpoint:
            self.store.checkpoint()  # the reopened store starts from it, not from commit 1
        self.store.close()
        self.stores[self.who] = self._open(self.who)

    @rule(model_id=IDS)
    def load_latest(self, model_id):
        if model_id not in self.versions:
            with pytest.raises(ModelNotFoundError):
                self.store.load_model(model_id)
        elif model_id in self.deleted:
            with pytest.raises(ModelDeletedError):
                self.store.load_model(model_id)
        else:
            model, md = self.store.load_model(model_id)
            assert model["n"] == self.versions[model_id][-1]
            assert md.version == len(self.versions[model_id])

    @invariant()
    def listing_matches(self):
        for store in self.stores:
            live = {m.model_id: m.version for m in store.list_models()}
            assert live == {m: len(v) for m, v in self.versions.items() if m not in self.deleted}
            every = {m.model_id: m.deleted for m in store.list_models(include_deleted=True)}
            assert every == {m: m in self.deleted for m in self.versions}

    @invariant()
    def aliases_match(self):
        for store in self.stores:
            for model_id in self.versions:
                want = {a: v for (m, a), v in self.aliases.items() if m == model_id}
                assert store.aliases(model_id) == dict(sorted(want.items()))

    @invariant()
    def history_matches(self):
        for store in self.stores:
            for model_id, payloads in self.versions.items():
                hist = store.history(model_id)
                assert [h.version for h in hist] == list(range(1, len(payloads) + 1))
                assert [h.digest for h in hist] == [self.digests[n] for n in payloads]
                for h in hist:
                    # A logged value supersedes the saved one of its name, in the fold and the index alike.
                    for name, value in self.logged.get((model_id, h.saved_version()), {}).items():
                        assert h.metrics[name] == value
                        assert store.get_model_metadata(model_id, h.version).metrics[name] == value

    def teardown_check(self) -> None:
        """Each store's index, caught up, holds exactly what one folded from scratch holds
        (and the rebuild folds every run of saves in bulk, the indexes mostly one by one)."""
        bulk_min, feed.BULK_MIN = feed.BULK_MIN, 1
        try:
            with ModelStore(f"{self.dir}/cas", catalog=f"{self.dir}/rebuilt.duckdb") as fresh:
                rebuilt = _index_rows(fresh)
        finally:
            feed.BULK_MIN = bulk_min
        for store in self.stores:
            assert _index_rows(store) == rebuilt
            rows = store.sql("SELECT model_id, alias, version FROM v_aliases").to_pylist()
            assert {(r["model_id"], r["alias"]): r["version"] for r in rows} == self.aliases


_TABLES = ("models", "versions", "lineage", "tags", "events", "event_tags", "objects", "manifest_chunks", "packs",
           "alias_moves", "commits", "metric_log", "log_index")


def _index_rows(store: ModelStore) -> dict[str, list]:
    with store.catalog.session() as s:
        return {t: sorted(s.con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in _TABLES}


TestRepositoryMachine = pytest.mark.slow(RepositoryMachine.TestCase)
TestRepositoryMachine.settings = settings(max_examples=examples(12), stateful_step_count=20, deadline=None)
