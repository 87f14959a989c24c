"""The repository as a state machine, checked against a plain in-memory model of it."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cas_repo import ModelDeletedError, ModelMetadata, ModelNotFoundError, ModelStore

IDS = st.sampled_from(["alpha", "beta", "gamma.v2"])
PAYLOADS = st.integers(min_value=0, max_value=5)


def _payload(n: int):
    # Some payloads carry an out-of-band array so buffers and chunks are exercised too.
    return {"n": n, "w": np.full(20_000 * (n % 2), n, dtype=np.float32)}


class RepositoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="cas-sm-")
        self.exclusive = False
        self.store = ModelStore(self.dir)
        # model_id -> list of payload numbers per version (index 0 is version 1)
        self.versions: dict[str, list[int]] = {}
        self.rollbacks: dict[tuple[str, int], int] = {}
        self.deleted: set[str] = set()
        self.digests: dict[int, str] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(model_id=IDS, n=PAYLOADS)
    def save(self, model_id, n):
        md = ModelMetadata(model_id, "exp", "LGBM", {"n": n}, {"IC": n / 10}, datetime(2026, 1, 1))
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

    @rule(exclusive=st.booleans())
    def reopen(self, exclusive):
        self.store.close()
        self.store = ModelStore(self.dir, exclusive=exclusive)

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
        live = {m.model_id: m.version for m in self.store.list_models()}
        assert live == {m: len(v) for m, v in self.versions.items() if m not in self.deleted}
        every = {m.model_id: m.deleted for m in self.store.list_models(include_deleted=True)}
        assert every == {m: m in self.deleted for m in self.versions}

    @invariant()
    def history_matches(self):
        for model_id, payloads in self.versions.items():
            hist = self.store.history(model_id)
            assert [h.version for h in hist] == list(range(1, len(payloads) + 1))
            assert [h.digest for h in hist] == [self.digests[n] for n in payloads]


TestRepositoryMachine = RepositoryMachine.TestCase
TestRepositoryMachine.settings = settings(max_examples=20, stateful_step_count=20, deadline=None)
