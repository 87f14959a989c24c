"""Where an ``s3://bucket/prefix`` store lives and how to reach it (pure: no I/O, no pyarrow).

Settings come from explicit options first, then the usual AWS environment variables:

=====================  ==========================================================
option                 environment
=====================  ==========================================================
``endpoint_override``  ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``
``scheme``             the scheme of the endpoint URL (default ``https``)
``region``             ``AWS_REGION``, then ``AWS_DEFAULT_REGION``
``access_key``         ``AWS_ACCESS_KEY_ID``
``secret_key``         ``AWS_SECRET_ACCESS_KEY``
``session_token``      ``AWS_SESSION_TOKEN``
=====================  ==========================================================

With no keys in options or environment the AWS SDK's own chain applies (profiles in
``~/.aws``, then the instance metadata service unless ``AWS_EC2_METADATA_DISABLED=true``).
Secrets never appear in ``repr``, in :attr:`S3Config.url` or in error messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from ..errors import StoreError

# Bucket naming rules of S3 (lower case, 3-63 chars); stricter than some servers, which
# is harmless: a store only needs names that work everywhere.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._=+-]+")
_OPTIONS = frozenset({"endpoint_override", "scheme", "region", "access_key", "secret_key",
                      "session_token", "allow_bucket_creation", "connect_timeout", "max_attempts"})


@dataclass(frozen=True, slots=True)
class S3Config:
    """Resolved settings of one S3 store; ``repr`` and ``url`` carry no secret."""

    bucket: str
    prefix: str
    endpoint_override: str | None = None
    scheme: str = "https"
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    allow_bucket_creation: bool = False
    connect_timeout: float | None = None
    max_attempts: int = 3

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def root(self) -> str:
        """The pyarrow path of the store: ``bucket`` or ``bucket/prefix``."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    @property
    def endpoint(self) -> str:
        """Where requests go, for messages: the endpoint URL or "AWS S3"."""
        return f"{self.scheme}://{self.endpoint_override}" if self.endpoint_override else "AWS S3"

    def scrub(self, text: str) -> str:
        """``text`` with every credential value replaced by ``***``."""
        for secret in (self.secret_key, self.session_token, self.access_key):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def filesystem_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pyarrow.fs.S3FileSystem`` (secrets included: never log)."""
        kwargs: dict[str, Any] = {
            "scheme": self.scheme,
            "allow_bucket_creation": self.allow_bucket_creation,
            # One PUT per object: without it a write opens a multipart upload first,
            # three requests where one will do.
            "allow_delayed_open": True,
        }
        for name in ("endpoint_override", "region", "access_key", "secret_key", "session_token",
                     "connect_timeout"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs


def _parse_endpoint(text: str, source: str) -> tuple[str | None, str]:
    """``http://host:port`` or ``host:port`` → (scheme or None, ``host:port``)."""
    if "://" not in text:
        return None, text.rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StoreError(f"{source}={text!r} is not an endpoint URL like http://127.0.0.1:9000")
    if parts.path.strip("/") or parts.query or "@" in parts.netloc:
        raise StoreError(f"{source}={text!r}: give only scheme, host and port (no path, query "
                         "or credentials); the bucket comes from the store URL")
    return parts.scheme, parts.netloc


def _split_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise StoreError(f"not an S3 URL: {url!r}; use s3://bucket/prefix")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise StoreError("an S3 store URL is s3://bucket/prefix only; put credentials and the "
                         "endpoint in AWS_* environment variables or backend options, not the URL")
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise StoreError(f"{bucket!r} is not a valid bucket name (3-63 chars of a-z, 0-9, '.', '-')")
    if prefix and not all(_PREFIX_PART.fullmatch(p) and p not in (".", "..") for p in prefix.split("/")):
        raise StoreError(f"prefix {prefix!r} of {url!r} must be '/'-separated names of "
                         "[A-Za-z0-9._=+-] (no empty, '.' or '..' parts)")
    return bucket, prefix


def resolve(url: str, options: Mapping[str, Any], environ: Mapping[str, str]) -> S3Config:
    """Settings for ``url`` from explicit ``options`` over ``environ`` (see the module doc).

    Raises:
        StoreError: a malformed URL, an unknown option, or a key without its secret.
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise StoreError(f"unknown S3 option(s) {sorted(unknown)}; known: {sorted(_OPTIONS)}")
    bucket, prefix = _split_url(url)

    def pick(option: str, *env_names: str) -> Any:
        if options.get(option) is not None:
            return options[option]
        return next((environ[n] for n in env_names if environ.get(n)), None)

    endpoint_scheme, endpoint = None, None
    raw_endpoint = pick("endpoint_override", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    if raw_endpoint:
        endpoint_scheme, endpoint = _parse_endpoint(str(raw_endpoint), "endpoint")
    scheme = options.get("scheme") or endpoint_scheme or "https"
    if scheme not in ("http", "https"):
        raise StoreError(f"scheme must be http or https, got {scheme!r}")

    if options.get("access_key") is not None or options.get("secret_key") is not None:
        access, secret, token = options.get("access_key"), options.get("secret_key"), options.get("session_token")
        source = "the access_key and secret_key options"
    else:
        access, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        token = environ.get("AWS_SESSION_TOKEN")
        source = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if bool(access) != bool(secret):
        raise StoreError(f"{source} go together: set both, or neither to use the AWS profile chain")

    max_attempts = int(options.get("max_attempts", 3))
    if max_attempts < 1:
        raise StoreError("max_attempts must be at least 1")
    timeout = options.get("connect_timeout")
    return S3Config(
        bucket=bucket,
        prefix=prefix,
        endpoint_override=endpoint,
        scheme=scheme,
        region=pick("region", "AWS_REGION", "AWS_DEFAULT_REGION"),
        access_key=access or None,
        secret_key=secret or None,
        session_token=(token or None) if access else None,
        allow_bucket_creation=bool(options.get("allow_bucket_creation", False)),
        connect_timeout=float(timeout) if timeout is not None else None,
        max_attempts=max_attempts,
    )
