"""The notes under the summary of docs/benchmarks.md, written from the run's own figures.

Each note reads the results it needs by scenario and metric; a note whose figures are
missing (a partial run, a failed scenario) is left out rather than written with stale
numbers.
"""

from __future__ import annotations

from collections.abc import Callable

from .framework import Result
from .report import Run, close_call


class _Figures:
    def __init__(self, run: Run) -> None:
        self.results = run.results

    def get(self, scenario: str, prefix: str, baseline: str | None = None) -> Result:
        for r in self.results:
            if r.scenario == scenario and r.metric.startswith(prefix) and (baseline is None or r.baseline == baseline):
                return r
        raise KeyError((scenario, prefix, baseline))

    def v(self, scenario: str, prefix: str) -> float:
        return self.get(scenario, prefix).value


def _within_noise(run: Run, f: _Figures) -> str:
    noisy = [r for r in run.results if r.met is not None and close_call(r)]
    if not noisy:
        text = ("No verdict is within noise: each figure is more than 10 % from its bound and its bound lies "
                "outside the figure's confidence interval.")
    else:
        text = ("**Within noise** (a re-run may flip these): " + "; ".join(
            f"{r.scenario} / {r.metric}" + (f" vs {r.baseline}" if r.baseline else "")
            + f" ({'met' if r.met else 'missed'})" for r in noisy) + ".")
    a, b = run.load_start[0], run.load_end[0]
    if max(a, b) > 1.5 * max(min(a, b), 0.5):
        text += (f" The load average went from {a:.1f} to {b:.1f} during the run, so the scenarios run "
                 f"{'later' if b > a else 'earlier'} met a busier machine than the others: a verdict on an "
                 "absolute time there can differ between runs by more than the confidence intervals, which only "
                 "see the noise within this run.")
    return text


def _save(run: Run, f: _Figures) -> str:
    save, dumps = f.v("lightgbm", "save (new model"), f.v("lightgbm", "pickle.dumps")
    seed = f.get("lightgbm", "save (new model", "seed save (no fsync)")
    ph = {name: f.v("lightgbm", f"save phase: {name}") for name in
          ("pickling", "pack write + fsync", "log commit (write + fsync + link)")
          if any(r.metric == f"save phase: {name}" for r in f.results)}
    rest = sum(r.value for r in f.results if r.scenario == "lightgbm" and r.metric.startswith("save phase: ")) \
        - sum(ph.values())
    floor = f.v("lightgbm", "floor: a save's durable writes")
    return (
        f"**Save of the 300 KB model** ({save:.1f} ms against pickle.dumps {dumps:.1f} ms + 1.5, and "
        f"{seed.ratio:.2f}× the seed's unsynced save): in the instrumented pass pickling took "
        f"{ph.get('pickling', 0):.1f} ms, the pack's durable write {ph.get('pack write + fsync', 0):.1f} ms, the "
        f"log commit's {ph.get('log commit (write + fsync + link)', 0):.1f} ms, and everything else (FastCDC, "
        f"BLAKE3, pack and commit encoding, reading the commit back, folding it) {rest:.1f} ms. The disk's floor "
        f"for the two durable writes alone, through the same backend in the same run, interleaved, is "
        f"{floor:.2f} ms"
        + (": with fsync on, the allowance of 1.5 ms is smaller than the I/O a save must make, before any CPU "
           "work. " if floor >= 1.5 else ". ")
        + "The stream of a model this size is stored uncompressed (zstd cost ~35 % of pickling it on the save "
        "and a decompression on every load). One durable write fewer would take a small save's entries inside "
        "its log commit (a change of the commit format, and of what gc and fsck read).")


def _load(run: Run, f: _Figures) -> str:
    load, loads = f.v("lightgbm", "load (latest"), f.v("lightgbm", "pickle.loads")
    names = ("unpickling", "verify (BLAKE3)", "pack read", "reassemble", "log catch-up", "other")
    ph = {n: f.v("lightgbm", f"load phase: {n}") for n in names
          if any(r.metric == f"load phase: {n}" for r in f.results)}
    return (
        f"**Load** ({load:.2f} ms against pickle.loads {loads:.2f} ms + 1): "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in ph.items())
        + ". The stream's chunks are stored raw, read with `preadv` into one buffer and verified there; the "
        "EXT-opcode check walks the stream without decoding its strings. The log is looked at once per load "
        "(`lookup.current_row`, the *log catch-up* row); the reads take their locations from the state "
        "as folded (`VersionReader.locate` through `ledger.cached()`), with no further look.")


def _resave(run: Run, f: _Figures) -> str:
    resave, content = f.v("lightgbm", "unchanged re-save"), f.v("lightgbm", "to_content")
    commit = f.v("lightgbm", "unchanged re-save phase: log commit")
    floor = f.v("lightgbm", "floor: one durable commit")
    return (f"**Unchanged re-save** ({resave:.2f} ms against to_content {content:.2f} ms + one durable commit "
            f"{floor:.2f} ms + 1): no pack byte is written; the commit's durable create took {commit:.2f} ms in the "
            "instrumented pass, so the allowance of 1 ms over to_content alone holds only when this disk's fsync "
            "pair is fast.")


def _concurrency(run: Run, f: _Figures) -> str:
    pair = f.get("concurrency", "2 processes × ", "1 process")
    machine = f.get("concurrency", "machine: 2 processes only pickling")
    lost = f.v("concurrency", "2 processes: lost races per save")
    return (f"**Two processes** got {pair.ratio:.2f}× one process's throughput; the same two processes only "
            f"pickling the same models, with no store, got {machine.ratio:.2f}× — that is what the machine gave a "
            f"second process during this run. Lost races averaged {lost:.2f} per save; the per-phase rows of the "
            "section show every phase, CPU-only ones included, slowing down alike, which points at the shared "
            "cores and disk rather than at the store.")


def _scale(run: Run, f: _Figures) -> str:
    first = f.get("scale_store", "first list_models() in a new process")
    decode = f.v("scale_store", "first list_models() phase: decode checkpoint")
    phases_total = sum(r.value for r in f.results if r.scenario == "scale_store"
                       and r.metric.startswith("first list_models() phase: "))
    listing = f.v("scale_store", "list_models() again with nothing new")
    try:
        to_md = f"; {f.v('scale_store', 'first list_models() phase: rows to ModelMetadata') * 1e3:.0f} ms of the " \
                "new process's instrumented listing"
    except KeyError:  # under a millisecond: the phase row is left out
        to_md = ""
    seen = f.get("scale_store", "after another process's save: next list_models()")
    n_models = seen.metric.rsplit("(", 1)[1].split()[0]
    label = first.metric.rsplit("(", 1)[1].split(", ")[0]
    sizes = {r.metric.rsplit(": ", 1)[1]: r for r in f.results
             if r.scenario == "scale_store" and r.metric.startswith("on disk (")}
    ck = sizes["checkpoints"]
    rest = sum(sizes[k].value for k in ("log", "packs") if k in sizes)
    n_ck = int(ck.note.split()[0]) if ck.note else 0
    weight = ("more than the log and the packs together" if ck.value > rest else
              f"{ck.value / rest:.0%} of the log and the packs together" if rest else "")
    kept = (f" A checkpoint holds the whole state, so keeping every one grows them with the square of the "
            f"history: this store's {n_ck} take {ck.value:,.0f} MiB, {weight}." if n_ck > 2 else
            f" {n_ck} checkpoints are kept ({ck.value:,.0f} MiB, {weight}).")
    return (
        f"**The store of {label}**: a new process's first listing took {first.value:.2f} s; in a separate "
        f"instrumented run, {decode:.2f} s ({decode / phases_total:.0%} of that run's time) went to decoding the "
        "newest checkpoint (one zstd JSON document of the whole state). "
        f"After another process's save the next `list_models()` took {seen.value:.1f} ms, of which the catch-up "
        f"is one read of the next log file: the same call with nothing new takes {listing:.1f} ms, most of it "
        f"building a `ModelMetadata` per model ({n_models} here{to_md}), the rest filtering and sorting the "
        "heads, so this target's margin shrinks with the number of models, not of versions. On disk: "
        + ", ".join(f"{k} {r.value:,.1f} MiB" for k, r in sizes.items()) + "." + kept)


def _index(run: Run, f: _Figures) -> str:
    fold = [r for r in f.results if r.scenario == "scale_store" and r.metric.startswith("index catch-up: fold ")]
    big = max(fold, key=lambda r: int(r.metric.split("fold ")[1].split()[0].replace(",", "")))
    n = big.metric.split("fold ")[1].split()[0]
    ph = {r.metric.split("phase: ", 1)[1]: r.value for r in f.results
          if r.scenario == "scale_store" and r.metric.startswith(f"index catch-up of {n} commits, phase: ")}
    top = sorted(ph.items(), key=lambda kv: -kv[1])
    return (
        f"**Index catch-up** of {n} commits into a new index took {big.value:.1f} s: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in top)
        + ". Reading the commit files is the largest part: on a folder `Log.after` reads one position at a "
        "time, and each `LocalBackend.get` walks from the store root to `log/` with an `O_NOFOLLOW` open per "
        "folder (three opens and closes per commit) before reading it. Keeping the `log/` folder's descriptor "
        "open for a catch-up, or reading ahead with a few threads as the S3 path already does, would cut "
        "that part; parsing each commit's JSON back into operations is the next one. "
        "*catalog open + close* includes creating the new index's schema and committing each batch.")


def _history(run: Run, f: _Figures) -> str:
    hist = f.get("catalog_scale", "history() of a 1,000-version model")
    cpu = f.get("catalog_scale", "history(), CPU time")
    small = next(r for r in f.results
                 if r.scenario == "catalog_scale" and r.metric.endswith("(model_id index)"))
    size = f.get("catalog_scale", "head lookup p50").metric.rsplit("(", 1)[1].split(", ")[0]
    tail = hist.note.split("newest ", 1)[1].split(" ", 1)[0] if "newest " in hist.note else "its newest"
    rewrite = next((r for r in f.results if r.scenario == "catalog_scale"
                    and r.metric.startswith("setup: put versions in model order")), None)
    return (
        f"**history() at {size}** ({hist.value:.1f} ms, {cpu.value:.1f} ms of CPU, target 20): the catalog "
        "keeps the versions table in (model_id, version) order (`catalog/cluster.py`): the fold appends "
        "versions in log order, and once 32,768 of them are out of order the next catch-up rewrites the "
        "table in model order (a new table from the old one's definition, filled with `INSERT … ORDER BY "
        "model_id, version`, swapped in with its index, in one transaction"
        + (f"; {rewrite.value:.1f} s here" if rewrite else "")
        + "). A model of 64 versions or more is then read with DuckDB kept off the `versions_model_id` ART "
        "index (`SET index_scan_max_count = 0`, `index_scan_percentage = 0`, reset afterwards): it reads "
        "the row group whose min/max admit the model, and the tail appended since the last rewrite, instead "
        "of fetching each row from a different vector through the index. The figure is measured with "
        f"{tail} versions in the tail, the most the catalog leaves, so a history read right after a rewrite "
        "is faster. A model of a few versions still goes through the index: "
        f"{small.value:.2f} ms for a {small.metric.split(' of a ')[1].split('-')[0]}-version model. About "
        "half of the 1,000-version history is turning rows into values (each version's metadata JSON "
        "parsed, its times and parents).")


def _s3(run: Run, f: _Figures) -> str:
    first = f.get("s3_scale", "first list_models() on a new machine")
    decode = f.get("s3_scale", "first list_models() phase: decode checkpoint")
    catch = f.get("s3_scale", "catch-up of ")
    slow = f.get("s3_scale", "catch-up 20 ms added to each GET: rate")
    return (
        f"**A new machine on SeaweedFS** ({first.value:.2f} s for the first listing, target 5; "
        f"{first.note}, and the bucket check at open, one delimited LIST made through obstore directly, not "
        "counted): one GET is the newest checkpoint, one the commit it is anchored at, the others the "
        f"commits after it, each checked (digest, chain, position) and folded. Decoding the checkpoint "
        f"({decode.value:.2f} s) is the largest part; it runs with Python's cyclic garbage collector paused, "
        "which had rescanned the millions of objects being built every few hundred allocations (3.4 s "
        "against 1.5 s at 100,000 versions in a trial). Commits are fetched with up to 256 GETs in flight "
        "from 64 threads while the ones before them are folded: a catch-up of "
        f"{catch.metric.split('catch-up of ')[1].split(' commits')[0]} commits took {catch.value:.0f} ms, and "
        f"{slow.value:,.0f} commits/s with 20 ms added to each GET (in a trial, the former 64-at-a-time "
        "batches from 8 threads folded ~320 commits/s over such a link; a process restarted behind a log "
        f"growing ~40 commits/s now catches up {slow.value / 40:.0f}× faster than it grows).")


def _large(run: Run, f: _Figures) -> str:
    first = f.get("large_array", "first save", "first release: first save")
    resave = f.get("large_array", "unchanged re-save", "first release: unchanged re-save")
    load = f.get("large_array", "load, verified, warm cache", "first release: load, verified, warm")
    size = f.get("large_array", "model size")
    return (f"**Large models** ({size.value:,.0f} {size.unit}): against the first release's core in the same run, "
            f"first save {first.ratio:.2f}×, unchanged re-save {resave.ratio:.2f}×, "
            f"verified warm load {load.ratio:.2f}× (above 1× is faster now). The log design left the large-array "
            "path itself as it was "
            "(chunking, packs — now with a 16-byte nonce —, O_DIRECT writes, verified preadv reads); what "
            "it removed is the file lock, the DuckDB open and the catalog statements around each operation.")


NOTES: tuple[Callable[[Run, _Figures], str], ...] = (_within_noise, _save, _load, _resave, _concurrency, _scale,
                                                     _index, _history, _s3, _large)


def notes(run: Run) -> str:
    """Markdown bullets for the notes section (those whose figures this run has)."""
    f = _Figures(run)
    out = []
    for note in NOTES:
        try:
            out.append("- " + note(run, f))
        except (KeyError, ValueError, IndexError, ZeroDivisionError, TypeError):
            continue
    return "\n".join(out)
