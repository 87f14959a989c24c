"""``cas-repo ui``: serve the read-only web view of the store."""

from __future__ import annotations

import argparse
import os

from .render import Output


def cmd_ui(args: argparse.Namespace, out: Output) -> int:
    from ..ui import run
    from . import UsageError, open_store

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port is 0-65535, got {args.port}")
    with open_store(args) as store:
        try:
            run(store, args.host, args.port, open_browser=not args.no_browser, announce=out.line)
        except KeyboardInterrupt:  # the way to stop a server: a clean exit, not an error
            out.line("cas-repo ui: stopped")
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="serve a read-only web view of the store (models, history, lineage, SQL)")
    # Also accepted after `ui` (so `python -m cas_repo.ui --repo X` works); SUPPRESS keeps a global one.
    p.add_argument("--repo", default=argparse.SUPPRESS, help="store folder or s3://bucket/prefix")
    p.add_argument("--catalog", default=argparse.SUPPRESS, help="this machine's index of the store")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--no-browser", action="store_true",
                   default=bool(os.environ.get("CAS_REPO_NO_BROWSER")), help="do not open a browser")
    p.set_defaults(handler=cmd_ui)
