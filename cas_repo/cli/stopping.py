"""Long-running commands (watch, mirror --follow, maintain --every) end on SIGTERM or Ctrl-C
after the work in progress, not in the middle of it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def stopping_on_signals() -> Iterator[threading.Event]:
    """An event SIGTERM and SIGINT set (instead of ending the process); the handlers
    that were there before are put back on leaving."""
    stop = threading.Event()

    def ask(signum: int, frame: FrameType | None) -> None:
        stop.set()

    before = {s: signal.signal(s, ask) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in before.items():
            signal.signal(s, h)
