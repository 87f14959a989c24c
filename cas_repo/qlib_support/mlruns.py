"""Reading Qlib's MLflow tracking data directly, read-only, without mlflow.

Two layouts are read:

* a **file store** (``mlruns/``; qlib's default ``file:`` URI): ``<exp>/meta.yaml``,
  ``<exp>/<run>/meta.yaml``, ``params/<key>`` (the value), ``metrics/<key>`` (lines of
  ``timestamp value step``), ``tags/<key>`` and ``artifacts/``;
* a **sqlite** tracking database (``sqlite:///…/mlflow.db``): tables ``experiments``,
  ``runs``, ``params``, ``latest_metrics`` and ``tags``, opened with ``mode=ro``.

Nothing is ever written: files are opened for reading and the database read-only.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from ..errors import CasRepoError

# MLflow's RunStatus numbers, as the file store writes them.
_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


class MlrunsError(CasRepoError):
    """The path is not an MLflow file store or sqlite tracking database."""


@dataclass(frozen=True, slots=True)
class Run:
    """One recorder run as stored by MLflow; ``problem`` says why it cannot be imported."""

    run_id: str
    run_name: str
    experiment_id: str
    experiment_name: str
    start_time: datetime | None
    end_time: datetime | None
    status: str
    deleted: bool
    artifacts_dir: Path | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    problem: str | None = None

    def artifacts(self) -> list[str]:
        """Relative POSIX paths of every artifact file of the run, sorted."""
        root = self.artifacts_dir
        if root is None or not root.is_dir():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(root):  # symlinked directories are not followed
            for name in files:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    found.append(path.relative_to(root).as_posix())
        return sorted(found)

    def read_artifact(self, name: str) -> bytes:
        """The bytes of artifact ``name`` (one of :meth:`artifacts`).

        Raises:
            OSError: it cannot be read (FileNotFoundError: the run has no local artifact folder).
        """
        if self.artifacts_dir is None:
            raise FileNotFoundError(f"run {self.run_id} has no local artifact folder")
        return (self.artifacts_dir / name).read_bytes()


def _ms(value: Any) -> datetime | None:
    if value in (None, "", 0):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _local_path(uri: str | None) -> Path | None:
    """The local directory of an artifact URI (``file:`` or a plain path); None otherwise."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return Path(uri)
    return None


def open_runs(source: str | os.PathLike[str]) -> Iterator[Run]:
    """Every run of an ``mlruns`` folder, ``file:`` URI, ``sqlite:///`` URI or ``.db`` file.

    Raises:
        MlrunsError: the source is neither layout.
    """
    text = os.fspath(source)
    if text.startswith("sqlite:///"):  # sqlite:///relative.db or sqlite:////absolute.db
        yield from _sqlite_runs(Path(text.removeprefix("sqlite:///")))
        return
    path = _local_path(text) or Path(text)
    if path.is_file():
        yield from _sqlite_runs(path)
    elif path.is_dir():
        yield from _file_runs(path)
    else:
        raise MlrunsError(f"{text} is neither an mlruns folder nor an MLflow sqlite database")


# -- file store ------------------------------------------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    with path.open("r", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return data


def _key_values(folder: Path) -> dict[str, str]:
    out = {}
    if folder.is_dir():
        for dirpath, _dirs, files in os.walk(folder):  # keys may contain "/" (nested files)
            for name in files:
                path = Path(dirpath) / name
                out[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
    return out


def _last_metrics(folder: Path) -> dict[str, float]:
    """The last value of each metric: highest step, then latest timestamp (as MLflow)."""
    out = {}
    for key, text in _key_values(folder).items():
        best: tuple[int, int] | None = None
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            ts, value = int(parts[0]), float(parts[1])
            step = int(parts[2]) if len(parts) > 2 else 0
            if best is None or (step, ts) >= best:
                best, out[key] = (step, ts), value
    # cas-repo stores finite metrics only (as MLflow's sqlite store flags NaN apart).
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _file_runs(root: Path) -> Iterator[Run]:
    if not any((d / "meta.yaml").is_file() for d in root.iterdir() if d.is_dir()):
        raise MlrunsError(f"{root} holds no MLflow experiments (no <experiment>/meta.yaml)")
    for exp_dir in sorted(d for d in root.iterdir() if d.is_dir() and d.name != ".trash"):
        if not (exp_dir / "meta.yaml").is_file():
            continue  # e.g. mlruns/models (the model registry)
        try:
            exp = _yaml(exp_dir / "meta.yaml")
        except (OSError, ValueError, yaml.YAMLError):
            continue
        exp_name, exp_deleted = str(exp.get("name", exp_dir.name)), exp.get("lifecycle_stage") == "deleted"
        for run_dir in sorted(d for d in exp_dir.iterdir() if d.is_dir() and (d / "meta.yaml").is_file()):
            yield _file_run(run_dir, str(exp.get("experiment_id", exp_dir.name)), exp_name, exp_deleted)


def _status_name(value: Any) -> str:
    """MLflow's name for a run status code; anything else as written (a list is not a key)."""
    return _STATUS.get(value, str(value)) if isinstance(value, int) else str(value)


def _file_run(run_dir: Path, exp_id: str, exp_name: str, exp_deleted: bool) -> Run:
    try:
        meta = _yaml(run_dir / "meta.yaml")
        artifacts = run_dir / "artifacts"
        if not artifacts.is_dir():  # a moved tree keeps artifacts beside meta.yaml; else the URI
            artifacts = _local_path(meta.get("artifact_uri")) or artifacts
        status = meta.get("status")
        return Run(
            run_id=str(meta.get("run_id") or run_dir.name), run_name=str(meta.get("run_name") or ""),
            experiment_id=exp_id, experiment_name=exp_name, start_time=_ms(meta.get("start_time")),
            end_time=_ms(meta.get("end_time")), status=_status_name(status),
            deleted=exp_deleted or meta.get("lifecycle_stage") == "deleted", artifacts_dir=artifacts,
            params=_key_values(run_dir / "params"), metrics=_last_metrics(run_dir / "metrics"),
            tags=_key_values(run_dir / "tags"))
    except (OSError, ValueError, TypeError, UnicodeDecodeError, yaml.YAMLError) as exc:
        # TypeError: a hand-edited meta.yaml with a list or mapping where a number belongs.
        return Run(run_dir.name, "", exp_id, exp_name, None, None, "UNKNOWN", exp_deleted, None,
                   problem=f"unreadable run metadata: {exc}")


# -- sqlite ------------------------------------------------------------------------------


def _sqlite_runs(path: Path) -> Iterator[Run]:
    try:
        con = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise MlrunsError(f"cannot open {path} read-only: {exc}") from exc
    try:
        exps = {str(r[0]): (r[1], r[2] == "deleted") for r in
                con.execute("SELECT experiment_id, name, lifecycle_stage FROM experiments")}
        runs = con.execute("SELECT run_uuid, name, experiment_id, start_time, end_time, status, "
                           "lifecycle_stage, artifact_uri FROM runs ORDER BY run_uuid").fetchall()
        params = _grouped(con, "SELECT run_uuid, key, value FROM params")
        tags = _grouped(con, "SELECT run_uuid, key, value FROM tags")
        metrics = _grouped(con, "SELECT run_uuid, key, value FROM latest_metrics WHERE NOT is_nan")
    except sqlite3.Error as exc:
        raise MlrunsError(f"{path} is not an MLflow tracking database: {exc}") from exc
    finally:
        con.close()
    for run_id, name, exp_id, start, end, status, stage, uri in runs:
        exp_name, exp_deleted = exps.get(str(exp_id), (str(exp_id), False))
        yield Run(run_id, name or "", str(exp_id), exp_name, _ms(start), _ms(end), str(status),
                  exp_deleted or stage == "deleted", _local_path(uri), params.get(run_id, {}),
                  {k: float(v) for k, v in metrics.get(run_id, {}).items()
                   if v is not None and math.isfinite(float(v))},
                  tags.get(run_id, {}),
                  None if _local_path(uri) else f"artifacts are not local ({uri})")


def _grouped(con: sqlite3.Connection, sql: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for run_id, key, value in con.execute(sql):
        out.setdefault(run_id, {})[key] = value
    return out
