"""Scenario: ``cas-repo mirror`` — the first mirror of a store of many versions, then an
incremental run after one save: objects copied, requests to each side, seconds.

Both sides' backends are wrapped to count the requests the mirror makes (one count per
backend primitive: a LIST page stream counts once, as one listing). The source is built
with fsync off (setup only); the target is written as the mirror writes it, fsync on.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cas_repo import ModelStore
from cas_repo.maintenance.mirror import Mirror, MirrorReport
from cas_repo.maintenance.replica import open_location
from cas_repo.objects.backend import Buffer, ObjectBackend, ObjectInfo

from . import models
from .framework import Result, scratch

TITLE = "Mirror"
ABOUT = (
    "`cas-repo mirror SRC DST`: the first mirror of a store of tiny models (10 models × 1,000 "
    "versions: 10,000 commits, 10,000 packs, its checkpoints), then an incremental run after one "
    "more save; folder → folder and folder → SeaweedFS (`weed mini` on loopback). Requests are "
    "counted per backend call (a listing counts once). No targets: the figures size the runs.")


class Counting(ObjectBackend):
    """A backend that counts the calls made to another (reads, writes, listings)."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner, self.calls = inner, Counter[str]()
        self.url, self.read_concurrency = inner.url, inner.read_concurrency
        self.preferred_pack_size = inner.preferred_pack_size

    def put(self, key: str, parts: Sequence[Buffer]) -> bool:
        self.calls["put"] += 1
        return self.inner.put(key, parts)

    def create(self, key: str, data: bytes) -> bool:
        self.calls["create"] += 1
        return self.inner.create(key, data)

    def get(self, key: str) -> bytes | None:
        self.calls["get"] += 1
        return self.inner.get(key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        self.calls["get"] += 1
        return self.inner.read_range(key, offset, length)

    def stat(self, key: str) -> ObjectInfo:
        self.calls["head"] += 1
        return self.inner.stat(key)

    def exists(self, key: str) -> bool:
        self.calls["head"] += 1
        return self.inner.exists(key)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        self.calls["list"] += 1
        return self.inner.list(prefix, start_after)

    def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        self.inner.delete(key)

    def touch(self, key: str) -> None:
        self.calls["touch"] += 1
        self.inner.touch(key)

    def close(self) -> None:
        self.inner.close()


def _build(root: Path, n_models: int, versions: int) -> None:
    with ModelStore(root, backend_options={"fsync": False}, catalog=root.parent / "src.duckdb") as s:
        for v in range(versions):
            for m in range(n_models):
                s.save_model(models.tiny_model(m, v), models.metadata(f"m{m}"))


def _requests(src: Counting, dst: Counting) -> str:
    def side(c: Counter[str]) -> str:
        return " + ".join(f"{n} {k}" for k, n in sorted(c.items())) or "none"

    return f"source: {side(src.calls)}; target: {side(dst.calls)}"


def _run(source: ObjectBackend, target: ObjectBackend) -> tuple[MirrorReport, float, str]:
    src, dst = Counting(source), Counting(target)
    with Mirror(src, dst) as m:
        t = time.perf_counter()
        report = m.run()
        seconds = time.perf_counter() - t
    return report, seconds, _requests(src, dst)


def _case(label: str, src_root: Path, target: Any, extra: int) -> list[Result]:
    (location, options) = target
    first, seconds, requests = _run(open_location(src_root, None, source=True),
                                    open_location(location, options, source=False))
    rows = [Result("mirror", f"{label}: first mirror of {first.commits:,} versions", seconds, "s",
                   note=f"{first.commits:,} commits, {first.packs:,} packs, {first.checkpoints} checkpoints, "
                        f"{first.bytes / 2**20:.1f} MiB; requests: {requests}")]
    with ModelStore(src_root, catalog=src_root.parent / "src.duckdb") as s:
        s.save_model(models.tiny_model(0, extra), models.metadata("m0"))
    one, seconds, requests = _run(open_location(src_root, None, source=True),
                                  open_location(location, options, source=False))
    rows.append(Result("mirror", f"{label}: incremental run after one save", seconds * 1e3, "ms",
                       note=f"{one.commits} commit, {one.packs} pack, {one.bytes:,} bytes; requests: {requests}"))
    return rows


def run(quick: bool) -> list[Result]:
    n_models, per_model = (5, 4) if quick else (10, 1000)
    rows: list[Result] = []
    with scratch("mirror") as base:
        src = base / "src"
        t = time.perf_counter()
        _build(src, n_models, per_model)
        build = time.perf_counter() - t
        rows += _case("folder → folder", src, (base / "dst", None), per_model)
        if not quick:  # a SeaweedFS start-up is longer than a smoke test should take
            from tools.s3_servers import SeaweedServer, weed_binary

            if weed_binary() is not None:
                server = SeaweedServer(base / "seaweedfs", "mirror")
                try:
                    rows += _case("folder → SeaweedFS", src, ("s3://mirror/bench", server.options()),
                                  per_model + 1)
                finally:
                    server.stop()
        rows[0] = Result(**{**rows[0].as_dict(), "note": rows[0].note + f"; source built in {build:.0f} s"})
    return rows
