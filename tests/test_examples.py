"""Every example under examples/ runs: fresh interpreter, temp working directory, time limit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cas_repo import ModelStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = PROJECT_ROOT / "examples"
TIME_LIMIT = 240


def _start(name: str, cwd: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    env.pop("CAS_REPO", None)
    return subprocess.Popen([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> str:
    try:
        out, err = proc.communicate(timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, f"{proc.args}\n{out}\n{err[-3000:]}"
    return out


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "list_models.py", "load_qlib_model.py", "online_serving.py", "rolling_retrain.py", "save_qlib_model.py"]


@pytest.mark.slow
def test_save_load_list_and_rolling_examples(tmp_path):
    seed_dir, rolling_dir = tmp_path / "seed", tmp_path / "rolling"
    seed_dir.mkdir()
    rolling_dir.mkdir()
    rolling = _start("rolling_retrain.py", rolling_dir)  # runs beside the seed's three

    out = _finish(_start("save_qlib_model.py", seed_dir))
    assert "saved lgbm_001 version 1" in out and "Qlib recorder id: " in out
    recorder_id = out.split("Qlib recorder id: ")[1].split()[0]
    assert list((seed_dir / "mlruns").glob(f"*/{recorder_id}/artifacts/lgbm_001.pkl"))

    out = _finish(_start("load_qlib_model.py", seed_dir))
    assert "model type:      LGBM (LGBModel), version 1" in out
    assert "predicted 3000 scores for the test segment" in out

    out = _finish(_start("list_models.py", seed_dir))
    assert out.startswith("model id:   lgbm_001 (version 1)") and "experiment: alpha158_lgbm" in out

    out = _finish(rolling)
    assert "rolled back: version 5 = version 3" in out
    assert "current: version 5, window 2" in out
    with ModelStore(rolling_dir / "data" / "cas") as store:
        history = store.history("lgbm_rolling")
    assert [h.tags["window"] for h in history] == ["0", "1", "2", "3", "2"]
    assert history[4].rollback_of == 3 and history[4].digest == history[2].digest
    assert len({h.digest for h in history}) == 4


@pytest.mark.slow
def test_online_serving_example_promotes_serves_and_rolls_back(tmp_path):
    out = _finish(_start("online_serving.py", tmp_path))
    assert "serving rolling_lgb.LGBModel@online = v3: 2400 signals up to 2020-08-11" in out
    assert "rolled back: online v3 -> v2; 100% of the newest window's signals changed" in out
    assert "online now: rolling_lgb.LGBModel@online = v2" in out
    moves = [line.split()[-3:] for line in out.split("what was online when:\n")[1].splitlines()[:4]]
    assert moves == [["-", "->", "v1"], ["v1", "->", "v2"], ["v2", "->", "v3"], ["v3", "->", "v2"]]
    with ModelStore(tmp_path / "data" / "cas") as store:
        assert store.aliases("rolling_lgb.LGBModel") == {"online": 2}
        assert [h.version for h in store.history("rolling_lgb.LGBModel")] == [1, 2, 3]
