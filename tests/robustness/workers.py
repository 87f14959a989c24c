"""Child processes for the crash and concurrency tests: ``python -m tests.robustness.workers CMD …``.

Each command prints one line per acknowledged operation (flushed, so a parent reading
the pipe after a SIGKILL sees exactly what was acknowledged) and exits 0 on success.
A store's catalog index is the default one (``$CAS_REPO_INDEX_DIR``, which the harness
passes on) unless a command is given an index path of its own.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from datetime import UTC, datetime

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
                         created_at=datetime(2026, 1, 1, tzinfo=UTC))


def _say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def _open(root: str, catalog: str = "") -> ModelStore:
    return ModelStore(root, catalog=catalog or None, lock_timeout=120)


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


def cmd_rollback(root: str, model_id: str, to_version: str) -> None:
    with ModelStore(root) as store:
        version = store.rollback(model_id, int(to_version))
    _say("ack", version)


def cmd_history(root: str, model_id: str) -> None:
    """A catalog-index session (catch-up included); prints ``ack <versions…>``."""
    with ModelStore(root) as store:
        versions = [md.version for md in store.history(model_id)]
    _say("ack", *versions)


def cmd_index_and_die(root: str) -> None:
    """Catch the index up (one committed DuckDB transaction), then SIGKILL itself inside the
    session, before DuckDB could checkpoint: the index is left with a write-ahead log."""
    store = ModelStore(root)
    with store.catalog.session():
        _say("indexed")
        os.kill(os.getpid(), signal.SIGKILL)


def _wait_for_gate() -> None:
    """Start together: block until the parent creates the file named by CAS_TEST_GATE."""
    gate = os.environ.get("CAS_TEST_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.002)


def cmd_saver(root: str, model_ids: str, count: str, first_seed: str, size: str) -> None:
    """``count`` saves, cycling through the comma-separated ``model_ids`` (the same payload
    every time if ``first_seed`` ends in '='); prints ``ack <model> <version> <fingerprint>``."""
    same = first_seed.endswith("=")
    first = int(first_seed.rstrip("="))
    ids = model_ids.split(",")
    with _open(root) as store:
        _say("ready")
        _wait_for_gate()
        for i in range(int(count)):
            model = payload(first if same else first + i, int(size))
            md = metadata(ids[i % len(ids)])
            store.save_model(model, md)
            _say("ack", md.model_id, md.version, fingerprint(model))


def cmd_shared_saver(root: str, model_id: str, seed: str, shared_size: str, own_size: str) -> None:
    """One save of a model made of an array every shared_saver has (same seed 0) and bytes of
    its own: racing savers share chunks without sharing a manifest (or a pack)."""
    shared = np.frombuffer(np.random.default_rng(0).bytes(int(shared_size)), dtype=np.uint8).copy()
    model = {"shared": shared, "own": np.random.default_rng(int(seed)).bytes(int(own_size))}
    md = metadata(model_id)
    with _open(root) as store:
        _say("ready")
        _wait_for_gate()
        store.save_model(model, md)
    _say("ack", md.model_id, md.version, md.digest)


def cmd_reader(root: str, model_id: str, stop_file: str) -> None:
    """Read while others write, until ``stop_file`` exists; every answer is checked for sense.

    Loads and lists (from the log's fold), history and SQL (from the catalog index, caught
    up in each session). The last round starts after ``stop_file`` appeared, so it sees
    every save acknowledged before. Prints ``reads <n> <versions seen last>`` at the end;
    any exception (or a garbled answer) exits non-zero.
    """
    reads, last_count = 0, 0
    with _open(root) as store:
        _say("ready")
        while True:
            stopping = os.path.exists(stop_file)
            heads = store.list_models()
            for md in heads:
                assert md.model_id == model_id and md.version >= 1, md
            if heads:
                model, md = store.load_model(model_id)
                # A payload regenerates from its seed: any torn or mixed read shows here.
                assert fingerprint(model) == fingerprint(payload(model["seed"], model["size"])), md
                assert md.digest and md.version >= heads[0].version
                history = [h.version for h in store.history(model_id)]
                assert history == list(range(1, len(history) + 1)) and len(history) >= md.version, history
            row = store.sql("SELECT count(*) AS n, coalesce(max(version), 0) AS top FROM v_versions "
                            "WHERE model_id = ?", [model_id]).to_pylist()[0]
            count, top = row["n"], row["top"]
            assert count == top >= last_count, (count, top, last_count)  # no gaps, never backwards
            last_count = count
            reads += 1
            if stopping:
                break
    _say("reads", reads, last_count)


def cmd_hold_index(root: str, stop_file: str) -> None:
    """Hold the catalog index's lock (inside a session) until ``stop_file`` exists."""
    with ModelStore(root) as store:
        with store.catalog.session():
            _say("holding", os.getpid())
            while not os.path.exists(stop_file):
                time.sleep(0.01)
        _say("released")


def cmd_serve(root: str, catalog: str) -> None:
    """Answer commands from stdin, one per line, with this process's own index at ``catalog``:

    ``save MODEL SEED SIZE`` → ``ack VERSION FINGERPRINT``;
    ``show MODEL`` → ``seen LOAD_VERSION LOAD_FINGERPRINT LIST_VERSION HISTORY_LEN SQL_MAX``.
    """
    with _open(root, catalog) as store:
        _say("ready")
        for line in sys.stdin:
            cmd, *args = line.split()
            if cmd == "save":
                model = payload(int(args[1]), int(args[2]))
                md = metadata(args[0])
                store.save_model(model, md)
                _say("ack", md.version, fingerprint(model))
            elif cmd == "show":
                _say("seen", *view(store, args[0]))


def view(store: ModelStore, model_id: str) -> tuple:
    """What every read path says of ``model_id``'s latest version."""
    model, md = store.load_model(model_id)
    listed = {m.model_id: m.version for m in store.list_models()}
    history = store.history(model_id)
    top = store.sql("SELECT max(version) AS top FROM v_versions WHERE model_id = ?", [model_id]).to_pylist()[0]["top"]
    return md.version, fingerprint(model), listed[model_id], len(history), top


def main(argv: list[str]) -> None:
    name, *args = argv
    globals()["cmd_" + name.replace("-", "_")](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
