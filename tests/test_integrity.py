"""Tampered bytes and hostile pickles fail loudly, before the unpickler runs a thing."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cas_repo import IntegrityError, UnsafePickleError
from cas_repo.objects.keys import pack_key
from cas_repo.serialization import unpickler


@pytest.fixture
def unpickler_calls(monkeypatch):
    calls = []
    real = unpickler._RestrictedUnpickler.load

    def spy(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(unpickler._RestrictedUnpickler, "load", spy)
    return calls


def _chunk_locations(store, model_id, version):
    md = store.get_model_metadata(model_id, version)
    with store.catalog.session() as s:
        _, locs = s.content_locations(md.digest)
    return md, list(locs.values())


def _rewrite(store_dir, pack, mutate):
    path = store_dir / "objects" / pack_key(pack)
    data = bytearray(path.read_bytes())
    mutate(data)
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def test_flipped_byte_raises_integrity_error_before_unpickling(store, store_dir, make_md, unpickler_calls):
    store.save_model({"w": np.random.default_rng(1).standard_normal(50_000)}, make_md())
    _, locs = _chunk_locations(store, "m1", 1)
    loc = max(locs, key=lambda l: l.stored_size)

    def flip(data):
        data[loc.offset + loc.stored_size // 2] ^= 0x01

    _rewrite(store_dir, loc.pack, flip)
    with pytest.raises(IntegrityError) as info:
        store.load_model("m1")
    err = info.value
    assert err.model_id == "m1" and err.version == 1
    assert err.expected == loc.digest.hex and err.actual and err.actual != err.expected
    assert "m1" in str(err) and loc.digest.hex in str(err) and "fsck" in str(err)
    assert unpickler_calls == []


def test_truncated_pack_raises_integrity_error(store, store_dir, make_md, unpickler_calls):
    store.save_model({"w": np.arange(100_000)}, make_md())
    _, locs = _chunk_locations(store, "m1", 1)
    _rewrite(store_dir, locs[0].pack, lambda d: d.__delitem__(slice(len(d) // 2, None)))
    with pytest.raises(IntegrityError):
        store.load_model("m1")
    assert unpickler_calls == []


def test_missing_pack_raises_integrity_error(store, store_dir, make_md, unpickler_calls):
    store.save_model({"w": np.arange(100_000)}, make_md())
    _, locs = _chunk_locations(store, "m1", 1)
    (store_dir / "objects" / pack_key(locs[0].pack)).unlink()
    with pytest.raises(IntegrityError, match="missing"):
        store.load_model("m1")
    assert unpickler_calls == []


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_naming_os_system_is_refused_without_side_effect(store, tmp_path, make_md):
    marker = tmp_path / "pwned"
    store.save_model({"payload": _Hostile(marker)}, make_md())
    with pytest.raises(UnsafePickleError) as info:
        store.load_model("m1")
    assert "system" in str(info.value)
    assert not marker.exists()
