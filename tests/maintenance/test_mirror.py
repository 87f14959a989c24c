"""mirror: a byte-identical replica of a store's log, checkpoints and packs, copied incrementally,
verified on arrival, refused when the mirror diverged or the source is damaged."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest

from cas_repo import IntegrityError, ModelStore
from cas_repo.cli import main
from cas_repo.errors import MirrorDivergedError, MirrorError
from cas_repo.maintenance import run_gc
from cas_repo.maintenance.mirror import mirror
from cas_repo.objects.keys import pack_key

from ..robustness.tamper import overwrite
from ..s3_server import fresh_url
from .conftest import pack_path
from .mirroring import md, model, opens_clean, store_contents


def _fill(root, n: int = 4, options=None, catalog=None) -> None:
    with ModelStore(root, backend_options=options, catalog=catalog) as s:
        for i in range(n):
            s.save_model(model(i), md(f"m{i % 2}"))
        s.log_metrics("m0", {"sharpe": 1.5})
        s.set_alias("m0", "prod", 1)


def test_a_first_and_then_incremental_runs_copy_exactly_what_the_mirror_lacks(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fill(src)
    first = mirror(src, dst)
    assert (first.full, first.start, first.end, first.commits, first.packs) == (True, 0, 6, 6, 4)
    assert store_contents(dst) == store_contents(src)

    with ModelStore(src) as s:
        s.save_model(model(10), md("m1"))  # new content: one pack, one commit
    one = mirror(src, dst)
    assert (one.full, one.start, one.end, one.commits, one.packs, one.checkpoints) == (False, 6, 7, 1, 1, 0)
    with ModelStore(src) as s:
        s.save_model(model(10), md("m1"))  # the same content again: a commit, no pack
        assert s.checkpoint() == 8
    again = mirror(src, dst)
    assert (again.commits, again.packs, again.checkpoints) == (1, 0, 1)
    assert mirror(src, dst).copied == 0
    assert store_contents(dst) == store_contents(src)
    with ModelStore(dst) as d:
        assert d.aliases("m0") == {"prod": 1}
        assert d.get_model_metadata("m0@2").metrics == {"IC": 0.05, "sharpe": 1.5}
        assert d.sql("select count(*) as n from v_versions").to_pylist() == [{"n": 6}]
    assert opens_clean(dst) == opens_clean(src, check=False)


def test_what_gc_frees_at_the_source_is_freed_at_the_mirror_and_old_checkpoints_go(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fill(src)
    with ModelStore(src) as s:
        s.checkpoint()
    mirror(src, dst)
    with ModelStore(src) as s:
        s.remove_alias("m0", "prod")
        s.delete_model("m0")
        report = run_gc(s, grace=timedelta(0), purge_older_than=timedelta(0))
        assert report.deleted and report.position
        s.checkpoint()
        s.set_tags("m1", {"stage": "prod"})
        s.checkpoint()  # a third one: the oldest is deleted at the source
    after = mirror(src, dst)
    assert after.packs_deleted == len(report.deleted) and after.checkpoints_deleted == 1
    assert store_contents(dst) == store_contents(src)
    assert opens_clean(dst) == opens_clean(src, check=False)


def test_a_mirror_someone_wrote_into_is_refused_and_left_alone(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fill(src)
    mirror(src, dst)
    with ModelStore(dst) as d:
        d.save_model(model(99), md("intruder"))
    with ModelStore(src) as s:
        s.save_model(model(5), md("m0"))
    before = store_contents(dst)
    with pytest.raises(MirrorDivergedError, match="holds log commit 7 which differs"):
        mirror(src, dst)
    assert main(["mirror", str(src), str(dst)]) == 1
    assert "a mirror takes no writes of its own" in capsys.readouterr().err
    assert store_contents(dst) == before


def test_a_pack_damaged_at_the_source_is_refused_on_arrival(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fill(src)
    with ModelStore(src) as s, s.ledger.current() as st:
        pack = sorted({loc.pack for loc in st.entries.values()})[0]
    path = pack_path(src, pack)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    overwrite(path, bytes(data))
    with pytest.raises(IntegrityError, match="does not hash to its name") as caught:
        mirror(src, dst)
    assert caught.value.expected == pack.hex
    assert not (dst / "objects" / pack_key(pack)).exists()
    assert not list((dst / "objects" / "log").glob("*"))  # no commit made it before its packs


def test_a_pack_missing_at_the_source_that_no_commit_forgot_is_damage(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fill(src)
    mirror(src, dst)
    with ModelStore(src) as s:
        s.save_model(model(7), md("m0"))
    mirrored = store_contents(dst)
    for key in [k for k in store_contents(src) if k.startswith("packs/") and k not in mirrored]:
        (src / "objects" / key).unlink()  # lost, with no gc commit forgetting it
    with pytest.raises(MirrorError, match="no later commit forgot it") as caught:
        mirror(src, dst)
    assert "cas-repo fsck" in str(caught.value)
    assert opens_clean(dst, check=False)  # still the consistent store it was
    assert store_contents(dst) == mirrored


def test_a_keyed_store_is_mirrored_under_its_key(tmp_path, monkeypatch):
    monkeypatch.setenv("CAS_REPO_KEY", "mirror-test-secret")
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fill(src, n=2)
    assert mirror(src, dst).commits == 4
    assert store_contents(dst) == store_contents(src)
    assert opens_clean(dst) == opens_clean(src, check=False)


@pytest.mark.parametrize("kinds", ["folder-s3", "s3-folder", "s3-s3"])
def test_mirrors_between_folders_and_seaweedfs(kinds, seaweed, tmp_path):
    where = {"folder": lambda name: (tmp_path / name, None), "s3": lambda name: (fresh_url(), seaweed.options())}
    (src, src_opts), (dst, dst_opts) = (where[k](n) for k, n in zip(kinds.split("-"), ("src", "dst")))
    _fill(src, options=src_opts, catalog=tmp_path / "src.duckdb")
    first = mirror(src, dst, source_options=src_opts, target_options=dst_opts)
    assert (first.commits, first.packs) == (6, 4)
    with ModelStore(src, backend_options=src_opts, catalog=tmp_path / "src.duckdb") as s:
        s.save_model(model(13), md("m1"))
    one = mirror(src, dst, source_options=src_opts, target_options=dst_opts)
    assert (one.commits, one.packs) == (1, 1)
    assert store_contents(dst, dst_opts) == store_contents(src, src_opts)
    assert (opens_clean(dst, dst_opts, tmp_path / "dst.duckdb")
            == opens_clean(src, src_opts, tmp_path / "src.duckdb", check=False))


def test_follow_keeps_the_mirror_current_and_stops_cleanly_on_sigterm(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fill(src, n=2)
    proc = subprocess.Popen([sys.executable, "-m", "cas_repo.cli", "--json", "mirror", str(src), str(dst),
                             "--follow", "--interval", "0.05"], stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(proc.stdout.readline())["end"] == 4
        with ModelStore(src) as s:
            s.save_model(model(8), md("m0"))
        report = json.loads(proc.stdout.readline())  # the next run that copied something
        assert (report["start"], report["end"], report["commits"], report["packs"]) == (4, 5, 1, 1)
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert store_contents(dst) == store_contents(src)


def test_packs_gc_deleted_before_the_mirror_saw_them_are_copied_through_the_commit_that_forgot_them(
        tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fill(src)
    mirror(src, dst)
    with ModelStore(src) as s:
        for i in range(2):
            s.save_model(model(20 + i), md("doomed"))  # packs the mirror never sees
        shared, dropped = np.full(10_000, 1.0), np.full(10_000, 2.0)  # buffers: chunks of their own
        s.save_model({"a": shared, "b": dropped}, md("doomed"))
        s.save_model({"a": shared}, md("m1"))  # keeps part of doomed@3's pack alive
        s.delete_model("doomed")
        gc = run_gc(s, grace=timedelta(0), purge_older_than=timedelta(0), repack_below=0.99)
        assert len(gc.deleted) == 2 and len(gc.repacked) == 1
    monkeypatch.setattr("cas_repo.maintenance.mirror.BATCH", 2)  # the forgetting commit lies batches ahead
    after = mirror(src, dst)
    assert after.packs == 1 + len(gc.new_packs) and after.packs_deleted == 0  # m1's pack and the repack
    assert store_contents(dst) == store_contents(src)
    assert opens_clean(dst) == opens_clean(src, check=False)


def test_a_run_removes_the_temp_files_a_killed_run_left_and_keeps_a_live_writers(tmp_path):
    from cas_repo.objects.temps import origin, temp_name

    src, dst = tmp_path / "src", tmp_path / "dst"
    _fill(src)
    mirror(src, dst)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    folder = next((dst / "objects" / "packs").rglob("*")).parent
    left = folder / f".tmp-{origin()}-{dead.stdout.strip()}-0123456789ab"  # a killed run's half-written pack
    live = folder / temp_name()  # this process's: a write in progress
    left.write_bytes(b"partial")
    live.write_bytes(b"writing")
    mirror(src, dst)
    assert not left.exists() and live.exists()


def test_a_store_cannot_be_its_own_mirror(tmp_path):
    _fill(tmp_path / "src")
    with pytest.raises(MirrorError, match="are the same store"):
        mirror(tmp_path / "src", f"{tmp_path}/./src/")
