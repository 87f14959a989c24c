"""Key layout of a store (one module maps names to keys; keys are built from validated values only).

    packs/blake3/ab/cdef…            a pack, named by the BLAKE3 of its bytes
    log/00000000000000000042         commit number 42 of the event log (create-only)
    checkpoints/00000000000000004000 the derived state as of commit 4000 (create-only)
    damaged/20261207T213000Z/<key>   a damaged object set aside when a copy replaced it

Log and checkpoint positions are zero-padded to 20 digits, so that the lexicographic
order every object store lists in is the numeric order of the log.
"""

from __future__ import annotations

import re

from ..digest import ALGORITHM, Digest
from ..errors import InvalidDigestError, StoreError

PACKS = "packs"
LOG = "log"
CHECKPOINTS = "checkpoints"
DAMAGED = "damaged"
_WIDTH = 20
MAX_POSITION = 10**_WIDTH - 1
_PACK_KEY = re.compile(rf"{PACKS}/{ALGORITHM}/([0-9a-f]{{2}})/([0-9a-f]{{62}})")
_LOG_KEY = re.compile(rf"{LOG}/([0-9]{{{_WIDTH}}})")
_CHECKPOINT_KEY = re.compile(rf"{CHECKPOINTS}/([0-9]{{{_WIDTH}}})")
_DAMAGED_KEY = re.compile(rf"{DAMAGED}/[0-9]{{8}}T[0-9]{{6}}Z/(.+)")


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


def _position(position: int) -> str:
    if not isinstance(position, int) or isinstance(position, bool) or not 1 <= position <= MAX_POSITION:
        raise StoreError(f"a log position is an int from 1 to {MAX_POSITION}, got {position!r}")
    return f"{position:0{_WIDTH}d}"


def log_key(position: int) -> str:
    """The key of commit ``position`` (1, 2, 3…) of the event log."""
    return f"{LOG}/{_position(position)}"


def parse_log_key(key: str) -> int | None:
    m = _LOG_KEY.fullmatch(key)
    return int(m.group(1)) if m else None


def checkpoint_key(position: int) -> str:
    """The key of the checkpoint that holds the state as of commit ``position``."""
    return f"{CHECKPOINTS}/{_position(position)}"


def parse_checkpoint_key(key: str) -> int | None:
    m = _CHECKPOINT_KEY.fullmatch(key)
    return int(m.group(1)) if m else None


def damaged_key(key: str, stamp: str) -> str:
    """Where the damaged object at ``key`` is set aside (``stamp``: UTC, ``%Y%m%dT%H%M%SZ``)."""
    out = f"{DAMAGED}/{stamp}/{key}"
    if not is_valid_key(key) or key.startswith(DAMAGED + "/") or not _DAMAGED_KEY.fullmatch(out):
        raise StoreError(f"cannot set aside {key[:100]!r} under {stamp!r}")
    return out


def is_valid_key(key: str) -> bool:
    m = _DAMAGED_KEY.fullmatch(key)
    if m is not None:
        key = m.group(1)
    return any(p.fullmatch(key) is not None for p in (_PACK_KEY, _LOG_KEY, _CHECKPOINT_KEY))
