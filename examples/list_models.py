"""List the LightGBM models in the store, newest first.

    python examples/list_models.py
"""

import asyncio
import os
from pathlib import Path

from cas_repo import CasModelRepository

STORE = Path(os.environ.get("CAS_REPO", "data/cas"))


async def list_all_models() -> None:
    async with CasModelRepository(STORE) as repo:
        models = await repo.list_models(model_type="LGBM")
    if not models:
        print("no LGBM models yet: run examples/save_qlib_model.py first")
    for metadata in models:
        print(f"model id:   {metadata.model_id} (version {metadata.version})")
        print(f"experiment: {metadata.experiment_name}")
        ic = metadata.metrics.get("IC")
        print(f"IC:         {ic:.4f}" if ic is not None else "IC:         N/A")
        print(f"created at: {metadata.created_at:%Y-%m-%d %H:%M:%S %Z}")
        print("---")


if __name__ == "__main__":
    asyncio.run(list_all_models())
