"""The shape of the package: no import circles, and a light `import cas_repo`.

The layer contract itself (which package may import which) is import-linter's, in
pyproject.toml, run by `make test`; these tests check what it does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import grimp

HEAVY = ("duckdb", "pyarrow", "qlib", "torch", "pandas", "numpy", "mlflow", "lightgbm")


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_through_others():
    # Imports inside functions count (they run); those under TYPE_CHECKING never run.
    graph = grimp.build_graph("cas_repo", exclude_type_checking_imports=True, cache_dir=None)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


def _loaded_after(code: str) -> list[str]:
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_cas_repo_loads_no_index_arrow_or_qlib():
    assert _loaded_after("import cas_repo") == []


def test_saving_and_loading_never_import_duckdb(tmp_path):
    loaded = _loaded_after(f"""
        from datetime import datetime, timezone
        from cas_repo import ModelMetadata, ModelStore
        store = ModelStore({str(tmp_path / "store")!r}, catalog={str(tmp_path / "index.duckdb")!r})
        md = ModelMetadata("m", "exp", "LGBM", {{"lr": 0.1}}, {{"IC": 0.05}}, datetime.now(timezone.utc))
        store.save_model({{"weights": list(range(1000))}}, md)
        assert store.load_model("m")[0] == {{"weights": list(range(1000))}}
        store.list_models(); store.get_model_metadata("m@1")
    """)
    assert "duckdb" not in loaded and "qlib" not in loaded


def test_the_store_and_its_past_are_both_read_views(tmp_path):
    from datetime import UTC, datetime

    from cas_repo import ModelMetadata, ModelStore
    from cas_repo.ports import ReadView

    with ModelStore(tmp_path / "store", catalog=tmp_path / "index.duckdb") as store:
        store.save_model({"w": 1}, ModelMetadata("m", "exp", "LGBM", {}, {}, datetime.now(UTC)))
        views = [store, store.as_of(datetime.now(UTC))]
        assert all(isinstance(v, ReadView) for v in views)
        assert [v.get_model_metadata("m").version for v in views] == [1, 1]
