"""Rendering for the CLI: aligned tables on a terminal, JSON for scripts, progress bars.

``print`` and terminal handling live here only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, TextIO

from ..text import cell_text


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if is_dataclass(obj) and not isinstance(obj, type):  # an instance; a dataclass itself is a str
        return asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Output:
    """Where a command writes: stdout for results, stderr for errors and progress."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.json_mode = False

    def json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, default=_default, indent=2, sort_keys=True) + "\n")

    def json_line(self, value: Any) -> None:
        """One compact JSON document on one line (a stream of reports, one per line)."""
        self.stdout.write(json.dumps(value, default=_default, sort_keys=True) + "\n")

    def binary(self, data: bytes) -> None:
        """Raw bytes to stdout, after any text already written there."""
        self.stdout.flush()
        self.stdout.buffer.write(data)
        self.stdout.buffer.flush()

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def error(self, text: str) -> None:
        self.stderr.write(f"cas-repo: error: {text}\n")

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """An aligned text table; numbers right-aligned."""
        cells = [[cell_text(v) for v in r] for r in rows]
        widths = [len(h) for h in headers]
        for r in cells:
            for i, v in enumerate(r):
                widths[i] = max(widths[i], len(v))
        numeric = [all(_is_num(r[i]) for r in cells) if cells else False for i in range(len(headers))]

        def fmt(vals: Sequence[str]) -> str:
            return "  ".join(v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i])
                             for i, v in enumerate(vals)).rstrip()

        self.line(fmt(list(headers)))
        self.line(fmt(["-" * w for w in widths]))
        for r in cells:
            self.line(fmt(r))

    def progress(self, total: int | None, label: str) -> Progress:
        return Progress(self.stderr, total, label)


def _is_num(s: str) -> bool:
    try:
        float(s.replace(",", ""))
        return True
    except ValueError:
        return s == "-"


class Progress:
    """A progress bar on a terminal; silent when stderr is piped."""

    def __init__(self, stream: TextIO, total: int | None, label: str) -> None:
        self.stream = stream
        self.total = total
        self.label = label
        self.done = 0
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            if self.total:
                frac = self.done / self.total
                bar = "#" * int(frac * 30)
                self.stream.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total}")
            else:
                self.stream.write(f"\r{self.label} {self.done}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
