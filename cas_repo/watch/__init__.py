"""Watching a store: each change of its log handed to a command or a signed webhook, with a
crash-safe cursor (``cas-repo watch``; docs/watch.md)."""

from __future__ import annotations

from .cursor import Cursor, CursorFile
from .handlers import ExecHandler, Webhook, sign, verify
from .runner import WatchReport, describe, run_watch

__all__ = ["Cursor", "CursorFile", "ExecHandler", "WatchReport", "Webhook", "describe", "run_watch", "sign", "verify"]
