"""Digest → key mapping: ``packs/blake3/ab/cdef…``. Keys are built from validated digests only."""

from __future__ import annotations

import re

from ..digest import ALGORITHM, Digest
from ..errors import InvalidDigestError

PACKS = "packs"
_PACK_KEY = re.compile(rf"{PACKS}/{ALGORITHM}/([0-9a-f]{{2}})/([0-9a-f]{{62}})")


def pack_key(digest: Digest) -> str:
    """The key of the pack whose bytes hash to ``digest``."""
    if not isinstance(digest, Digest):
        raise InvalidDigestError(f"keys are built from Digest values only, got {type(digest).__name__}")
    h = digest.hex
    return f"{PACKS}/{ALGORITHM}/{h[:2]}/{h[2:]}"


def parse_pack_key(key: str) -> Digest | None:
    """The digest a pack key names, or None for anything that is not a pack key."""
    m = _PACK_KEY.fullmatch(key)
    return Digest.from_hex(m.group(1) + m.group(2)) if m else None


def is_valid_key(key: str) -> bool:
    return _PACK_KEY.fullmatch(key) is not None
