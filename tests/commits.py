"""Reading and writing stored log commits by hand, as an attacker or a damaged disk would."""

from __future__ import annotations

import json
from typing import Any

from cas_repo.canonical import canonical_json
from cas_repo.log.commit import split_digest_line, with_digest_line
from cas_repo.sealing import StoreKey


def body_of(data: bytes) -> dict[str, Any]:
    """The JSON object of stored commit bytes (either format; the digest is checked)."""
    split = split_digest_line(data)
    return json.loads(data if split is None else split[0])


def framed(obj: dict[str, Any], key: str | None = None) -> bytes:
    """``obj`` stored as a format-2 commit with a correct digest line (sealed anew with ``key``)."""
    body = canonical_json(obj)
    if key is not None:
        body = StoreKey.from_secret(key).seal(canonical_json({k: v for k, v in obj.items() if k != "mac"}))
    return with_digest_line(body)


def chain_of(store: Any) -> str:
    """The chain digest after the newest commit of an open store."""
    with store.ledger.current() as st:
        return str(st.chain)


def hand_made(store: Any, position: int, ops: tuple[Any, ...], writer: str = "by hand", *,
              sealed: bool = True) -> bytes:
    """A well-formed commit of ``ops`` at ``position``, linked to the store's newest commit
    (sealed with the store's key unless ``sealed`` is False)."""
    from cas_repo.log.commit import Commit
    from cas_repo.log.log import Log

    log = store.ledger.log if sealed else Log(store.ledger.log.backend)
    return log.encode(Commit(writer, tuple(ops), position, prev=chain_of(store)))
