"""A damaged catalog index (file or write-ahead log) is set aside and rebuilt from the log, never refused.

The index is derived: the log in the object store is the truth, and every answer below
is compared with a fold of the log from scratch. Saves and loads never open the index,
so they work whatever state it is in.

DuckDB 2.0 behaviour these tests pin down, measured: a WAL damaged in its body fails to
replay with an error; a WAL damaged in its first bytes is skipped *silently* and
survives a checkpoint (``Catalog._absorb_wal`` turns both into a rebuild); a WAL
truncated to zero bytes cannot be told from an empty one — but the index records the
log position it folded up to in the same transaction as the rows, so losing the rows
loses the position too, and the next catch-up folds those commits again.
"""

from __future__ import annotations

import logging
import random
import shutil
import signal

import duckdb
import pytest

from cas_repo import CatalogCorruptError, ModelStore
from cas_repo.errors import QueryError
from cas_repo.objects import LocalBackend, ObjectStore

from .consistency import check_store, fold_from_scratch
from .harness import run_worker
from .workers import fingerprint, metadata, payload

SIZE = 30_000
SET_ASIDE = "moved aside and is rebuilt"


@pytest.fixture(autouse=True)
def _warnings(caplog):
    caplog.set_level(logging.WARNING, logger="cas_repo")


def truth(root) -> dict[str, list[tuple[int, str]]]:
    """Every model's (version, manifest digest), from a fold of the log from scratch."""
    objects = ObjectStore(LocalBackend(root / "objects", fsync=False))
    st, problems = fold_from_scratch(objects)
    assert problems == []
    return {m: [(n, ref.manifest) for n, ref in enumerate(e.versions, 1)] for m, e in st.models.items()}


def answers(store: ModelStore) -> dict[str, list[tuple[int, str]]]:
    """The same, as the index answers it (history, then SQL, which must agree)."""
    rows = store.sql("SELECT model_id, version, digest FROM v_versions ORDER BY model_id, version").to_pylist()
    by_sql: dict[str, list[tuple[int, str]]] = {}
    for r in rows:
        by_sql.setdefault(r["model_id"], []).append((r["version"], r["digest"]))
    by_history = {m: [(md.version, md.digest) for md in store.history(m)] for m in by_sql}
    assert by_history == by_sql
    return by_sql


def _set_aside(index) -> list[str]:
    return sorted(p.name for p in index.parent.iterdir() if ".damaged-" in p.name)


@pytest.fixture
def with_wal(tmp_path):
    """m@1 indexed and checkpointed; m@2–4 committed to the log and folded into the index by a
    process killed inside its session (so those rows live only in the index's WAL)."""
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        store.save_model(payload(1, SIZE), metadata("m"))
        store.history("m")
        for seed in (2, 3, 4):
            store.save_model(payload(seed, SIZE), metadata("m"))
        index = store.catalog.path
    proc = run_worker("index-and-die", root)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    wal = index.with_name(index.name + ".wal")
    assert wal.stat().st_size > 1000
    return root, index, wal


def test_intact_wal_left_by_a_killed_session_is_replayed(with_wal, caplog):
    root, index, wal = with_wal
    with ModelStore(root) as store:
        assert answers(store) == truth(root)
    assert not wal.exists() and _set_aside(index) == []
    assert SET_ASIDE not in caplog.text
    assert check_store(root, full=True).clean


@pytest.mark.parametrize("damage", ["truncate-8", "truncate-50", "flip-0", "flip-4", "truncate-half",
                                    "truncate-last-byte", "flip-middle"])
def test_damaged_wal_is_set_aside_with_a_warning_and_the_index_rebuilt(with_wal, caplog, damage):
    # Mechanism: Catalog._absorb_wal / Catalog._set_aside. Without them a WAL damaged in its
    # first bytes is dropped silently (and m@2-4 would be missing from the answers below,
    # were it not for the log position recorded with the rows), and one damaged in its body
    # makes DuckDB refuse the file.
    root, index, wal = with_wal
    data = bytearray(wal.read_bytes())
    kind, _, where = damage.partition("-")
    if kind == "truncate":
        data = data[: {"8": 8, "50": 50, "half": len(data) // 2, "last": len(data) - 1}[where.split("-")[0]]]
    else:
        data[{"0": 0, "4": 4, "middle": len(data) // 2}[where]] ^= 0xFF
    wal.write_bytes(bytes(data))

    with ModelStore(root) as store:
        # Loads never open the index: the damage is not even looked at yet.
        assert fingerprint(store.load_model("m")[0]) == fingerprint(payload(4, SIZE))
        assert wal.read_bytes() == bytes(data)
        assert answers(store) == truth(root)
    assert SET_ASIDE in caplog.text
    kept = _set_aside(index)  # the damaged file and its WAL, kept for inspection
    assert any(n.startswith(wal.name + ".damaged-") for n in kept)
    assert (index.parent / next(n for n in kept if n.startswith(wal.name))).read_bytes() == bytes(data)
    assert check_store(root, full=True).clean


def test_wal_truncated_to_zero_loses_the_rows_and_their_log_position_together(with_wal, caplog):
    """The first release's documented limit ("silently absent versions") is gone: the
    index is simply behind the log, and the catch-up folds commits 2-4 again."""
    # Mechanism: feed.fold writes the rows and log_index.position in one transaction.
    root, index, wal = with_wal
    wal.write_bytes(b"")
    con = duckdb.connect(str(index), read_only=True)
    try:
        (position,), = con.execute("SELECT position FROM log_index").fetchall()
        (rows,), = con.execute("SELECT count(*) FROM versions").fetchall()
    finally:
        con.close()
    assert (position, rows) == (1, 1)  # what the WAL held is gone, its position with it
    with ModelStore(root) as store:
        assert answers(store) == truth(root) and len(truth(root)["m"]) == 4
    assert SET_ASIDE not in caplog.text  # nothing to detect: it was only behind
    assert check_store(root, full=True).clean


def test_wal_cut_at_any_length_gives_the_logs_answers(with_wal, caplog):
    """A kill mid-way through DuckDB's WAL write leaves a prefix of it: at every cut, the
    index replays what it can and catches up the rest, or is set aside and rebuilt."""
    root, index, wal = with_wal
    pristine_index, pristine_wal = index.read_bytes(), wal.read_bytes()
    expected = truth(root)
    rebuilt = 0
    for cut in range(0, len(pristine_wal) + 1, 509):
        for p in index.parent.iterdir():
            if ".damaged-" in p.name:
                p.unlink()
        index.write_bytes(pristine_index)
        wal.write_bytes(pristine_wal[:cut])
        caplog.clear()
        with ModelStore(root) as store:
            assert answers(store) == expected, cut
        rebuilt += SET_ASIDE in caplog.text
    assert rebuilt > 0


@pytest.mark.parametrize("damage", ["empty", "truncate-100", "truncate-4096", "truncate-half", "garbage",
                                    "flip-header"])
def test_damaged_index_file_is_set_aside_with_a_warning_and_rebuilt(tmp_path, caplog, damage):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        for seed in (1, 2, 3):
            store.save_model(payload(seed, SIZE), metadata("m"))
        store.history("m")
        index = store.catalog.path
    data = bytearray(index.read_bytes())
    if damage == "empty":
        data = bytearray()
    elif damage.startswith("truncate"):
        data = data[: len(data) // 2 if damage.endswith("half") else int(damage.split("-")[1])]
    elif damage == "garbage":
        data = bytearray(random.Random(0).randbytes(len(data)))
    else:
        data[200] ^= 0xFF
    index.write_bytes(bytes(data))
    with ModelStore(root) as store:
        store.save_model(payload(4, SIZE), metadata("m"))  # the save path never opens the index
        assert answers(store) == truth(root)
    assert SET_ASIDE in caplog.text
    kept = _set_aside(index)
    assert len(kept) == 1 and kept[0].startswith(index.name + ".damaged-")
    assert check_store(root, full=True).clean


@pytest.mark.parametrize("what", ["file", "folder"])
def test_missing_index_is_rebuilt_from_the_log(tmp_path, what):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        for seed in (1, 2):
            store.save_model(payload(seed, SIZE), metadata("m"))
        store.history("m")
        index = store.catalog.path
    if what == "file":
        index.unlink()
    else:
        shutil.rmtree(index.parent)
    with ModelStore(root) as store:
        store.save_model(payload(3, SIZE), metadata("m"))
        assert answers(store) == truth(root) and len(truth(root)["m"]) == 3
    assert index.exists()
    assert check_store(root).clean


def _answers_retrying_once(store: ModelStore) -> tuple[dict, bool]:
    """:func:`answers`, allowing one CatalogCorruptError/QueryError: damage that DuckDB finds
    only when a query reads the block sets the index aside and says so, and the next call
    rebuilds it. Returns the answers and whether that happened."""
    try:
        return answers(store), False
    except (CatalogCorruptError, QueryError) as exc:
        assert "set aside" in str(exc) and "retry" in str(exc), exc
        return answers(store), True


def test_byte_flips_anywhere_in_the_index_never_give_wrong_answers(tmp_path, caplog):
    """Each flip: the right answers — the byte was free, or the index was set aside and
    rebuilt (at once when found while catching up, at the next call when found by the
    caller's query) — and loads never notice (they do not read the index)."""
    # Mechanism: Catalog._set_aside, on damage found at open, while catching up, or mid-query.
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        for i in range(1, 6):
            store.save_model(payload(i, SIZE), metadata(f"m{i % 2}", IC=i / 10))
        store.history("m0")
        index = store.catalog.path
    expected = truth(root)
    pristine = index.read_bytes()
    outcomes = {"intact": 0, "rebuilt": 0, "retried": 0}
    for pos in random.Random(1).sample(range(len(pristine)), 25):
        for p in index.parent.iterdir():
            if ".damaged-" in p.name or p.name.endswith(".wal"):
                p.unlink()
        data = bytearray(pristine)
        data[pos] ^= 0x5A
        index.write_bytes(bytes(data))
        caplog.clear()
        with ModelStore(root) as store:
            assert fingerprint(store.load_model("m0")[0]) == fingerprint(payload(4, SIZE))
            assert {md.model_id: md.version for md in store.list_models()} == {"m0": 2, "m1": 3}
            got, retried = _answers_retrying_once(store)
        assert got == expected, f"flip at {pos} changed an answer"
        outcomes["retried" if retried else "rebuilt" if SET_ASIDE in caplog.text else "intact"] += 1
    assert outcomes["rebuilt"] + outcomes["retried"] > 0


def test_index_damage_found_by_a_query_is_set_aside_and_rebuilt_at_the_next_call(tmp_path, caplog):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        for i in range(1, 6):
            store.save_model(payload(i, SIZE), metadata(f"m{i % 2}"))
        store.history("m0")
        index = store.catalog.path
    data = bytearray(index.read_bytes())
    data[len(data) // 2:] = bytes(len(data) - len(data) // 2)  # every block past the middle
    index.write_bytes(bytes(data))
    with ModelStore(root) as store:
        got, _ = _answers_retrying_once(store)
        assert got == truth(root)
    assert SET_ASIDE in caplog.text and _set_aside(index)
