"""A rolling LightGBM history: 30 continued versions (+10 trees each) and 10 unchanged
re-saves, stored by us, by Qlib's Recorder and by the seed's design."""

from __future__ import annotations

import time

from cas_repo import ModelStore

from . import models
from .framework import Result, Timing, bytes_on_disk, explain, faster_than, relative_to, scratch
from .recorder import open_recorder
from .seed_baseline import SeedRepository

TITLE = "Rolling LightGBM history"
ABOUT = (
    "30 versions of a real `LGBModel`, the first with 100 trees and each next one continued "
    "from the previous with 10 more trees (`lgb.train(init_model=…)`), then 10 unchanged "
    "re-saves of the last one: 40 saves in all, timed one by one, then every version loaded "
    "once. Saves and re-saves are compared with the Recorder's and the seed's timings of the same "
    "items (the last model, 390 trees, pickles several times slower than the first). "
    "The Recorder stores each save as one `R.start` run under a temp `file:` mlruns; "
    "the seed overwrites `model.pkl` per model_id, so it keeps a history only with one "
    "model_id per version, which is what it is given (no fsync, as the seed wrote it). "
    "Bytes are the apparent size of every file each one leaves (ours: the store folder — "
    "packs and log commits — and, separately, the local DuckDB catalog index, which lives "
    "outside the store, is derived from the log and is rebuilt by itself if deleted; "
    "Recorder: the whole mlruns tree; seed: pickles, metadata.json and SQLite). Ours is the "
    "default mode: a local folder, fsync on.")

WHY_SAVE = ("see the phase rows of the single-model scenario: pickling (LightGBM's "
            "`model_to_string`, which the Recorder pays too), zstd once a version's stream reaches "
            "1 MiB (the later, larger versions here), and two durable writes (the pack, then the log "
            "commit: a file and a folder fsync each).")
WHY_LOAD = ("unpickling (LightGBM re-parsing its text model, which `load_object` pays too), "
            "BLAKE3 verification of every chunk and, for the versions whose stream reached 1 MiB, "
            "zstd decompression; see the single-model phase rows.")


def run(quick: bool) -> list[Result]:
    n_versions, resaves = (4, 2) if quick else (30, 10)
    history = models.lgbm_history(n_versions, 10)
    sequence = list(history) + [history[-1]] * resaves
    rows: list[Result] = []
    with scratch("rolling") as base, open_recorder(base / "qlib") as rec, \
            ModelStore(base / "cas", catalog=base / "index" / "catalog.duckdb") as store:
        rec.save(history[0], models.metadata("warmup"))  # the first R.start of a process is slower
        warm = bytes_on_disk(rec.mlruns)
        seed = SeedRepository(base / "seed")
        # Item by item, the three side by side, so a change of the machine's load moves all three.
        rsaves, seed_saves, ours_saves = [], [], []
        for i, m in enumerate(sequence):
            rsaves.append(rec.save(m, models.metadata(f"rolling-{i}")))
            t = time.perf_counter()
            seed.save_model(m, models.metadata(f"rolling-{i}"))
            seed_saves.append(time.perf_counter() - t)
            md = models.metadata("rolling", rounds=models.BASE_ROUNDS + 10 * min(i, n_versions - 1))
            t = time.perf_counter()
            store.save_model(m, md)
            ours_saves.append(time.perf_counter() - t)
        load_object, get_and_load, seed_loads, ours_loads = [], [], [], []
        for i, s in enumerate(rsaves):
            t0 = time.perf_counter()
            recorder = rec.recorder(s.recorder_id, "bench")
            t1 = time.perf_counter()
            recorder.load_object("model.pkl")
            t2 = time.perf_counter()
            load_object.append(t2 - t1)
            get_and_load.append(t2 - t0)
            t = time.perf_counter()
            seed.load_model(f"rolling-{i}")
            seed_loads.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.load_model("rolling", i + 1)
            ours_loads.append(time.perf_counter() - t)
        rec_bytes = bytes_on_disk(rec.mlruns) - warm
        seed_bytes = bytes_on_disk(base / "seed")
        packs_bytes = store.stats().physical_bytes  # also brings the index up to date before it is sized
        store_bytes, index_bytes = bytes_on_disk(base / "cas"), bytes_on_disk(base / "index")

    def t(xs: list[float], part: slice = slice(None)) -> Timing:
        return Timing(tuple(xs[part]))

    first, again = slice(0, n_versions), slice(n_versions, None)
    block = [x.block for x in rsaves]
    save_objects = [x.save_objects for x in rsaves]
    n = len(sequence)
    rows += [
        Result("rolling", f"Recorder: bytes on disk ({n} runs)", rec_bytes / 1e6, "MB"),
        Result("rolling", f"seed: bytes on disk ({n} model_ids)", seed_bytes / 1e6, "MB"),
        t(block, first).result("rolling", "Recorder: R.start block, continued versions"),
        t(block, again).result("rolling", "Recorder: R.start block, the last model again"),
        t(save_objects, first).result("rolling", "Recorder: R.save_objects, continued versions"),
        t(load_object).result("rolling", "Recorder: load_object"),
        t(get_and_load).result("rolling", "Recorder: get_recorder + load_object"),
        t(seed_saves, first).result("rolling", "seed: save (no fsync), continued versions"),
        t(seed_loads).result("rolling", "seed: load"),
    ]
    store_r = Result("rolling", "ours: bytes on disk, store folder (packs + log)", store_bytes / 1e6, "MB")
    packs = Result("rolling", "ours: bytes on disk, packs only", packs_bytes / 1e6, "MB")
    rows += [
        relative_to(packs, "Recorder", rec_bytes / 1e6),
        relative_to(packs, "seed", seed_bytes / 1e6),
        relative_to(store_r, "Recorder", rec_bytes / 1e6, "<=", 0.2),
        relative_to(store_r, "seed", seed_bytes / 1e6, "<=", 0.2),
        Result("rolling", "ours: local catalog index (derived, outside the store)", index_bytes / 1e6, "MB"),
    ]
    save = t(ours_saves, first).result("rolling", "ours: save of a continued version")
    rows += [explain(faster_than(save, "R.start block, same versions", t(block, first), 5), WHY_SAVE),
             faster_than(save, "R.save_objects, same versions", t(save_objects, first)),
             faster_than(save, "seed save (no fsync), same versions", t(seed_saves, first))]
    resave = t(ours_saves, again).result("rolling", "ours: unchanged re-save of the last model")
    rows += [explain(faster_than(resave, "R.start block, same model", t(block, again), 5),
                     "a re-save must pickle the model to learn that nothing changed (the last model, 390 trees "
                     "at full size, pickles in several times the first one's time); see the lightgbm section "
                     "for where a re-save's time goes.")]
    load = t(ours_loads).result("rolling", "ours: load of a version")
    rows += [explain(faster_than(load, "load_object", t(load_object), 3), WHY_LOAD),
             faster_than(load, "seed load (unverified)", t(seed_loads))]
    return rows
