"""Comparing versions: ``diff MODEL@A MODEL@B`` and ``lineage MODEL@V``."""

from __future__ import annotations

import argparse
from typing import Any

from .models import md_json, ref
from .render import Output, human_bytes


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.6g}"


def cmd_diff(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    with open_store(args) as store:
        ma, mb = store.get_model_metadata(ref(args.a)), store.get_model_metadata(ref(args.b))
        d = store.diff((ma.model_id, ma.saved_version()), (mb.model_id, mb.saved_version()))
    c = d.content
    if out.json_mode:
        out.json({
            "a": md_json(d.a), "b": md_json(d.b), "same_content": d.same_content,
            "hyperparameters": {k: {"a": x, "b": y} for k, (x, y) in d.hyperparameters.items()},
            "metrics": {k: {"a": x, "b": y, "delta": None if x is None or y is None else y - x}
                        for k, (x, y) in d.metrics.items()},
            "content": c,
        })
        return 0
    ra, rb = f"{d.a.model_id}@{d.a.version}", f"{d.b.model_id}@{d.b.version}"
    out.line(f"a: {ra}  {d.a.saved_digest()[:12]}  {d.a.experiment_name}/{d.a.model_type}")
    out.line(f"b: {rb}  {d.b.saved_digest()[:12]}  {d.b.experiment_name}/{d.b.model_type}")
    out.line()
    if d.hyperparameters:
        out.table(["hyperparameter", "a", "b"],
                  [[k, "-" if x is None else repr(x), "-" if y is None else repr(y)]
                   for k, (x, y) in d.hyperparameters.items()])
    else:
        out.line("hyperparameters: identical")
    out.line()
    if d.metrics:
        out.table(["metric", "a", "b", "delta"],
                  [[k, _num(x), _num(y), "-" if x is None or y is None else f"{y - x:+.6g}"]
                   for k, (x, y) in d.metrics.items()])
        out.line()
    total_b = c.shared_bytes + c.added_bytes
    share = f" ({100 * c.shared_bytes / total_b:.1f}% of b)" if total_b else ""
    if d.same_content:
        out.line("content: identical (same manifest)")
    out.line(f"bytes shared  {human_bytes(c.shared_bytes):>10}  in {c.shared_chunks} chunks{share}")
    out.line(f"bytes added   {human_bytes(c.added_bytes):>10}  in {c.added_chunks} chunks (only in b)")
    out.line(f"bytes removed {human_bytes(c.removed_bytes):>10}  in {c.removed_chunks} chunks (only in a)")
    return 0


def cmd_lineage(args: argparse.Namespace, out: Output) -> int:
    from . import UsageError, open_store

    with open_store(args) as store:
        md = store.get_model_metadata(ref(args.model))
        lin = store.lineage(md.model_id, md.version)
    if args.direction == "ancestors":
        groups = [("ancestor", lin.ancestors)]
    elif args.direction == "descendants":
        groups = [("descendant", lin.descendants)]
    elif args.direction == "both":
        groups = [("ancestor", lin.ancestors), ("descendant", lin.descendants)]
    else:  # pragma: no cover - argparse restricts choices
        raise UsageError(f"unknown direction {args.direction!r}")
    origin = md.lineage.get("copied_from") if isinstance(md.lineage, dict) else None
    if out.json_mode:
        out.json({"model_id": lin.model_id, "version": lin.version,
                  **{f"{name}s": list(nodes) for name, nodes in groups},
                  **({"copied_from": origin} if origin else {})})
        return 0
    if isinstance(origin, dict):
        out.line(f"{lin.model_id}@{lin.version} was copied from {origin.get('ref')} of {origin.get('store')} "
                 f"(store id {origin.get('store_id')}, manifest {str(origin.get('manifest'))[:12]})")
    rows = [[name, n.ref, n.depth, n.relation] for name, nodes in groups for n in nodes]
    if not rows:
        missing = "ancestors or descendants" if len(groups) == 2 else f"{groups[0][0]}s"
        out.line(f"{lin.model_id}@{lin.version} has no {missing} "
                 "(lineage comes from the parents given at save time and from rollbacks)")
        return 0
    out.table(["direction", "version", "depth", "relation"], rows)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="compare two versions: hyperparameters, metrics, bytes shared/added")
    p.add_argument("a", metavar="MODEL_ID[@VERSION|@ALIAS]")
    p.add_argument("b", metavar="MODEL_ID[@VERSION|@ALIAS]")
    p.set_defaults(handler=cmd_diff)

    p = sub.add_parser("lineage", help="ancestors and descendants of a version (parents and rollbacks)")
    p.add_argument("model", metavar="MODEL_ID[@VERSION|@ALIAS]")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ancestors", dest="direction", action="store_const", const="ancestors")
    g.add_argument("--descendants", dest="direction", action="store_const", const="descendants")
    p.set_defaults(handler=cmd_lineage, direction="both")
