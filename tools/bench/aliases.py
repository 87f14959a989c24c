"""Scenario: what resolving ``model@alias`` adds to a load, against a load by version.

Both loads run round-robin in one store (``measure_many``), on the same version, so the
difference of their medians is the alias's own cost: parsing the reference and one lookup
in the folded state, under the same lock and catch-up as any load.
"""

from __future__ import annotations

from functools import partial

from cas_repo import ModelStore

from . import models
from .framework import Result, explain, measure_many, scratch, within

TITLE = "Aliases"
ABOUT = (
    "`load_model(\"m@prod\")` against `load_model(\"m\", 3)` on the same version, interleaved "
    "round-robin in one process: a ~300 KB LightGBM `LGBModel` and a tiny model (a few hundred "
    "bytes, where a load is almost all fixed cost, so the alias's share is largest). Target: "
    "the alias adds at most 0.2 ms to the load's median.")

ALLOWANCE_MS = 0.2


def run(quick: bool) -> list[Result]:
    repeats = 30 if quick else 400
    rows: list[Result] = []
    with scratch("aliases") as base, ModelStore(base / "cas", catalog=base / "index" / "catalog.duckdb") as store:
        cases = {"tiny model": [models.tiny_model(0, v) for v in range(3)]}
        if not quick:  # training the LightGBM models takes longer than a smoke test should
            cases["LGBModel"] = models.lgbm_history(3)
        for label, versions in cases.items():
            model_id = "lgb" if label == "LGBModel" else "tiny"
            for m in versions:
                store.save_model(m, models.metadata(model_id))
            store.set_alias(model_id, "prod", 3)
            # measure_many calls both right away, before model_id moves on; partial binds it anyway.
            t = measure_many({"version": partial(store.load_model, model_id, 3),
                              "alias": partial(store.load_model, f"{model_id}@prod")}, repeats, warmup=3)
            rows.append(t["version"].result("aliases", f"{label}: load by version", unit="ms"))
            r = t["alias"].result("aliases", f"{label}: load via model@alias", unit="ms",
                                  note=f"difference of medians "
                                       f"{1e3 * (t['alias'].median - t['version'].median):+.3f} ms")
            rows.append(explain(within(r, "load by version", t["version"], ALLOWANCE_MS),
                                "the reference is parsed and looked up under the load's own lock: profile "
                                "`split_ref` and `lookup.row_in`"))
    return rows
