"""What starting the command line costs: no heavy library unless the command needs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.cli import main

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("duckdb", "pyarrow", "qlib", "starlette", "uvicorn", "jinja2", "torch")


def _loaded_heavy(code: str, tmp_path: Path) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; it prints a JSON object of module-name lists."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


_PROBE = f"""
import contextlib, io, json, sys
HEAVY = {HEAVY!r}
def heavy(names):
    return sorted({{m.split(".")[0] for m in names}} & set(HEAVY))
import cas_repo
base = set(sys.modules)
import cas_repo.cli
out = {{"import": heavy(set(sys.modules) - base)}}
for name, argv in ARGVS:
    before = set(sys.modules)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = cas_repo.cli.main(argv)
        except SystemExit as exc:  # --help
            code = exc.code
    assert code == 0, (argv, code)
    new = set(sys.modules) - before
    out[name] = heavy(new)
    out[name + " (cas_repo outside the CLI)"] = sorted(
        m for m in new if m.startswith("cas_repo.") and not m.startswith("cas_repo.cli"))
print(json.dumps(out))
"""


def test_the_cli_loads_no_heavy_library_beyond_what_cas_repo_does(tmp_path):
    # Measured against `import cas_repo`, so this holds whatever the core imports itself.
    store = tmp_path / "cas"
    with ModelStore(store) as s:
        s.save_model({"w": 1}, ModelMetadata("m", "exp", "LGBM", {}, {"IC": 0.1}, datetime(2026, 1, 1)))
    argvs = [("help", ["--help"]), ("ls", ["--repo", str(store), "ls"]),
             ("fsck_help", ["fsck", "--help"]), ("ui_help", ["ui", "--help"])]
    loaded = _loaded_heavy(f"ARGVS = {argvs!r}\n" + _PROBE, tmp_path)
    assert {k: v for k, v in loaded.items() if "outside" not in k} == {
        "import": [], "help": [], "ls": [], "fsck_help": [], "ui_help": []}
    # Help reads the parser only: not even cas-repo's own maintenance or web view code.
    for name in ("help", "fsck_help", "ui_help"):
        assert loaded[f"{name} (cas_repo outside the CLI)"] == [], name


def test_importing_the_cli_loads_no_heavy_library(tmp_path):
    code = ("import json, sys\nimport cas_repo.cli\n"
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == []


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_the_help_states_the_library_defaults(capsys):
    # The parser leaves these defaults to the commands (importing them would load the
    # maintenance package on every start), so the help text repeats them: keep it true.
    from cas_repo.maintenance import DEFAULT_GRACE, parse_duration
    from cas_repo.maintenance.gc import DEFAULT_REPACK_BELOW

    for command in ("fsck", "gc"):
        (stated,) = re.findall(r"--grace GRACE .*?\(default (\S+)\)", _help(command, capsys))
        assert parse_duration(stated) == DEFAULT_GRACE, command
    assert float(re.findall(r"\(default ([0-9.]+);", _help("gc", capsys))[0]) == DEFAULT_REPACK_BELOW
