"""Checkpoints: a :class:`StoreState` as of one log position, so a new process starts there.

A checkpoint is derived data: it says nothing the commits up to its position do not, and
a reader that cannot use one (damaged, unknown format, bad seal, or not anchored in this
log) replays the log from the start instead. Stored as::

    CASCKPT3 | BLAKE3 of the rest (32 bytes) | zstd(canonical JSON, sealed in a keyed store)

The digest is checked before anything is decompressed, so a damaged size field cannot
make a reader allocate what it says. The JSON records the chain digests at its position
and the one before; a reader uses it only where the log's commit at that position
carries the same chain (:meth:`cas_repo.log.ledger.Ledger._check_anchor`), so a
checkpoint can never move a process past the end of the log, nor stand for another
store's history. Checkpoints from before the chain (formats 1 and 2) are not used.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from .. import compression
from ..canonical import canonical_json
from ..digest import DIGEST_SIZE, Digest, hash_bytes
from ..errors import IntegrityError
from ..location import Location
from ..sealing import StoreKey
from .ops import PolicyOp, op_from_json, op_to_json
from .state import ModelEntry, StoreState, VersionRow, VersionState

CHECKPOINT_FORMAT = "cas-repo/checkpoint/3"
_MAGIC = b"CASCKPT3"
_UNCHAINED = b"CASCKPT1"  # formats 1 and 2: no digest, no chain


def _row(r: VersionRow) -> list[Any]:
    return [r.model_id, r.version, r.manifest, r.kind, r.rollback_of, r.saved_at.isoformat(), r.logical_size,
            r.metadata, r.tags, list(r.parents), r.deleted, r.event_id, r.logged]


def _unrow(x: list[Any]) -> VersionRow:
    # A checkpoint written before metrics could be logged after a save has no ``logged``.
    return VersionRow(x[0], x[1], x[2], x[3], x[4], datetime.fromisoformat(x[5]), x[6], x[7], x[8], tuple(x[9]),
                      x[10], x[11], dict(x[12]) if len(x) > 12 else {})


def encode(state: StoreState, key: StoreKey | None = None) -> bytes:
    models = [[e.model_id, _row(e.head_row), e.seq, e.deleted,
               [[v.manifest, v.position, v.logical_size, v.tags, v.mark,
                 v.mark_at.isoformat() if v.mark_at else None, v.logged] for v in e.versions]]
              for e in state.models.values()]
    packs: dict[str, int] = {}
    entries = []
    for l in state.entries.values():
        n = packs.setdefault(l.pack.hex, len(packs))
        entries.append([l.digest.hex, l.kind, n, l.offset, l.stored_size, l.size, l.codec])
    body = {"format": CHECKPOINT_FORMAT, "position": state.position, "models": models,
            "packs": list(packs), "entries": entries, "forgotten": sorted(state.forgotten),
            "refused": state.refused, "chain": state.chain, "chain_before": state.chain_before,
            "aliases": [[m, a, v] for m, e in state.models.items() for a, v in sorted(e.aliases.items())]}
    if state.policy_op is not None:
        # Optional, so that checkpoints of stores that never had a policy stay as they were.
        body["policy"] = [state.policy_position, op_to_json(state.policy_op)]
    raw = canonical_json(body)
    if key:
        raw = key.seal(raw)
    payload = compression.compress_all(raw)
    return _MAGIC + hash_bytes(payload).raw + payload


def check_digest(data: bytes) -> None:
    """Check a checkpoint's digest header against the rest of its bytes (no decompression).

    Raises:
        IntegrityError: not a checkpoint of this format, or damaged.
    """
    head = len(_MAGIC) + DIGEST_SIZE
    if data.startswith(_UNCHAINED):
        raise IntegrityError("it was written before log commits were chained and carries no digest")
    if not data.startswith(_MAGIC) or len(data) < head:
        raise IntegrityError("not a checkpoint (bad magic)")
    if hash_bytes(memoryview(data)[head:]).raw != data[len(_MAGIC):head]:
        raise IntegrityError("its bytes do not match its digest: damaged")


def decode(data: bytes, key: StoreKey | None = None) -> StoreState:
    """The state a checkpoint holds.

    Raises:
        IntegrityError: damaged, of an unknown format, or (keyed store) not sealed by the key.
    """
    if data.startswith(_UNCHAINED):
        raise IntegrityError("it was written before log commits were chained, so it cannot be checked "
                             "against the log")
    if not data.startswith(_MAGIC):
        raise IntegrityError("not a checkpoint (bad magic)")
    head = len(_MAGIC) + DIGEST_SIZE
    payload = memoryview(data)[head:]
    if len(data) < head or hash_bytes(payload).raw != data[len(_MAGIC):head]:
        raise IntegrityError("its bytes do not match its digest: damaged")
    raw = compression.decompress_all(payload)
    if key:
        key.check(raw)
    with _collector_paused():
        return _state(raw)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off meanwhile (back on after, if it was on).

    Parsing a checkpoint and building its state makes millions of containers, none of
    them in a cycle; every few hundred allocations the collector ran and rescanned the
    ones already built: at 100,000 versions the decode took 3.4 s with it, 1.5 s without.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _state(raw: bytes) -> StoreState:
    try:
        obj = json.loads(raw)
        if obj.get("format") != CHECKPOINT_FORMAT:
            raise IntegrityError(f"unknown checkpoint format {obj.get('format')!r:.40}")
        st = StoreState()
        st.position = int(obj["position"])
        st.chain, st.chain_before = str(obj["chain"]), str(obj["chain_before"])
        for mid, row, seq, deleted, versions in obj["models"]:
            refs = [VersionState(v[0], v[1], v[2], v[3], v[4], datetime.fromisoformat(v[5]) if v[5] else None,
                                 dict(v[6]) if len(v) > 6 else {})
                    for v in versions]
            st.models[mid] = ModelEntry(mid, _unrow(row), seq, deleted, refs)
        packs = [Digest.from_hex(p) for p in obj["packs"]]
        for d, kind, n, off, stored, size, codec in obj["entries"]:
            st.entries[d] = Location(Digest.from_hex(d), kind, packs[n], off, stored, size, codec)
        st.forgotten = set(obj["forgotten"])
        st.refused = [tuple(r) for r in obj["refused"]]
        for mid, alias, version in obj["aliases"]:
            st.models[mid].aliases[alias] = int(version)
        if obj.get("policy") is not None:  # absent from checkpoints written before policies
            position, op = obj["policy"]
            policy_op = op_from_json(op)
            if not isinstance(policy_op, PolicyOp):
                raise IntegrityError("malformed checkpoint (its policy is not a policy operation)")
            st.policy_op, st.policy_position = policy_op, int(position)
        return st
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise IntegrityError(f"malformed checkpoint ({exc!r:.100})") from exc
