"""A reader that stops early (``cas-repo show m | head``) ends the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from cas_repo import ModelMetadata, ModelStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv", [["show", "m"], ["--json", "ls"]], ids=["show", "json"])
def test_a_pipe_closed_before_the_output_ends_the_command_without_a_traceback(tmp_path, argv):
    with ModelStore(tmp_path / "cas") as store:
        store.save_model({"w": 1}, ModelMetadata("m", "exp", "LGBM", {"num_leaves": 31}, {"IC": 0.1},
                                                 datetime(2026, 1, 2)))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        done = subprocess.run([sys.executable, "-m", "cas_repo.cli", "--repo", str(tmp_path / "cas"), *argv],
                              stdout=write_end, stderr=subprocess.PIPE, env=env, text=True, timeout=60, check=False)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141  # as a shell reports a command ended by SIGPIPE
