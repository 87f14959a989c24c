"""The EXT-opcode check walks a stream exactly as pickletools does, without decoding it."""

from __future__ import annotations

import datetime
import pickle
import pickletools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas_repo.errors import SerializationError, UnsafePickleError
from cas_repo.serialization.unpickler import _ext_codes, check_opcodes

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner) | st.tuples(inner, inner),
    max_leaves=20,
)


def _genops_codes(data: bytes) -> list[int]:
    return [arg for op, arg, _ in pickletools.genops(data) if op.name in ("EXT1", "EXT2", "EXT4")]


@given(VALUES, st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_walks_every_protocol_like_genops(value, protocol):
    data = pickle.dumps(value, protocol=protocol)
    assert _ext_codes(data) == _genops_codes(data) == []
    check_opcodes(data)
    check_opcodes(memoryview(data))


def test_walks_text_protocol_pickles_with_globals_and_instances():
    data = pickle.dumps([datetime.date(2026, 1, 2), np.arange(3), 10**30, 1.5, "é\n"], protocol=0)
    assert _ext_codes(data) == _genops_codes(data) == []


@pytest.mark.parametrize("opcode, code", [(b"\x82", 0xF1), (b"\x83", 0x1234), (b"\x84", 0x7FFF_FFF0)])
def test_an_ext_opcode_after_a_large_string_is_refused(opcode, code):
    big = pickle.dumps("x" * 300_000, protocol=4)[:-1]  # the string, without STOP
    width = {b"\x82": 1, b"\x83": 2, b"\x84": 4}[opcode]
    data = big + opcode + code.to_bytes(width, "little") + b"\x86."  # ..., TUPLE2, STOP
    assert _ext_codes(data) == _genops_codes(data) == [code]
    with pytest.raises(UnsafePickleError, match="EXT opcodes are refused"):
        check_opcodes(bytearray(data))


def test_ext_bytes_inside_a_string_are_data():
    data = pickle.dumps(b"\x82\xf1" * 1000 + b"\n", protocol=5)
    assert _ext_codes(data) == []


@pytest.mark.parametrize("data", [
    pickle.dumps("x" * 1000, protocol=4)[:-10],   # cut inside the string
    pickle.dumps([1, 2], protocol=2)[:-1],        # no STOP
    b"\xff.",                                     # unknown opcode
    b"T\xff\xff\xff\xff.",                        # BINSTRING with a negative length
    b"cos\nsystem",                               # GLOBAL without its second newline
])
def test_malformed_streams_are_serialization_errors(data):
    with pytest.raises(SerializationError, match="malformed"):
        check_opcodes(data)
