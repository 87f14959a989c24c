"""Hostile model_ids and metadata: refused cleanly, or stored and returned exactly — nothing else.

Every file system call the store makes from Python is observed — an audit hook sees
absolute paths (``open``, ``os.mkdir``, ``os.rename``, …), and thin wrappers around the
``os`` calls that take a directory descriptor resolve names relative to it — so "every
path stays under the root" is checked on what really happened, not on what the code
intends.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cas_repo import InvalidMetadataError, InvalidModelIdError, ModelMetadata, ModelNotFoundError, ModelStore
from cas_repo.metadata import MAX_METADATA_DEPTH

from ..budget import examples
from .consistency import check_store

# The fuzzers share one store and the last test checks it: keep them on one worker, in order.
pytestmark = pytest.mark.xdist_group("hostile-input")

_PATH_EVENTS = {"open": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.replace": (0, 1),
                "os.remove": (0,), "os.rmdir": (0,), "os.utime": (0,), "os.chmod": (0,),
                "os.chown": (0,), "os.link": (0, 1), "os.symlink": (0, 1), "os.truncate": (0,),
                "os.listdir": (0,), "os.scandir": (0,), "shutil.rmtree": (0,), "shutil.move": (0, 1)}
_recording: list[str] | None = None
_owner: int | None = None


def _resolve(path, dir_fd=None) -> str | None:
    if isinstance(path, int):
        return os.readlink(f"/proc/self/fd/{path}") if path >= 0 else None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        return None
    path = os.fspath(path)
    if not os.path.isabs(path):
        has_fd = isinstance(dir_fd, int) and dir_fd >= 0
        base = os.readlink(f"/proc/self/fd/{dir_fd}") if has_fd else os.getcwd()
        path = os.path.join(base, path)
    return os.path.normpath(path)


def _hook(event: str, args: tuple) -> None:
    if _recording is None or threading.get_ident() != _owner or event not in _PATH_EVENTS:
        return
    for i in _PATH_EVENTS[event]:
        if i < len(args):
            arg = args[i]
            # Relative names come with a dir_fd the audit event does not carry: the
            # wrappers below record those.
            if isinstance(arg, int) or (isinstance(arg, (str, bytes, os.PathLike))
                                        and os.path.isabs(os.fspath(arg))):
                p = _resolve(arg)
                if p is not None:
                    _recording.append(p)


sys.addaudithook(_hook)

_WRAPPED = ("open", "mkdir", "rename", "replace", "unlink", "remove", "rmdir", "utime", "stat", "lstat",
            "chmod", "link", "symlink", "scandir", "listdir")


def _wrap(name: str, real):
    def wrapper(*args, **kw):
        if _recording is not None and threading.get_ident() == _owner and args:
            for arg, fd in ((args[0], kw.get("dir_fd", kw.get("src_dir_fd"))),
                            (args[1] if name in ("rename", "replace", "link") and len(args) > 1 else None,
                             kw.get("dst_dir_fd"))):
                p = _resolve(arg, fd) if arg is not None else None
                if p is not None:
                    _recording.append(p)
        return real(*args, **kw)
    return wrapper


class touched:
    """Collect the paths this thread's file system calls name, while the block runs."""

    def __enter__(self) -> list[str]:
        global _recording, _owner
        self._saved = {n: getattr(os, n) for n in _WRAPPED}
        for n, real in self._saved.items():
            setattr(os, n, _wrap(n, real))
        _recording, _owner = [], threading.get_ident()
        return _recording

    def __exit__(self, *exc) -> None:
        global _recording  # noqa: PLW0603 - read by the audit hook, which a process cannot remove
        _recording = None
        for n, real in self._saved.items():
            setattr(os, n, real)


def _md(model_id="m", **over) -> ModelMetadata:
    fields = {"model_id": model_id, "experiment_name": "exp", "model_type": "LGBM",
              "hyperparameters": {"a": 1}, "metrics": {"IC": 0.1}, "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
    fields.update(over)
    return ModelMetadata(**fields)


def _files(d: Path) -> set[str]:
    return {str(p) for p in d.rglob("*")}


LOOKALIKES = ["ｍodel", "mоdel", "model\u200b", "model\u0301", "ⅿodel", "model\u2215x", "model\uff0fx",
              "\u202emodel", "model\ufeff", "mode\u0131"]
HOSTILE_IDS = ["", ".", "..", "../x", "../../etc/passwd", "/abs", "/etc/passwd", "a/b", "a\\b",
               "..\\x", "a\x00b", "\x00", "a\nb", "a\rb", "a\tb", "a\x1bb", "a\x7f", " a", "a ",
               "-rf", ".hidden", "_x", "~root", "%2e%2e%2f", "a:b", "C:\\x", "a" * 129, "x" * 10_000,
               "CON", "nul", "a..b" + "/" * 3, "model\udc80", *LOOKALIKES]
# text() leaves out lone surrogates; hostile input does not.
chars = st.one_of(st.characters(), st.characters(categories=["Cs"]))
model_ids = st.one_of(st.text(chars), st.sampled_from(HOSTILE_IDS),
                      st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True))


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    """One store for all fuzz examples (base folder, root, store)."""
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "cas"
    store = ModelStore(root)
    store.save_model({"sentinel": 1}, _md("sentinel"))
    store.history("sentinel")  # the index's first session imports what it needs outside the probes
    yield base, root, store
    store.close()


@settings(max_examples=examples(50), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model_id=model_ids)
@example(model_id="..")
@example(model_id="a" * 128)
def test_model_id_is_rejected_or_stays_inside_the_store(fuzz_store, model_id):
    base, root, store = fuzz_store
    before = _files(base)
    if True:
        position = store.ledger.refresh()  # the log's length: every recorded event is one commit
        try:
            with touched() as paths:
                store.save_model({"x": model_id}, _md(model_id))
        except InvalidModelIdError:
            assert paths == [], "a rejected model_id still reached the file system"
            assert _files(base) == before and store.ledger.refresh() == position
            for call in (lambda: store.load_model(model_id), lambda: store.history(model_id),
                         lambda: store.get_model_metadata(model_id), lambda: store.delete_model(model_id),
                         lambda: store.rollback(model_id, 1), lambda: store.set_tags(model_id, {"k": "v"})):
                with pytest.raises(InvalidModelIdError):
                    call()
            # as a parent reference "x@1": an extra "@" makes the reference itself malformed
            with pytest.raises((InvalidModelIdError, InvalidMetadataError)):
                store.save_model(1, _md("ok", parents=[f"{model_id}@1"]))
            return
        with touched() as more:
            model, md = store.load_model(model_id)
            store.history(model_id)
            store.delete_model(model_id)
        assert model == {"x": model_id} and md.model_id == model_id
    index = os.environ["CAS_REPO_INDEX_DIR"]  # the local catalog index lives outside the store
    for p in paths + more:
        assert p == str(root) or p.startswith((str(root) + os.sep, index + os.sep)), p
    assert {p for p in _files(base) - before if not p.startswith(str(root) + os.sep)} == set()


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(chars, max_size=30))
json_like = st.recursive(json_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(chars, max_size=10), kids, max_size=4)),
    max_leaves=25)
not_json = st.one_of(st.binary(max_size=10), st.sets(st.integers(), max_size=3), st.datetimes(),
                     st.complex_numbers(), st.builds(object), st.dictionaries(st.integers(), st.none(), min_size=1),
                     st.tuples(st.integers()))
anything = st.one_of(json_like, not_json, st.dictionaries(st.text(max_size=10), not_json, min_size=1))
metadata_fields = st.fixed_dictionaries({}, optional={
    "hyperparameters": anything,
    "metrics": st.dictionaries(st.one_of(st.text(chars, max_size=10), st.integers()),
                               st.one_of(st.floats(), st.integers(), st.integers(min_value=2 ** 1000),
                                         st.booleans(), st.text(max_size=5)),
                               max_size=5),
    "tags": st.dictionaries(st.one_of(st.text(chars, max_size=10), st.integers()),
                            st.one_of(st.text(chars, max_size=20), st.none(), st.integers()), max_size=4),
    "experiment_name": st.one_of(st.text(chars, max_size=300), st.none(), st.integers()),
    "model_type": st.text(max_size=20),
    "qlib_recorder_id": st.one_of(st.none(), st.text(max_size=20), st.integers()),
    "created_at": st.one_of(st.datetimes(), st.datetimes(timezones=st.timezones()), st.dates(),
                            st.sampled_from([datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
                                             datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
                                             datetime.min, datetime.max])),
    "lineage": anything,
    "parents": st.lists(st.one_of(st.text(max_size=12),
                                  st.sampled_from(["sentinel@1", "m@0", "m@-1", "@1", "b@2", "a@3"])),
                        max_size=3),
})


def _equal_json(a, b) -> bool:
    """Equality after a JSON round trip: tuples become lists, -0.0 == 0.0, nothing else changes."""
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(a, float) and isinstance(b, float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal_json(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(fields=metadata_fields)
# A local time inside Adelaide's 1999 DST gap: the same instant, but never == across zones.
@example(fields={"created_at": datetime(1999, 10, 31, 2, 0, tzinfo=ZoneInfo("Australia/South"))})
def test_metadata_is_refused_clearly_or_round_trips_exactly(fuzz_store, fields):
    _, _, store = fuzz_store
    md = _md("meta", **fields)
    n_versions = store.stats().versions
    try:
        store.save_model({"v": 1}, md)
    except (InvalidMetadataError, InvalidModelIdError) as exc:
        assert str(exc)  # says what is wrong
        assert store.stats().versions == n_versions
        return
    got = store.get_model_metadata("meta", md.version)
    for name in ("experiment_name", "model_type", "qlib_recorder_id"):
        assert getattr(got, name) == getattr(md, name), name
    # The same instant at the same UTC offset. (Not ``==``: a local time in a zone's DST
    # gap or fold never equals a time in another zone, even the same instant — PEP 495.)
    assert got.created_at.timestamp() == md.created_at.timestamp()
    assert got.created_at.utcoffset() == md.created_at.utcoffset()
    assert got.parents == sorted(md.parents)  # lineage is a set of edges, returned sorted
    for name in ("hyperparameters", "lineage", "metrics", "tags"):
        assert _equal_json(getattr(md, name), getattr(got, name)), name


def test_fuzzed_store_is_still_consistent(fuzz_store):
    """Runs after the fuzzers (same module): whatever they did, the catalog is sound."""
    _, root, store = fuzz_store
    store.close()
    report = check_store(root, full=True)
    assert report.clean, report.problems
    assert report.orphan_packs == () and report.temp_files == ()
    with ModelStore(root) as store:
        assert store.load_model("sentinel")[0] == {"sentinel": 1}


def test_huge_and_deep_metadata(tmp_path):
    big = {f"param_{i}": i * 0.5 for i in range(20_000)}
    big["blob"] = "x" * (4 << 20)

    def nest(depth):
        v = "leaf"
        for _ in range(depth):
            v = {"k": [v]}
        return v

    with ModelStore(tmp_path / "cas") as store:
        md = _md("huge", hyperparameters=big, metrics={f"m{i}": i / 7 for i in range(5_000)},
                 tags={f"t{i}": "v" * 100 for i in range(2_000)})
        store.save_model(1, md)
        got = store.get_model_metadata("huge")
        assert got.hyperparameters == big and got.metrics == md.metrics and got.tags == md.tags
        store.save_model(1, _md("deep", hyperparameters=nest(MAX_METADATA_DEPTH // 2 - 1)))
        assert store.get_model_metadata("deep").hyperparameters == nest(MAX_METADATA_DEPTH // 2 - 1)
        for depth in (MAX_METADATA_DEPTH, 100_000):
            with pytest.raises(InvalidMetadataError, match="nested deeper"):
                store.save_model(1, _md("deep", hyperparameters=nest(depth)))
        for bad in (math.nan, math.inf, -math.inf, 10 ** 400):
            with pytest.raises(InvalidMetadataError):
                store.save_model(1, _md("nan", metrics={"IC": bad}))
            with pytest.raises(InvalidMetadataError):
                store.save_model(1, _md("nan", hyperparameters={"lr": bad} if bad != 10 ** 400 else {"x": {1}}))
        with pytest.raises(ModelNotFoundError):
            store.history("nan")
    assert check_store(tmp_path / "cas", full=True).clean
