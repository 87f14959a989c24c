"""``watch``: follow the store's log and hand each change to a command, a webhook or stdout."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from ..follow import KINDS, Change
from .render import Output
from .stopping import stopping_on_signals

SECRET_ENV = "CAS_REPO_WEBHOOK_SECRET"


def _line(change: Change) -> str:
    """One change for a person: when, where in the log, what, who."""
    what = change.kind
    if change.model_id is not None:
        what += f" {change.model_id}" + (f"@{change.version}" if change.version is not None else "")
    if change.kind == "alias":
        was = "new" if change.previous is None else f"@{change.previous}"
        now = "removed" if change.version is None else f"@{change.version}"
        what = f"alias {change.model_id} {change.alias}: {was} -> {now}"
    elif change.details:
        shown = {k: v for k, v in change.details.items()
                 if k in ("tags", "metrics", "rollback_of", "action", "cleared")}
        what += "".join(f" {k}={v}" for k, v in shown.items())
    who = f"{change.author or 'unknown'}@{change.host}"
    return f"{change.at.isoformat(timespec='seconds')}  {change.position}:{change.index}  {what}  by {who}"


def _printer(out: Output) -> Callable[[Change], None]:
    def show(change: Change) -> None:
        import json

        out.line(json.dumps(change.to_json(), sort_keys=True) if out.json_mode else _line(change))
        out.stdout.flush()  # one line per change, as it happens (a closed pipe raises here and ends the watch)
    return show


def _handler(args: argparse.Namespace, out: Output) -> Callable[[Change], None]:
    from ..watch import ExecHandler, Webhook
    from . import UsageError

    if args.exec_command is not None:
        return ExecHandler(args.exec_command)
    if args.post is None:
        return _printer(out)
    if not args.post.startswith(("http://", "https://")):
        raise UsageError(f"--post takes an http:// or https:// URL, got {args.post!r:.80}")
    if args.unsigned:
        return Webhook(args.post, None, timeout=args.timeout)
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        raise UsageError(f"--post signs every event with the secret in ${args.secret_env}, which is not set: set it "
                         "(the receiver checks X-Cas-Repo-Signature-256 with the same secret; see docs/watch.md), "
                         "or pass --unsigned to post unsigned events")
    return Webhook(args.post, secret.encode(), timeout=args.timeout)


def cmd_watch(args: argparse.Namespace, out: Output) -> int:
    from ..watch import run_watch
    from . import UsageError, open_store

    if args.retries < 0 or args.poll <= 0 or args.backoff < 0:
        raise UsageError("--retries is >= 0, --poll > 0 and --backoff >= 0")
    after = 0 if args.from_start else args.after
    handler = _handler(args, out)
    with open_store(args) as store, stopping_on_signals() as stop:
        report = run_watch(store, handler, cursor=args.cursor, after=after, models=args.model, kinds=args.kind,
                           aliases=args.alias, once=args.once, poll=args.poll, retries=args.retries,
                           backoff=args.backoff, stop=stop)
    if report.pending is not None:
        out.stderr.write(f"cas-repo: stopped before event {report.pending} was handled; restarting with the same "
                         "--cursor hands it over again\n")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "watch", help="follow the store's log: run a command, POST a webhook or print a line for each change",
        description="Follow the store's log and handle each change as it lands, in log order: print it (a line, "
                    "or with --json one JSON object per line), run --exec CMD, or --post it to a URL. With "
                    "--cursor, a restart resumes after the last change handled; no change is ever skipped, and "
                    "one is repeated only if its handler was interrupted (use the event id to recognise it). "
                    "SIGTERM or Ctrl-C ends the watch after the current handler. See docs/watch.md.")
    what = p.add_argument_group("which changes (every filter given must match)")
    what.add_argument("--model", action="append", default=[], metavar="M",
                      help="changes of this model (an id or a glob pattern such as 'lgbm_*'; repeatable)")
    what.add_argument("--alias", action="append", default=[], metavar="A",
                      help="moves of this alias (a name or a glob pattern; repeatable); implies --kind alias")
    what.add_argument("--kind", action="append", default=[], choices=KINDS, metavar="K",
                      help=f"changes of this kind (repeatable): {', '.join(KINDS)}")
    where = p.add_argument_group("where to start")
    where.add_argument("--cursor", metavar="FILE",
                       help="resume after the last change handled, kept in FILE (written atomically after each "
                            "one; locked against a second watcher). A new FILE starts per --after/--from-start, "
                            "else at the log's end, and is written at once")
    start = where.add_mutually_exclusive_group()
    start.add_argument("--after", type=int, metavar="N",
                       help="start after log position N (without --cursor, or when FILE does not exist yet)")
    start.add_argument("--from-start", action="store_true", help="start at the beginning of the log (as --after 0)")
    how = p.add_argument_group("what to do with each change (default: print one line)")
    handlers = how.add_mutually_exclusive_group()
    handlers.add_argument("--exec", dest="exec_command", metavar="CMD",
                          help="run CMD with `sh -c`: the event's JSON on stdin, and CAS_REPO_EVENT (the JSON), "
                               "CAS_REPO_EVENT_ID, CAS_REPO_POSITION, CAS_REPO_KIND, CAS_REPO_MODEL, "
                               "CAS_REPO_VERSION and CAS_REPO_ALIAS in its environment; a non-zero exit is a failure")
    handlers.add_argument("--post", metavar="URL",
                          help="POST the event's JSON to URL, signed: X-Cas-Repo-Signature-256: sha256=HMAC-SHA256 "
                               f"of the body under the secret in ${SECRET_ENV}; 5xx, 429 and network errors are "
                               "retried, other 4xx answers end the watch")
    how.add_argument("--secret-env", default=SECRET_ENV, metavar="NAME",
                     help=f"the environment variable holding the webhook secret (default {SECRET_ENV}); the "
                          "secret itself is never taken on the command line")
    how.add_argument("--unsigned", action="store_true", help="with --post: send unsigned events (refused otherwise)")
    how.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                     help="with --post: seconds to wait for the receiver (default 10)")
    how.add_argument("--retries", type=int, default=5, metavar="N",
                     help="retries of a failed handler before the watch ends with an error, leaving the cursor "
                          "before that change (default 5)")
    how.add_argument("--backoff", type=float, default=1.0, metavar="SECONDS",
                     help="first wait before a retry, doubled each time, with jitter (default 1; a 429/503 "
                          "answer's Retry-After is honoured instead)")
    p.add_argument("--once", action="store_true", help="handle the changes there are now, then exit (for cron)")
    p.add_argument("--poll", type=float, default=0.5, metavar="SECONDS",
                   help="seconds between looks at the log (default 0.5; each look is one request to the store)")
    p.set_defaults(handler=cmd_watch)
