"""fsck of the log: every commit there, readable and sealed; the fold admits every operation;
checkpoints agree with the fold; the catalog index equals a fresh fold of the log.

The log is read here commit by commit, not through the ledger: a ledger stops at the
first commit it cannot use, and fsck reports every one. The fresh fold goes into a
temporary catalog beside the index, which the rest of fsck then checks the packs
against: it is what the log says, whatever the index says.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..catalog import Catalog, feed
from ..catalog.checks import differences
from ..errors import CasRepoError, IntegrityError, LogDamagedError
from ..log import checkpoint
from ..log.commit import GENESIS, Commit
from ..log.state import StoreState
from ..objects.keys import LOG, checkpoint_key, log_key, parse_log_key
from ..repository import ModelStore
from .common import ProgressFactory, indexed_position, progress_bar
from .findings import WARNING, Found

_FOLD_BATCH = 2048


@dataclass
class LogFacts:
    """What reading the log found (internal, mutable)."""

    commits: int = 0            # commits listed
    folded: int = 0             # the position the fresh fold reached (the readable prefix)
    state: StoreState = field(default_factory=StoreState)


@contextmanager
def fresh_catalog(store: ModelStore) -> Iterator[Catalog]:
    """An empty catalog beside the store's index, removed afterwards."""
    path = store.catalog.path.with_name(f"{store.catalog.path.name}.fsck-{os.getpid()}-{secrets.token_hex(4)}")
    cat = Catalog(path)
    try:
        yield cat
    finally:
        cat.close()
        for p in (path, path.with_name(path.name + ".wal"), path.with_name(path.name + ".lock")):
            p.unlink(missing_ok=True)


def check_log(store: ModelStore, fresh: Catalog, found: Found, progress: ProgressFactory) -> LogFacts:
    """Read and fold the whole log into ``fresh``, adding what is wrong to ``found``.

    Every commit's digest is checked and every link of the chain, end to end: a changed,
    removed, reordered or foreign commit is an error here even where no reader has met it.
    """
    facts = LogFacts()
    log = store.ledger.log
    listed = sorted(p for p in (parse_log_key(i.key) for i in log.backend.list(LOG + "/")) if p is not None)
    facts.commits = len(listed)
    have = set(listed)
    for gap in [p for p in range(1, listed[-1] + 1) if p not in have] if listed else []:
        after = len([p for p in listed if p > gap])
        found.add("log-gap", log_key(gap), f"commit {gap} is missing below {after} commit(s) listed after it: "
                  "readers stop with an error before it and writers refuse to commit")
    checkpoints = set(log.checkpoints())
    end = listed[-1] if listed else 0
    for cp in sorted(p for p in checkpoints if p > end):
        found.add("log-cut", checkpoint_key(cp), f"a checkpoint records the state as of commit {cp}, but the log "
                  f"ends at commit {end}: commits {end + 1}–{cp} at least were removed")
    store_id = log.store_id()
    st = facts.state
    batch: list[tuple[int, Commit]] = []
    stopped = False
    chain: str | None = GENESIS
    with progress_bar(progress, len(listed), "fsck: reading the log") as bar, fresh.session() as s:
        for p in listed:
            bar.advance()
            if p - 1 not in have and p > 1:
                chain = None  # after a gap the link cannot be checked
            try:
                commit = log.read(p)
                if commit is None:
                    raise LogDamagedError(p, "it was listed but cannot be read")
            except LogDamagedError as exc:
                found.add("log-unreadable", log_key(p), exc.reason.removeprefix("is unreadable: "))
                stopped, chain = True, None
                continue
            try:
                chain = log.link(chain, p, commit)
            except LogDamagedError as exc:
                found.add("log-chain", log_key(p), exc.reason)
                stopped, chain = True, commit.chain_after(None)
                continue
            if stopped or p != st.position + 1:
                stopped = True  # past a gap or a bad commit: no reader gets here
                continue
            st.apply(p, commit.ops, chain or "")
            batch.append((p, commit))
            if len(batch) >= _FOLD_BATCH:
                feed.fold(s, store_id, batch)
                batch = []
            if p in checkpoints:
                _check_checkpoint(store, p, st, found)
        feed.fold(s, store_id, batch)
    facts.folded = st.position
    for position, index in st.refused:
        found.add("log-refused", f"{log_key(position)}#{index}",
                  "every replay skips it (a hand-made or damaged commit, or a bug)")
    return facts


def _check_checkpoint(store: ModelStore, position: int, st: StoreState, found: Found) -> None:
    data = store.ledger.log.read_checkpoint(position)
    try:
        if data is None:
            raise IntegrityError("it was listed but cannot be read")
        kept = checkpoint.decode(data, store.ledger.key)
    except Exception as exc:  # whatever fails, readers skip it: a warning
        found.add("checkpoint-bad", checkpoint_key(position), str(exc.args[0] if exc.args else exc),
                  severity=WARNING)
        return
    if checkpoint.encode(kept) != checkpoint.encode(st):
        found.add("checkpoint-mismatch", checkpoint_key(position),
                  "it differs from the fold of the log up to its position")


def compare_index(store: ModelStore, fresh: Catalog, facts: LogFacts, found: Found) -> None:
    """Compare the store's catalog index with the fresh fold, at the same log position."""
    if facts.folded < facts.commits or any(f.code.startswith("log-") for f, _, _ in found.items):
        return  # a reader stops where the fold stopped: the index cannot be compared
    try:
        with store.catalog.session() as s:  # catches up first, to the position of the newest commit
            position = indexed_position(s)
            if position > facts.folded:  # commits made since fsck read the log
                _fold_more(store, fresh, facts, position)
            diffs = differences(s, fresh.path)
    except CasRepoError as exc:
        found.add("index-mismatch", str(store.catalog.path), f"the index cannot be caught up: {exc}")
        return
    if diffs:
        detail = ", ".join(f"{t}: {a} rows only in the index, {b} only in the log" for t, (a, b) in diffs.items())
        found.add("index-mismatch", str(store.catalog.path), detail)


def _fold_more(store: ModelStore, fresh: Catalog, facts: LogFacts, position: int) -> None:
    batch = []
    for p, commit in store.ledger.log_after(facts.folded):
        if p > position:
            break
        facts.state.apply(p, commit.ops)
        batch.append((p, commit))
    with fresh.session() as s:
        feed.fold(s, store.ledger.log.store_id(), batch)
    facts.folded = facts.state.position
    facts.commits = max(facts.commits, facts.folded)
