"""Child-process tasks of the large-array scenario, so each one's peak RSS is its own.

    python -m tools.bench.child TASK ARGS_JSON RESULT_JSON

(or through :data:`tools.bench.first_release.BOOT` to run a task on the first release's core.)

Each task builds its model itself (untimed), resets the kernel's peak-RSS mark right
before the timed operation, and writes seconds, bytes and peak RSS to RESULT_JSON.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import models
from .framework import bytes_on_disk, drop_page_cache, peak_rss_bytes, reset_peak_rss, rss_bytes
from .phases import PhaseClock


def _op(fn: Callable[[], Any], phases: bool = False) -> dict[str, Any]:
    """Run ``fn`` once: seconds, peak RSS during it, RSS before it, and (``phases``) where
    the time went — the timers cost ~1 µs a call, a few thousand calls a GiB."""
    clock = PhaseClock()
    before = rss_bytes()
    with clock.installed() if phases else contextlib.nullcontext():
        reset_peak_rss()
        t = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t
    out = {"seconds": seconds, "peak_rss": peak_rss_bytes(), "rss_before": before}
    if phases:
        out["phases"] = clock.take()
    return out


def _load_codec() -> float:
    """Import the zstd codec (pyarrow) as any earlier save or load of the process has; its seconds."""
    t = time.perf_counter()
    try:
        from cas_repo import compression

        compression.maybe_compress(bytes(1024))
    except (ImportError, AttributeError):  # a core without it (the first release's, maybe)
        return 0.0
    return time.perf_counter() - t


def ours_save(a: dict[str, Any]) -> dict[str, Any]:
    from cas_repo import ModelStore

    codec = _load_codec()
    idle = rss_bytes()
    model = models.array_model(a["bytes"], a["arrays"])
    out: dict[str, Any] = {"idle_rss": idle, "model_bytes": models.array_bytes(model), "codec_import": codec}
    with ModelStore(a["root"]) as store:
        objects = Path(a["root"]) / "objects"

        def step(name: str, fn: Callable[[], Any]) -> None:
            # Bytes on disk, not the catalog's accounting: a pack written but never
            # catalogued would be missed by the latter.
            before = bytes_on_disk(objects)
            out[name] = _op(fn, phases=name == "first" and a.get("phases", True)) | {
                "new_bytes": bytes_on_disk(objects) - before}

        step("first", lambda: store.save_model(model, models.metadata("big", model_type="DNN")))
        step("resave", lambda: store.save_model(model, models.metadata("big", model_type="DNN")))
        out["changed_arrays"] = models.change_arrays(model, 0.01)
        step("arrays_1pct", lambda: store.save_model(model, models.metadata("big", model_type="DNN")))
        out["changed_slices"] = models.change_slices(model, 0.01)
        step("slices_1pct", lambda: store.save_model(model, models.metadata("big", model_type="DNN")))
    return out


def ours_load(a: dict[str, Any]) -> dict[str, Any]:
    from cas_repo import ModelStore

    out: dict[str, Any] = {"codec_import": _load_codec(), "idle_rss": rss_bytes()}
    with ModelStore(a["root"]) as store:
        store.get_model_metadata("big", 1)  # the catalog's pages, not the packs', are warmed
        if a["cold"]:
            out["cold_by"] = drop_page_cache(Path(a["root"]) / "objects")
        else:
            store.load_model("big", 1)  # warms the page cache; the result is dropped
        holder: list[Any] = []
        out["load"] = _op(lambda: holder.append(store.load_model("big", 1)[0]), phases=a.get("phases", True))
        model = holder[0]
        out["model_bytes"] = models.array_bytes(model)
        out["identical"] = all(np.array_equal(model["state"][name], expected)
                               for name, expected in models.iter_arrays(a["bytes"], a["arrays"]))
    return out


def seed_save(a: dict[str, Any]) -> dict[str, Any]:
    from .seed_baseline import SeedRepository

    idle = rss_bytes()
    model = models.array_model(a["bytes"], a["arrays"])
    seed = SeedRepository(a["root"], fsync=a["fsync"])
    out: dict[str, Any] = {"idle_rss": idle, "model_bytes": models.array_bytes(model)}
    out["first"] = _op(lambda: seed.save_model(model, models.metadata("big", model_type="DNN")))
    out["rewrite"] = _op(lambda: seed.save_model(model, models.metadata("big", model_type="DNN")))
    out["file_bytes"] = (Path(a["root"]) / "models" / "big" / "model.pkl").stat().st_size
    return out


def seed_load(a: dict[str, Any]) -> dict[str, Any]:
    from .seed_baseline import SeedRepository

    out: dict[str, Any] = {"idle_rss": rss_bytes()}
    seed = SeedRepository(a["root"])
    seed.load_model("big")  # warm page cache, as for our warm load
    if a.get("cold"):
        out["cold_by"] = drop_page_cache(Path(a["root"]) / "models")
    out["load"] = _op(lambda: seed.load_model("big"))
    return out


TASKS = {f.__name__: f for f in (ours_save, ours_load, seed_save, seed_load)}


def main(argv: list[str]) -> int:
    task, args, result = argv
    out = TASKS[task](json.loads(args))
    Path(result).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
