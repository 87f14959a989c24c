"""uvicorn for the web view: serve on one socket, optionally open a browser once listening."""

from __future__ import annotations

import asyncio
import socket
import threading
import webbrowser
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, open_url: str | None) -> None:
        super().__init__(config)
        self.open_url = open_url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.open_url and not self.should_exit:
            await asyncio.to_thread(_open_browser, self.open_url)


def _open_browser(url: str) -> None:
    try:
        webbrowser.get()  # raises where no browser exists (a server, CI): then only the URL is printed
    except webbrowser.Error:
        return
    webbrowser.open(url)


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def serve(app: Any, sock: socket.socket, *, open_browser: bool = False) -> None:
    """Serve ``app`` on ``sock`` until interrupted."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    _Server(config, url_of(sock) if open_browser else None).run(sockets=[sock])


class Background:
    """The app served from a thread of this process (for tests and tools): ``with Background(app) as url``."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        self.sock = listen(host, 0)
        self.url = url_of(self.sock)
        self._server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"), None)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self.sock.close()
