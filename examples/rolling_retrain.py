"""Rolling retrain: one model id, a version per window; roll back one; read the history.

    python examples/rolling_retrain.py     # store: ./data/cas (or $CAS_REPO)

Each window trains on the dates before its test span; every save is a new version of
``lgbm_rolling``, and its lineage records the window. When the newest model disappoints,
a rollback makes the previous one current again, as a new version (history only grows).
"""

import os
from pathlib import Path

from cas_repo import ModelStore
from cas_repo.qlib_support.metadata import metadata_for
from cas_repo.qlib_support.synthetic import make_dataset, make_frame, rolling_segments, train_lgbm

STORE = Path(os.environ.get("CAS_REPO", "data/cas"))
MODEL_ID = "lgbm_rolling"


def main() -> None:
    frame = make_frame(n_instruments=50, n_days=360)
    windows = rolling_segments(frame, n_windows=4)
    with ModelStore(STORE) as store:
        for i, seg in enumerate(windows):
            dataset = make_dataset(frame, **seg._asdict())
            model = train_lgbm(dataset, num_boost_round=60)
            metadata = metadata_for(model, dataset, model_id=MODEL_ID, experiment_name="rolling_retrain",
                                    tags={"window": str(i)})
            store.save_model(model, metadata)
            print(f"window {i}: train {seg.train[0]:%Y-%m-%d}..{seg.train[1]:%Y-%m-%d}, "
                  f"test {seg.test[0]:%Y-%m-%d}..{seg.test[1]:%Y-%m-%d} -> version {metadata.version}, "
                  f"IC {metadata.metrics['IC']:.4f}")

        # Say the newest window's model misbehaves in production: make the previous current.
        latest = store.get_model_metadata(MODEL_ID).version
        restored = store.rollback(MODEL_ID, latest - 1)
        print(f"rolled back: version {restored} = version {latest - 1}")

        # The history, oldest first (every version, including the rollback).
        print(f"{'version':>7}  {'window':>6}  {'test segment':<22}  {'IC':>7}  note")
        for md in store.history(MODEL_ID):
            test = md.lineage["dataset"]["segments"]["test"]
            note = f"rollback of v{md.rollback_of}" if md.rollback_of else ""
            print(f"{md.version:>7}  {md.tags['window']:>6}  {test[0]}..{test[1]}  "
                  f"{md.metrics['IC']:>7.4f}  {note}")
        current = store.get_model_metadata(MODEL_ID)
        print(f"current: version {current.version}, window {current.tags['window']}, "
              f"content {current.digest[:12]}")


if __name__ == "__main__":
    main()
