"""The log's own bytes attacked: every commit and checkpoint proves itself, the chain proves
the order, and damage is refused (naming its position) — never served, never a crash,
never a save lost past a gap or on a cut log. On a folder and on SeaweedFS."""

from __future__ import annotations

import getpass
import json
import logging

import pytest

from cas_repo import CommitOutcomeUnknownError, LogDamagedError, ModelStore
from cas_repo.canonical import canonical_json
from cas_repo.log import checkpoint
from cas_repo.log.commit import LEGACY_FORMAT, with_event_id
from cas_repo.log.ledger import Ledger
from cas_repo.log.ops import op_to_json
from cas_repo.log.state import StoreState
from cas_repo.maintenance import fsck
from cas_repo.objects.keys import checkpoint_key, log_key

from ..commits import body_of, framed
from ..s3_server import fresh_url
from .tamper import Tally, attack, fingerprint, overwrite, replace_object, small_store, targets
from .workers import metadata


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.ERROR, logger="cas_repo")  # every skipped checkpoint warns


class Folder:
    """A small store in a folder, and how to damage its objects."""

    def __init__(self, tmp_path):
        self.root = tmp_path / "store"
        self.url: str = str(self.root)
        self.options = None
        small_store(self.root)
        self.backend = self.open().objects.backend

    def open(self, **kw) -> ModelStore:
        return ModelStore(self.url, catalog=self.root.parent / f"i{id(kw)}-{len(kw)}.duckdb",
                          backend_options=self.options, **kw)

    def write(self, key: str, data: bytes) -> None:
        overwrite(self.root / "objects" / key, data)

    def remove(self, key: str) -> None:
        (self.root / "objects" / key).unlink()


class Seaweed(Folder):
    def __init__(self, seaweed, tmp_path):
        self.root = tmp_path / "seaweed"
        self.root.mkdir()
        self.url, self.options = fresh_url(), seaweed.options()
        small_store(self.url, self.options)
        self.backend = self.open().objects.backend

    def write(self, key: str, data: bytes) -> None:
        replace_object(self.backend, key, data)

    def remove(self, key: str) -> None:
        self.backend.delete(key)


@pytest.fixture(params=["folder", "seaweedfs"])
def small(request, tmp_path):
    if request.param == "folder":
        return Folder(tmp_path)
    return Seaweed(request.getfixturevalue("seaweed"), tmp_path)


# -- every bit, every length -------------------------------------------------------------------


# A save in the middle of the chain (commit 2), the alias move (3) and the checkpoint;
# commit 1, a save like 2, is attacked too by `python -m tests.robustness.tamper`.
@pytest.mark.parametrize("which", ["commit 2", "commit 3", "checkpoint"])
def test_every_bit_flip_and_truncation_on_a_folder(tmp_path, which):
    store = Folder(tmp_path)
    tally = Tally()
    chosen = ([t for t in targets(store.backend, "commits") if t[1] == which] if which.startswith("commit")
              else targets(store.backend, "checkpoint"))
    attack(store.backend, store.write, tally, chosen)
    assert tally.bad() == 0, tally.examples
    for case, counts in tally.counts.items():
        # A commit proves every byte of itself: each damage is refused at its position.
        # A damaged checkpoint is skipped and the log replayed: the same state.
        assert set(counts) == {"refused" if case.startswith("commit") else "replayed"}, (case, counts)
    trials = sum(sum(c.values()) for c in tally.counts.values())
    sizes = sum(len(store.backend.read(key)) for key, _, _ in chosen)
    assert trials == sizes * 9  # 8 flips and one truncation per byte


def test_one_flip_per_byte_and_every_truncation_on_seaweedfs(seaweed, tmp_path):
    store = Seaweed(seaweed, tmp_path)
    tally = Tally()
    # The alias move (the smallest commit): each byte flipped once (cycling through its 8
    # bits) and every truncation, over real S3 requests; `python -m tests.robustness.tamper
    # --s3` runs the same on every commit and a checkpoint.
    chosen = [t for t in targets(store.backend, "commits") if t[2] == 3]
    attack(store.backend, store.write, tally, chosen, every_bit=False)
    assert tally.bad() == 0, tally.examples
    assert {o for c in tally.counts.values() for o in c} == {"refused"}


# -- whole commits moved, replaced, removed -----------------------------------------------------


def test_a_commit_from_another_store_at_the_same_position_is_refused(small, tmp_path):
    twin = tmp_path / "twin"
    small_store(twin)  # the same operations in another store: other writers, other times
    small.write(log_key(2), (twin / "objects" / log_key(2)).read_bytes())
    with small.open() as s, pytest.raises(LogDamagedError, match=r"log commit 2 .*does not follow") as info:
        s.history("m")
    assert info.value.position == 2
    with small.open() as s:
        assert [(f.code, f.subject) for f in fsck(s).errors][:1] == [("log-chain", log_key(2))]


def test_a_changed_commit_with_a_recomputed_digest_is_caught_by_the_next_link(small):
    c = body_of(small.backend.read(log_key(1)))
    assert c["ops"][0]["metadata"]["metrics"]["IC"] == 0.0512
    c["ops"][0]["metadata"]["metrics"]["IC"] = 0.9512
    small.write(log_key(1), framed(c))  # self-consistent: only the chain can tell
    with small.open() as s, pytest.raises(LogDamagedError, match="log commit 2 ") as info:
        s.get_model_metadata("m@1")
    assert info.value.position == 2
    with small.open() as s:
        report = fsck(s)
        assert [(f.code, f.subject) for f in report.errors] == [("log-chain", log_key(2))]


def test_swapped_commits_are_refused(small):
    two, three = small.backend.read(log_key(2)), small.backend.read(log_key(3))
    small.write(log_key(2), three)
    small.write(log_key(3), two)
    with small.open() as s, pytest.raises(LogDamagedError, match="it says it is commit 3"):
        s.list_models()
    with small.open() as s:
        assert {f.code for f in fsck(s).errors} == {"log-unreadable"}


def test_a_removed_middle_commit_stops_readers_and_writers_and_nothing_fills_it(small):
    small.remove(log_key(2))
    with small.open() as s:
        with pytest.raises(LogDamagedError, match=r"log commit 2 .*is missing") as info:
            s.history("m")
        assert info.value.position == 2
        with pytest.raises(LogDamagedError, match="log commit 2 "):
            s.save_model({"w": 3}, metadata("m"))
        assert not small.backend.exists(log_key(2))  # not papered over
        [finding] = fsck(s).errors
        assert (finding.code, finding.subject) == ("log-gap", log_key(2))


def test_a_longer_gap_stops_a_writer_on_a_folder_too(tmp_path):
    store = Folder(tmp_path)
    with store.open() as s:
        s.save_model({"w": 3}, metadata("m"))
    store.remove(log_key(2))
    store.remove(log_key(3))  # commit 4 is two positions past the end a new reader finds
    with store.open() as s:
        with pytest.raises(LogDamagedError, match=r"log commit 2 .*up to 4"):
            s.save_model({"w": 4}, metadata("m"))
        assert not store.backend.exists(log_key(2))
        assert {f.code for f in fsck(s).errors} == {"log-gap"}


def test_a_cut_log_end_is_refused_by_a_process_that_read_it(small):
    with small.open() as warm:
        assert warm.get_model_metadata("m").version == 2
        small.remove(log_key(3))  # an operator deletes the newest commit, or puts back an older copy
        with pytest.raises(LogDamagedError, match=r"log commit 3 .*already read, is gone") as info:
            warm.save_model({"w": 3}, metadata("m"))
        assert info.value.position == 3
        assert not small.backend.exists(log_key(3)) and not small.backend.exists(log_key(4))
    with small.open() as fresh:  # a new process sees the shorter log as the whole log
        assert fresh.aliases("m") == {}
        fresh.save_model({"w": 3}, metadata("m"))
        assert fresh.get_model_metadata("m").version == 3


def test_a_checkpoint_past_the_log_never_moves_a_writer(small):
    with small.open() as s, s.ledger.current() as st:
        data = checkpoint.encode(st)
    st = checkpoint.decode(data)
    st.position = 7  # as a damaged (or forged) checkpoint might say
    small.write(checkpoint_key(7), checkpoint.encode(st))
    with small.open() as s:
        s.save_model({"w": 3}, metadata("m"))
        assert s.get_model_metadata("m").version == 3 and s.ledger.refresh() == 4
        assert not small.backend.exists(log_key(5))
        assert ("log-cut", checkpoint_key(7)) in [(f.code, f.subject) for f in fsck(s).errors]


def test_every_failure_to_read_a_checkpoint_is_skipped(small):
    expected = fingerprint(small.backend)
    position = Ledger(small.backend).write_checkpoint()
    good = small.backend.read(checkpoint_key(position))
    empty = checkpoint.encode(StoreState())
    for bad in (b"", b"CASCKPT3", good[:-1], good + b"x", empty, b"CASCKPT1" + good[8:], bytes(len(good))):
        small.write(checkpoint_key(position), bad)
        assert fingerprint(small.backend) == expected


# -- old stores ----------------------------------------------------------------------------------


def _as_format_1(store: Folder, positions: range) -> None:
    """Rewrite commits as a cas-repo from before the chain wrote them."""
    for p in positions:
        with store.open() as s:
            commit = s.ledger.log.read(p)
        store.write(log_key(p), canonical_json({"format": LEGACY_FORMAT, "position": p, "writer": commit.writer,
                                                "ops": [with_event_id(op_to_json(o)) for o in commit.ops]}))


def test_an_old_store_reads_as_before_and_its_first_new_commit_anchors_the_chain(tmp_path):
    store = Folder(tmp_path)
    expected_history = None
    with store.open() as s:
        expected_history = [(m.version, m.metrics) for m in s.history("m")]
    _as_format_1(store, range(1, 4))
    with store.open() as s:
        assert [(m.version, m.metrics) for m in s.history("m")] == expected_history
        assert s.aliases("m") == {"prod": 1}
        assert fsck(s).clean
        s.save_model({"w": 3}, metadata("m"))  # no upgrade step: the next commit is format 2
    assert "prev" in body_of(store.backend.read(log_key(4)))
    # Every old commit is now bound by commit 4's link: a changed byte in one is refused.
    old = bytearray(store.backend.read(log_key(1)))
    old[old.index(b'"writer":"') + 10] ^= 1  # a byte no operation digest covers
    store.write(log_key(1), bytes(old))
    with store.open() as s, pytest.raises(LogDamagedError, match="log commit 4 ") as info:
        s.list_models()
    assert info.value.position == 4


def test_an_operation_changed_in_an_old_commit_is_refused_by_its_own_digest(tmp_path):
    store = Folder(tmp_path)
    _as_format_1(store, range(1, 4))
    c = json.loads(store.backend.read(log_key(2)))
    c["ops"][0]["metadata"]["metrics"]["IC"] = 0.9734
    store.write(log_key(2), canonical_json(c))
    with store.open() as s, pytest.raises(LogDamagedError, match="does not match its recorded digest"):
        s.history("m")


# -- answers lost ----------------------------------------------------------------------------------


def test_a_commit_whose_answer_is_lost_confirms_itself_by_reading_back(seaweed, tmp_path, monkeypatch):
    from ..objects.faulty_proxy import FaultyProxy

    proxy = FaultyProxy(seaweed.endpoint)
    url = fresh_url()
    try:
        options = seaweed.options(endpoint_override=proxy.endpoint, max_attempts=3)
        with ModelStore(url, catalog=tmp_path / "a.duckdb", backend_options=options) as s:
            s.save_model({"w": 1}, metadata("m"))
            real = s.ledger.log.create

            def lossy(position, data):
                # The PUT lands and its answer is lost; the retry gets 412; the GET that
                # would confirm it fails; then the store answers again.
                proxy.drop_next_answer()
                proxy.refuse_next(1)  # the 412's confirming GET... or the retry itself
                proxy.refuse_next(1)
                return real(position, data)

            monkeypatch.setattr(s.ledger.log, "create", lossy)
            s.save_model({"w": 2}, metadata("m"))
            monkeypatch.undo()
            assert [m.version for m in s.history("m")] == [1, 2]

            def unreachable(position, data):
                proxy.drop_next_answer()
                proxy.refuse_next(10_000)  # the store stays unreachable for longer than a writer waits
                return real(position, data)

            monkeypatch.setattr("cas_repo.log.ledger.CONFIRM_SECONDS", 1.0)
            monkeypatch.setattr(s.ledger.log, "create", unreachable)
            with pytest.raises(CommitOutcomeUnknownError, match=r"may be recorded: check `cas-repo log m` before "
                               r"retrying") as info:
                s.save_model({"w": 3}, metadata("m"))
            assert info.value.position == 3
            proxy.heal()
        with ModelStore(url, catalog=tmp_path / "b.duckdb", backend_options=seaweed.options()) as fresh:
            assert [m.version for m in fresh.history("m")] == [1, 2, 3]  # it was recorded, once
    finally:
        proxy.close()


def test_every_new_commit_names_its_author_and_older_ones_read_as_unknown(tmp_path, monkeypatch):
    store = Folder(tmp_path)
    _as_format_1(store, range(1, 4))
    monkeypatch.setenv("CAS_REPO_USER", "ana")
    with store.open() as s:
        s.save_model({"w": 3}, metadata("m"))
        assert s.ledger.log.read(1).author is None  # written before authors were recorded
        assert s.ledger.log.read(4).author == "ana"
    monkeypatch.delenv("CAS_REPO_USER")
    with store.open() as s:
        s.set_alias("m", "prod", 3)
        assert s.ledger.log.read(5).author == getpass.getuser()  # the OS user otherwise
