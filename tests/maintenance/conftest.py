"""Helpers for the maintenance tests: real stores, real packs, files aged on disk."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from cas_repo import ModelStore
from cas_repo.digest import Digest
from cas_repo.objects.keys import pack_key

DAY = 86400
NO_GRACE = timedelta(0)


def pack_path(store_dir: Path, pack: Digest | str) -> Path:
    digest = pack if isinstance(pack, Digest) else Digest.from_hex(pack)
    return store_dir / "objects" / pack_key(digest)


def age(path: Path, days: float) -> None:
    """Move a file's mtime ``days`` into the past (what the grace period is measured from)."""
    t = time.time() - days * DAY
    os.utime(path, (t, t))


def age_store(store_dir: Path, days: float = 2) -> None:
    for p in (store_dir / "objects").rglob("*"):
        if p.is_file():
            age(p, days)


def rewrite(path: Path, mutate) -> None:
    """Change a (read-only) pack file in place."""
    data = bytearray(path.read_bytes())
    mutate(data)
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def locations(store: ModelStore, model_id: str, version: int | None = None):
    """(manifest location, chunk locations) of a version."""
    md = store.get_model_metadata(model_id, version)
    with store.catalog.session() as s:
        return s.content_locations(md.digest)


def all_load(store: ModelStore, skip: set[str] = frozenset()) -> None:
    """Every version of every live model loads, verified."""
    for md in store.list_models():
        if md.model_id in skip:
            continue
        for v in store.history(md.model_id):
            store.load_model(md.model_id, v.version)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def store(store_dir):
    """A store without fsync: these tests are about what is stored, not about power loss."""
    with ModelStore(store_dir, backend_options={"fsync": False}) as s:
        yield s
