"""Fixtures shared by the whole suite: real stores in temp folders, real metadata."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime

import pytest
from hypothesis import settings

from cas_repo import ModelMetadata, ModelStore

# `make test` runs every property on the same examples each time (derived from the test's
# name), so a run's outcome depends on the code alone. `HYPOTHESIS_PROFILE=explore` draws
# new random examples on every run to hunt for counterexamples; any it finds is fixed at
# its cause and pinned with @example.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Never let a test reach a cloud metadata service, whatever the environment says.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
# Catalog indexes of the suite's stores (and of its subprocesses') go to a folder of the
# run's own, never to the user's cache; each store gets its own index in it, by URL.
INDEX_DIR = tempfile.mkdtemp(prefix="cas-test-index-")
os.environ["CAS_REPO_INDEX_DIR"] = INDEX_DIR
atexit.register(shutil.rmtree, INDEX_DIR, True)


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "cas"


@pytest.fixture
def store(store_dir):
    with ModelStore(store_dir) as s:
        yield s


@pytest.fixture
def make_md() -> Callable[..., ModelMetadata]:
    """Factory for metadata with sensible defaults: ``make_md("m1", IC=0.05)``."""

    def make(model_id: str = "m1", *, experiment: str = "exp", model_type: str = "LGBM",
             hyperparameters: dict | None = None, tags: dict | None = None,
             parents: list | None = None, **metrics: float) -> ModelMetadata:
        return ModelMetadata(
            model_id=model_id,
            experiment_name=experiment,
            model_type=model_type,
            hyperparameters=hyperparameters if hyperparameters is not None else {"num_leaves": 31},
            metrics=metrics or {"IC": 0.05},
            created_at=datetime(2026, 1, 2, 3, 4, 5),
            tags=tags or {},
            parents=parents or [],
        )

    return make


@pytest.fixture
def small_disk(tmp_path):
    """A real 32 MiB filesystem (a tmpfs) mounted for this test, which the test can fill."""
    from .small_disk import mounted

    with mounted(tmp_path / "disk") as disk:
        yield disk


# S3-protocol servers on loopback (moto, SeaweedFS), for the S3 backend and whole-store tests.
from .s3_server import s3, s3_server, seaweed  # noqa: E402,F401 - fixtures found by name here; after the env above


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Hand the slowest tests (marked ``slow``) to the workers first, and keep the tests that
    share a module- or package-scoped fixture on one worker.

    Longest first keeps one long test from starting last and running alone at the end
    while the other workers sit idle; the order among the rest is unchanged. A shared
    fixture (a trained model, a store, a server) is built once per worker that runs one of
    its tests: spread over the workers, each would build it again.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        shared = _shared_fixture_scope(item)
        if shared == "package":
            item.add_marker(pytest.mark.xdist_group(str(item.path.parent.relative_to(config.rootpath))))
        elif shared == "module":
            item.add_marker(pytest.mark.xdist_group(str(item.path.relative_to(config.rootpath))))


def _shared_fixture_scope(item) -> str | None:
    """The widest scope below "session" among the fixtures ``item`` uses (None: none such)."""
    info = getattr(item, "_fixtureinfo", None)
    scopes = {d.scope for defs in (info.name2fixturedefs.values() if info else ()) for d in defs}
    return "package" if "package" in scopes else "module" if "module" in scopes else None


def pytest_collection_finish(session):
    """Notice when ``--dist loadgroup`` ignores the ``xdist_group`` marks.

    The groups keep one demo store, one browser and the process-heavy tests on one worker;
    some pytest/pytest-xdist pairs drop them without a word (pytest-dev/pytest-xdist#1386),
    which would otherwise show only as a slower, more crowded run. Each such test fails.
    """
    if not session.config.getoption("loadgroup", default=False):
        return  # not an xdist worker under --dist loadgroup
    session.config.stash[_UNGROUPED] = {
        item.nodeid for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rsplit("]", 1)[-1]}


_UNGROUPED = pytest.StashKey[set]()


def pytest_runtest_setup(item):
    if item.nodeid in item.config.stash.get(_UNGROUPED, ()):
        pytest.fail("pytest-xdist ignored this test's xdist_group mark: this pytest and pytest-xdist "
                    "do not work together; install the versions pyproject.toml allows (`make test` "
                    "does)", pytrace=False)
