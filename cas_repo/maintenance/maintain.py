"""``maintain``: apply the store's policy — retire versions and models, then gc.

One run:

1. **Read the policy** from the folded log (every machine sees the same one).
2. **Plan** on the catalog at some position ``P`` (:func:`plan_maintenance`): each live
   version's verdict and reasons, each model's (:mod:`.selection`).
3. **One commit** whose ``build(state)`` checks every planned change again on the state
   it lands on: a model is tombstoned only if it is still live, unaliased and has had no
   event since ``P`` (no new version, tag, metric, retirement); a version is retired only
   if its model had no event since ``P`` and it is still a live, unaliased, older
   version of a live model. Whatever changed is left out and reported; the next run
   plans it again. So two machines maintaining at once each commit only what still
   holds where its commit lands, and a writer saving meanwhile is never overruled.
4. **gc** (:mod:`.gc`, :mod:`.collect`): purge versions retired, and models tombstoned,
   at least ``grace`` ago; drop packs nothing live needs; repack sparse packs. gc is
   safe against writers and other gcs on its own.

A run killed at any instant leaves either its commit or none (and gc's own protocol
handles the rest): running it again finishes the job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..catalog.retention import candidates, select_versions
from ..errors import InvalidPolicyError, MaintenanceError, NoPolicyError, RetentionPolicyError
from ..log.ops import EventOp, MarkOp, Op
from ..log.state import ModelEntry, StoreState, VersionState
from ..repository import ModelStore
from .collect import GcReport, collect_garbage, refusal
from .common import (
    DEFAULT_GRACE,
    ProgressFactory,
    format_duration,
    indexed_position,
    maintenance_lock,
    no_progress,
    utcnow,
)
from .gc import GcPlan, plan_gc
from .marks import MarkRequest, mark_ops
from .policy import PolicyRecord, current_policy
from .policy_spec import Policy
from .selection import ModelVerdict, VersionFacts, VersionVerdict, decide_models, decide_versions

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MaintenancePlan:
    """What a policy would do now, as of the catalog's log position ``position``."""

    at: datetime
    policy: Policy
    position: int
    versions: tuple[VersionVerdict, ...]
    models: tuple[ModelVerdict, ...]

    @property
    def retire(self) -> tuple[VersionVerdict, ...]:
        return tuple(v for v in self.versions if v.retire)

    @property
    def kept(self) -> tuple[VersionVerdict, ...]:
        return tuple(v for v in self.versions if not v.retire)

    @property
    def retire_models(self) -> tuple[ModelVerdict, ...]:
        return tuple(m for m in self.models if m.retire)


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one ``maintain`` run did (or, ``dry_run``, would do).

    ``retired`` / ``models_retired``: committed in log commit ``position`` (planned, in a
    dry run); ``left_out``: planned changes that no longer held where the commit landed
    (``model@version`` or model id, and why); ``gc``: gc's report (None in a dry run or
    when gc refused, see ``problems``).
    """

    at: datetime
    dry_run: bool
    policy: PolicyRecord
    plan: MaintenancePlan
    position: int | None
    retired: tuple[VersionVerdict, ...]
    models_retired: tuple[ModelVerdict, ...]
    left_out: tuple[tuple[str, str], ...]
    gc_plan: GcPlan
    gc: GcReport | None
    problems: tuple[str, ...] = ()

    @property
    def freed_bytes(self) -> int:
        return self.gc.freed_bytes if self.gc is not None else 0

    def to_json(self) -> dict[str, Any]:
        def version(v: VersionVerdict) -> dict[str, Any]:
            return {"ref": v.ref, "model_id": v.model_id, "version": v.version, "saved_at": v.saved_at.isoformat(),
                    "logical_size": v.logical_size, "reasons": list(v.reasons)}

        def model(m: ModelVerdict) -> dict[str, Any]:
            return {"model_id": m.model_id, "reason": m.reason, "best": m.best}

        g, plan = self.gc, self.gc_plan
        return {
            "at": self.at.isoformat(), "dry_run": self.dry_run, "policy_position": self.policy.position,
            "policy": self.plan.policy.to_json(), "position": self.position,
            "retired": [version(v) for v in self.retired], "kept": [version(v) for v in self.plan.kept],
            "models_retired": [model(m) for m in self.models_retired],
            "models_kept": [model(m) for m in self.plan.models if not m.retire],
            "left_out": [{"subject": s, "reason": r} for s, r in self.left_out],
            "gc": {"purge": [f"{c.model_id}@{c.version}" for c in plan.purge],
                   "purged": [f"{m}@{v}" for m, v in g.purged] if g else [],
                   "packs_deleted": len(g.deleted) if g else 0, "packs_repacked": len(g.repacked) if g else 0,
                   "freed_bytes": self.freed_bytes, "position": g.position if g else None},
            "problems": list(self.problems),
        }


def plan_maintenance(store: ModelStore, policy: Policy, now: datetime | None = None) -> MaintenancePlan:
    """What ``policy`` would retire now and why, and why it keeps the rest (changes nothing).

    Raises:
        InvalidPolicyError: its ``where`` is not valid SQL over ``v_versions``.
    """
    now = now or utcnow()
    with store.catalog.session() as s:
        position = indexed_position(s)
        table = candidates(s, now)
    matched = None
    if policy.where is not None:
        try:
            matched = select_versions(table, policy.where)
        except RetentionPolicyError as exc:
            raise InvalidPolicyError("where", str(exc)) from exc
    facts = [VersionFacts.from_row(r, matched is None or (r["model_id"], r["version"]) in matched)
             for r in table.to_pylist()]
    models = decide_models(facts, policy.retire_models_below, now) if policy.retire_models_below else []
    retiring = {m.model_id for m in models if m.retire}
    versions = decide_versions(facts, policy, now, retiring)
    return MaintenancePlan(now, policy, position, tuple(versions), tuple(models))


def _version_left_out(e: ModelEntry | None, ref: VersionState | None, v: VersionVerdict) -> str:
    if e is None or ref is None:
        return "not in the log (a damaged index?)"
    if e.deleted:
        return "its model was tombstoned since the plan"
    if ref.mark is not None:
        return f"{'retired' if ref.mark == 'retire' else 'purged'} already"
    if v.version in e.aliases.values():
        return "an alias points at it since the plan"
    return "its model changed since the plan (a new version, tag, metric or retirement): the next run decides"


def commit_plan(store: ModelStore, plan: MaintenancePlan, now: datetime
                ) -> tuple[int | None, list[VersionVerdict], list[ModelVerdict], list[tuple[str, str]]]:
    """Commit what of ``plan`` still holds where the commit lands, in one log commit.

    Returns the commit's position (None: nothing to commit), the versions retired, the
    models tombstoned, and what was left out and why.
    """
    verdicts = {(v.model_id, v.version): v for v in plan.retire}
    floors = {m.model_id: m for m in plan.retire_models}
    outcome: dict[str, list] = {}

    def build(st: StoreState) -> list[Op]:
        left: list[tuple[str, str]] = []
        ops: list[Op] = []
        for m in floors.values():
            e = st.models.get(m.model_id)
            if e is None or e.deleted:
                left.append((m.model_id, "tombstoned already"))
            elif e.aliases:
                left.append((m.model_id, "an alias points into it since the plan"))
            elif e.seq != m.model_seq or e.head_version != m.head_version:
                left.append((m.model_id, "it changed since the plan (a new version, tag or metric): "
                             "the next run decides"))
            else:
                ops.append(EventOp(m.model_id, e.seq + 1, "delete", e.head_version, now, "", True, {}))
        requests = []
        for v in verdicts.values():
            e = st.models.get(v.model_id)
            if e is not None and e.seq == v.model_seq:
                requests.append(MarkRequest(v.model_id, v.version, "retire"))
        marks = mark_ops(st, requests, now)
        done = {(o.model_id, o.version) for o in marks}
        for key, v in verdicts.items():
            if key not in done:
                e = st.models.get(v.model_id)
                ref = e.versions[v.version - 1] if e is not None and v.version <= e.head_version else None
                left.append((v.ref, _version_left_out(e, ref, v)))
        outcome["left"] = left
        return ops + marks

    position, ops = store.ledger.commit(build)
    retired = [verdicts[(o.model_id, o.version)] for o in ops if isinstance(o, MarkOp)]
    models = [floors[o.model_id] for o in ops if isinstance(o, EventOp)]
    return (position if ops else None), retired, models, sorted(outcome.get("left", []))


def run_maintenance(store: ModelStore, *, dry_run: bool = False, now: datetime | None = None,
                    progress: ProgressFactory = no_progress) -> MaintenanceReport:
    """Apply the store's policy once: retire versions and models, then gc.

    Raises:
        NoPolicyError: the store has no policy (set one with :func:`~.policy.set_policy`).
        InvalidPolicyError: the stored policy cannot be applied by this cas-repo.
        MaintenanceError: another maintenance command runs on this machine's index.
    """
    now = now or utcnow()
    with maintenance_lock(store.catalog.path):
        record = current_policy(store)
        if record is None or record.policy is None:
            raise NoPolicyError()
        policy = record.policy
        plan = plan_maintenance(store, policy, now)
        left: list[tuple[str, str]] = []
        if dry_run:
            position, retired, models = None, list(plan.retire), list(plan.retire_models)
        else:
            position, retired, models, left = commit_plan(store, plan, now)
        gc_plan = plan_gc(store, grace=DEFAULT_GRACE, purge_older_than=policy.grace,
                          repack_below=policy.repack_below, now=now, progress=progress)
        problems: list[str] = []
        gc = None
        if gc_plan.refused:
            problems.append(refusal(gc_plan))
        elif not dry_run:
            gc = collect_garbage(store, gc_plan, progress=progress)
    return MaintenanceReport(now, dry_run, record, plan, position, tuple(retired), tuple(models), tuple(left),
                             gc_plan, gc, tuple(problems))


@dataclass
class LoopState:
    """How a ``maintain --every`` loop went: runs done, runs that failed."""

    runs: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)


def maintain_every(store: ModelStore, every: timedelta, stop: threading.Event, *,
                   on_report: Callable[[MaintenanceReport], None] = lambda r: None,
                   on_error: Callable[[Exception], None] = lambda e: None,
                   dry_run: bool = False, max_runs: int | None = None) -> LoopState:
    """Run :func:`run_maintenance` every ``every`` until ``stop`` is set (or ``max_runs`` ran).

    Each run reads the store's policy afresh. A failed run is handed to ``on_error`` and
    the loop goes on; a run in progress when ``stop`` is set finishes first (a run killed
    outright is safe too: the next one finishes the job).

    Raises:
        MaintenanceError: ``every`` is not positive.
    """
    if every <= timedelta(0):
        raise MaintenanceError(f"maintain_every needs a positive interval, got {format_duration(every)}; "
                               "pass one such as timedelta(hours=1)")
    state = LoopState()
    while not stop.is_set():
        try:
            on_report(run_maintenance(store, dry_run=dry_run))
        except Exception as exc:  # reported; the next run tries again
            state.failures += 1
            state.errors.append(str(exc))
            logger.info("maintain run %d failed: %s", state.runs + 1, exc)
            on_error(exc)
        state.runs += 1
        if max_runs is not None and state.runs >= max_runs:
            break
        stop.wait(every.total_seconds())
    return state
