"""S3-compatible object storage (AWS S3, MinIO, SeaweedFS, …) as a backend, over obstore.

obstore (Rust's ``object_store``) sends conditional PUTs — ``If-None-Match: *`` — which
is what :meth:`S3Backend.create`, the log's commit, stands on; pyarrow.fs cannot. Every
blob is one PUT to its final key, which the server applies whole or not at all (no
rename, no multipart upload), so a reader never sees part of a blob. See ``docs/s3.md``.

obstore runs requests on a pool of threads that does not survive ``fork``: a child
forked after its parent made a request hangs on its own first request, whatever store
it opens. Start worker processes with ``multiprocessing.get_context("spawn")`` and open
a backend in each (an ``S3Backend`` is not picklable; pass its URL and options).
"""

from __future__ import annotations

import bisect
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import obstore
from obstore.exceptions import AlreadyExistsError, PreconditionError
from obstore.exceptions import BaseError as _ObstoreError
from obstore.store import S3Store

from ..errors import ObjectNotFoundError, OutcomeUnknownError, StoreError
from .backend import Buffer, ObjectBackend, ObjectInfo
from .keys import is_valid_key
from .s3_config import S3Config, resolve
from .s3_errors import bucket_missing, credentials_refused, range_refused, store_error

# S3 takes at most 5 GiB in one PutObject; above that only a multipart upload would do,
# and a multipart upload is neither create-only nor abortable by a dying client.
SINGLE_PUT_LIMIT = 5 << 30
# A pack is one PUT, retried whole on a server error: 8 MiB keeps a typical save one
# request while a retry stays cheap and a PUT ends well inside the client's 30 s request
# timeout even on a slow link.
S3_PACK_TARGET = 8 << 20
# Ranges closer than this are read with one GET: on S3 a round trip costs more than 1 MiB.
_COALESCE = 1 << 20
_ERRORS = (_ObstoreError, OSError, ValueError)  # what obstore raises besides panics
_TAKEN = (AlreadyExistsError, PreconditionError)


def _spans(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(start, end)`` ranges merged where less than :data:`_COALESCE` apart, in order."""
    spans: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if spans and start - spans[-1][1] <= _COALESCE:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def _info(key: str, meta: Any) -> ObjectInfo:
    mtime: datetime | None = meta["last_modified"]
    if mtime is None:
        raise StoreError("the S3 server returned an object without Last-Modified")
    return ObjectInfo(key, meta["size"], mtime if mtime.tzinfo else mtime.replace(tzinfo=UTC))


def _join(key: str, parts: Sequence[Buffer]) -> memoryview | bytes:
    """One contiguous buffer of ``parts``, built before any request is made."""
    try:
        views = [memoryview(p).cast("B") for p in parts]
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot write {key}: a part is not a contiguous bytes-like object ({exc})") from exc
    data = views[0] if len(views) == 1 else b"".join(views)
    if len(data) > SINGLE_PUT_LIMIT:
        raise StoreError(f"cannot write {key}: {len(data)} bytes is more than one S3 PUT takes (5 GiB)")
    return data


class S3Backend(ObjectBackend):
    """Blobs under ``s3://bucket/prefix/…`` (``packs/``, ``log/``, ``checkpoints/``); see :meth:`from_url`.

    Raises:
        StoreError: the bucket is missing (and may not be created) or cannot be reached.
    """

    preferred_pack_size = S3_PACK_TARGET
    read_concurrency = 8

    def __init__(self, config: S3Config) -> None:
        self.config, self.url = config, config.url
        # Explicit keys go in through a provider, not as values: obstore fills every value
        # it is not given from the AWS_* environment, and would pair the keys with, say, a
        # stale AWS_SESSION_TOKEN that the server then refuses.
        creds = config.credentials()
        kwargs = dict(config.store_kwargs(), credential_provider=(lambda: creds) if creds else None)
        try:
            self._store = S3Store(**kwargs)
            # create() retries by itself, to know when an earlier attempt may have landed.
            self._once = S3Store(**dict(kwargs, retry_config={"max_retries": 0}))
        except (*_ERRORS, TypeError) as exc:
            raise StoreError(f"cannot configure S3 access to {self.url}: {config.scrub(str(exc))}") from exc
        self._kwargs = kwargs
        self._check_bucket()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Backend:
        """A backend for ``s3://bucket/prefix``; ``options`` override the AWS_* environment."""
        return cls(resolve(url, options, os.environ))

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r}, endpoint={self.config.endpoint!r})"

    def __reduce__(self) -> Any:
        raise TypeError("an S3Backend holds credentials and is not picklable; pass its URL instead")

    # -- helpers -------------------------------------------------------------------------

    def _check_bucket(self) -> None:
        # One delimited LIST: a few common prefixes (log/, packs/), whatever the store's size.
        try:
            obstore.list_with_delimiter(self._store, None)
            return
        except _ERRORS as exc:
            if not bucket_missing(exc):
                raise self._error("open bucket", self.config.bucket, exc) from exc
        if not self.config.allow_bucket_creation:
            raise StoreError.advised(f"bucket {self.config.bucket!r} does not exist at {self.config.endpoint}",
                                     "create it, or pass allow_bucket_creation=True",
                                     "create it, or pass --create-bucket")
        self._create_bucket()

    def _create_bucket(self) -> None:
        """PUT the bucket's own URL (S3's CreateBucket). obstore has no bucket API, but it
        signs the request (a presigned URL, whatever the credential source); urllib sends it."""
        region = self.config.region
        body = b"" if region in (None, "us-east-1") else (
            '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>").encode()
        try:
            root = S3Store(**dict(self._kwargs, prefix=None))
            url = obstore.sign(root, "PUT", "", timedelta(minutes=5))
            with urllib.request.urlopen(urllib.request.Request(url, data=body, method="PUT"), timeout=60) as r:
                r.read()
        except urllib.error.HTTPError as exc:
            answer = exc.read().decode(errors="replace")
            if "BucketAlreadyOwnedByYou" in answer:
                return  # another process created it first
            raise self._error("create bucket", self.config.bucket,
                              StoreError(f"HTTP {exc.code}: {answer[:300]}")) from exc
        except (*_ERRORS, urllib.error.URLError) as exc:
            raise self._error("create bucket", self.config.bucket, exc) from exc

    def _path(self, key: str) -> str:
        if not is_valid_key(key):
            raise StoreError(f"refusing malformed object key {key[:100]!r}")
        return key

    def _error(self, action: str, what: str, exc: BaseException) -> StoreError:
        return store_error(self.config, action, what, exc)

    def _fail(self, action: str, key: str, exc: BaseException) -> Exception:
        """An obstore error as ours: a missing object (not a missing bucket) is not found."""
        if isinstance(exc, FileNotFoundError) and not bucket_missing(exc):
            return ObjectNotFoundError(key)
        return self._error(action, key, exc)

    def _overwrite(self, key: str, data: memoryview | bytes) -> None:
        try:
            obstore.put(self._store, key, data, use_multipart=False)
        except _ERRORS as exc:
            raise self._error("write", key, exc) from exc

    # -- primitives ----------------------------------------------------------------------

    def put(self, key: str, parts: Sequence[Buffer]) -> bool:
        """One create-only PUT; True if it made the blob.

        A key that is already there costs one HEAD more: content addressing makes its
        bytes the same, unless it has the wrong size (damage), which is overwritten and
        reported as new. A present key's Last-Modified is left alone (see :meth:`touch`).
        """
        data = _join(self._path(key), parts)
        try:
            obstore.put(self._store, key, data, mode="create", use_multipart=False)
            return True
        except _TAKEN:
            pass  # present, or (AWS's 409) being written by someone else right now
        except _ERRORS as exc:
            raise self._error("write", key, exc) from exc
        try:
            if self.stat(key).size == len(data):
                return False
        except ObjectNotFoundError:
            pass
        self._overwrite(key, data)
        return True

    def create(self, key: str, data: bytes) -> bool:
        """One PUT with ``If-None-Match: *``; False if a blob is already at ``key``.

        obstore retries a PUT that got a server error, and the retry of a PUT that did land
        is refused — a writer would be told it lost a race it won. So this method retries
        by itself and, once an attempt may have landed, compares the blob it finds with
        ``data``: the same bytes mean the write was its own. Writers therefore make each
        payload unique (a writer id, a nonce). A refusal that leaves the key empty (AWS's
        409: another conditional write in flight) is retried.

        Raises:
            OutcomeUnknownError: no attempt got an answer; the blob may or may not be there.
        """
        view = _join(self._path(key), [data])
        maybe_landed = False
        failure: BaseException | None = None
        for attempt in range(self.config.max_attempts):
            if attempt:
                time.sleep(0.1 * 2 ** attempt * random.uniform(0.5, 1.0))
            try:
                obstore.put(self._once, key, view, mode="create", use_multipart=False)
                return True
            except _TAKEN as exc:
                try:
                    found = self.get(key)
                except StoreError as read_failure:  # a 412 and then no answer: try again
                    failure = read_failure
                    continue
                if found is not None:
                    return maybe_landed and found == view
                failure = exc
            except FileNotFoundError as exc:
                raise self._error("create", key, exc) from exc  # no bucket: no use retrying
            except _ObstoreError as exc:
                if credentials_refused(exc):
                    raise self._error("create", key, exc) from exc
                maybe_landed, failure = True, exc  # a server error or a lost answer
            except (OSError, ValueError) as exc:
                raise self._error("create", key, exc) from exc
        # Each attempt that did not return set `failure`, and there is one at least (resolve()).
        assert failure is not None
        raise OutcomeUnknownError(f"{self._error('create', key, failure)}; the outcome is unknown: {key} may or "
                                  "may not have been written") from failure

    def get(self, key: str) -> bytes | None:
        """One GET; None if there is no blob at ``key``."""
        try:
            return bytes(obstore.get(self._store, self._path(key)).bytes())
        except FileNotFoundError as exc:
            if bucket_missing(exc):
                raise self._error("read", key, exc) from exc
            return None
        except _ERRORS as exc:
            raise self._error("read", key, exc) from exc

    def read(self, key: str) -> bytes:
        data = self.get(key)
        if data is None:
            raise ObjectNotFoundError(key)
        return data

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self.read_ranges(key, [(offset, length)])[0]

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Ranged GETs, sent at once; ranges less than 1 MiB apart share one GET."""
        self._path(key)
        if any(o < 0 or n < 0 for o, n in ranges):
            raise StoreError(f"bad range in {list(ranges)[:5]} of {key}")
        spans = _spans([(o, o + n) for o, n in ranges if n])
        if not spans:
            self.stat(key)  # empty ranges of a missing blob are still an error
            return [b""] * len(ranges)
        try:
            # Spans are merged here, not by obstore: its merging slices a short answer (a
            # blob shorter than the index says) past its end and panics.
            got: list[obstore.Bytes] | list[bytes] = obstore.get_ranges(self._store, key, starts=[s for s, _ in spans],
                                     ends=[e for _, e in spans], coalesce=0)
        except _ERRORS as exc:
            if not range_refused(exc):
                raise self._fail("read", key, exc) from exc
            # A span starts at or past the end (a truncated blob): read them one by one.
            got = [self._range_or_empty(key, s, e - s) for s, e in spans]
        starts = [s for s, _ in spans]
        views = [memoryview(g) for g in got]
        out = []
        for o, n in ranges:
            i = bisect.bisect_right(starts, o) - 1
            out.append(bytes(views[i][o - starts[i] : o - starts[i] + n]) if n else b"")
        return out

    def _range_or_empty(self, key: str, offset: int, length: int) -> bytes:
        try:
            return bytes(obstore.get_range(self._store, key, start=offset, length=length))
        except _ERRORS as exc:
            if range_refused(exc):
                return b""
            raise self._fail("read", key, exc) from exc

    def stat(self, key: str) -> ObjectInfo:
        try:
            return _info(key, obstore.head(self._store, self._path(key)))
        except _ERRORS as exc:
            raise self._fail("stat", key, exc) from exc

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """LISTs of up to 1,000 keys each (S3's page), from ``start_after`` on, in key order.

        obstore lists whole path segments, so the listing starts at the prefix's folder and
        stops at the first key past the prefix. A server that lists out of order would
        break the log's reading, so that is an error, not a silent gap.
        """
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        last = start_after or ""
        try:
            for page in obstore.list(self._store, folder or None, offset=start_after, chunk_size=1000):
                for meta in page:
                    key = meta["path"]
                    if key <= last:
                        raise StoreError(f"{self.config.endpoint} listed {key} after {last}: S3 lists "
                                         "in key order, this server does not; it cannot hold a store")
                    last = key
                    if not key.startswith(prefix):
                        if key > prefix:
                            return  # keys are sorted: none further can match
                        continue
                    if is_valid_key(key):
                        yield _info(key, meta)
        except _ERRORS as exc:
            raise self._error("list", prefix or "/", exc) from exc

    def delete(self, key: str) -> None:
        try:
            obstore.delete(self._store, self._path(key))
        except FileNotFoundError as exc:
            if bucket_missing(exc):
                raise self._error("delete", key, exc) from exc
        except _ERRORS as exc:
            raise self._error("delete", key, exc) from exc

    def touch(self, key: str) -> None:
        """Refresh Last-Modified by writing the blob again (one GET, one PUT): S3 has no touch."""
        self._overwrite(key, self.read(key))
