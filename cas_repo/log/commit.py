"""A log commit: the bytes stored at one position of the log (pure, no I/O).

A commit is a canonical JSON **body** and a **digest line**::

    {"author":"ana","format":"cas-repo/commit/2","ops":[...],"position":N,"prev":"<64 hex>",
     "writer":"<host>/<pid>/<token>"}                     (one line)
    blake3 <64 hex: the BLAKE3 of the body line's bytes>

- The digest line makes a commit **self-verifying**: any changed, missing or added byte
  of the body fails it, before a byte of JSON is parsed.
- ``prev`` **chains** the commits: it is the chain digest after the commit before it
  (``""`` at position 1), and a commit's own chain digest is the digest of its body. So
  a commit's digest covers every commit before it: changing, removing, reordering or
  swapping in any commit (from another store, say) breaks the first link after it.
- ``position`` binds a commit to its key: a commit copied to another position (a replay
  of an old event, hiding the one it overwrote) is refused.
- ``author`` names the person: ``CAS_REPO_USER``, else the OS user ("" when neither is
  known); with the host in ``writer``, it says who did what.
- ``writer`` makes every commit's bytes unique, so two writers never publish identical
  objects (an object store's ETag is the MD5 of the bytes; a compare-and-swap over equal
  bytes could not tell two writers apart).
- In a keyed store the body is sealed (a ``mac`` field over the rest, see
  :mod:`cas_repo.sealing`) before the digest line is added: the MAC says who may write
  a commit, the digest and the chain say that nothing changed since.

Format-1 commits (before the chain) are a bare JSON object with no ``prev`` and no
digest line. They are still read: their chain digest is the BLAKE3 of the chain before
them and of their bytes, so the first format-2 commit's ``prev`` anchors every older
commit too.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from ..canonical import canonical_json
from ..digest import hash_bytes
from ..errors import IntegrityError
from .ops import Op, event_id_of, op_from_json, op_to_json

COMMIT_FORMAT = "cas-repo/commit/2"
LEGACY_FORMAT = "cas-repo/commit/1"
# The chain digest before position 1.
GENESIS = ""
_DIGEST_LINE = b"\nblake3 "
_TRAILER = len(_DIGEST_LINE) + 64 + 1
_LEGACY_LINK = b"cas-repo/chain/legacy\n"


AUTHOR_ENV = "CAS_REPO_USER"
_AUTHOR_MAX = 128


def author_name() -> str:
    """Who commits from this process: ``CAS_REPO_USER``, else the OS user, else ""."""
    name = os.environ.get(AUTHOR_ENV, "")
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError, ImportError):  # no user name in this environment (a bare container)
            name = ""
    return "".join(c for c in name if c.isprintable())[:_AUTHOR_MAX]


def new_writer_id() -> str:
    """``host/pid/token``: who wrote a commit, and unique to this process."""
    host = socket.gethostname()[:64] or "host"
    return f"{host}/{os.getpid()}/{secrets.token_hex(6)}"


def with_event_id(op_json: dict[str, Any]) -> dict[str, Any]:
    """``op_json`` with its event id (JSON key ``record``) filled in: save, event, mark and metrics operations."""
    if op_json["op"] in ("save", "event", "mark", "metrics"):
        op_json = dict(op_json, record=event_id_of(op_json))
    return op_json


def body_json(writer: str, ops: tuple[Op, ...], position: int, prev: str, author: str) -> bytes:
    """The canonical body of a format-2 commit (before any seal and the digest line)."""
    return canonical_json({"format": COMMIT_FORMAT, "position": position, "prev": prev, "writer": writer,
                           "author": author, "ops": [with_event_id(op_to_json(o)) for o in ops]})


def with_digest_line(body: bytes, digest: str | None = None) -> bytes:
    """``body`` followed by its digest line (``digest``: its BLAKE3, if already computed)."""
    return body + _DIGEST_LINE + (digest or hash_bytes(body).hex).encode() + b"\n"


def split_digest_line(data: bytes) -> tuple[bytes, str] | None:
    """(body, digest) of stored commit bytes after checking the digest; None for a format-1 commit.

    Raises:
        IntegrityError: the digest line is there but does not match the body (or is damaged).
    """
    if not data.endswith(b"\n"):
        if data.endswith(b"}"):
            return None  # a bare JSON object: format 1
        raise IntegrityError("it ends neither in a digest line nor in a JSON object: it was cut short "
                             "or changed")
    body, line = data[:-_TRAILER], data[-_TRAILER:]
    if not line.startswith(_DIGEST_LINE):
        raise IntegrityError("its digest line is damaged or cut short")
    stored = line[len(_DIGEST_LINE):-1].decode("ascii", "replace")
    actual = hash_bytes(body).hex
    if stored != actual:
        raise IntegrityError("its bytes do not match its digest: the commit was changed or damaged",
                             expected=stored, actual=actual)
    return body, actual


@dataclass(frozen=True, slots=True)
class Commit:
    """The operations committed at one log position, who committed them, and its link.

    ``prev``: the chain digest before it (None in a format-1 commit, which has no link).
    ``digest``: the BLAKE3 of its body (format 2) or of all its bytes (format 1).
    ``author``: who committed it (None: not recorded, as in a format-1 commit).
    """

    writer: str
    ops: tuple[Op, ...]
    position: int
    prev: str | None = None
    digest: str = ""
    author: str | None = None

    @property
    def chained(self) -> bool:
        return self.prev is not None

    def chain_after(self, before: str | None) -> str | None:
        """The chain digest after this commit, given the one before it (None: not known)."""
        if self.prev is not None:
            return self.digest
        return None if before is None else hash_bytes(
            _LEGACY_LINK + before.encode() + b"\n" + bytes.fromhex(self.digest)).hex

    @classmethod
    def parse(cls, body: bytes | memoryview, digest: str, *, legacy: bool) -> Commit:
        """Parse a commit's body (its digest already checked, any seal already checked).

        Raises:
            IntegrityError: not a commit this version of cas-repo understands.
        """
        try:
            obj = json.loads(bytes(body))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"a log commit is not valid JSON ({exc})") from exc
        want = LEGACY_FORMAT if legacy else COMMIT_FORMAT
        if not isinstance(obj, dict) or obj.get("format") != want:
            fmt = obj.get("format") if isinstance(obj, dict) else None
            if fmt in (LEGACY_FORMAT, COMMIT_FORMAT):
                raise IntegrityError(f"a {fmt} commit is framed as a "
                                     f"{'format-1' if legacy else 'format-2'} one: it was changed")
            raise IntegrityError(f"unknown log commit format {fmt!r:.60}; upgrade cas-repo")
        ops = obj.get("ops")
        if not isinstance(ops, list) or not isinstance(obj.get("writer"), str):
            raise IntegrityError("a log commit has no list of operations or no writer")
        if not isinstance(obj.get("position"), int):
            raise IntegrityError("a log commit does not say its position")
        prev = obj.get("prev")
        if not legacy and not (isinstance(prev, str) and (prev == GENESIS or len(prev) == 64)):
            raise IntegrityError("a log commit has no link to the commit before it")
        author = obj.get("author")
        if author is not None and not isinstance(author, str):
            raise IntegrityError("a log commit's author is not a string")
        parsed = tuple(op_from_json(o) for o in ops)
        if legacy:
            # A format-1 commit has no digest of its own; each save, event and mark in it
            # carries the digest of its canonical JSON (its event id), checked here.
            for o in ops:
                if isinstance(o, dict) and "record" in o and o["record"] != event_id_of(o):
                    raise IntegrityError("an operation in it does not match its recorded digest: the commit "
                                         "was changed", expected=o["record"], actual=event_id_of(o))
        return cls(obj["writer"], parsed, obj["position"], None if legacy else prev, digest, author)
