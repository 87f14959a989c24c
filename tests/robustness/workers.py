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


def _wait_for_gate() -> None:
    """Start together: block until the parent creates the file named by CAS_TEST_GATE."""
    gate = os.environ.get("CAS_TEST_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.002)


def cmd_saver(root: str, model_id: str, count: str, first_seed: str, size: str) -> None:
    """``count`` saves to one model_id (same payload if ``first_seed`` ends in '='); acks each."""
    same = first_seed.endswith("=")
    first = int(first_seed.rstrip("="))
    with ModelStore(root, lock_timeout=120) as store:
        _say("ready")
        _wait_for_gate()
        for i in range(int(count)):
            model = payload(first if same else first + i, int(size))
            md = metadata(model_id)
            store.save_model(model, md)
            _say("ack", md.version, fingerprint(model))


def cmd_reader(root: str, model_id: str, stop_file: str) -> None:
    """Read while others write, until ``stop_file`` exists; every answer is checked for sense.

    Prints ``reads <n>`` at the end; any exception (or a garbled answer) exits non-zero.
    """
    reads, last_count = 0, 0
    with ModelStore(root, lock_timeout=120) as store:
        _say("ready")
        while not os.path.exists(stop_file):
            heads = store.list_models()
            for md in heads:
                assert md.model_id == model_id and md.version >= 1, md
            if heads:
                model, md = store.load_model(model_id)
                # A payload regenerates from its seed: any torn or mixed read shows here.
                assert fingerprint(model) == fingerprint(payload(model["seed"], model["size"])), md
                assert md.digest and md.version >= heads[0].version
            with store.catalog.session() as s:
                count, top = s.con.execute(
                    "SELECT count(*), coalesce(max(version), 0) FROM versions WHERE model_id = ?",
                    [model_id]).fetchone()
            assert count == top >= last_count, (count, top, last_count)  # no gaps, never backwards
            last_count = count
            reads += 1
    _say("reads", reads)


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
