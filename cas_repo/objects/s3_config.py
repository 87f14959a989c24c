"""Where an ``s3://bucket/prefix`` store lives and how to reach it (pure: no I/O, no client library).

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

With no keys in options or environment the client's own chain applies: web identity
(``AWS_WEB_IDENTITY_TOKEN_FILE``), container credentials, then the instance metadata
service. Profiles in ``~/.aws`` are not read.
Secrets never appear in ``repr``, in :attr:`S3Config.url` or in error messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from ..errors import StoreError

# Bucket naming rules of S3 (lower case, 3-63 chars); stricter than some servers, which
# is harmless: a store only needs names that work everywhere.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._=+-]+")
_OTHER_CREDENTIAL_SOURCES = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                             "AWS_CONTAINER_CREDENTIALS_FULL_URI")
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
    def endpoint(self) -> str:
        """Where requests go, for messages: the endpoint URL or "AWS S3"."""
        return f"{self.scheme}://{self.endpoint_override}" if self.endpoint_override else "AWS S3"

    def scrub(self, text: str) -> str:
        """``text`` with every credential value replaced by ``***``."""
        for secret in (self.secret_key, self.session_token, self.access_key):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def credentials(self) -> dict[str, Any] | None:
        """The explicit keys as obstore's credential record, or None (secrets: never log)."""
        if self.access_key is None:
            return None
        return {"access_key_id": self.access_key, "secret_access_key": self.secret_key,
                "token": self.session_token, "expires_at": None}

    def store_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for obstore's ``S3Store``, credentials excepted (see :meth:`credentials`)."""
        config: dict[str, Any] = {
            # If-None-Match / If-Match headers: what create() stands on. Set explicitly so
            # that an AWS_CONDITIONAL_PUT in the environment cannot turn it off.
            "conditional_put": "etag",
            # Servers on an endpoint of their own (MinIO, SeaweedFS, moto) want path-style
            # URLs; AWS wants virtual-hosted ones, except for bucket names with dots (TLS).
            "virtual_hosted_style_request": self.endpoint_override is None and "." not in self.bucket,
        }
        if self.endpoint_override is not None:
            config["endpoint"] = f"{self.scheme}://{self.endpoint_override}"
        if self.region is not None:
            config["region"] = self.region
        client: dict[str, Any] = {"allow_http": self.scheme == "http"}
        if self.connect_timeout is not None:
            client["connect_timeout"] = timedelta(seconds=self.connect_timeout)
        return {
            "bucket": self.bucket,
            "prefix": self.prefix or None,
            "config": config,
            "client_options": client,
            "retry_config": {"max_retries": self.max_attempts - 1},
        }


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
        raise StoreError(f"{source} go together: set both, or neither to use the client's credential chain")
    # The client would still ask the instance metadata service, and off the cloud wait for
    # it to time out: honour the variable the AWS SDKs honour.
    if not access and environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true" \
            and not any(environ.get(n) for n in _OTHER_CREDENTIAL_SOURCES):
        raise StoreError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the "
                         "access_key and secret_key options); AWS_EC2_METADATA_DISABLED=true rules out "
                         "the instance metadata service")

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
