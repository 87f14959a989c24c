"""Train a Qlib LightGBM model and save it to cas-repo, logging it to Qlib's Recorder too.

    python examples/save_qlib_model.py     # store: ./data/cas (or $CAS_REPO), Recorder: ./mlruns

Real workflows build an Alpha158 ``DatasetH`` from Qlib's data; offline, a synthetic
frame of the same shape stands in (``cas_repo.qlib_support.synthetic``).
"""

import asyncio
import os
from pathlib import Path

import qlib

from cas_repo import CasModelRepository
from cas_repo.qlib_support.metadata import metadata_for
from cas_repo.qlib_support.synthetic import make_dataset, train_lgbm

STORE = Path(os.environ.get("CAS_REPO", "data/cas"))


def init_qlib(home: Path) -> None:
    """qlib.init with the Recorder in ./mlruns (point provider_uri at your Qlib data)."""
    (home / "qlib_data").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 refuses file stores otherwise
    qlib.init(provider_uri=str(home / "qlib_data"), region="cn",
              exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": f"file:{home / 'mlruns'}", "default_exp_name": "Experiment"}})


async def main() -> None:
    init_qlib(Path.cwd())
    dataset = make_dataset()
    model = train_lgbm(dataset, num_boost_round=100, learning_rate=0.05, num_leaves=31)

    # Type, hyperparameters, IC metrics on the test segment and the dataset's lineage.
    metadata = metadata_for(model, dataset, model_id="lgbm_001", experiment_name="alpha158_lgbm",
                            tags={"dataset": "csi300", "features": "alpha158"})
    async with CasModelRepository(STORE, use_qlib_recorder=True) as repo:
        model_id = await repo.save_model(model, metadata)
        stats = await repo.stats()

    print(f"saved {model_id} version {metadata.version} (content {metadata.digest[:12]})")
    print(f"Qlib recorder id: {metadata.qlib_recorder_id}")
    print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in metadata.metrics.items()))
    print(f"store: {stats.versions} versions, {stats.logical_bytes:,} logical bytes, "
          f"{stats.physical_bytes:,} on disk")


if __name__ == "__main__":
    asyncio.run(main())
