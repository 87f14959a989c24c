"""Which versions and models a policy retires, and why each one it does not is kept (pure, no I/O).

The one engine behind ``cas-repo maintain`` and ``cas-repo retain``: the facts come from
the catalog (:func:`cas_repo.catalog.retention.candidates`), the verdicts go to a log
commit whose ``build`` checks each again on the state it lands on (:mod:`.maintain`).

A version is a candidate only while it is live (not retired, not purged) and its model
is not tombstoned. It is kept when any keep rule holds — it is its model's head, an
alias points at it, it is among the newest ``keep_last`` or the best ``keep_best``, it
was ever tagged as ``keep_tagged`` names — or when a condition of retirement does not
(it is younger than ``retire_older_than``, ``where`` does not match it); otherwise it is
retired.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from .common import format_duration
from .policy_spec import Policy, RetireModelsBelow

# The kinds of reason a version is kept for (the start of each reason's text).
HEAD, ALIAS, NEWEST, BEST, TAG, YOUNGER, UNMATCHED = "head", "alias", "newest", "best", "tag", "younger", "where"


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """What the rules look at of one version (one row of the retention candidates)."""

    model_id: str
    version: int
    saved_at: datetime
    logical_size: int = 0
    newer_versions: int = 0
    is_head: bool = False
    model_deleted: bool = False
    state: str = "live"
    ever_tags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    model_seq: int = 0
    matched: bool = True  # the policy's ``where`` holds (True when it has none)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], matched: bool = True) -> VersionFacts:
        """From a candidates row (as ``pyarrow.Table.to_pylist`` gives it)."""
        metrics = row.get("metrics") or {}
        return cls(row["model_id"], row["version"], row["saved_at"].replace(tzinfo=UTC), row["logical_size"],
                   row["newer_versions"], bool(row["is_head"]), bool(row["model_deleted"]), row["state"],
                   tuple(row["ever_tags"] or ()), tuple(row["aliases"] or ()),
                   dict(metrics.items() if isinstance(metrics, Mapping) else metrics), row.get("model_seq") or 0,
                   matched)

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"


@dataclass(frozen=True, slots=True)
class VersionVerdict:
    """A version the policy retires (``retire``), or keeps: ``reasons`` say why, either way."""

    model_id: str
    version: int
    saved_at: datetime
    logical_size: int
    retire: bool
    reasons: tuple[str, ...]
    model_seq: int = 0

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)

    @property
    def only_protected(self) -> bool:
        """Kept by an alias or a tag alone: every other rule would retire it."""
        return not self.retire and all(r.startswith((ALIAS, TAG)) for r in self.reasons)


@dataclass(frozen=True, slots=True)
class ModelVerdict:
    """A model ``retire_models_below`` tombstones (``retire``), or keeps though it looked at it."""

    model_id: str
    retire: bool
    reason: str
    best: float | None
    head_version: int
    model_seq: int = 0


def alias_reason(aliases: Sequence[str]) -> str:
    """``alias prod`` / ``aliases prod, shadow``."""
    return ("alias " if len(aliases) == 1 else "aliases ") + ", ".join(aliases)


def _value(facts: VersionFacts, metric: str) -> float | None:
    v = facts.metrics.get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _best_of(versions: Sequence[VersionFacts], policy: Policy) -> dict[int, list[str]]:
    """version -> the keep_best rules that keep it (ties go to the newer version)."""
    out: dict[int, list[str]] = {}
    for rule in policy.keep_best:
        scored = [(v, x) for v in versions if (x := _value(v, rule.metric)) is not None]
        scored.sort(key=lambda p: (-p[1] if rule.higher_is_better else p[1], -p[0].version))
        for v, _ in scored[:rule.n]:
            out.setdefault(v.version, []).append(rule.describe())
    return out


def decide_versions(facts: Iterable[VersionFacts], policy: Policy, now: datetime,
                    skip_models: Iterable[str] = ()) -> list[VersionVerdict]:
    """A verdict for every live version of every live model (none if no rule retires versions).

    ``skip_models``: models being tombstoned in the same run (their versions go with them).
    """
    if not policy.retires_versions:
        return []
    skip = set(skip_models)
    out = []
    ordered = sorted(facts, key=lambda f: (f.model_id, f.version))
    for model_id, group in groupby(ordered, key=lambda f: f.model_id):
        versions = list(group)
        if model_id in skip or any(v.model_deleted for v in versions):
            continue
        live = [v for v in versions if v.state == "live"]
        best = _best_of(live, policy)
        for v in live:
            out.append(_verdict(v, policy, now, best.get(v.version, [])))
    return out


def _verdict(v: VersionFacts, policy: Policy, now: datetime, best: list[str]) -> VersionVerdict:
    kept: list[str] = []
    if v.is_head:
        kept.append(HEAD)
    if v.aliases:
        kept.append(alias_reason(v.aliases))
    if policy.keep_last is not None and v.newer_versions < policy.keep_last:
        kept.append(f"{NEWEST} {policy.keep_last}")
    kept += best
    if (rule := policy.tag_rule(v.ever_tags)) is not None:
        kept.append(f"{TAG} {rule}")
    if policy.retire_older_than is not None and now - v.saved_at < policy.retire_older_than:
        kept.append(f"{YOUNGER} than {format_duration(policy.retire_older_than)}")
    if not v.matched:
        kept.append(f"{UNMATCHED} does not match")
    if kept:
        return VersionVerdict(v.model_id, v.version, v.saved_at, v.logical_size, False, tuple(kept), v.model_seq)
    why = []
    if policy.keep_last is not None:
        why.append(f"not among the newest {policy.keep_last}")
    why += [f"not the {b.describe()}" for b in policy.keep_best]
    if policy.retire_older_than is not None:
        why.append(f"older than {format_duration(policy.retire_older_than)}")
    if policy.where is not None:
        why.append("where matches")
    return VersionVerdict(v.model_id, v.version, v.saved_at, v.logical_size, True, tuple(why), v.model_seq)


def decide_models(facts: Iterable[VersionFacts], rule: RetireModelsBelow, now: datetime) -> list[ModelVerdict]:
    """A verdict for every live model: retired when its best ``rule.metric`` over all its
    versions is worse than the threshold, its newest version is at least ``rule.min_age``
    old, and no alias points into it; a model without the metric is kept."""
    ordered = sorted(facts, key=lambda f: (f.model_id, f.version))
    out = []
    for _, group in groupby(ordered, key=lambda f: f.model_id):
        versions = list(group)
        if not any(v.model_deleted for v in versions):
            out.append(_model_verdict(versions, rule, now))
    return out


def _model_verdict(versions: list[VersionFacts], rule: RetireModelsBelow, now: datetime) -> ModelVerdict:
    head = max(versions, key=lambda v: v.version)
    values = [x for v in versions if (x := _value(v, rule.metric)) is not None]
    best = (max(values) if rule.higher_is_better else min(values)) if values else None
    aliases = sorted({a for v in versions for a in v.aliases})
    below = "below" if rule.higher_is_better else "above"
    retire = False
    if best is None:
        reason = f"no version has {rule.metric}"
    elif not rule.worse(best):
        reason = f"best {rule.metric} {best:g} reaches {rule.threshold:g}"
    elif aliases:
        reason = f"best {rule.metric} {best:g} is {below} {rule.threshold:g}, but {alias_reason(aliases)} pins it"
    elif now - head.saved_at < rule.min_age:
        reason = (f"best {rule.metric} {best:g} is {below} {rule.threshold:g}, but its newest version is younger "
                  f"than {format_duration(rule.min_age)}")
    else:
        retire, reason = True, f"best {rule.metric} {best:g} is {below} {rule.threshold:g}"
    return ModelVerdict(head.model_id, retire, reason, best, head.version, head.model_seq)
