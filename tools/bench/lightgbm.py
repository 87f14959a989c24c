"""Save and load one ~300 KB LightGBM model in the default mode (local folder, fsync on),
against `pickle` itself, the seed's pickle + SQLite and Qlib's Recorder, with a per-phase
breakdown of a save and a load."""

from __future__ import annotations

import os
import pickle
import statistics
from collections.abc import Callable
from contextlib import ExitStack
from itertools import count
from pathlib import Path
from typing import Any

from cas_repo import ModelStore
from cas_repo.content import to_content
from cas_repo.digest import Digest, hash_bytes
from cas_repo.objects.keys import log_key, pack_key
from cas_repo.objects.local import LocalBackend

from . import models
from .framework import (
    Result,
    Timing,
    bytes_on_disk,
    explain,
    faster_than,
    measure,
    measure_many,
    no_slower_than,
    scratch,
    within,
)
from .phases import breakdown
from .recorder import open_recorder
from .seed_baseline import SeedRepository

TITLE = "One LightGBM model: save and load"
ABOUT = (
    "A real 100-tree Qlib `LGBModel` (~300 KB pickled), in the default mode: a local folder, "
    "fsync on, no catalog on the save or load path. *Save* stores a newly trained model "
    "(a variant of the base model with every leaf value rescaled, so no chunk is shared: "
    "the bytes of a retrain) as the next version of one model_id, in a store already in use "
    "(a few hundred earlier saves, so its folders exist); every byte is pickled, chunked, "
    "hashed, packed and fsynced (a pickle stream under 1 MiB is stored uncompressed), then the "
    "log commit is created and fsynced. "
    "*Unchanged re-save* stores the same model again: only a commit is written. *Load* "
    "reads, verifies and unpickles the latest version from a warm page cache. Baselines, "
    "over the same model in the same run: `pickle.dumps` / `pickle.loads` (protocol 4, "
    "Qlib's own), `to_content` (pickle + FastCDC + BLAKE3: what a save must do to learn "
    "that nothing changed), the seed's pickle + metadata.json + SQLite as it wrote them (no "
    "fsync; with fsync for comparison), and the Recorder's whole `R.start` block (params, "
    "metrics, `save_objects`, recorder id) and `get_recorder(...).load_object`. Phase rows "
    "are medians of a separate instrumented pass; *other* is the time no phase timer "
    "covers (metadata checks, building the commit's operation, Python glue). *Floor* rows "
    "are the disk's own cost of the durable writes, through the store's backend on the same "
    "disk, interleaved with the operations above: a 300 KB pack put (temp file, fsync, "
    "rename, folder fsync) then a 1 KB create-only commit (temp file, fsync, `link(2)`, "
    "folder fsync), as a save makes them, and the commit alone, as a re-save makes it.")

SAVE_ALLOWANCE_MS = 1.5
LOAD_ALLOWANCE_MS = 1.0
RESAVE_ALLOWANCE_MS = 1.0
# Earlier saves before the timed ones (see models.fill_store).
PREFILL = 400


def _phase_rows(op: str, phases: dict[str, list[float]]) -> list[Result]:
    rows = []
    for name, samples in phases.items():
        med = statistics.median(samples) * 1e3
        if med > 0:  # every phase the operation reached (a raw load still passes by decompress)
            rows.append(Result("lightgbm", f"{op} phase: {name}", med, "ms",
                               low=min(samples) * 1e3, high=max(samples) * 1e3, repeats=len(samples)))
    return rows


def _median_ms(phases: dict[str, list[float]], name: str) -> float:
    return statistics.median(phases.get(name, [0.0])) * 1e3


def _durable_writes(folder: Path, pack_bytes: int) -> tuple[Callable[[], None], Callable[[], bool]]:
    """A save's two durable writes (pack put, then commit create) and a re-save's one, on a
    backend of their own in ``folder`` (same disk as the store, one shard folder)."""
    backend = LocalBackend(folder)
    pack, commit = [os.urandom(pack_bytes)], os.urandom(1024)
    positions = iter(range(1, 10**9))

    def name() -> str:
        return pack_key(Digest.from_hex("00" + os.urandom(31).hex()))

    def both() -> None:
        backend.put(name(), pack)
        backend.create(log_key(next(positions)), commit)

    both()  # the shard and log folders exist from here on, as in a store in use
    return both, lambda: backend.create(log_key(next(positions)), commit)


def _first_save(model: Any, base: Path, repeats: int) -> Timing:
    """Saves into an empty store (a new store per run, opened untimed)."""
    stores: list[ModelStore] = []
    n = count()

    def setup() -> None:
        if stores:
            stores.pop().close()
        stores.append(ModelStore(base / f"empty{next(n)}"))

    try:
        return measure(lambda: stores[-1].save_model(model, models.metadata("lgb")), repeats, setup=setup)
    finally:
        for s in stores:
            s.close()


def _why_save(save: Result, dumps_ms: float, phases: dict[str, list[float]], floor_ms: float) -> str:
    pack = _median_ms(phases, "pack write + fsync")
    commit = _median_ms(phases, "log commit (write + fsync + link)")
    pickling = _median_ms(phases, "pickling")
    cpu = sum(_median_ms(phases, p) for p in phases) - pack - commit - pickling
    return (f"the phase rows: of the instrumented save's ~{pack + commit + cpu + pickling:.1f} ms, pickling takes "
            f"{pickling:.1f} ms (pickle.dumps alone: {dumps_ms:.1f} ms), the pack's durable write {pack:.1f} ms and "
            f"the log commit's {commit:.1f} ms — a file and a folder fsync each, in that order, so that a "
            f"commit never names bytes a power cut could lose — and the rest of the store's work {cpu:.1f} ms. "
            f"The floor rows give this disk's own cost of those two durable writes in the same run, interleaved: "
            f"{floor_ms:.2f} ms"
            + (f", more than the {SAVE_ALLOWANCE_MS} ms allowance before any CPU work: no save that makes a pack "
               "and a commit durable, one after the other, can meet it on this disk. "
               if floor_ms >= SAVE_ALLOWANCE_MS else ". ")
            + "One durable write fewer would take a small save's entries inside its log commit (a change of "
            "the commit format and of what gc and fsck read).")


def _why_load(load_ms: float, loads_ms: float, phases: dict[str, list[float]]) -> str:
    names = sorted(phases, key=lambda p: -_median_ms(phases, p))
    top = ", ".join(f"{p} {_median_ms(phases, p):.2f} ms" for p in names[:5])
    return (f"the phase rows ({top}): besides unpickling (LightGBM re-parsing its text model, which "
            f"pickle.loads pays too: {loads_ms:.2f} ms), a load reads the manifest, reads the ~30 chunks of "
            "the stream straight into one buffer (`preadv`), verifies each with BLAKE3 and walks the stream's "
            "opcodes for EXT codes before unpickling; the log is looked at once per load "
            "(`lookup.current_row`).")


def run(quick: bool) -> list[Result]:
    repeats = 5 if quick else 25
    n_phase = max(3, repeats // 2)
    base = models.lgbm_base()
    variants = iter(models.lgbm_variants(1 + repeats + n_phase))
    blob = pickle.dumps(base, protocol=4)
    rows = [Result("lightgbm", "model size (pickle protocol 4)", len(blob) / 1e3, "KB")]
    with scratch("lgbm") as d, open_recorder(d / "qlib") as rec, ExitStack() as undo:
        rec.save(base, models.metadata("lgb"))  # the first R.start of a process is slower
        block: list[float] = []
        rid: list[str] = []

        def recorder_block() -> None:
            s = rec.save(base, models.metadata("lgb"))
            block.append(s.block)
            rid.append(s.recorder_id)

        seed, seed_sync = SeedRepository(d / "seed"), SeedRepository(d / "seed-fsync", fsync=True)
        ids = count()
        models.fill_store(d / "cas", PREFILL)
        store = undo.enter_context(ModelStore(d / "cas"))
        store.save_model(base, models.metadata("lgb"))
        seed.save_model(base, models.metadata("lgb-seed"))
        packs = d / "cas" / "objects" / "packs"
        save_io, commit_io = _durable_writes(d / "floor", len(blob))
        before = bytes_on_disk(packs)
        timings = measure_many({
            "pickle.dumps": lambda: pickle.dumps(base, protocol=4),
            "pickle.loads": lambda: pickle.loads(blob),
            "to_content": lambda: to_content(base),
            "blake3": lambda: hash_bytes(blob),
            "save": lambda: store.save_model(next(variants), models.metadata("lgb-new")),
            "resave": lambda: store.save_model(base, models.metadata("lgb")),
            "load": lambda: store.load_model("lgb"),
            "seed save": lambda: seed.save_model(base, models.metadata(f"lgb{next(ids)}")),
            "seed save fsync": lambda: seed_sync.save_model(base, models.metadata(f"lgb{next(ids)}")),
            "seed load": lambda: seed.load_model("lgb-seed"),
            "R.start": recorder_block,
            "load_object": lambda: rec.load(rid[-1], "bench"),
            "floor save": save_io,
            "floor commit": commit_io,
        }, repeats)
        grown = bytes_on_disk(packs) - before
        # Pack bytes of the re-saves alone, then the instrumented passes.
        before = bytes_on_disk(packs)
        for _ in range(3):
            store.save_model(base, models.metadata("lgb"))
        resave_bytes = bytes_on_disk(packs) - before
        phases_save, _ = breakdown(lambda: store.save_model(next(variants), models.metadata("lgb-new")), n_phase)
        phases_resave, _ = breakdown(lambda: store.save_model(base, models.metadata("lgb")), n_phase)
        phases_load, _ = breakdown(lambda: store.load_model("lgb"), n_phase)
        first = _first_save(base, d, n_phase)
    t = timings
    block_t = Timing(tuple(block[-repeats:]))  # the block's own time, without the timer's closure
    dumps, loads, content = t["pickle.dumps"], t["pickle.loads"], t["to_content"]
    rows += [dumps.result("lightgbm", "pickle.dumps"), loads.result("lightgbm", "pickle.loads"),
             content.result("lightgbm", "to_content (pickle + FastCDC + BLAKE3 per chunk)"),
             t["blake3"].result("lightgbm", "BLAKE3 of the pickled bytes", unit="µs"),
             block_t.result("lightgbm", "Recorder: R.start block (params, metrics, save_objects)"),
             t["load_object"].result("lightgbm", "Recorder: get_recorder + load_object"),
             t["seed save"].result("lightgbm", "seed: save (pickle + json + SQLite, no fsync)"),
             t["seed save fsync"].result("lightgbm", "seed: save with fsync of both files"),
             t["seed load"].result("lightgbm", "seed: load (pickle.load + SQLite)")]

    floor_save, floor_commit = t["floor save"], t["floor commit"]
    save = t["save"].result("lightgbm", "save (new model, store in use)")
    why = _why_save(save, dumps.median * 1e3, phases_save, floor_save.median * 1e3)
    rows += [explain(within(save, "pickle.dumps", dumps, SAVE_ALLOWANCE_MS), why),
             explain(faster_than(save, "seed save (no fsync)", t["seed save"], 1.0), why),
             explain(faster_than(save, "R.start block", block_t, 5), why),
             faster_than(save, "seed save + fsync", t["seed save fsync"]),
             Result("lightgbm", "save (new model): beyond pickle.dumps and the floor of its two durable writes",
                    save.value - (dumps.median + floor_save.median) * 1e3, "ms",
                    note="the store's own CPU work: what a faster disk would leave of the gap"),
             Result("lightgbm", "save (new model): new pack bytes per save", grown / (repeats + 1) / 1e3, "KB"),
             first.result("lightgbm", "first save into an empty store (new folders fsynced too)")]

    load = t["load"].result("lightgbm", "load (latest version, warm cache)")
    why = _why_load(load.value, loads.median * 1e3, phases_load)
    rows += [explain(within(load, "pickle.loads", loads, LOAD_ALLOWANCE_MS), why),
             explain(no_slower_than(load, "seed load (unverified)", t["seed load"], 1.2), why),
             explain(faster_than(load, "load_object", t["load_object"], 3), why)]

    resave = t["resave"].result("lightgbm", "unchanged re-save")
    commit = _median_ms(phases_resave, "log commit (write + fsync + link)")
    other = sum(_median_ms(phases_resave, p) for p in phases_resave) - commit - _median_ms(phases_resave, "pickling") \
        - _median_ms(phases_resave, "chunking (FastCDC)") - _median_ms(phases_resave, "chunk hashing (BLAKE3)")
    why = (f"a re-save is to_content plus one commit; the commit's durable create (file and folder "
           f"fsync) took {commit:.2f} ms in the instrumented pass, against a floor of "
           f"{floor_commit.median * 1e3:.2f} ms for a 1 KB create on this disk in the same run, interleaved; the "
           f"rest of the store's work (catch-up, metadata, building and encoding the commit, folding it) took "
           f"{other:.2f} ms.")
    rows += [explain(within(resave, "to_content + one durable commit",
                            content.median + floor_commit.median, RESAVE_ALLOWANCE_MS), why),
             explain(within(resave, "to_content", content, RESAVE_ALLOWANCE_MS), why),
             faster_than(resave, "R.start block", block_t),
             Result("lightgbm", "unchanged re-save: new pack bytes on disk", resave_bytes, "B",
                    target="= 0 B", met=resave_bytes == 0,
                    note="bytes of new files under objects/packs/ over 3 re-saves after the timed ones")]
    rows += _phase_rows("save", phases_save)
    rows += _phase_rows("unchanged re-save", phases_resave)
    rows += _phase_rows("load", phases_load)
    rows += [floor_save.result("lightgbm", "floor: a save's durable writes (300 KB pack put, then 1 KB commit "
                                           "create), same disk"),
             floor_commit.result("lightgbm", "floor: one durable commit (1 KB create), same disk")]
    return rows
