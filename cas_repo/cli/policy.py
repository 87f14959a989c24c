"""The store's retention policy (``policy set|show|history|clear``) and ``maintain``, which applies it."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import InvalidPolicyError
from ..text import count
from .maintenance import EXIT_OK, EXIT_PROBLEMS, duration_arg
from .render import Output, human_bytes
from .stopping import stopping_on_signals

if TYPE_CHECKING:
    from ..maintenance import MaintenancePlan, MaintenanceReport, PolicyRecord


def _who(r: PolicyRecord) -> str:
    return f"{r.at:%Y-%m-%d %H:%M:%S}Z by {r.author or 'unknown'}@{r.host}"


def _record_json(r: PolicyRecord) -> dict[str, Any]:
    return {"position": r.position, "previous": r.previous, "at": r.at.isoformat(), "author": r.author,
            "host": r.host, "writer": r.writer, "policy": r.policy.to_json() if r.policy else None}


def _load(path: str):
    from ..maintenance import load_policy_file
    from . import UsageError

    try:
        return load_policy_file(path)
    except InvalidPolicyError as exc:
        raise UsageError(exc.for_cli()) from exc


def cmd_policy_set(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance import plan_maintenance, policy_diff, set_policy
    from ..maintenance.policy import policy_record
    from . import UsageError, open_store

    new = _load(args.file)
    with open_store(args) as store:
        before = policy_record(store)
        old = before.policy if before else None
        try:
            plan = plan_maintenance(store, new)  # also checks `where` against the catalog's columns
        except InvalidPolicyError as exc:
            raise UsageError(exc.for_cli()) from exc
        diff = policy_diff(old, new)
        result = None
        if not args.dry_run:
            result = set_policy(store, new, expected=before.position if before else None)
    if out.json_mode:
        out.json({"dry_run": args.dry_run, "diff": diff, "position": result.position if result else None,
                  "previous": _record_json(before) if before else None,
                  "would_retire": [v.ref for v in plan.retire] if args.dry_run else None,
                  "would_retire_models": [m.model_id for m in plan.retire_models] if args.dry_run else None})
        return EXIT_OK
    if before is not None and old is not None:
        out.line(f"the store's policy now: log commit {before.position}, set {_who(before)}")
    else:
        out.line("the store has no policy now")
    out.line("\n".join(diff) if diff else "no change: that is the store's policy already")
    if args.dry_run:
        _render_plan(plan, out, "would retire")
        out.line("dry run: the policy was not set")
    elif result is not None and result.position is not None:
        out.line(f"policy set in log commit {result.position}; `cas-repo maintain` applies it "
                 "(`cas-repo policy set FILE --dry-run` shows what it retires now)")
    return EXIT_OK


def cmd_policy_show(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance.policy import policy_record
    from . import open_store

    with open_store(args) as store:
        record = policy_record(store)
    if out.json_mode:
        out.json(_record_json(record) if record and record.policy else None)
        return EXIT_OK if record and record.policy else EXIT_PROBLEMS
    if record is None or record.policy is None:
        cleared = f" (cleared in log commit {record.position}, {_who(record)})" if record else ""
        out.error(f"this store has no retention policy{cleared}; set one with `cas-repo policy set FILE`")
        return EXIT_PROBLEMS
    out.line(f"# the store's retention policy: log commit {record.position}, set {_who(record)}")
    out.stdout.write(record.policy.to_toml())
    return EXIT_OK


def cmd_policy_history(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance import policy_diff, policy_history
    from . import open_store

    with open_store(args) as store:
        records = policy_history(store)
    if out.json_mode:
        out.json([_record_json(r) for r in records])
        return EXIT_OK
    if not records:
        out.line("this store never had a retention policy")
        return EXIT_OK
    before = None
    for r in records:
        what = "cleared the policy" if r.policy is None else "set the policy"
        out.line(f"log commit {r.position}  {_who(r)}  {what}")
        for line in policy_diff(before, r.policy):
            out.line(f"    {line}")
        before = r.policy
    return EXIT_OK


def cmd_policy_clear(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance import clear_policy
    from . import open_store

    with open_store(args) as store:
        result = clear_policy(store)
    if out.json_mode:
        out.json({"position": result.position})
    elif result.position is None:
        out.line("the store has no policy: nothing to clear")
    else:
        out.line(f"policy cleared in log commit {result.position}; `cas-repo maintain` does nothing until one is "
                 "set again")
    return EXIT_OK


# -- maintain -------------------------------------------------------------------------------


def _render_plan(plan: MaintenancePlan, out: Output, verb: str, *, verbose: bool = False) -> None:
    _render_retired(plan.retire, plan.retire_models, out, verb)
    _render_kept(plan, out, verbose)


def _render_retired(retired: Any, models: Any, out: Output, verb: str) -> None:
    size = human_bytes(sum(v.logical_size for v in retired))
    out.line(f"{verb} {count(len(retired), 'version')} ({size} logical) and {count(len(models), 'model')}")
    for v in retired:
        out.line(f"  {verb} {v.ref} (saved {v.saved_at:%Y-%m-%d}): {v.why}")
    for m in models:
        out.line(f"  {verb} model {m.model_id}: {m.reason}")


def _render_kept(plan: MaintenancePlan, out: Output, verbose: bool) -> None:
    kept = plan.kept
    if kept:
        kinds = Counter(r.split(" ", 1)[0] for v in kept for r in v.reasons)
        out.line(f"kept {count(len(kept), 'version')} (" + ", ".join(f"{k} {n}" for k, n in kinds.most_common()) + ")"
                 + ("" if verbose else "; --verbose lists each"))
        if verbose:
            for v in kept:
                out.line(f"  kept {v.ref}: {v.why}")
    for m in plan.models:
        if not m.retire and (verbose or m.best is None or "but" in m.reason):
            out.line(f"  kept model {m.model_id}: {m.reason}")


def _render_report(r: MaintenanceReport, out: Output, verbose: bool) -> None:
    out.line(f"maintain at {r.at:%Y-%m-%d %H:%M:%S}Z, policy of log commit {r.policy.position} "
             f"(set {_who(r.policy)})")
    _render_retired(r.retired, r.models_retired, out, "would retire" if r.dry_run else "retired")
    if r.position is not None:
        out.line(f"  (log commit {r.position}; undo a version with `cas-repo retain --restore MODEL@VERSION`, a "
                 "model with `cas-repo undelete MODEL`, until gc frees them after the policy's grace)")
    for subject, why in r.left_out:
        out.line(f"  left out {subject}: {why}")
    _render_kept(r.plan, out, verbose)
    p = r.gc_plan
    if r.dry_run:
        dropped = count(len(p.delete) + len(p.leftovers), 'pack')
        out.line(f"gc would purge {count(len(p.purge), 'version')}, delete {dropped} "
                 f"({human_bytes(p.delete_bytes)}) and repack {len(p.repack)} (frees {human_bytes(p.repack_bytes)})")
        out.line("dry run: nothing changed")
    elif r.gc is not None:
        g = r.gc
        out.line(f"gc freed {human_bytes(g.freed_bytes)}: purged {count(len(g.purged), 'version')}, deleted "
                 f"{count(len(g.deleted), 'pack')}, repacked {len(g.repacked)}"
                 + (f" (log commit {g.position})" if g.position else ""))
        for m, v in g.purged:
            out.line(f"  purged {m}@{v}")
    for problem in r.problems:
        out.error(problem)


def cmd_maintain(args: argparse.Namespace, out: Output) -> int:
    from ..maintenance import run_maintenance
    from . import open_store

    if args.every is not None:
        return _maintain_every(args, out)
    with open_store(args) as store:
        report = run_maintenance(store, dry_run=args.dry_run, progress=out.progress)
    if out.json_mode:
        out.json(report.to_json())
    else:
        _render_report(report, out, args.verbose)
    return EXIT_PROBLEMS if report.problems else EXIT_OK


def _maintain_every(args: argparse.Namespace, out: Output) -> int:
    from ..errors import CasRepoError
    from ..maintenance import format_duration, maintain_every
    from . import UsageError, open_store

    every: timedelta = args.every
    if every <= timedelta(0):
        raise UsageError("--every takes a positive duration, such as 1h or 15m")
    def on_report(report: MaintenanceReport) -> None:
        if out.json_mode:
            out.json(report.to_json())
        else:
            _render_report(report, out, args.verbose)
        out.stdout.flush()

    def on_error(exc: Exception) -> None:
        text = exc.for_cli() if isinstance(exc, CasRepoError) else f"{type(exc).__name__}: {exc}"
        out.error(f"maintain run failed: {text}; the next run is in {format_duration(every)}")

    # A signal lets the run in progress finish; the loop ends before sleeping again.
    with stopping_on_signals() as stop:
        if not out.json_mode:
            out.line(f"maintain every {format_duration(every)} (stop with SIGTERM or Ctrl-C)")
            out.stdout.flush()
        with open_store(args) as store:
            state = maintain_every(store, every, stop, on_report=on_report, on_error=on_error, dry_run=args.dry_run)
    if not out.json_mode:
        out.line(f"stopped after {state.runs} runs ({state.failures} failed)")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="the store's retention policy, kept in its log: set, show, history, clear")
    actions = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    a = actions.add_parser("set", help="make FILE (TOML or JSON, see docs/maintenance.md) the store's policy; "
                           "prints what changes")
    a.add_argument("file", metavar="FILE")
    a.add_argument("--dry-run", action="store_true", help="show the change and what it would retire now; set nothing")
    a.set_defaults(handler=cmd_policy_set)
    a = actions.add_parser("show", help="the store's policy now (as TOML; --json for JSON), who set it and when")
    a.set_defaults(handler=cmd_policy_show)
    a = actions.add_parser("history", help="every policy the store had: who set or cleared it, when, what changed")
    a.set_defaults(handler=cmd_policy_history)
    a = actions.add_parser("clear", help="remove the store's policy (maintain then does nothing)")
    a.set_defaults(handler=cmd_policy_clear)
    for action in actions.choices.values():
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")

    p = sub.add_parser("maintain", help="apply the store's policy: retire versions and models, then gc "
                       "(purge what is past the policy's grace, drop dead packs, repack)")
    p.add_argument("--dry-run", action="store_true", help="show what it would retire and free; change nothing")
    p.add_argument("--every", type=duration_arg, metavar="DURATION",
                   help="keep running: one run every DURATION (e.g. 1h), the policy read afresh each time; "
                   "stops cleanly on SIGTERM or Ctrl-C")
    p.add_argument("--verbose", action="store_true", help="list every version kept and why")
    p.set_defaults(handler=cmd_maintain)
