"""Qlib commands: import-mlruns."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .render import Output, human_bytes

if TYPE_CHECKING:
    from ..qlib_support.mlruns_import import ImportIssue


def cmd_import_mlruns(args: argparse.Namespace, out: Output) -> int:
    from ..qlib_support.mlruns_import import import_runs, scan_mlruns
    from ..repository import ModelStore

    runs = scan_mlruns(args.path, args.experiment)
    if not runs and args.experiment:
        names = sorted({r.experiment_name for r in scan_mlruns(args.path)})
        out.error(f"no experiment {args.experiment!r} in {args.path} (it has: {', '.join(names) or 'none'})")
        return 1
    with (ModelStore(args.repo, catalog=args.catalog) as store,
          out.progress(len(runs), "importing runs") as bar):
        report = import_runs(store, runs, source=args.path, artifacts=args.artifact or None,
                             progress=bar.advance)
    if out.json_mode:
        out.json({**{f: getattr(report, f) for f in report.__dataclass_fields__},
                  "versions_created": report.versions_created})
        return 0 if report.ok else 1
    out.line(f"runs seen         {report.runs_seen} ({report.runs_with_objects} with saved objects)")
    out.line(f"versions created  {report.versions_created} ({report.already_imported} already imported)")
    ratio = f" ({report.new_physical_bytes / report.artifact_bytes:.1%})" if report.artifact_bytes else ""
    out.line(f"bytes             {human_bytes(report.artifact_bytes)} of pickles read, "
             f"{human_bytes(report.new_physical_bytes)} new in cas-repo{ratio}")
    out.line(f"time              {report.seconds:.1f} s")
    for title, issues in (("skipped", report.skipped), ("refused", report.refused)):
        if issues:
            out.line(f"{title} ({len(issues)}):")
            _render_issues(out, issues)
    return 0 if report.ok else 1


def _render_issues(out: Output, issues: Sequence[ImportIssue]) -> None:
    """One line per issue, but one per reason for a reason shared by several (every qrun
    run skips its predictions, labels, task…: a line each would bury the rest)."""
    by_reason: dict[str, list[ImportIssue]] = {}
    for i in issues:
        by_reason.setdefault(i.reason, []).append(i)
    for reason, group in by_reason.items():
        if len(group) == 1:
            i = group[0]
            out.line(f"  run {i.run_id} {i.artifact or '(whole run)'}: {reason}")
            continue
        names = sorted({i.artifact or "(whole run)" for i in group})
        shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
        runs = len({i.run_id for i in group})
        out.line(f"  {len(group)} in {runs} run(s) ({shown}): {reason}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-mlruns", help="import Qlib Recorder runs (an mlruns folder or sqlite URI)")
    p.add_argument("path", metavar="PATH", help="mlruns folder, file: URI, sqlite:///mlflow.db or .db file")
    p.add_argument("--experiment", metavar="NAME", help="only this experiment (name or id)")
    p.add_argument("--artifact", action="append", metavar="NAME",
                   help="only artifacts with this path or file name, even predictions or labels "
                        "(repeatable; default every pickle but what Qlib's workflow saves beside "
                        "the model: task, config, dataset, pred.pkl, label.pkl, analysis)")
    # Accepted for scripts written for the first release, where it held the catalog
    # lock for the whole import; imports no longer take any lock.
    p.add_argument("--exclusive", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_import_mlruns)
