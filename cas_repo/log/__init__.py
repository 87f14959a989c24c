"""The log: the store's one source of truth, and the words used for it everywhere.

- **commit** — the bytes created once at one **position** of the log (``log/<20 digits>``,
  positions 1, 2, 3 … with no gaps), by a create-only write; the unit of atomicity
  (:mod:`.commit`, :mod:`.log`).
- **chain** — each commit carries the BLAKE3 of its body and ``prev``, the chain digest
  after the commit before it; a commit's own chain digest covers every commit before it,
  so a changed, removed, reordered or foreign commit breaks the next link. Readers check
  both before folding (:mod:`.commit`, :meth:`.log.Log.link`).
- **operation** — one change a commit holds: a save, an event, a mark, metrics logged after a save, an alias move, or
  one of gc's pack changes (:mod:`.ops`). A commit holds one or more.
- **admit** — the one rule deciding whether an operation applies after the ones before
  it (:func:`.state.admit`); every replay, in memory or into the catalog index, uses it.
- **fold** — applying commits in position order to a state: :class:`.state.StoreState`
  in memory, or the DuckDB index (:mod:`cas_repo.catalog.feed`).
- **checkpoint** — a stored fold as of one position, so a new process starts there
  instead of at commit 1 (:mod:`.checkpoint`); derived, and skipped when unusable.
- **ledger** — a process's current fold and its commit loop: build operations on the
  state at position p, create p + 1, fold a lost race's winner in and build again
  (:mod:`.ledger`).
- **legacy** — the one-time upgrade of a format-1 store (event records in packs) into
  the log's first commit (:mod:`.legacy`).

This package imports :mod:`cas_repo.objects` and the leaf modules, never the catalog.
"""
