"""Content-defined chunking: lossless, deterministic, bounded, and local under edits."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from cas_repo.chunking import BUFFER_CHUNKING, STREAM_CHUNKING, ChunkParams, cut

SMALL = ChunkParams(avg=1024, min=256, max=4096)


@given(st.binary(max_size=200_000))
@settings(max_examples=60, deadline=None)
def test_chunks_concatenate_to_the_input(data):
    pieces = list(cut(data, SMALL))
    assert b"".join(pieces) == data
    assert all(len(p) > 0 for p in pieces)


@given(st.binary(min_size=1, max_size=100_000))
@settings(max_examples=40, deadline=None)
def test_cutting_is_deterministic(data):
    assert [bytes(p) for p in cut(data, SMALL)] == [bytes(p) for p in cut(bytes(data), SMALL)]


@given(st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=10, deadline=None)
def test_chunk_sizes_respect_bounds(seed):
    data = os.urandom(64) * 0 + bytes((seed * 2654435761 + i * 40503) % 251 for i in range(300_000))
    sizes = [len(p) for p in cut(data, STREAM_CHUNKING)]
    assert all(s <= STREAM_CHUNKING.max for s in sizes)
    assert all(s >= STREAM_CHUNKING.min for s in sizes[:-1])


@given(st.binary(min_size=10, max_size=50), st.integers(min_value=0, max_value=399_000))
@settings(max_examples=20, deadline=None)
def test_an_insertion_only_changes_nearby_chunks(insert, at):
    base = bytes(os.urandom(400_000))
    edited = base[:at] + insert + base[at:]
    a = {bytes(p) for p in cut(base, STREAM_CHUNKING)}
    b = [bytes(p) for p in cut(edited, STREAM_CHUNKING)]
    shared = sum(len(p) for p in b if p in a)
    # Content-defined boundaries resynchronise: all but a few chunks around the edit survive.
    assert shared >= len(edited) - 4 * STREAM_CHUNKING.max


def test_empty_input_gives_no_chunks():
    assert list(cut(b"", STREAM_CHUNKING)) == []


def test_chunks_are_views_not_copies():
    data = bytearray(os.urandom(200_000))
    first = next(iter(cut(data, BUFFER_CHUNKING)))
    data[0] ^= 0xFF
    assert first[0] == data[0]
