"""Every SQL example in docs/sql.md runs on the demo store and prints what the page shows."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cas_repo import ModelStore
from cas_repo.catalog.query import VIEWS
from cas_repo.cli.query import write_table
from cas_repo.cli.render import Output

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "sql.md"
EXAMPLE = re.compile(r"### (.+?)\n.*?```sql\n(.*?)```\n\n```text\n(.*?)```", re.S)
EXAMPLES = EXAMPLE.findall(DOC.read_text())

# One worker builds the demo store once for the whole module.
pytestmark = pytest.mark.xdist_group("docs-sql")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo store, built by its script in a fresh interpreter as a reader would."""
    root = tmp_path_factory.mktemp("demo") / "cas"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "sql_demo_store.py"), str(root)],
                          cwd=tmp_path_factory.mktemp("cwd"), env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_the_cookbook_has_at_least_ten_examples_and_documents_every_view():
    assert len(EXAMPLES) >= 10
    text = DOC.read_text()
    for view in VIEWS:
        assert f"`{view}`" in text, f"{view} is not documented in docs/sql.md"


@pytest.mark.parametrize("title,query,expected", EXAMPLES, ids=[e[0][:40] for e in EXAMPLES])
def test_example_output_matches_the_page(demo, title, query, expected):
    with ModelStore(demo) as store:
        table = store.sql(query)
    buf = io.StringIO()
    write_table(table, "table", Output(buf, sys.stderr), None)
    assert buf.getvalue() == expected, f"docs/sql.md example {title!r} prints something else now"
