"""Metrics that arrive after a save, and who recorded each change.

A logged value is one log event: every reader (the fold, a reopened process, a checkpoint,
the catalog index, time travel, the CLI) sees the same values, and the history keeps the
values it superseded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cas_repo import InvalidMetadataError, ModelDeletedError, ModelNotFoundError, ModelStore
from cas_repo.cli import main

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.fixture()
def store(tmp_path, make_md, monkeypatch):
    """m@1 (IC 0.05), m@2 (IC 0.07), prod -> 1; one event per hour from T0; ada commits."""
    monkeypatch.setenv("CAS_REPO_USER", "ada")
    ticks = iter(T0 + timedelta(hours=h) for h in range(1000))
    with ModelStore(tmp_path / "cas", clock=lambda: next(ticks)) as s:
        s.save_model({"w": 1}, make_md("m", IC=0.05))                      # 09:00
        s.save_model({"w": 2}, make_md("m", IC=0.07, parents=["m@1"]))     # 10:00
        s.set_alias("m", "prod", 1)                                        # 11:00
        yield s


def test_a_logged_value_supersedes_the_saved_one_and_history_keeps_both(store, monkeypatch):
    monkeypatch.setenv("CAS_REPO_USER", "bob")  # read once per open store: still ada's store
    assert store.log_metrics("m@prod", {"IC": 0.04, "sharpe": np.float32(1.5)}) == 1   # 12:00
    assert store.log_metrics("m", {"sharpe": 2.0}) == 2                                  # 13:00
    assert store.log_metrics("m", {"sharpe": 2.5}, version=1) == 1                       # 14:00

    assert store.get_model_metadata("m", 1).metrics == {"IC": 0.04, "sharpe": 2.5}
    assert store.get_model_metadata("m").metrics == {"IC": 0.07, "sharpe": 2.0}
    assert [h.metrics for h in store.history("m")] == [{"IC": 0.04, "sharpe": 2.5}, {"IC": 0.07, "sharpe": 2.0}]
    current = store.sql("SELECT version, metric, value FROM v_metrics ORDER BY ALL").to_pylist()
    assert [tuple(r.values()) for r in current] == [(1, "IC", 0.04), (1, "sharpe", 2.5), (2, "IC", 0.07),
                                                      (2, "sharpe", 2.0)]
    every = [(r.version, r.metric, r.value, r.source, r.recorded_at.hour, r.author)
             for r in store.metric_history("m")]
    assert every == [(1, "IC", 0.05, "save", 9, "ada"), (2, "IC", 0.07, "save", 10, "ada"),
                     (1, "IC", 0.04, "log", 12, "ada"), (1, "sharpe", 1.5, "log", 12, "ada"),
                     (2, "sharpe", 2.0, "log", 13, "ada"), (1, "sharpe", 2.5, "log", 14, "ada")]
    assert [r.value for r in store.metric_history("m@prod") if r.metric == "sharpe"] == [1.5, 2.5]
    events = store.events("m")
    assert [(e.kind, e.version, e.metrics, e.author) for e in events[-3:]] == [
        ("metrics", 1, {"IC": 0.04, "sharpe": 1.5}, "ada"), ("metrics", 2, {"sharpe": 2.0}, "ada"),
        ("metrics", 1, {"sharpe": 2.5}, "ada")]
    assert events[0].host and store.sql("SELECT count(*) AS n FROM v_events WHERE author = 'ada'").to_pylist() \
        == [{"n": 5}]


def test_as_of_a_time_before_a_value_arrived_it_is_not_there(store):
    store.log_metrics("m@1", {"IC": 0.04})      # 12:00
    store.log_metrics("m@1", {"IC": 0.03})      # 13:00
    before, between, after = (store.as_of(T0 + timedelta(hours=h, minutes=30)) for h in (2, 3, 4))
    assert before.get_model_metadata("m", 1).metrics == {"IC": 0.05}
    assert between.get_model_metadata("m", 1).metrics == {"IC": 0.04}
    assert after.get_model_metadata("m", 1).metrics == {"IC": 0.03}
    assert before.get_model_metadata("m@prod").metrics == {"IC": 0.05}
    rows = store.sql("SELECT value FROM metrics_as_of(TIMESTAMP '2026-05-04 12:30:00') "
                     "WHERE version = 1 AND metric = 'IC'").to_pylist()
    assert rows == [{"value": 0.04}]


def test_every_reader_folds_the_same_values(store, tmp_path):
    store.log_metrics("m@1", {"IC": 0.04, "live": 1.0})
    store.log_metrics("m", {"live": 2.0})
    want = {v: store.get_model_metadata("m", v).metrics for v in (1, 2)}
    with ModelStore(tmp_path / "cas", catalog=tmp_path / "other.duckdb") as fresh:  # replays the log
        assert {v: fresh.get_model_metadata("m", v).metrics for v in (1, 2)} == want
        assert [h.metrics for h in fresh.history("m")] == [want[1], want[2]]
        fresh.checkpoint()
    with ModelStore(tmp_path / "cas") as from_checkpoint:
        assert {v: from_checkpoint.get_model_metadata("m", v).metrics for v in (1, 2)} == want
        # a rollback makes a version of the source's metrics as they are now
        assert from_checkpoint.get_model_metadata("m", from_checkpoint.rollback("m", 1)).metrics == want[1]


def test_bad_values_and_targets_are_refused_and_nothing_is_committed(store):
    position = store.ledger.refresh()
    for bad in ({}, {"IC": float("nan")}, {"IC": "high"}, {"IC": True}, {"": 1.0}, {"IC": 10**400}):
        with pytest.raises(InvalidMetadataError):
            store.log_metrics("m", bad)
    with pytest.raises(ModelNotFoundError):
        store.log_metrics("m@3", {"IC": 0.1})
    with pytest.raises(ModelNotFoundError):
        store.log_metrics("nobody", {"IC": 0.1})
    store.delete_model("m")
    with pytest.raises(ModelDeletedError, match="undelete"):
        store.log_metrics("m@1", {"IC": 0.1})
    assert store.ledger.refresh() == position + 1  # only the delete
    assert store.get_model_metadata("m", 1).metrics == {"IC": 0.05}


def test_cli_logs_shows_and_names_who(store, tmp_path, capsys, monkeypatch):
    root = str(tmp_path / "cas")
    store.close()
    monkeypatch.setenv("CAS_REPO_USER", "bob")
    assert main(["--repo", root, "log-metrics", "m@prod", "sharpe=1.25", "IC=0.045"]) == 0
    assert capsys.readouterr().out.strip() == "m@1: logged sharpe=1.25, IC=0.045"
    assert main(["--repo", root, "log-metrics", "m@prod", "IC=nan"]) == 2
    assert "finite number" in capsys.readouterr().err

    assert main(["--repo", root, "metrics", "m@1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "m@1"
    assert lines[3].split()[:3] == ["IC", "0.045", "log"] and lines[3].split()[-1] == "bob"
    assert main(["--repo", root, "--json", "metrics", "m@1", "--history"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"] == {"IC": 0.045, "sharpe": 1.25}
    assert [(r["metric"], r["value"], r["source"], r["author"]) for r in out["history"]] == [
        ("IC", 0.05, "save", "ada"), ("IC", 0.045, "log", "bob"), ("sharpe", 1.25, "log", "bob")]

    assert main(["--repo", root, "log", "m"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert rows[0].split()[5].startswith("ada@") and rows[-1].split()[5].startswith("bob@")
    assert "logged IC=0.045, sharpe=1.25" in rows[-1]
    assert main(["--repo", root, "show", "m@1"]) == 0
    assert "saved_by: ada@" in capsys.readouterr().out
    assert main(["--repo", root, "alias", "set", "m", "prod", "2"]) == 0
    capsys.readouterr()
    assert main(["--repo", root, "--json", "alias", "log", "m"]) == 0
    assert [(c["author"], c["to_version"]) for c in json.loads(capsys.readouterr().out)] == [("ada", 1), ("bob", 2)]
