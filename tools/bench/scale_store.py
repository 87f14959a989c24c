"""A store of 100k versions: a new process's first listing, another process's save seen
by a running one, and the cost of folding the log into a new catalog index."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import models
from .framework import Result, Timing, bounded, cache_dir, drop_file_cache, explain, scratch
from .scale_child import MODEL_ID, watch

TITLE = "A store of 100k versions"
ABOUT = (
    "A local store of 10,000 models × 10 versions (100,000 log commits, each version its own "
    "pack; tiny models, because the count of commits is what is measured here), built once "
    "by two processes with fsync off and kept under `.bench/` between runs (`--quick`: 200 × "
    "10, built in a temp folder). *First `list_models()` in a new process*: a fresh "
    "interpreter that has never seen the store (the page cache of its log and checkpoints "
    "dropped first) opens it and lists every model; it finds the newest checkpoint, decodes "
    "it and folds in the commits after it. *Another process's save*: a running process that "
    "has listed the store once; the harness saves a new version from another process (fsync "
    "on), then the first one calls `list_models()` and `load_model` and must see it — on a "
    "local folder catching up is reading the next log file, no round trip. *Index "
    "catch-up*: a process opens a new, empty catalog index (what a new machine, or a "
    "deleted index, starts from) and its first catalog session folds every commit into it, "
    "long runs of saves as Arrow bulk inserts.")

CACHE_FORMAT = 1
FIRST_LIST_BOUND_S = 5.0
SEEN_BOUND_MS = 50.0


def _child(args: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "tools.bench.scale_child", *args], check=True,
                   cwd=Path(__file__).resolve().parents[2], env=env)


def build_store(root: Path, n_models: int, versions: int, workers: int = 2) -> float:
    """Fill a new store with ``n_models × versions`` tiny saves from ``workers`` processes; seconds."""
    t = time.perf_counter()
    root_s = str(root)
    procs = [subprocess.Popen([sys.executable, "-m", "tools.bench.scale_child", "build", root_s, str(w),
                               str(workers), str(n_models), str(versions)],
                              cwd=Path(__file__).resolve().parents[2])
             for w in range(workers)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"building the store failed: exit codes {codes}")
    os.sync()  # the builders ran without fsync
    return time.perf_counter() - t


def _formats() -> dict[str, str]:
    """What a cached store depends on: the formats, and how many checkpoints a writer keeps."""
    from cas_repo.log import ledger
    from cas_repo.log.checkpoint import CHECKPOINT_FORMAT
    from cas_repo.log.commit import COMMIT_FORMAT

    return {"commit": COMMIT_FORMAT, "checkpoint": CHECKPOINT_FORMAT,
            "checkpoints_kept": str(getattr(ledger, "CHECKPOINTS_KEPT", "all"))}


def _readable(root: Path) -> bool:
    """Whether this cas-repo reads the store's first and last commits and newest checkpoint
    (a core change may refuse what an older one wrote under the same format name)."""
    from cas_repo.errors import CasRepoError
    from cas_repo.log import checkpoint
    from cas_repo.log.log import Log
    from cas_repo.objects.keys import log_key
    from cas_repo.objects.local import LocalBackend

    log = Log(LocalBackend(root / "objects"))
    try:
        newest = log.checkpoints()[-1]
        last = newest
        while log.backend.get(log_key(last + 1)) is not None:
            last += 1
        return (log.read(1) is not None and log.read(last) is not None
                and checkpoint.decode(log.read_checkpoint(newest) or b"").position == newest)
    except (CasRepoError, IndexError, ValueError):
        return False


def cached_store(n_models: int, versions: int, log: Any = print) -> tuple[Path, float | None]:
    """The cached store of that size (built now if missing or of another format); build seconds or None."""
    folder = cache_dir() / f"store-{n_models}x{versions}-v{CACHE_FORMAT}"
    marker = folder / "built.json"
    want = {"models": n_models, "versions": versions, **_formats()}
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == want and _readable(folder / "store"):
                return folder / "store", None
        except ValueError:
            pass
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"   building a store of {n_models * versions:,} versions under {folder} (once; kept for later runs)")
    seconds = build_store(folder / "store", n_models, versions)
    marker.write_text(json.dumps(want))
    return folder / "store", seconds


def _drop_caches(root: Path) -> None:
    for sub in ("log", "checkpoints"):
        drop_file_cache(root / "objects" / sub)


def first_list(root: Path, repeats: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fresh processes' first listing (page cache of log and checkpoints dropped before each),
    then one more with phase timers."""
    runs = []
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        for i in range(repeats + 1):
            _drop_caches(root)
            _child(["first_list", str(root), str(out)] + (["--phases"] if i == repeats else []))
            runs.append(json.loads(out.read_text()))
    return runs[:-1], runs[-1]


def visibility(root: Path, rounds: int) -> list[dict[str, Any]]:
    """A running process (the watcher) and this one saving: per round, the watcher's next
    list_models() and load_model after this process's save."""
    from cas_repo import ModelStore

    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    watcher = ctx.Process(target=watch, args=(str(root), there))
    watcher.start()
    out = []
    try:
        with ModelStore(root) as store:
            store.list_models()  # this process's own first look, untimed
            if not here.poll(600) or here.recv() != "ready":
                raise RuntimeError("the watching process did not start")
            for i in range(rounds):
                md = models.metadata(MODEL_ID.format(7), model_type="MLP")
                store.save_model(models.tiny_model(7, 10_000 + i + int(time.time())), md)
                here.send((md.model_id, md.version))
                if not here.poll(600):
                    raise RuntimeError("the watching process did not answer")
                r = here.recv()
                if not r["seen"]:
                    raise AssertionError(f"round {i}: the other process did not see version {md.version}")
                out.append(r)
            here.send(None)
    finally:
        watcher.join(timeout=60)
        if watcher.is_alive():
            watcher.kill()
    return out


# Where an index catch-up spends its time (besides the default sites).
INDEX_SITES = (
    ("cas_repo.log.log", "Log", "read", "read commit files"),
    ("cas_repo.catalog.feed", None, "_heads", "index: read heads"),
    ("cas_repo.catalog.feed", None, "apply", "index: ops one by one"),
    ("cas_repo.catalog.feed", None, "fold_run", "index: build Arrow tables"),
    ("cas_repo.catalog.bulk_fold", None, "bulk_import", "index: DuckDB bulk insert + heads"),
)


def index_catch_up(root: Path, index: Path, phases: bool = False) -> tuple[float, int, dict[str, float]]:
    """Seconds for a new catalog index's first session to fold the whole log, the position,
    and (``phases``) where the time went."""
    import contextlib

    from cas_repo import ModelStore

    from .phases import PhaseClock

    clock = PhaseClock(extra_sites=INDEX_SITES)
    with ModelStore(root, catalog=index) as store:
        position = store.ledger.refresh()  # the fold of the log in memory, not timed here
        with clock.installed() if phases else contextlib.nullcontext():
            t = time.perf_counter()
            with store.catalog.session():
                pass
            seconds = time.perf_counter() - t
        indexed = store.sql("SELECT count(*) AS n FROM v_versions").column(0)[0].as_py()
    if indexed != position:  # every commit of these stores is one save
        raise AssertionError(f"the new index holds {indexed} versions, the log {position} saves")
    spent = clock.take() if phases else {}
    if phases:
        spent["other"] = max(0.0, seconds - sum(spent.values()))
    return seconds, position, spent


def chain_rows(root: Path, base: Path, label: str) -> list[Result]:
    """What proving the log costs: every commit read, its digest and its link checked, from
    commit 1 (no checkpoint), and a whole quick fsck (which also folds the log into a fresh
    catalog and reads every pack's index)."""
    from cas_repo.log.commit import GENESIS
    from cas_repo.log.log import Log
    from cas_repo.maintenance import fsck_store
    from cas_repo.objects.local import LocalBackend

    _drop_caches(root)
    log = Log(LocalBackend(root / "objects"))
    t = time.perf_counter()
    n = sum(1 for _ in log.after(0, GENESIS))
    seconds = time.perf_counter() - t
    rows = [Result("scale_store", f"chain check: read and verify all {n:,} commits from commit 1 ({label})",
                   seconds, "s", note="page cache of the log dropped first; one thread"),
            Result("scale_store", f"chain check of {n:,} commits: rate", n / seconds, "commits/s")]
    t = time.perf_counter()
    report = fsck_store(root, catalog=base / f"fsck-{n}" / "catalog.duckdb")
    seconds = time.perf_counter() - t
    if not report.clean:
        raise AssertionError(f"fsck of the bench store found {[f.code for f in report.errors]}")
    rows.append(Result("scale_store", f"fsck quick ({n:,} commits, {report.packs:,} packs)", seconds, "s",
                       note="chain end to end, a fold into a fresh catalog, every pack index and manifest"))
    return rows


def disk_rows(root: Path, label: str) -> list[Result]:
    """Apparent bytes of the store's packs, log and checkpoints."""
    from .framework import bytes_on_disk

    objects = root / "objects"
    return [Result("scale_store", f"on disk ({label}): {sub}", bytes_on_disk(objects / sub) / 2**20, "MiB",
                   note=f"{sum(1 for _ in (objects / sub).rglob('*'))} files")
            for sub in ("packs", "log", "checkpoints")]


def run(quick: bool, log: Any = None) -> list[Result]:
    log = log or (lambda text: sys.stderr.write(text + "\n"))
    n_models, versions = (200, 10) if quick else (10_000, 10)
    rows: list[Result] = []
    with scratch("scale") as base:
        small = base / "small"
        built_small = build_store(small, 200, 10)
        if quick:
            big, built = small, built_small
        else:
            big, built = cached_store(n_models, versions, log)
        label = f"{n_models * versions:,} versions"
        if built is not None:
            rows.append(Result("scale_store", f"build: {label} by 2 processes, fsync off (setup)", built, "s"))

        runs, instrumented = first_list(big, 1 if quick else 3)
        t = Timing(tuple(r["open"] + r["list"] for r in runs))
        first = t.result("scale_store", f"first list_models() in a new process ({label}, "
                                        f"{runs[0]['models']:,} models)", unit="s")
        phases = instrumented["phases"]
        top = sorted(phases.items(), key=lambda kv: -kv[1])[:4]
        rows.append(explain(bounded(first, "<=", FIRST_LIST_BOUND_S),
                            "where a new process's time goes (instrumented run): "
                            + ", ".join(f"{k} {v:.2f} s" for k, v in top)))
        for name, seconds in phases.items():
            if seconds >= 0.001:
                rows.append(Result("scale_store", f"first list_models() phase: {name}", seconds, "s"))

        seen = visibility(big, 5 if quick else 20)
        lst = Timing(tuple(r["list"] for r in seen)).result(
            "scale_store", f"after another process's save: next list_models() ({seen[0]['models']:,} models)")
        load = Timing(tuple(r["load"] for r in seen)).result(
            "scale_store", "after another process's save: next load_model of that model")
        why = ("list_models() builds a ModelMetadata for every model on each call; the catch-up itself is "
               "one read of the next log file (see the listing with nothing new).")
        rows += [explain(bounded(lst, "<=", SEEN_BOUND_MS), why), explain(bounded(load, "<=", SEEN_BOUND_MS), why),
                 Timing(tuple(r["list_again"] for r in seen)).result(
                     "scale_store", "list_models() again with nothing new (the listing alone)")]

        for root, name in ((small, "2,000"),) + (() if quick else ((big, label.split()[0]),)):
            plain = 3 if root is small else 0
            samples, position = [], 0
            for i in range(plain + 1):
                seconds, position, spent = index_catch_up(root, base / f"index-{name}-{i}" / "catalog.duckdb",
                                                          phases=i == plain)
                samples.append(seconds)
            if plain:
                samples = samples[:-1]  # the instrumented run only gives the phases
            note = "" if plain else "one run, with phase timers installed (~1 µs a call, ~1 % here)"
            r = Timing(tuple(samples)).result("scale_store", f"index catch-up: fold {position:,} commits into a new "
                                              "index", unit="s", note=note)
            rows += [r, Result("scale_store", f"index catch-up of {position:,} commits: rate",
                               position / statistics.median(samples), "commits/s")]
            rows += [Result("scale_store", f"index catch-up of {position:,} commits, phase: {k}", v, "s")
                     for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 0.001]
        rows += chain_rows(big, base, label)
        rows += disk_rows(big, label)
    return rows
