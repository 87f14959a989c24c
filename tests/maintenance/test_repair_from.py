"""fsck --repair-from: damaged and missing commits, checkpoints and packs put back from a copy
of the store, each only where it verifies here; damaged objects kept aside, never deleted."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cas_repo import LogDamagedError, ModelStore
from cas_repo.cli import main
from cas_repo.maintenance import fsck, fsck_store
from cas_repo.objects.keys import checkpoint_key, log_key

from ..robustness.tamper import overwrite, replace_object
from ..s3_server import fresh_url
from .conftest import pack_path


def _fill(root, make_md) -> dict[str, np.ndarray]:
    models = {}
    with ModelStore(root) as s:
        for i, name in enumerate(["a", "b", "a", "c", "b"]):
            models[f"{name}@{i}"] = np.full(3000, i, dtype=np.float64)
            s.save_model(models[f"{name}@{i}"], make_md(name))
        s.set_alias("a", "prod", 1)
        assert s.checkpoint() == 6
        s.save_model(np.arange(10.0), make_md("c"))
    return models


def _loads_everything(root) -> list[tuple[str, int]]:
    out = []
    with ModelStore(root) as s:
        for m in s.list_models():
            for md in s.history(m.model_id):
                s.load_model(m.model_id, version=md.version)
                out.append((m.model_id, md.version))
    return sorted(out)


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_a_store_damaged_everywhere_is_restored_from_a_copy(tmp_path, make_md, capsys):
    root, copy = tmp_path / "store", tmp_path / "copy"
    _fill(root, make_md)
    shutil.copytree(root, copy)
    expected = _loads_everything(copy)
    objects = root / "objects"
    with ModelStore(root) as s, s.ledger.current() as st:
        packs = sorted({loc.pack.hex for loc in st.entries.values()})
    flipped = bytearray((objects / log_key(2)).read_bytes())
    flipped[40] ^= 4
    overwrite(objects / log_key(2), bytes(flipped))      # a changed commit
    (objects / log_key(4)).unlink()                      # a missing middle commit
    (objects / log_key(7)).unlink()                      # the newest commit, cut off
    overwrite(objects / checkpoint_key(6), b"CASCKPT3 but not really")  # a damaged checkpoint
    pack_path(root, packs[0]).unlink()                   # a missing pack
    damaged = bytearray(pack_path(root, packs[1]).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    overwrite(pack_path(root, packs[1]), bytes(damaged))  # a damaged pack
    with ModelStore(root) as s, pytest.raises(LogDamagedError):
        s.list_models()

    code, out = _run(capsys, "--repo", str(root), "fsck", "--full", "--repair-from", str(copy))
    assert code == 0, out
    for key in (log_key(2), log_key(4), log_key(7), checkpoint_key(6)):
        assert f"restored from the copy: {key}" in out
    assert "set aside (damaged, kept): damaged/" in out and "not restored" not in out
    assert _loads_everything(root) == expected
    assert fsck_store(root, full=True).clean
    for key in (log_key(2), log_key(4), log_key(7), checkpoint_key(6)):
        assert (objects / key).read_bytes() == (copy / "objects" / key).read_bytes()
    assert pack_path(root, packs[1]).read_bytes() == pack_path(copy, packs[1]).read_bytes()
    aside = sorted(p.name for p in (objects / "damaged").rglob("*") if p.is_file())
    assert len(aside) == 3  # the changed commit, the damaged checkpoint and the damaged pack, kept


def test_a_copy_of_another_store_restores_nothing_and_says_why(tmp_path, make_md, capsys):
    root, other = tmp_path / "store", tmp_path / "other"
    _fill(root, make_md)
    _fill(other, make_md)  # the same saves made again: another history
    (root / "objects" / log_key(3)).unlink()
    code, out = _run(capsys, "--repo", str(root), "--json", "fsck", "--repair-from", str(other))
    report = json.loads(out)
    assert code == 1 and report["restored"] == [] and not report["clean"]
    assert report["unrestored"] == [f"{log_key(3)}: the copy's commit does not verify in this store (log commit 3 "
                                    f"({log_key(3)}) does not follow commit 2: its link to the commits before it "
                                    "does not match them, so an earlier commit was changed, removed or replaced, "
                                    "or commit 3 comes from another store. Nothing from it on is used: run `cas-repo "
                                    "fsck` and restore it from a copy of the store (`cas-repo fsck --repair-from "
                                    "COPY`))"]
    assert not (root / "objects" / log_key(3)).exists()


def test_repair_from_a_folder_that_is_no_store_is_refused(tmp_path, make_md, capsys):
    root = tmp_path / "store"
    _fill(root, make_md)
    code = main(["--repo", str(root), "fsck", "--repair-from", str(tmp_path / "nowhere")])
    assert code != 0 and "holds no store" in capsys.readouterr().err


def test_a_damaged_store_on_seaweedfs_is_restored_from_a_folder_copy(seaweed, tmp_path, make_md):
    url, copy = fresh_url(), tmp_path / "copy"
    _fill(copy, make_md)
    with ModelStore(url, catalog=tmp_path / "i.duckdb", backend_options=seaweed.options()) as s:
        src = ModelStore(copy).objects.backend
        for info in src.list(""):
            s.objects.backend.create(info.key, src.read(info.key))
        replace_object(s.objects.backend, log_key(5), b"{}")
        s.objects.backend.delete(log_key(3))
        assert not fsck(s).clean
    from cas_repo.maintenance.fsck import fsck_from, open_copy

    with ModelStore(url, catalog=tmp_path / "j.duckdb", backend_options=seaweed.options()) as s:
        report = fsck_from(s, open_copy(copy))
        assert report.clean and set(report.restored) == {log_key(3), log_key(5)}
        assert len(s.history("a")) == 2 and fsck(s, full=True).clean
