"""Checkpoints: a :class:`StoreState` as of one log position, so a new process starts there.

A checkpoint is derived data: it says nothing the commits up to its position do not, and
a reader that cannot use one (damaged, unknown format, bad seal) replays the log from
the start instead. Stored zstd-compressed canonical JSON, sealed in a keyed store.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .. import compression
from ..canonical import canonical_json
from ..digest import Digest
from ..errors import IntegrityError
from ..location import Location
from ..sealing import StoreKey
from .state import ModelEntry, StoreState, VersionRow, VersionState

CHECKPOINT_FORMAT = "cas-repo/checkpoint/2"
# Format 1 (before aliases) is still read: it is format 2 with no aliases.
_READABLE = ("cas-repo/checkpoint/1", CHECKPOINT_FORMAT)
_MAGIC = b"CASCKPT1"


def _row(r: VersionRow) -> list[Any]:
    return [r.model_id, r.version, r.manifest, r.kind, r.rollback_of, r.saved_at.isoformat(), r.logical_size,
            r.metadata, r.tags, list(r.parents), r.deleted, r.event_id]


def _unrow(x: list[Any]) -> VersionRow:
    return VersionRow(x[0], x[1], x[2], x[3], x[4], datetime.fromisoformat(x[5]), x[6], x[7], x[8], tuple(x[9]),
                      x[10], x[11])


def encode(state: StoreState, key: StoreKey | None = None) -> bytes:
    models = [[e.model_id, _row(e.head_row), e.seq, e.deleted,
               [[v.manifest, v.position, v.logical_size, v.tags, v.mark,
                 v.mark_at.isoformat() if v.mark_at else None] for v in e.versions]]
              for e in state.models.values()]
    packs: dict[str, int] = {}
    entries = []
    for l in state.entries.values():
        n = packs.setdefault(l.pack.hex, len(packs))
        entries.append([l.digest.hex, l.kind, n, l.offset, l.stored_size, l.size, l.codec])
    raw = canonical_json({"format": CHECKPOINT_FORMAT, "position": state.position, "models": models,
                          "packs": list(packs), "entries": entries, "forgotten": sorted(state.forgotten),
                          "refused": state.refused,
                          "aliases": [[m, a, v] for m, e in state.models.items()
                                      for a, v in sorted(e.aliases.items())]})
    if key:
        raw = key.seal(raw)
    return _MAGIC + compression.compress_all(raw)


def decode(data: bytes, key: StoreKey | None = None) -> StoreState:
    """The state a checkpoint holds.

    Raises:
        IntegrityError: damaged, of an unknown format, or (keyed store) not sealed by the key.
    """
    if not data.startswith(_MAGIC):
        raise IntegrityError("not a checkpoint (bad magic)")
    raw = compression.decompress_all(memoryview(data)[len(_MAGIC):])
    if key:
        key.check(raw)
    try:
        obj = json.loads(raw)
        if obj.get("format") not in _READABLE:
            raise IntegrityError(f"unknown checkpoint format {obj.get('format')!r:.40}")
        st = StoreState()
        st.position = int(obj["position"])
        for mid, row, seq, deleted, versions in obj["models"]:
            refs = [VersionState(m, p, n, t, mk, datetime.fromisoformat(at) if at else None)
                    for m, p, n, t, mk, at in versions]
            st.models[mid] = ModelEntry(mid, _unrow(row), seq, deleted, refs)
        packs = [Digest.from_hex(p) for p in obj["packs"]]
        for d, kind, n, off, stored, size, codec in obj["entries"]:
            st.entries[d] = Location(Digest.from_hex(d), kind, packs[n], off, stored, size, codec)
        st.forgotten = set(obj["forgotten"])
        st.refused = [tuple(r) for r in obj["refused"]]
        for mid, alias, version in obj.get("aliases", ()):
            st.models[mid].aliases[alias] = int(version)
        return st
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise IntegrityError(f"malformed checkpoint ({exc!r:.100})") from exc
