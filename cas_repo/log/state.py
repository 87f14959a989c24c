"""The store's state as the log makes it: heads, versions, and where every entry lives (no I/O).

Every process folds the log into one of these, commit by commit, and saves and loads
from it; the DuckDB catalog is folded from the same commits. Both admit an operation by
the same rule (:func:`admit`), so whoever replays the log, from wherever, ends in the
same state: a writer computed its operation from the state at the position before its
own, which is exactly what replay sees there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..digest import Digest
from ..location import Location
from ..metadata import format_ref, parse_ref
from .ops import AdoptEntries, AliasMove, EventOp, ForgetPacks, MarkOp, MetricsOp, MoveEntries, Op, PolicyOp, SaveOp

# Save and rollback start a version; the event and mark kinds annotate an existing one.
SAVE_KINDS = ("save", "rollback")


@dataclass(slots=True)
class Head:
    """What :func:`admit` needs of one model: newest version, last event number, tombstone, aliases."""

    version: int
    seq: int
    deleted: bool
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class PolicyHead:
    """What :func:`admit` needs of the store's policy: the position of the commit whose
    policy operation set (or cleared) it last (None: never set), and the position of the
    commit being admitted."""

    position: int | None
    landing: int


def admit(op: Op, heads: dict[str, Head], policy: PolicyHead | None = None) -> bool:
    """Whether ``op`` applies after the operations that made ``heads`` (and ``policy``);
    updates them if so.

    A well-behaved writer never commits an operation this refuses (it built it from the
    same state); a refused one (a damaged or hand-made commit) is skipped by every
    replay alike and reported by fsck.
    """
    if isinstance(op, (ForgetPacks, MoveEntries, AdoptEntries)):
        return True
    if isinstance(op, PolicyOp):
        # It replaces the policy its writer saw; one per commit, so a position names it.
        if policy is None or op.previous != policy.position or policy.position == policy.landing:
            return False
        policy.position = policy.landing
        return True
    h = heads.get(op.model_id)
    if isinstance(op, AliasMove):
        return _admit_alias(op, h)
    if isinstance(op, SaveOp):
        if op.kind not in SAVE_KINDS:
            return False
        version, seq = (h.version, h.seq) if h else (0, 0)
        if op.version != version + 1 or op.seq != seq + 1:
            return False
        if op.kind == "rollback" and (h is None or h.deleted or not 1 <= (op.rollback_of or 0) <= version):
            return False
        heads[op.model_id] = Head(op.version, op.seq, False, h.aliases if h else {})
        return True
    if h is None or op.seq != h.seq + 1 or not 1 <= op.version <= h.version:
        return False
    if isinstance(op, EventOp):
        if op.kind not in ("delete", "undelete", "tag"):
            return False
        h.deleted = op.deleted
    elif isinstance(op, MetricsOp):
        if h.deleted or not op.metrics:
            return False
    elif op.kind not in ("retire", "restore", "purge"):
        return False
    elif op.kind == "purge" and op.version in h.aliases.values():
        return False  # an alias pins its version's content
    h.seq = op.seq
    return True


def _admit_alias(op: AliasMove, h: Head | None) -> bool:
    """An alias move applies when it starts from where the alias is (``previous``) and, unless
    it removes the alias, lands on an existing version of a live model."""
    if h is None or h.aliases.get(op.alias) != op.previous or op.version == op.previous:
        return False
    if op.version is None:
        del h.aliases[op.alias]
        return True
    if h.deleted or not 1 <= op.version <= h.version:
        return False
    h.aliases[op.alias] = op.version
    return True


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One version as readers take it: from the fold, a checkpoint, or the catalog index.

    ``metadata`` is the stored metadata JSON (the catalog's head copy holds only what
    :class:`~cas_repo.metadata.ModelMetadata` needs); ``tags`` are the version's tags now;
    ``logged`` the newest value of each metric logged after the save (they supersede the
    saved ones of the same name).
    """

    model_id: str
    version: int
    manifest: str
    kind: str
    rollback_of: int | None
    saved_at: datetime
    logical_size: int
    metadata: dict[str, Any]
    tags: dict[str, str]
    parents: tuple[str, ...]
    deleted: bool
    event_id: str = ""
    logged: dict[str, float] = field(default_factory=dict)


def parents_of(parents: Iterable[str]) -> tuple[str, ...]:
    """``model@version`` references, distinct and ordered as the catalog's lineage has them."""
    return tuple(format_ref(m, v) for m, v in sorted({parse_ref(r) for r in parents}))


def version_row(op: SaveOp, deleted: bool, tags: dict[str, str] | None = None,
                logged: dict[str, float] | None = None) -> VersionRow:
    """The version ``op`` made, as the load and metadata paths take it."""
    md = json.loads(op.metadata_json)
    return VersionRow(model_id=op.model_id, version=op.version, manifest=op.manifest, kind=op.kind,
                      rollback_of=op.rollback_of, saved_at=op.at, logical_size=op.logical_size, metadata=md,
                      tags=dict(op.tags if tags is None else tags), parents=parents_of(md.get("parents") or ()),
                      deleted=deleted, event_id=op.event_id, logged=dict(logged or {}))


@dataclass(slots=True)
class VersionState:
    """One version: enough to load it; the rest of its metadata is in its commit."""

    manifest: str
    position: int
    logical_size: int
    tags: dict[str, str]  # as saved, then as tag events changed them
    mark: str | None = None  # "retire" or "purge" while one holds
    mark_at: datetime | None = None
    logged: dict[str, float] = field(default_factory=dict)  # newest value of each metric logged later


@dataclass(slots=True)
class ModelEntry:
    """One model_id: its versions (index i is version i + 1), its head row, its tombstone."""

    model_id: str
    head_row: VersionRow
    seq: int
    deleted: bool
    versions: list[VersionState] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> version

    @property
    def head_version(self) -> int:
        return len(self.versions)


class StoreState:
    """The fold of the log up to :attr:`position`. Not thread-safe: the store locks around it."""

    def __init__(self) -> None:
        self.position = 0
        # The chain digest after commit `position`, and after the one before it.
        self.chain = ""
        self.chain_before = ""
        self.models: dict[str, ModelEntry] = {}
        self.entries: dict[str, Location] = {}
        self.forgotten: set[str] = set()
        self.refused: list[tuple[int, int]] = []  # (position, op index) of operations not admitted
        # The policy operation that set (or cleared) the store's policy last, and its commit.
        self.policy_op: PolicyOp | None = None
        self.policy_position: int | None = None

    @property
    def policy(self) -> dict[str, Any] | None:
        """The store's retention policy now (its canonical JSON object), or None."""
        return self.policy_op.policy if self.policy_op is not None else None

    # -- folding ------------------------------------------------------------------------

    def apply(self, position: int, ops: Sequence[Op], chain: str | None = None) -> list[Op]:
        """Fold the commit at ``position`` (the next one) in, ``chain`` being the chain digest
        after it (None: not tracked); returns the operations admitted."""
        if position != self.position + 1:
            raise ValueError(f"commit {position} applied at position {self.position}")
        if chain is not None:
            self.chain_before, self.chain = self.chain, chain
        admitted = []
        policy = PolicyHead(self.policy_position, position)
        heads: dict[str, Head] = {}
        for o in ops:
            model_id = getattr(o, "model_id", None)
            if model_id is not None and model_id not in heads and (h := self._head(model_id)) is not None:
                heads[model_id] = h
        for i, op in enumerate(ops):
            if not admit(op, heads, policy):
                self.refused.append((position, i))
                continue
            admitted.append(op)
            self._fold(position, op)
        self.position = position
        return admitted

    def _head(self, model_id: str) -> Head | None:
        e = self.models.get(model_id)
        return Head(e.head_version, e.seq, e.deleted, dict(e.aliases)) if e else None

    def _fold(self, position: int, op: Op) -> None:
        if isinstance(op, SaveOp):
            self._add_locations(op.new_locations)
            ref = VersionState(op.manifest, position, op.logical_size, dict(sorted(op.tags.items())))
            e = self.models.get(op.model_id)
            row = version_row(op, deleted=False, tags=ref.tags)
            if e is None:
                self.models[op.model_id] = ModelEntry(op.model_id, row, op.seq, False, [ref])
            else:
                e.versions.append(ref)
                e.head_row, e.seq, e.deleted = row, op.seq, False
        elif isinstance(op, EventOp):
            e = self.models[op.model_id]
            e.seq, e.deleted = op.seq, op.deleted
            if op.set_tags:
                ref = e.versions[op.version - 1]
                tags = dict(ref.tags)
                for k, v in op.set_tags.items():
                    if v is None:
                        tags.pop(k, None)
                    else:
                        tags[k] = v
                ref.tags = dict(sorted(tags.items()))
            e.head_row = replace(e.head_row, deleted=e.deleted, tags=e.versions[-1].tags)
        elif isinstance(op, MetricsOp):
            e = self.models[op.model_id]
            e.seq = op.seq
            ref = e.versions[op.version - 1]
            ref.logged = dict(sorted({**ref.logged, **op.metrics}.items()))
            if op.version == e.head_version:
                e.head_row = replace(e.head_row, logged=ref.logged)
        elif isinstance(op, MarkOp):
            e = self.models[op.model_id]
            e.seq = op.seq
            ref = e.versions[op.version - 1]
            if ref.mark != "purge":  # a purge is final, as the catalog's marks have it
                ref.mark, ref.mark_at = (None, None) if op.kind == "restore" else (op.kind, op.at)
            if op.kind == "purge" and op.logical_size is not None:
                ref.logical_size = op.logical_size
        elif isinstance(op, AliasMove):
            aliases = self.models[op.model_id].aliases
            if op.version is None:
                aliases.pop(op.alias, None)
            else:
                aliases[op.alias] = op.version
        elif isinstance(op, PolicyOp):
            self.policy_op, self.policy_position = op, position
        elif isinstance(op, AdoptEntries):
            self._add_locations(op.locations)
        elif isinstance(op, ForgetPacks):
            self._drop_packs(set(op.packs))
        elif isinstance(op, MoveEntries):
            sources = set(op.sources)
            for l in op.locations:
                cur = self.entries.get(l.digest.hex)
                if cur is not None and cur.pack.hex in sources:
                    self.entries[l.digest.hex] = l
            self._drop_packs(sources)

    def _add_locations(self, locs: Iterable[Location]) -> None:
        for l in locs:
            self.forgotten.discard(l.pack.hex)
            # Two writers may store one new chunk in their own packs: the first copy wins,
            # as in the catalog, and the other is dead weight that gc repacks away.
            self.entries.setdefault(l.digest.hex, l)

    def _drop_packs(self, packs: set[str]) -> None:
        self.forgotten |= packs
        for d in [d for d, l in self.entries.items() if l.pack.hex in packs]:
            del self.entries[d]

    # -- questions ----------------------------------------------------------------------

    def locate(self, digests: Iterable[Digest | str]) -> dict[str, Location]:
        """The locations of those ``digests`` the store holds."""
        out = {}
        for d in digests:
            h = d if isinstance(d, str) else d.hex
            loc = self.entries.get(h)
            if loc is not None:
                out[h] = loc
        return out
