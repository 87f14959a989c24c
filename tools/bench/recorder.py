"""Qlib's Recorder as a baseline: ``R.start`` + ``R.save_objects`` / ``load_object``.

Runs a real ``qlib.init`` on a temp ``file:`` mlruns store (``MLFLOW_ALLOW_FILE_STORE``
set, cwd moved into the temp folder, both undone on exit) through
``cas_repo.qlib_support.synthetic.offline_qlib``. Each save is what the seed's "dual
track" does: one run with params, metrics and the pickled model (protocol 4, no dedup).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cas_repo import ModelMetadata
from cas_repo.qlib_support.recorder import wait_for_logging


@dataclass(frozen=True, slots=True)
class SaveTimes:
    """Seconds of one ``R.start`` block and of the ``save_objects`` call inside it."""

    block: float
    save_objects: float
    recorder_id: str


class Recorder:
    """Saves and loads models the way Qlib users do today (use :func:`open_recorder`)."""

    def __init__(self, R: Any, root: Path) -> None:
        self.R = R
        self.root = root

    def save(self, model: Any, md: ModelMetadata, name: str = "model.pkl") -> SaveTimes:
        """One ``R.start`` block: log params and metrics, ``save_objects``, read the recorder id.

        qlib logs params and metrics from a thread and ``save_objects`` reads the run back,
        which can find a metric file created but still empty ("Metric … is malformed"):
        the block waits for qlib's logging first (``end_run`` would wait for it anyway), and
        that wait is in the block's time, not in ``save_objects``'.
        """
        R = self.R
        t0 = time.perf_counter()
        with R.start(experiment_name=md.experiment_name, recorder_name=md.model_id):
            R.log_params(**md.hyperparameters)
            R.log_metrics(**md.metrics)
            recorder = R.get_recorder()
            wait_for_logging(recorder)
            t1 = time.perf_counter()
            R.save_objects(**{name: model})
            t2 = time.perf_counter()
            rid = recorder.id
        return SaveTimes(time.perf_counter() - t0, t2 - t1, rid)

    def recorder(self, rid: str, experiment: str) -> Any:
        return self.R.get_recorder(recorder_id=rid, experiment_name=experiment)

    def load(self, rid: str, experiment: str, name: str = "model.pkl") -> Any:
        """``R.get_recorder(...)`` then ``load_object`` (what the seed design shows)."""
        return self.recorder(rid, experiment).load_object(name)

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"


@contextlib.contextmanager
def open_recorder(root: Path) -> Iterator[Recorder]:
    """A Recorder over ``root/mlruns``; qlib's log lines are silenced while it is open."""
    import logging

    from cas_repo.qlib_support.synthetic import offline_qlib

    with contextlib.ExitStack() as undo:
        undo.enter_context(contextlib.redirect_stderr(io.StringIO()))
        R = undo.enter_context(offline_qlib(root))
        # qlib logs an INFO line per R.start/end; a benchmark's console is not the place.
        for name in ("qlib", "mlflow"):
            logger = logging.getLogger(name)
            undo.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.WARNING)
        yield Recorder(R, Path(root))
