"""Keyed and unkeyed BLAKE3 digests: key checks, and the threaded path agreeing with the stream one."""

from __future__ import annotations

import pytest

from cas_repo.digest import Hasher, hash_bytes, hash_many
from cas_repo.errors import InvalidDigestError

KEY = bytes(range(32))


@pytest.mark.parametrize("key", [b"", b"short", bytes(33)])
def test_a_key_not_32_bytes_is_refused_even_when_empty(key):
    # An empty key once fell through to unkeyed mode: a MAC silently computed without its key.
    with pytest.raises(InvalidDigestError, match="32-byte key"):
        hash_bytes(b"data", key=key)
    with pytest.raises(InvalidDigestError, match="32-byte key"):
        Hasher(key=key)


@pytest.mark.parametrize("size", [10, 9 << 20])  # below and above the size hashed on several threads
def test_one_shot_and_streamed_digests_agree_keyed_and_not(size):
    data = bytes(size)
    assert hash_bytes(data) == hash_many([data[: size // 2], data[size // 2:]])
    assert hash_bytes(data, key=KEY) == hash_many([data[: size // 2], data[size // 2:]], key=KEY)
    assert hash_bytes(data, key=KEY) != hash_bytes(data)
