"""Where a stored entry lives: the value shared by the object store and the catalog."""

from __future__ import annotations

from dataclasses import dataclass

from .digest import Digest

CHUNK, MANIFEST, RECORD = 0, 1, 2
KIND_NAMES = {CHUNK: "chunk", MANIFEST: "manifest", RECORD: "record"}


@dataclass(frozen=True, slots=True)
class Location:
    """One entry: its digest and kind, which pack holds it, where, and how it is stored."""

    digest: Digest
    kind: int
    pack: Digest
    offset: int
    stored_size: int
    size: int
    codec: int
