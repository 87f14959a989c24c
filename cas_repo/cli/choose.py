"""Choosing a model: ``ls --where/--sort``, ``leaderboard METRIC`` and ``compare REF REF…``."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..filters import ENTITIES, parse_filter
from ..metadata import ModelMetadata, split_ref
from .render import Output, human_bytes


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def sort_key(text: str) -> str:
    """``--sort``'s text as an order key: a bare name is a metric (``IC``, ``Rank IC``);
    ``metrics.X``, ``params.X``, ``tags.X`` and ``attributes.X`` are taken as written."""
    head, dot, _ = text.partition(".")
    if dot and head.lower() in ENTITIES:
        return text
    return "metrics.`" + text.replace("`", "``") + "`"


def wants_search(args: argparse.Namespace) -> bool:
    """Whether ``ls`` was given any of the search options."""
    return bool(args.where or args.sort or args.versions or args.limit is not None)


def cmd_ls_search(args: argparse.Namespace, out: Output) -> int:
    """``ls`` with ``--where``, ``--sort``, ``--limit`` or ``--versions``: one search of the index."""
    from . import UsageError, open_store

    if getattr(args, "as_of", None):
        raise UsageError("--as-of does not combine with --where, --sort, --limit or --versions")
    f = parse_filter(args.where)
    if args.experiment:
        f = f.also("experiment_name", "=", args.experiment)
    if args.type:
        f = f.also("model_type", "=", args.type)
    order = [f"{sort_key(args.sort)} {'ASC' if args.asc else 'DESC'}"] if args.sort else None
    with open_store(args) as store:
        search = store.search_versions if args.versions else store.search_models
        found = search(f, order, args.limit, include_deleted=args.deleted)
        aliases = {m: store.aliases(m) for m in sorted({md.model_id for md in found})}
    # A version lists the aliases pointing at it; a model (its newest version) all of its own.
    pointing = [[a if args.versions else f"{a}={v}" for a, v in aliases[md.model_id].items()
                 if v == md.version or not args.versions] for md in found]
    if out.json_mode:  # as plain `ls` (a model's aliases) and `show` (those pointing at a version) give them
        out.json([{**dataclasses.asdict(md), "aliases": names if args.versions else aliases[md.model_id]}
                  for md, names in zip(found, pointing)])
        return 0
    metric = _sorted_metric(args.sort)
    head = ["model_id", "version"] + ([metric] if metric else []) + ["experiment", "type", "created_at",
                                                                        "metrics", "aliases", "deleted"]
    out.table(head, [[md.model_id, md.version] + ([_num(md.metrics.get(metric))] if metric else [])
                     + [md.experiment_name, md.model_type, md.created_at, md.metrics, " ".join(names),
                        "yes" if md.deleted else ""] for md, names in zip(found, pointing)])
    return 0


def _sorted_metric(sort: str | None) -> str | None:
    if not sort:
        return None
    from ..filters import parse_order_by

    (key,) = parse_order_by([sort_key(sort)])
    return key.key.name if key.key.entity == "metric" else None


def cmd_leaderboard(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    with open_store(args) as store:
        board = store.leaderboard(args.metric, args.experiment, not args.lower_is_better, args.where, args.limit,
                                  include_deleted=args.deleted)
    if out.json_mode:
        out.json(board)
        return 0
    if not board.standings:
        scope = f" in experiment {args.experiment!r}" if args.experiment else ""
        out.line(f"no version{scope} has metric {args.metric!r}" + (" and matches the filter" if args.where else ""))
        return 0
    others = sorted({k for st in board.standings for k in st.metrics} - {board.metric})
    out.table(["rank", "model_id", "version", board.metric, *others, "experiment", "aliases"],
              [[st.rank, st.model_id, st.version, _num(st.value), *(_num(st.metrics.get(k)) for k in others),
                st.experiment_name, " ".join(st.aliases)] for st in board.standings])
    out.line(f"(best version of each model by {board.metric}, "
             f"{'higher' if board.higher_is_better else 'lower'} is better)")
    return 0


def _cell(present: bool, v: Any) -> str:
    return "-" if not present else repr(v)


def cmd_compare(args: argparse.Namespace, out: Output) -> int:
    from . import UsageError, open_store

    for r in args.refs:
        if split_ref(r)[1:] == (None, None):
            raise UsageError(f"compare takes versions, MODEL_ID@VERSION or MODEL_ID@ALIAS, got {r!r}")
    with open_store(args) as store:
        c = store.compare(args.refs, lower_is_better=args.lower_is_better or ())
    refs = c.refs
    if out.json_mode:
        out.json({
            "versions": [{**_brief(md), "aliases": list(a)} for md, a in zip(c.versions, c.aliases)],
            "metrics": {m.name: {"values": dict(zip(refs, m.values)), "best": [refs[i] for i in m.best],
                                 "higher_is_better": m.higher_is_better} for m in c.metrics},
            "hyperparameters": {p.name: {r: (v if ok else None) for r, v, ok in zip(refs, p.values, p.present)}
                                for p in c.hyperparameters},
            "bytes": {"total": dict(zip(refs, c.shared.totals)),
                      "shared_with_others": dict(zip(refs, c.shared.with_others)),
                      "shared": {a: dict(zip(refs, row)) for a, row in zip(refs, c.shared.matrix)}},
        })
        return 0
    cols = [f"[{i + 1}] {r}" for i, r in enumerate(refs)]
    for i, (md, a) in enumerate(zip(c.versions, c.aliases)):
        out.line(f"[{i + 1}] {refs[i]}  {md.saved_digest()[:12]}  {md.experiment_name}/{md.model_type}"
                 + (f"  aliases: {' '.join(a)}" if a else ""))
    out.line()
    if c.metrics:
        out.table(["metric", *cols], [[m.name, *(_num(v) + (" *" if i in m.best and len(m.best) < len(refs) else "")
                                                 for i, v in enumerate(m.values))] for m in c.metrics])
        out.line("(* best; higher is better" + (", lower for " + ", ".join(sorted(args.lower_is_better))
                                                if args.lower_is_better else "") + ")")
    else:
        out.line("metrics: none recorded")
    out.line()
    if c.hyperparameters:
        out.table(["hyperparameter", *cols], [[p.name, *(_cell(ok, v) for v, ok in zip(p.values, p.present))]
                                              for p in c.hyperparameters])
    else:
        out.line("hyperparameters: identical")
    out.line()
    out.table(["bytes shared", *cols, "with any other"],
              [[cols[i], *(human_bytes(b) for b in row), human_bytes(c.shared.with_others[i])]
               for i, row in enumerate(c.shared.matrix)])
    return 0


def _brief(md: ModelMetadata) -> dict[str, Any]:
    return {"model_id": md.model_id, "version": md.version, "digest": md.digest,
            "experiment_name": md.experiment_name, "model_type": md.model_type, "created_at": md.created_at}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="each model's best version by a metric, ranked")
    p.add_argument("metric", metavar="METRIC")
    p.add_argument("--experiment")
    p.add_argument("--lower-is-better", action="store_true", help="rank the lowest value first (e.g. MSE)")
    p.add_argument("--where", metavar="FILTER", help="only versions matching FILTER (see `ls --where`)")
    p.add_argument("--limit", type=int, metavar="N", help="the first N models")
    p.add_argument("--deleted", action="store_true", help="include deleted models")
    p.set_defaults(handler=cmd_leaderboard)

    p = sub.add_parser("compare", help="versions side by side: metrics, differing hyperparameters, bytes shared")
    p.add_argument("refs", nargs="+", metavar="MODEL_ID@VERSION|@ALIAS", help="two or more, across models")
    p.add_argument("--lower-is-better", action="append", metavar="METRIC",
                   help="for this metric the lowest value is best (repeatable)")
    p.set_defaults(handler=cmd_compare)


def add_search_options(p: argparse.ArgumentParser) -> None:
    """``ls``'s search options (docs/search.md)."""
    p.add_argument("--where", metavar="FILTER",
                   help="MLflow-style filter, e.g. \"metrics.IC > 0.03 and tags.stage = 'prod'\"")
    p.add_argument("--sort", metavar="METRIC", help="sort by a metric (highest first; missing last), or by "
                   "params.NAME, tags.NAME, attributes.NAME")
    p.add_argument("--asc", action="store_true", help="with --sort: lowest first")
    p.add_argument("--limit", type=int, metavar="N", help="the first N rows")
    p.add_argument("--versions", action="store_true", help="every matching version, not each model's newest")
