"""The contract every ObjectBackend passes, unchanged.

A backend's test module subclasses :class:`BackendContract` and provides one fixture,
``backend``, yielding a fresh, empty backend. Nothing here knows which backend it runs,
except that a test server whose create-only write is known not to be atomic (moto) leaves
out the races that would only test the server, by setting them to None in its subclass.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

import pytest

from cas_repo.digest import hash_bytes, hash_many
from cas_repo.errors import IntegrityError, ObjectNotFoundError, StoreError
from cas_repo.location import CHUNK, MANIFEST
from cas_repo.objects import ObjectBackend, ObjectStore
from cas_repo.objects.keys import checkpoint_key, log_key, pack_key
from cas_repo.objects.store import NewEntry


def _key(data: bytes) -> str:
    return pack_key(hash_bytes(data))


class BackendContract:
    """Shared behaviour of object backends (primitives, then the ObjectStore on top)."""


    # -- primitives ------------------------------------------------------------------------

    def test_put_then_read_whole_and_ranges(self, backend: ObjectBackend) -> None:
        data = os.urandom(100_000)
        key = _key(data)
        assert backend.put(key, [data[:10], memoryview(data)[10:]]) is True
        assert backend.read(key) == data
        assert backend.read_range(key, 5, 20) == data[5:25]
        assert backend.read_ranges(key, [(0, 3), (99_990, 10)]) == [data[:3], data[-10:]]
        assert backend.stat(key).size == len(data)

    def test_read_ranges_into_fills_caller_buffers(self, backend: ObjectBackend) -> None:
        data = os.urandom(100_000)
        key = _key(data)
        backend.put(key, [data])
        a, b, c, d = bytearray(3), bytearray(5), bytearray(10), bytearray(10)
        filled = backend.read_ranges_into(key, [(0, [memoryview(a), memoryview(b)]), (50_000, [memoryview(c)]),
                                                (99_995, [memoryview(d)])])
        assert filled == [8, 10, 5]  # the last range runs past the end of the blob
        assert (bytes(a), bytes(b), bytes(c), bytes(d[:5])) == (data[:3], data[3:8], data[50_000:50_010], data[-5:])

    def test_put_existing_key_keeps_bytes_and_reports_it(self, backend: ObjectBackend) -> None:
        data = b"x" * 1000
        key = _key(data)
        assert backend.put(key, [data]) is True
        assert backend.put(key, [data]) is False
        assert backend.read(key) == data

    def test_touch_refreshes_mtime(self, backend: ObjectBackend) -> None:
        data = os.urandom(64)
        key = _key(data)
        backend.put(key, [data])
        before = backend.stat(key).mtime
        assert before.tzinfo is not None
        assert abs(before - datetime.now(UTC)) < timedelta(minutes=5)
        backend.touch(key)
        assert backend.stat(key).mtime >= before

    def test_missing_key_is_not_found(self, backend: ObjectBackend) -> None:
        key = _key(b"never stored")
        with pytest.raises(ObjectNotFoundError) as info:
            backend.stat(key)
        assert isinstance(info.value, FileNotFoundError)
        with pytest.raises(ObjectNotFoundError):
            backend.read(key)
        assert backend.exists(key) is False
        with pytest.raises(ObjectNotFoundError):
            backend.touch(key)

    def test_delete_is_idempotent(self, backend: ObjectBackend) -> None:
        data = b"to delete"
        key = _key(data)
        backend.put(key, [data])
        backend.delete(key)
        backend.delete(key)
        assert not backend.exists(key)

    def test_list_streams_every_blob_under_prefix(self, backend: ObjectBackend) -> None:
        keys = set()
        for i in range(25):
            data = f"blob {i}".encode()
            keys.add(_key(data))
            backend.put(_key(data), [data])
        listed = {info.key: info for info in backend.list("packs/")}
        assert set(listed) == keys
        assert all(info.size == len(backend.read(k)) for k, info in listed.items())
        assert list(backend.list("packs/blake3/zz")) == []

    def test_malformed_keys_are_refused(self, backend: ObjectBackend) -> None:
        for bad in ("../etc/passwd", "/abs", "packs/blake3/ab/../../x", "packs/blake3/AB/" + "0" * 62, ""):
            with pytest.raises(StoreError):
                backend.put(bad, [b"x"])
            with pytest.raises((StoreError, ObjectNotFoundError)):
                backend.read_range(bad, 0, 1)

    def test_concurrent_puts_of_one_key_publish_one_whole_blob(self, backend: ObjectBackend) -> None:
        data = os.urandom(1 << 20)
        key = _key(data)
        errors: list[BaseException] = []

        def put() -> None:
            try:
                backend.put(key, [data])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=put) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert backend.read(key) == data
        assert list(backend.list_incomplete()) == []

    # -- create-only writes, get, ordered listing (the log's primitives) -------------------------

    def test_create_publishes_once_and_keeps_the_first_bytes(self, backend: ObjectBackend) -> None:
        key = log_key(1)
        first, second = b"first " * 100, b"second" * 100
        assert backend.create(key, first) is True
        assert backend.create(key, second) is False
        assert backend.create(key, first) is False
        assert backend.get(key) == first and backend.read(key) == first
        assert backend.stat(key).size == len(first)
        with pytest.raises(StoreError):
            backend.create("log/1", b"x")  # not a 20-digit position

    def test_concurrent_creators_have_exactly_one_winner(self, backend: ObjectBackend) -> None:
        n, rounds = 8, 6
        payloads = [[bytes([w]) * 200_000 + os.urandom(16) for w in range(n)] for _ in range(rounds)]
        results: list[list[bool | None]] = [[None] * n for _ in range(rounds)]
        whole = {p for row in payloads for p in row}
        torn: list[int] = []
        done = threading.Event()
        barrier = threading.Barrier(n)

        def writer(w: int) -> None:
            for r in range(rounds):
                barrier.wait()
                results[r][w] = backend.create(log_key(r + 1), payloads[r][w])

        def reader() -> None:
            while not done.is_set():
                for r in range(rounds):
                    data = backend.get(log_key(r + 1))
                    if data is not None and data not in whole:
                        torn.append(len(data))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(n)]
        watcher = threading.Thread(target=reader)
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        watcher.join()
        for r in range(rounds):
            assert results[r].count(True) == 1 and results[r].count(False) == n - 1
            assert backend.get(log_key(r + 1)) == payloads[r][results[r].index(True)]
        assert torn == []  # a reader saw nothing or a whole payload, never a part or a mix

    def test_get_is_none_for_a_missing_key(self, backend: ObjectBackend) -> None:
        assert backend.get(log_key(7)) is None
        assert backend.get(_key(b"absent")) is None
        data = b"present"
        backend.put(_key(data), [data])
        assert backend.get(_key(data)) == data
        with pytest.raises(StoreError):
            backend.get("../log/00000000000000000001")

    def test_list_is_sorted_after_start_after_and_within_the_prefix(self, backend: ObjectBackend) -> None:
        logs = [log_key(i) for i in (1, 2, 3, 9, 10, 11, 100)]
        for i, key in enumerate(logs):
            assert backend.create(key, f"commit {i}".encode())
        packs = sorted(_key(f"pack {i}".encode()) for i in range(6))
        for i in range(6):
            backend.put(_key(f"pack {i}".encode()), [f"pack {i}".encode()])
        backend.create(checkpoint_key(10), b"state")

        def keys(prefix: str, after: str | None = None) -> list[str]:
            return [info.key for info in backend.list(prefix, start_after=after)]

        assert keys("log/") == logs  # zero-padded positions: key order is numeric order
        assert keys("log/", logs[3]) == logs[4:]
        assert keys("log/", logs[-1]) == []
        assert keys("log/", "log/") == logs
        assert keys("log/", "checkpoints/") == logs  # an earlier namespace: everything
        assert keys("log/", packs[0]) == []  # a later one: nothing
        assert keys("packs/") == packs
        assert keys("packs/", log_key(3)) == packs
        assert keys("packs/", packs[2]) == packs[3:]
        assert keys("checkpoints/") == [checkpoint_key(10)]
        assert keys("") == [checkpoint_key(10), *logs, *packs]
        assert keys("log/0000000000000000001") == logs[4:6]  # a prefix inside a folder (10, 11)
        assert [i.size for i in backend.list("log/", start_after=logs[5])] == [len(b"commit 6")]

    # -- the object store over the backend ---------------------------------------------------

    def test_store_round_trip_with_compression_and_dedup(self, backend: ObjectBackend) -> None:
        store = ObjectStore(backend)
        text = b"tree=1 leaf_value=0.25 " * 2000
        noise = os.urandom(50_000)
        entries = [
            NewEntry(hash_bytes(text), CHUNK, text),
            NewEntry(hash_bytes(noise), CHUNK, noise),
            NewEntry(hash_bytes(text), CHUNK, text),  # listed twice, stored once
            NewEntry(hash_bytes(b"{}"), MANIFEST, b"{}", compress=False),
        ]
        locs = store.write(entries)
        assert len(locs) == 3
        assert len({l.pack for l in locs}) == 1
        assert locs[0].stored_size < len(text)  # compressible text is stored compressed
        assert locs[1].stored_size == len(noise)  # noise is not
        assert [bytes(b) for b in store.read_many(locs)] == [text, noise, b"{}"]
        assert store.pack_index(locs[0].pack) == sorted(locs, key=lambda l: l.offset)
        packs = list(store.list_packs())
        assert [p for p, _ in packs] == [locs[0].pack]
        assert store.verify_pack(locs[0].pack) == locs[0].pack

    def test_store_splits_large_writes_into_packs(self, backend: ObjectBackend) -> None:
        store = ObjectStore(backend, pack_target=1 << 20)
        blobs = [os.urandom(300_000) for _ in range(8)]
        locs = store.write([NewEntry(hash_bytes(b), CHUNK, b) for b in blobs])
        assert len({l.pack for l in locs}) >= 2
        assert [bytes(b) for b in store.read_many(locs)] == blobs

    def test_store_detects_a_flipped_byte(self, backend: ObjectBackend) -> None:
        store = ObjectStore(backend)
        data = os.urandom(10_000)
        (loc,) = store.write([NewEntry(hash_bytes(data), CHUNK, data, compress=False)])
        key = pack_key(loc.pack)
        raw = bytearray(backend.read(key))
        raw[loc.offset + 5] ^= 0xFF
        backend.delete(key)
        backend.put(key, [bytes(raw)])
        with pytest.raises(IntegrityError) as info:
            store.read(loc)
        assert info.value.expected == loc.digest.hex
        assert info.value.actual not in (None, loc.digest.hex)
        assert store.verify_pack(loc.pack) != loc.pack

    def test_store_read_into_fills_targets_with_verified_bytes(self, backend: ObjectBackend) -> None:
        store = ObjectStore(backend)
        text = b"tree=1 leaf_value=0.25 " * 2000
        blobs = [os.urandom(30_000), text, os.urandom(20_000), os.urandom(40_000)]
        locs = store.write([NewEntry(hash_bytes(b), CHUNK, b) for b in blobs])
        assert locs[1].stored_size < len(text)  # one compressed entry among raw ones
        order = [3, 0, 1, 2, 0]  # out of pack order, one entry twice
        targets = [bytearray(len(blobs[i])) for i in order]
        store.read_into([locs[i] for i in order], [memoryview(t) for t in targets])
        assert [bytes(t) for t in targets] == [blobs[i] for i in order]

    def test_store_read_into_detects_flipped_and_missing_bytes(self, backend: ObjectBackend) -> None:
        store = ObjectStore(backend)
        blobs = [os.urandom(10_000), os.urandom(10_000)]
        locs = store.write([NewEntry(hash_bytes(b), CHUNK, b, compress=False) for b in blobs])
        key = pack_key(locs[0].pack)
        raw = bytes(backend.read(key))
        for damaged in (raw[: locs[1].offset] + bytes([raw[locs[1].offset] ^ 1]) + raw[locs[1].offset + 1 :],
                        raw[: locs[1].offset + 100]):
            backend.delete(key)
            backend.put(key, [damaged])
            with pytest.raises(IntegrityError) as info:
                store.read_into(locs, [memoryview(bytearray(len(b))) for b in blobs])
            assert info.value.expected == locs[1].digest.hex
        with pytest.raises(IntegrityError):
            store.read_into(locs[:1], [memoryview(bytearray(5))])  # a target of the wrong size

    def test_pack_name_is_the_digest_of_its_bytes(self, backend: ObjectBackend) -> None:
        store = ObjectStore(backend)
        data = b"abc" * 100
        (loc,) = store.write([NewEntry(hash_bytes(data), CHUNK, data)])
        assert hash_many([backend.read(pack_key(loc.pack))]) == loc.pack
