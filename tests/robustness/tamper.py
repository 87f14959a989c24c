"""The log attacked as an adversary would: every single-bit flip and every truncation of each
commit and checkpoint of a small store, a commit from another store, a removed middle
commit and a removed newest one.

Each trial damages one object, then a new reader (a fresh :class:`Ledger`: what a new
process sees) folds the store, and the outcome is one of:

- ``refused``: an :class:`IntegrityError` naming the damaged commit's position;
- ``replayed``: the same state as the undamaged store (a damaged checkpoint skipped);
- ``crashed``: any other exception;
- ``wrong``: a different state, served without a word.

The last two must never happen. ``python -m tests.robustness.tamper [--s3]`` prints the
counts per case.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cas_repo import ModelStore
from cas_repo.errors import IntegrityError, LogDamagedError
from cas_repo.log import checkpoint
from cas_repo.log.ledger import Ledger
from cas_repo.objects.backend import ObjectBackend
from cas_repo.objects.keys import checkpoint_key, log_key

from .workers import metadata

OUTCOMES = ("refused", "replayed", "crashed", "wrong")


def small_store(url: str | Path, options: dict[str, Any] | None = None) -> None:
    """Three commits: two saves and an alias move (no checkpoint)."""
    with ModelStore(url, catalog=_scratch_index(), backend_options=options) as store:
        store.save_model({"w": 1}, metadata("m", IC=0.0512))
        store.save_model({"w": 2}, metadata("m", IC=0.0734))
        store.set_alias("m", "prod", 1)


def _scratch_index() -> Path:
    return Path(tempfile.mkdtemp(prefix="cas-tamper-")) / "catalog.duckdb"


def fingerprint(backend: ObjectBackend) -> bytes:
    """The state a new process folds from ``backend`` (raises what the fold raises)."""
    ledger = Ledger(backend)
    with ledger.current() as st:
        return checkpoint.encode(st)


@dataclass
class Tally:
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def add(self, case: str, outcome: str, detail: str = "") -> None:
        self.counts.setdefault(case, Counter())[outcome] += 1
        if outcome in ("crashed", "wrong") and len(self.examples) < 20:
            self.examples.append(f"{case}: {outcome} {detail}")

    def bad(self) -> int:
        return sum(c["crashed"] + c["wrong"] for c in self.counts.values())

    def table(self) -> str:
        rows = [f"| case | trials | {' | '.join(OUTCOMES)} |", "|---|---:|" + "---:|" * len(OUTCOMES)]
        for case, c in self.counts.items():
            rows.append(f"| {case} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in OUTCOMES) + " |")
        return "\n".join(rows)


def classify(backend: ObjectBackend, expected: bytes, position: int | None) -> tuple[str, str]:
    """The outcome of folding ``backend``; ``position``: the commit a refusal must name (None: any)."""
    try:
        got = fingerprint(backend)
    except IntegrityError as exc:
        if position is None or (isinstance(exc, LogDamagedError) and exc.position == position):
            return "refused", ""
        return "crashed", f"refused at the wrong place: {exc}"
    except BaseException as exc:  # anything else is a crash, whatever it is
        return "crashed", f"{type(exc).__name__}: {exc}"
    return ("replayed", "") if got == expected else ("wrong", "")


def variants(data: bytes, *, every_bit: bool) -> Iterator[tuple[str, bytes]]:
    """Every single-bit flip (``every_bit``; else one flip per byte, cycling the bit) and every truncation."""
    for i in range(len(data)):
        for bit in range(8) if every_bit else (i % 8,):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            yield "flip", bytes(flipped)
    for n in range(len(data)):
        yield "truncate", data[:n]


def targets(backend: ObjectBackend, which: str) -> list[tuple[str, str, int | None]]:
    """(key, name, position a refusal must name) of what to attack: "commits" (the store has
    no checkpoint, so a new reader replays every commit) or "checkpoint" (one is written at
    the newest commit first; a damaged one must be skipped, never refused or trusted)."""
    if which == "commits":
        return [(log_key(p), f"commit {p}", p) for p in (1, 2, 3)]
    position = Ledger(backend).write_checkpoint()
    return [(checkpoint_key(position), f"checkpoint {position}", None)]


def attack(backend: ObjectBackend, write: Callable[[str, bytes], None], tally: Tally,
           chosen: list[tuple[str, str, int | None]], *, every_bit: bool = True, where: str = "") -> None:
    """Damage each chosen object in every way, one at a time, and fold after each."""
    expected = fingerprint(backend)
    for key, name, position in chosen:
        original = backend.read(key)
        for how, data in variants(original, every_bit=every_bit):
            write(key, data)
            outcome, detail = classify(backend, expected, position)
            if position is None and outcome == "refused":
                outcome, detail = "crashed", "a damaged checkpoint stopped the reader"
            tally.add(f"{where}{name}: {how}", outcome, detail)
        write(key, original)
    assert fingerprint(backend) == expected


def run(s3: bool = False) -> Tally:
    """Every attack on a folder store (every bit) and, with ``s3``, on SeaweedFS (one bit per byte)."""
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        small_store(root)
        with ModelStore(root, catalog=_scratch_index()) as store:
            backend = store.objects.backend
            for which in ("commits", "checkpoint"):
                attack(backend, lambda key, data: overwrite(root / "objects" / key, data), tally,
                       targets(backend, which), where="folder, every bit: ")
    if s3:
        from tools.s3_servers import SeaweedServer

        with tempfile.TemporaryDirectory() as tmp:
            server = SeaweedServer(Path(tmp), "cas-tamper")
            try:
                url, options = "s3://cas-tamper/store", server.options()
                small_store(url, options)
                with ModelStore(url, catalog=_scratch_index(), backend_options=options) as store:
                    backend = store.objects.backend
                    for which in ("commits", "checkpoint"):
                        attack(backend, lambda key, data: replace_object(backend, key, data), tally,
                               targets(backend, which), every_bit=False, where="SeaweedFS, one bit per byte: ")
            finally:
                server.stop()
    return tally


def replace_object(backend: ObjectBackend, key: str, data: bytes) -> None:
    """Put ``data`` at ``key`` in an object store whatever is there (a create-only store's
    objects are replaced by deleting them first)."""
    backend.delete(key)
    if not backend.create(key, data):
        raise AssertionError(f"{key} was re-created by someone else")


def overwrite(path: Path, data: bytes) -> None:
    """What a damaged disk or someone with write access does (the files are read-only)."""
    if path.exists():
        path.chmod(0o644)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--s3", action="store_true", help="also attack a store on a local SeaweedFS server")
    args = parser.parse_args(argv)
    logging.getLogger("cas_repo").setLevel(logging.ERROR)  # each skipped checkpoint warns
    tally = run(args.s3)
    print(tally.table())
    for line in tally.examples:
        print(line)
    return 1 if tally.bad() else 0


if __name__ == "__main__":
    sys.exit(main())
