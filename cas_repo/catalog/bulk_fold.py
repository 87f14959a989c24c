"""Folding a long run of saves (and deletes/undeletes) into the catalog at Arrow speed.

Row for row what :func:`.writes.fold_save` and :func:`.writes.fold_event` write,
built as Arrow tables and inserted by :func:`~cas_repo.catalog.bulk.bulk_import`, which
derives each touched model's head row from its versions and events the way the
commits keep it. One commit per operation costs ~10 statements (~20 ms on a new index);
this costs a few statements per table for the whole run, which is what lets a new
machine index a store of 100,000 versions in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

from ..log.ops import EventOp, SaveOp
from .bulk import bulk_import
from .catalog import Session
from .convert import naive_utc

# Below this many operations a run is applied one commit call at a time.
BULK_MIN = 64


def bulkable(op: object) -> bool:
    """Saves, rollbacks, deletes and undeletes; tag events and the rest go one by one."""
    return isinstance(op, SaveOp) or (isinstance(op, EventOp) and not op.set_tags
                                          and op.kind in ("delete", "undelete"))


def _ts() -> pa.DataType:
    return pa.timestamp("us")


def fold_run(s: Session, run: Sequence[tuple[int, SaveOp | EventOp]], alias_moves: Sequence[tuple] = ()) -> None:
    """Insert the rows of ``run`` (admitted operations with their commit's position, in log
    order) and ``alias_moves`` (rows of :func:`cas_repo.catalog.feed.alias_row`) in one bulk import."""
    saves = [o for _, o in run if isinstance(o, SaveOp)]
    packs: dict[str, tuple] = {}
    objects: dict[str, tuple] = {}
    chunks: dict[str, tuple] = {}
    for c in saves:
        for p, size, n in c.new_packs:
            packs.setdefault(p, (p, size, n, naive_utc(c.at)))
        for l in c.new_locations:
            objects.setdefault(l.digest.hex, (l.digest.hex, l.kind, l.pack.hex, l.offset, l.stored_size, l.size,
                                              l.codec))
        if c.manifest_chunks is not None:
            chunks.setdefault(c.manifest, c.manifest_chunks)
    lineage = sorted({(c.model_id, c.version, pm, pv, "parent") for c in saves for pm, pv in c.parents}
                     | {(c.model_id, c.version, c.model_id, c.rollback_of, "rollback_of")
                        for c in saves if c.rollback_of is not None})
    tags = [(c.model_id, c.version, k, c.tags[k]) for c in saves for k in sorted(c.tags)]
    tables = {
        "packs": _table(["pack", "size", "entries", "created_at"], list(packs.values()),
                        [pa.string(), pa.int64(), pa.int32(), _ts()]),
        "objects": _table(["digest", "kind", "pack", "offset", "stored_size", "size", "codec"],
                          list(objects.values()),
                          [pa.string(), pa.int8(), pa.string(), pa.int64(), pa.int64(), pa.int64(), pa.int8()]),
        "manifest_chunks": _table(["manifest", "seq", "chunk", "size"],
                                  [(m, i, d, n) for m, cs in chunks.items() for i, (d, n) in enumerate(cs)],
                                  [pa.string(), pa.int32(), pa.string(), pa.int64()]),
        "lineage": _table(["model_id", "version", "parent_model", "parent_version", "relation"], lineage,
                          [pa.string(), pa.int32(), pa.string(), pa.int32(), pa.string()]),
        "tags": _table(["model_id", "version", "key", "value"], tags,
                       [pa.string(), pa.int32(), pa.string(), pa.string()]),
        "versions": _versions(saves),
        "events": _table(["model_id", "seq", "kind", "version", "event_at", "record", "log_position"],
                         [(o.model_id, o.seq, o.kind, o.version, naive_utc(o.at), o.event_id, p) for p, o in run],
                         [pa.string(), pa.int32(), pa.string(), pa.int32(), _ts(), pa.string(), pa.int64()]),
        "event_tags": _table(["model_id", "seq", "version", "key", "value"],
                             [(c.model_id, c.seq, c.version, k, c.tags[k]) for c in saves for k in sorted(c.tags)],
                             [pa.string(), pa.int32(), pa.int32(), pa.string(), pa.string()]),
    }
    if alias_moves:
        tables["alias_moves"] = _table(
            ["log_position", "op_index", "model_id", "alias", "from_version", "to_version", "moved_at", "moved_by"],
            list(alias_moves), [pa.int64(), pa.int32(), pa.string(), pa.string(), pa.int32(), pa.int32(), _ts(),
                                pa.string()])
    # Deletes and undeletes only add events: bulk_import derives the head's tombstone
    # from the last non-tag event, as fold_event sets it.
    bulk_import(s, tables)


def _table(names: list[str], rows: list[tuple], types: list[pa.DataType]) -> pa.Table:
    cols = list(zip(*rows)) if rows else [()] * len(names)
    return pa.table({n: pa.array(list(c), t) for n, c, t in zip(names, cols, types)})


def _versions(saves: Sequence[SaveOp]) -> pa.Table:
    metrics = pa.array([[(k, float(v)) for k, v in c.metrics.items()] for c in saves],
                       pa.map_(pa.string(), pa.float64()))
    rows = [(c.model_id, c.version, c.manifest, c.event_id, c.kind, c.rollback_of, c.experiment_name, c.model_type,
             naive_utc(c.created_at), naive_utc(c.at), c.qlib_recorder_id, c.logical_size, c.new_bytes,
             json.dumps(c.hyperparameters), json.dumps(c.lineage), c.metadata_json) for c in saves]
    names = ["model_id", "version", "manifest", "record", "kind", "rollback_of", "experiment_name", "model_type",
             "created_at", "saved_at", "qlib_recorder_id", "logical_size", "new_bytes", "hyperparameters",
             "lineage", "metadata_json"]
    types: list[pa.DataType] = [
        pa.string(), pa.int32(), pa.string(), pa.string(), pa.string(), pa.int32(), pa.string(), pa.string(),
        _ts(), _ts(), pa.string(), pa.int64(), pa.int64(), pa.string(), pa.string(), pa.string()]
    t = _table(names, rows, types)
    return t.append_column("metrics", metrics)
