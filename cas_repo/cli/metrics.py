"""Metrics after the save: ``metrics REF`` shows a version's values and their history,
``log-metrics REF NAME=VALUE…`` records new ones (a backtest, live IC)."""

from __future__ import annotations

import argparse
import math

from .models import ref
from .render import Output


def _value(text: str) -> float:
    from . import UsageError

    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"a metric value is a number, got {text!r:.40}") from None
    if not math.isfinite(value):
        raise UsageError(f"a metric value is a finite number, got {text!r:.40}")
    return value


def cmd_log_metrics(args: argparse.Namespace, out: Output) -> int:
    from . import UsageError, open_store

    metrics: dict[str, float] = {}
    for item in args.metrics:
        name, sep, text = item.partition("=")
        if not name or not sep:
            raise UsageError(f"metrics are NAME=VALUE (e.g. IC=0.042), got {item!r:.60}")
        metrics[name] = _value(text)
    with open_store(args) as store:
        version = store.log_metrics(ref(args.model), metrics)
        md = store.get_model_metadata(args.model.partition("@")[0], version)
    if out.json_mode:
        out.json({"model_id": md.model_id, "version": version, "logged": metrics, "metrics": md.metrics})
    else:
        out.line(f"{md.model_id}@{version}: logged " + ", ".join(f"{k}={v:g}" for k, v in metrics.items()))
    return 0


def cmd_metrics(args: argparse.Namespace, out: Output) -> int:
    from . import open_store

    with open_store(args) as store:
        md = store.get_model_metadata(ref(args.model))
        records = store.metric_history(md.model_id, md.saved_version())
    # The newest record of each metric is where its current value came from.
    newest = {r.metric: r for r in records}
    if out.json_mode:
        out.json({"model_id": md.model_id, "version": md.version, "metrics": md.metrics,
                  "history": [{f: getattr(r, f) for f in r.__dataclass_fields__} for r in records]
                  if args.history else None})
        return 0
    if args.history:
        out.table(["recorded at (UTC)", "metric", "value", "source", "by"],
                  [[r.recorded_at, r.metric, f"{r.value:.6g}", r.source, r.author or "unknown"] for r in records])
        return 0
    out.line(f"{md.model_id}@{md.version}")
    out.table(["metric", "value", "source", "recorded at (UTC)", "by"],
              [[k, f"{v:.6g}", newest[k].source if k in newest else "save",
                newest[k].recorded_at if k in newest else "-",
                (newest[k].author or "unknown") if k in newest else "-"] for k, v in sorted(md.metrics.items())])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="a version's metrics now: saved, or logged after the save (--history: all)")
    p.add_argument("model", metavar="MODEL_ID[@VERSION|@ALIAS]")
    p.add_argument("--history", action="store_true", help="every value recorded, oldest first, with who and when")
    p.set_defaults(handler=cmd_metrics)

    p = sub.add_parser("log-metrics", help="record metric values of a version after its save (kept in history)")
    p.add_argument("model", metavar="MODEL_ID[@VERSION|@ALIAS]")
    p.add_argument("metrics", nargs="+", metavar="NAME=VALUE")
    p.set_defaults(handler=cmd_log_metrics)
