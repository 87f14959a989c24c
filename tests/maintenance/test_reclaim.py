"""gc --no-commit: what it takes (temp files, leftovers, old orphans), what it keeps, and that
it reads the log alone and writes nothing."""

from __future__ import annotations

import json
from datetime import timedelta

from cas_repo.cli import main
from cas_repo.digest import hash_bytes
from cas_repo.location import CHUNK
from cas_repo.maintenance import reclaim_space
from cas_repo.objects.store import NewEntry

from .conftest import NO_GRACE, age, pack_path

HOUR = timedelta(hours=1)


def orphan_pack(store, root, data: bytes):
    """A pack no commit mentions, as a save cut short before its commit leaves it."""
    [loc] = store.objects.write([NewEntry(hash_bytes(data), CHUNK, data)])
    return pack_path(root, loc.pack)


def test_gc_no_commit_reads_the_log_alone_and_a_dry_run_deletes_nothing(store, store_dir, make_md, rng):
    store.save_model({"w": rng.standard_normal(20_000)}, make_md("a"))
    pack = orphan_pack(store, store_dir, rng.bytes(10_000))
    age(pack, 2)
    dry = reclaim_space(store, grace=HOUR, dry_run=True)
    assert dry.dry_run and [p.pack for p in dry.orphans] and pack.exists()
    # The index is not needed: gone, it stays gone (nothing opened DuckDB).
    store.catalog.reset()
    real = reclaim_space(store, grace=HOUR)
    assert [p.pack for p in real.orphans] == [p.pack for p in dry.orphans] and not pack.exists()
    assert real.freed_bytes == dry.freed_bytes > 0 and not store.catalog.path.exists()
    assert store.ledger.refresh() == 1  # and nothing was committed


def test_gc_no_commit_keeps_an_orphan_younger_than_the_floor_whatever_the_grace(store, store_dir, rng):
    young = orphan_pack(store, store_dir, rng.bytes(10_000))
    age(young, 10 / (24 * 60))  # ten minutes: past --grace 0, not past the floor
    report = reclaim_space(store, grace=NO_GRACE)
    assert report.orphans == () and [p.pack for p in report.kept] and young.exists()
    age(young, 20 / (24 * 60))
    assert [p.pack for p in reclaim_space(store, grace=NO_GRACE).orphans] and not young.exists()


def test_the_command_prints_json_and_refuses_options_that_need_a_commit(store, store_dir, rng, capsys):
    age(orphan_pack(store, store_dir, rng.bytes(10_000)), 2)
    assert main(["--repo", str(store_dir), "gc", "--no-commit", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 1 and report["freed_bytes"] > 10_000 and len(report["orphans_deleted"]) == 1
    for option in (["--repack-below", "0.3"], ["--purge-deleted-older-than", "1d"]):
        assert main(["--repo", str(store_dir), "gc", "--no-commit", *option]) == 2
        assert "--no-commit takes only --grace and --dry-run" in capsys.readouterr().err
