"""Loading large arrays: read straight into their final buffers, verified before use."""

from __future__ import annotations

import numpy as np
import pytest

from cas_repo import IntegrityError, ModelStore
from cas_repo.compression import RAW, SMALL_STREAM, ZSTD
from cas_repo.content import MAPPED_BUFFER, to_content


def test_large_arrays_load_equal_and_writable_from_raw_and_compressed_chunks(store, make_md):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(3 * MAPPED_BUFFER // 8)  # raw chunks, a mapped buffer
    ramp = np.arange(MAPPED_BUFFER // 4, dtype=np.int64)  # compresses: zstd chunks
    small = rng.standard_normal(100)  # stays in the pickle stream
    store.save_model({"noise": noise, "ramp": ramp, "small": small}, make_md("big"))
    model, _ = store.load_model("big")
    for name, expected in (("noise", noise), ("ramp", ramp), ("small", small)):
        assert np.array_equal(model[name], expected)
        assert model[name].flags.writeable
    model["noise"][0] = 42.0  # the loaded copy is the caller's own
    again, _ = store.load_model("big")
    assert again["noise"][0] == noise[0]


def test_a_flipped_byte_in_a_raw_array_chunk_fails_the_load(store_dir, make_md):
    data = np.random.default_rng(1).standard_normal(MAPPED_BUFFER // 8 * 2)
    with ModelStore(store_dir) as store:
        store.save_model({"w": data}, make_md("m"))
    packs = [p for p in (store_dir / "objects").rglob("*") if p.is_file()]
    pack = max(packs, key=lambda p: p.stat().st_size)
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # the middle of the array's bytes, stored raw
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    with ModelStore(store_dir) as store, pytest.raises(IntegrityError) as info:
        store.load_model("m")
    assert info.value.model_id == "m" and info.value.version == 1


def test_an_unchanged_re_save_of_a_large_model_writes_only_its_commit(store_dir, make_md):
    model = {"w": np.random.default_rng(2).standard_normal((8 << 20) // 8 + 1000)}
    objects = store_dir / "objects"

    def on_disk() -> dict:
        return {p: p.stat().st_size for p in objects.rglob("*") if p.is_file()}

    with ModelStore(store_dir) as store:
        store.save_model(model, make_md("big"))
        before = on_disk()
        store.save_model(model, make_md("big"))
        added = {p: n for p, n in on_disk().items() if p not in before}
    assert [p.parent.name for p in added] == ["log"] and sum(added.values()) < 4096  # one small commit


def _stream_codecs(content) -> set[int]:
    from cas_repo.compression import maybe_compress

    stream = {r.digest for r in content.manifest.stream}
    return {maybe_compress(e.data)[0] if e.compress else RAW for d, e in content.entries.items() if d in stream}


def test_a_small_stream_is_stored_raw_and_a_large_one_by_its_sample(store, make_md):
    small = {"text": b"tree=1 leaf=0.5\n" * 10_000}  # 160 KB, compresses well: kept raw all the same
    large = {"text": b"tree=1 leaf=0.5\n" * 80_000}  # 1.3 MB: zstd
    noise = {"text": np.random.default_rng(2).bytes(SMALL_STREAM + 4096)}  # incompressible: raw
    assert _stream_codecs(to_content(small)) == {RAW}
    assert _stream_codecs(to_content(large)) == {ZSTD}
    assert _stream_codecs(to_content(noise)) == {RAW}
    for name, model in (("small", small), ("large", large), ("noise", noise)):
        store.save_model(model, make_md(name))
        assert store.load_model(name)[0] == model


def test_a_flipped_byte_in_a_raw_stream_chunk_fails_before_unpickling(store_dir, make_md, monkeypatch):
    import cas_repo.serialization as serialization

    model = {"text": b"tree=1 leaf=0.5\n" * 10_000}
    with ModelStore(store_dir) as store:
        store.save_model(model, make_md("m"))
    [pack] = [p for p in (store_dir / "objects" / "packs").rglob("*") if p.is_file()]
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # inside the stream's chunks, stored raw
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    unpickled = []
    monkeypatch.setattr(serialization, "loads", lambda *a, **kw: unpickled.append(a))
    with ModelStore(store_dir) as store, pytest.raises(IntegrityError) as info:
        store.load_model("m")
    assert info.value.model_id == "m" and unpickled == []
