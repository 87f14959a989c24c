"""Everyday commands: ls, log, show, rollback, delete, undelete, tag, stats, alias."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..metadata import ModelMetadata, split_ref, validate_model_id, validate_version
from ..text import cell_text, who
from . import choose
from .render import Output, human_bytes

if TYPE_CHECKING:
    from ..ports import ReadView
    from ..repository import ModelStore


def ref(text: str) -> str:
    """``MODEL_ID``, ``MODEL_ID@VERSION`` or ``MODEL_ID@ALIAS``, checked; the library resolves it."""
    split_ref(text)
    return text


def _aliases_text(aliases: dict[str, int], version: int | None = None) -> str:
    """``prod=3 shadow=2`` (or, given a version, the names pointing at it)."""
    if version is not None:
        return " ".join(a for a, v in aliases.items() if v == version)
    return " ".join(f"{a}={v}" for a, v in aliases.items())


def md_json(md: ModelMetadata) -> dict[str, Any]:
    return {
        "model_id": md.model_id, "version": md.version, "experiment_name": md.experiment_name,
        "model_type": md.model_type, "created_at": md.created_at, "digest": md.digest,
        "metrics": md.metrics, "hyperparameters": md.hyperparameters, "tags": md.tags,
        "parents": md.parents, "rollback_of": md.rollback_of, "deleted": md.deleted,
        "qlib_recorder_id": md.qlib_recorder_id, "lineage": md.lineage,
    }


def _as_of(store: ModelStore, args: argparse.Namespace) -> ReadView:
    """The store itself, or the store as of ``--as-of``."""
    return store.as_of(args.as_of) if getattr(args, "as_of", None) else store


def cmd_ls(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    if choose.wants_search(args):
        return choose.cmd_ls_search(args, out)

    with open_store(args) as store:
        view = _as_of(store, args)
        models = view.list_models(args.experiment, args.type, include_deleted=args.deleted)
        aliases = {m.model_id: view.aliases(m.model_id) for m in models}
    if out.json_mode:
        out.json([{**md_json(m), "aliases": aliases[m.model_id]} for m in models])
        return 0
    out.table(
        ["model_id", "version", "experiment", "type", "created_at", "metrics", "aliases", "deleted"],
        [[m.model_id, m.version, m.experiment_name, m.model_type, m.created_at, m.metrics,
          _aliases_text(aliases[m.model_id]), "yes" if m.deleted else ""] for m in models],
    )
    return 0


def _event_note(e, md: ModelMetadata | None) -> str:
    parts = []
    if e.kind == "rollback" and md is not None:
        parts.append(f"rollback to v{md.rollback_of}")
    elif e.kind in ("delete", "undelete"):
        parts.append(f"{e.kind}d")
    elif e.kind == "metrics":
        parts.append("logged " + ", ".join(f"{k}={v:.6g}" for k, v in e.metrics.items()))
    if e.tags:
        parts.append("tags " + ", ".join(f"{k}={v}" if v is not None else f"-{k}" for k, v in e.tags.items()))
    return "; ".join(parts)


def cmd_log(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    model_id = validate_model_id(args.model)
    with open_store(args) as store:
        versions = {m.saved_version(): m for m in store.history(model_id)}
        events = store.events(model_id)
    # The events that made a version (its save or rollback): only those carry its metadata.
    making = {e.seq for e in events if e.kind in ("save", "rollback")}
    if out.json_mode:
        out.json([{"seq": e.seq, "event": e.kind, "at": e.at, "version": e.version, "tags_set": e.tags,
                   "author": e.author, "host": e.host, "metrics_recorded": e.metrics,
                   **({"metadata": md_json(versions[e.version])} if e.seq in making else {})}
                  for e in events])
        return 0
    rows = []
    for e in events:
        md = versions.get(e.version) if e.seq in making else None
        rows.append([e.seq, e.at, e.kind, e.version, who(e.author, e.host), (md.digest or "")[:12] if md else "",
                     e.metrics if md else "", ",".join(md.parents) if md else "", _event_note(e, md)])
    out.table(["seq", "at (UTC)", "event", "version", "by", "digest", "metrics", "parents", "note"], rows)
    last = versions[max(versions)]
    if last.deleted:
        out.line(f"({model_id} is deleted; `cas-repo undelete {model_id}` brings it back)")
    return 0


def cmd_show(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    with open_store(args) as store:
        view = _as_of(store, args)
        md = view.get_model_metadata(ref(args.model))
        pointing = _aliases_text(view.aliases(md.model_id), md.version)
        made = next((e for e in store.events(md.model_id)
                     if e.version == md.version and e.kind in ("save", "rollback")), None)
    saved = {"saved_at": made.at if made else None, "saved_by": who(made.author, made.host) if made else None}
    if out.json_mode:
        out.json({**md_json(md), "aliases": pointing.split(), **saved,
                  "author": made.author if made else None, "host": made.host if made else None})
        return 0
    if made:
        saved["saved_at"] = cell_text(made.at)
    for k, v in {**md_json(md), **saved, "aliases": pointing}.items():
        out.line(f"{k:>17}: {v if v not in (None, {}, [], '') else '-'}")
    return 0


def cmd_rollback(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    model_id = validate_model_id(args.model)
    with open_store(args) as store:
        new = store.rollback(model_id, args.version)
    if out.json_mode:
        out.json({"model_id": model_id, "version": new, "rollback_of": args.version})
    else:
        out.line(f"{model_id}: version {new} = version {args.version}")
    return 0


def cmd_delete(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    model_id = validate_model_id(args.model)
    with open_store(args) as store:
        (store.undelete_model if args.command == "undelete" else store.delete_model)(model_id)
    if out.json_mode:
        out.json({"model_id": model_id, "deleted": args.command == "delete"})
    else:
        out.line(f"{model_id}: {args.command}d")
    return 0


def cmd_tag(args: argparse.Namespace, out: Output) -> int:
    from . import UsageError, open_store

    model_id, version, alias = split_ref(args.model)
    tags: dict[str, str | None] = {}
    for item in args.tags:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"tags are KEY=VALUE (or KEY= to remove), got {item!r}")
        tags[key] = value if sep and value else None
    with open_store(args) as store:
        if alias is not None:
            version = store.get_model_metadata(args.model).version
        store.set_tags(model_id, tags, version)
        md = store.get_model_metadata(model_id, version) if version else store.get_model_metadata(model_id)
    if out.json_mode:
        out.json({"model_id": model_id, "version": md.version, "tags": md.tags})
    else:
        out.line(f"{model_id}@{md.version}: {md.tags or 'no tags'}")
    return 0


def cmd_stats(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    with open_store(args) as store:
        st = store.stats()
    if out.json_mode:
        out.json({**{f: getattr(st, f) for f in st.__dataclass_fields__}, "dedup_ratio": st.dedup_ratio})
        return 0
    out.line(f"models {st.models}, versions {st.versions}")
    out.line(f"logical  {human_bytes(st.logical_bytes):>12}  (full copies of every version)")
    out.line(f"unique   {human_bytes(st.unique_bytes):>12}  (distinct chunks, uncompressed)")
    out.line(f"physical {human_bytes(st.physical_bytes):>12}  (packs on disk, {st.packs} packs)")
    out.line(f"dedup ratio {st.dedup_ratio:.1f}x")
    return 0


def _all_aliases(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    with open_store(args) as store:
        pointers = store.all_aliases()
    if out.json_mode:
        out.json([{f: getattr(p, f) for f in p.__dataclass_fields__} for p in pointers])
    else:
        out.table(["model_id", "alias", "version", "moved_at (UTC)", "by", "writer"],
                  [[p.model_id, p.alias, p.version, p.moved_at, who(p.author, p.host),
                    p.moved_by] for p in pointers])
    return 0


def cmd_alias(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    if args.action == "ls" and args.model is None:
        return _all_aliases(args, out)
    model_id = validate_model_id(args.model)
    with open_store(args) as store:
        if args.action == "set":
            before = store.set_alias(model_id, args.alias, validate_version(args.version))
            result = {"model_id": model_id, "alias": args.alias, "version": args.version, "from_version": before}
            text = f"{model_id}@{args.alias}: " + (f"version {before} -> {args.version}" if before not in
                                                   (None, args.version) else f"version {args.version}")
        elif args.action == "rm":
            before = store.remove_alias(model_id, args.alias)
            result = {"model_id": model_id, "alias": args.alias, "version": None, "from_version": before}
            text = f"{model_id}@{args.alias}: " + ("was not set" if before is None else f"removed (was {before})")
        elif args.action == "ls":
            aliases = store.aliases(model_id)
            if out.json_mode:
                out.json(aliases)
            else:
                out.table(["alias", "version"], [[a, v] for a, v in aliases.items()])
            return 0
        else:
            moves = store.alias_history(model_id, args.alias)
            if out.json_mode:
                out.json([{f: getattr(c, f) for f in c.__dataclass_fields__} for c in moves])
            else:
                out.table(["at (UTC)", "alias", "from", "to", "by", "writer", "log position"],
                          [[c.moved_at, c.alias, "-" if c.from_version is None else c.from_version,
                            "removed" if c.to_version is None else c.to_version,
                            who(c.author, c.host), c.moved_by, c.log_position]
                           for c in moves])
            return 0
    if out.json_mode:
        out.json(result)
    else:
        out.line(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list models (latest version of each)")
    p.add_argument("--experiment")
    p.add_argument("--type")
    p.add_argument("--deleted", action="store_true", help="include deleted models")
    p.add_argument("--as-of", metavar="TIME", help="as the store stood at TIME (ISO 8601, e.g. 2026-01-09T18:00Z)")
    choose.add_search_options(p)
    p.set_defaults(handler=cmd_ls)

    p = sub.add_parser("log", help="a model's history: who saved, rolled back, deleted, tagged, logged metrics")
    p.add_argument("model", metavar="MODEL_ID")
    p.set_defaults(handler=cmd_log)

    p = sub.add_parser("show", help="metadata of a version, and the aliases pointing at it")
    p.add_argument("model", metavar="MODEL_ID[@VERSION|@ALIAS]")
    p.add_argument("--as-of", metavar="TIME", help="as it stood at TIME (tags, deletion) (ISO 8601)")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("rollback", help="append a version equal to an older one")
    p.add_argument("model", metavar="MODEL_ID")
    p.add_argument("version", type=int)
    p.set_defaults(handler=cmd_rollback)

    for name, text in (("delete", "tombstone a model (bytes stay until gc)"), ("undelete", "bring a model back")):
        p = sub.add_parser(name, help=text)
        p.add_argument("model", metavar="MODEL_ID")
        p.set_defaults(handler=cmd_delete)

    p = sub.add_parser("tag", help="set tags on a version (KEY= removes)")
    p.add_argument("model", metavar="MODEL_ID[@VERSION]")
    p.add_argument("tags", nargs="+", metavar="KEY=VALUE")
    p.set_defaults(handler=cmd_tag)

    p = sub.add_parser("stats", help="logical vs physical bytes of the store")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("alias", help="named, movable pointers to versions (promote, roll back production)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    a = actions.add_parser("set", help="point ALIAS at VERSION (no model bytes are written)")
    a.add_argument("model", metavar="MODEL_ID")
    a.add_argument("alias", metavar="ALIAS")
    a.add_argument("version", type=int, metavar="VERSION")
    a = actions.add_parser("rm", help="remove ALIAS")
    a.add_argument("model", metavar="MODEL_ID")
    a.add_argument("alias", metavar="ALIAS")
    a = actions.add_parser("ls", help="a model's aliases; without MODEL_ID, every alias in the store")
    a.add_argument("model", metavar="MODEL_ID", nargs="?")
    a = actions.add_parser("log", help="every move of a model's aliases: who, when, from, to")
    a.add_argument("model", metavar="MODEL_ID")
    a.add_argument("alias", metavar="ALIAS", nargs="?")
    for a in actions.choices.values():
        a.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p.set_defaults(handler=cmd_alias)
