"""A damaged catalog (file or write-ahead log) is refused with the recovery command, never used.

DuckDB 2.0 behaviour this relies on, measured: a WAL damaged in its body fails to
replay with an error; a WAL damaged in its first bytes is skipped *silently* (its
committed transactions vanish) and survives a checkpoint, which is how the catalog
detects it; a WAL truncated to zero bytes cannot be told from an empty one.
"""

from __future__ import annotations

import random
import shutil
import signal

import pytest

from cas_repo import CasRepoError, CatalogCorruptError, ModelStore
from cas_repo.catalog.catalog import CATALOG_FILE
from cas_repo.location import RECORD

from .consistency import check_store
from .harness import run_worker
from .workers import fingerprint, metadata, payload

SIZE = 30_000


def _store_with_wal(root):
    """m@1 checkpointed; m@2 committed by a process killed before it closed (so only in the WAL)."""
    with ModelStore(root) as store:
        store.save_model(payload(1, SIZE), metadata("m"))
    proc = run_worker("save", root, "m", SIZE, 2, crash_at="after-commit")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    wal = root / (CATALOG_FILE + ".wal")
    assert wal.stat().st_size > 100
    return wal


def _refused(root) -> CatalogCorruptError:
    with pytest.raises(CatalogCorruptError) as info:
        ModelStore(root)
    assert "cas-repo rebuild-catalog" in str(info.value)
    return info.value


def test_intact_wal_left_by_a_crash_is_replayed(tmp_path):
    root = tmp_path / "cas"
    wal = _store_with_wal(root)
    with ModelStore(root) as store:
        assert [md.version for md in store.history("m")] == [1, 2]
        assert fingerprint(store.load_model("m")[0]) == fingerprint(payload(2, SIZE))
    assert not wal.exists()  # folded into the file at once
    assert check_store(root, full=True).clean


@pytest.mark.parametrize("damage", ["truncate-8", "truncate-50", "flip-0", "flip-4",
                                    "truncate-half", "truncate-last-byte", "flip-middle"])
def test_damaged_wal_is_refused_and_kept(tmp_path, damage):
    root = tmp_path / "cas"
    wal = _store_with_wal(root)
    data = bytearray(wal.read_bytes())
    kind, _, where = damage.partition("-")
    if kind == "truncate":
        data = data[: {"8": 8, "50": 50, "half": len(data) // 2, "last": len(data) - 1}[where.split("-")[0]]]
    else:
        data[{"0": 0, "4": 4, "middle": len(data) // 2}[where]] ^= 0xFF
    wal.write_bytes(bytes(data))

    err = _refused(root)
    assert "wal" in str(err).lower()
    # Refused again on the next attempt: nothing was "repaired" by dropping the evidence.
    assert wal.read_bytes() == bytes(data)
    _refused(root)
    assert wal.read_bytes() == bytes(data)


def test_wal_truncated_to_zero_is_the_documented_limit(tmp_path):
    """Undetectable by the catalog; the lost version's record is still in the object store."""
    root = tmp_path / "cas"
    wal = _store_with_wal(root)
    wal.write_bytes(b"")
    with ModelStore(root) as store:
        assert [md.version for md in store.history("m")] == [1]
    report = check_store(root)
    assert report.clean and len(report.orphan_packs) == 1
    from cas_repo.digest import Digest
    from cas_repo.objects import LocalBackend, ObjectStore

    objects = ObjectStore(LocalBackend(root / "objects"))
    kinds = {l.kind for l in objects.pack_index(Digest.from_hex(report.orphan_packs[0]))}
    assert RECORD in kinds  # what a catalog rebuild replays to restore m@2


@pytest.mark.parametrize("damage", ["empty", "truncate-100", "truncate-4096", "garbage", "flip-header"])
def test_damaged_catalog_file_is_refused(tmp_path, damage):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, SIZE), metadata("m"))
    path = root / CATALOG_FILE
    data = bytearray(path.read_bytes())
    if damage == "empty":
        data = bytearray()
    elif damage.startswith("truncate"):
        data = data[: int(damage.split("-")[1])]
    elif damage == "garbage":
        data = bytearray(random.Random(0).randbytes(len(data)))
    else:
        data[200] ^= 0xFF
    path.write_bytes(bytes(data))
    _refused(root)


def test_missing_catalog_over_existing_packs_is_refused(tmp_path):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, SIZE), metadata("m"))
    (root / CATALOG_FILE).unlink()
    _refused(root)
    assert not (root / CATALOG_FILE).exists()  # no empty catalog was created in its place


def test_byte_flips_anywhere_in_the_catalog_never_give_wrong_answers(tmp_path):
    """Each flip: refused as corrupt, or every answer identical (the byte was in a free block)."""
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        for i in range(1, 6):
            store.save_model(payload(i, SIZE), metadata(f"m{i % 2}", IC=i / 10))
        expected = {m: [(md.version, md.digest, md.metrics) for md in store.history(m)] for m in ("m0", "m1")}
    path = root / CATALOG_FILE
    pristine = path.read_bytes()
    shutil.copy(path, tmp_path / "pristine.duckdb")
    outcomes = {"refused": 0, "intact": 0}
    for pos in random.Random(1).sample(range(len(pristine)), 25):
        data = bytearray(pristine)
        data[pos] ^= 0x5A
        path.write_bytes(bytes(data))
        try:
            with ModelStore(root) as store:
                got = {m: [(md.version, md.digest, md.metrics) for md in store.history(m)]
                       for m in ("m0", "m1")}
                model = store.load_model("m0")[0]
        except CatalogCorruptError as exc:
            assert "rebuild-catalog" in str(exc)
            outcomes["refused"] += 1
            continue
        except CasRepoError as exc:  # pragma: no cover - the failure this test exists to catch
            pytest.fail(f"flip at {pos} gave {type(exc).__name__}: {exc}")
        assert got == expected, f"flip at {pos} changed an answer"
        assert fingerprint(model) == fingerprint(payload(4, SIZE))
        outcomes["intact"] += 1
    assert outcomes["refused"] > 0
