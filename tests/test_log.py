"""The log protocol: lost races, gc's forget racing a save, checkpoints, refused operations."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from datetime import UTC, datetime

import numpy as np
import pytest

from cas_repo import ModelStore
from cas_repo.log.commit import Commit
from cas_repo.log.ops import ForgetPacks
from cas_repo.objects.keys import checkpoint_key, pack_key
from cas_repo.objects.local import LocalBackend


def _two(tmp_path):
    root = tmp_path / "cas"
    return (ModelStore(root, catalog=tmp_path / "a.duckdb"), ModelStore(root, catalog=tmp_path / "b.duckdb"))


def _interpose(store: ModelStore, before_first_create) -> list[int]:
    """Run ``before_first_create`` just before ``store``'s first commit is created, i.e.
    after it built its operation on the state it had: another writer takes the position."""
    real = store.ledger.log.create
    calls: list[int] = []

    def create(position, data):
        calls.append(position)
        if len(calls) == 1:
            before_first_create()
        return real(position, data)

    store.ledger.log.create = create
    return calls


def test_a_writer_that_loses_the_race_folds_the_winner_in_and_takes_the_next_version(tmp_path, make_md):
    a, b = _two(tmp_path)
    with a, b:
        a.save_model({"v": 0}, make_md("m"))
        b.get_model_metadata("m")  # b has seen version 1
        calls = _interpose(b, lambda: a.save_model({"v": "a"}, make_md("m")))
        md = make_md("m")
        b.save_model({"v": "b"}, md)
        assert calls == [2, 3]  # lost position 2 to a, won 3
        assert md.version == 3
        for s in (a, b):
            assert [(h.version, s.load_model("m", h.version)[0]["v"]) for h in s.history("m")] == \
                [(1, 0), (2, "a"), (3, "b")]


def test_a_save_whose_new_pack_gc_forgot_meanwhile_stores_its_entries_again(tmp_path, make_md):
    a, b = _two(tmp_path)
    model = {"w": np.random.default_rng(1).standard_normal(50_000)}
    with a, b:
        a.save_model(1, make_md("other"))
        written: list = []
        real_write = b.objects.write

        def write(entries):
            locs = real_write(entries)
            written.extend(locs)
            return locs

        b.objects.write = write

        def gc_on_a():
            # As gc on another machine would: the pack is unreferenced (its save has not
            # committed), so it is forgotten in the log, then deleted.
            pack = written[0].pack
            a.ledger.commit(lambda st: [ForgetPacks((pack.hex,), datetime.now(UTC))])
            a.objects.backend.delete(pack_key(pack))

        _interpose(b, gc_on_a)
        b.save_model(model, make_md("m"))
        assert len({l.pack for l in written}) == 2  # the forgotten pack, then its replacement
        for s in (a, b):
            assert s.load_model("m")[0]["w"].tobytes() == model["w"].tobytes()


def test_a_new_process_starts_from_the_latest_checkpoint(tmp_path, make_md):
    root = tmp_path / "cas"
    with ModelStore(root) as s:
        for i in range(5):
            s.save_model({"i": i}, make_md(f"m{i}"))
        assert s.checkpoint() == 5
        s.save_model({"i": 5}, make_md("m5"))
    with ModelStore(root) as s:
        assert s.ledger._start().position == 5  # what it folds from, before the tail
        assert sorted(m.model_id for m in s.list_models()) == [f"m{i}" for i in range(6)]
        assert s.load_model("m2")[0] == {"i": 2}


def test_only_the_newest_checkpoints_are_kept(tmp_path, make_md):
    from cas_repo.log.ledger import CHECKPOINTS_KEPT

    with ModelStore(tmp_path / "cas") as s:
        for i in range(CHECKPOINTS_KEPT + 2):
            s.save_model({"i": i}, make_md("m"))
            s.checkpoint()
        assert s.ledger.log.checkpoints() == list(range(3, CHECKPOINTS_KEPT + 3))
    with ModelStore(tmp_path / "cas") as s:
        assert s.ledger._start().position == CHECKPOINTS_KEPT + 2
        assert s.load_model("m")[0] == {"i": CHECKPOINTS_KEPT + 1}


def test_a_damaged_checkpoint_is_skipped_with_a_warning_and_the_log_replayed(tmp_path, make_md, caplog):
    root = tmp_path / "cas"
    with ModelStore(root) as s:
        s.save_model({"i": 1}, make_md("m"))
        s.checkpoint()
    path = root / "objects" / checkpoint_key(1)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-10])
    with caplog.at_level(logging.WARNING), ModelStore(root) as s:
        assert s.load_model("m")[0] == {"i": 1}
    assert "checkpoint 1" in caplog.text and "unusable" in caplog.text


def test_a_checkpoint_that_cannot_be_read_is_skipped_and_the_log_replayed(tmp_path, make_md, caplog,
                                                                          monkeypatch):
    root = tmp_path / "cas"
    with ModelStore(root) as s:
        s.save_model({"i": 1}, make_md("m"))
        s.checkpoint()
        s.save_model({"i": 2}, make_md("m"))
    real_read = os.read

    def failing_read(fd, n):  # EIO from the disk under the checkpoint file only
        if "/checkpoints/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", failing_read)
    with caplog.at_level(logging.WARNING), ModelStore(root) as s:
        assert s.load_model("m")[0] == {"i": 2} and s.load_model("m", 1)[0] == {"i": 1}
    assert "checkpoint 1" in caplog.text and "unusable" in caplog.text


def test_an_index_ahead_of_the_log_says_the_newest_commits_are_gone(tmp_path, make_md, caplog):
    root = tmp_path / "cas"
    with ModelStore(root) as s:
        for i in range(3):
            s.save_model({"i": i}, make_md("m"))
        assert len(s.history("m")) == 3  # the index has folded commit 3
    (root / "objects" / "log" / "3".rjust(20, "0")).unlink()
    with caplog.at_level(logging.WARNING), ModelStore(root) as s:
        assert [md.version for md in s.history("m")] == [1, 2]
    assert "ends at commit 2" in caplog.text and "folded commit 3" in caplog.text


def test_an_operation_the_fold_refuses_is_skipped_alike_by_every_reader(tmp_path, make_md):
    root = tmp_path / "cas"
    with ModelStore(root) as s:
        s.save_model({"v": 1}, make_md("m"))
        good = s.ledger.log.read(1).ops[0]
        # A hand-made commit claiming version 5 of "m": not the next version, so refused.
        bad = dataclasses.replace(good, version=5, seq=5)
        with s.ledger.current() as st:
            prev = st.chain
        assert s.ledger.log.create(2, s.ledger.log.encode(Commit("someone", (bad,), 2, prev=prev)))
        s.save_model({"v": 2}, make_md("m"))
        assert [h.version for h in s.history("m")] == [1, 2]
        assert s.ledger._state.refused == [(2, 0)]
    with ModelStore(root, catalog=tmp_path / "fresh.duckdb") as fresh:
        assert [h.version for h in fresh.history("m")] == [1, 2]
        assert fresh.load_model("m")[0] == {"v": 2}


@pytest.mark.parametrize("garbage", [b"", b"{", b'{"format": "cas-repo/commit/9", "writer": "x", "ops": []}'])
def test_an_unreadable_commit_stops_reads_with_an_integrity_error(tmp_path, make_md, garbage):
    from cas_repo.errors import IntegrityError

    root = tmp_path / "cas"
    with ModelStore(root) as s:
        s.save_model(1, make_md("m"))
        s.ledger.log.backend.create("log/00000000000000000002", garbage)
    with ModelStore(root) as s, pytest.raises(IntegrityError, match="log commit 2"):
        s.load_model("m")


def test_a_start_up_that_replays_a_long_log_leaves_a_checkpoint(tmp_path, make_md, monkeypatch):
    from cas_repo.log import ledger

    monkeypatch.setattr(ledger, "CHECKPOINT_EVERY", 5)
    root = tmp_path / "cas"
    with ModelStore(root) as s:
        for i in range(7):
            s.save_model(i, make_md("m"))
        assert s.ledger.log.checkpoints() == [5]  # the writer of commit 5 left one
        s.ledger.log.delete_checkpoint(5)  # as if it were damaged, or from before the chain
    with ModelStore(root) as s:
        assert s.get_model_metadata("m").version == 7  # replayed 7 commits: one is left behind
        assert s.ledger.log.checkpoints() == [7]
    with ModelStore(root) as s:
        s.ledger.log.delete_checkpoint(7)
        s.save_model(7, make_md("m"))  # commit 8 folded by a warm process: no checkpoint
        assert s.ledger.log.checkpoints() == [7]  # (written by the start-up of this process)


class _Overlapping(LocalBackend):
    """A folder read as an object store is: listed, then many GETs at once."""

    read_concurrency = 4


def test_reads_kept_in_flight_give_the_commits_one_at_a_time_reads_give(tmp_path, make_md, monkeypatch):
    from cas_repo.errors import LogDamagedError
    from cas_repo.log import log as log_module
    from cas_repo.log.log import Log
    from cas_repo.objects.keys import log_key

    monkeypatch.setattr(log_module, "_FETCH_AHEAD", 5)  # the window refills many times over
    with ModelStore(tmp_path / "cas") as store:
        for i in range(23):
            store.save_model(i, make_md(f"m{i % 3}"))
    objects = tmp_path / "cas" / "objects"
    one_by_one = [(p, c.digest, chain) for p, c, chain in Log(LocalBackend(objects)).after(0, None)]
    overlapped = Log(_Overlapping(objects))
    assert [(p, c.digest, chain) for p, c, chain in overlapped.after(0, None)] == one_by_one
    assert [p for p, _, _ in overlapped.after(17, one_by_one[16][2])] == list(range(18, 24))
    first = overlapped.after(0, None)
    assert next(first)[0] == 1
    first.close()  # a reader that stops early leaves no read behind to wait for

    # A damaged commit stops the read there, whatever was fetched past it.
    path = objects / log_key(12)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"position"', b'"pos1tion"'))
    seen = []
    with pytest.raises(LogDamagedError):
        for p, _, _ in overlapped.after(0, None):
            seen.append(p)
    assert seen == list(range(1, 12))
    path.unlink()  # and a missing one below others is damage, not the end of the log
    with pytest.raises(LogDamagedError, match="missing"):
        list(overlapped.after(0, None))


def test_decoding_a_checkpoint_leaves_the_garbage_collector_as_it_found_it(tmp_path, make_md, monkeypatch):
    import gc

    from cas_repo.errors import IntegrityError
    from cas_repo.log import checkpoint

    with ModelStore(tmp_path / "cas") as store:
        store.save_model(1, make_md("m"))
        with store.ledger.cached() as st:
            data = checkpoint.encode(st)
            monkeypatch.setattr(checkpoint, "CHECKPOINT_FORMAT", "cas-repo/checkpoint/unknown")
            unknown = checkpoint.encode(st)
            monkeypatch.undo()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            assert list(checkpoint.decode(data).models) == ["m"]
            assert gc.isenabled() is enabled
            with pytest.raises(IntegrityError, match="unknown checkpoint format"):
                checkpoint.decode(unknown)
            assert gc.isenabled() is enabled
    finally:
        gc.enable()
