"""A read-only web view of a store: models, a model's versions, a version's lineage and
diffs, the dedup audit and a SQL box, each as of any time (``cas-repo ui``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..repository import ModelStore


def run(store: ModelStore, host: str = "127.0.0.1", port: int = 8000, *, open_browser: bool = True,
        announce=print) -> None:
    """Serve the web view of ``store`` on ``host:port`` until interrupted."""
    from .app import create_app
    from .server import listen, serve, url_of

    sock = listen(host, port)
    announce(f"cas-repo ui: serving {store.url} read-only at {url_of(sock)} (Ctrl-C stops)")
    serve(create_app(store), sock, open_browser=open_browser)
