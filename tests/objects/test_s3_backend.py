"""The S3 backend against a real S3-protocol server on loopback: the shared contract, then
what only an object store has (request counts, Last-Modified, no abort, shard listing)."""

from __future__ import annotations

import logging
import os
import pickle
import time
from datetime import datetime, timedelta, timezone

import pytest

from cas_repo.digest import hash_bytes
from cas_repo.errors import ObjectNotFoundError, StoreError
from cas_repo.location import CHUNK
from cas_repo.objects import ObjectStore
from cas_repo.objects.keys import pack_key
from cas_repo.objects.s3 import _LIST_AHEAD, SINGLE_PUT_LIMIT, S3Backend
from cas_repo.objects.store import NewEntry

from ..s3_server import BUCKET, KEYS
from .contract import BackendContract


def _open(s3, prefix: str = "store", **extra) -> S3Backend:
    return S3Backend.from_url(f"s3://{BUCKET}/{prefix}", **s3.options(allow_bucket_creation=True, **extra))


class TestS3Backend(BackendContract):
    @pytest.fixture
    def backend(self, s3):
        return _open(s3)


@pytest.fixture
def backend(s3):
    return _open(s3)


def _blob_in_shard(shard: str) -> bytes:
    """Some bytes whose key falls in ``packs/blake3/<shard>/``."""
    i = 0
    while True:
        data = f"blob for shard {shard} #{i}".encode()
        if hash_bytes(data).hex.startswith(shard):
            return data
        i += 1


# -- requests ------------------------------------------------------------------------------


def test_a_new_object_costs_one_head_and_one_put(s3, backend):
    data = os.urandom(SINGLE_PUT_LIMIT - 1)
    key = pack_key(hash_bytes(data))
    mark = s3.log_offset()
    assert backend.put(key, [data[:1000], data[1000:]]) is True
    assert s3.requests_since(mark) == {"HEAD": 1, "PUT": 1}
    assert backend.read(key) == data


def test_reading_ranges_opens_once_and_gets_each_range(s3, backend):
    data = os.urandom(200_000)
    key = pack_key(hash_bytes(data))
    backend.put(key, [data])
    mark = s3.log_offset()
    assert backend.read_ranges(key, [(0, 10), (150_000, 50_000)]) == [data[:10], data[150_000:]]
    assert s3.requests_since(mark) == {"HEAD": 1, "GET": 2}


def test_store_keeps_every_pack_a_single_put(s3, backend):
    store = ObjectStore(backend)
    assert store.pack_target == backend.preferred_pack_size < SINGLE_PUT_LIMIT
    blobs = [os.urandom(1 << 20) for _ in range(20)]
    mark = s3.log_offset()
    locs = store.write([NewEntry(hash_bytes(b), CHUNK, b, compress=False) for b in blobs])
    packs = {l.pack for l in locs}
    assert len(packs) == 3
    assert all(store.pack_info(p).size <= SINGLE_PUT_LIMIT for p in packs)
    counts = s3.requests_since(mark)
    assert counts["PUT"] == len(packs) and "POST" not in counts  # no multipart upload
    assert [bytes(b) for b in store.read_many(locs)] == blobs


def test_reads_spread_over_many_packs_are_verified_and_a_missing_one_is_reported(backend):
    store = ObjectStore(backend, pack_target=1)  # one pack per entry
    blobs = [os.urandom(3000 + i) for i in range(12)]
    locs = store.write([NewEntry(hash_bytes(b), CHUNK, b, compress=False) for b in blobs])
    assert len({l.pack for l in locs}) == 12
    assert [bytes(b) for b in store.read_many(locs[::-1])] == blobs[::-1]
    store.delete_pack(locs[7].pack)
    with pytest.raises(ObjectNotFoundError):
        store.read_many(locs)


# -- timestamps ----------------------------------------------------------------------------


def test_put_of_a_present_key_and_touch_refresh_last_modified(s3, backend):
    data = os.urandom(5000)
    key = pack_key(hash_bytes(data))
    backend.put(key, [data])
    first = backend.stat(key).mtime
    assert first.tzinfo is not None and first.utcoffset() == timedelta(0)
    assert abs(first - datetime.now(timezone.utc)) < timedelta(minutes=5)
    time.sleep(1.1)  # Last-Modified has one-second resolution
    mark = s3.log_offset()
    assert backend.put(key, [data]) is False
    assert s3.requests_since(mark) == {"HEAD": 1, "PUT": 1}  # the same bytes, PUT again
    second = backend.stat(key).mtime
    assert second > first
    time.sleep(1.1)
    mark = s3.log_offset()
    backend.touch(key)
    assert s3.requests_since(mark) == {"HEAD": 1, "GET": 1, "PUT": 1}
    third = backend.stat(key).mtime
    assert third > second
    assert backend.read(key) == data
    (listed,) = backend.list("packs/")
    assert listed.mtime == third and listed.size == len(data)


# -- never a partial object --------------------------------------------------------------------


class _FailingStream:
    """A real pyarrow output stream whose writes store at most ``cut`` bytes and then raise
    ``exc``; with ``once``, only the first write fails (an interrupt between two calls)."""

    def __init__(self, stream, cut: int, exc: BaseException, once: bool) -> None:
        self._stream, self._cut, self._exc, self._once = stream, cut, exc, once
        self._failed = False

    def write(self, data) -> int:
        if self._once and self._failed:
            return self._stream.write(data)
        self._failed = True
        self._stream.write(memoryview(data)[: max(0, self._cut - self._stream.tell())])
        raise self._exc

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _FailingFS:
    """The backend's own pyarrow filesystem, with writes that fail part-way."""

    def __init__(self, fs, cut: int, exc: BaseException, once: bool = False) -> None:
        self._fs, self._args = fs, (cut, exc, once)

    def open_output_stream(self, path, *args, **kwargs):
        return _FailingStream(self._fs.open_output_stream(path, *args, **kwargs), *self._args)

    def __getattr__(self, name):
        return getattr(self._fs, name)


def _put_failing(backend, key, data, exc, **how) -> None:
    real = backend._fs
    backend._fs = _FailingFS(real, exc=exc, **how)
    try:
        with pytest.raises(StoreError if isinstance(exc, OSError) else type(exc)):
            backend.put(key, [data])
    finally:
        backend._fs = real


@pytest.mark.parametrize("exc", [OSError("connection reset"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_a_write_that_keeps_failing_midway_publishes_nothing(s3, backend, exc):
    data = os.urandom(300_000)
    key = pack_key(hash_bytes(data))
    mark = s3.log_offset()
    _put_failing(backend, key, data, exc, cut=len(data) // 2)
    # pyarrow cannot abort: closing published the half, which was deleted at once.
    assert s3.requests_since(mark)["DELETE"] == 1
    assert not backend.exists(key)
    assert list(backend.list("packs/")) == []
    assert backend.put(key, [data]) is True
    assert backend.read(key) == data


@pytest.mark.parametrize("cut", [0, 150_000, 300_000], ids=["before", "midway", "after"])
def test_an_interrupted_write_publishes_the_whole_object_and_never_a_part(s3, backend, cut):
    data = os.urandom(300_000)
    key = pack_key(hash_bytes(data))
    mark = s3.log_offset()
    _put_failing(backend, key, data, KeyboardInterrupt(), cut=cut, once=True)
    assert s3.requests_since(mark) == {"HEAD": 1, "PUT": 1}  # one PUT, of everything
    assert backend.read(key) == data


def test_a_part_that_is_not_bytes_fails_before_any_request(s3, backend):
    key = pack_key(hash_bytes(b"x"))
    mark = s3.log_offset()
    with pytest.raises(StoreError, match="bytes-like"):
        backend.put(key, [b"x", object()])  # type: ignore[list-item]
    assert s3.requests_since(mark) == {}


def test_a_damaged_object_is_replaced_by_the_next_put(backend):
    data = os.urandom(4000)
    key = pack_key(hash_bytes(data))
    with backend._fs.open_output_stream(f"{backend._root}/{key}") as f:
        f.write(data[:100])  # what a writer without our guard could leave
    assert backend.put(key, [data]) is True
    assert backend.read(key) == data


# -- listing ---------------------------------------------------------------------------------


def test_listing_streams_one_shard_at_a_time(s3, backend):
    keys = {}
    for shard in ("00", "01", "7f", "ff"):
        data = _blob_in_shard(shard)
        keys[shard] = pack_key(hash_bytes(data))
        backend.put(keys[shard], [data])
    mark = s3.log_offset()
    it = backend.list("packs/")
    first = next(it)
    assert first.key == keys["00"]
    assert s3.requests_since(mark)["GET"] <= _LIST_AHEAD + 1  # not all 256 shards
    assert [first.key] + [i.key for i in it] == list(keys.values())
    assert [i.key for i in backend.list("packs/blake3/7")] == [keys["7f"]]
    assert [i.key for i in backend.list(keys["7f"][:20])] == [keys["7f"]]
    other = keys["7f"][:16] + ("1" if keys["7f"][16] == "0" else "0")
    assert list(backend.list(other)) == []
    assert list(backend.list("other/")) == []


def test_deleted_objects_leave_nothing_listed(s3, backend):
    keys = []
    for i in range(3):
        data = f"gone {i}".encode()
        keys.append(pack_key(hash_bytes(data)))
        backend.put(keys[-1], [data])
    mark = s3.log_offset()
    for key in keys:
        backend.delete(key)
    assert s3.requests_since(mark) == {"HEAD": 3, "DELETE": 3, "PUT": 3}
    # pyarrow leaves an empty "directory" marker per shard; it is not an object.
    assert list(backend.list("packs/")) == []
    with pytest.raises(ObjectNotFoundError):
        backend.stat(keys[0])


def test_prefixes_are_separate_stores(s3):
    a, b = _open(s3, "team/a"), _open(s3, "team/b")
    data = b"only in a"
    a.put(pack_key(hash_bytes(data)), [data])
    assert [i.key for i in a.list("packs/")] == [pack_key(hash_bytes(data))]
    assert list(b.list("packs/")) == []
    assert a.url == f"s3://{BUCKET}/team/a"


# -- configuration and errors ------------------------------------------------------------------


def test_a_missing_bucket_is_refused_unless_creation_is_allowed(s3):
    with pytest.raises(StoreError, match="allow_bucket_creation"):
        S3Backend.from_url("s3://no-such-bucket/x", **s3.options())
    S3Backend.from_url("s3://no-such-bucket/x", **s3.options(allow_bucket_creation=True))
    S3Backend.from_url("s3://no-such-bucket/y", **s3.options())  # exists now


def test_a_bucket_removed_under_the_store_is_reported_with_what_to_do(s3, backend):
    s3.reset()
    data = b"after reset"
    with pytest.raises(StoreError, match="does not exist") as info:
        backend.put(pack_key(hash_bytes(data)), [data])
    assert "nothing was recorded" in str(info.value)


def test_an_unreachable_endpoint_fails_fast_without_leaking_secrets(s3, caplog):
    secret = "do-not-print-this-secret"
    with socket_closed_port() as port, caplog.at_level(logging.DEBUG):
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="cannot reach") as info:
            S3Backend.from_url("s3://cas-test/x", endpoint_override=f"127.0.0.1:{port}", scheme="http",
                               region="us-east-1", access_key="AKIAEXAMPLEKEY", secret_key=secret,
                               session_token="token-do-not-print", connect_timeout=1, max_attempts=1)
        assert time.monotonic() - t0 < 10
    text = str(info.value) + repr(info.value.__cause__) + caplog.text
    assert secret not in text and "token-do-not-print" not in text


def test_repr_and_url_carry_no_secret_and_pickling_is_refused(backend):
    assert KEYS["secret_key"] not in repr(backend) and KEYS["access_key"] not in repr(backend)
    assert KEYS["secret_key"] not in repr(backend.config)
    assert KEYS["secret_key"] not in backend.url
    with pytest.raises(TypeError, match="credentials"):
        pickle.dumps(backend)


def test_environment_variables_configure_the_backend(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    b = S3Backend.from_url(f"s3://{BUCKET}/env", allow_bucket_creation=True)
    assert b.config.endpoint == f"http://{s3.endpoint}" and b.config.region == "us-east-1"
    data = b"configured from the environment"
    assert b.put(pack_key(hash_bytes(data)), [data]) is True


class socket_closed_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        self._s = socket.socket()
        self._s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return self._s.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._s.close()
