"""The first release's core (before the log design), runnable beside the current one.

Scenarios that must not regress compare with it in the same run: its ``cas_repo`` package
is extracted from git (``git archive``, nothing checked out) into the bench cache, and a
child process puts that folder first on ``sys.path``, so ``import cas_repo`` loads the old
code while the harness's own modules (``tools.bench``) stay current.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from .framework import cache_dir

#: The last commit of the first release's core: one DuckDB catalog per store, a file lock
#: and a DuckDB session per save and load, event records in packs.
COMMIT = "1494fc9f32e6d3a529c2ec504821db43b1723e52"
LABEL = "first release"
ROOT = Path(__file__).resolve().parents[2]

# Run a child task of tools/bench/child.py on the core found at sys.argv[1].
BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
        "from tools.bench.child import main; sys.exit(main(sys.argv[1:]))")


def core_path() -> Path | None:
    """A folder whose ``cas_repo`` is the first release's (extracted once), or None when this
    checkout's git history does not have that commit."""
    folder = cache_dir() / f"first-release-{COMMIT[:12]}"
    if (folder / "cas_repo" / "__init__.py").exists():
        return folder
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", COMMIT, "cas_repo"],
                             check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    tmp = folder.with_name(folder.name + ".tmp")
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(tmp, filter="data")
    tmp.rename(folder)
    return folder
