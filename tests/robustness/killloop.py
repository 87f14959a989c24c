"""The kill -9 loop: savers and an index reader are SIGKILLed at random instants, over and over.

Each round forks (from a forkserver that has already imported cas-repo, numpy, duckdb
and what a first save imports — pyarrow's zstd and pyfastcdc — so a round costs
milliseconds, not an interpreter start, and a kill lands in the saving, not in an
import) three processes on one store: two savers racing for the log's next positions,
and an *indexer* that runs ``history()`` and ``sql()`` in a loop, each a catalog-index
session that catches the store's default index up from the log. Each is killed at its
own random instant. The savers append one line to an ack file of their own after each
``save_model`` returns; those versions are the promise under test.

Every tenth round the parent first saves (and acknowledges) one model itself and the
indexer kills itself inside its first session, right after that catch-up committed, so
the index is left with a write-ahead log for sure; every other such round the parent
then tears that WAL — its first bytes flipped (which DuckDB skips silently), or cut at a
random length, or one random bit flipped — as a kill in the middle of DuckDB's WAL write
would. Nothing is ever repaired by hand: the check after each round opens the store
(and that same index) like any process would. Every tenth round a checkpoint is
written, so processes start from it and replay only the commits after it.

* after every round: the store is consistent (see :mod:`.consistency`: the log folds
  cleanly from scratch, packs hold what it says, the default index — opened as a new
  process would, healed if need be — says what the fold says, and every tenth round and
  every round with a killed index session it also equals a rebuild from scratch); no two
  acknowledgements name the same version; every acknowledged version is in the log with
  the content digest it was acknowledged with; this round's versions (plus a sample of
  older ones) load byte-identical;
* at the end: a full re-hash of every object, every acknowledged version still naming
  the content digest it was loaded with, and a sample loaded again; then a gc (no grace
  period) removes every orphan pack and temp file the kills left, and the store checks
  clean again with the same versions.

Run longer by hand: ``python tools/soak.py --kills 2000`` (or ``CAS_REPO_SOAK_KILLS``
for the test).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

MIN_SIZE = 1 << 10
MAX_SIZE = 50 << 20
MODEL_IDS = ("alpha", "beta", "gamma")
SAVERS = 2
FORCED_WAL_EVERY = 10  # rounds in which the indexer dies inside a session after its catch-up
REBUILD_EVERY = 10  # rounds whose check also compares the index with a rebuild from scratch
CHECKPOINT_EVERY = 10  # rounds between checkpoints (as a store writes every 1000 commits)


def pick_size(rng: random.Random, max_size: int = MAX_SIZE) -> int:
    """Log-uniform between 1 KiB and ``max_size``: most saves small, some very large."""
    return int(math.exp(rng.uniform(math.log(MIN_SIZE), math.log(max_size))))


def saver(root: str, ack_dir: str, seed: int, max_size: int, ready=None, first_size: int = 0) -> None:
    """Child: save distinct payloads forever, acknowledging each one after save_model returns.

    The acks go to a file of this process's own: a kill can cut the line being written
    (a write(2) that crosses a page boundary is not atomic against SIGKILL), and such a
    cut line must stay this file's last, where it reads as no acknowledgement.
    """
    from cas_repo import ModelStore

    from .workers import fingerprint, metadata, payload

    rng = random.Random(seed)
    fd = os.open(os.path.join(ack_dir, f"{seed}.txt"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with ModelStore(root) as store:
        if ready is not None:
            ready.set()
        for i in range(1_000_000):
            pseed = seed * 1000 + i
            model = payload(pseed, first_size if i == 0 and first_size else pick_size(rng, max_size))
            md = metadata(rng.choice(MODEL_IDS))
            store.save_model(model, md)
            # One short write(2) per ack: whole or absent, whatever instant the kill lands.
            os.write(fd, f"{md.model_id} {md.version} {md.digest} {pseed} {model['size']} "
                         f"{fingerprint(model)}\n".encode())


def indexer(root: str, ready=None, die_inside: bool = False) -> None:
    """Child: catalog-index sessions (history, SQL) in a loop, on the store's default index.

    With ``die_inside`` it SIGKILLs itself inside its first session, once the catch-up has
    committed and before DuckDB checkpoints: a WAL is left behind.
    """
    from cas_repo import ModelStore

    with ModelStore(root, lock_timeout=60) as store:
        if ready is not None:
            ready.set()
        if die_inside:
            with store.catalog.session():
                os.kill(os.getpid(), signal.SIGKILL)
        while True:
            for md in store.list_models():
                store.history(md.model_id)
            store.sql("SELECT model_id, count(*), max(version) FROM v_versions GROUP BY model_id")


@dataclass(frozen=True, slots=True)
class Ack:
    model_id: str
    version: int
    digest: str
    seed: int
    size: int
    fingerprint: str


@dataclass
class KillLoopReport:
    kills: int = 0
    acked: int = 0
    committed_unacked: int = 0
    largest_acked: int = 0
    largest_attempted: int = 0
    orphan_packs: int = 0
    temp_files: int = 0
    loads: int = 0
    index_wals: int = 0       # rounds after which the index had a WAL left (a session was killed)
    index_torn: int = 0       # of those, WALs torn on purpose (a kill mid-way through a WAL write)
    index_rebuilt: int = 0    # times the index was set aside and rebuilt by itself
    gc_deleted: int = 0       # orphan packs and temp files the final gc removed
    seconds: float = 0.0
    check_seconds: float = 0.0  # of which in the checks after each round
    problems: list[str] = field(default_factory=list)


def read_acks(ack_dir: Path) -> list[Ack]:
    """Every complete ack line of every ack file (what follows a file's last newline is not one)."""
    out = []
    for path in sorted(ack_dir.glob("*.txt")):
        for line in path.read_text().split("\n")[:-1]:
            m, v, d, s, n, fp = line.split()
            out.append(Ack(m, int(v), d, int(s), int(n), fp))
    return out


def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    # import cas_repo loads neither pyarrow nor pyfastcdc: a saver would import them (~0.2 s,
    # longer on a busy machine) inside its first save, where most kill instants would land.
    ctx.set_forkserver_preload(["cas_repo", "cas_repo.catalog", "duckdb", "numpy", "pyarrow", "pyfastcdc",
                                "tests.robustness.workers"])
    return ctx


class _SetAsideCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "moved aside" in record.getMessage():
            self.count += 1


def _tear(wal: Path, rng: random.Random, how: int) -> None:
    data = bytearray(wal.read_bytes())
    if how == 0:
        data[0] ^= 0xFF
    elif how == 1:
        data = data[: rng.randrange(len(data))]
    else:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    wal.write_bytes(bytes(data))


def run_kill_loop(root: Path, *, kills: int = 100, seed: int = 0, max_size: int = MAX_SIZE,
                  max_delay: float = 0.3, sample: int = 1, seconds: float | None = None,
                  progress=None) -> KillLoopReport:
    """Kill savers and an indexer ``kills`` times (or for ``seconds``); returns what was checked and found."""
    from cas_repo import CasRepoError, ModelStore
    from cas_repo.maintenance.collect import run_gc

    from .consistency import CheckCache, check_store
    from .workers import fingerprint, payload

    root.mkdir(parents=True, exist_ok=True)
    with ModelStore(root) as store:  # created up front, so a kill during creation is not round 1's only case
        index = store.catalog.path
    wal = index.with_name(index.name + ".wal")
    ack_dir = root.parent / "acks"
    ack_dir.mkdir(exist_ok=True)
    rng = random.Random(seed)
    ctx = _context()
    report = KillLoopReport()
    rebuilt = _SetAsideCounter()
    logging.getLogger("cas_repo").addHandler(rebuilt)
    start = time.monotonic()
    checked: set[tuple[str, int]] = set()
    cache = CheckCache()
    # Loads go through one long-lived store (with an index of its own it never uses):
    # fresh opens of the store are what every round's check does.
    reader = ModelStore(root, catalog=root.parent / "reader-index" / "catalog.duckdb")
    round_ = 0
    try:
        while (round_ < kills) if seconds is None else (time.monotonic() - start < seconds):
            round_ += 1
            # Every tenth round starts with a save near the largest size, and waits long enough
            # for it to finish sometimes: both finished and interrupted huge saves are covered.
            big = round_ % 10 == 5
            first = rng.randint(max_size * 2 // 5, max_size) if big else 0
            report.largest_attempted = max(report.largest_attempted, first)
            forced_wal = round_ % FORCED_WAL_EVERY == 3
            if forced_wal:  # a commit the index lacks, so the indexer's catch-up writes
                _acknowledged_save(root, ack_dir, 10**12 + round_, rng)
            procs = []
            for k in range(SAVERS):
                ready = ctx.Event()
                proc = ctx.Process(target=saver, args=(str(root), str(ack_dir), (seed * 100_000 + round_) * 10 + k,
                                                       max_size, ready, first if k == 0 else 0))
                procs.append((proc, ready, rng.uniform(0, max_delay * (5 if big and k == 0 else 1))))
            ready = ctx.Event()
            proc = ctx.Process(target=indexer, args=(str(root), ready, forced_wal))
            # A forced round lets the indexer kill itself (the parent only waits for it).
            procs.append((proc, ready, None if forced_wal else rng.uniform(0, max_delay)))
            for proc, _, _ in procs:
                proc.start()
            # The clock starts once the store is open, so a busy machine shifts kills into saves
            # rather than into start-up; one round in eight kills during start-up on purpose.
            if round_ % 8:
                for _proc, ready, _ in procs:
                    if not ready.wait(60):
                        report.problems.append(f"round {round_}: a child never opened the store")
            t0 = time.monotonic()
            for proc, _, at in sorted((p for p in procs if p[2] is not None), key=lambda p: p[2]):
                time.sleep(max(0.0, at - (time.monotonic() - t0)))
                proc.kill()
            for proc, _, at in procs:
                proc.join(None if at is not None else 120)
                if proc.exitcode is None:
                    report.problems.append(f"round {round_}: the indexer never reached its session")
                    proc.kill()
                    proc.join()
                if proc.exitcode is not None and proc.exitcode > 0:
                    report.problems.append(f"round {round_}: a child failed on its own (exit {proc.exitcode})")
            report.kills += 1
            if wal.exists() and wal.stat().st_size:
                report.index_wals += 1
                if forced_wal and round_ % (2 * FORCED_WAL_EVERY) == 3:
                    _tear(wal, rng, report.index_torn % 3)
                    report.index_torn += 1
            elif forced_wal:
                report.problems.append(f"round {round_}: the indexer killed inside its session left no WAL")
            t_check = time.monotonic()
            try:
                _check_round(root, round_, rng, sample, checked, report, reader, cache,
                             rebuild=forced_wal or round_ % REBUILD_EVERY == 0)
            except CasRepoError as exc:
                report.problems.append(f"round {round_}: the store did not open cleanly: {exc!r}")
            report.check_seconds += time.monotonic() - t_check
            report.index_rebuilt = rebuilt.count
            if round_ % CHECKPOINT_EVERY == 7:
                reader.checkpoint()  # later opens (savers', checks') start from here
            if progress:
                progress(round_, len(read_acks(ack_dir)), report)

        acks = read_acks(ack_dir)
        # Every acknowledged version was loaded byte-identical once, in the round that
        # acknowledged it. It still is now if its manifest digest is unchanged and every
        # stored object still hashes to its digest: content addressing makes that the same bytes.
        final = check_store(root, full=True)
        report.problems += [f"final: {p}" for p in final.problems]
        with ModelStore(root) as store:
            history = {(md.model_id, md.version): md.digest for m in store.list_models(include_deleted=True)
                       for md in store.history(m.model_id)}
            committed = set(history)
            for a in acks:
                if history.get((a.model_id, a.version)) != a.digest:
                    report.problems.append(f"final: {a.model_id}@{a.version} changed its content digest")
                if (a.model_id, a.version) not in checked:
                    report.problems.append(f"final: {a.model_id}@{a.version} was never loaded")
            for a in rng.sample(acks, min(10, len(acks))):  # and a few loads, for good measure
                model, _ = store.load_model(a.model_id, a.version)
                report.loads += 1
                if fingerprint(model) != a.fingerprint or fingerprint(payload(a.seed, a.size)) != a.fingerprint:
                    report.problems.append(f"final: {a.model_id}@{a.version} loads different bytes")
        acked = {(a.model_id, a.version) for a in acks}
        if acked - committed:
            report.problems.append(f"acknowledged but not committed: {sorted(acked - committed)}")
        report.acked = len(acks)
        report.committed_unacked = len(committed - acked)
        report.largest_acked = max((a.size for a in acks), default=0)
        report.orphan_packs = len(final.orphan_packs)
        report.temp_files = len(final.temp_files)
        # The debris of the kills is gc's to collect, and nothing else goes with it.
        with ModelStore(root) as store:
            gc = run_gc(store, grace=timedelta(0))
            report.gc_deleted = len(gc.deleted) + len(gc.temp_removed)
            for a in rng.sample(acks, min(10, len(acks))):
                model, _ = store.load_model(a.model_id, a.version)
                if fingerprint(model) != a.fingerprint:
                    report.problems.append(f"after gc: {a.model_id}@{a.version} loads different bytes")
        collected = check_store(root, full=True)
        report.problems += [f"after gc: {p}" for p in collected.problems]
        if collected.orphan_packs or collected.temp_files:
            report.problems.append(f"after gc: {len(collected.orphan_packs)} orphan packs and "
                                   f"{len(collected.temp_files)} temp files are left")
        if {(m, n + 1): ref.manifest for m, e in collected.state.models.items()
                for n, ref in enumerate(e.versions)} != history:
            report.problems.append("after gc: the versions or their digests changed")
    finally:
        reader.close()
        logging.getLogger("cas_repo").removeHandler(rebuilt)
        report.index_rebuilt = rebuilt.count
        report.seconds = time.monotonic() - start
    return report


def _acknowledged_save(root: Path, ack_dir: Path, pseed: int, rng: random.Random) -> None:
    from cas_repo import ModelStore

    from .workers import fingerprint, metadata, payload

    model = payload(pseed, MIN_SIZE)
    md = metadata(rng.choice(MODEL_IDS))
    with ModelStore(root) as store:
        store.save_model(model, md)
    with open(ack_dir / "parent.txt", "a") as f:
        f.write(f"{md.model_id} {md.version} {md.digest} {pseed} {MIN_SIZE} {fingerprint(model)}\n")


def _check_round(root: Path, round_: int, rng: random.Random, sample: int, checked: set[tuple[str, int]],
                 report: KillLoopReport, reader, cache, rebuild: bool) -> None:
    from .consistency import check_store
    from .workers import fingerprint

    acks = read_acks(root.parent / "acks")
    # A fresh open of the store and of its default index (healed there if need be), the
    # index compared with the log's fold (and, when ``rebuild``, with a rebuild).
    check = check_store(root, rebuild=rebuild, cache=cache)
    report.problems += [f"round {round_}: {p}" for p in check.problems]
    models = check.state.models
    seen: set[tuple[str, int]] = set()
    for a in acks:
        if (a.model_id, a.version) in seen:  # two savers were both told they made this version
            report.problems.append(f"round {round_}: {a.model_id}@{a.version} acknowledged twice")
        seen.add((a.model_id, a.version))
        e = models.get(a.model_id)
        logged = e.versions[a.version - 1].manifest if e and a.version <= len(e.versions) else None
        if logged != a.digest:
            report.problems.append(f"round {round_}: {a.model_id}@{a.version} has digest {logged} in the log, "
                                   f"acknowledged {a.digest}")
    new = [a for a in acks if (a.model_id, a.version) not in checked]
    old = [a for a in acks if (a.model_id, a.version) in checked]
    for a in new + rng.sample(old, min(sample, len(old))):
        model, md = reader.load_model(a.model_id, a.version)
        report.loads += 1
        if fingerprint(model) != a.fingerprint or md.digest != a.digest:
            report.problems.append(f"round {round_}: {a.model_id}@{a.version} loads different bytes")
        checked.add((a.model_id, a.version))
