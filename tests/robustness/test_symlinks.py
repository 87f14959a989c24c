"""Symlinks planted inside a store are refused, never followed out of it."""

from __future__ import annotations

import os
import shutil

import pytest

from cas_repo import CasRepoError, ModelStore, StoreError
from cas_repo.catalog.catalog import CATALOG_FILE

from .consistency import check_store
from .workers import fingerprint, metadata, payload


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "outside"
    d.mkdir()
    return d


def _shards(root):
    return root / "objects" / "packs" / "blake3"


def _pack_files(root):
    return sorted(p for p in _shards(root).rglob("*") if p.is_file())


def _listing(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_symlinked_shard_dirs_are_refused_on_write(tmp_path, outside):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 5000), metadata("m"))
    shards = _shards(root)
    kept = []
    for i in range(256):  # whichever shard the next pack lands in is a link out of the store
        d = shards / f"{i:02x}"
        if d.exists():  # the first save's shard: set aside, so no shard is left real
            d.rename(d.with_name(d.name + ".kept"))
            kept.append(d)
        os.symlink(outside, d)
    with ModelStore(root) as store:
        with pytest.raises(StoreError, match="symlink"):
            store.save_model(payload(2, 5000), metadata("m"))
        assert [md.version for md in store.history("m")] == [1]
    assert _listing(outside) == []
    for d in shards.iterdir():
        if d.is_symlink():
            d.unlink()
    for d in kept:
        d.with_name(d.name + ".kept").rename(d)
    assert check_store(root, full=True).clean


def test_symlinked_top_folder_is_refused(tmp_path, outside):
    root = tmp_path / "cas"
    ModelStore(root).close()
    (root / "objects" / "packs").rmdir() if (root / "objects" / "packs").exists() else None
    os.symlink(outside, root / "objects" / "packs")
    with ModelStore(root) as store, pytest.raises(StoreError, match="symlink"):
        store.save_model(payload(2, 5000), metadata("m"))
    assert _listing(outside) == []


def test_shard_dir_replaced_by_a_symlink_while_the_store_is_open(tmp_path, outside):
    """A long-lived process has already used the shard; the link planted later is still refused."""
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 5000), metadata("m"))
        [pack] = _pack_files(root)
        shard = pack.parent
        shutil.move(str(shard), str(outside / "moved"))
        os.symlink(outside / "moved", shard)
        # reading through the link: refused, although the bytes behind it are intact
        with pytest.raises(StoreError, match="symlink"):
            store.load_model("m")
        # writing through it: refused (the pack's own key lands in that shard)
        data = (outside / "moved" / pack.name).read_bytes()
        for name in os.listdir(outside / "moved"):
            os.chmod(outside / "moved" / name, 0o644)
            os.unlink(outside / "moved" / name)
        with pytest.raises(StoreError, match="symlink"):
            store.objects.backend.put(str(pack.relative_to(root / "objects")), [data])
    assert os.listdir(outside / "moved") == []


def test_pack_file_replaced_by_a_symlink_to_identical_bytes_is_refused(tmp_path, outside):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 5000), metadata("m"))
        [pack] = _pack_files(root)
        copy = outside / "copy"
        shutil.copy(pack, copy)
        os.chmod(pack, 0o644)
        pack.unlink()
        os.symlink(copy, pack)
        with pytest.raises(StoreError, match="symlink"):
            store.load_model("m")
        with pytest.raises(StoreError, match="symlink"):
            store.objects.backend.put(str(pack.relative_to(root / "objects")), [copy.read_bytes()])
    os.unlink(pack)
    shutil.copy(copy, pack)
    with ModelStore(root) as store:
        assert fingerprint(store.load_model("m")[0]) == fingerprint(payload(1, 5000))


@pytest.mark.parametrize("name", ["catalog.lock", CATALOG_FILE + ".wal"])
def test_symlinked_catalog_side_files_are_refused_and_the_target_untouched(tmp_path, outside, name):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 5000), metadata("m"))
    victim = outside / "precious"
    victim.write_text("do not truncate me\n")
    side = root / (CATALOG_FILE + ".lock" if name == "catalog.lock" else name)
    side.unlink(missing_ok=True)
    os.symlink(victim, side)
    with pytest.raises(CasRepoError, match="symlink"):
        ModelStore(root)
    assert victim.read_text() == "do not truncate me\n"
