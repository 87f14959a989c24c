"""Maintenance commands: audit, fsck, gc, retain, rebuild-catalog (each renders one library report)."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from ..errors import RetentionPolicyError
from .render import Output, human_bytes

EXIT_OK, EXIT_PROBLEMS = 0, 1


def duration_arg(text: str) -> timedelta:
    from ..maintenance import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a fraction between 0 and 1, got {text!r}")
    return value


def cmd_audit(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance import audit, render_html
    from . import open_store

    with open_store(args) as store:
        report = audit(store, walk=not args.no_walk, progress=out.progress)
    if args.html:
        Path(args.html).write_text(render_html(report), encoding="utf-8")
    if out.json_mode:
        out.json(report.to_json())
    else:
        _render_audit(report, out, args.versions)
        if args.html:
            out.line(f"HTML report written to {args.html}")
    return EXIT_PROBLEMS if report.walk is not None and not report.walk.agrees else EXIT_OK


def _render_audit(r, out: Output, versions: bool) -> None:
    t = r.totals
    out.line(f"models {t.models} ({t.deleted_models} deleted), versions {t.versions} stored "
             f"(+{t.purged_versions} purged), {t.objects} objects in {t.packs} packs")
    out.line(f"logical  {human_bytes(t.logical_bytes):>12}  full copies of every stored version")
    out.line(f"physical {human_bytes(t.physical_bytes):>12}  pack files (dedup ratio {t.dedup_ratio:.1f}x)")
    out.line(f"content  {human_bytes(t.content_stored_bytes):>12}  distinct chunks and manifests, as stored")
    out.line(f"history  {human_bytes(r.log.total_bytes):>12}  {r.log.commits} log commits, {r.log.checkpoints} "
             "checkpoints (not in packs)")
    out.line(f"garbage  {human_bytes(max(t.unreferenced_bytes, 0)):>12}  unreferenced (gc and repack free it)")
    sections = [
        ("experiments", ["experiment", "models", "versions", "logical", "physical", "unique", "shared", "ratio"],
         [[e.experiment_name, e.models, e.versions, human_bytes(e.logical_bytes), human_bytes(e.physical_bytes),
           human_bytes(e.unique_bytes), human_bytes(e.shared_bytes), f"{e.dedup_ratio:.1f}"] for e in r.experiments]),
        ("models", ["model_id", "versions", "logical", "physical", "reclaimable", "shared", "ratio", "deleted"],
         [[m.model_id, m.versions, human_bytes(m.logical_bytes), human_bytes(m.physical_bytes),
           human_bytes(m.reclaimable_bytes), human_bytes(m.shared_bytes), f"{m.dedup_ratio:.1f}",
           "yes" if m.deleted else ""] for m in r.models]),
        ("most-shared chunks", ["chunk", "size", "versions", "models", "saved"],
         [[c.digest[:16], human_bytes(c.size), c.versions, c.models, human_bytes(c.bytes_saved)]
          for c in r.shared_chunks[:10]]),
        ("identical versions across model_ids", ["manifest", "size", "versions"],
         [[i.manifest[:16], human_bytes(i.logical_bytes), " ".join(i.refs)] for i in r.identical_versions]),
        ("pinned by aliases (gc and retention keep these)", ["alias", "version", "logical", "unique"],
         [[f"{p.model_id}@{p.alias}", p.version, human_bytes(p.logical_bytes), human_bytes(p.unique_bytes)]
          for p in r.pins]),
    ]
    if versions:
        sections.append(("versions", ["version", "logical", "physical", "unique", "shared"],
                         [[f"{v.model_id}@{v.version}", human_bytes(v.logical_bytes), human_bytes(v.physical_bytes),
                           human_bytes(v.unique_bytes), human_bytes(v.shared_bytes)] for v in r.versions]))
    for title, headers, rows in sections:
        if rows:
            out.line()
            out.line(f"{title}:")
            out.table(headers, rows)
    if r.walk is not None:
        out.line()
        if r.walk.agrees:
            out.line(f"object store walk agrees: {r.walk.packs} packs, {human_bytes(r.walk.pack_bytes)}, "
                     f"{r.walk.distinct_entries} distinct objects")
        else:
            out.line("object store walk DISAGREES with the catalog (run `cas-repo fsck`):")
            for d in r.walk.differences:
                out.line(f"  {d}")


def cmd_fsck(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance import DEFAULT_GRACE, fsck_store

    grace = DEFAULT_GRACE if args.grace is None else args.grace
    report = fsck_store(args.repo, catalog=args.catalog, full=args.full, repair=args.repair, grace=grace,
                        progress=out.progress, repair_from=args.repair_from)
    bad = report.errors + (report.warnings if args.strict else ())
    if out.json_mode:
        out.json({"clean": report.clean, "full": report.full, "repair": report.repair, "commits": report.commits,
                  "packs": report.packs, "pack_bytes": report.pack_bytes, "objects": report.objects,
                  "events": report.events, "hashed_bytes": report.hashed_bytes, "in_flight_packs": report.in_flight,
                  "findings": [{"code": f.code, "severity": f.severity, "subject": f.subject, "detail": f.detail,
                                "meaning": f.meaning, "action": f.action, "affected": f.affected,
                                "repaired": f.repaired} for f in report.findings],
                  "restored": list(report.restored), "unrestored": list(report.unrestored),
                  "set_aside": list(report.set_aside)})
        return EXIT_PROBLEMS if bad else EXIT_OK
    for f in report.findings:
        state = "repaired" if f.repaired else f.severity
        out.line(f"{state}: {f.code} {f.subject}" + (f" ({f.detail})" if f.detail else ""))
        out.line(f"    means: {f.meaning}")
        if f.affected:
            out.line(f"    affects: {', '.join(f.affected)}")
        if not f.repaired:
            out.line(f"    do: {f.action}")
    for key in report.restored:
        out.line(f"restored from the copy: {key}")
    for aside in report.set_aside:
        out.line(f"set aside (damaged, kept): {aside}")
    for reason in report.unrestored:
        out.line(f"not restored: {reason}")
    mode = "full (every byte re-hashed)" if report.full else "quick (use --full to re-hash every byte)"
    out.line(f"fsck {mode}: {report.commits} log commits, {report.packs} packs, {human_bytes(report.pack_bytes)}, "
             f"{report.objects} objects, {report.events} events; {len(report.errors)} errors, "
             f"{len(report.warnings)} warnings"
             + (f", {sum(f.repaired for f in report.findings)} repaired" if report.repair else "")
             + (f", {len(report.restored)} object(s) restored from {args.repair_from}" if args.repair_from else ""))
    return EXIT_PROBLEMS if bad else EXIT_OK


def cmd_gc(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance import DEFAULT_GRACE, format_duration, run_gc
    from ..maintenance.collect import refusal
    from ..maintenance.gc import DEFAULT_REPACK_BELOW
    from . import UsageError, open_store

    grace = DEFAULT_GRACE if args.grace is None else args.grace
    if args.no_commit:
        if args.purge_deleted_older_than is not None or args.repack_below is not None:
            raise UsageError("--no-commit takes only --grace and --dry-run: purges and repacks need a commit")
        return _gc_no_commit(args, out, grace)
    repack_below = DEFAULT_REPACK_BELOW if args.repack_below is None else args.repack_below
    with open_store(args) as store:
        report = run_gc(store, dry_run=args.dry_run, grace=grace, purge_older_than=args.purge_deleted_older_than,
                        repack_below=repack_below, progress=out.progress)
    plan = report.plan
    if out.json_mode:
        out.json({"dry_run": report.dry_run, "refused": plan.refused, "plan": plan, "position": report.position,
                  "freed_bytes": report.freed_bytes, "purged": report.purged, "deleted": report.deleted,
                  "repacked": report.repacked, "new_packs": report.new_packs, "temp_removed": report.temp_removed,
                  "skipped": report.skipped})
        return EXIT_PROBLEMS if plan.refused else EXIT_OK
    out.line(f"gc plan at log position {plan.position} (grace {format_duration(grace)}): purge "
             f"{len(plan.purge)} versions, delete {len(plan.delete) + len(plan.leftovers)} packs and "
             f"{len(plan.temp_files)} temp files ({human_bytes(plan.delete_bytes)}), repack {len(plan.repack)} "
             f"packs (frees {human_bytes(plan.repack_bytes)})")
    if plan.fresh:
        out.line(f"kept: {len(plan.fresh)} packs no commit mentions yet, inside the grace period (saves in flight)")
    for c in plan.purge:
        out.line(f"  purge {c.model_id}@{c.version} ({c.reason} {c.since:%Y-%m-%d})")
    if plan.refused:
        out.error(refusal(plan))
        return EXIT_PROBLEMS
    if report.dry_run:
        out.line("dry run: nothing changed")
        return EXIT_OK
    out.line(f"freed {human_bytes(report.freed_bytes)}: purged {len(report.purged)} versions, deleted "
             f"{len(report.deleted)} packs and {len(report.temp_removed)} temp files; repacked "
             f"{len(report.repacked)} packs into {len(report.new_packs)}"
             + (f" (log commit {report.position})" if report.position else ""))
    for pack, why in report.skipped:
        out.line(f"  {pack[:16]}: {why}")
    return EXIT_OK


def _gc_no_commit(args: argparse.Namespace, out: Output, grace: timedelta) -> int:
    from ..maintenance import format_duration, reclaim_space
    from ..maintenance.reclaim import FLOOR
    from . import open_store

    with open_store(args) as store:
        report = reclaim_space(store, grace=grace, dry_run=args.dry_run)
    if out.json_mode:
        out.json({"dry_run": report.dry_run, "position": report.position, "freed_bytes": report.freed_bytes,
                  "files": report.files, "temp_removed": report.temp_files, "orphans_deleted": report.orphans,
                  "leftovers_deleted": report.leftovers, "kept": report.kept})
        return EXIT_OK
    verb = "would free" if report.dry_run else "freed"
    out.line(f"gc --no-commit (grace {format_duration(grace)}, no log commit written): {verb} "
             f"{human_bytes(report.freed_bytes)} in {report.files} files: {len(report.temp_files)} temp files, "
             f"{len(report.orphans)} packs no commit mentions, {len(report.leftovers)} packs a gc forgot")
    if report.kept:
        out.line(f"kept: {len(report.kept)} packs no commit mentions ({human_bytes(sum(p.size for p in report.kept))}),"
                 f" younger than the grace period or {format_duration(FLOOR)}: a save may still commit them")
    if not report.dry_run:
        out.line("next: free the rest with `cas-repo delete MODEL` or `cas-repo retain ...`, then `cas-repo gc`")
    return EXIT_OK


def cmd_retain(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance import RetentionPolicy, apply_retention, restore_versions
    from ..metadata import parse_ref, validate_model_id
    from . import UsageError, open_store

    if args.restore:
        refs = [parse_ref(r) if "@" in r else (validate_model_id(r), None) for r in args.restore]
        with open_store(args) as store:
            rep = restore_versions(store, refs)
        if out.json_mode:
            out.json(rep)
        else:
            out.line(f"restored: {' '.join(rep.restored) or 'none'}")
            if rep.not_retired:
                out.line(f"not retired: {' '.join(rep.not_retired)}")
            if rep.purged:
                out.line(f"purged (content gone, cannot be restored): {' '.join(rep.purged)}")
        return EXIT_OK
    try:
        policy = RetentionPolicy(args.keep_last, tuple(args.keep_tagged), args.where, args.older_than)
        with open_store(args) as store:
            report = apply_retention(store, policy, dry_run=args.dry_run)
    except RetentionPolicyError as exc:
        raise UsageError(str(exc)) from exc
    if out.json_mode:
        out.json(report)
        return EXIT_OK
    verb = "would retire" if report.dry_run else "retired"
    out.line(f"policy {report.policy}: {verb} {len(report.retired)} versions "
             f"({human_bytes(report.retired_bytes)} logical), kept {report.kept}")
    for v in report.retired:
        out.line(f"  {verb} {v.ref} (saved {v.saved_at:%Y-%m-%d})")
    for v in report.protected:
        by = v.protected_by
        why = (f"{by} pins it" if by.startswith("alias ") else f"{by} pin it" if by.startswith("aliases ")
               else f"protected by --keep-tagged ({by})")
        out.line(f"  kept {v.ref}: {why}")
    if report.retired and not report.dry_run:
        out.line("undo with `cas-repo retain --restore MODEL@VERSION`; "
                 "`cas-repo gc --purge-deleted-older-than AGE` frees the bytes")
    return EXIT_OK


def cmd_rebuild(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance import rebuild_catalog

    report = rebuild_catalog(args.repo, catalog=args.catalog, progress=out.progress)
    if out.json_mode:
        out.json(report)
        return EXIT_PROBLEMS if report.problems else EXIT_OK
    out.line(f"rebuilt {report.catalog} from the log (up to commit {report.position}): {report.models} models, "
             f"{report.events} events, {report.objects} objects in {report.packs} packs")
    if report.before is not None:
        out.line(f"the old index had {report.before[0]} models, {report.before[1]} events")
    for p in report.problems:
        out.line(f"  problem: {p}")
    return EXIT_PROBLEMS if report.problems else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    # Defaults are None here and the library's constants are read by the commands: importing
    # cas_repo.maintenance (~50 ms) for them would slow every command, `--help` included.
    p = sub.add_parser("audit", help="dedup audit: what each experiment, model and version costs")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with charts")
    p.add_argument("--versions", action="store_true", help="also list every version")
    p.add_argument("--no-walk", action="store_true", help="skip the cross-check against the object store")
    p.set_defaults(handler=cmd_audit)

    p = sub.add_parser("fsck", help="check the store; exit 0 clean, 1 problems")
    p.add_argument("--full", action="store_true", help="re-hash every byte of every pack")
    p.add_argument("--repair", action="store_true", help="fix what can be fixed, through log commits (never "
                   "deletes anything)")
    p.add_argument("--grace", type=duration_arg, help="temp files and packs no commit mentions "
                   "younger than this are writes in progress (default 24h)")
    p.add_argument("--strict", action="store_true", help="warnings (orphans, old temp files) also exit 1")
    p.add_argument("--repair-from", metavar="COPY", help="first restore damaged or missing log commits, "
                   "checkpoints and packs from COPY (a mirror, a backup or a plain copy of this store: folder or "
                   "s3:// URL), each only if it verifies here; damaged objects replaced are kept under damaged/")
    p.set_defaults(handler=cmd_fsck)

    p = sub.add_parser("gc", help="delete what no live or retained version needs (plan, one log commit, then files)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--grace", type=duration_arg,
                   help="only drop packs no commit mentions, and temp files, older than this (default 24h)")
    p.add_argument("--no-commit", action="store_true",
                   help="for a full disk: write nothing, only delete temp files, packs a gc forgot, and packs "
                   "no commit mentions older than --grace (at least 15m)")
    p.add_argument("--purge-deleted-older-than", type=duration_arg, metavar="AGE",
                   help="purge versions of models deleted, and versions retired, at least AGE ago")
    p.add_argument("--repack-below", type=_fraction, metavar="FRACTION",
                   help="repack packs whose live bytes are below this fraction (default 0.5; 0 disables)")
    p.set_defaults(handler=cmd_gc)

    p = sub.add_parser("retain", help="apply a retention policy as version tombstones (gc frees the bytes later)")
    p.add_argument("--keep-last", type=int, metavar="N", help="keep the newest N versions of each model")
    p.add_argument("--keep-tagged", action="append", default=[], metavar="KEY[=VALUE]",
                   help="keep any version ever tagged so (repeatable)")
    p.add_argument("--where", metavar="SQL", help="retire versions matching this predicate over v_versions")
    p.add_argument("--older-than", type=duration_arg, metavar="AGE", help="only versions saved at least AGE ago")
    p.add_argument("--dry-run", action="store_true", help="list what would be retired, change nothing")
    p.add_argument("--restore", nargs="+", metavar="MODEL[@VERSION]", help="undo: bring retired versions back")
    p.set_defaults(handler=cmd_retain)

    p = sub.add_parser("rebuild-catalog", help="rebuild this machine's catalog index from the store's log")
    p.set_defaults(handler=cmd_rebuild)
