"""``CasRepoRecord``: a qrun record that saves the trained model as a cas-repo version.

Added last to a workflow's ``record:`` list (docs/qlib.md, "From qrun")::

    - class: CasRepoRecord
      module_path: cas_repo.qlib_support.qrun
      kwargs: {store: data/cas, model_id: lgbm_alpha158, alias: staging}

``generate()``, run by qrun after the records before it:

1. waits for what qlib still has queued for the run, then reads its metrics (the latest
   value of each: ``SigAnaRecord``'s IC, ICIR, Rank IC, Rank ICIR, ``PortAnaRecord``'s
   ``1day.excess_return_with_cost.*`` when it ran, LightGBM's last ``l2.*``);
2. reads the task qrun saved in the run (``task``): its model kwargs become the typed
   hyperparameters, the task itself (records left out) goes to ``lineage.task``;
3. saves the model (the one qrun saved as ``params.pkl``) with the dataset's lineage,
   ``qlib_recorder_id`` and ``lineage.recorder`` (``artifact: params.pkl``, so
   ``load_model_by_recorder`` finds it and ``import-mlruns`` never imports it twice);
4. moves ``alias`` to the new version, if given;
5. tags the run ``cas_repo.ref = model@version`` (``cas_repo.model_id`` and
   ``cas_repo.artifact`` before the save; on a failed save, ``cas_repo.error``).

Only qrun (through the YAML's ``module_path``) imports this module: it imports qlib.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from qlib.log import get_module_logger
from qlib.workflow.record_temp import RecordTemp

from ..errors import InvalidMetadataError
from ..metadata import ModelMetadata, validate_alias, validate_model_id
from ..repository import ModelStore
from .metadata import hyperparameters_of, model_type_of, task_hyperparameters, task_lineage, task_model_id
from .recorder import run_coordinates, run_metrics, tag_run

# What qrun's workflow (qlib.model.trainer._exe_task) saves the trained model as.
MODEL_ARTIFACT = "params.pkl"
_MAX_TAG = 5000

logger = get_module_logger("cas_repo.qrun")


class CasRepoRecord(RecordTemp):
    """Save the workflow's trained model into a cas-repo store (see the module docstring).

    Args:
        recorder, model, dataset: given by qrun (``<MODEL>`` / ``<DATASET>`` work too).
        store: the store's path or URL (``data/cas``, ``s3://bucket/prefix``).
        model_id: the model to add a version to; default ``<experiment>.<model class>``,
            the name ``import-mlruns`` gives the same run.
        alias: moved to the new version after the save (``staging``, ``prod``).
        tags: added to the version (values become text).
        experiment_name: default the recorder's experiment.
    """

    def __init__(self, recorder: Any = None, model: Any = None, dataset: Any = None, *,
                 store: str, model_id: str | None = None, alias: str | None = None,
                 tags: dict[str, Any] | None = None, experiment_name: str | None = None) -> None:
        super().__init__(recorder=recorder)
        self.model, self.dataset = model, dataset
        self.store = str(store)
        self.model_id = None if model_id is None else validate_model_id(model_id)
        self.alias = None if alias is None else validate_alias(alias)
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.experiment_name = experiment_name

    def generate(self, **kwargs: Any) -> ModelMetadata:
        """Save the model as a new version; returns its metadata (version filled in)."""
        if self.model is None:
            raise InvalidMetadataError("CasRepoRecord has no model to save: run it from qrun's "
                                       "record list, or give it `model: <MODEL>` in its kwargs")
        recorder = self.recorder
        md = self.metadata(recorder)
        # Named before the save: should it fail, import-mlruns adopts params.pkl under this id.
        artifact = md.lineage["recorder"]["artifact"]
        tag_run(recorder, {"cas_repo.model_id": md.model_id, **({"cas_repo.artifact": artifact} if artifact else {})})
        try:
            with ModelStore(self.store) as store:
                store.save_model(self.model, md, dataset=self.dataset)
                if self.alias is not None:
                    store.set_alias(md.model_id, self.alias, md.saved_version())
        except BaseException as exc:
            # The run holds the model (params.pkl): import-mlruns can adopt it later.
            tag_run(recorder, {"cas_repo.error": f"{type(exc).__name__}: {exc}"[:_MAX_TAG]})
            raise
        ref = f"{md.model_id}@{md.version}"
        tag_run(recorder, {"cas_repo.ref": ref})
        logger.info(f"saved the model as {ref} in cas-repo store {self.store}"
                    + (f" ({self.alias} -> {md.version})" if self.alias else ""))
        return md

    def metadata(self, recorder: Any) -> ModelMetadata:
        """The version's metadata, from the run's metrics and task, before the save."""
        metrics = run_metrics(recorder)
        task = _task(recorder)
        where = run_coordinates(recorder)
        experiment = self.experiment_name or where["experiment_name"]
        model_id = self.model_id or task_model_id(experiment, task or {"model": {"class": type(self.model).__name__}})
        # qrun saved the model as params.pkl; a record run by hand may have no such artifact.
        artifact = MODEL_ARTIFACT if MODEL_ARTIFACT in recorder.list_artifacts() else None
        lineage: dict[str, Any] = {"recorder": {"source": "qrun", **where, "artifact": artifact}}
        if task is not None:
            lineage["task"] = task_lineage(task)
        return ModelMetadata(
            model_id=validate_model_id(model_id), experiment_name=experiment,
            model_type=model_type_of(self.model),
            hyperparameters=task_hyperparameters(task) if task is not None else hyperparameters_of(self.model),
            metrics=metrics, created_at=datetime.now(UTC), qlib_recorder_id=recorder.id,
            tags=dict(self.tags), lineage=lineage)


def _task(recorder: Any) -> dict[str, Any] | None:
    """The task qrun saved in the run, or None (a record run by hand, without a task)."""
    try:
        task = recorder.load_object("task")
    except Exception:  # qlib's LoadObjectError, or mlflow's own for a missing artifact
        return None
    return task if isinstance(task, dict) else None
