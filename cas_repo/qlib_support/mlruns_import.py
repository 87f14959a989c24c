"""Importing existing Qlib Recorder runs (MLflow ``mlruns``) into cas-repo.

Every pickled object a run saved (``R.save_objects``) becomes a version, oldest run
first, with the run's params as hyperparameters, the last value of each metric, its
tags, its start time as ``created_at`` and its id as ``qlib_recorder_id``; the run's
coordinates go to ``lineage.recorder``. Versions of one object name in one experiment
form one model (``<experiment>.<name>``), so successive runs dedup against each other.

A run made by qrun (or Qlib's trainers) holds its model as ``params.pkl`` beside the
task, dataset, config, predictions, labels and the analysis records' frames: only the
model is imported, as ``<experiment>.<model class>``, with the task's model kwargs as
typed hyperparameters (the mapping the qrun record uses); the rest is reported as
skipped unless asked for by name.

* **Safe**: pickles are loaded with cas-repo's restricted unpickler; a pickle naming a
  global outside the allowlist is *refused* and reported, never loaded.
* **Idempotent and resumable**: an artifact is keyed by (recorder id, artifact path);
  keys already in the catalog are skipped, and each version commits on its own, so an
  interrupted import simply runs again.
* **Read-only**: the tracking data is only read (see :mod:`.mlruns`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .. import serialization
from ..catalog.recorder import recorder_versions
from ..digest import hash_bytes
from ..errors import CasRepoError, InvalidMetadataError, SerializationError, UnsafePickleError
from ..metadata import ModelMetadata, validate_model_id
from .metadata import model_type_of, task_hyperparameters, task_lineage, task_model_id
from .mlruns import Run, open_runs

if TYPE_CHECKING:
    from ..repository import ModelStore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOT_ID = re.compile(r"[^A-Za-z0-9._-]+")
# What Qlib's workflow (qrun, the trainers) and its records save beside the model.
_TASK, _MODEL = "task", "params.pkl"
_WORKFLOW_ARTIFACTS = {_TASK, "config", "dataset", "pred.pkl", "label.pkl"}
_WORKFLOW_FOLDERS = {"sig_analysis", "hg_sig_analysis", "portfolio_analysis"}
WORKFLOW_ARTIFACT = ("saved by Qlib's workflow beside the model (task, config, dataset, predictions, "
                     "labels, analysis records), not a model: name it with --artifact to import it")


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """An artifact (or a whole run, when ``artifact`` is None) not imported, and why."""

    run_id: str
    artifact: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did. ``refused`` are problems; ``skipped`` are expected non-models."""

    source: str
    runs_seen: int
    runs_with_objects: int
    created: tuple[str, ...]
    already_imported: int
    skipped: tuple[ImportIssue, ...]
    refused: tuple[ImportIssue, ...]
    artifact_bytes: int
    logical_bytes: int
    new_physical_bytes: int
    seconds: float

    @property
    def versions_created(self) -> int:
        return len(self.created)

    @property
    def ok(self) -> bool:
        return not self.refused


def scan_mlruns(source: str | Path, experiment: str | None = None) -> list[Run]:
    """The runs of ``source`` (oldest first), of one experiment (name or id) if given."""
    runs = [r for r in open_runs(source)
            if experiment is None or experiment in (r.experiment_name, r.experiment_id)]
    return sorted(runs, key=lambda r: (r.start_time or _EPOCH, r.run_id))


def model_id_for(run: Run, artifact: str, task: dict | None = None) -> str:
    """The model an artifact is a version of.

    The model_id a dual-track save or the qrun record tagged the run with; else
    ``<experiment>.<model class>`` for the model of a run with a task (``params.pkl``);
    else ``<experiment>.<artifact without .pkl>``.
    """
    tagged = run.tags.get("cas_repo.model_id")
    if tagged and artifact in (f"{tagged}.pkl", run.tags.get("cas_repo.artifact")):
        return tagged
    if artifact == _MODEL and (from_task := task_model_id(run.experiment_name, task)):
        return from_task
    stem = artifact[:-4] if artifact.endswith(".pkl") else artifact
    raw = _NOT_ID.sub("_", f"{run.experiment_name}.{stem}".replace("/", "."))
    return validate_model_id(raw.lstrip("._-")[:128] or "model")


def is_workflow_artifact(name: str) -> bool:
    """Whether ``name`` is something Qlib's workflow and its records save beside a model."""
    return name in _WORKFLOW_ARTIFACTS or ("/" in name and name.split("/", 1)[0] in _WORKFLOW_FOLDERS)


def _is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _refusal(exc: Exception) -> str:
    if isinstance(exc, UnsafePickleError) and exc.global_name.startswith("torch."):
        return (f"it needs {exc.global_name}: torch's own tensor pickles rebuild through "
                "torch.load, which cas-repo never allows. Load the run in a trusted session "
                "(recorder.load_object) and save the model with cas-repo, which stores "
                "tensors as plain arrays")
    return str(exc)


def import_runs(store: ModelStore, runs: Sequence[Run], *, source: str = "",
                artifacts: Iterable[str] | None = None,
                progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import the saved objects of ``runs`` into ``store``; see the module docstring.

    Args:
        artifacts: import only these artifact paths (or names); default every pickle.
        progress: called with 1 after each run.

    Raises:
        CasRepoError: the store was opened with ``use_qlib_recorder`` (an import must
            not log back to the Recorder); StoreError / CatalogError abort the import,
            which can then be run again.
    """
    if store.recorder is not None:
        raise CasRepoError("open the store without use_qlib_recorder to import runs: "
                           "an import must not log its versions back to the Recorder")
    wanted = set(artifacts) if artifacts is not None else None
    started = time.perf_counter()
    before = store.stats()
    with store.catalog.session() as s:
        done = {(v.recorder_id, v.artifact) for v in recorder_versions(s, [r.run_id for r in runs])}
    tally = _Tally()
    for run in runs:
        try:
            _import_run(store, run, wanted, done, tally)
        finally:
            if progress is not None:
                progress(1)
    after = store.stats()
    return ImportReport(
        source=source, runs_seen=len(runs), runs_with_objects=tally.with_objects,
        created=tuple(tally.created), already_imported=tally.already, skipped=tuple(tally.skipped),
        refused=tuple(tally.refused), artifact_bytes=tally.artifact_bytes,
        logical_bytes=after.logical_bytes - before.logical_bytes,
        new_physical_bytes=after.physical_bytes - before.physical_bytes,
        seconds=time.perf_counter() - started)


class _Tally:
    """The running counts of one import (a private accumulator, not a value)."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.skipped: list[ImportIssue] = []
        self.refused: list[ImportIssue] = []
        self.already = self.with_objects = self.artifact_bytes = 0


def _import_run(store: ModelStore, run: Run, wanted: set[str] | None,
                done: set[tuple[str, str | None]], t: _Tally) -> None:
    if run.problem:
        t.refused.append(ImportIssue(run.run_id, None, run.problem))
        return
    if run.deleted:
        t.skipped.append(ImportIssue(run.run_id, None, "the run is deleted in MLflow"))
        return
    every = run.artifacts()
    names = [a for a in every if wanted is None or a in wanted or a.rsplit("/", 1)[-1] in wanted]
    new_model = _MODEL in names and (run.run_id, _MODEL) not in done
    task = _run_task(run) if new_model and _TASK in every else None
    pickles = 0
    for name in names:
        if (run.run_id, name) in done:
            t.already += 1
            pickles += 1
            continue
        if wanted is None and is_workflow_artifact(name):
            t.skipped.append(ImportIssue(run.run_id, name, WORKFLOW_ARTIFACT))
            continue
        try:
            data = run.read_artifact(name)
        except OSError as exc:
            t.refused.append(ImportIssue(run.run_id, name, f"cannot be read: {exc}"))
            continue
        if not _is_pickle(data[:2]):
            t.skipped.append(ImportIssue(run.run_id, name, "not a pickle"))
            continue
        pickles += 1
        try:
            obj = serialization.loads(data)
            md = _metadata(run, name, obj, data, task if name == _MODEL else None)
            store.save_model(obj, md)
        except (SerializationError, InvalidMetadataError) as exc:
            t.refused.append(ImportIssue(run.run_id, name, _refusal(exc)))
            continue
        done.add((run.run_id, name))
        t.created.append(f"{md.model_id}@{md.version}")
        t.artifact_bytes += len(data)
    if pickles:
        t.with_objects += 1
    elif not names:
        t.skipped.append(ImportIssue(run.run_id, None, "the run saved no objects"))


def _run_task(run: Run) -> dict | None:
    """The task a qrun or trainer run saved (``task``), loaded as any pickle here; None if unusable."""
    try:
        task = serialization.loads(run.read_artifact(_TASK))
    except (OSError, SerializationError):
        return None  # e.g. a task holding a class outside the allowlist: the params still say it
    return task if isinstance(task, dict) and isinstance(task.get("model"), dict) else None


def _metadata(run: Run, artifact: str, obj: object, data: bytes, task: dict | None) -> ModelMetadata:
    recorder = {
        "source": "import-mlruns", "experiment_name": run.experiment_name,
        "experiment_id": run.experiment_id, "recorder_id": run.run_id, "run_name": run.run_name,
        "artifact": artifact, "status": run.status, "artifact_bytes": len(data),
        "artifact_blake3": hash_bytes(data).hex,
        "end_time": run.end_time.isoformat() if run.end_time else None,
    }
    lineage: dict = {"recorder": recorder}
    if task is not None:
        lineage["task"] = task_lineage(task)
    return ModelMetadata(
        model_id=model_id_for(run, artifact, task),
        experiment_name=run.experiment_name or "Default",
        model_type=model_type_of(obj),
        hyperparameters=task_hyperparameters(task) if task is not None else dict(run.params),
        metrics=dict(run.metrics),
        created_at=run.start_time or datetime.now(UTC),
        qlib_recorder_id=run.run_id,
        tags=dict(run.tags),
        lineage=lineage,
    )


def import_mlruns(store: ModelStore, source: str | Path, *, experiment: str | None = None,
                  artifacts: Iterable[str] | None = None,
                  progress: Callable[[int], None] | None = None) -> ImportReport:
    """Scan ``source`` (an ``mlruns`` folder or sqlite URI) and import its runs into ``store``."""
    runs = scan_mlruns(source, experiment)
    return import_runs(store, runs, source=str(source), artifacts=artifacts, progress=progress)
