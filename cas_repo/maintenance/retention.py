"""Retention policies, applied as version tombstones (``retire`` events), never as deletions.

A retired version stays loadable by number and keeps its bytes; ``restore`` undoes the
retirement, and only ``cas-repo gc --purge-deleted-older-than AGE`` frees the content of
versions retired at least AGE ago. A model's head version is never retired (tombstone
the model with ``delete`` for that), nor is any version of a tombstoned model, nor a
version an alias points at (it is reported as protected).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ..catalog.retention import version_marks
from ..errors import RetentionPolicyError
from ..repository import ModelStore
from .common import format_duration, maintenance_lock, utcnow
from .maintain import commit_plan, plan_maintenance
from .marks import MarkRequest, commit_marks
from .policy_spec import Policy
from .selection import ALIAS, HEAD, VersionVerdict


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Which versions to retire: those matching every given criterion and no keep rule.

    Attributes:
        keep_last: keep the newest N versions of each model (N >= 1).
        keep_tagged: keep any version ever tagged ``KEY`` (any value) or ``KEY=VALUE``.
        where: an SQL boolean expression over ``v_versions`` (docs/maintenance.md).
        older_than: only versions saved at least this long ago.
    """

    keep_last: int | None = None
    keep_tagged: tuple[str, ...] = ()
    where: str | None = None
    older_than: timedelta | None = None

    def __post_init__(self) -> None:
        if self.keep_last is None and self.where is None and self.older_than is None:
            raise RetentionPolicyError(
                "a retention policy needs --keep-last N, --where PREDICATE or --older-than AGE "
                "(--keep-tagged only protects versions)")
        if self.keep_last is not None and (isinstance(self.keep_last, bool) or self.keep_last < 1):
            raise RetentionPolicyError(f"--keep-last must be at least 1, got {self.keep_last!r}")
        for item in self.keep_tagged:
            if not item or item.startswith("="):
                raise RetentionPolicyError(f"--keep-tagged takes KEY or KEY=VALUE, got {item!r}")

    def describe(self) -> str:
        parts = []
        if self.keep_last is not None:
            parts.append(f"keep-last={self.keep_last}")
        parts += [f"keep-tagged={t}" for t in self.keep_tagged]
        if self.where is not None:
            parts.append(f"where={self.where}")
        if self.older_than is not None:
            parts.append(f"older-than={format_duration(self.older_than)}")
        return " ".join(parts)

    def as_policy(self) -> Policy:
        """The same rules as a store policy (what ``cas-repo maintain`` applies)."""
        return Policy(keep_last=self.keep_last, keep_tagged=self.keep_tagged, where=self.where,
                      retire_older_than=self.older_than)


@dataclass(frozen=True, slots=True)
class VersionRef:
    """One version named by a retention tool."""

    model_id: str
    version: int
    saved_at: datetime
    logical_size: int
    #: Why a policy that selected it kept it: ``alias prod``, ``tag keep=yes`` ("" if retired).
    protected_by: str = ""

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a policy retired (or would retire, in a dry run) and what it kept."""

    policy: str
    dry_run: bool
    retired: tuple[VersionRef, ...]
    protected: tuple[VersionRef, ...]
    kept: int

    @property
    def retired_bytes(self) -> int:
        """Logical bytes of the retired versions (what gc may free is at most this, after dedup)."""
        return sum(v.logical_size for v in self.retired)


def apply_retention(store: ModelStore, policy: RetentionPolicy, *, dry_run: bool = False,
                    now: datetime | None = None) -> RetentionReport:
    """Retire the versions ``policy`` selects: planned on the catalog, committed as one log commit.

    The one-off form of a store policy (the same engine as ``cas-repo maintain``): a
    version that stopped qualifying between the plan and the commit (it became the head,
    its model changed or was deleted, another process retired it) is left out of the
    commit and counted as kept.

    Raises:
        RetentionPolicyError: the ``where`` predicate is not valid SQL over ``v_versions``.
    """
    now = now or utcnow()
    with maintenance_lock(store.catalog.path):
        plan = plan_maintenance(store, policy.as_policy(), now)
        retired = [_ref(v) for v in plan.retire]
        protected = [replace(_ref(v), protected_by=_protection(v.reasons)) for v in plan.kept if v.only_protected]
        kept = sum(HEAD not in v.reasons for v in plan.kept)  # heads were never candidates
        if not dry_run:
            _, done, _, _ = commit_plan(store, plan, now)
            kept += len(retired) - len(done)
            retired = [_ref(v) for v in done]
    return RetentionReport(policy.describe(), dry_run, tuple(retired), tuple(protected), kept)


def _ref(v: VersionVerdict) -> VersionRef:
    return VersionRef(v.model_id, v.version, v.saved_at, v.logical_size)


def _protection(reasons: Sequence[str]) -> str:
    """``alias prod`` / ``aliases prod, shadow``, else the --keep-tagged rule that matched."""
    return next((r for r in reasons if r.startswith(ALIAS)), reasons[0])


@dataclass(frozen=True, slots=True)
class RestoreReport:
    restored: tuple[str, ...]
    not_retired: tuple[str, ...]
    purged: tuple[str, ...]


def restore_versions(store: ModelStore, refs: Sequence[tuple[str, int | None]], *,
                     now: datetime | None = None) -> RestoreReport:
    """Undo retirements: each ``(model_id, version)``, or every retired version when version is None.

    A purged version cannot come back (its content is gone) and is reported as such.
    """
    now = now or utcnow()
    with maintenance_lock(store.catalog.path):
        with store.catalog.session() as s:
            marks = version_marks(s)
        todo: list[tuple[str, int]] = []
        not_retired: list[str] = []
        purged: list[str] = []
        for model_id, version in refs:
            keys = ([(model_id, version)] if version is not None
                    else sorted(k for k, (state, _) in marks.items() if k[0] == model_id and state == "retire"))
            if not keys:
                not_retired.append(model_id)
            for key in keys:
                state = marks.get(key, ("live", None))[0]
                name = f"{key[0]}@{key[1]}"
                if state == "retire":
                    todo.append(key)
                else:
                    (purged if state == "purge" else not_retired).append(name)
        done = {(m.model_id, m.version) for m in commit_marks(
            store, [MarkRequest(m, v, "restore") for m, v in dict.fromkeys(todo)], now)}
        not_retired += [f"{m}@{v}" for m, v in dict.fromkeys(todo) if (m, v) not in done]
    return RestoreReport(tuple(f"{m}@{v}" for m, v in dict.fromkeys(todo) if (m, v) in done), tuple(not_retired),
                         tuple(purged))
