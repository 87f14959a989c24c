"""``cas-repo get MODEL[@REF] -o FILE``: one version as a standard pickle file."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .models import ref
from .render import Output, human_bytes


def cmd_get(args: argparse.Namespace, out: Output) -> int:
    from ..errors import OutputExistsError
    from ..serialization import standard_pickle, write_pickle_file
    from . import UsageError, open_store

    to_stdout = args.output == "-"
    if to_stdout and out.stdout.isatty():
        raise UsageError("refusing to write a pickle to a terminal: redirect stdout (-o - > FILE) or give -o FILE")
    if not to_stdout and not args.force and os.path.lexists(args.output):
        raise OutputExistsError(args.output)  # before loading anything (write_pickle_file checks again)
    # Libraries a model's classes import may print (Qlib lists the models it skips): with
    # the pickle going to stdout, that text goes to stderr instead.
    with open_store(args) as store, contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        model, md = store.load_model(ref(args.model))  # every byte verified before unpickling
    if to_stdout:
        out.binary(standard_pickle(model))
        return 0
    size = write_pickle_file(model, args.output, overwrite=args.force)
    report = {"model_id": md.model_id, "version": md.version, "digest": md.digest, "path": args.output,
              "bytes": size, "class": f"{type(model).__module__}.{type(model).__qualname__}"}
    if out.json_mode:
        out.json(report)
    else:
        out.line(f"wrote {md.model_id}@{md.version} ({type(model).__name__}, {human_bytes(size)}) to {args.output}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "get", help="write one model version as a standard pickle file (model.pkl; `export` writes the catalog)",
        description="Load MODEL (its latest version, @VERSION or @ALIAS), verifying every byte, and write it as "
                    "a standard pickle that pickle.load() or Qlib's R.load_object read without cas-repo. "
                    "The file appears whole or not at all.")
    p.add_argument("model", metavar="MODEL_ID[@VERSION|@ALIAS]")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="where to write; `-` writes to stdout (not to a terminal)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.set_defaults(handler=cmd_get)
