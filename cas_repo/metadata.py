"""ModelMetadata (the seed's entity, extended) and the validation of what it carries."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidAliasError, InvalidMetadataError, InvalidModelIdError

_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# An alias starts with a lowercase letter, so ``model@7`` (a version) and ``model@prod``
# (an alias) never read the same; model ids cannot hold "@" at all.
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_METADATA_DEPTH = 32


def validate_model_id(model_id: object) -> str:
    """Return ``model_id`` if it is 1–128 chars of ``[A-Za-z0-9._-]`` starting alphanumeric.

    Raises:
        InvalidModelIdError: otherwise (the id is never used to build a path either way).
    """
    if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
        shown = repr(model_id)[:80]
        raise InvalidModelIdError(
            f"invalid model_id {shown}: use 1-128 characters of A-Z a-z 0-9 . _ - "
            "starting with a letter or digit (e.g. 'lgbm_csi300.v2')"
        )
    return model_id


def validate_version(version: object) -> int:
    """Return ``version`` if it is a positive int."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidMetadataError(f"a version is a positive integer, got {version!r}")
    return version


@dataclass
class ModelMetadata:
    """What the store knows about one version of a model.

    The first eight fields are the seed design's contract. ``version``, ``digest``
    (hex BLAKE3 of the version's content manifest) and ``parents`` are filled in by
    the store on save and load; callers may set ``parents`` (distinct ``"model_id@version"``
    strings, returned sorted) to record lineage such as continued training.
    """

    model_id: str
    experiment_name: str
    model_type: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    created_at: datetime
    qlib_recorder_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    version: int | None = None
    digest: str | None = None
    parents: list[str] = field(default_factory=list)
    deleted: bool = False
    rollback_of: int | None = None
    lineage: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The seed passes tags=None; keep that working.
        if self.tags is None:
            self.tags = {}
        if self.parents is None:
            self.parents = []
        if self.lineage is None:
            self.lineage = {}

    def saved_version(self) -> int:
        """``version``, which the store fills in on save and on every read.

        Raises:
            InvalidMetadataError: this metadata was never saved (nor read from a store).
        """
        if self.version is None:
            raise InvalidMetadataError(f"metadata of {self.model_id!r} has no version: save it first")
        return self.version

    def saved_digest(self) -> str:
        """``digest`` (of the content manifest), which the store fills in on save and on every read.

        Raises:
            InvalidMetadataError: this metadata was never saved (nor read from a store).
        """
        if self.digest is None:
            raise InvalidMetadataError(f"metadata of {self.model_id!r} has no digest: save it first")
        return self.digest


def metadata_json(md: ModelMetadata) -> dict[str, Any]:
    """``md`` as the JSON object a save operation stores (what :func:`check_metadata` admits)."""
    return {
        "model_id": md.model_id,
        "experiment_name": md.experiment_name,
        "model_type": md.model_type,
        "hyperparameters": md.hyperparameters,
        "metrics": md.metrics,
        "created_at": md.created_at.isoformat(),
        "qlib_recorder_id": md.qlib_recorder_id,
        "tags": md.tags,
        "parents": list(md.parents),
        "lineage": md.lineage,
    }


def validate_metrics(metrics: Any) -> dict[str, float]:
    """``metrics`` (name -> finite number) as stored: names checked, values as doubles.

    Raises:
        InvalidMetadataError: not a dict of text -> finite number.
    """
    if not isinstance(metrics, dict):
        raise InvalidMetadataError("metrics must be a dict of name -> number")
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise InvalidMetadataError(f"metric names must be strings, got {k!r}")
        if not k:
            raise InvalidMetadataError("a metric name is empty: name every metric")
        _check_text("a metric name", k)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidMetadataError(f"metric {k!r} must be a number, got {type(v).__name__}")
        try:
            as_double = float(v)  # metrics are stored as doubles
        except OverflowError as exc:
            raise InvalidMetadataError(f"metric {k!r} is an integer too large for a double") from exc
        if not math.isfinite(as_double):
            raise InvalidMetadataError(
                f"metric {k!r} is {as_double}: store only finite numbers (drop it, or record it as a tag)")
        out[k] = as_double
    return out


def check_metadata(md: ModelMetadata) -> None:
    """Validate ``md`` so what is stored is exactly what a load gives back.

    Raises:
        InvalidModelIdError / InvalidMetadataError: naming the offending field.
    """
    validate_model_id(md.model_id)
    for name in ("experiment_name", "model_type"):
        value = getattr(md, name)
        if not isinstance(value, str) or not value or len(value) > 256 or "\x00" in value:
            raise InvalidMetadataError(f"{name} must be a non-empty string of at most 256 chars, got {value!r:.80}")
        _check_text(name, value)
    if not isinstance(md.created_at, datetime):
        raise InvalidMetadataError(f"created_at must be a datetime, got {type(md.created_at).__name__}")
    try:
        utc(md.created_at)
    except (OverflowError, ValueError) as exc:
        raise InvalidMetadataError(f"created_at {md.created_at!r} has no UTC equivalent ({exc})") from exc
    if md.qlib_recorder_id is not None:
        if not isinstance(md.qlib_recorder_id, str):
            raise InvalidMetadataError("qlib_recorder_id must be a string or None")
        _check_text("qlib_recorder_id", md.qlib_recorder_id)
    _check_json("hyperparameters", md.hyperparameters, dict)
    _check_json("lineage", md.lineage, dict)
    validate_metrics(md.metrics)
    if not isinstance(md.tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in md.tags.items()
    ):
        raise InvalidMetadataError("tags must be a dict of str -> str")
    for name, value in md.tags.items():
        _check_text("tags", name)
        _check_text("tags", value)
    if not isinstance(md.parents, list):
        raise InvalidMetadataError("parents must be a list of 'model_id@version' strings")
    for p in md.parents:
        parse_ref(p)
    if len(set(md.parents)) != len(md.parents):
        # Lineage is a set of edges: a repeated parent could not come back as it was given.
        raise InvalidMetadataError(f"parents lists a version twice: {md.parents!r:.120}")


def _check_json(name: str, value: Any, kind: type, depth: int = 0) -> None:
    if depth == 0 and not isinstance(value, kind):
        raise InvalidMetadataError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
    if depth > MAX_METADATA_DEPTH:
        raise InvalidMetadataError(f"{name} is nested deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, str):
        _check_text(name, value)
        return
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMetadataError(f"{name} holds {value}; only finite numbers can be stored")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_json(name, item, kind, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidMetadataError(f"{name} has a non-string key {k!r:.60}")
            _check_text(name, k)
            _check_json(name, v, kind, depth + 1)
        return
    raise InvalidMetadataError(
        f"{name} holds a {type(value).__name__} ({value!r:.60}); only JSON values "
        "(str, int, float, bool, None, list, dict) can be stored"
    )


def _check_text(name: str, value: str) -> None:
    # Records are UTF-8: a lone surrogate (e.g. from a mis-decoded file name) cannot be stored.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMetadataError(
            f"{name} holds a string that is not valid Unicode ({value!r:.60}): {exc.reason}") from exc


def parse_ref(ref: object) -> tuple[str, int]:
    """Split ``"model_id@version"`` into its parts, validating both (:func:`split_ref`, with a version required)."""
    if isinstance(ref, str) and ref.count("@") == 1 and ref.partition("@")[2].isdigit():
        model_id, version, _ = split_ref(ref)
        if version is not None:
            return model_id, version
    raise InvalidMetadataError(f"a version reference looks like 'model_id@3', got {ref!r:.80}")


def validate_alias(alias: object) -> str:
    """Return ``alias`` if it matches ``[a-z][a-z0-9_-]{0,63}``.

    Raises:
        InvalidAliasError: otherwise.
    """
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidAliasError(f"invalid alias {alias!r:.80}: use 1-64 characters of a-z 0-9 _ - starting with "
                                "a lowercase letter (e.g. 'prod', 'shadow-2')")
    return alias


def split_ref(ref: str, version: int | None = None) -> tuple[str, int | None, str | None]:
    """``"model"``, ``"model@7"`` or ``"model@prod"`` as ``(model_id, version, alias)``.

    A model id holds no "@"; after the one "@" come either digits (a version) or an alias
    name, which starts with a lowercase letter. ``version`` is the caller's explicit one.

    Raises:
        InvalidAliasError: more than one "@", nothing after it, text that is neither a
            version nor an alias, or a reference given together with ``version``.
        InvalidModelIdError: the part before "@" is not a model id.
    """
    if not isinstance(ref, str) or "@" not in ref:
        return validate_model_id(ref), version, None
    model_id, _, tail = ref.partition("@")
    if "@" in tail or not tail:
        raise InvalidAliasError(f"{ref!r:.80} is not a reference: write 'model_id@7' (a version) or "
                                "'model_id@prod' (an alias), with exactly one '@'")
    if version is not None:
        raise InvalidAliasError(f"{ref!r:.80} already names a version; pass either the reference or "
                                "version=, not both")
    validate_model_id(model_id)
    if tail.isdigit():
        return model_id, validate_version(int(tail)), None
    if not _ALIAS.fullmatch(tail):
        raise InvalidAliasError(f"{ref!r:.80}: after '@' comes a version number or an alias name "
                                "([a-z][a-z0-9_-]{0,63}, e.g. 'prod')")
    return model_id, None, tail


def format_ref(model_id: str, version: int) -> str:
    return f"{model_id}@{version}"


def utc(dt: datetime) -> datetime:
    """``dt`` as an aware UTC datetime (naive values are taken as local time)."""
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.astimezone(UTC)
