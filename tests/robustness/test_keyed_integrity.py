"""Keyed integrity: without the key, writing the object folder (and the index) cannot substitute a model.

With a key every log commit and checkpoint carries a MAC over its canonical bytes; a
commit whose seal does not verify is refused when read, naming its position, and a
checkpoint whose seal does not verify is skipped (the log is replayed instead). Each
attack is first shown to work on an unkeyed store (the control), then refused by the
same store opened with its key.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil

import pytest

from cas_repo import IntegrityError, ModelStore, StoreError
from cas_repo.log import checkpoint
from cas_repo.sealing import KEY_ENV, StoreKey

from ..commits import body_of, framed
from .consistency import check_store
from .workers import metadata

KEY = "k" * 32
OTHER_KEY = "o" * 32
GOOD = {"weights": "good"}
EVIL = {"weights": "EVIL"}


def _commit_path(root, position: int):
    return root / "objects" / "log" / f"{position:020d}"


def _overwrite(path, data: bytes) -> None:
    """What an attacker with write access to the folder does (the files are read-only)."""
    if path.exists():
        os.chmod(path, 0o644)
    path.write_bytes(data)


def _commit(root, position: int) -> dict:
    return body_of(_commit_path(root, position).read_bytes())


@pytest.fixture
def victim(tmp_path):
    """Keyed: m@1 (commit 1), other@1 (commit 2), m@2 (commit 3)."""
    root = tmp_path / "victim"
    with ModelStore(root, key=KEY) as store:
        store.save_model(GOOD, metadata("m", IC=0.05))
        store.save_model({"weights": "other"}, metadata("other", IC=0.07))
        store.save_model({"weights": "good2"}, metadata("m", IC=0.06))
    return root


def _copy_packs(src_root, dst_root) -> None:
    for pack in (src_root / "objects" / "packs").rglob("*"):
        if pack.is_file():
            dest = dst_root / "objects" / pack.relative_to(src_root / "objects")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copy(pack, dest)


def _refused_at(root, position: int, match: str) -> IntegrityError:
    with ModelStore(root, key=KEY) as keyed:
        with pytest.raises(IntegrityError, match=match) as info:
            keyed.load_model("m")
        assert f"log commit {position} " in str(info.value)
        with pytest.raises(IntegrityError, match=f"log commit {position} "):
            keyed.list_models()  # every read folds the log, so every read refuses
    return info.value


def test_commit_altered_in_the_log_is_refused_naming_its_position(victim):
    # Mechanism: Log.decode checks each commit's seal before a single operation is used.
    c = _commit(victim, 3)
    c["ops"][0]["metadata"]["metrics"]["IC"] = 0.99  # the mac is kept, the content changed
    _overwrite(_commit_path(victim, 3), framed(c))  # with a digest line that matches the change
    with ModelStore(victim) as unkeyed:  # the control: without a key the edit goes through
        assert unkeyed.get_model_metadata("m").metrics["IC"] == 0.99
    err = _refused_at(victim, 3, "another key, or was forged")
    assert err.expected != err.actual


@pytest.mark.parametrize("attacker_key", [None, OTHER_KEY], ids=["unkeyed-attacker", "own-key-attacker"])
def test_substituted_commit_is_refused_with_the_key(victim, tmp_path, attacker_key):
    """The attacker builds a store of their own where m@1 is their model, copies their
    packs in and puts their commit 1 in place of the victim's. Unkeyed, the chain catches
    it at commit 2 (which links to the victim's commit 1); keyed, commit 1 is refused."""
    attacker = tmp_path / "attacker"
    with ModelStore(attacker, key=attacker_key) as store:
        store.save_model(EVIL, metadata("m", IC=0.05))
    _copy_packs(attacker, victim)
    _overwrite(_commit_path(victim, 1), _commit_path(attacker, 1).read_bytes())
    with ModelStore(victim) as unkeyed, pytest.raises(IntegrityError, match=r"log commit 2 .*does not follow"):
        unkeyed.load_model("m", version=1)
    _refused_at(victim, 1, "no seal" if attacker_key is None else "another key")


@pytest.mark.parametrize("attacker_key", [None, OTHER_KEY], ids=["unsealed", "other-key"])
def test_commit_appended_without_the_key_is_refused(victim, tmp_path, attacker_key):
    """The next position is free for anyone who can write the folder: a save made there
    without the key (an attacker, or a process that simply lacks CAS_REPO_KEY) is refused
    by every keyed reader, from that position on."""
    with ModelStore(victim) as intruder:  # reading needs no key: the commits are plain JSON
        intruder.save_model(EVIL, metadata("m"))
    if attacker_key:
        path = _commit_path(victim, 4)
        _overwrite(path, framed(body_of(path.read_bytes()), attacker_key))
    with ModelStore(victim) as unkeyed:  # the control
        assert unkeyed.load_model("m")[0] == EVIL
    err = _refused_at(victim, 4, "no seal" if attacker_key is None else "another key")
    if attacker_key is None:
        assert err.actual == "missing"
    with ModelStore(victim, key=KEY) as keyed, pytest.raises(IntegrityError, match="log commit 4 "):
        keyed.save_model(GOOD, metadata("m"))  # nor can a keyed writer build on it


def test_unsealed_commit_is_refused(victim):
    c = _commit(victim, 2)
    del c["mac"]
    _overwrite(_commit_path(victim, 2), framed(c))
    err = _refused_at(victim, 2, "no seal")
    assert err.actual == "missing"


@pytest.mark.parametrize("key", [None, KEY], ids=["unkeyed", "keyed"])
def test_commit_copied_to_another_position_is_refused(victim, key):
    """A validly sealed commit replayed over a later one (m@1's over m@2's) would hide
    m@2; a commit names its position, which the seal covers."""
    # Mechanism: Log.decode compares the position a commit names with the one it is read at.
    _overwrite(_commit_path(victim, 3), _commit_path(victim, 1).read_bytes())
    with ModelStore(victim, key=key) as store, pytest.raises(IntegrityError, match=r"log commit 3 .*commit 1"):
        store.load_model("m")


def _forge_checkpoint(root, position: int, key: str | None) -> bytes:
    """Commit ``position``'s checkpoint, rewritten so that m's head is other@1's content."""
    path = root / "objects" / "checkpoints" / f"{position:020d}"
    st = checkpoint.decode(path.read_bytes())  # read without checking the seal
    other, m = st.models["other"], st.models["m"]
    m.versions[-1].manifest = other.versions[0].manifest
    m.head_row = dataclasses.replace(m.head_row, manifest=other.head_row.manifest)
    return checkpoint.encode(st, StoreKey.from_secret(key) if key else None)


@pytest.mark.parametrize("forgery", ["unsealed", "other-key", "byte-flipped"])
def test_altered_checkpoint_is_skipped_with_a_warning_and_the_log_replayed(tmp_path, caplog, forgery):
    # Mechanism: Ledger._start decodes a checkpoint with the key and falls back to replaying
    # the log when its seal (or anything else) does not check out.
    caplog.set_level(logging.WARNING, logger="cas_repo")
    roots = {}
    for keyed in (False, True):
        root = roots[keyed] = tmp_path / ("keyed" if keyed else "plain")
        with ModelStore(root, key=KEY if keyed else None) as store:
            store.save_model(GOOD, metadata("m"))
            store.save_model({"weights": "other"}, metadata("other"))
            assert store.checkpoint() == 2
        path = root / "objects" / "checkpoints" / f"{2:020d}"
        if forgery == "byte-flipped":
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x01
            _overwrite(path, bytes(data))
        else:
            _overwrite(path, _forge_checkpoint(root, 2, OTHER_KEY if forgery == "other-key" else None))
    if forgery != "byte-flipped":
        with ModelStore(roots[False]) as unkeyed:  # the control: an unkeyed store trusts its checkpoint
            assert unkeyed.load_model("m")[0] == {"weights": "other"}
    caplog.clear()
    with ModelStore(roots[True], key=KEY) as keyed:
        assert keyed.load_model("m")[0] == GOOD
        assert keyed.load_model("other")[0] == {"weights": "other"}
    assert "checkpoint 2 " in caplog.text and "unusable" in caplog.text
    assert check_store(roots[True], key=KEY).clean


def test_tampered_pack_is_refused(victim):
    with ModelStore(victim, key=KEY) as store, store.ledger.current() as st:
        pack = st.entries[st.models["m"].versions[0].manifest].pack.hex
    path = victim / "objects" / "packs" / "blake3" / pack[:2] / pack[2:]
    data = bytearray(path.read_bytes())
    data[30] ^= 0xFF
    _overwrite(path, bytes(data))
    with ModelStore(victim, key=KEY) as keyed, pytest.raises(IntegrityError) as info:
        keyed.load_model("m", version=1)
    assert (info.value.model_id, info.value.version) == ("m", 1)


def test_index_edits_never_reach_a_load(victim):
    """The catalog index is a local cache for queries: a load reads the log, so pointing
    the index at another model's content changes no loaded byte (keyed or not)."""
    with ModelStore(victim, key=KEY) as store, store.catalog.session() as s:
        (other,) = s.con.execute("SELECT manifest FROM versions WHERE model_id = 'other'").fetchone()
        s.con.execute("UPDATE versions SET manifest = ? WHERE model_id = 'm'", [other])
        s.con.execute("UPDATE models SET head_manifest = ? WHERE model_id = 'm'", [other])
    for key in (None, KEY):
        with ModelStore(victim, key=key) as store:
            assert store.load_model("m")[0] == {"weights": "good2"}
            assert store.load_model("m", version=1)[0] == GOOD


def test_wrong_or_missing_key(victim, monkeypatch):
    with ModelStore(victim, key=OTHER_KEY) as wrong, pytest.raises(IntegrityError, match=r"log commit 1 .*another key"):
        wrong.load_model("m")
    with ModelStore(victim) as unkeyed:  # digests still verified; the seal is simply not checked
        assert unkeyed.load_model("m", version=1)[0] == GOOD
    monkeypatch.setenv(KEY_ENV, KEY)
    with ModelStore(victim) as keyed:  # key from the environment
        assert keyed.load_model("m", version=1)[0] == GOOD
        assert keyed.rollback("m", 1) == 3  # a rollback's commit is sealed too
    assert "mac" in _commit(victim, 4)
    with ModelStore(victim, key=KEY) as keyed:
        assert keyed.load_model("m")[0] == GOOD


def test_unkeyed_commits_carry_no_mac_and_keyed_ones_do(tmp_path):
    with ModelStore(tmp_path / "plain") as plain:
        plain.save_model(1, metadata("m"))
        plain.checkpoint()
    assert "mac" not in _commit(tmp_path / "plain", 1)
    with ModelStore(tmp_path / "keyed", key=KEY) as keyed:
        keyed.save_model(1, metadata("m"))
        keyed.delete_model("m")
        keyed.checkpoint()
    for position in (1, 2):
        c = _commit(tmp_path / "keyed", position)
        assert len(c["mac"]) == 64
    data = (tmp_path / "keyed" / "objects" / "checkpoints" / f"{2:020d}").read_bytes()
    checkpoint.decode(data, StoreKey.from_secret(KEY))  # sealed: verifies with the key
    with pytest.raises(IntegrityError):
        checkpoint.decode((tmp_path / "plain" / "objects" / "checkpoints" / f"{1:020d}").read_bytes(),
                          StoreKey.from_secret(KEY))


def test_key_configuration():
    with pytest.raises(StoreError, match="at least"):
        StoreKey.from_secret("short")
    key = StoreKey.from_secret(KEY)
    assert KEY not in repr(key) and key.mac_key.hex() not in repr(key)
    assert key.mac_key != KEY.encode()[:32]  # derived, never the secret itself
