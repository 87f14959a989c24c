"""Build the demo store that docs/sql.md's cookbook runs on: real Qlib LGBModels.

    python tools/sql_demo_store.py DIR              # build the store in DIR
    python tools/sql_demo_store.py DIR --update-docs docs/sql.md   # re-record outputs

Every model is a `qlib.contrib.model.gbdt.LGBModel` trained single-threaded and
deterministically on synthetic Qlib data (`cas_repo.qlib_support.synthetic`); IC and Rank
IC are computed from its test-segment predictions. The store's clock is set per event,
so history times (January to March 2026, UTC) and every output in the cookbook are the
same on every run.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cas_repo import ModelMetadata, ModelStore


class SetClock:
    """A clock that says whatever time the script last set."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def set(self, text: str) -> None:
        self.now = datetime.fromisoformat(text).replace(tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _ic(model: Any, dataset: Any) -> dict[str, float]:
    """Mean daily IC and Rank IC of the model's test-segment predictions, and their IRs."""
    import pandas as pd

    from cas_repo.qlib_support.synthetic import predict

    label = dataset.prepare("test", col_set="label").iloc[:, 0]
    frame = pd.DataFrame({"pred": predict(model, dataset), "label": label.values}, index=label.index)
    by_day = frame.groupby(level="datetime")
    ic = by_day.apply(lambda d: d["pred"].corr(d["label"]))
    ric = by_day.apply(lambda d: d["pred"].corr(d["label"], method="spearman"))
    return {"IC": round(float(ic.mean()), 6), "ICIR": round(float(ic.mean() / ic.std()), 6),
            "Rank IC": round(float(ric.mean()), 6), "Rank ICIR": round(float(ric.mean() / ric.std()), 6)}


def build(root: str | Path) -> Path:
    """Create the demo store under ``root`` (which must not hold a store yet)."""
    from cas_repo.qlib_support import synthetic as syn

    root = Path(root)
    clock = SetClock()
    data = {
        "csi300": syn.make_dataset(n_instruments=40, n_days=240, seed=1),
        "csi500": syn.make_dataset(n_instruments=40, n_days=240, seed=2, signal=0.2),
    }
    # Two people: a researcher saves and tags, a release manager moves aliases. A store
    # reads its author once, so each works through a store of their own.
    before = os.environ.get("CAS_REPO_USER")
    os.environ["CAS_REPO_USER"] = "ana"
    store = ModelStore(root, clock=clock)
    os.environ["CAS_REPO_USER"] = "ops-bo"
    ops = ModelStore(root, clock=clock)
    if before is None:
        del os.environ["CAS_REPO_USER"]
    else:
        os.environ["CAS_REPO_USER"] = before
    with store, ops:
        def save(when: str, model_id: str, universe: str, model: Any, params: dict[str, Any],
                 parents: tuple[str, ...] = (), tags: dict[str, str] | None = None) -> int:
            clock.set(when)
            md = ModelMetadata(
                model_id=model_id, experiment_name=f"{universe}_daily", model_type="LGBM",
                hyperparameters=params, metrics=_ic(model, data[universe]),
                created_at=clock.now, qlib_recorder_id=None, tags=tags or {}, parents=list(parents))
            store.save_model(model, md)
            return md.version

        def fit(universe: str, **params: Any) -> Any:
            return syn.train_lgbm(data[universe], **params)

        base = {"num_leaves": 31, "learning_rate": 0.05, "num_boost_round": 100}
        m1 = fit("csi300", **base)
        save("2026-01-12T09:00", "lgb_csi300", "csi300", m1, base, tags={"stage": "dev"})
        m2 = syn.continue_training(m1, data["csi300"], 30)
        save("2026-01-26T09:00", "lgb_csi300", "csi300", m2, {**base, "num_boost_round": 130},
             parents=("lgb_csi300@1",))
        clock.set("2026-01-27T08:00")
        store.set_tags("lgb_csi300", {"stage": "prod"})
        wide = {**base, "num_leaves": 127}
        m3 = fit("csi300", **wide)
        save("2026-02-09T09:00", "lgb_csi300", "csi300", m3, wide, parents=("lgb_csi300@2",))
        deep = {**base, "num_leaves": 255, "learning_rate": 0.02}
        save("2026-02-10T10:00", "lgb_csi300_deep", "csi300", fit("csi300", **deep), deep,
             parents=("lgb_csi300@2",))
        clock.set("2026-02-16T08:00")
        store.set_tags("lgb_csi300", {"stage": "prod"}, version=3)
        store.set_tags("lgb_csi300", {"stage": None}, version=2)
        ops.set_alias("lgb_csi300", "prod", 3)  # promotion: a pointer move, no model bytes
        # v3 underperformed in production: roll back to v2's model, then continue from it.
        clock.set("2026-03-02T07:20")
        ops.set_alias("lgb_csi300", "prod", 2)  # the production rollback itself
        clock.set("2026-03-02T07:30")
        store.rollback("lgb_csi300", 2)
        m5 = syn.continue_training(m2, data["csi300"], 20)
        save("2026-03-09T09:00", "lgb_csi300", "csi300", m5, {**base, "num_boost_round": 150},
             parents=("lgb_csi300@4",), tags={"stage": "canary"})

        # Figures that arrive after the save: a backtest, then live IC from production.
        clock.set("2026-02-12T18:00")
        store.log_metrics("lgb_csi300@3", {"backtest_sharpe": 1.42})
        clock.set("2026-02-27T18:00")
        ops.log_metrics("lgb_csi300@3", {"live_ic": 0.018})
        clock.set("2026-03-06T18:00")
        ops.log_metrics("lgb_csi300@2", {"live_ic": 0.041})
        clock.set("2026-03-13T18:00")
        ops.log_metrics("lgb_csi300@2", {"live_ic": 0.037})

        fast = {"num_leaves": 63, "learning_rate": 0.1, "num_boost_round": 60}
        c1 = fit("csi500", **fast)
        save("2026-01-14T09:00", "lgb_csi500", "csi500", c1, fast, tags={"stage": "prod"})
        ops.set_alias("lgb_csi500", "prod", 1)
        c2 = syn.continue_training(c1, data["csi500"], 20)
        save("2026-02-11T09:00", "lgb_csi500", "csi500", c2, {**fast, "num_boost_round": 80},
             parents=("lgb_csi500@1",))
        ops.set_alias("lgb_csi500", "staging", 2)
        slow = {"num_leaves": 15, "learning_rate": 0.05, "num_boost_round": 100}
        save("2026-02-12T09:00", "lgb_csi500_small", "csi500", fit("csi500", **slow), slow)
        clock.set("2026-03-04T17:00")
        store.delete_model("lgb_csi500_small")
        # The same model bytes saved under a second name share one manifest.
        save("2026-03-05T09:00", "lgb_csi500_shadow", "csi500", c1, fast, tags={"stage": "shadow"})
    return root


def update_docs(root: Path, doc: Path) -> int:
    """Re-run every ```sql block of ``doc`` and rewrite the ```text block after it."""
    from cas_repo.cli.query import write_table
    from cas_repo.cli.render import Output

    text = doc.read_text()
    pattern = re.compile(r"(```sql\n(.*?)```\n\n```text\n)(.*?)(```)", re.S)
    with ModelStore(root) as store:
        def render(m: re.Match) -> str:
            buf = io.StringIO()
            write_table(store.sql(m.group(2)), "table", Output(buf, sys.stderr), None)
            return m.group(1) + buf.getvalue() + m.group(4)

        new, n = pattern.subn(render, text)
    doc.write_text(new)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory")
    ap.add_argument("--update-docs", metavar="MD", help="re-record the outputs of this cookbook")
    args = ap.parse_args()
    root = Path(args.directory)
    if not (root / "catalog.duckdb").exists():
        build(root)
    if args.update_docs:
        print(f"recorded {update_docs(root, Path(args.update_docs))} outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
