"""Child processes for the crash and concurrency tests: ``python -m tests.robustness.workers CMD …``.

Each command prints one line per acknowledged operation (flushed, so a parent reading
the pipe after a SIGKILL sees exactly what was acknowledged) and exits 0 on success.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np

from cas_repo import ModelMetadata, ModelStore

# Payloads at or above this size are numpy arrays, so they travel out of band.
ARRAY_MIN = 64 << 10


def payload(seed: int, size: int):
    """A deterministic model of about ``size`` bytes: bytes when small, an array when large."""
    raw = np.random.default_rng(seed).bytes(size)
    data = np.frombuffer(raw, dtype=np.uint8).copy() if size >= ARRAY_MIN else raw
    return {"seed": seed, "size": size, "data": data}


def fingerprint(model) -> str:
    """SHA-256 of a payload's bytes and identity (independent of cas-repo's own hashing)."""
    data = model["data"]
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    return hashlib.sha256(f"{model['seed']}:{model['size']}:".encode() + raw).hexdigest()


def metadata(model_id: str, **metrics: float) -> ModelMetadata:
    return ModelMetadata(model_id=model_id, experiment_name="robustness", model_type="RAW",
                         hyperparameters={"k": 1}, metrics=metrics or {"IC": 0.1},
                         created_at=datetime(2026, 1, 1, tzinfo=timezone.utc))


def _say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def cmd_save(root: str, model_id: str, size: str, seed: str) -> None:
    """One save; prints ``ack <version> <fingerprint>``."""
    model = payload(int(seed), int(size))
    md = metadata(model_id)
    with ModelStore(root) as store:
        store.save_model(model, md)
    _say("ack", md.version, fingerprint(model))


def cmd_delete(root: str, model_id: str) -> None:
    with ModelStore(root) as store:
        store.delete_model(model_id)
    _say("ack delete")


def cmd_saver(root: str, model_id: str, count: str, first_seed: str, size: str) -> None:
    """``count`` saves of distinct payloads to one model_id; prints ``ack <version> <fp>`` each."""
    with ModelStore(root, lock_timeout=120) as store:
        for i in range(int(count)):
            model = payload(int(first_seed) + i, int(size))
            md = metadata(model_id)
            store.save_model(model, md)
            _say("ack", md.version, fingerprint(model))


def cmd_hold_lock(root: str, seconds: str) -> None:
    """Hold the catalog lock (inside a session) for ``seconds``, then release it."""
    with ModelStore(root) as store:
        with store.catalog.session():
            _say("holding", os.getpid())
            time.sleep(float(seconds))
        _say("released")


def main(argv: list[str]) -> None:
    name, *args = argv
    globals()["cmd_" + name.replace("-", "_")](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
