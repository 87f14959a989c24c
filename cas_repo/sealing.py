"""Keyed integrity: event records sealed with a BLAKE3 keyed MAC, checked before a load.

Unkeyed, a version is as trustworthy as the catalog row naming its manifest digest:
every byte below that digest is verified, but whoever can write the catalog (or the
packs a catalog rebuild replays) can point a version at other content. With a key,
each event record — model_id, version, manifest digest and full metadata — carries a
MAC only a key holder can compute, and a load accepts a version only if its record's
seal verifies and says exactly what the catalog row says. The chunks are bound to the
record through the manifest's digests, so nothing below needs a MAC of its own.

The key comes from ``ModelStore(key=...)`` or the ``CAS_REPO_KEY`` environment
variable; it is never stored. See docs/security.md for what this does not protect.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass

from .canonical import canonical_json
from .digest import derive_key, hash_bytes
from .errors import IntegrityError, StoreError

KEY_ENV = "CAS_REPO_KEY"
# derive_key's context string separates this use of the secret from any other.
_CONTEXT = "cas-repo 2026-01 event record seal v1"
MIN_SECRET = 16


@dataclass(frozen=True, slots=True, repr=False)
class StoreKey:
    """The MAC key of a store (repr hides it)."""

    mac_key: bytes

    @classmethod
    def from_secret(cls, secret: str | bytes) -> StoreKey:
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(raw) < MIN_SECRET:
            raise StoreError(f"a store key needs at least {MIN_SECRET} bytes of secret "
                             "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return cls(derive_key(_CONTEXT, raw))

    @classmethod
    def configured(cls, key: str | bytes | None) -> StoreKey | None:
        """The key passed in, else the one in ``CAS_REPO_KEY``, else None (unkeyed)."""
        secret = key if key is not None else os.environ.get(KEY_ENV)
        return cls.from_secret(secret) if secret else None

    def __repr__(self) -> str:
        return "StoreKey(…)"

    def _mac(self, body: bytes) -> str:
        return hash_bytes(body, key=self.mac_key).hex

    def seal(self, record: bytes) -> bytes:
        """The record with a ``mac`` field over its canonical bytes."""
        obj = json.loads(record)
        obj["mac"] = self._mac(record)
        return canonical_json(obj)

    def check(self, data: bytes | memoryview) -> None:
        """Verify a sealed record's MAC.

        Raises:
            IntegrityError: no seal, or one made without this key (expected/actual are MACs).
        """
        try:
            obj = json.loads(bytes(data))
            stored = obj.pop("mac", None)
        except (ValueError, AttributeError) as exc:
            raise IntegrityError(f"a sealed record is not a JSON object ({exc})") from exc
        expected = self._mac(canonical_json(obj))
        if not isinstance(stored, str):
            raise IntegrityError("the version's record carries no seal, but this store is keyed: it was "
                                 "saved without the key, or the seal was stripped. Do not load it "
                                 "unless you can vouch for it", expected=expected, actual="missing")
        if not hmac.compare_digest(stored, expected):
            raise IntegrityError("the version's record is sealed with another key, or was forged",
                                 expected=expected, actual=stored)
