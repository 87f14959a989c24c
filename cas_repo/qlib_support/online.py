"""Qlib online serving on cas-repo: the online set is an alias, and signals come from the store.

Qlib's ``OnlineManager`` keeps "which models are online" as a tag on MLflow recorders
(``OnlineToolR``). Here it is an alias of each model in the store (``online`` by default):

* :class:`CasOnlineTool` implements Qlib's ``OnlineTool`` interface. Every recorder it is
  handed (what a trainer returns) becomes a version of ``<experiment>.<model class>``,
  with its task and rolling segments in the version's lineage; putting models online
  moves the alias, and moving the alias back (``store.set_alias``) is the production
  rollback — no bytes are copied, no recorder is touched.
* :class:`CasRollingStrategy` is Qlib's ``RollingStrategy`` with that tool and a collector
  (:class:`CasSignalCollector`) that predicts with models *loaded from cas-repo*, so
  ``OnlineManager.prepare_signals`` / ``get_signals`` serve whatever the alias points at.

Switching existing Qlib online code over is one argument: ``CasRollingStrategy(name,
task, RollingGen(...), store=store)`` where ``RollingStrategy(name, task, RollingGen(...))``
was. docs/qlib.md says what is and is not covered. Qlib is imported only when this module
is, never by ``import cas_repo``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from qlib.model.ens.group import RollingGroup
from qlib.utils import init_instance_by_config
from qlib.workflow.online.strategy import RollingStrategy
from qlib.workflow.online.utils import OnlineTool
from qlib.workflow.task.collect import Collector

from ..errors import InvalidMetadataError, ModelNotFoundError, RecorderNotFoundError
from ..metadata import ModelMetadata
from .metadata import task_hyperparameters, task_model_id
from .recorder import find_recorder_version

if TYPE_CHECKING:
    from ..repository import ModelStore

DEFAULT_ALIAS = "online"


def _segments_to_json(segments: dict[str, Any]) -> dict[str, list[str | None]]:
    return {k: [None if t is None else pd.Timestamp(t).isoformat() for t in span] for k, span in segments.items()}


def _segments_from_json(segments: dict[str, Any]) -> dict[str, tuple]:
    return {k: tuple(None if t is None else pd.Timestamp(t) for t in span) for k, span in segments.items()}


def task_to_json(task: dict[str, Any]) -> dict[str, Any]:
    """A Qlib task as JSON the store can keep: its segments as ISO 8601 text.

    Raises:
        InvalidMetadataError: the task holds something else that is not JSON (e.g. a
            DataFrame handed to ``StaticDataLoader``: give it a file path instead).
    """
    out = copy.deepcopy({k: v for k, v in task.items() if k != "record"})
    kwargs = out["dataset"]["kwargs"]
    kwargs["segments"] = _segments_to_json(kwargs["segments"])
    return out


def task_from_json(task: dict[str, Any]) -> dict[str, Any]:
    """The task as Qlib uses it (segments as ``pd.Timestamp`` pairs)."""
    out = copy.deepcopy(task)
    out["dataset"]["kwargs"]["segments"] = _segments_from_json(out["dataset"]["kwargs"]["segments"])
    return out


@dataclass(frozen=True)
class OnlineModel:
    """One online model, as Qlib's online code expects a recorder to answer.

    ``load_object("params.pkl")`` is the model (loaded from cas-repo, verified);
    ``load_object("task")`` its task. ``ref`` is ``model_id@version``.
    """

    store: ModelStore
    model_id: str
    version: int

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"

    @property
    def info(self) -> dict[str, Any]:
        md = self.store.get_model_metadata(self.model_id, self.version)
        return {"id": md.qlib_recorder_id, "ref": self.ref, "segments": md.lineage.get("segments")}

    def load_object(self, name: str) -> Any:
        if name == "params.pkl":
            return self.store.load_model(self.model_id, self.version)[0]
        if name == "task":
            return task_from_json(self.store.get_model_metadata(self.model_id, self.version).lineage["task"])
        raise KeyError(f"{self.ref} has 'params.pkl' and 'task', not {name!r}")

    def predict(self, start: Any = None, end: Any = None, *, open_end: bool = False) -> pd.DataFrame:
        """Its predictions (a ``score`` column) from ``start`` to ``end`` (default: its test
        segment's), or to the end of the data with ``open_end``."""
        task = self.load_object("task")
        test = task["dataset"]["kwargs"]["segments"]["test"]
        last = None if open_end else (test[1] if end is None else pd.Timestamp(end))
        segment = (test[0] if start is None else pd.Timestamp(start), last)
        task["dataset"]["kwargs"]["segments"] = {"test": segment}
        dataset = init_instance_by_config(task["dataset"])
        return self.load_object("params.pkl").predict(dataset, segment="test").to_frame("score")


class CasOnlineTool(OnlineTool):
    """Qlib's ``OnlineTool`` with the online set kept as an alias in a cas-repo store.

    Args:
        store: the store models are versioned in.
        experiment: names the models (``<experiment>.<model class>``) and scopes the tool:
            ``reset_online_tag`` takes offline only this experiment's models.
        alias: the alias that marks a model online.
    """

    def __init__(self, store: ModelStore, experiment: str, alias: str = DEFAULT_ALIAS) -> None:
        super().__init__()
        self.store, self.experiment, self.alias = store, experiment, alias
        self.preds: dict[str, pd.DataFrame] = {}

    # -- recorders in, versions out ------------------------------------------------------

    def model_id_for(self, task: dict[str, Any]) -> str:
        """The model_id a task's models are versions of: ``<experiment>.<model class>``."""
        model_id = task_model_id(self.experiment, task)
        if model_id is None:
            raise InvalidMetadataError(f"the task names no model class: {task.get('model')!r:.120}")
        return model_id

    def adopt(self, recorder: Any) -> OnlineModel:
        """The version holding ``recorder``'s model: saved now (model, task, segments) unless it
        was already. An :class:`OnlineModel` or ``"model@3"`` reference is returned as it is."""
        if isinstance(recorder, OnlineModel):
            return recorder
        if isinstance(recorder, str):
            md = self.store.get_model_metadata(recorder)
            return OnlineModel(self.store, md.model_id, md.saved_version())
        rid = recorder.info["id"]
        try:
            return OnlineModel(self.store, *find_recorder_version(self.store, rid))
        except RecorderNotFoundError:
            pass
        task = recorder.load_object("task")
        model = recorder.load_object("params.pkl")
        model_id = self.model_id_for(task)
        try:
            head = self.store.get_model_metadata(model_id).version
        except ModelNotFoundError:
            head = None
        segments = _segments_to_json(task["dataset"]["kwargs"]["segments"])
        md = ModelMetadata(
            model_id=model_id, experiment_name=self.experiment, model_type=task["model"]["class"],
            hyperparameters=task_hyperparameters(task), metrics={},
            created_at=datetime.now(UTC), qlib_recorder_id=rid,
            tags={"test_start": segments["test"][0] or ""},
            parents=[f"{model_id}@{head}"] if head else [],
            lineage={"task": task_to_json(task), "segments": segments, "qlib_experiment": self.experiment})
        self.store.save_model(model, md)
        return OnlineModel(self.store, model_id, md.saved_version())

    def _adopt_all(self, recorders: Any) -> list[OnlineModel]:
        recs = recorders if isinstance(recorders, (list, tuple)) else [recorders]
        adopted = [self.adopt(r) for r in recs]
        # A routine may train several rolling windows at once: versions follow test start.
        return sorted(adopted, key=lambda m: (m.model_id, m.version))

    def _models_in_scope(self) -> list[str]:
        return [m.model_id for m in self.store.list_models(experiment_name=self.experiment)]

    # -- Qlib's OnlineTool ---------------------------------------------------------------

    def set_online_tag(self, tag: str, recorder: Any) -> None:
        """Put models online (move the alias of each model to it) or offline (remove the
        alias where it points at one of them). Takes recorders, OnlineModels or references."""
        for m in self._adopt_all(recorder):
            if tag == self.ONLINE_TAG:
                self.store.set_alias(m.model_id, self.alias, m.version)
            elif tag == self.OFFLINE_TAG:
                if self.store.aliases(m.model_id).get(self.alias) == m.version:
                    self.store.remove_alias(m.model_id, self.alias)
            else:
                raise InvalidMetadataError(f"an online tag is {self.ONLINE_TAG!r} or {self.OFFLINE_TAG!r}, "
                                           f"got {tag!r}")

    def get_online_tag(self, recorder: Any) -> str:
        m = self.adopt(recorder)
        online = self.store.aliases(m.model_id).get(self.alias) == m.version
        return self.ONLINE_TAG if online else self.OFFLINE_TAG

    def reset_online_tag(self, recorder: Any) -> None:
        """Make exactly ``recorder`` (one or a list) the online set of this experiment.

        An alias points at one version per model, so of several windows of one model
        trained together, the newest (the last version) goes online.
        """
        models = self._adopt_all(recorder)
        chosen = {m.model_id: m for m in models}  # sorted: the last version of each wins
        for model_id in self._models_in_scope():
            if model_id not in chosen:
                self.store.remove_alias(model_id, self.alias)
        for m in chosen.values():
            self.store.set_alias(m.model_id, self.alias, m.version)

    def online_models(self) -> list[OnlineModel]:
        """The versions the alias points at, one per model of this experiment."""
        out = []
        for model_id in self._models_in_scope():
            version = self.store.aliases(model_id).get(self.alias)
            if version is not None:
                out.append(OnlineModel(self.store, model_id, version))
        return out

    def update_online_pred(self, to_date: Any = None, from_date: Any = None) -> dict[str, pd.DataFrame]:
        """Predict with every online model from ``from_date`` (default: its test start) to
        ``to_date`` (default: the end of the data); kept in :attr:`preds` by reference."""
        for m in self.online_models():
            self.preds[m.ref] = m.predict(from_date, to_date, open_end=to_date is None)
        return {m.ref: self.preds[m.ref] for m in self.online_models()}


class CasSignalCollector(Collector):
    """Collects ``{"pred": {(model class, test segment): predictions}}`` from cas-repo.

    For each model of the experiment, the versions up to the one the alias points at each
    predict their own test window, and the online version predicts from its test start to
    the end of the data; versions after it (rolled back) give nothing. With Qlib's
    ``RollingGroup`` the later window wins where they overlap, so the newest dates'
    signals always come from the online version.
    """

    def __init__(self, tool: CasOnlineTool, process_list: Iterable = (RollingGroup(),)) -> None:
        super().__init__(process_list=list(process_list))
        self.tool = tool

    def collect(self) -> dict:
        preds: dict[tuple, pd.DataFrame] = {}
        for online in self.tool.online_models():
            for version in range(1, online.version + 1):
                m = OnlineModel(online.store, online.model_id, version)
                task = m.load_object("task")
                test = task["dataset"]["kwargs"]["segments"]["test"]
                last = version == online.version
                preds[(task["model"]["class"], (test[0], None if last else test[1]))] = m.predict(open_end=last)
        return {"pred": preds}


class CasRollingStrategy(RollingStrategy):
    """Qlib's ``RollingStrategy`` with its online set in cas-repo (see the module docstring).

    Args:
        name_id, task_template, rolling_gen: as for ``RollingStrategy``.
        store: the cas-repo store; every model trained becomes a version there.
        alias: the alias that marks the online set.
    """

    def __init__(self, name_id: str, task_template: dict | list[dict], rolling_gen: Any, *,
                 store: ModelStore, alias: str = DEFAULT_ALIAS) -> None:
        super().__init__(name_id, task_template, rolling_gen)
        self.tool = CasOnlineTool(store, self.exp_name, alias)

    def get_collector(self, process_list: Any = None, **_: Any) -> CasSignalCollector:
        return CasSignalCollector(self.tool, process_list or [RollingGroup()])
