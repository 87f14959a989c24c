"""fsck against damage the tests make themselves: each finding, its severity, and its repair."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np
import pytest

from cas_repo import ModelStore
from cas_repo.catalog import Catalog
from cas_repo.digest import Digest, hash_bytes
from cas_repo.location import CHUNK
from cas_repo.log import checkpoint
from cas_repo.log.ops import EventOp, ForgetPacks
from cas_repo.log.state import StoreState
from cas_repo.maintenance import fsck, fsck_store
from cas_repo.objects.keys import log_key
from cas_repo.objects.local import TEMP_PREFIX
from cas_repo.objects.store import NewEntry

from ..commits import hand_made
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


def pack_files(store_dir):
    return [p for p in (store_dir / "objects" / "packs").rglob("*") if p.is_file()]


def test_a_clean_store_is_clean_quick_and_full(filled, store_dir):
    for full in (False, True):
        report = fsck(filled, full=full)
        assert report.clean and report.findings == ()
        assert (report.commits, report.packs, report.events) == (2, 2, 2)
    assert fsck(filled, full=True).hashed_bytes == sum(p.stat().st_size for p in pack_files(store_dir))


def test_a_flipped_byte_is_found_only_by_full(filled, store_dir):
    loc = biggest_chunk(filled, "a")
    rewrite(pack_path(store_dir, loc.pack), lambda d: d.__setitem__(loc.offset + 7, d[loc.offset + 7] ^ 0x10))
    assert fsck(filled).findings == ()
    report = fsck(filled, full=True)
    assert not report.clean
    [f] = report.findings
    assert (f.code, f.severity, f.subject) == ("entry-corrupt", "error", loc.digest.hex)
    assert f.affected == ("a@1",)
    assert "--repair-from" in f.action


def test_a_truncated_pack(filled, store_dir):
    loc = biggest_chunk(filled, "a")
    rewrite(pack_path(store_dir, loc.pack), lambda d: d.__delitem__(slice(len(d) // 2, None)))
    report = fsck(filled)
    assert codes(report) == [("pack-damaged", "error"), ("pack-size", "error")]
    assert all(f.affected == ("a@1",) for f in report.findings)


def test_a_missing_pack_names_the_versions_that_need_it(filled, store_dir):
    loc = biggest_chunk(filled, "b")
    pack_path(store_dir, loc.pack).unlink()
    report = fsck(filled)
    [f] = report.findings
    assert (f.code, f.subject, f.affected) == ("pack-missing", loc.pack.hex, ("b@1",))
    assert not report.clean


def test_a_pack_at_the_wrong_digest_path_is_found_by_full_and_moved_back(filled, store_dir):
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
    temp_key = str(old.relative_to(store_dir / "objects"))
    assert [(f.code, f.subject) for f in report.findings] == [("temp-file", temp_key)]
    assert old.exists()  # nothing changes without --repair
    fixed = fsck(filled, repair=True)
    assert [f.repaired for f in fixed.findings] == [True]
    assert not old.exists() and fresh.exists()


@pytest.mark.parametrize("damage", [
    "UPDATE objects SET pack = (SELECT max(pack) FROM packs WHERE pack <> objects.pack) WHERE kind = 0",
    "DELETE FROM objects WHERE kind = 0",
    "DELETE FROM manifest_chunks WHERE seq = 0",
    "UPDATE events SET version = 9 WHERE model_id = 'b'",
    "DELETE FROM versions WHERE model_id = 'a'",
])
def test_rows_written_to_the_index_by_hand_are_found_and_the_index_rebuilt(filled, damage):
    with filled.catalog.session() as s:
        s.con.execute(damage)
    [f] = fsck(filled).findings
    assert (f.code, f.severity) == ("index-mismatch", "error") and "rebuild-catalog" in f.action
    fixed = fsck(filled, repair=True)
    assert fixed.clean and all(f.repaired for f in fixed.findings)
    assert fsck(filled, full=True).findings == ()
    assert [m.model_id for m in filled.list_models()] == ["b", "a"]
    assert len(filled.history("a")) == 1
    filled.load_model("a")


def test_packs_whose_every_live_entry_has_another_copy_are_moved_to_the_copies(filled, store_dir):
    lost = []
    for model_id in ("a", "b"):
        manifest, chunks = locations(filled, model_id)
        # Copies of all its entries in a pack no commit mentions (as two racing saves leave).
        entries = [NewEntry(l.digest, l.kind, filled.objects.read(l)) for l in [manifest, *chunks.values()]]
        spare = filled.objects.write(entries)[0].pack
        pack_path(store_dir, manifest.pack).unlink()
        lost.append((manifest.pack, spare))
    assert codes(fsck(filled)) == [("pack-missing", "error")] * 2
    fixed = fsck(filled, repair=True)
    assert fixed.clean and [f.code for f in fixed.findings if f.repaired] == ["pack-missing"] * 2
    for model_id, (old, spare) in zip("ab", lost):
        assert locations(filled, model_id)[0].pack not in (old, spare)  # copied (verified) into a new pack
        filled.load_model(model_id)
    assert codes(fsck(filled, grace=NO_GRACE)) == [("orphan-pack", "warning")] * 2  # the spares, for gc


def test_a_pack_missing_a_live_entry_with_no_copy_is_reported_not_papered_over(filled, store_dir):
    loc = biggest_chunk(filled, "a")
    [copy] = filled.objects.write([NewEntry(loc.digest, CHUNK, filled.objects.read(loc))])
    position = filled.ledger.refresh()
    pack_path(store_dir, loc.pack).unlink()
    fixed = fsck(filled, repair=True)
    [missing] = [f for f in fixed.findings if f.code == "pack-missing"]
    assert not missing.repaired and not fixed.clean  # the manifest in that pack had no other copy
    assert filled.ledger.refresh() == position  # nothing committed
    assert locations(filled, "a")[1][loc.digest.hex].pack == loc.pack
    assert copy.pack != loc.pack


def test_a_live_entry_the_log_lost_is_copied_back_from_the_store(filled, store_dir):
    """A hand-made commit forgets a live pack (a buggy gc): its entries are unlocated, and
    the forgotten file may go at any time; repair copies them into a new pack."""
    a = locations(filled, "a")[0].pack
    filled.ledger.commit(lambda st: [ForgetPacks((a.hex,), datetime.now(UTC))])
    report = fsck(filled)
    assert {c for c, _ in codes(report)} == {"unlocated", "forgotten-pack"}
    fixed = fsck(filled, repair=True)
    assert fixed.clean and all(f.repaired for f in fixed.findings if f.code == "unlocated")
    filled.load_model("a")
    assert locations(filled, "a")[0].pack != a
    assert codes(fsck(filled, full=True)) == [("forgotten-pack", "warning")]


def test_a_missing_log_commit_hides_every_commit_after_it(filled, make_md, store_dir):
    filled.delete_model("b")
    (store_dir / "objects" / log_key(2)).unlink()
    report = fsck(filled)
    [f] = [f for f in report.findings if f.code == "log-gap"]
    assert f.subject == log_key(2) and "1 commit(s)" in f.detail and not report.clean


def test_a_damaged_log_commit(filled, store_dir):
    path = store_dir / "objects" / log_key(2)
    rewrite(path, lambda d: d.__setitem__(5, ord("!")))
    report = fsck(filled)
    [f] = report.findings
    assert (f.code, f.subject) == ("log-unreadable", log_key(2)) and not report.clean


def test_a_commit_the_fold_refuses_is_reported(filled):
    # seq 5 does not follow b's seq 1: every replay skips it alike.
    bad = EventOp("b", 5, "delete", 1, datetime.now(UTC), "", True, {})
    log = filled.ledger.log
    assert log.create(3, hand_made(filled, 3, (bad,)))
    report = fsck(filled)
    assert codes(report) == [("log-refused", "error")] and report.findings[0].subject == f"{log_key(3)}#0"


def test_a_checkpoint_that_differs_from_the_log(filled):
    filled.ledger.log.write_checkpoint(2, checkpoint.encode(StoreState()))
    assert codes(fsck(filled)) == [("checkpoint-mismatch", "error")]


def test_a_good_checkpoint_is_checked_and_clean(filled):
    assert filled.checkpoint() == 2
    assert fsck(filled, full=True).findings == ()


def test_a_deleted_or_replaced_index_is_rebuilt_from_the_log(store_dir, make_md):
    with ModelStore(store_dir) as s:
        s.save_model({"w": np.arange(1000)}, make_md("a"))
        assert len(s.history("a")) == 1  # a query: the index exists now
        index = s.catalog.path
    index.unlink()
    assert fsck_store(store_dir).findings == () and index.exists()
    index.unlink()
    Catalog(index).close()  # replaced by a fresh, empty one
    with ModelStore(store_dir) as s:
        assert fsck(s).findings == () and [m.model_id for m in s.list_models()] == ["a"]


def test_repair_never_deletes_anything(filled, store_dir):
    before = set(pack_files(store_dir))
    loc = biggest_chunk(filled, "a")
    rewrite(pack_path(store_dir, loc.pack), lambda d: d.__setitem__(loc.offset, d[loc.offset] ^ 1))
    report = fsck(filled, full=True, repair=True)
    assert not report.clean  # no intact copy: reported, not papered over
    assert set(pack_files(store_dir)) == before


def test_digest_of_a_pack_is_its_name(filled, store_dir):
    for p in pack_files(store_dir):
        assert hash_bytes(p.read_bytes()) == Digest.from_hex(p.parent.name + p.name)


def test_the_findings_table_in_the_docs_is_the_one_fsck_uses():
    from pathlib import Path

    from cas_repo.maintenance.findings import CODES

    doc = (Path(__file__).parents[2] / "docs" / "maintenance.md").read_text()
    for code, (severity, means, do) in CODES.items():
        assert f"| `{code}` | {severity} | {means} | {do} |" in doc, code
