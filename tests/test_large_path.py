"""Large models: chunks hashed on threads, packs published in a pipeline, loads read and
verified in parallel runs — the bytes must round-trip exactly and tampering must fail."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas_repo import IntegrityError, ModelStore, digest
from cas_repo.content import from_content, to_content
from cas_repo.objects import store as object_store

MIB = 1 << 20


def _model(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # 12 arrays of 1.5 MiB: more than digest.PARALLEL_MIN in all, none of it alone.
    return {f"w{i}": rng.standard_normal(3 * MIB // 16).astype(np.float64) for i in range(12)}


@pytest.fixture
def small_packs(monkeypatch):
    monkeypatch.setattr(object_store, "PACK_TARGET", 2 * MIB)


def _packs(store_dir):
    return sorted((p for p in (store_dir / "objects" / "packs").rglob("*") if p.is_file()), key=lambda p: p.name)


def test_a_save_of_several_pipelined_packs_loads_back_exactly(store_dir, make_md, small_packs):
    model = _model(0)
    with ModelStore(store_dir) as store:
        store.save_model(model, make_md("big"))
    assert len(_packs(store_dir)) > 4
    with ModelStore(store_dir) as store:
        loaded, _ = store.load_model("big")
    assert loaded.keys() == model.keys()
    for name, expected in model.items():
        assert np.array_equal(loaded[name], expected)
        assert loaded[name].flags.writeable


@pytest.mark.parametrize("which", [0, -1])
def test_a_flipped_byte_in_any_pack_of_a_parallel_load_is_refused(store_dir, make_md, small_packs, which):
    with ModelStore(store_dir) as store:
        store.save_model(_model(1), make_md("m"))
    pack = [p for p in _packs(store_dir) if p.stat().st_size > MIB][which]
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    with ModelStore(store_dir) as store, pytest.raises(IntegrityError) as info:
        store.load_model("m")
    assert info.value.model_id == "m" and info.value.version == 1


def test_a_failed_pack_write_fails_the_save_and_commits_nothing(store_dir, make_md, small_packs):
    with ModelStore(store_dir) as store:
        backend = store.objects.backend
        real_put, calls = type(backend).put, []

        def failing_put(key, parts):
            calls.append(key)
            if len(calls) == 2:
                raise OSError("disk gone")
            return real_put(backend, key, parts)

        backend.put = failing_put
        with pytest.raises(OSError):
            store.save_model(_model(2), make_md("m"))
        assert store.list_models() == []


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 300_000), min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_content_round_trips_with_threads_at_any_size(sizes, seed):
    rng = np.random.default_rng(seed)
    model = {"arrays": [rng.integers(0, 255, n, dtype=np.uint8) for n in sizes], "seed": seed}
    with mock.patch.object(digest, "PARALLEL_MIN", 0), mock.patch.object(object_store, "PARALLEL_MIN", 0):
        content = to_content(model)
        for d, e in content.entries.items():
            assert digest.hash_bytes(e.data) == d

        def read(ds):
            return [bytes(content.entries[d].data) for d in ds]

        loaded = from_content(content.manifest, read)
    assert loaded["seed"] == seed
    assert all(np.array_equal(a, b) for a, b in zip(loaded["arrays"], model["arrays"], strict=True))


def test_hash_each_on_threads_equals_one_at_a_time():
    data = memoryview(np.random.default_rng(3).bytes(digest.PARALLEL_MIN + 12345))
    pieces = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
    assert digest.hash_each(pieces) == [digest.hash_bytes(p) for p in pieces]


def test_prefetch_is_only_a_hint(store_dir, make_md, small_packs):
    with ModelStore(store_dir) as store:
        store.save_model(_model(4), make_md("m"))
        backend = store.objects.backend
        backend.prefetch("packs/00/" + "0" * 62, 0, 1 << 20)  # no such pack: nothing happens
        key = "/".join(_packs(store_dir)[0].relative_to(store_dir / "objects").parts)
        backend.prefetch(key, 0, 1 << 40)  # past the end: nothing happens
        loaded, _ = store.load_model("m")
    assert all(np.array_equal(loaded[k], v) for k, v in _model(4).items())
