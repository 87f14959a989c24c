"""Between stores: ``mirror SRC DST [--follow]`` and ``copy SRC MODEL[@REF]… --to DST``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..text import count
from .models import ref
from .render import Output, human_bytes
from .stopping import stopping_on_signals

if TYPE_CHECKING:
    from ..maintenance.copying import CopyReport
    from ..maintenance.mirror import MirrorReport
    from ..repository import ModelStore


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"seconds between 0.05 and 3600, got {text!r}")
    return value


def _target_options(args: argparse.Namespace, location: str) -> dict[str, Any] | None:
    return {"allow_bucket_creation": True} if location.startswith("s3://") and args.create_bucket else None


def _mirror_json(r: MirrorReport) -> dict[str, Any]:
    return {"source": r.source, "target": r.target, "full": r.full, "start": r.start, "end": r.end,
            "commits": r.commits, "commit_bytes": r.commit_bytes, "packs": r.packs, "pack_bytes": r.pack_bytes,
            "checkpoints": r.checkpoints, "checkpoint_bytes": r.checkpoint_bytes,
            "checkpoints_deleted": r.checkpoints_deleted, "packs_deleted": r.packs_deleted,
            "forgotten_kept": r.forgotten_kept, "copied": r.copied, "bytes": r.bytes,
            "seconds": round(r.seconds, 3), "refused": list(r.refused)}


def _mirror_text(r: MirrorReport) -> str:
    text = (f"mirrored {r.source} -> {r.target}{' (full)' if r.full else ''}: {count(r.commits, 'commit')}, "
            f"{count(r.packs, 'pack')}, {count(r.checkpoints, 'checkpoint')}, {human_bytes(r.bytes)} in "
            f"{r.seconds:.2f} s; log at commit {r.end}")
    if r.packs_deleted or r.checkpoints_deleted:
        text += (f"; deleted {count(r.packs_deleted, 'pack')} and {count(r.checkpoints_deleted, 'checkpoint')} "
                 "the source dropped")
    if r.forgotten_kept:
        text += (f"; {count(r.forgotten_kept, 'pack')} gc dropped "
                 f"{'is' if r.forgotten_kept == 1 else 'are'} still at the source (a later run deletes them)")
    return text + "".join(f"\n  not copied: {why}" for why in r.refused)


def cmd_mirror(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance.mirror import follow, open_mirror

    def show(r: MirrorReport) -> None:
        if args.follow and not r.copied and not r.packs_deleted and not r.checkpoints_deleted:
            return  # polls that found nothing new stay quiet
        if out.json_mode and args.follow:
            out.json_line(_mirror_json(r))
        elif out.json_mode:
            out.json(_mirror_json(r))
        else:
            out.line(_mirror_text(r))
        out.stdout.flush()

    with open_mirror(args.source, args.target, target_options=_target_options(args, args.target)) as m:
        if not args.follow:
            show(m.run(full=args.full, progress=out.progress))
            return 0
        with stopping_on_signals() as stop:
            follow(m, stop, show, interval=args.interval, full=args.full,
                   on_error=lambda exc: out.error(f"{exc}; retrying at the next poll"))
    return 0


def _open(location: str, options: dict[str, Any] | None = None, *, source: bool) -> ModelStore:
    from ..maintenance.replica import open_location
    from ..repository import ModelStore

    if source:
        open_location(location, None, source=True).close()  # a source folder must hold a store
    return ModelStore(location, backend_options=options)


def _copy_json(r: CopyReport) -> dict[str, Any]:
    return {"source": r.source, "target": r.target, "copied": r.copied, "bytes_sent": r.bytes_sent,
            "bytes_skipped": r.bytes_skipped,
            "versions": [{"source": v.source, "target": v.target, "skipped": v.skipped,
                          "entries_sent": v.entries_sent, "bytes_sent": v.bytes_sent,
                          "entries_skipped": v.entries_skipped, "bytes_skipped": v.bytes_skipped}
                         for v in r.versions]}


def cmd_copy(args: argparse.Namespace, out: Output) -> int:
    from ..errors import ModelNotFoundError
    from ..maintenance.copying import copy_versions

    with _open(args.source, source=True) as src, _open(args.to, _target_options(args, args.to), source=False) as dst:
        try:
            report = copy_versions(src, dst, args.refs, as_id=args.as_id)
        except ModelNotFoundError as exc:
            # The refs name versions of the source, all resolved before anything is copied.
            raise ModelNotFoundError(exc.model_id, exc.version,
                                     f"`cas-repo --repo {args.source} ls` shows what the source holds; nothing was "
                                     "copied") from exc
    if out.json_mode:
        out.json(_copy_json(report))
        return 0
    out.table(["source", "copied as", "sent", "already there"],
              [[v.source, v.target or "(already there: nothing done)",
                f"{v.entries_sent} entries, {human_bytes(v.bytes_sent)}",
                f"{v.entries_skipped} entries, {human_bytes(v.bytes_skipped)}"] for v in report.versions])
    out.line(f"copied {report.copied} of {count(len(report.versions), 'version')} from {report.source} to "
             f"{report.target}: "
             f"sent {human_bytes(report.bytes_sent)}, {human_bytes(report.bytes_skipped)} were there already")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mirror", help="make DST a byte-identical replica of SRC (log, checkpoints, packs); "
                       "incremental, resumable, safe while SRC takes writes and runs gc",
                       description="Copy what DST lacks of SRC's log, checkpoints and packs, every object "
                       "verified on arrival, in an order that keeps DST an ordinary, consistent store (open it "
                       "read-only: a mirror takes no writes of its own). Run it again (cron) or use --follow. "
                       "S3 settings come from the AWS_* environment; --create-bucket applies to DST. "
                       "See docs/mirror.md.")
    p.add_argument("source", metavar="SRC", help="store to copy from: a folder or s3://bucket/prefix")
    p.add_argument("target", metavar="DST", help="the mirror: a folder or s3://bucket/prefix")
    p.add_argument("--follow", action="store_true", help="keep mirroring as SRC grows, polling its log "
                   "(SIGTERM or Ctrl-C stops cleanly)")
    p.add_argument("--interval", type=_interval, default=0.5, metavar="SECONDS",
                   help="with --follow: seconds between polls (default 0.5)")
    p.add_argument("--full", action="store_true", help="also list both sides' packs: copy every pack DST lacks "
                   "(orphans included) and delete every pack DST's log forgot that SRC no longer has (a first "
                   "run always does)")
    p.set_defaults(handler=cmd_mirror)

    p = sub.add_parser("copy", help="append versions of SRC to another store (--to); only chunks it lacks travel",
                       description="Append each chosen version of SRC to DST as a new version of the same "
                       "model (or of --as), keeping its metadata (metrics logged since the save and tags "
                       "included) and recording where it came from in its lineage (copied_from). Only the "
                       "chunks DST lacks are read from SRC. A version whose copy DST's model already ends "
                       "with is left alone.")
    p.add_argument("source", metavar="SRC", help="store to copy from: a folder or s3://bucket/prefix")
    p.add_argument("refs", nargs="+", type=ref, metavar="MODEL_ID[@VERSION|@ALIAS]",
                   help="versions to copy, in order (a bare model id: its newest version)")
    p.add_argument("--to", required=True, metavar="DST", help="store to append to: a folder or s3://bucket/prefix")
    p.add_argument("--as", dest="as_id", metavar="NEW_ID", help="append to this model id instead")
    p.set_defaults(handler=cmd_copy)
