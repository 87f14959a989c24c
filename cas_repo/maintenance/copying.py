"""copy: versions of one store appended to another as new versions; only the chunks the target lacks travel.

1. Resolve each reference at the source (``model``, ``model@3``, ``model@prod``) to one
   version, by the rules every load follows (:mod:`cas_repo.lookup`), and read its
   manifest there, verified.
2. Leave out the versions the target model already ends with copies of (the same source
   store, version and manifest, in the same order): a copy run again does nothing.
3. Commit each as the target model's next version through the target's own save path
   (:func:`cas_repo.saving.commit_manifest`): the target's state says which entries it
   holds, and only the others are read from the source (verified) and written, in one
   pack, before the commit. The metadata is the source version's as it stands (metrics
   logged after the save and tags included); its lineage records where it came from,
   under ``copied_from``. Parents name versions of the source store, so they move there.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Any

from .. import lookup
from ..compression import RAW
from ..digest import Digest
from ..errors import IntegrityError
from ..loading import PackGone
from ..location import MANIFEST, Location
from ..log.state import VersionRow
from ..manifest import Manifest
from ..metadata import ModelMetadata, check_metadata, format_ref, validate_model_id
from ..objects.store import NewEntry
from ..repository import ModelStore
from ..rows import to_metadata
from ..saving import commit_manifest
from .common import utcnow


@dataclass(frozen=True, slots=True)
class CopiedVersion:
    """One version's copy: where it came from and went (``target`` None: already there, skipped),
    and the entries (chunks and manifest) sent and left at home because the target had them."""

    source: str
    target: str | None
    entries_sent: int
    bytes_sent: int
    entries_skipped: int
    bytes_skipped: int

    @property
    def skipped(self) -> bool:
        return self.target is None


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy did, version by version; bytes are uncompressed entry bytes."""

    source: str
    target: str
    versions: tuple[CopiedVersion, ...]

    @property
    def copied(self) -> int:
        return sum(not v.skipped for v in self.versions)

    @property
    def bytes_sent(self) -> int:
        return sum(v.bytes_sent for v in self.versions)

    @property
    def bytes_skipped(self) -> int:
        return sum(v.bytes_skipped for v in self.versions)


@dataclass(frozen=True, slots=True)
class _Origin:
    row: VersionRow
    metadata: ModelMetadata
    manifest: Manifest
    manifest_bytes: bytes
    copied_from: dict[str, Any]


def copy_versions(source: ModelStore, target: ModelStore, refs: Sequence[str], *,
                  as_id: str | None = None) -> CopyReport:
    """Append the versions ``refs`` name in ``source`` to ``target``, in order (to ``as_id`` if given).

    Raises:
        ModelNotFoundError / AliasNotFoundError / ModelDeletedError: a reference names no version.
        ModelPurgedError: gc freed that version's content at the source.
        IntegrityError: an entry read from the source does not verify (nothing of it is written).
    """
    if as_id is not None:
        validate_model_id(as_id)
    origins = [_origin(source, r) for r in refs]
    skip = set()
    for model_id in dict.fromkeys(as_id or o.row.model_id for o in origins):
        mine = [i for i, o in enumerate(origins) if (as_id or o.row.model_id) == model_id]
        skip |= set(mine[:_already_copied(target, model_id, [origins[i] for i in mine])])
    done = []
    for i, o in enumerate(origins):
        ref = o.copied_from["ref"]
        if i in skip:
            done.append(CopiedVersion(ref, None, 0, 0, *_sizes(o, set())))
            continue
        done.append(_copy(source, target, o, as_id or o.row.model_id))
    return CopyReport(source.url, target.url, tuple(done))


def _origin(source: ModelStore, ref: str) -> _Origin:
    row = lookup.current_row(source.ledger, ref, None)
    data = bytes(_read(source, [row.manifest], row)[0][1])
    md = to_metadata(row)
    where: dict[str, Any] = {"store": source.url, "store_id": source.ledger.log.store_id(),
             "ref": format_ref(row.model_id, row.version), "manifest": row.manifest}
    if md.parents:
        where["parents"] = list(md.parents)
    return _Origin(row, md, Manifest.from_bytes(data), data, where)


def _read(source: ModelStore, digests: Sequence[str], row: VersionRow) -> list[tuple[Location, bytes | memoryview]]:
    """The verified entries ``digests`` of ``row``'s version at the source, with their locations."""
    for attempt in range(2):
        locs = source.reader.locate(digests, row)
        try:
            return list(zip(locs, source.reader.read(locs)))
        except PackGone as gone:
            if attempt:
                raise IntegrityError(f"pack {gone.pack} is missing from the source store; run `cas-repo fsck` "
                                     "there", expected=gone.digest, actual="missing") from None
            source.ledger.refresh()  # a concurrent gc moved the entries: its commit gives the new places
    raise AssertionError("unreachable")


def _already_copied(target: ModelStore, model_id: str, origins: list[_Origin]) -> int:
    """How many of ``origins`` (in order) the target model's newest versions already are copies of."""
    with target.ledger.current() as st:
        e = st.models.get(model_id)
        head = e.head_version if e else 0
    seen: dict[int, Any] = {}

    def origin_of(version: int) -> Any:
        if version not in seen:
            md = target.get_model_metadata(model_id, version)
            seen[version] = (md.digest, _key(md.lineage.get("copied_from")))
        return seen[version]

    for m in range(min(len(origins), head), 0, -1):
        if all(origin_of(head - m + 1 + i) == (o.row.manifest, _key(o.copied_from))
               for i, o in enumerate(origins[:m])):
            return m
    return 0


def _key(where: Any) -> Any:
    """What identifies a copy's origin: the source store's identity, version and manifest."""
    if not isinstance(where, dict):
        return None
    return where.get("store_id"), where.get("ref"), where.get("manifest")


def _sizes(o: _Origin, sent: Set[str]) -> tuple[int, int]:
    """Entries (and their bytes) of ``o``'s version not in ``sent``."""
    sizes = {c.digest.hex: c.size for c in o.manifest.chunks()}
    sizes[o.row.manifest] = len(o.manifest_bytes)
    return sum(1 for d in sizes if d not in sent), sum(n for d, n in sizes.items() if d not in sent)


def _copy(source: ModelStore, target: ModelStore, o: _Origin, model_id: str) -> CopiedVersion:
    md = ModelMetadata(
        model_id=model_id, experiment_name=o.metadata.experiment_name, model_type=o.metadata.model_type,
        hyperparameters=o.metadata.hyperparameters, metrics=dict(o.metadata.metrics),
        created_at=o.metadata.created_at, qlib_recorder_id=o.metadata.qlib_recorder_id, tags=dict(o.metadata.tags),
        lineage={**o.metadata.lineage, "copied_from": o.copied_from})
    check_metadata(md)
    sent: dict[str, int] = {}

    def fetch(digests: Set[str]) -> list[NewEntry]:
        # Asked only for what the target lacks: the rest never leaves the source.
        out = []
        if o.row.manifest in digests:
            out.append(NewEntry(Digest.from_hex(o.row.manifest), MANIFEST, o.manifest_bytes, compress=False))
        chunks = [d for d in dict.fromkeys(c.digest.hex for c in o.manifest.chunks()) if d in digests]
        for loc, data in _read(source, chunks, o.row) if chunks else ():
            # Kept as the source kept it: compressed where that paid there.
            out.append(NewEntry(loc.digest, loc.kind, data, compress=loc.codec != RAW))
        sent.update((e.digest.hex, len(e.data)) for e in out)
        return out

    version = commit_manifest(target.ledger, target.objects, utcnow, md, o.manifest,
                              Digest.from_hex(o.row.manifest), (), fetch)
    return CopiedVersion(o.copied_from["ref"], format_ref(model_id, version), len(sent), sum(sent.values()),
                         *_sizes(o, sent.keys()))
