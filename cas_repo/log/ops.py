"""The operations a log commit holds, and their canonical JSON (pure, no I/O).

A commit (:mod:`.commit`) is the unit of atomicity; it holds one or more operations,
each the whole of one change to the store's history:

| operation      | JSON ``op`` | what it records                                      |
|----------------|-------------|------------------------------------------------------|
| ``SaveOp``     | ``save``    | a new version: a save, or a rollback to an old one   |
| ``EventOp``    | ``event``   | a delete, undelete or tag change of a model          |
| ``MarkOp``     | ``mark``    | retention's retire, restore or purge of a version    |
| ``MetricsOp``  | ``metrics`` | metric values logged for a version after its save    |
| ``AliasMove``  | ``alias``   | an alias set, moved or removed                       |
| ``PolicyOp``   | ``policy``  | the store's retention policy set, replaced or cleared|
| ``ForgetPacks``| ``forget``  | gc dropped packs no version needs                    |
| ``MoveEntries``| ``move``    | gc repacked live entries out of sparse packs         |
| ``AdoptEntries``| ``adopt``  | a format-1 store's entries, taken into the log       |

Whether an operation applies is decided by one rule, :func:`cas_repo.log.state.admit`,
for every replay alike. The save, event, mark and metrics operations carry an ``event_id``: the
BLAKE3 of their canonical JSON, filled in when the commit is encoded (JSON key
``record``; the catalog's ``record`` columns hold it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..canonical import canonical_json
from ..digest import Digest, hash_bytes
from ..errors import IntegrityError
from ..location import KIND_NAMES, Location
from ..metadata import ModelMetadata, metadata_json, parse_ref


@dataclass(frozen=True, slots=True)
class SaveOp:
    """A new version of ``model_id``: a save (new content) or a rollback (an old version's).

    ``metadata_json`` is the version's metadata as stored; the fields from
    ``created_at`` to ``parents`` are parsed from it once (see :meth:`from_metadata_json`,
    the one constructor every writer and reader goes through).
    """

    model_id: str
    version: int
    seq: int
    kind: str
    rollback_of: int | None
    manifest: str
    event_id: str
    at: datetime
    created_at: datetime
    experiment_name: str
    model_type: str
    qlib_recorder_id: str | None
    metrics: dict[str, float]
    hyperparameters: Any
    lineage: Any
    metadata_json: str
    logical_size: int
    new_bytes: int
    tags: dict[str, str]
    parents: tuple[tuple[str, int], ...]
    new_locations: tuple[Location, ...] = ()
    #: The manifest's chunk list, given only when the manifest itself is new.
    manifest_chunks: tuple[tuple[str, int], ...] | None = None
    new_packs: tuple[tuple[str, int, int], ...] = ()

    @classmethod
    def from_metadata_json(cls, meta: dict[str, Any], *, model_id: str, version: int, seq: int, kind: str,
                           manifest: str, at: datetime, logical_size: int, new_bytes: int,
                           rollback_of: int | None = None, event_id: str = "",
                           parents: tuple[tuple[str, int], ...] | None = None,
                           new_locations: tuple[Location, ...] = (),
                           manifest_chunks: tuple[tuple[str, int], ...] | None = None,
                           new_packs: tuple[tuple[str, int, int], ...] = ()) -> SaveOp:
        """A save operation whose metadata is ``meta`` (the JSON object stored in its commit).

        ``parents`` defaults to the parsed ``meta["parents"]``.
        """
        return cls(
            model_id=model_id, version=version, seq=seq, kind=kind, rollback_of=rollback_of, manifest=manifest,
            event_id=event_id, at=at, created_at=datetime.fromisoformat(meta["created_at"]),
            experiment_name=meta["experiment_name"], model_type=meta["model_type"],
            qlib_recorder_id=meta.get("qlib_recorder_id"), metrics=meta["metrics"],
            hyperparameters=meta["hyperparameters"], lineage=meta.get("lineage", {}),
            metadata_json=json.dumps(meta, sort_keys=True), logical_size=logical_size, new_bytes=new_bytes,
            tags=dict(meta.get("tags") or {}),
            parents=tuple(parse_ref(p) for p in meta.get("parents") or ()) if parents is None else parents,
            new_locations=new_locations, manifest_chunks=manifest_chunks, new_packs=new_packs)

    @classmethod
    def from_metadata(cls, md: ModelMetadata, **fields: Any) -> SaveOp:
        """A save operation recording ``md`` (see :meth:`from_metadata_json` for ``fields``)."""
        return cls.from_metadata_json(metadata_json(md), model_id=md.model_id, **fields)


@dataclass(frozen=True, slots=True)
class EventOp:
    """A delete, undelete or tag change; ``set_tags`` maps a key to its value (None: removed)."""

    model_id: str
    seq: int
    kind: str
    version: int
    at: datetime
    event_id: str
    deleted: bool
    set_tags: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MarkOp:
    """Retention's retire, restore or purge of one version (a purge records what it freed)."""

    model_id: str
    seq: int
    kind: str
    version: int
    at: datetime
    event_id: str
    logical_size: int | None = None
    new_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class MetricsOp:
    """Metric values of one version that arrived after its save (a backtest, live IC).

    Each value is kept in history with the time it arrived; a later value of the same
    name supersedes it in the version's current metrics, never erasing it.
    """

    model_id: str
    seq: int
    version: int
    at: datetime
    event_id: str
    metrics: dict[str, float]

    @property
    def kind(self) -> str:
        return "metrics"


@dataclass(frozen=True, slots=True)
class ForgetPacks:
    """gc dropped these packs: no committed version needs an entry in them any more.

    Once this is in the log, a writer that meant to reuse an entry of one of them stores
    it again instead, and the files may be deleted.
    """

    packs: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class MoveEntries:
    """gc copied the live entries of ``sources`` into new packs; the sources are dropped."""

    sources: tuple[str, ...]
    locations: tuple[Location, ...]
    new_packs: tuple[tuple[str, int, int], ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class AdoptEntries:
    """Entries found in packs no commit mentions yet (a format-1 store's upgrade).

    ``manifests`` gives the chunk list of each manifest among them.
    """

    locations: tuple[Location, ...]
    new_packs: tuple[tuple[str, int, int], ...]
    manifests: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class AliasMove:
    """An alias of ``model_id`` moved from version ``previous`` to ``version``.

    ``previous`` None: the alias is new; ``version`` None: it was removed. ``by`` is the
    writer that moved it (the commit's ``host/pid/token``). No model bytes are involved:
    promotion and production rollback are this one small operation.
    """

    model_id: str
    alias: str
    version: int | None
    previous: int | None
    at: datetime
    by: str


@dataclass(frozen=True, slots=True)
class PolicyOp:
    """The store's retention policy set to ``policy`` (None: cleared).

    ``policy`` is the policy's canonical JSON object, as validated by
    :mod:`cas_repo.maintenance.policy_spec` (the log keeps it as it was written).
    ``previous`` is the position of the commit holding the policy operation this one
    replaces (None: the store never had one); like an alias move's ``previous``, it is
    admitted only while that is still the current one. ``by`` is the writer that set it
    (the commit's ``host/pid/token``).
    """

    policy: dict[str, Any] | None
    previous: int | None
    at: datetime
    by: str

    @property
    def kind(self) -> str:
        return "policy"

    @property
    def cleared(self) -> bool:
        return self.policy is None


Op = SaveOp | EventOp | MarkOp | MetricsOp | ForgetPacks | MoveEntries | AdoptEntries | AliasMove | PolicyOp


def event_id_of(op_json: dict[str, Any]) -> str:
    """The identity of one event: the BLAKE3 of its canonical JSON without the ``record`` field."""
    return hash_bytes(canonical_json({k: v for k, v in op_json.items() if k != "record"})).hex


def _loc(l: Location) -> list[Any]:
    return [l.digest.hex, l.kind, l.pack.hex, l.offset, l.stored_size, l.size, l.codec]


def _unloc(item: Any) -> Location:
    d, kind, pack, offset, stored, size, codec = item
    if kind not in KIND_NAMES or min(offset, stored, size) < 0:
        raise ValueError(f"bad location {item!r:.80}")
    return Location(Digest.from_hex(d), int(kind), Digest.from_hex(pack), int(offset), int(stored), int(size),
                    int(codec))


def _packs(packs: Any) -> tuple[tuple[str, int, int], ...]:
    return tuple((Digest.from_hex(p).hex, int(size), int(n)) for p, size, n in packs)


def _opt_int(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"not a version: {v!r:.40}")
    return v


def _opt_position(v: Any) -> int | None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ValueError(f"not a log position: {v!r:.40}")
    return v


def _policy(p: Any) -> dict[str, Any] | None:
    if p is not None and not isinstance(p, dict):
        raise ValueError("policy is neither an object nor null")
    return p


def _metrics(m: Any) -> dict[str, float]:
    if not isinstance(m, dict) or not m:
        raise ValueError("metrics is not a non-empty object")
    out = {}
    for k, v in m.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"bad metric {k!r:.40}: {v!r:.40}")
        out[k] = float(v)
    return out


def op_to_json(op: Op) -> dict[str, Any]:
    if isinstance(op, SaveOp):
        return {
            "op": "save", "kind": op.kind, "model_id": op.model_id, "version": op.version, "seq": op.seq,
            "at": op.at.isoformat(), "manifest": op.manifest, "rollback_of": op.rollback_of,
            "metadata": json.loads(op.metadata_json), "logical_size": op.logical_size,
            "new_bytes": op.new_bytes, "objects": [_loc(l) for l in op.new_locations],
            "chunks": None if op.manifest_chunks is None else [list(c) for c in op.manifest_chunks],
            "packs": [list(p) for p in op.new_packs], "record": op.event_id,
        }
    if isinstance(op, EventOp):
        return {"op": "event", "kind": op.kind, "model_id": op.model_id, "version": op.version, "seq": op.seq,
                "at": op.at.isoformat(), "deleted": op.deleted, "tags": op.set_tags, "record": op.event_id}
    if isinstance(op, MarkOp):
        return {"op": "mark", "kind": op.kind, "model_id": op.model_id, "version": op.version, "seq": op.seq,
                "at": op.at.isoformat(), "logical_size": op.logical_size, "new_bytes": op.new_bytes,
                "record": op.event_id}
    if isinstance(op, MetricsOp):
        return {"op": "metrics", "model_id": op.model_id, "version": op.version, "seq": op.seq,
                "at": op.at.isoformat(), "metrics": op.metrics, "record": op.event_id}
    if isinstance(op, ForgetPacks):
        return {"op": "forget", "packs": list(op.packs), "at": op.at.isoformat()}
    if isinstance(op, MoveEntries):
        return {"op": "move", "sources": list(op.sources), "objects": [_loc(l) for l in op.locations],
                "packs": [list(p) for p in op.new_packs], "at": op.at.isoformat()}
    if isinstance(op, AdoptEntries):
        return {"op": "adopt", "objects": [_loc(l) for l in op.locations], "packs": [list(p) for p in op.new_packs],
                "manifests": [[m, [list(c) for c in chunks]] for m, chunks in op.manifests],
                "at": op.at.isoformat()}
    if isinstance(op, AliasMove):
        return {"op": "alias", "model_id": op.model_id, "alias": op.alias, "version": op.version,
                "from": op.previous, "at": op.at.isoformat(), "by": op.by}
    if isinstance(op, PolicyOp):
        return {"op": "policy", "policy": op.policy, "previous": op.previous, "at": op.at.isoformat(), "by": op.by}
    raise TypeError(f"not a log operation: {type(op).__name__}")


def _save(o: dict[str, Any]) -> SaveOp:
    md = o["metadata"]
    if not isinstance(md, dict):
        raise ValueError("metadata is not an object")
    return SaveOp.from_metadata_json(
        md, model_id=o["model_id"], version=int(o["version"]), seq=int(o["seq"]), kind=o["kind"],
        rollback_of=o["rollback_of"], manifest=Digest.from_hex(o["manifest"]).hex, event_id=o["record"],
        at=datetime.fromisoformat(o["at"]), logical_size=int(o["logical_size"]), new_bytes=int(o["new_bytes"]),
        new_locations=tuple(_unloc(x) for x in o["objects"]),
        manifest_chunks=None if o["chunks"] is None else tuple((Digest.from_hex(d).hex, int(n))
                                                              for d, n in o["chunks"]),
        new_packs=_packs(o["packs"]))


def op_from_json(o: Any) -> Op:
    """One operation from its JSON form.

    Raises:
        IntegrityError: the object is not a well-formed operation.
    """
    try:
        kind = o["op"]
        if kind == "save":
            return _save(o)
        if kind == "event":
            return EventOp(o["model_id"], int(o["seq"]), o["kind"], int(o["version"]),
                               datetime.fromisoformat(o["at"]), o["record"], bool(o["deleted"]), dict(o["tags"]))
        if kind == "mark":
            return MarkOp(o["model_id"], int(o["seq"]), o["kind"], int(o["version"]),
                              datetime.fromisoformat(o["at"]), o["record"], o["logical_size"], o["new_bytes"])
        if kind == "metrics":
            return MetricsOp(str(o["model_id"]), int(o["seq"]), int(o["version"]), datetime.fromisoformat(o["at"]),
                             o["record"], _metrics(o["metrics"]))
        if kind == "forget":
            return ForgetPacks(tuple(Digest.from_hex(p).hex for p in o["packs"]), datetime.fromisoformat(o["at"]))
        if kind == "move":
            return MoveEntries(tuple(Digest.from_hex(p).hex for p in o["sources"]),
                               tuple(_unloc(x) for x in o["objects"]), _packs(o["packs"]),
                               datetime.fromisoformat(o["at"]))
        if kind == "alias":
            return AliasMove(str(o["model_id"]), str(o["alias"]), _opt_int(o["version"]), _opt_int(o["from"]),
                             datetime.fromisoformat(o["at"]), str(o["by"]))
        if kind == "policy":
            return PolicyOp(_policy(o["policy"]), _opt_position(o["previous"]), datetime.fromisoformat(o["at"]),
                            str(o["by"]))
        if kind == "adopt":
            return AdoptEntries(tuple(_unloc(x) for x in o["objects"]), _packs(o["packs"]),
                                tuple((Digest.from_hex(m).hex, tuple((Digest.from_hex(d).hex, int(n)) for d, n in cs))
                                      for m, cs in o["manifests"]),
                                datetime.fromisoformat(o["at"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"malformed log operation ({exc!r:.120})") from exc
    raise IntegrityError(f"unknown log operation {str(o.get('op') if isinstance(o, dict) else o)[:40]!r}; "
                         "a newer cas-repo wrote this store: upgrade cas-repo")
