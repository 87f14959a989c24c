"""Several processes moving one alias at once, each a "machine" with its own index: on a
shared local folder and on a SeaweedFS bucket.

A writer that loses a log position rebuilds its move on the new state, so every move is
recorded, each starting where the previous one left the alias, and the alias ends where
the last of them put it. Readers resolving ``model@prod`` meanwhile only ever get a
committed version, loaded whole.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

from cas_repo import ModelMetadata, ModelStore

from .s3_server import fresh_url
from .spawned import run_together

MACHINES = 4
MOVES = 5
VERSIONS = 3


def _mover(url: str, options: dict | None, index: str, machine: int, start, results) -> None:
    """Move "prod" MOVES times in lockstep with the others; load it after each move.

    Puts ``(machine, moves recorded, writer id, problems)`` on ``results``.
    """
    recorded, problems, writer = 0, [], ""
    try:
        with ModelStore(url, catalog=index, backend_options=options) as store:
            writer = store.ledger.writer
            for i in range(MOVES):
                start.wait()  # every machine moves at the same moment
                target = 1 + (machine + i) % VERSIONS
                before = store.set_alias("m", "prod", target)
                recorded += before != target  # equal: it was there already, nothing recorded
                model, md = store.load_model("m@prod")
                if model != {"v": md.version} or not 1 <= md.version <= VERSIONS:
                    problems.append(f"m@prod loaded {model!r} as version {md.version}")
    except BaseException as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    results.put((machine, recorded, writer, problems))


def _race(url: str, options: dict | None, tmp_path: Path) -> None:
    with ModelStore(url, catalog=tmp_path / "setup.duckdb", backend_options=options) as store:
        for v in range(1, VERSIONS + 1):
            store.save_model({"v": v}, ModelMetadata("m", "exp", "LGBM", {}, {}, datetime(2026, 1, v)))
    out = run_together(_mover, [(url, options, str(tmp_path / f"index-{m}" / "catalog.duckdb"), m)
                                for m in range(MACHINES)], timeout=300, what="a machine")
    assert [p for *_, problems in out for p in problems] == []
    with ModelStore(url, catalog=tmp_path / "reader.duckdb", backend_options=options) as store:
        moves = store.alias_history("m", "prod")
        assert len(moves) == sum(recorded for _, recorded, _, _ in out)  # every acknowledged move
        assert moves[0].from_version is None
        for earlier, later in itertools.pairwise(moves):
            assert later.from_version == earlier.to_version != later.to_version
        assert store.aliases("m") == {"prod": moves[-1].to_version}
        movers = {writer for _, recorded, writer, _ in out if recorded}
        assert {m.moved_by for m in moves} == movers
        assert store.load_model("m@prod")[0] == {"v": moves[-1].to_version}
        rows = store.sql("SELECT version FROM v_aliases WHERE model_id = 'm' AND alias = 'prod'").to_pylist()
        assert rows == [{"version": moves[-1].to_version}]


def test_machines_moving_one_alias_on_a_local_folder(tmp_path):
    _race(str(tmp_path / "cas"), None, tmp_path)


def test_machines_moving_one_alias_on_a_seaweedfs_bucket(seaweed, tmp_path):
    _race(fresh_url(), seaweed.options(), tmp_path)
