"""Hostile pickles stored as valid versions: every one refused, naming its global, running nothing.

Each stream is assembled by hand (``pickles.py``) and first proven live: plain
``pickle.loads`` in a subprocess creates the marker file. It is then stored as a real,
digest-valid version — written by an attacker's serializer through the public save
path — and ``load_model`` must refuse it with the marker never appearing.
"""

from __future__ import annotations

import copyreg
import os
import subprocess
import sys
import time
import uuid

import pytest

import cas_repo.serialization as serialization
from cas_repo import ModelStore, UnsafePickleError
from cas_repo.serialization import allowlist
from cas_repo.serialization.pickler import SerializedModel

from .pickles import EMPTY_DICT, MEMOIZE, POP, call, code_args, const, glob, program, stack_glob, string
from .workers import metadata

EXT_CODE = 0xF1  # private-use range of copyreg extension codes


def _cases(marker: str, evil: str) -> dict[str, tuple[str, bytes]]:
    sh = f"touch {marker}"
    py = f"open({marker!r}, 'w').close()"
    os_module = call(glob("builtins", "__import__"), string("os"))
    fn_from_code = (call(glob("types", "CodeType"), *map(const, code_args(py))) + MEMOIZE + POP
                    + call(call(glob("types", "FunctionType"), b"h\x00", EMPTY_DICT)))
    return {
        "os.system": ("os.system", call(glob("os", "system"), string(sh))),
        "posix.system": ("posix.system", call(stack_glob("posix", "system"), string(sh))),
        "builtins.eval": ("builtins.eval", call(glob("builtins", "eval"), string(py))),
        "builtins.exec": ("builtins.exec", call(glob("builtins", "exec"), string(py))),
        "builtins.getattr": ("builtins.getattr", call(
            call(glob("builtins", "getattr"), os_module, string("system")), string(sh))),
        "builtins.__import__": ("builtins.__import__", call(glob("builtins", "__import__"), string(evil))),
        "subprocess.Popen": ("subprocess.Popen", call(
            glob("subprocess", "Popen"), const(("touch", marker)))),
        "functools.partial": ("functools.partial", call(
            call(glob("functools", "partial"), glob("os", "system"), string(sh)))),
        "operator.attrgetter": ("operator.attrgetter", call(
            call(call(glob("operator", "attrgetter"), string("system")), os_module), string(sh))),
        "importlib.import_module": ("importlib.import_module", call(
            glob("importlib", "import_module"), string(evil))),
        "pickle.loads": ("pickle.loads", call(
            glob("pickle", "loads"), const(program(call(glob("os", "system"), string(sh)))))),
        "types.CodeType": ("types.CodeType", fn_from_code),
        "copyreg-EXT1": ("os.system", b"\x82" + bytes([EXT_CODE]) + b"(" + string(sh) + b"tR"),
    }


CASE_NAMES = list(_cases("m", "e"))


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """Marker path, an importable module that creates it, and the EXT registration primed."""
    marker = tmp_path / "PWNED"
    evil = f"cas_evil_{uuid.uuid4().hex[:8]}"
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / f"{evil}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(mods))
    # The EXT bypass: a registered code whose target sits in the cache, which the C
    # unpickler consults before ever calling find_class.
    copyreg.add_extension("os", "system", EXT_CODE)
    copyreg._extension_cache[EXT_CODE] = os.system
    yield marker, evil, mods
    copyreg.remove_extension("os", "system", EXT_CODE)
    copyreg._extension_cache.pop(EXT_CODE, None)


def _live(stream: bytes, marker, mods, tmp_path) -> bool:
    """Plain pickle.loads of ``stream`` in a fresh interpreter creates the marker."""
    f = tmp_path / "stream.pkl"
    f.write_bytes(stream)
    code = ("import copyreg, os, pickle, sys\n"
            f"copyreg.add_extension('os', 'system', {EXT_CODE})\n"
            f"copyreg._extension_cache[{EXT_CODE}] = os.system\n"
            f"r = pickle.loads(open({str(f)!r}, 'rb').read())\n"
            "getattr(r, 'wait', lambda: None)()\n")
    # check=False: the payload may break the rebuild after it ran; the marker is the verdict.
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(mods)},
                   capture_output=True, timeout=30, check=False)
    try:
        return marker.exists()
    finally:
        marker.unlink(missing_ok=True)


def _plant(store: ModelStore, model_id: str, stream: bytes, monkeypatch, **md_fields) -> None:
    """Store ``stream`` as a valid version, as an attacker's cas-repo would write it."""
    monkeypatch.setattr(serialization, "dumps", lambda model: SerializedModel(stream, ()))
    md = metadata(model_id)
    for k, v in md_fields.items():
        setattr(md, k, v)
    store.save_model(object(), md)
    monkeypatch.setattr(serialization, "dumps", _real_dumps)


_real_dumps = serialization.dumps


@pytest.mark.parametrize("case", CASE_NAMES)
def test_hostile_global_is_refused_and_runs_nothing(tmp_path, hostile, monkeypatch, case):
    marker, evil, mods = hostile
    global_name, stream = _cases(str(marker), evil)[case]
    assert _live(program(stream), marker, mods, tmp_path), "the exploit itself does not work"
    with ModelStore(tmp_path / "cas") as store:
        _plant(store, "victim", program(stream), monkeypatch)
        with pytest.raises(UnsafePickleError) as info:
            store.load_model("victim")
    assert info.value.global_name == global_name
    assert global_name in str(info.value)
    assert evil not in sys.modules
    time.sleep(0.05)
    assert not marker.exists()


class _Reduces:
    """A model whose own pickling names a dangerous callable — no hand assembly needed."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def test_dangerous_reduce_written_by_the_real_pickler_is_refused(tmp_path, hostile):
    import functools
    import importlib
    import operator

    marker, evil, _ = hostile
    sh, py = f"touch {marker}", f"open({str(marker)!r}, 'w').close()"
    models = {
        "posix.system": _Reduces(os.system, sh),
        "builtins.eval": _Reduces(eval, py),
        "builtins.exec": _Reduces(exec, py),
        "builtins.__import__": _Reduces(__import__, evil),
        "subprocess.Popen": _Reduces(subprocess.Popen, ["touch", str(marker)]),
        "functools.partial": _Reduces(functools.partial, print),
        "operator.attrgetter": _Reduces(operator.attrgetter, "system"),
        "importlib.import_module": _Reduces(importlib.import_module, evil),
    }
    with ModelStore(tmp_path / "cas") as store:
        for i, (name, model) in enumerate(models.items()):
            store.save_model(model, metadata(f"r{i}"))
            with pytest.raises(UnsafePickleError) as info:
                store.load_model(f"r{i}")
            assert info.value.global_name == name, name
    time.sleep(0.05)
    assert not marker.exists()


def test_allowlist_claimed_by_stored_metadata_is_ignored(tmp_path, hostile, monkeypatch):
    marker, _, _ = hostile
    before = allowlist.allowed_globals()
    claim = "os.system,builtins.eval"
    stream = program(call(glob("os", "system"), string(f"touch {marker}")))
    with ModelStore(tmp_path / "cas") as store:
        _plant(store, "victim", stream, monkeypatch,
               hyperparameters={"allow_globals": ["os.system"], "CAS_REPO_ALLOW_GLOBALS": claim},
               tags={"CAS_REPO_ALLOW_GLOBALS": claim, "allow_globals": claim},
               lineage={"allowlist": ["os.system"]})
        md = store.get_model_metadata("victim")
        assert md.tags["CAS_REPO_ALLOW_GLOBALS"] == claim  # stored faithfully, and nothing more
        with pytest.raises(UnsafePickleError, match=r"os\.system"):
            store.load_model("victim")
    assert allowlist.allowed_globals() == before
    assert not marker.exists()


class Harmless:
    """A user model class outside the default allowlist."""

    def __init__(self, x):
        self.x = x


def test_allowlist_is_extended_by_code_and_environment_only(tmp_path, monkeypatch):
    """The positive control: the refusal above is the allowlist at work, not a broken loader."""
    name = f"{__name__}.Harmless"
    monkeypatch.setattr(allowlist, "_extra", set())
    with ModelStore(tmp_path / "cas") as store:
        store.save_model(Harmless(7), metadata("h"))
        with pytest.raises(UnsafePickleError, match="Harmless"):
            store.load_model("h")
        monkeypatch.setenv("CAS_REPO_ALLOW_GLOBALS", name)
        assert store.load_model("h")[0].x == 7
        monkeypatch.delenv("CAS_REPO_ALLOW_GLOBALS")
        with pytest.raises(UnsafePickleError):
            store.load_model("h")
        serialization.allow_globals(name)
        assert store.load_model("h")[0].x == 7
