"""Symlinks planted inside a store (or beside its catalog index) are refused, never followed out of it.

Mechanism: ``LocalBackend`` reaches every folder from the store's root one component at a
time with ``O_NOFOLLOW`` and works relative to the descriptor, opens files with
``O_NOFOLLOW`` and publishes commits with ``link(2)``, which never follows its target;
the catalog refuses a linked index file, WAL or lock file. Each test checks that
nothing was read from or written through the link.
"""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from cas_repo import CasRepoError, ModelStore, StoreError

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


def _seeded(tmp_path):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, 5000), metadata("m"))
    return root


def test_symlinked_shard_dirs_are_refused_on_write(tmp_path, outside):
    root = _seeded(tmp_path)
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


@pytest.mark.parametrize("folder", ["packs", "log"])
def test_symlinked_top_folder_is_refused(tmp_path, outside, folder):
    """objects/packs or objects/log replaced by a link to a copy of itself: refused for
    reading and for writing, although everything behind the link is intact."""
    root = _seeded(tmp_path)
    real = root / "objects" / folder
    shutil.copytree(real, outside / folder, symlinks=True)
    shutil.rmtree(real)
    os.symlink(outside / folder, real)
    before = _listing(outside)
    with ModelStore(root) as store:
        with pytest.raises(StoreError, match="symlink"):
            store.load_model("m")
        with pytest.raises(StoreError, match="symlink"):
            store.save_model(payload(2, 5000), metadata("m"))
    assert _listing(outside) == before


def test_log_commit_replaced_by_a_symlink_is_refused(tmp_path, outside):
    """A commit file pointing elsewhere (here: at a copy of its own bytes) is never read."""
    root = _seeded(tmp_path)
    commit = root / "objects" / "log" / f"{1:020d}"
    shutil.copy(commit, outside / "commit")
    os.chmod(commit, 0o644)
    commit.unlink()
    os.symlink(outside / "commit", commit)
    with ModelStore(root) as store, pytest.raises(StoreError, match="symlink"):
        store.load_model("m")


def test_symlink_planted_at_the_next_log_position_is_never_written_through(tmp_path, outside):
    """link(2) does not follow an existing name: the writer loses the position as to any
    other writer, then refuses to read what is there; nothing appears behind the link."""
    root = _seeded(tmp_path)
    target = outside / "written-through"
    os.symlink(target, root / "objects" / "log" / f"{2:020d}")
    with ModelStore(root) as store, pytest.raises(StoreError, match="symlink"):
        store.save_model(payload(2, 5000), metadata("m"))
    assert not target.exists() and _listing(outside) == []


def test_symlinked_checkpoint_is_refused_not_used(tmp_path, outside, caplog):
    root = _seeded(tmp_path)
    with ModelStore(root) as store:
        store.save_model(payload(2, 5000), metadata("m"))
        assert store.checkpoint() == 2
        store.save_model(payload(3, 5000), metadata("m"))
    # A checkpoint is a shortcut: a symlinked one is not followed but skipped, with a
    # warning, and the log replayed from the start.
    ckpt = root / "objects" / "checkpoints" / f"{2:020d}"
    shutil.copy(ckpt, outside / "ckpt")
    os.chmod(ckpt, 0o644)
    ckpt.unlink()
    os.symlink(outside / "ckpt", ckpt)
    with caplog.at_level(logging.WARNING), ModelStore(root) as store:
        assert fingerprint(store.load_model("m")[0]) == fingerprint(payload(3, 5000))
        assert [md.version for md in store.history("m")] == [1, 2, 3]
    assert "is a symlink; refusing to follow it" in caplog.text and "unusable" in caplog.text


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


@pytest.mark.parametrize("side", [".lock", ".wal", ""], ids=["lock", "wal", "index-file"])
def test_symlinked_index_files_are_refused_and_the_target_untouched(tmp_path, outside, side):
    """The index's lock file, WAL or file itself as a link: its sessions are refused (the
    link may be removed by hand: the index is rebuilt from the log), the target is never
    written, and saves and loads, which never open the index, go on working."""
    root = _seeded(tmp_path)
    with ModelStore(root) as store:
        store.history("m")
        index = store.catalog.path
    victim = outside / "precious"
    victim.write_text("do not truncate me\n")
    link = index.with_name(index.name + side)
    link.unlink(missing_ok=True)
    os.symlink(victim, link)
    with ModelStore(root) as store:
        with pytest.raises(CasRepoError, match="symlink"):
            store.history("m")
        with pytest.raises(CasRepoError, match="symlink"):
            store.sql("SELECT count(*) FROM v_versions")
        store.save_model(payload(2, 5000), metadata("m"))
        assert store.load_model("m")[1].version == 2
    assert victim.read_text() == "do not truncate me\n"
    assert link.is_symlink()
    link.unlink()
    with ModelStore(root) as store:
        assert [md.version for md in store.history("m")] == [1, 2]
