"""Child processes of the store-at-scale scenario (``scale_store``).

    python -m tools.bench.scale_child build ROOT WORKER WORKERS MODELS VERSIONS
    python -m tools.bench.scale_child first_list ROOT RESULT_JSON [--phases]

``build`` saves tiny models, fsync off, into versions ``1..VERSIONS`` of every model whose
number is ``WORKER`` modulo ``WORKERS``, version by version, so the commits of all models
interleave as daily retrains do. ``first_list`` is a process new to the store: it times
opening the store and its first ``list_models()``, then answers the parent's requests
(see :func:`watch`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from . import models

MODEL_ID = "m{:05d}"


def build(root: str, worker: int, workers: int, n_models: int, versions: int) -> None:
    from cas_repo import ModelStore

    mine = range(worker, n_models, workers)
    with ModelStore(root, backend_options={"fsync": False}) as store:
        for v in range(1, versions + 1):
            for m in mine:
                md = models.metadata(MODEL_ID.format(m), model_type="MLP", experiment=f"exp{m % 20:02d}",
                                     ic=0.01 + (m * 7 + v) % 97 / 1000)
                store.save_model(models.tiny_model(m, v), md)


def first_list(root: str, phases: bool) -> dict[str, Any]:
    """Open the store and list it, timed, in this fresh process (optionally with phase timers)."""
    import contextlib

    from cas_repo import ModelStore

    from .phases import PhaseClock

    clock = PhaseClock(extra_sites=FIRST_LIST_SITES)
    with clock.installed() if phases else contextlib.nullcontext():
        t0 = time.perf_counter()
        store = ModelStore(root)
        t1 = time.perf_counter()
        listed = store.list_models()
        t2 = time.perf_counter()
    out = {"open": t1 - t0, "list": t2 - t1, "models": len(listed), "position": store.ledger.refresh()}
    if phases:
        out["phases"] = clock.take()
    store.close()
    return out


# Where a new process's first list_models() spends its time (besides the default sites).
FIRST_LIST_SITES = (
    ("cas_repo.log.log", "Log", "checkpoints", "list checkpoints"),
    ("cas_repo.log.log", "Log", "read_checkpoint", "read checkpoint"),
    ("cas_repo.log.checkpoint", None, "decode", "decode checkpoint"),
    ("cas_repo.log.log", "Log", "read", "read a commit"),
    ("cas_repo.repository", None, "to_metadata", "rows to ModelMetadata"),
)


def watch(root: str, conn: Any) -> None:
    """A process that has listed the store once, then times, on each request from the
    parent (which saves from another process in between), the next ``list_models()`` and
    ``load_model`` and reports whether they saw the parent's save."""
    from cas_repo import ModelStore

    with ModelStore(root) as store:
        store.list_models()
        conn.send("ready")
        while True:
            request = conn.recv()
            if request is None:
                return
            model_id, version = request
            t0 = time.perf_counter()
            listed = store.list_models()
            t1 = time.perf_counter()
            _model, md = store.load_model(model_id)
            t2 = time.perf_counter()
            seen_list = any(m.model_id == model_id and m.version == version for m in listed)
            t3 = time.perf_counter()
            store.list_models()  # nothing new: the listing alone
            t4 = time.perf_counter()
            conn.send({"list": t1 - t0, "load": t2 - t1, "list_again": t4 - t3,
                       "seen": seen_list and md.version == version, "models": len(listed)})


def main(argv: list[str]) -> int:
    task, *args = argv
    if task == "build":
        root, worker, workers, n_models, versions = args
        build(root, int(worker), int(workers), int(n_models), int(versions))
    elif task == "first_list":
        root, result, *flags = args
        Path(result).write_text(json.dumps(first_list(root, "--phases" in flags)))
    else:
        raise SystemExit(f"unknown task {task!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
