"""The harness's building blocks: results, timing with repeats, targets, memory, machine facts."""

from __future__ import annotations

import gc
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions a report names (missing ones are reported as "-").
PACKAGES = ("numpy", "duckdb", "pyarrow", "blake3", "pyfastcdc", "pyqlib", "lightgbm", "mlflow", "pandas")

TIME_UNITS = {"s": 1.0, "ms": 1e3, "µs": 1e6}


@dataclass(frozen=True, slots=True)
class Result:
    """One measured figure, optionally compared with a baseline measured in the same run.

    ``ratio`` is the speed-up (baseline time ÷ our time) when ``unit`` is a time, and
    ours ÷ baseline for everything else (bytes, throughput, memory, counts). ``target``
    is the bound as text (``"≥ 5×"``, ``"≤ 5 ms"``); ``met`` is None when there is none.
    ``low``/``high`` are the min and max over ``repeats`` runs when ``value`` is a median;
    ``ci`` is the median's (or the ratio's) ~95 % confidence interval, used to say which
    verdicts noise could flip.
    """

    scenario: str
    metric: str
    value: float
    unit: str
    baseline: str | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    low: float | None = None
    high: float | None = None
    repeats: int = 1
    note: str = ""
    #: ~95 % confidence interval of the figure a target judges (the median, or the ratio
    #: once a baseline is applied), from the runs' order statistics; None when unknown.
    ci: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall-clock seconds of repeated runs of one operation."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median_ci(self) -> tuple[float, float]:
        """A ~95 % confidence interval of the median (order statistics; min–max below 6 runs)."""
        return median_ci(self.samples)

    def result(self, scenario: str, metric: str, unit: str = "ms", note: str = "") -> Result:
        k = TIME_UNITS[unit]
        lo, hi = self.median_ci
        return Result(scenario, metric, self.median * k, unit, low=self.min * k, high=self.max * k,
                      repeats=self.n, note=note, ci=(lo * k, hi * k))


def median_ci(samples: tuple[float, ...] | list[float]) -> tuple[float, float]:
    """A distribution-free ~95 % confidence interval of the median of ``samples``: the order
    statistics n/2 ∓ 0.98·√n (1-based), clamped to the min and max."""
    xs = sorted(samples)
    n = len(xs)
    half = 0.98 * math.sqrt(n)
    lo = max(1, math.floor(n / 2 - half))
    hi = min(n, math.ceil(n / 2 + 1 + half))
    return xs[lo - 1], xs[hi - 1]


def collect() -> None:
    """Collect garbage before a timed call, then freeze what survived.

    A full collection walks every tracked object: with Qlib, torch and pandas imported
    that is ~0.2 s, paid before every sample. Frozen survivors are skipped by later
    collections, so each one walks only what was made since the last.
    """
    gc.collect()
    gc.freeze()


def measure(fn: Callable[[], Any], repeats: int, *, setup: Callable[[], Any] | None = None,
            warmup: int = 1) -> Timing:
    """Time ``fn`` ``repeats`` times (after ``warmup`` untimed runs); ``setup`` runs untimed before each.

    The garbage collector is paused while ``fn`` runs so a collection triggered by an
    earlier repeat does not land in a later one.
    """
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    samples = []
    for _ in range(repeats):
        if setup:
            setup()
        collect()
        gc.disable()
        try:
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        finally:
            gc.enable()
    return Timing(tuple(samples))


def measure_many(ops: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Time several operations round-robin, ``repeats`` rounds (after ``warmup`` untimed ones).

    On a shared machine the load drifts over minutes; interleaving puts every operation
    under the same drift, so the ratios between them hold even when absolute times move.
    """
    for _ in range(warmup):
        for fn in ops.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(repeats):
        for name, fn in ops.items():
            collect()
            gc.disable()
            try:
                t = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t)
            finally:
                gc.enable()
    return {name: Timing(tuple(v)) for name, v in samples.items()}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of ``fn`` took, and its return value."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


# -- comparing with baselines and targets ----------------------------------------------------


def _check(x: float, op: str, bound: float) -> bool:
    return x >= bound if op == ">=" else x <= bound


def target_text(op: str, bound: float, suffix: str = "×") -> str:
    sign = "≥" if op == ">=" else "≤"
    return f"{sign} {bound:g}{suffix if suffix in ('×', '%') else ' ' + suffix}"


def faster_than(r: Result, baseline: str, base: Timing | float, need: float | None = None) -> Result:
    """``r`` (a time) compared with a baseline time: ratio = baseline ÷ ours (speed-up)."""
    base_s = base.median if isinstance(base, Timing) else base
    ours_s = r.value / TIME_UNITS[r.unit]
    ratio = base_s / ours_s if ours_s > 0 else math.inf
    ci = None
    if r.ci is not None and r.ci[0] > 0:
        k = TIME_UNITS[r.unit]
        b_lo, b_hi = base.median_ci if isinstance(base, Timing) else (base_s, base_s)
        ci = (b_lo / (r.ci[1] / k), b_hi / (r.ci[0] / k))
    if need is None:
        return replace(r, baseline=baseline, ratio=ratio, ci=ci)
    return replace(r, baseline=baseline, ratio=ratio, target=target_text(">=", need), met=ratio >= need, ci=ci)


def relative_to(r: Result, baseline: str, base: float, op: str | None = None,
                bound: float | None = None) -> Result:
    """``r`` compared with a baseline of the same unit: ratio = ours ÷ baseline."""
    ratio = r.value / base if base else math.inf
    ci = (r.ci[0] / base, r.ci[1] / base) if r.ci is not None and base else None
    if op is None or bound is None:
        return replace(r, baseline=baseline, ratio=ratio, ci=ci)
    return replace(r, baseline=baseline, ratio=ratio, target=target_text(op, bound), met=_check(ratio, op, bound),
                   ci=ci)


def bounded(r: Result, op: str, bound: float) -> Result:
    """``r`` checked against an absolute bound in its own unit (e.g. save ≤ 5 ms)."""
    return replace(r, target=target_text(op, bound, r.unit), met=_check(r.value, op, bound))


def within(r: Result, label: str, base: Timing | float, allowance: float) -> Result:
    """``r`` (a time) checked against a baseline time plus an allowance in ``r``'s unit:
    "≤ pickle.dumps + 1.5 ms". The target names the bound it computed, so the report can
    tell how close the figure came."""
    k = TIME_UNITS[r.unit]
    base_v = (base.median if isinstance(base, Timing) else base) * k
    bound = base_v + allowance
    ci = r.ci
    if ci is not None and isinstance(base, Timing):
        # The baseline's own uncertainty moves the bound: widen our interval by it.
        b_lo, b_hi = (x * k for x in base.median_ci)
        ci = (ci[0] - (b_hi - base_v), ci[1] + (base_v - b_lo))
    return replace(r, target=f"≤ {bound:.3g} {r.unit} ({label} {base_v:.3g} + {allowance:g})",
                   met=r.value <= bound, ci=ci)


def no_slower_than(r: Result, baseline: str, base: Timing | float, factor: float) -> Result:
    """``r`` (a time) at most ``factor`` × a baseline's time; the ratio stays a speed-up."""
    r = faster_than(r, baseline, base)
    need = 1 / factor
    return replace(r, target=f"≥ {need:.3g}× (≤ {factor:g}× its time)", met=r.ratio is not None and r.ratio >= need)


def percentile(samples: list[float] | tuple[float, ...], q: float) -> float:
    """The ``q``-th percentile (0–100) by the nearest-rank method (p99 of 80 samples is the 80th)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def explain(r: Result, why_missed: str) -> Result:
    """Attach ``why_missed`` (why, and what would close it) when ``r`` missed its target."""
    return replace(r, note=why_missed) if r.met is False else r


# -- scratch space and bytes on disk ---------------------------------------------------------

CACHE_ENV = "CAS_BENCH_CACHE"


def cache_dir() -> Path:
    """Where slow-to-build fixtures (a 100k-version store, a 1M-row catalog) are kept between
    runs: ``$CAS_BENCH_CACHE``, else ``.bench/`` in the repository (ignored by git)."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".bench"
    path.mkdir(parents=True, exist_ok=True)
    return path



@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temp folder (under ``CAS_BENCH_TMP`` or the system temp dir), removed afterwards."""
    base = os.environ.get("CAS_BENCH_TMP") or None
    path = Path(tempfile.mkdtemp(prefix=f"cas-bench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def bytes_on_disk(root: str | os.PathLike[str]) -> int:
    """Apparent size of every regular file under ``root`` (what a user's ``du -b`` shows)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def drop_page_cache(path: str | os.PathLike[str]) -> str:
    """Empty the page cache for a cold read: the whole machine's (``sync`` then
    ``/proc/sys/vm/drop_caches``) where allowed, else the files under ``path``; says which."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        drop_file_cache(path)
        return "fadvise"


def drop_file_cache(path: str | os.PathLike[str]) -> None:
    """Ask the kernel to forget the cached pages of every file under ``path`` (best effort)."""
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# -- memory ----------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_bytes() -> int:
    """This process's resident set size now."""
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """This process's peak resident set size since start or the last :func:`reset_peak_rss`."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux ≥ 4.0); False if the kernel refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# -- the machine -----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _filesystem(path: Path) -> str:
    """``device (fstype)`` of the mount holding ``path``."""
    best, desc = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if str(path).startswith(mnt) and len(mnt) >= len(best):
                    best, desc = mnt, f"{dev} ({fstype}, mounted at {mnt})"
    except OSError:
        pass
    usage = shutil.disk_usage(path)
    return f"{desc}, {usage.free / 2**30:.0f} GiB free of {usage.total / 2**30:.0f} GiB"


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "-"


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, the scratch disk, Python and library versions, date, load."""
    scratch_dir = Path(os.environ.get("CAS_BENCH_TMP") or tempfile.gettempdir()).resolve()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_mem_total() / 2**30, 1),
        "disk": _filesystem(scratch_dir),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in PACKAGES},
        "loadavg": os.getloadavg(),
    }
