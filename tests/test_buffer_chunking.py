"""Fixed-size blocks for large array buffers: the cuts FastCDC makes with min == max, fast."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from cas_repo.chunking import BUFFER_CHUNKING, ChunkParams, cut

FIXED = ChunkParams(avg=1024, min=1024, max=1024)


@given(st.binary(max_size=20_000))
@settings(max_examples=60, deadline=None)
def test_fixed_blocks_are_what_fastcdc_cuts_with_equal_bounds(data):
    ours = [bytes(p) for p in cut(data, FIXED)]
    assert b"".join(ours) == data
    if len(data) > FIXED.min:
        theirs = [bytes(data[c.offset : c.offset + c.length])
                  for c in FastCDC(FIXED.avg, min_size=FIXED.min, max_size=FIXED.max).cut_buf(data)]
        assert ours == theirs


def test_an_in_place_edit_of_an_array_changes_only_the_blocks_it_touches():
    weights = np.frombuffer(os.urandom(8 * BUFFER_CHUNKING.max + 1000), dtype=np.uint8).copy()
    before = [bytes(p) for p in cut(weights, BUFFER_CHUNKING)]
    weights[3 * BUFFER_CHUNKING.max + 10 : 3 * BUFFER_CHUNKING.max + 5000] ^= 0xFF
    after = [bytes(p) for p in cut(weights, BUFFER_CHUNKING)]
    assert len(before) == len(after) == 9
    assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [3]
