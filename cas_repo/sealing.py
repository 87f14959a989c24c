"""Keyed integrity: commits and checkpoints sealed with a BLAKE3 keyed MAC, checked before use.

Unkeyed, a version is as trustworthy as the log commit naming its manifest digest: every
byte below that digest is verified, but whoever can write the log can change what a
commit says. With a key, each commit — its position, writer and operations, so every
version's model_id, manifest digest and full metadata — carries a MAC only a key holder
can compute, and every reader checks it before folding the commit in. The chunks are
bound to the commit through the manifest's digests, so nothing below needs a MAC of its
own. Checkpoints are sealed the same way (and a format-1 store's event records were).

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
# derive_key's context string separates this use of the secret from any other (it names
# the first format's event records; changing it would change every store's key).
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

    def seal(self, body: bytes) -> bytes:
        """``body`` (a canonical JSON object) with a ``mac`` field over its bytes."""
        obj = json.loads(body)
        obj["mac"] = self._mac(body)
        return canonical_json(obj)

    def check(self, data: bytes | memoryview) -> None:
        """Verify the MAC of a sealed object (a commit, a checkpoint).

        Raises:
            IntegrityError: no seal, or one made without this key (expected/actual are MACs).
        """
        try:
            obj = json.loads(bytes(data))
            stored = obj.pop("mac", None)
        except (ValueError, AttributeError) as exc:
            raise IntegrityError(f"a sealed object is not a JSON object ({exc})") from exc
        expected = self._mac(canonical_json(obj))
        if not isinstance(stored, str):
            raise IntegrityError("it carries no seal, but this store is keyed: it was written without the "
                                 "key, or the seal was stripped. Do not use it unless you can vouch for it",
                                 expected=expected, actual="missing")
        if not hmac.compare_digest(stored, expected):
            raise IntegrityError("it is sealed with another key, or was forged",
                                 expected=expected, actual=stored)
