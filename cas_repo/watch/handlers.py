"""What a watcher does with each change: run a command, or POST a signed webhook.

A handler takes one :class:`~cas_repo.follow.Change` and returns when it is handled; it
raises :class:`~cas_repo.errors.DeliveryError` when this attempt failed (``permanent``
when retrying cannot help). Retrying is the runner's business, not the handler's.

The webhook is signed as GitHub signs its own: ``X-Cas-Repo-Signature-256: sha256=<hex>``,
the HMAC-SHA256 of the exact body bytes under a shared secret. The body carries the time
it was sent (``sent_at``), so a receiver can refuse old replays with the signature
covering the time too. Only the standard library's ``urllib`` is used.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from ..errors import DeliveryError
from ..follow import Change

SIGNATURE_HEADER = "X-Cas-Repo-Signature-256"
#: Retry-After values above this many seconds are waited for this long only.
MAX_RETRY_AFTER = 600.0


def event_bytes(change: Change, **extra: Any) -> bytes:
    """The change as compact JSON (sorted keys), with ``extra`` fields added."""
    return json.dumps({**change.to_json(), **extra}, sort_keys=True, separators=(",", ":")).encode()


def event_env(change: Change) -> dict[str, str]:
    """The environment variables a command handler gets (empty for what a change lacks)."""
    def text(v: object) -> str:
        return "" if v is None else str(v)

    return {"CAS_REPO_EVENT": event_bytes(change).decode(), "CAS_REPO_EVENT_ID": change.id,
            "CAS_REPO_POSITION": str(change.position), "CAS_REPO_KIND": change.kind,
            "CAS_REPO_MODEL": text(change.model_id), "CAS_REPO_VERSION": text(change.version),
            "CAS_REPO_ALIAS": text(change.alias)}


class ExecHandler:
    """Runs ``sh -c COMMAND`` per change: the change's JSON on stdin, its fields in the environment.

    Its stdout and stderr are the watcher's. A non-zero exit is a failed attempt.
    """

    def __init__(self, command: str) -> None:
        self.command = command

    def __call__(self, change: Change) -> None:
        try:
            done = subprocess.run(["sh", "-c", self.command], input=event_bytes(change),
                                  env={**os.environ, **event_env(change)}, check=False)
        except OSError as exc:
            raise DeliveryError(f"could not start `sh -c {self.command}`: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            how = f"signal {-done.returncode}" if done.returncode < 0 else f"status {done.returncode}"
            raise DeliveryError(f"the command exited with {how}")


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """Whether ``header`` is ``body``'s signature under ``secret`` (compared in constant time)."""
    return hmac.compare_digest(sign(secret, body), header)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (a number or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would follow a 301/302/303 to a POST with a bodiless GET: report the redirect instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Webhook:
    """POSTs each change's JSON to ``url``, signed with ``secret`` (None: unsigned, only when asked for)."""

    def __init__(self, url: str, secret: bytes | None, *, timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def request(self, change: Change, now: datetime | None = None) -> urllib.request.Request:
        """The signed request for ``change`` (sent at ``now``, default: now)."""
        sent = (now or datetime.now(UTC)).astimezone(UTC)
        body = event_bytes(change, sent_at=sent.isoformat())
        headers = {"Content-Type": "application/json", "User-Agent": "cas-repo-watch",
                   "X-Cas-Repo-Event": change.kind, "X-Cas-Repo-Delivery": change.id,
                   "X-Cas-Repo-Timestamp": str(int(sent.timestamp()))}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def __call__(self, change: Change) -> None:
        try:
            with self._opener.open(self.request(change), timeout=self.timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            code = exc.code
            with exc:
                wait = retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            if code == 429 or code == 408 or code >= 500:
                raise DeliveryError(f"{self.url} answered HTTP {code}", retry_after=wait) from None
            hint = " (a redirect: give the final URL)" if 300 <= code < 400 else ""
            raise DeliveryError(f"{self.url} refused the event: HTTP {code} {exc.reason}{hint}",
                                permanent=True) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise DeliveryError(f"could not reach {self.url}: {reason or type(exc).__name__}") from exc
