"""A TCP proxy in front of a loopback S3 server that breaks the next request on demand:
cut it off midway through its body, or let the server apply it and lose its answer."""

from __future__ import annotations

import socket
import threading


class _Connection:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.mode: str | None = None
        self.budget = 0
        self._closed = threading.Lock()

    def close(self) -> None:
        if self._closed.acquire(blocking=False):
            for s in (self.client, self.upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


class FaultyProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` (``host:port``) until a fault is armed."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._faults: list[tuple[str, int]] = []
        self._connections: list[_Connection] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_next_request(self, after: int) -> None:
        """Forward only the first ``after`` bytes of the next request, then drop the connection."""
        with self._lock:
            self._faults.append(("cut", after))

    def drop_next_answer(self) -> None:
        """Forward the next request whole, then drop the connection instead of the answer."""
        with self._lock:
            self._faults.append(("drop", 0))

    def refuse_next(self, requests: int) -> None:
        """Drop the next ``requests`` requests before any byte reaches the server."""
        with self._lock:
            self._faults.extend([("cut", 0)] * requests)

    def heal(self) -> None:
        """Forget every fault not yet applied."""
        with self._lock:
            self._faults.clear()

    def close(self) -> None:
        self._listener.close()
        for c in self._connections:
            c.close()

    def _take_fault(self) -> tuple[str, int] | None:
        """The next armed fault, in the order armed (each applies to one request)."""
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            c = _Connection(client, socket.create_connection(self._upstream))
            self._connections.append(c)
            threading.Thread(target=self._to_server, args=(c,), daemon=True).start()
            threading.Thread(target=self._to_client, args=(c,), daemon=True).start()

    def _to_server(self, c: _Connection) -> None:
        try:
            while data := c.client.recv(1 << 16):
                if c.mode is None and (fault := self._take_fault()) is not None:
                    c.mode, c.budget = fault  # faults are armed between requests: this one starts now
                if c.mode == "cut":
                    c.upstream.sendall(data[: c.budget])
                    c.budget -= len(data)
                    if c.budget <= 0:
                        return
                else:
                    c.upstream.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    def _to_client(self, c: _Connection) -> None:
        try:
            while data := c.upstream.recv(1 << 16):
                if c.mode == "drop":
                    return  # the server has answered, so it applied the request; the client never hears
                c.client.sendall(data)
        except OSError:
            pass
        finally:
            c.close()
