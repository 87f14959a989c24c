"""Keyed integrity: without the key, writing the object folder and the catalog cannot substitute a model.

Each attack is first shown to work on an unkeyed store (the control), then refused by
the same store opened with its key.
"""

from __future__ import annotations

import json

import pytest

from cas_repo import IntegrityError, ModelStore, StoreError
from cas_repo.sealing import KEY_ENV, StoreKey

from .workers import metadata

KEY = "k" * 32
OTHER_KEY = "o" * 32


def _catalog_rows(store, sql, params=()):
    with store.catalog.session() as s:
        return s.con.execute(sql, list(params)).fetchall()


def _record_json(store, model_id, version):
    with store.catalog.session() as s:
        (rec,), = s.con.execute("SELECT record FROM versions WHERE model_id = ? AND version = ?",
                                [model_id, version]).fetchall()
        loc = s.present([rec])[rec]
    return json.loads(bytes(store.objects.read(loc)))


@pytest.fixture
def victim(tmp_path):
    root = tmp_path / "victim"
    with ModelStore(root, key=KEY) as store:
        store.save_model({"weights": "good"}, metadata("m", IC=0.05))
        store.save_model({"weights": "other"}, metadata("other", IC=0.07))
    return root


def _graft(victim_root, attacker_root, model_id="m", version=1):
    """Copy the attacker's packs in and point victim's m@1 at the attacker's manifest and record."""
    with ModelStore(attacker_root) as attacker:
        objs = _catalog_rows(attacker, 'SELECT digest, kind, pack, "offset", stored_size, size, codec FROM objects')
        chunks = _catalog_rows(attacker, "SELECT manifest, seq, chunk, size FROM manifest_chunks")
        packs = _catalog_rows(attacker, "SELECT pack, size, entries, created_at FROM packs")
        (manifest, record, meta), = _catalog_rows(
            attacker, "SELECT manifest, record, metadata_json FROM versions WHERE model_id = 'evil'")
    for pack in (attacker_root / "objects" / "packs").rglob("*"):
        if pack.is_file():
            dest = victim_root / "objects" / pack.relative_to(attacker_root / "objects")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(pack.read_bytes())
    with ModelStore(victim_root) as store, store.catalog.session() as s:
        s.con.executemany("INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)", objs)
        s.con.executemany("INSERT OR IGNORE INTO manifest_chunks VALUES (?, ?, ?, ?)", chunks)
        s.con.executemany("INSERT OR IGNORE INTO packs VALUES (?, ?, ?, ?)", packs)
        meta = json.loads(meta)
        meta["model_id"] = model_id
        s.con.execute("UPDATE versions SET manifest = ?, record = ?, metadata_json = ? "
                      "WHERE model_id = ? AND version = ?", [manifest, record, json.dumps(meta), model_id, version])
        s.con.execute("UPDATE models SET head_manifest = ? WHERE model_id = ? AND head_version = ?",
                      [manifest, model_id, version])


def _repoint(root, sql, params):
    with ModelStore(root) as store, store.catalog.session() as s:
        s.con.execute(sql, params)
        # The head table caches the head version's manifest: an attacker edits both.
        s.con.execute("UPDATE models SET head_manifest = v.manifest FROM versions v "
                      "WHERE v.model_id = models.model_id AND v.version = models.head_version")


@pytest.mark.parametrize("attacker_key", [None, OTHER_KEY], ids=["unkeyed-attacker", "own-key-attacker"])
def test_substituted_model_is_refused_with_the_key(victim, tmp_path, attacker_key):
    attacker_root = tmp_path / "attacker"
    with ModelStore(attacker_root, key=attacker_key) as attacker:
        attacker.save_model({"weights": "EVIL"}, metadata("evil", IC=0.05))
    _graft(victim, attacker_root)
    with ModelStore(victim) as unkeyed:  # the control: without a key the substitution works
        assert unkeyed.load_model("m")[0] == {"weights": "EVIL"}
    with ModelStore(victim, key=KEY) as keyed, pytest.raises(IntegrityError) as info:
        keyed.load_model("m")
    assert (info.value.model_id, info.value.version) == ("m", 1)
    assert "seal" in str(info.value) or "altered" in str(info.value)


def test_catalog_pointed_at_another_sealed_manifest_is_refused(victim):
    with ModelStore(victim) as store:
        (other,), = _catalog_rows(store, "SELECT manifest FROM versions WHERE model_id = 'other'")
    _repoint(victim, "UPDATE versions SET manifest = ? WHERE model_id = 'm'", [other])
    with ModelStore(victim) as unkeyed:
        assert unkeyed.load_model("m")[0] == {"weights": "other"}
    with ModelStore(victim, key=KEY) as keyed, pytest.raises(IntegrityError, match="manifest"):
        keyed.load_model("m")


def test_another_models_sealed_record_is_not_accepted_for_this_one(victim):
    with ModelStore(victim) as store:
        (manifest, record), = _catalog_rows(store, "SELECT manifest, record FROM versions WHERE model_id = 'other'")
    _repoint(victim, "UPDATE versions SET manifest = ?, record = ? WHERE model_id = 'm'", [manifest, record])
    with ModelStore(victim, key=KEY) as keyed, pytest.raises(IntegrityError, match="model_id"):
        keyed.load_model("m")


def test_metadata_altered_in_the_catalog_is_refused(victim):
    with ModelStore(victim) as store:
        (meta,), = _catalog_rows(store, "SELECT metadata_json FROM versions WHERE model_id = 'm'")
    meta = json.loads(meta)
    meta["metrics"]["IC"] = 0.99
    _repoint(victim, "UPDATE versions SET metadata_json = ? WHERE model_id = 'm'", [json.dumps(meta)])
    with ModelStore(victim, key=KEY) as keyed, pytest.raises(IntegrityError, match="metadata"):
        keyed.load_model("m")


def test_wrong_or_missing_key_and_unsealed_versions(victim, tmp_path, monkeypatch):
    with ModelStore(victim, key=OTHER_KEY) as wrong, pytest.raises(IntegrityError, match="another key"):
        wrong.load_model("m")
    with ModelStore(victim) as unkeyed:  # digests still verified; the seal is simply not checked
        assert unkeyed.load_model("m")[0] == {"weights": "good"}
        unkeyed.save_model({"weights": "unsealed"}, metadata("m"))
    monkeypatch.setenv(KEY_ENV, KEY)
    with ModelStore(victim) as keyed:  # key from the environment
        assert keyed.load_model("m", version=1)[0] == {"weights": "good"}
        with pytest.raises(IntegrityError, match="no seal") as info:
            keyed.load_model("m")
        assert info.value.version == 2 and info.value.actual == "missing"
        keyed.rollback("m", 1)  # a rollback record is sealed too
        assert keyed.load_model("m")[0] == {"weights": "good"}


def test_unkeyed_records_are_unchanged_and_keyed_ones_carry_a_mac(tmp_path):
    with ModelStore(tmp_path / "plain") as plain:
        plain.save_model(1, metadata("m"))
        assert "mac" not in _record_json(plain, "m", 1)
    with ModelStore(tmp_path / "keyed", key=KEY) as keyed:
        keyed.save_model(1, metadata("m"))
        rec = _record_json(keyed, "m", 1)
        assert len(rec["mac"]) == 64 and rec["model_id"] == "m"


def test_key_configuration():
    with pytest.raises(StoreError, match="at least"):
        StoreKey.from_secret("short")
    key = StoreKey.from_secret(KEY)
    assert KEY not in repr(key) and key.mac_key.hex() not in repr(key)
    assert key.mac_key != KEY.encode()[:32]  # derived, never the secret itself
