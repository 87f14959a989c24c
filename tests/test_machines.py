"""Several "machines" on one store: spawned processes, each with its own catalog index,
saving and reading at once — on a shared local folder and on one bucket of a real S3
server (SeaweedFS, whose create-only PUT has exactly one winner).

Checks invariants 1 and 2 of docs/architecture.md: a model's versions are 1..n with no gap
or duplicate whoever saved them, and a save acknowledged to any machine is seen by every
later read on every machine.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cas_repo import ModelMetadata, ModelStore

from .s3_server import fresh_url
from .spawned import run_together

MACHINES = 3
SAVES = 4


def _md(model_id: str, machine: int, i: int) -> ModelMetadata:
    return ModelMetadata(model_id, "exp", "LGBM", {"machine": machine, "i": i}, {"IC": i / 10},
                         datetime(2026, 1, 1), tags={"machine": str(machine)})


def _machine(url: str, options: dict | None, index: str, machine: int, start, results) -> None:
    """Save SAVES versions of "shared" and of "own-<machine>", interleaved; after each ack,
    read back through load_model, list_models and history; report what was acked."""
    acked, problems = [], []
    try:
        with ModelStore(url, catalog=index, backend_options=options) as store:
            start.wait()
            for i in range(SAVES):
                for model_id in ("shared", f"own-{machine}"):
                    md = _md(model_id, machine, i)
                    store.save_model({"machine": machine, "i": i}, md)
                    acked.append((model_id, md.version, machine, i))
                    seen = store.load_model(model_id)[1].version
                    listed = {m.model_id: m.version for m in store.list_models()}[model_id]
                    history = [h.version for h in store.history(model_id)]
                    if not (seen >= md.version and listed >= md.version and history[-1] >= md.version
                            and history == list(range(1, len(history) + 1))):
                        problems.append(f"after acking {model_id}@{md.version}: load {seen}, list {listed}, "
                                        f"history {history}")
    except BaseException as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    results.put((machine, acked, problems))


def _run(url: str, options: dict | None, tmp_path: Path) -> list[tuple[str, int, int, int]]:
    out = run_together(_machine, [(url, options, str(tmp_path / f"index-{m}" / "catalog.duckdb"), m)
                                  for m in range(MACHINES)], timeout=300, what="a machine")
    problems = [p for _, _, ps in out for p in ps]
    assert problems == []
    return [a for _, acked, _ in out for a in acked]


def _check(url: str, options: dict | None, tmp_path: Path, acked) -> None:
    shared = sorted(v for m, v, _, _ in acked if m == "shared")
    assert shared == list(range(1, MACHINES * SAVES + 1))  # no gap, no duplicate
    with ModelStore(url, catalog=tmp_path / "reader" / "catalog.duckdb", backend_options=options) as store:
        for model_id, version, machine, i in acked:
            model, md = store.load_model(model_id, version)
            assert model == {"machine": machine, "i": i} and md.tags == {"machine": str(machine)}
        assert {m.model_id: m.version for m in store.list_models()} == \
            {"shared": MACHINES * SAVES, **{f"own-{m}": SAVES for m in range(MACHINES)}}


def test_machines_on_one_local_folder(tmp_path):
    url = str(tmp_path / "cas")
    ModelStore(url).close()
    _check(url, None, tmp_path, _run(url, None, tmp_path))


def test_machines_on_one_seaweedfs_bucket(seaweed, tmp_path):
    url = fresh_url()
    options = seaweed.options()
    _check(url, options, tmp_path, _run(url, options, tmp_path))
