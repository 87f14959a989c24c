"""``make demo``: the main job end to end on real Qlib models, in a local store.

Trains LightGBM ``LGBModel``s on synthetic market data (no download), saves versions of
two models, re-saves one unchanged, continues training another, rolls back, deletes and
undeletes, then prints the history and the store's logical vs physical bytes.

    python -m cas_repo.demo [--root data/cas]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime

from .cli.render import Output, human_bytes
from .metadata import ModelMetadata
from .repository import ModelStore


def _md(model_id: str, model, ic: float, parents: list[str] | None = None) -> ModelMetadata:
    """Metadata whose hyperparameters are read from the trained ``model`` itself."""
    return ModelMetadata(
        model_id=model_id, experiment_name="demo_csi300", model_type="LGBM",
        hyperparameters=trained_hyperparameters(model),
        metrics={"IC": round(ic, 4)}, created_at=datetime.now(), tags={"dataset": "synthetic"},
        parents=parents or [],
    )


def trained_hyperparameters(model) -> dict:
    """The LGBModel's settings, with ``num_boost_round`` the rounds its booster holds.

    A continued model is a copy of its parent with more trees, so its LGBModel attribute
    still says the parent's count; the booster's own count is what it was trained with.
    """
    from .qlib_support.metadata import hyperparameters_of

    return hyperparameters_of(model) | {"num_boost_round": model.model.current_iteration()}


def _ic(model, dataset) -> float:
    import numpy as np

    from .qlib_support.synthetic import predict

    pred = predict(model, dataset)
    label = dataset.prepare("test", col_set="label").to_numpy().ravel()
    return float(np.corrcoef(pred, label)[0, 1])


def run(root: str, out: Output, *, rounds: int = 100) -> None:
    """Run the demo into the store at ``root``; ``rounds``: boosting rounds of the first fits."""
    from .qlib_support import synthetic

    t0 = time.perf_counter()
    out.line(f"cas-repo demo: store at {os.path.abspath(root)}")
    frame = synthetic.make_frame(seed=7)
    dataset = synthetic.make_dataset(frame)
    with ModelStore(root) as store:
        def step(text: str, fn) -> None:
            before = store.stats().physical_bytes
            t = time.perf_counter()
            result = fn()
            ms = (time.perf_counter() - t) * 1000
            added = store.stats().physical_bytes - before
            out.line(f"  {text:<58} {ms:7.1f} ms   +{human_bytes(added):>10} on disk"
                     + (f"   -> {result}" if result is not None else ""))

        out.line("\n1. Train and save: two models, several versions each")
        base = synthetic.train_lgbm(dataset, num_boost_round=rounds)
        md = _md("alpha", base, _ic(base, dataset))
        step(f"save alpha v1 ({rounds} rounds)", lambda: _save(store, base, md))
        wide = synthetic.train_lgbm(dataset, num_boost_round=rounds, num_leaves=63, seed=3)
        md_b = _md("beta", wide, _ic(wide, dataset))
        step("save beta v1 (num_leaves=63)", lambda: _save(store, wide, md_b))

        out.line("\n2. Save alpha again, unchanged: no new content bytes")
        md2 = _md("alpha", base, md.metrics["IC"])
        step("save alpha v2 (same model)", lambda: _save(store, base, md2))

        out.line("\n3. Continue training alpha: most chunks are shared with its parent")
        model, parent = base, f"alpha@{md2.version}"
        for _ in range(2):
            model = synthetic.continue_training(model, dataset, extra_rounds=10)
            ref = _save(store, model, _md("alpha", model, _ic(model, dataset), [parent]))
            ov = store.diff(parent, ref).content
            out.line(f"  save {ref:<12} (+10 rounds)   shares {ov.shared_fraction:6.1%} of its bytes "
                     f"with {parent}; new content {human_bytes(ov.added_bytes)}")
            parent = ref
        wide2 = synthetic.continue_training(wide, dataset, extra_rounds=10)
        md_b2 = _md("beta", wide2, _ic(wide2, dataset), [f"beta@{md_b.version}"])
        step("save beta v2 (+10 rounds)", lambda: _save(store, wide2, md_b2))

        out.line("\n4. Roll back, delete and undelete")
        step(f"rollback alpha to v{md.version}", lambda: f"alpha@{store.rollback('alpha', md.saved_version())}")
        step("delete beta (tombstone)", lambda: store.delete_model("beta"))
        live = [m.model_id for m in store.list_models(experiment_name="demo_csi300")]
        out.line(f"  list_models() now shows: {live}")
        try:
            store.load_model("beta")
        except FileNotFoundError as exc:
            out.line(f"  load_model('beta') -> {type(exc).__name__}: {exc}")
        step("undelete beta", lambda: store.undelete_model("beta"))
        loaded, head = store.load_model("alpha")
        out.line(f"  load_model('alpha') -> {type(loaded).__name__} version {head.version} "
                 f"(rollback of v{head.rollback_of}); its IC {_ic(loaded, dataset):.4f} "
                 f"= v{md.version}'s {md.metrics['IC']}")

        out.line("\n5. History")
        rows = []
        for model_id in ("alpha", "beta"):
            for h in store.history(model_id)[-8:]:
                rows.append([h.model_id, h.version, h.saved_digest()[:12], h.metrics.get("IC"),
                             ",".join(h.parents) or "-",
                             f"rollback of v{h.rollback_of}" if h.rollback_of else ""])
        out.table(["model", "version", "digest", "IC", "parents", "note"], rows)

        st = store.stats()
        out.line("\n6. Bytes")
        out.line(f"  versions stored         {st.versions}")
        out.line(f"  logical bytes           {human_bytes(st.logical_bytes):>10}   (what full copies would take)")
        out.line(f"  unique content          {human_bytes(st.unique_bytes):>10}   (distinct chunks)")
        out.line(f"  physical bytes on disk  {human_bytes(st.physical_bytes):>10}   (packs, after dedup + zstd)")
        out.line(f"  dedup ratio             {st.dedup_ratio:10.1f}x")
    out.line(f"\ndone in {time.perf_counter() - t0:.1f} s. Try: .venv/bin/cas-repo --repo {root} log alpha")


def _save(store: ModelStore, model, md: ModelMetadata) -> str:
    store.save_model(model, md)
    return f"{md.model_id}@{md.version}"



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cas_repo.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("CAS_REPO", "data/cas"),
                        help="store folder (default: $CAS_REPO or data/cas)")
    args = parser.parse_args(argv)
    run(args.root, Output(sys.stdout, sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
