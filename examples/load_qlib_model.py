"""Load a model saved by save_qlib_model.py and predict with it.

    python examples/load_qlib_model.py [MODEL_ID]     # default lgbm_001
"""

import asyncio
import os
import sys
from pathlib import Path

from cas_repo import CasModelRepository
from cas_repo.qlib_support.synthetic import make_dataset

STORE = Path(os.environ.get("CAS_REPO", "data/cas"))


async def main(model_id: str) -> None:
    async with CasModelRepository(STORE) as repo:
        model, metadata = await repo.load_model(model_id)
        if metadata.qlib_recorder_id:  # the same version, found by its Qlib recorder id
            _, by_recorder = await repo.load_model_by_recorder(metadata.qlib_recorder_id)
            assert (by_recorder.model_id, by_recorder.version) == (model_id, metadata.version)

    print(f"model type:      {metadata.model_type} ({type(model).__name__}), version {metadata.version}")
    print(f"hyperparameters: {metadata.hyperparameters}")
    print(f"metrics:         {metadata.metrics}")
    dataset_info = metadata.lineage.get("dataset", {})
    if dataset_info:
        print(f"trained on:      {dataset_info['handler']['class']}, segments {dataset_info['segments']}")
        print(f"features:        {dataset_info['features']['count']} "
              f"(digest {dataset_info['features']['blake3'][:12]})")

    # Rebuild the dataset the model expects (here: the same synthetic frame) and predict.
    dataset = make_dataset()
    pred = model.predict(dataset, segment="test")
    print(f"predicted {len(pred)} scores for the test segment; first: {pred.iloc[0]:.6f}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "lgbm_001"))
