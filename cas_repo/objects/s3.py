"""S3-compatible object storage (AWS S3, MinIO, SeaweedFS, …) as a backend, over ``pyarrow.fs``.

Object stores have no rename, so a blob is published by one PUT to its final key, which
the server applies whole or not at all. Blobs up to :data:`SINGLE_PUT_LIMIT` go out in
exactly one request (``allow_delayed_open`` buffers the bytes until ``close``); the
store keeps packs under it (:attr:`S3Backend.preferred_pack_size`). See ``docs/s3.md``.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from itertools import islice
from typing import Any, Iterator, Sequence

import pyarrow.fs as pafs

from ..digest import ALGORITHM
from ..errors import ObjectNotFoundError, StoreError
from .backend import Buffer, ObjectBackend, ObjectInfo
from .keys import PACKS, is_valid_key
from .s3_config import S3Config, resolve

log = logging.getLogger(__name__)

# pyarrow sends a blob below 10 MiB as a single PutObject; from 10 MiB on it switches to
# a multipart upload (create, parts, complete), which it cannot abort from Python.
SINGLE_PUT_LIMIT = (10 << 20) - 1
# Packs grow past the target by at most one entry (chunks are ≤ 1 MiB) plus the index,
# so 8 MiB keeps packs single PUTs with room to spare; only the manifest of a model of
# tens of GiB outgrows that, and its pack goes out as a multipart upload.
S3_PACK_TARGET = 8 << 20
_SHARDS = tuple(f"{i:02x}" for i in range(256))
_SHARD_ROOT = f"{PACKS}/{ALGORITHM}/"
# Shard listings fetched ahead of the consumer: 256 round trips overlap, memory stays
# bounded by a few shards' worth of entries.
_LIST_AHEAD = 4


def _utc(mtime: datetime | None) -> datetime:
    if mtime is None:
        raise StoreError("the S3 server returned an object without Last-Modified")
    return mtime if mtime.tzinfo else mtime.replace(tzinfo=timezone.utc)


def _join(key: str, parts: Sequence[Buffer]) -> memoryview | bytes:
    """One contiguous buffer of ``parts``, built before any request is made."""
    try:
        views = [memoryview(p).cast("B") for p in parts]
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot write {key}: a part is not a contiguous bytes-like object ({exc})") from exc
    return views[0] if len(views) == 1 else b"".join(views)


class S3Backend(ObjectBackend):
    """Blobs under ``s3://bucket/prefix/packs/blake3/ab/…``; see :meth:`from_url`.

    Raises:
        StoreError: the bucket is missing (and may not be created) or cannot be reached.
    """

    preferred_pack_size = S3_PACK_TARGET
    read_concurrency = 8

    def __init__(self, config: S3Config) -> None:
        self.config, self.url, self._root = config, config.url, config.root
        try:
            self._fs = pafs.S3FileSystem(
                retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=config.max_attempts),
                **config.filesystem_kwargs())
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot configure S3 access to {self.url}: {config.scrub(str(exc))}") from exc
        self._check_bucket()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "S3Backend":
        """A backend for ``s3://bucket/prefix``; ``options`` override the AWS_* environment."""
        return cls(resolve(url, options, os.environ))

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r}, endpoint={self.config.endpoint!r})"

    def __reduce__(self) -> Any:
        raise TypeError("an S3Backend holds credentials and is not picklable; pass its URL instead")

    # -- helpers -------------------------------------------------------------------------

    def _check_bucket(self) -> None:
        bucket = self.config.bucket
        try:
            info = self._fs.get_file_info(bucket)
            if info.type == pafs.FileType.NotFound:
                if not self.config.allow_bucket_creation:
                    raise StoreError(f"bucket {bucket!r} does not exist at {self.config.endpoint}: "
                                     "create it, or pass allow_bucket_creation=True")
                self._fs.create_dir(bucket)
        except OSError as exc:
            raise self._error("open bucket", bucket, exc) from exc

    def _path(self, key: str) -> str:
        if not is_valid_key(key):
            raise StoreError(f"refusing malformed object key {key[:100]!r}")
        return f"{self._root}/{key}"

    def _error(self, action: str, what: str, exc: BaseException) -> StoreError:
        text = self.config.scrub(str(exc))
        where = self.config.endpoint
        if "NO_SUCH_BUCKET" in text:
            hint = f"bucket {self.config.bucket!r} does not exist at {where}; create it"
        elif "ACCESS_DENIED" in text or "HTTP status 403" in text:
            hint = ("access denied: check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                    "or a profile) and that the bucket policy allows List/Get/Put/DeleteObject")
        elif "INVALID_ACCESS_KEY_ID" in text or "SIGNATURE_DOES_NOT_MATCH" in text:
            hint = "the server rejected the credentials: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        elif "NETWORK_CONNECTION" in text or "curlCode" in text:
            hint = (f"cannot reach {where}: check AWS_ENDPOINT_URL (or endpoint_override) and the "
                    "network, then retry")
        else:
            hint = "retry; if it persists check the endpoint, region (AWS_REGION) and credentials"
        if action == "write":
            hint += "; nothing was recorded in the catalog"
        return StoreError(f"could not {action} {what} in {self.url}: {text}; {hint}")

    def _size_or_none(self, path: str, key: str) -> int | None:
        # open_input_file costs one HEAD; get_file_info adds a LIST when the key is missing.
        try:
            with self._fs.open_input_file(path) as f:
                return f.size()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error("inspect", key, exc) from exc

    def _publish(self, path: str, key: str, data: memoryview | bytes) -> None:
        """One PUT of ``data`` at ``path``: the whole blob or, on any failure, nothing."""
        try:
            stream = self._fs.open_output_stream(path)  # delayed open: no request yet
        except OSError as exc:
            raise self._error("write", key, exc) from exc
        complete = False
        try:
            try:
                stream.write(data)
                complete = stream.tell() == len(data)
            finally:
                if complete:
                    stream.close()  # the PUT
                else:
                    self._settle(stream, path, key, data)
        except OSError as exc:
            raise self._error("write", key, exc) from exc

    def _settle(self, stream: Any, path: str, key: str, data: memoryview | bytes) -> None:
        """End a write that raised before all of ``data`` was in ``stream``.

        pyarrow binds no abort: a stream PUTs whatever it holds when it is closed or
        garbage collected. So finish the write if the stream still takes bytes (an
        interrupt between two calls); otherwise close it and delete what it published
        unless that is the whole blob (a concurrent put of the same key). The caller's
        exception propagates either way.
        """
        try:
            if stream.tell() < len(data):
                stream.write(memoryview(data)[stream.tell():])
            whole = stream.tell() == len(data)
        except BaseException:  # noqa: BLE001 - the caller re-raises the original failure
            whole = False
        try:
            stream.close()  # publishes the whole blob, or a prefix that is removed below
        except OSError:
            return  # a failed close published nothing
        except BaseException:  # noqa: BLE001 - an interrupt may land after the PUT went out
            pass
        if whole:
            return
        try:
            found = self._size_or_none(path, key)
            if found is not None and found != len(data):
                self._fs.delete_file(path)
        except (OSError, StoreError):
            log.warning("could not remove an incomplete write of %s in %s; the next put of it "
                        "replaces it and reads detect it by size and digest", key, self.url)

    def _read_at(self, f: Any, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StoreError(f"bad range ({offset}, {length}) of {key}")
        n = max(0, min(length, f.size() - offset))
        return f.read_at(n, offset) if n else b""

    # -- primitives ----------------------------------------------------------------------

    def put(self, key: str, parts: Sequence[Buffer]) -> bool:
        """One HEAD (to answer "was it new?") and one PUT.

        A present key is re-PUT with the same bytes: S3 has no touch, and pyarrow's
        ``copy_file`` of a key onto itself is a no-op, so rewriting is what refreshes its
        Last-Modified for gc's grace rule. Content addressing makes the bytes identical;
        a present blob of the wrong size (damage) is replaced and reported as new.
        """
        path = self._path(key)
        data = _join(key, parts)
        found = self._size_or_none(path, key)
        self._publish(path, key, data)
        return found != len(data)

    def exists(self, key: str) -> bool:
        return self._size_or_none(self._path(key), key) is not None

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self.read_ranges(key, [(offset, length)])[0]

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """One HEAD, then one ranged GET per range."""
        path = self._path(key)
        try:
            with self._fs.open_input_file(path) as f:
                return [self._read_at(f, key, offset, length) for offset, length in ranges]
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(key) from exc
        except OSError as exc:
            raise self._error("read", key, exc) from exc

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            info = self._fs.get_file_info(path)
        except OSError as exc:
            raise self._error("stat", key, exc) from exc
        if info.type == pafs.FileType.NotFound:
            raise ObjectNotFoundError(key)
        if info.type != pafs.FileType.File:
            raise StoreError(f"{key} in {self.url} is not an object (a directory marker?)")
        return ObjectInfo(key, info.size, _utc(info.mtime))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every blob under ``prefix``, one shard (``packs/blake3/ab/``) listing at a time.

        pyarrow returns a listing as one list, so listing shard by shard is what keeps
        memory bounded: a few shards' entries at once, whatever the store's size.
        """
        shards = self._shards_under(prefix)
        if not shards:
            return
        pool = ThreadPoolExecutor(max_workers=_LIST_AHEAD, thread_name_prefix="cas-s3-list")
        pending: deque[Future[list[ObjectInfo]]] = deque()
        todo = iter(shards)
        try:
            pending.extend(pool.submit(self._list_shard, s, prefix) for s in islice(todo, _LIST_AHEAD))
            while pending:
                infos = pending.popleft().result()
                pending.extend(pool.submit(self._list_shard, s, prefix) for s in islice(todo, 1))
                yield from infos
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=False)

    @staticmethod
    def _shards_under(prefix: str) -> list[str]:
        if _SHARD_ROOT.startswith(prefix):
            return list(_SHARDS)
        if not prefix.startswith(_SHARD_ROOT):
            return []
        head = prefix[len(_SHARD_ROOT):len(_SHARD_ROOT) + 2]
        return [s for s in _SHARDS if s.startswith(head)]

    def _list_shard(self, shard: str, prefix: str) -> list[ObjectInfo]:
        base = f"{self._root}/{_SHARD_ROOT}{shard}"
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        except OSError as exc:
            raise self._error("list", f"{_SHARD_ROOT}{shard}/", exc) from exc
        out = []
        cut = len(self._root) + 1
        for info in infos:
            key = info.path[cut:]
            if info.type == pafs.FileType.File and key.startswith(prefix) and is_valid_key(key):
                out.append(ObjectInfo(key, info.size, _utc(info.mtime)))
        out.sort(key=lambda i: i.key)
        return out

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            self._fs.delete_file(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error("delete", key, exc) from exc

    def touch(self, key: str) -> None:
        """Refresh Last-Modified by rewriting the blob (HEAD, GET, PUT; packs are ≤ ~9 MiB)."""
        path = self._path(key)
        data = self.read_ranges(key, [(0, 1 << 62)])[0]
        self._publish(path, key, data)
