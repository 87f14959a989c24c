"""Dual track: every save is also logged to Qlib's Recorder (MLflow), and found by its run id.

Order of a mirrored save (``ModelStore(..., use_qlib_recorder=True)``):

1. metadata is validated and the model serialized (nothing written yet);
2. the Recorder logs params, metrics and tags and ``R.save_objects`` the model in the
   metadata's experiment (in a new run named after the model_id, or in the run the
   caller has open inside ``with R.start(...)``, where params are left to the caller),
   after waiting for what qlib still has queued for that run (:func:`wait_for_logging`);
   this gives the recorder id;
3. cas-repo commits the version with ``qlib_recorder_id`` and ``lineage.recorder`` set;
4. the run is tagged ``cas_repo.ref = model@version``.

If step 2 fails, nothing is stored anywhere new (a run that had started is ended as
FAILED by qlib) and :class:`QlibRecorderError` says why. If step 3 fails, the run
exists in ``mlruns`` with the model but cas-repo has no version: the run is tagged
``cas_repo.error`` and the original error is raised; ``cas-repo import-mlruns`` later
adopts exactly such runs (it keys on recorder id and artifact). Step 4 is best effort.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..catalog.recorder import recorder_versions
from ..errors import (
    AmbiguousRecorderError,
    CasRepoError,
    QlibNotInitializedError,
    QlibRecorderError,
    RecorderNotFoundError,
)
from ..metadata import ModelMetadata

if TYPE_CHECKING:
    from ..repository import ModelStore

# MLflow refuses longer param values, and more params plus tags in one batch.
_MAX_PARAM = 6000
_BATCH = 100


def _recorder_api() -> Any:
    """Qlib's ``R``, or QlibNotInitializedError before ``qlib.init()``."""
    try:
        from qlib.workflow import R
    except ImportError as exc:
        raise QlibNotInitializedError(f"qlib cannot be imported: {exc}") from exc
    # R forwards attribute access to the recorder registered by qlib.init(); before that
    # it raises a bare AttributeError from inside qlib.
    if R.__dict__.get("_provider") is None:
        raise QlibNotInitializedError("qlib.init() has not been called in this process")
    return R


def flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested hyperparameters as MLflow params: dotted keys, text values of bounded length."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, name + "."))
        else:
            text = str(value)
            out[name] = text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 1] + "…"
    return out


def wait_for_logging(recorder: Any) -> None:
    """Return once everything qlib has queued for ``recorder`` is written to MLflow.

    While a run is active, qlib's ``MLflowRecorder`` hands ``log_params``, ``log_metrics``
    and ``set_tags`` to a thread (its ``async_log``, a ``qlib.utils.paral.AsyncCaller``)
    and waits for that thread only in ``end_run``. Whatever reads the run back before
    then can meet a metric file the thread has created but not yet written: with a
    ``file:`` store, ``save_objects`` (mlflow's ``log_artifact`` reads the whole run) then
    fails with "Metric '…' is malformed. No data found.", more often on a busy machine.

    Call this before ``save_objects`` (or any read of the run) inside ``R.start``. It
    waits the way ``end_run`` does (``AsyncCaller.wait``: close the queue, join the
    thread), then gives the recorder a new AsyncCaller, so logging later in the run stays
    asynchronous and ``end_run`` still waits for it. A recorder with nothing running
    (no active run, or not an MLflowRecorder) is left as it is.
    """
    caller = getattr(recorder, "async_log", None)
    if caller is None:
        return
    from qlib.utils.paral import AsyncCaller

    caller.wait()
    recorder.async_log = AsyncCaller()


def tag_run(recorder: Any, tags: dict[str, str], *, stacklevel: int = 3) -> None:
    """Set ``tags`` on the recorder's run, synchronously; a failure only warns.

    The MLflow client's ``set_tag``, not ``recorder.set_tags``, which during a run queues
    to qlib's logging thread where a failure is lost.
    """
    try:
        for key, value in tags.items():
            recorder.client.set_tag(recorder.id, key, value)
    except Exception as exc:
        warnings.warn(f"could not tag Qlib recorder {recorder.id} with {sorted(tags)}: {exc}",
                      RuntimeWarning, stacklevel=stacklevel)


def run_metrics(recorder: Any) -> dict[str, float]:
    """The latest value of each metric of the recorder's run, finite ones only.

    Waits first for what qlib still has queued (:func:`wait_for_logging`): the records
    before a reader (``SigAnaRecord``, ``PortAnaRecord``) log from qlib's thread.
    NaN and infinities (an ICIR over a constant IC) are dropped: cas-repo stores finite
    metrics only, as the import does.
    """
    wait_for_logging(recorder)
    out = {}
    for name, value in recorder.list_metrics().items():
        number = float(value)
        if math.isfinite(number):
            out[str(name)] = number
    return out


def run_coordinates(recorder: Any, experiment_name: str | None = None) -> dict[str, str]:
    """Where a run is: experiment name and id, recorder id, run name (``lineage.recorder``).

    The experiment's name is asked from MLflow unless given.
    """
    experiment_id = str(recorder.experiment_id)
    if experiment_name is None:
        experiment_name = recorder.client.get_experiment(experiment_id).name
    return {"experiment_name": experiment_name, "experiment_id": experiment_id,
            "recorder_id": recorder.id, "run_name": recorder.name}


class RecorderMirror:
    """Logs saves to Qlib's Recorder; see the module docstring for the order and failures.

    Args:
        artifact: name of the saved object in the run, formatted with ``model_id``.
    """

    def __init__(self, artifact: str = "{model_id}.pkl") -> None:
        self.artifact = artifact

    @contextmanager
    def mirrored(self, model: Any, metadata: ModelMetadata) -> Iterator[str]:
        """Log ``model`` to the Recorder, set the recorder fields of ``metadata``, yield the id.

        The body commits the version; if it raises, the run is tagged as orphaned.

        Raises:
            QlibNotInitializedError: qlib.init() was not called; nothing was logged.
            QlibRecorderError: the Recorder failed; nothing was stored in cas-repo.
        """
        recorder, info = self._log(model, metadata)
        metadata.qlib_recorder_id = info["recorder_id"]
        metadata.lineage = {**(metadata.lineage or {}), "recorder": info}
        try:
            yield info["recorder_id"]
        except BaseException as exc:
            self._tag(recorder, {"cas_repo.error": f"{type(exc).__name__}: {exc}"[:_MAX_PARAM]})
            raise
        if metadata.version is not None:
            self._tag(recorder, {"cas_repo.ref": f"{metadata.model_id}@{metadata.version}"})

    def _log(self, model: Any, md: ModelMetadata) -> tuple[Any, dict[str, Any]]:
        R = _recorder_api()
        artifact = self.artifact.format(model_id=md.model_id)
        try:
            active = R.exp_manager.active_experiment
            if active is not None:
                recorder = R.get_recorder()
                self._write(recorder, model, md, artifact, own_run=False)
                experiment = active.name
            else:
                with R.start(experiment_name=md.experiment_name, recorder_name=md.model_id):
                    recorder = R.get_recorder()
                    self._write(recorder, model, md, artifact, own_run=True)
                experiment = md.experiment_name
        except CasRepoError:
            raise
        except Exception as exc:  # mlflow and qlib raise many unrelated types
            raise QlibRecorderError(
                f"the Qlib Recorder failed while logging {md.model_id!r} ({type(exc).__name__}: "
                f"{exc}); nothing was saved in cas-repo. Check qlib.init's exp_manager URI "
                "(a file: store also needs MLFLOW_ALLOW_FILE_STORE=true)") from exc
        return recorder, {"source": "dual-track", **run_coordinates(recorder, experiment),
                          "artifact": artifact}

    @staticmethod
    def _write(recorder: Any, model: Any, md: ModelMetadata, artifact: str, own_run: bool) -> None:
        from mlflow.entities import Metric, Param, RunTag

        # qlib may still be writing the run's queued params and metrics (the caller's, or
        # the command line qlib logs at R.start); save_objects reads the run back.
        wait_for_logging(recorder)
        now = int(time.time() * 1000)
        # Params only in a run of our own: the caller's open run logs its own, and MLflow
        # refuses to change a param (the full hyperparameters are in cas-repo anyway).
        params = flat_params(md.hyperparameters) if own_run else {}
        tags = {**md.tags, "cas_repo.model_id": md.model_id, "cas_repo.model_type": md.model_type}
        entities = [Param(k, v) for k, v in params.items()] + [RunTag(k, v) for k, v in tags.items()]
        metrics = [Metric(k, float(v), now, 0) for k, v in md.metrics.items()]
        # The client's log_batch, not recorder.log_params & co: qlib queues those to a
        # thread while a run is active, where a failure is lost (and stops later logging).
        for i in range(0, max(len(entities), len(metrics), 1), _BATCH):
            batch = entities[i: i + _BATCH]
            recorder.client.log_batch(recorder.id, metrics=metrics[i: i + _BATCH],
                                      params=[e for e in batch if isinstance(e, Param)],
                                      tags=[e for e in batch if isinstance(e, RunTag)])
        recorder.save_objects(**{artifact: model})

    @staticmethod
    def _tag(recorder: Any, tags: dict[str, str]) -> None:
        tag_run(recorder, tags, stacklevel=5)


def find_recorder_version(store: ModelStore, recorder_id: str,
                          artifact: str | None = None) -> tuple[str, int]:
    """The (model_id, version) first saved from ``recorder_id`` (and ``artifact``).

    Rollbacks copy a version's metadata, so they are skipped: the answer is the save.

    Raises:
        RecorderNotFoundError: no version records that run (a ``FileNotFoundError``).
        AmbiguousRecorderError: the run holds several stored artifacts; name one.
    """
    if not isinstance(recorder_id, str) or not recorder_id:
        raise RecorderNotFoundError(str(recorder_id), artifact)
    with store.catalog.session() as s:
        hits = [h for h in recorder_versions(s, [recorder_id])
                if h.kind == "save" and (artifact is None or h.artifact == artifact)]
    if not hits:
        raise RecorderNotFoundError(recorder_id, artifact)
    artifacts = sorted({h.artifact or "" for h in hits})
    if len(artifacts) > 1:
        raise AmbiguousRecorderError(
            f"Qlib recorder {recorder_id!r} holds several stored artifacts {artifacts}: "
            "pass artifact= to choose one")
    return hits[0].model_id, hits[0].version
