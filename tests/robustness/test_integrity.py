"""Flipped, truncated, deleted or swapped pack bytes: IntegrityError before any byte is unpickled.

A spy replaces the restricted unpickler (and the serializer's ``loads``) with recording
subclasses of the real ones; a damaged load must raise without either being called.
"""

from __future__ import annotations

import os
import random
import re

import numpy as np
import pytest

import cas_repo.serialization as serialization
import cas_repo.serialization.unpickler as unpickler
from cas_repo import IntegrityError, ModelStore
from cas_repo.compression import ZSTD
from cas_repo.digest import Digest
from cas_repo.location import CHUNK, MANIFEST

from .workers import metadata

HEX = re.compile(r"[0-9a-f]{64}")


def _model(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "text": (f"model {seed} " * 150_000).encode(),       # compresses: zstd chunks (over 1 MiB)
        "noise": rng.bytes(200_000),                         # does not: raw stream chunks
        "weights": rng.standard_normal(60_000),              # 480 KB out-of-band buffer
    }


def _same(a: dict, b: dict) -> bool:
    return a["text"] == b["text"] and a["noise"] == b["noise"] and np.array_equal(a["weights"], b["weights"])


@pytest.fixture
def spy(monkeypatch):
    """Counts every use of the unpickler; the real one still does the work."""
    seen = []

    class Spy(unpickler._RestrictedUnpickler):
        def __init__(self, *a, **kw):
            seen.append("unpickler")
            super().__init__(*a, **kw)

    real_loads = serialization.loads

    def loads(*a, **kw):
        seen.append("loads")
        return real_loads(*a, **kw)

    monkeypatch.setattr(unpickler, "_RestrictedUnpickler", Spy)
    monkeypatch.setattr(serialization, "loads", loads)
    return seen


@pytest.fixture
def stored(tmp_path):
    """A store with m@1 and other@1 (each in its own pack); yields (root, store, packs)."""
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(_model(1), metadata("m"))
        store.save_model(_model(2), metadata("other"))
        with store.catalog.session() as s:
            packs = {m: s.con.execute(
                "SELECT DISTINCT pack FROM objects o JOIN versions v ON o.digest = v.manifest "
                "WHERE v.model_id = ?", [m]).fetchone()[0] for m in ("m", "other")}
        yield root, store, packs


def _pack_path(root, pack_hex: str):
    return root / "objects" / "packs" / "blake3" / pack_hex[:2] / pack_hex[2:]


def _entries(store, pack_hex):
    return store.objects.pack_index(Digest.from_hex(pack_hex))


def _rewrite(path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def _assert_refused(store, spy, *, expected: str | None = None, actual: str | None = None):
    with pytest.raises(IntegrityError) as info:
        store.load_model("m")
    err = info.value
    assert spy == [], "bytes reached the unpickler before verification"
    assert (err.model_id, err.version) == ("m", 1)
    assert err.expected and HEX.fullmatch(err.expected)
    assert err.actual and (HEX.fullmatch(err.actual) or err.actual == "missing")
    if expected:
        assert err.expected == expected
    if actual:
        assert err.actual == actual
    text = str(err)
    for part in ("'m'", "version 1", err.expected, err.actual):
        assert part in text
    return err


@pytest.mark.parametrize("target", ["raw-chunk", "zstd-chunk", "buffer-chunk", "manifest"])
def test_flipped_entry_is_refused_naming_its_digests(stored, spy, target):
    root, store, packs = stored
    entries = _entries(store, packs["m"])
    pick = {
        "raw-chunk": lambda l: l.kind == CHUNK and l.codec != ZSTD and l.size < 100_000,
        "zstd-chunk": lambda l: l.kind == CHUNK and l.codec == ZSTD,
        "buffer-chunk": lambda l: l.kind == CHUNK and l.size > 100_000,
        "manifest": lambda l: l.kind == MANIFEST,
    }[target]
    loc = next(l for l in entries if pick(l))
    path = _pack_path(root, packs["m"])
    data = bytearray(path.read_bytes())
    data[loc.offset + loc.stored_size // 2] ^= 0x01
    _rewrite(path, bytes(data))
    err = _assert_refused(store, spy, expected=loc.digest.hex)
    assert err.actual != loc.digest.hex


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_pack_is_refused(stored, spy, keep):
    root, store, packs = stored
    path = _pack_path(root, packs["m"])
    data = path.read_bytes()
    _rewrite(path, data[: int(len(data) * keep)])
    _assert_refused(store, spy)


def test_deleted_pack_is_refused(stored, spy):
    root, store, packs = stored
    entries = {l.digest.hex for l in _entries(store, packs["m"])}
    _pack_path(root, packs["m"]).unlink()
    err = _assert_refused(store, spy, actual="missing")
    assert err.expected in entries  # names an entry of the pack that is gone
    assert packs["m"][2:] in str(err)


def test_pack_swapped_for_another_models_pack_is_refused(stored, spy):
    root, store, packs = stored
    mine, theirs = _pack_path(root, packs["m"]), _pack_path(root, packs["other"])
    a, b = mine.read_bytes(), theirs.read_bytes()
    _rewrite(mine, b)
    _rewrite(theirs, a)
    _assert_refused(store, spy)
    with pytest.raises(IntegrityError):
        store.load_model("other")


def test_two_entries_swapped_inside_a_pack_are_refused(stored, spy):
    root, store, packs = stored
    chunks = sorted((l for l in _entries(store, packs["m"]) if l.kind == CHUNK), key=lambda l: l.offset)
    a, b = chunks[0], chunks[1]
    n = min(a.stored_size, b.stored_size)
    path = _pack_path(root, packs["m"])
    data = bytearray(path.read_bytes())
    data[a.offset:a.offset + n], data[b.offset:b.offset + n] = data[b.offset:b.offset + n], data[a.offset:a.offset + n]
    _rewrite(path, bytes(data))
    _assert_refused(store, spy)


def test_a_flip_anywhere_in_a_pack_is_refused_or_harmless(stored, spy):
    """Bytes of the pack header, index or footer are not read by a load; every other byte is verified."""
    root, store, packs = stored
    path = _pack_path(root, packs["m"])
    pristine = path.read_bytes()
    expected = _model(1)
    entry_bytes = {i for l in _entries(store, packs["m"]) for i in range(l.offset, l.offset + l.stored_size)}
    rng = random.Random(3)
    positions = rng.sample(sorted(entry_bytes), 25) + rng.sample(range(len(pristine)), 15) + [0, len(pristine) - 1]
    for pos in positions:
        data = bytearray(pristine)
        data[pos] ^= 1 << rng.randrange(8)
        _rewrite(path, bytes(data))
        spy.clear()
        if pos in entry_bytes:
            _assert_refused(store, spy)
        else:
            assert _same(store.load_model("m")[0], expected)
    _rewrite(path, pristine)
    assert _same(store.load_model("m")[0], expected)
