"""A rolling LightGBM history: 30 continued versions (+10 trees each) and 10 unchanged
re-saves, stored by us, by Qlib's Recorder and by the seed's design."""

from __future__ import annotations

import time
from typing import Any

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
    "once. The Recorder stores each save as one `R.start` run under a temp `file:` mlruns; "
    "the seed overwrites `model.pkl` per model_id, so it keeps a history only with one "
    "model_id per version, which is what it is given (no fsync, as the seed wrote it). "
    "Bytes are the apparent size of every file each one leaves (ours: packs and the DuckDB "
    "catalog; Recorder: the whole mlruns tree; seed: pickles, metadata.json and SQLite).")

WHY_BYTES = ("the DuckDB catalog file dominates a store this small: DuckDB gives every table "
             "and index whole 256 KiB blocks, ~4–7 MB before the first thousand versions, "
             "while the packs of the whole history are the 'packs only' rows. Creating the "
             "catalog with DuckDB's `default_block_size` at 16 KiB shrank it to ~0.6 MB in a "
             "trial here; that is the catalog's call, to weigh against its behaviour at "
             "scale.")
WHY_SAVE = ("see the phase rows of the single-model scenario: the catalog's ~10 DuckDB "
            "statements and WAL commit, pickling (LightGBM's `model_to_string`, which the "
            "Recorder pays too) and two fsyncs for the pack put a floor under a save, and in "
            "shared mode a DuckDB open and close per save comes on top. Fewer statements per "
            "save and group commit are what would close it.")
WHY_LOAD = ("the catalog's point queries, unpickling (LightGBM re-parsing its text model, "
            "which `load_object` pays too) and zstd decompression, plus in shared mode a "
            "DuckDB open per load; see the single-model phase rows.")


def _ours(history: tuple[Any, ...], resaves: int, root: Any, exclusive: bool) -> dict[str, Any]:
    saves, resave_times, loads = [], [], []
    with ModelStore(root, exclusive=exclusive) as store:
        for i, m in enumerate(history):
            md = models.metadata("rolling", rounds=models.BASE_ROUNDS + 10 * i)
            t = time.perf_counter()
            store.save_model(m, md)
            saves.append(time.perf_counter() - t)
        for _ in range(resaves):
            t = time.perf_counter()
            store.save_model(history[-1], models.metadata("rolling"))
            resave_times.append(time.perf_counter() - t)
        for v in range(1, len(history) + resaves + 1):
            t = time.perf_counter()
            store.load_model("rolling", v)
            loads.append(time.perf_counter() - t)
        stats = store.stats()
    return {"save": Timing(tuple(saves)), "resave": Timing(tuple(resave_times)),
            "load": Timing(tuple(loads)), "packs": stats.physical_bytes, "total": bytes_on_disk(root)}


def run(quick: bool) -> list[Result]:
    n_versions, resaves = (4, 2) if quick else (30, 10)
    history = models.lgbm_history(n_versions, 10)
    sequence = list(history) + [history[-1]] * resaves
    rows: list[Result] = []
    with scratch("rolling") as base:
        with open_recorder(base / "qlib") as rec:
            rec.save(history[0], models.metadata("warmup"))  # the first R.start of a process is slower
            warm = bytes_on_disk(rec.mlruns)
            rsaves = [rec.save(m, models.metadata(f"rolling-{i}")) for i, m in enumerate(sequence)]
            block = Timing(tuple(s.block for s in rsaves))
            save_objects = Timing(tuple(s.save_objects for s in rsaves))
            load_object, get_and_load = [], []
            for s in rsaves:
                t0 = time.perf_counter()
                recorder = rec.recorder(s.recorder_id, "bench")
                t1 = time.perf_counter()
                recorder.load_object("model.pkl")
                t2 = time.perf_counter()
                load_object.append(t2 - t1)
                get_and_load.append(t2 - t0)
            rec_bytes = bytes_on_disk(rec.mlruns) - warm
        load_object_t, get_and_load_t = Timing(tuple(load_object)), Timing(tuple(get_and_load))

        seed = SeedRepository(base / "seed")
        seed_saves, seed_loads = [], []
        for i, m in enumerate(sequence):
            t = time.perf_counter()
            seed.save_model(m, models.metadata(f"rolling-{i}"))
            seed_saves.append(time.perf_counter() - t)
        for i in range(len(sequence)):
            t = time.perf_counter()
            seed.load_model(f"rolling-{i}")
            seed_loads.append(time.perf_counter() - t)
        seed_bytes = bytes_on_disk(base / "seed")
        seed_save_t, seed_load_t = Timing(tuple(seed_saves)), Timing(tuple(seed_loads))

        n = len(sequence)
        rows += [
            Result("rolling", f"Recorder: bytes on disk ({n} runs)", rec_bytes / 1e6, "MB"),
            Result("rolling", f"seed: bytes on disk ({n} model_ids)", seed_bytes / 1e6, "MB"),
            block.result("rolling", "Recorder: R.start block"),
            save_objects.result("rolling", "Recorder: R.save_objects"),
            load_object_t.result("rolling", "Recorder: load_object"),
            get_and_load_t.result("rolling", "Recorder: get_recorder + load_object"),
            seed_save_t.result("rolling", "seed: save (no fsync)"),
            seed_load_t.result("rolling", "seed: load"),
        ]
        for exclusive in (False, True):
            mode = "exclusive" if exclusive else "shared"
            ours = _ours(history, resaves, base / f"cas-{mode}", exclusive)
            total = Result("rolling", f"ours ({mode}): bytes on disk, packs + catalog", ours["total"] / 1e6, "MB")
            packs = Result("rolling", f"ours ({mode}): bytes on disk, packs only", ours["packs"] / 1e6, "MB")
            rows += [
                relative_to(packs, "Recorder", rec_bytes / 1e6),
                relative_to(packs, "seed", seed_bytes / 1e6),
                explain(relative_to(total, "Recorder", rec_bytes / 1e6, "<=", 0.2), WHY_BYTES),
                explain(relative_to(total, "seed", seed_bytes / 1e6, "<=", 0.2), WHY_BYTES),
            ]
            save = ours["save"].result("rolling", f"ours ({mode}): save of a continued version")
            rows += [explain(faster_than(save, "R.start block", block, 5), WHY_SAVE),
                     faster_than(save, "R.save_objects", save_objects),
                     faster_than(save, "seed save (no fsync)", seed_save_t)]
            resave = ours["resave"].result("rolling", f"ours ({mode}): unchanged re-save")
            rows += [faster_than(resave, "R.start block", block, 5)]
            load = ours["load"].result("rolling", f"ours ({mode}): load of a version")
            rows += [explain(faster_than(load, "load_object", load_object_t, 3), WHY_LOAD),
                     faster_than(load, "seed load (unverified)", seed_load_t)]
    return rows
