"""The ``cas-repo`` command line: parse, call one library function, render, set the exit code.

Exit codes: 0 clean, 1 problems found (or not found / integrity errors), 2 usage errors.
Each command group lives in its own module with a ``register(subparsers)`` function that
adds its subcommands; each subcommand's handler takes ``(store_opener, args, out)``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from ..errors import CasRepoError, InvalidMetadataError, InvalidModelIdError, ModelNotFoundError, QueryError
from .render import Output

if TYPE_CHECKING:
    from ..repository import ModelStore

# Command modules, each registering one or more subcommands.
COMMAND_MODULES = ("cas_repo.cli.models", "cas_repo.cli.query", "cas_repo.cli.compare", "cas_repo.cli.choose",
                   "cas_repo.cli.qlib", "cas_repo.cli.maintenance", "cas_repo.cli.ui", "cas_repo.cli.metrics",
                   "cas_repo.cli.get", "cas_repo.cli.watch", "cas_repo.cli.replicas", "cas_repo.cli.policy")

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
# What a shell reports for a process ended by SIGPIPE (128 + 13), as `git log | head` does.
EXIT_PIPE_CLOSED = 141


class UsageError(Exception):
    """Bad arguments: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit with its own format
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cas-repo", description="A content-addressed, versioned store for Qlib models.")
    parser.add_argument("--repo", default=os.environ.get("CAS_REPO", "data/cas"),
                        help="store folder or s3://bucket/prefix (default: $CAS_REPO or data/cas)")
    parser.add_argument("--catalog", default=os.environ.get("CAS_REPO_CATALOG"),
                        help="this machine's index of the store, a DuckDB file derived from the store's "
                             "log (default: $CAS_REPO_CATALOG, else one per store under "
                             "$CAS_REPO_INDEX_DIR or ~/.cache/cas-repo/index)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--create-bucket", action="store_true",
                        help="with an s3:// --repo: create the bucket if it does not exist (default: refuse)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():
        # Also accepted after the command; SUPPRESS keeps a --json given before it.
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="machine-readable output")
    return parser


def open_store(args: argparse.Namespace) -> ModelStore:
    from ..repository import ModelStore

    s3 = str(args.repo).startswith("s3://")
    options = {"allow_bucket_creation": True} if s3 and getattr(args, "create_bucket", False) else None
    return ModelStore(args.repo, catalog=args.catalog, backend_options=options)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``cas-repo`` command; returns the process exit code."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # inside the try: a pipe closed early fails here, not at exit
    except BrokenPipeError:
        # The reader went away (`cas-repo log m | head`): stop quietly. Python would try to
        # flush stdout once more at exit and print a second traceback, so point it at
        # devnull first (the recipe of the `signal` module's "Note on SIGPIPE").
        _silence_stdout()
        return EXIT_PIPE_CLOSED


def _silence_stdout() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (captured in tests): nothing will be flushed to a pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _run(argv: Sequence[str] | None) -> int:
    out = Output(sys.stdout, sys.stderr)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        out.json_mode = args.json
        handler: Callable | None = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(handler(args, out) or EXIT_OK)
    except UsageError as exc:
        out.error(f"usage: {exc} (see `cas-repo --help`)")
        return EXIT_USAGE
    except (InvalidModelIdError, InvalidMetadataError, QueryError) as exc:
        out.error(exc.for_cli())
        return EXIT_USAGE
    except ModelNotFoundError as exc:
        out.error(exc.for_cli())
        return EXIT_PROBLEMS
    except CasRepoError as exc:
        out.error(exc.for_cli())
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
