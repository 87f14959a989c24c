"""fsck against corruption the tests make themselves: each finding, its severity, and its repair."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cas_repo import CatalogCorruptError, ModelStore
from cas_repo.catalog import Catalog
from cas_repo.digest import Digest, hash_bytes
from cas_repo.location import CHUNK
from cas_repo.maintenance import fsck, fsck_store, rebuild_catalog
from cas_repo.objects.local import TEMP_PREFIX
from cas_repo.objects.store import NewEntry

from .conftest import NO_GRACE, age, locations, pack_path, rewrite


@pytest.fixture
def filled(store, make_md, rng):
    store.save_model({"w": rng.standard_normal(60_000)}, make_md("a"))
    store.save_model({"w": rng.standard_normal(30_000), "tag": "b"}, make_md("b", experiment="other"))
    return store


def codes(report):
    return sorted((f.code, f.severity) for f in report.findings if not f.repaired)


def biggest_chunk(store, model_id):
    _, chunks = locations(store, model_id)
    return max(chunks.values(), key=lambda l: l.stored_size)


def test_a_clean_store_is_clean_quick_and_full(filled):
    for full in (False, True):
        report = fsck(filled, full=full)
        assert report.clean and report.findings == ()
        assert report.packs == 2 and report.events == 2
    assert fsck(filled, full=True).hashed_bytes == sum(
        p.stat().st_size for p in (filled.objects.backend.root).rglob("*") if p.is_file())


def test_a_flipped_byte_is_found_only_by_full(filled, store_dir):
    loc = biggest_chunk(filled, "a")
    rewrite(pack_path(store_dir, loc.pack), lambda d: d.__setitem__(loc.offset + 7, d[loc.offset + 7] ^ 0x10))
    assert fsck(filled).findings == ()
    report = fsck(filled, full=True)
    assert not report.clean
    [f] = report.findings
    assert (f.code, f.severity, f.subject) == ("entry-corrupt", "error", loc.digest.hex)
    assert f.affected == ("a@1",)
    assert "backup" in f.action


def test_a_truncated_pack(filled, store_dir):
    loc = biggest_chunk(filled, "a")
    rewrite(pack_path(store_dir, loc.pack), lambda d: d.__delitem__(slice(len(d) // 2, None)))
    report = fsck(filled)
    assert codes(report) == [("pack-damaged", "error"), ("pack-size", "error")]
    assert all(f.affected == ("a#1", "a@1") for f in report.findings)


def test_a_missing_pack_names_the_versions_that_need_it(filled, store_dir):
    loc = biggest_chunk(filled, "b")
    pack_path(store_dir, loc.pack).unlink()
    report = fsck(filled)
    [f] = report.findings
    assert (f.code, f.subject, f.affected) == ("pack-missing", loc.pack.hex, ("b#1", "b@1"))
    assert not report.clean


def test_a_pack_at_the_wrong_digest_path_is_found_by_full_and_moved_back(filled, store_dir, make_md):
    loc = biggest_chunk(filled, "a")
    wrong = hash_bytes(b"not this pack")
    pack_path(store_dir, wrong).parent.mkdir(parents=True, exist_ok=True)
    os.rename(pack_path(store_dir, loc.pack), pack_path(store_dir, wrong))
    age(pack_path(store_dir, wrong), 2)
    assert codes(fsck(filled)) == [("orphan-pack", "warning"), ("pack-missing", "error")]
    full = fsck(filled, full=True)
    assert ("pack-misplaced", "error") in codes(full)
    [misplaced] = [f for f in full.findings if f.code == "pack-misplaced"]
    assert misplaced.subject == wrong.hex and loc.pack.hex in misplaced.detail
    repaired = fsck(filled, full=True, repair=True)
    assert repaired.clean
    assert codes(repaired) == [("orphan-pack", "warning")]  # the misnamed copy, for gc
    assert pack_path(store_dir, loc.pack).exists() and pack_path(store_dir, wrong).exists()
    filled.load_model("a")


def test_an_orphan_pack_is_a_warning_once_past_the_grace_period(filled, store_dir):
    data = b"left by a save that never committed" * 100
    [loc] = filled.objects.write([NewEntry(hash_bytes(data), CHUNK, data)])
    fresh = fsck(filled)
    assert fresh.findings == () and fresh.in_flight == 1
    age(pack_path(store_dir, loc.pack), 2)
    report = fsck(filled)
    assert codes(report) == [("orphan-pack", "warning")] and report.clean
    assert fsck(filled, grace=NO_GRACE).in_flight == 0


def test_old_and_fresh_temp_files(filled, store_dir):
    shard = pack_path(store_dir, biggest_chunk(filled, "a").pack).parent
    old, fresh = shard / f"{TEMP_PREFIX}1-aaaa", shard / f"{TEMP_PREFIX}2-bbbb"
    old.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y" * 10)
    age(old, 2)
    report = fsck(filled)
    assert [(f.code, f.subject) for f in report.findings] == [("temp-file", str(old.relative_to(store_dir / "objects")))]
    assert old.exists()  # nothing changes without --repair
    fixed = fsck(filled, repair=True)
    assert [f.repaired for f in fixed.findings] == [True]
    assert not old.exists() and fresh.exists()


def test_a_catalog_row_whose_object_is_not_where_it_says(filled, store_dir):
    loc = biggest_chunk(filled, "a")
    other = biggest_chunk(filled, "b").pack
    with filled.catalog.session() as s:
        s.con.execute("UPDATE objects SET pack = ? WHERE digest = ?", [other.hex, loc.digest.hex])
    report = fsck(filled)
    [f] = report.findings
    assert (f.code, f.severity, f.affected) == ("row-mismatch", "error", ("a@1",))
    fixed = fsck(filled, repair=True)
    assert fixed.clean and all(f.repaired for f in fixed.findings)
    assert fsck(filled, full=True).findings == ()
    filled.load_model("a")


def test_a_catalog_row_whose_pack_is_gone_with_another_copy_is_repointed(filled, store_dir, rng, make_md):
    # Two packs hold the same chunk (as after two concurrent first saves); the one the
    # catalog uses disappears.
    loc = biggest_chunk(filled, "a")
    [copy] = filled.objects.write([NewEntry(loc.digest, CHUNK, filled.objects.read(loc))])
    pack_path(store_dir, loc.pack).unlink()
    assert ("pack-missing", "error") in codes(fsck(filled))
    fixed = fsck(filled, repair=True)
    [missing] = [f for f in fixed.findings if f.code == "pack-missing"]
    assert not missing.repaired  # the manifest and record in that pack had no other copy
    with filled.catalog.session() as s:
        assert s.present([loc.digest.hex])[loc.digest.hex].pack == copy.pack


def test_an_unlocated_object_is_found_in_its_pack(filled):
    loc = biggest_chunk(filled, "a")
    with filled.catalog.session() as s:
        s.con.execute("DELETE FROM objects WHERE digest = ?", [loc.digest.hex])
    [f] = fsck(filled).findings
    assert (f.code, f.subject, f.affected) == ("unlocated", loc.digest.hex, ("a@1",))
    assert fsck(filled, repair=True).clean
    assert fsck(filled).findings == ()
    filled.load_model("a")


def test_a_manifest_chunk_list_that_disagrees_is_rewritten_from_the_manifest(filled):
    md = filled.get_model_metadata("a")
    with filled.catalog.session() as s:
        s.con.execute("DELETE FROM manifest_chunks WHERE manifest = ? AND seq = 0", [md.digest])
    [f] = fsck(filled).findings
    assert f.code == "manifest-mismatch" and f.affected == ("a@1",)
    assert fsck(filled, repair=True).clean
    assert fsck(filled).findings == ()


def test_an_event_that_disagrees_with_its_record(filled):
    with filled.catalog.session() as s:
        s.con.execute("UPDATE events SET version = 9 WHERE model_id = 'b'")
    [f] = fsck(filled).findings
    assert (f.code, f.subject) == ("record-mismatch", "b#1") and "rebuild-catalog" in f.action


def test_a_deleted_catalog_file_is_reported_not_recreated(store_dir, make_md):
    with ModelStore(store_dir) as s:
        s.save_model({"w": np.arange(1000)}, make_md("a"))
    catalog = store_dir / "catalog.duckdb"
    catalog.unlink()
    with pytest.raises(CatalogCorruptError, match="rebuild-catalog"):
        ModelStore(store_dir)  # the store itself refuses to start over on old packs
    report = fsck_store(store_dir)
    [f] = report.findings
    assert f.code == "catalog-empty" and "rebuild-catalog" in f.action and not report.clean
    assert not catalog.exists()
    rebuild_catalog(store_dir)
    assert fsck_store(store_dir).findings == ()


def test_an_emptied_catalog_is_reported(store_dir, make_md):
    with ModelStore(store_dir) as s:
        s.save_model({"w": np.arange(1000)}, make_md("a"))
    (store_dir / "catalog.duckdb").unlink()
    Catalog(store_dir / "catalog.duckdb").close()  # replaced by a fresh, empty one
    with ModelStore(store_dir) as s:
        [f] = fsck(s).findings
    assert f.code == "catalog-empty"


def test_an_interrupted_commit_leaves_an_unknown_event_warning(filled, store_dir):
    from datetime import datetime, timezone

    from cas_repo.location import RECORD
    from cas_repo.manifest import EventRecord

    rec = EventRecord("delete", "a", 2, 1, datetime.now(timezone.utc))
    data = rec.to_bytes()
    [loc] = filled.objects.write([NewEntry(hash_bytes(data), RECORD, data, compress=False)])
    age(pack_path(store_dir, loc.pack), 2)
    assert codes(fsck(filled)) == [("orphan-pack", "warning"), ("unknown-event", "warning")]
    filled.delete_model("a")  # the real event 2 supersedes the orphan
    assert codes(fsck(filled)) == [("orphan-pack", "warning")]


def test_repair_never_deletes_a_referenced_pack(filled, store_dir):
    before = {p for p in (store_dir / "objects").rglob("*") if p.is_file()}
    loc = biggest_chunk(filled, "a")
    rewrite(pack_path(store_dir, loc.pack), lambda d: d.__setitem__(loc.offset, d[loc.offset] ^ 1))
    report = fsck(filled, full=True, repair=True)
    assert not report.clean  # no intact copy: reported, not papered over
    assert {p for p in (store_dir / "objects").rglob("*") if p.is_file()} == before


def test_digest_of_a_pack_is_its_name(filled, store_dir):
    for p in (store_dir / "objects").rglob("*"):
        if p.is_file():
            assert hash_bytes(p.read_bytes()) == Digest.from_hex(p.parent.name + p.name)
