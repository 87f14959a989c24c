"""Models the scenarios store: real Qlib LightGBM models, their continued-training history,
and large array models. Training is never timed; results are cached per process."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np

from cas_repo import ModelMetadata

BASE_ROUNDS = 100


def metadata(model_id: str, *, rounds: int = BASE_ROUNDS, ic: float = 0.05,
             experiment: str = "bench", model_type: str = "LGBM") -> ModelMetadata:
    """Seed-style metadata with a few hyperparameters and metrics."""
    return ModelMetadata(
        model_id=model_id, experiment_name=experiment, model_type=model_type,
        hyperparameters={"num_boost_round": rounds, "learning_rate": 0.05, "num_leaves": 31},
        metrics={"IC": ic, "ICIR": 1.2, "Rank IC": 0.06}, created_at=datetime.now(),
        tags={"dataset": "synthetic"})


@functools.cache
def dataset() -> Any:
    from cas_repo.qlib_support import synthetic

    return synthetic.make_dataset(synthetic.make_frame(seed=7))


@functools.cache
def lgbm_base() -> Any:
    """A 100-tree ``LGBModel`` (~300 KB pickled), trained single-threaded and deterministically."""
    from cas_repo.qlib_support import synthetic

    return synthetic.train_lgbm(dataset(), num_boost_round=BASE_ROUNDS)


@functools.cache
def lgbm_variants(n: int) -> tuple[Any, ...]:
    """``n`` distinct ``LGBModel``s of the base's size and shape, none sharing a chunk with it.

    Variant k (1..n) is the base with every leaf value scaled by ``1 + k·1e-6``
    (``Booster.set_leaf_output``): real LightGBM boosters whose text models differ in every
    tree, as a retrain's do, at ~16 ms each instead of a fit's ~0.3–0.7 s.
    """
    import copy

    import lightgbm as lgb

    base = lgbm_base()
    text = base.model.model_to_string()
    leaves = [t["num_leaves"] for t in base.model.dump_model()["tree_info"]]
    out = []
    for k in range(1, n + 1):
        booster = lgb.Booster(model_str=text)
        f = 1 + k * 1e-6
        for tree, n_leaves in enumerate(leaves):
            for leaf in range(n_leaves):
                booster.set_leaf_output(tree, leaf, booster.get_leaf_output(tree, leaf) * f)
        variant = copy.copy(base)
        variant.model = booster
        out.append(variant)
    return tuple(out)


@functools.cache
def lgbm_history(n_versions: int, extra_rounds: int = 10) -> tuple[Any, ...]:
    """``n_versions`` models: the base, then each continued from the previous (+``extra_rounds``)."""
    from cas_repo.qlib_support import synthetic

    models = [lgbm_base()]
    while len(models) < n_versions:
        models.append(synthetic.continue_training(models[-1], dataset(), extra_rounds))
    return tuple(models)


def weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` float32 values like trained weights: random signs and mantissas, magnitudes
    3e-5–8e-3. zstd saves ~6 % on them, under the store's 10 % bar, as on real weights;
    built from raw bits because drawing normals costs ~6 s a GiB here."""
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint32)
    bits &= np.uint32(0x83FFFFFF)  # keep the sign, the exponent's low 3 bits, the mantissa
    bits |= np.uint32(0x38000000)  # exponent 112-119: 2^-15 .. 2^-8
    return bits.view(np.float32)


def array_model(total_bytes: int, n_arrays: int = 100, seed: int = 0) -> dict[str, Any]:
    """A model holding ``n_arrays`` float32 arrays of ``total_bytes`` in all (a big DNN's state)."""
    layers = dict(iter_arrays(total_bytes, n_arrays, seed))
    return {"kind": "dnn-state", "config": {"layers": n_arrays, "dtype": "float32"}, "state": layers}


def iter_arrays(total_bytes: int, n_arrays: int = 100, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """The (name, array) pairs of :func:`array_model`, one at a time (to compare without a copy)."""
    rng = np.random.default_rng(seed)
    per = total_bytes // n_arrays // 4
    for i in range(n_arrays):
        yield f"layer{i:03d}.weight", weights(rng, per)


def array_bytes(model: dict[str, Any]) -> int:
    return sum(a.nbytes for a in model["state"].values())


def change_arrays(model: dict[str, Any], fraction: float, seed: int = 1) -> int:
    """Overwrite whole arrays (``fraction`` of them, at least one) in place; returns bytes changed."""
    rng = np.random.default_rng(seed)
    names = sorted(model["state"])
    k = max(1, round(len(names) * fraction))
    changed = 0
    for name in names[:: max(1, len(names) // k)][:k]:
        a = model["state"][name]
        a[:] = weights(rng, a.size)
        changed += a.nbytes
    return changed


def change_slices(model: dict[str, Any], fraction: float, seed: int = 2) -> int:
    """Overwrite one contiguous run of ``fraction`` of the elements in *every* array; returns bytes changed."""
    rng = np.random.default_rng(seed)
    changed = 0
    for a in model["state"].values():
        n = max(1, int(a.size * fraction))
        start = int(rng.integers(0, a.size - n + 1))
        a[start : start + n] = weights(rng, n)
        changed += n * 4
    return changed


def tiny_model(model: int, version: int) -> dict[str, Any]:
    """A model of a few hundred bytes, different for every (model, version): for building
    stores of many versions, where the count of versions matters and not their bytes."""
    rng = np.random.default_rng(model * 1_000_003 + version)
    return {"kind": "tiny", "model": model, "version": version, "w": weights(rng, 16)}


def fill_store(root: Any, n: int) -> None:
    """Give a new store ``n`` earlier saves of tiny models (fsync off, untimed setup), so it
    looks like a store in use: with a few hundred packs nearly all 256 pack shard folders
    exist, and a timed save no longer pays for creating (and fsyncing) a new folder."""
    from cas_repo import ModelStore

    with ModelStore(root, backend_options={"fsync": False}) as store:
        for i in range(n):
            store.save_model(tiny_model(i, 1), metadata(f"earlier{i:04d}", model_type="MLP"))
    os.sync()


def small_model(worker: int, i: int, size: int = 100_000) -> dict[str, Any]:
    """A small model (one ~100 KB array and a few params), different for every (worker, i)."""
    rng = np.random.default_rng(worker * 100_003 + i)
    return {"worker": worker, "i": i, "params": {"alpha": 0.1}, "w": weights(rng, size // 4)}
