"""The kill -9 loop: a subprocess saves models until it is SIGKILLed at a random instant.

Each round forks a saver (from a forkserver that has already imported cas-repo, so a
round costs milliseconds, not an interpreter start), lets it run for a random time,
kills it, then reopens the store and checks it. The saver appends one line to an ack
file after each ``save_model`` returns; those versions are the promise under test:

* after every kill: the store is consistent (see :mod:`.consistency`), every
  acknowledged version is still in the catalog with the content digest it was
  acknowledged with, and this round's versions (plus a sample of older ones) load
  byte-identical;
* at the end: a full re-hash of every object, every acknowledged version still naming
  the content digest it was loaded with, and a sample loaded again.

Run longer by hand: ``python tools/soak.py --kills 2000`` (or ``CAS_REPO_SOAK_KILLS``
for the test).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

MIN_SIZE = 1 << 10
MAX_SIZE = 50 << 20
MODEL_IDS = ("alpha", "beta", "gamma")


def pick_size(rng: random.Random, max_size: int = MAX_SIZE) -> int:
    """Log-uniform between 1 KiB and ``max_size``: most saves small, some very large."""
    return int(math.exp(rng.uniform(math.log(MIN_SIZE), math.log(max_size))))


def saver(root: str, ack_path: str, seed: int, max_size: int, ready=None, first_size: int = 0) -> None:
    """Child: save distinct payloads forever, acknowledging each one after save_model returns."""
    from cas_repo import ModelStore

    from .workers import fingerprint, metadata, payload

    rng = random.Random(seed)
    fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with ModelStore(root, lock_timeout=60) as store:
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
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def read_acks(path: Path) -> list[Ack]:
    if not path.exists():
        return []
    text = path.read_text()
    out = []
    for line in text.split("\n")[:-1]:
        m, v, d, s, n, fp = line.split()
        out.append(Ack(m, int(v), d, int(s), int(n), fp))
    return out


def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["cas_repo", "numpy", "tests.robustness.workers"])
    return ctx


def run_kill_loop(root: Path, *, kills: int = 100, seed: int = 0, max_size: int = MAX_SIZE,
                  max_delay: float = 0.3, sample: int = 1, seconds: float | None = None,
                  progress=None) -> KillLoopReport:
    """Kill a saver ``kills`` times (or for ``seconds``); returns what was checked and found."""
    from cas_repo import ModelStore

    from .consistency import check_store
    from .workers import fingerprint, payload

    root.mkdir(parents=True, exist_ok=True)
    ModelStore(root).close()  # created up front, so a kill during creation is not round 1's only case
    ack_path = root.parent / "acks.txt"
    rng = random.Random(seed)
    ctx = _context()
    report = KillLoopReport()
    start = time.monotonic()
    checked: set[tuple[str, int]] = set()
    round_ = 0
    while (round_ < kills) if seconds is None else (time.monotonic() - start < seconds):
        round_ += 1
        ready = ctx.Event()
        # Every tenth round starts with a save near the largest size, and waits long enough
        # for it to finish sometimes: both finished and interrupted huge saves are covered.
        big = round_ % 10 == 5
        first = rng.randint(max_size * 2 // 5, max_size) if big else 0
        report.largest_attempted = max(report.largest_attempted, first)
        proc = ctx.Process(target=saver, args=(str(root), str(ack_path), seed * 100_000 + round_, max_size,
                                               ready, first))
        proc.start()
        # The clock starts once the store is open, so a busy machine shifts kills into saves
        # rather than into start-up; one round in eight kills during start-up on purpose.
        if round_ % 8 and not ready.wait(60):
            report.problems.append(f"round {round_}: the saver never opened the store")
        time.sleep(rng.uniform(0, max_delay * (5 if big else 1)))
        proc.kill()
        proc.join()
        if proc.exitcode is not None and proc.exitcode > 0:
            report.problems.append(f"round {round_}: the saver failed on its own (exit {proc.exitcode})")
        report.kills += 1

        acks = read_acks(ack_path)
        check = check_store(root)
        report.problems += [f"round {round_}: {p}" for p in check.problems]
        # Exclusive: the saver is dead, and one connection makes the checks cheap.
        with ModelStore(root, exclusive=True) as store:
            digests = {(md.model_id, md.version): md.digest
                       for m in {a.model_id for a in acks} for md in store.history(m)}
            for a in acks:
                if digests.get((a.model_id, a.version)) != a.digest:
                    report.problems.append(f"round {round_}: {a.model_id}@{a.version} now has digest "
                                           f"{digests.get((a.model_id, a.version))}, acknowledged {a.digest}")
            new = [a for a in acks if (a.model_id, a.version) not in checked]
            old = [a for a in acks if (a.model_id, a.version) in checked]
            for a in new + rng.sample(old, min(sample, len(old))):
                model, _ = store.load_model(a.model_id, a.version)
                report.loads += 1
                if fingerprint(model) != a.fingerprint:
                    report.problems.append(f"round {round_}: {a.model_id}@{a.version} loads different bytes")
                checked.add((a.model_id, a.version))
        if progress:
            progress(round_, len(acks), report)

    acks = read_acks(ack_path)
    # Every acknowledged version was loaded byte-identical once, in the round that
    # acknowledged it. It still is now if its manifest digest is unchanged and every
    # stored object still hashes to its digest: content addressing makes that the same bytes.
    final = check_store(root, full=True)
    report.problems += [f"final: {p}" for p in final.problems]
    with ModelStore(root, exclusive=True) as store:
        history = {(md.model_id, md.version): md.digest for m in MODEL_IDS if _exists(store, m)
                   for md in store.history(m)}
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
    report.seconds = time.monotonic() - start
    return report


def _exists(store, model_id: str) -> bool:
    try:
        store.history(model_id)
    except FileNotFoundError:
        return False
    return True
