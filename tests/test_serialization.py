"""Serialization: faithful round trips, out-of-band buffers, and a closed allowlist."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cas_repo import UnsafePickleError, allow_globals
from cas_repo.serialization import dumps, loads
from cas_repo.serialization.pickler import OUT_OF_BAND_MIN

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    | st.tuples(inner, inner),
    max_leaves=30,
)


def _round_trip(obj):
    ser = dumps(obj)
    return loads(ser.stream, [bytearray(b) for b in ser.buffers])


@given(json_like)
@settings(max_examples=80, deadline=None)
def test_plain_values_round_trip(value):
    assert _round_trip(value) == value


@given(hnp.arrays(dtype=hnp.scalar_dtypes().filter(lambda d: d.kind in "biufc"),
                  shape=hnp.array_shapes(max_dims=3, max_side=60)))
@settings(max_examples=60, deadline=None)
def test_arrays_round_trip_bit_for_bit(arr):
    out = _round_trip(arr)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert out.tobytes() == arr.tobytes()


def test_large_buffers_leave_the_stream_without_copies():
    arr = np.arange(1_000_000, dtype=np.float32)
    ser = dumps({"w": arr, "small": np.arange(10)})
    assert len(ser.buffers) == 1
    assert ser.buffers[0].nbytes == arr.nbytes
    assert len(ser.stream) < OUT_OF_BAND_MIN
    arr[0] = 42.0  # a view: the buffer sees the change
    assert np.frombuffer(ser.buffers[0], dtype=np.float32)[0] == 42.0


def test_loaded_arrays_are_writable_like_after_pickle_load():
    out = _round_trip({"w": np.zeros(100_000)})
    out["w"][0] = 1.0
    assert out["w"][0] == 1.0


def test_pandas_frames_round_trip():
    idx = pd.MultiIndex.from_product([pd.date_range("2024-01-01", periods=50), ["a", "b"]],
                                     names=["datetime", "instrument"])
    df = pd.DataFrame({"x": np.arange(100.0), "s": ["u", "v"] * 50}, index=idx)
    pd.testing.assert_frame_equal(_round_trip(df), df)
    s = pd.Series(np.arange(200_000, dtype="float64"), name="y")
    pd.testing.assert_series_equal(_round_trip(s), s)


def test_stdlib_values_round_trip():
    value = {"od": OrderedDict(a=1), "t": datetime(2024, 1, 1, tzinfo=UTC), "s": {1, 2}}
    assert _round_trip(value) == value


class _Trusted:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return isinstance(other, _Trusted) and other.x == self.x

    def __hash__(self):
        return hash(self.x)


def test_unknown_classes_are_refused_until_allowed_in_code():
    ser = dumps(_Trusted(3))
    name = f"{_Trusted.__module__}._Trusted"
    with pytest.raises(UnsafePickleError) as info:
        loads(ser.stream)
    assert name in str(info.value)
    assert "allow_globals" in str(info.value)
    assert isinstance(info.value, pickle.UnpicklingError)
    allow_globals(name)
    assert loads(ser.stream) == _Trusted(3)


def test_environment_extends_the_allowlist(monkeypatch):
    class Local:
        pass

    globals()["_EnvAllowed"] = type("_EnvAllowed", (), {"__module__": __name__})
    ser = dumps(globals()["_EnvAllowed"]())
    with pytest.raises(UnsafePickleError):
        loads(ser.stream)
    monkeypatch.setenv("CAS_REPO_ALLOW_GLOBALS", f"{__name__}._EnvAllowed")
    assert type(loads(ser.stream)).__name__ == "_EnvAllowed"


def test_module_wildcards_cannot_be_allowed():
    with pytest.raises(ValueError):
        allow_globals("numpy.*")
    with pytest.raises(ValueError):
        allow_globals("numpy")


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_the_stream_may_be_any_bytes_like_object(wrap):
    # A memoryview was once refused as "malformed": the opcode check read it as a file.
    ser = dumps({"w": np.arange(100_000.0), "name": "m"})
    out = loads(wrap(ser.stream), [bytearray(b) for b in ser.buffers])
    assert out["name"] == "m" and out["w"][-1] == 99_999.0
