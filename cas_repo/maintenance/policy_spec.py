"""A store's retention policy as a value: its rules, their validation and canonical JSON (no I/O).

The policy a store holds is the canonical JSON object of a :class:`Policy` (every field,
defaults filled in), recorded by a log operation (:class:`~cas_repo.log.ops.PolicyOp`).
Users write it as a TOML or JSON file (docs/maintenance.md shows one); a policy that
cannot be applied as written is refused with :class:`~cas_repo.errors.InvalidPolicyError`
naming the field and what it allows.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..errors import InvalidPolicyError
from .common import format_duration, parse_duration

DEFAULT_GRACE = timedelta(days=7)
DEFAULT_MIN_AGE = timedelta(days=30)
DEFAULT_REPACK_BELOW = 0.5

FIELDS = ("keep_last", "keep_tagged", "keep_best", "retire_older_than", "retire_models_below", "grace", "where",
          "repack_below")
_BEST_FIELDS = ("metric", "n", "higher_is_better")
_FLOOR_FIELDS = ("metric", "threshold", "higher_is_better", "min_age")


def _fail(field: str, allowed: str, got: Any) -> InvalidPolicyError:
    return InvalidPolicyError(field, f"policy field {field} takes {allowed}, got {got!r:.80}")


def _int(field: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _fail(field, "a whole number of at least 1", v)
    return v


def _bool(field: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _fail(field, "true or false", v)
    return v


def _metric(field: str, v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _fail(field, "a metric name (as in v_versions.metrics, e.g. \"IC\")", v)
    return v


def _duration(field: str, v: Any) -> timedelta:
    if isinstance(v, timedelta):
        return v
    try:
        return parse_duration(v)
    except ValueError:
        raise _fail(field, "a duration such as \"36h\", \"30d\" or \"2w\"", v) from None


def _keys(field: str, obj: Any, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise _fail(field, "a table (an object) with " + ", ".join(allowed), obj)
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        where = f"{field}." if field else ""
        raise InvalidPolicyError(f"{where}{unknown[0]}", f"policy field {where}{unknown[0]} is unknown; allowed: "
                                 + ", ".join(allowed) + " (a newer cas-repo may know it: upgrade cas-repo)")
    return obj


@dataclass(frozen=True, slots=True)
class KeepBest:
    """Keep each model's ``n`` versions with the best ``metric`` (as ``v_versions`` shows it now)."""

    metric: str
    n: int
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        _metric("keep_best.metric", self.metric)
        _int("keep_best.n", self.n)
        _bool("keep_best.higher_is_better", self.higher_is_better)

    def describe(self) -> str:
        return f"best {self.n} by {self.metric}" + ("" if self.higher_is_better else " (lowest)")


@dataclass(frozen=True, slots=True)
class RetireModelsBelow:
    """Tombstone a whole model whose best ``metric`` over its versions is worse than
    ``threshold`` and whose newest version is at least ``min_age`` old."""

    metric: str
    threshold: float
    higher_is_better: bool = True
    min_age: timedelta = DEFAULT_MIN_AGE

    def __post_init__(self) -> None:
        _metric("retire_models_below.metric", self.metric)
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise _fail("retire_models_below.threshold", "a finite number", t)
        _bool("retire_models_below.higher_is_better", self.higher_is_better)
        if not isinstance(self.min_age, timedelta) or self.min_age < timedelta(0):
            raise _fail("retire_models_below.min_age", "a duration such as \"30d\"", self.min_age)

    def worse(self, best: float) -> bool:
        """Whether a model whose best value is ``best`` falls below the threshold."""
        return best < self.threshold if self.higher_is_better else best > self.threshold


@dataclass(frozen=True, slots=True)
class Policy:
    """What a store keeps, what it retires, and when the bytes of what it retired are freed.

    Attributes:
        keep_last: keep each model's newest N versions.
        keep_tagged: keep any version ever tagged ``KEY`` (any value) or ``KEY=VALUE``.
        keep_best: keep each model's best N versions by a metric.
        retire_older_than: retire only versions saved at least this long ago.
        retire_models_below: tombstone whole models that never reached a metric's threshold.
        grace: free the bytes of versions retired (or models tombstoned) this long ago.
        where: retire only versions matching this SQL predicate over ``v_versions``.
        repack_below: gc repacks packs whose live bytes are below this fraction (0: never).

    A version is retired when a rule that retires versions is given (``keep_last``,
    ``keep_best``, ``retire_older_than``, ``where``), no keep rule holds it, and every
    given condition (``retire_older_than``, ``where``) holds. Heads and versions an alias
    points at are always kept.
    """

    keep_last: int | None = None
    keep_tagged: tuple[str, ...] = ()
    keep_best: tuple[KeepBest, ...] = ()
    retire_older_than: timedelta | None = None
    retire_models_below: RetireModelsBelow | None = None
    grace: timedelta = DEFAULT_GRACE
    where: str | None = None
    repack_below: float = DEFAULT_REPACK_BELOW

    def __post_init__(self) -> None:
        for name in ("keep_tagged", "keep_best"):  # a list from a Python caller is taken as given
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.keep_last is not None:
            _int("keep_last", self.keep_last)
        if not isinstance(self.keep_tagged, tuple):
            raise _fail("keep_tagged", "a list of \"KEY\" or \"KEY=VALUE\"", self.keep_tagged)
        for item in self.keep_tagged:
            if not isinstance(item, str) or not item or item.startswith("="):
                raise _fail("keep_tagged", "a list of \"KEY\" or \"KEY=VALUE\"", item)
        if not isinstance(self.keep_best, tuple) or not all(isinstance(b, KeepBest) for b in self.keep_best):
            raise _fail("keep_best", "a list of {metric, n, higher_is_better}", self.keep_best)
        for name in ("retire_older_than", "grace"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, timedelta) or v < timedelta(0)):
                raise _fail(name, "a duration such as \"30d\"", v)
        if self.where is not None and (not isinstance(self.where, str) or not self.where.strip()):
            raise _fail("where", "an SQL boolean expression over v_versions", self.where)
        r = self.repack_below
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1:
            raise _fail("repack_below", "a fraction between 0 and 1 (0: never repack)", r)
        if not self.retires_versions and self.retire_models_below is None:
            raise InvalidPolicyError("", "a policy needs a rule that retires: keep_last, keep_best, "
                                     "retire_older_than, where or retire_models_below (keep_tagged only keeps)")

    @property
    def retires_versions(self) -> bool:
        """Whether any rule retires versions (keep_tagged alone only protects them)."""
        return (self.keep_last is not None or bool(self.keep_best) or self.retire_older_than is not None
                or self.where is not None)

    def tag_rule(self, ever_tags: tuple[str, ...] | list[str]) -> str | None:
        """The first ``keep_tagged`` rule a version ever tagged ``ever_tags`` matches, if any."""
        for rule in self.keep_tagged:
            if "=" in rule:
                if rule in ever_tags:
                    return rule
            elif any(t.split("=", 1)[0] == rule for t in ever_tags):
                return rule
        return None

    # -- JSON ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON object: every field set, defaults filled in, absent ones left out."""
        out: dict[str, Any] = {"grace": format_duration(self.grace), "repack_below": float(self.repack_below)}
        if self.keep_last is not None:
            out["keep_last"] = self.keep_last
        if self.keep_tagged:
            out["keep_tagged"] = list(self.keep_tagged)
        if self.keep_best:
            out["keep_best"] = [{"metric": b.metric, "n": b.n, "higher_is_better": b.higher_is_better}
                                for b in self.keep_best]
        if self.retire_older_than is not None:
            out["retire_older_than"] = format_duration(self.retire_older_than)
        if (f := self.retire_models_below) is not None:
            out["retire_models_below"] = {"metric": f.metric, "threshold": float(f.threshold),
                                          "higher_is_better": f.higher_is_better,
                                          "min_age": format_duration(f.min_age)}
        if self.where is not None:
            out["where"] = self.where
        return dict(sorted(out.items()))

    @classmethod
    def from_json(cls, obj: Any) -> Policy:
        """The policy an object (a parsed TOML or JSON file, or a stored policy) describes.

        Raises:
            InvalidPolicyError: a field is unknown or holds what it does not allow.
        """
        o = _keys("", obj, FIELDS)
        best = o.get("keep_best", [])
        if not isinstance(best, list):
            raise _fail("keep_best", "a list of {metric, n, higher_is_better}", best)
        tagged = o.get("keep_tagged", [])
        if isinstance(tagged, str) or not isinstance(tagged, list):
            raise _fail("keep_tagged", "a list of \"KEY\" or \"KEY=VALUE\"", tagged)
        floor = None
        if "retire_models_below" in o:
            f = _keys("retire_models_below", o["retire_models_below"], _FLOOR_FIELDS)
            for required in ("metric", "threshold"):
                if required not in f:
                    raise _fail(f"retire_models_below.{required}", "a value (it is required)", None)
            floor = RetireModelsBelow(f["metric"], f["threshold"], f.get("higher_is_better", True),
                                      _duration("retire_models_below.min_age", f.get("min_age", DEFAULT_MIN_AGE)))
        rules = []
        for b in best:
            b = _keys("keep_best", b, _BEST_FIELDS)
            for required in ("metric", "n"):
                if required not in b:
                    raise _fail(f"keep_best.{required}", "a value (it is required)", None)
            rules.append(KeepBest(b["metric"], b["n"], b.get("higher_is_better", True)))
        return cls(
            keep_last=o.get("keep_last"), keep_tagged=tuple(tagged), keep_best=tuple(rules),
            retire_older_than=(_duration("retire_older_than", o["retire_older_than"])
                               if o.get("retire_older_than") is not None else None),
            retire_models_below=floor, grace=_duration("grace", o.get("grace", DEFAULT_GRACE)),
            where=o.get("where"), repack_below=o.get("repack_below", DEFAULT_REPACK_BELOW))

    # -- for people -----------------------------------------------------------------------

    def to_toml(self) -> str:
        """The policy as a TOML file (what ``cas-repo policy show`` prints; it reads back as is)."""
        j = self.to_json()
        lines = []
        for key, value in j.items():
            if key not in ("keep_best", "retire_models_below"):
                lines.append(f"{key} = {_toml(value)}")
        for b in j.get("keep_best", []):
            lines += ["", "[[keep_best]]"] + [f"{k} = {_toml(v)}" for k, v in b.items()]
        if "retire_models_below" in j:
            lines += ["", "[retire_models_below]"]
            lines += [f"{k} = {_toml(v)}" for k, v in j["retire_models_below"].items()]
        return "\n".join(lines) + "\n"


def _toml(v: Any) -> str:
    # JSON's string escapes are TOML's too; booleans and numbers are written alike.
    return json.dumps(v, ensure_ascii=False)


def policy_diff(old: Policy | None, new: Policy | None) -> list[str]:
    """What changes from ``old`` to ``new``, one ``- field = value`` / ``+ field = value`` line each."""
    a = old.to_json() if old else {}
    b = new.to_json() if new else {}
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if key in a:
                out.append(f"- {key} = {_toml(a[key])}")
            if key in b:
                out.append(f"+ {key} = {_toml(b[key])}")
    return out


def load_policy_file(path: str | Path) -> Policy:
    """Read a policy from a TOML (``.toml``) or JSON file.

    Raises:
        InvalidPolicyError: the file cannot be read or parsed, or the policy is invalid.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidPolicyError("", f"cannot read the policy file {p}: {exc}; give a TOML or JSON file") from exc
    as_json = p.suffix.lower() == ".json" or (p.suffix.lower() != ".toml" and text.lstrip().startswith("{"))
    try:
        obj = json.loads(text) if as_json else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if as_json else "TOML"
        raise InvalidPolicyError("", f"the policy file {p} is not valid {kind}: {exc}; "
                                 "docs/maintenance.md shows a complete example") from exc
    return Policy.from_json(obj)
