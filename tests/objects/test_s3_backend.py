"""The S3 backend against real S3-protocol servers on loopback (moto, SeaweedFS): the shared
contract on both, then what only an object store has (request counts, Last-Modified,
connections cut midway, paged listing, configuration and errors)."""

from __future__ import annotations

import logging
import os
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from cas_repo.digest import hash_bytes
from cas_repo.errors import AccessRefusedError, CasRepoError, ObjectNotFoundError, StoreError
from cas_repo.location import CHUNK
from cas_repo.objects import ObjectStore
from cas_repo.objects.keys import log_key, pack_key
from cas_repo.objects.s3 import S3Backend
from cas_repo.objects.store import NewEntry

from ..s3_server import BUCKET, KEYS, fresh_url
from .contract import BackendContract
from .faulty_proxy import FaultyProxy


def _open(s3, prefix: str = "store", **extra) -> S3Backend:
    return S3Backend.from_url(f"s3://{BUCKET}/{prefix}", **s3.options(allow_bucket_creation=True, **extra))


class TestS3BackendOnMoto(BackendContract):
    # moto once let two creators of one key both win: the proof of one winner runs on
    # SeaweedFS and the local folder, never here.
    test_concurrent_creators_have_exactly_one_winner = None

    @pytest.fixture
    def backend(self, s3):
        return _open(s3)


class TestS3BackendOnSeaweedFS(BackendContract):
    @pytest.fixture
    def backend(self, seaweed):
        return S3Backend.from_url(fresh_url(), **seaweed.options())


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


def test_a_new_object_costs_one_put_and_a_present_one_a_head_more(s3, backend):
    data = os.urandom(9 << 20)  # past the old client's multipart threshold: still one PUT
    key = pack_key(hash_bytes(data))
    mark = s3.log_offset()
    assert backend.put(key, [data[:1000], data[1000:]]) is True
    assert s3.requests_since(mark) == {"PUT": 1}
    mark = s3.log_offset()
    assert backend.put(key, [data]) is False
    assert s3.requests_since(mark) == {"PUT": 1, "HEAD": 1}
    assert backend.read(key) == data


def test_create_costs_one_put_and_a_lost_race_one_get_more(s3, backend):
    mark = s3.log_offset()
    assert backend.create(log_key(1), b"mine") is True
    assert s3.requests_since(mark) == {"PUT": 1}
    mark = s3.log_offset()
    assert backend.create(log_key(1), b"theirs") is False
    assert s3.requests_since(mark) == {"PUT": 1, "GET": 1}
    mark = s3.log_offset()
    assert backend.get(log_key(1)) == b"mine" and backend.get(log_key(2)) is None
    assert s3.requests_since(mark) == {"GET": 2}


def test_ranges_are_ranged_gets_and_near_ones_share_a_get(s3, backend):
    data = os.urandom(3 << 20)
    key = pack_key(hash_bytes(data))
    backend.put(key, [data])
    mark = s3.log_offset()
    assert backend.read_ranges(key, [(0, 10), (150_000, 50_000)]) == [data[:10], data[150_000:200_000]]
    assert s3.requests_since(mark) == {"GET": 1}
    mark = s3.log_offset()
    assert backend.read_ranges(key, [(0, 10), (2_500_000, 100)]) == [data[:10], data[2_500_000:2_500_100]]
    assert s3.requests_since(mark) == {"GET": 2}


def test_ranges_past_the_end_read_short(backend):
    data = os.urandom(1000)
    key = pack_key(hash_bytes(data))
    backend.put(key, [data])
    assert backend.read_ranges(key, [(0, 10), (1000, 10), (995, 10), (5000, 1)]) == [data[:10], b"", data[995:], b""]
    assert backend.read_range(key, 2000, 5) == b"" and backend.read_range(key, 3, 0) == b""
    with pytest.raises(ObjectNotFoundError):
        backend.read_range(pack_key(hash_bytes(b"none")), 0, 0)
    with pytest.raises(StoreError, match="bad range"):
        backend.read_range(key, -1, 5)


def test_store_keeps_every_pack_a_single_put(s3, backend):
    store = ObjectStore(backend)
    assert store.pack_target == backend.preferred_pack_size
    blobs = [os.urandom(1 << 20) for _ in range(20)]
    mark = s3.log_offset()
    locs = store.write([NewEntry(hash_bytes(b), CHUNK, b, compress=False) for b in blobs])
    packs = {l.pack for l in locs}
    assert len(packs) == 3
    counts = s3.requests_since(mark)
    assert counts == {"PUT": len(packs)}  # no multipart upload (POST), no HEAD
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


def test_put_of_a_present_key_keeps_last_modified_and_touch_refreshes_it(s3, backend):
    data = os.urandom(5000)
    key = pack_key(hash_bytes(data))
    backend.put(key, [data])
    first = backend.stat(key).mtime
    assert first.tzinfo is not None and first.utcoffset() == timedelta(0)
    assert abs(first - datetime.now(UTC)) < timedelta(minutes=5)
    time.sleep(1.1)  # Last-Modified has one-second resolution
    assert backend.put(key, [data]) is False
    assert backend.stat(key).mtime == first
    mark = s3.log_offset()
    backend.touch(key)
    assert s3.requests_since(mark) == {"GET": 1, "PUT": 1}
    second = backend.stat(key).mtime
    assert second > first
    assert backend.read(key) == data
    (listed,) = backend.list("packs/")
    assert listed.mtime == second and listed.size == len(data)


# -- never a partial object --------------------------------------------------------------------


@pytest.fixture(params=["moto", "seaweedfs"])
def server_and_url(request):
    """Each server, and a store URL on it under which nothing is stored yet."""
    if request.param == "moto":
        request.getfixturevalue("s3").reset()
        return request.getfixturevalue("s3"), f"s3://{BUCKET}/cut"
    return request.getfixturevalue("seaweed"), fresh_url()


@pytest.mark.parametrize("write", ["put", "create"])
def test_a_connection_cut_midway_through_a_write_publishes_nothing(server_and_url, write):
    server, url = server_and_url
    direct = S3Backend.from_url(url, **server.options(allow_bucket_creation=True))
    proxy = FaultyProxy(server.endpoint)
    try:
        cut = S3Backend.from_url(url, **server.options(endpoint_override=proxy.endpoint, max_attempts=1))
        data = os.urandom(300_000)
        key = pack_key(hash_bytes(data)) if write == "put" else log_key(1)
        proxy.cut_next_request(after=150_000)
        with pytest.raises(StoreError, match="nothing was recorded" if write == "put" else "outcome is unknown"):
            cut.put(key, [data]) if write == "put" else cut.create(key, data)
        assert direct.get(key) is None and list(direct.list("")) == []
        assert (cut.put(key, [data]) if write == "put" else cut.create(key, data)) is True
        assert direct.read(key) == data
    finally:
        proxy.close()


def test_a_create_whose_answer_is_lost_still_knows_it_won(server_and_url):
    server, url = server_and_url
    proxy = FaultyProxy(server.endpoint)
    try:
        backend = S3Backend.from_url(url, **server.options(endpoint_override=proxy.endpoint,
                                                           allow_bucket_creation=True))
        proxy.drop_next_answer()
        assert backend.create(log_key(1), b"written, answer lost") is True  # the retry finds its own bytes
        proxy.drop_next_answer()
        assert backend.create(log_key(1), b"someone else's") is False
        assert backend.get(log_key(1)) == b"written, answer lost"
    finally:
        proxy.close()


def test_a_part_that_is_not_bytes_fails_before_any_request(s3, backend):
    key = pack_key(hash_bytes(b"x"))
    mark = s3.log_offset()
    with pytest.raises(StoreError, match="bytes-like"):
        backend.put(key, [b"x", object()])  # type: ignore[list-item]
    assert s3.requests_since(mark) == {}


def test_a_damaged_object_is_replaced_by_the_next_put(backend):
    data = os.urandom(4000)
    key = pack_key(hash_bytes(data))
    backend._overwrite(key, data[:100])  # what a writer without our guard could leave
    assert backend.put(key, [data]) is True
    assert backend.read(key) == data


# -- listing ---------------------------------------------------------------------------------


def test_listing_streams_pages_of_a_thousand_keys_from_start_after(s3, backend):
    keys = [log_key(i) for i in range(1, 1206)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: backend.put(k, [b"c"]), keys))
    mark = s3.log_offset()
    it = backend.list("log/")
    assert next(it).key == keys[0]
    assert s3.requests_since(mark) == {"GET": 1}  # one page, not the whole listing
    assert [keys[0]] + [i.key for i in it] == keys
    assert s3.requests_since(mark) == {"GET": 2}
    mark = s3.log_offset()
    assert [i.key for i in backend.list("log/", start_after=keys[1199])] == keys[1200:]
    assert s3.requests_since(mark) == {"GET": 1}  # StartAfter: the server skips, not the client
    mark = s3.log_offset()
    assert list(backend.list("packs/")) == []
    assert s3.requests_since(mark) == {"GET": 1}  # another folder: the log is not read


def test_listing_by_partial_prefixes(s3, backend):
    keys = {}
    for shard in ("00", "01", "7f", "ff"):
        data = _blob_in_shard(shard)
        keys[shard] = pack_key(hash_bytes(data))
        backend.put(keys[shard], [data])
    assert [i.key for i in backend.list("packs/")] == list(keys.values())
    assert [i.key for i in backend.list("packs/blake3/7")] == [keys["7f"]]
    assert [i.key for i in backend.list(keys["7f"][:20])] == [keys["7f"]]
    assert [i.key for i in backend.list(keys["7f"])] == [keys["7f"]]
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
    backend.delete(keys[0])
    assert s3.requests_since(mark) == {"POST": 4}  # obstore deletes with DeleteObjects, one key each
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
    mark = s3.log_offset()
    with pytest.raises(StoreError, match="allow_bucket_creation"):
        S3Backend.from_url("s3://no-such-bucket/x", **s3.options())
    assert s3.requests_since(mark) == {"GET": 1}  # opening a store is one LIST
    S3Backend.from_url("s3://no-such-bucket/x", **s3.options(allow_bucket_creation=True))
    S3Backend.from_url("s3://no-such-bucket/y", **s3.options())  # exists now
    S3Backend.from_url("s3://no-such-bucket/z", **s3.options(allow_bucket_creation=True))


def test_a_bucket_removed_under_the_store_is_reported_with_what_to_do(s3, backend):
    s3.reset()
    data = b"after reset"
    with pytest.raises(StoreError, match="does not exist") as info:
        backend.put(pack_key(hash_bytes(data)), [data])
    assert "nothing was recorded" in str(info.value)
    # A log reader must not take a missing bucket for the end of the log.
    with pytest.raises(StoreError, match="does not exist"):
        backend.get(log_key(1))
    with pytest.raises(StoreError, match="does not exist"):
        backend.create(log_key(1), b"commit")
    with pytest.raises(StoreError, match="does not exist"):
        list(backend.list("log/"))


def test_refused_credentials_say_so_at_once_without_leaking(seaweed, monkeypatch):
    secret = "wrong-secret-do-not-print"
    with pytest.raises(StoreError, match="refused the credentials") as info:
        S3Backend.from_url(fresh_url(), **seaweed.options(secret_key=secret))
    assert secret not in str(info.value)
    monkeypatch.setattr(S3Backend, "_check_bucket", lambda self: None)
    bad = S3Backend.from_url(fresh_url(), **seaweed.options(secret_key=secret))
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="refused the credentials") as info:
        bad.create(log_key(1), b"commit")
    assert time.monotonic() - t0 < 1  # refused at once, not retried with backoff
    assert secret not in str(info.value)


@pytest.mark.parametrize("wrong,code", [({"secret_key": "wrong-secret-do-not-print"}, "SignatureDoesNotMatch"),
                                        ({"access_key": "no-such-key-id"}, "InvalidAccessKeyId")])
def test_refused_credentials_are_one_clear_sentence_on_the_command_line(seaweed, monkeypatch, capsys, tmp_path,
                                                                       wrong, code):
    from cas_repo.cli import main

    with pytest.raises(AccessRefusedError) as info:
        S3Backend.from_url(fresh_url(), **seaweed.options(**wrong))
    assert info.value.code == code and isinstance(info.value, CasRepoError)
    env = {**seaweed.env(), "AWS_ACCESS_KEY_ID": wrong.get("access_key", KEYS["access_key"]),
           "AWS_SECRET_ACCESS_KEY": wrong.get("secret_key", KEYS["secret_key"])}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["--repo", fresh_url(), "--catalog", str(tmp_path / "index.duckdb"), "ls"]) == 1
    err = capsys.readouterr().err
    assert f"refused the credentials ({code}: " in err and "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in err
    assert "<" not in err and "wrong-secret" not in err and len(err.splitlines()) == 1
    assert "secret_key" not in err  # the Python option is for Python callers


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
    monkeypatch.setenv("AWS_CONDITIONAL_PUT", "disabled")  # must not switch create-only writes off
    b = S3Backend.from_url(f"s3://{BUCKET}/env", allow_bucket_creation=True)
    assert b.config.endpoint == f"http://{s3.endpoint}" and b.config.region == "us-east-1"
    data = b"configured from the environment"
    assert b.put(pack_key(hash_bytes(data)), [data]) is True
    assert b.create(log_key(1), data) is True and b.create(log_key(1), data) is False


def test_explicit_keys_ignore_a_session_token_in_the_environment(seaweed, monkeypatch):
    monkeypatch.setenv("AWS_SESSION_TOKEN", "stale-token-from-another-login")
    b = S3Backend.from_url(fresh_url(), **seaweed.options())
    assert b.create(log_key(1), b"signed with the explicit keys only") is True


class socket_closed_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        self._s = socket.socket()
        self._s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return self._s.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._s.close()
