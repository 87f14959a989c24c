"""A real S3-protocol server on 127.0.0.1 for the tests: moto's standalone server.

One server per test session (per xdist worker), emptied before each test that asks for
it through ``POST /moto-api/reset``. Every client is pointed at it with explicit keys,
so no request ever leaves the loopback interface.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

KEYS = {"access_key": "testing-access-key", "secret_key": "testing-secret-key"}
BUCKET = "cas-test"
_REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """A ``python -m moto.server`` subprocess bound to 127.0.0.1; its request log is kept."""

    def __init__(self, log_dir: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"moto-{self.port}.log"
        self._log = open(self.log_path, "ab")
        env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", AWS_ACCESS_KEY_ID=KEYS["access_key"],
                   AWS_SECRET_ACCESS_KEY=KEYS["secret_key"], AWS_DEFAULT_REGION="us-east-1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(timeout=30.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                self.reset()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto server not ready on {self.endpoint} after {timeout:.0f} s")

    def reset(self) -> None:
        """Empty every bucket (moto's own reset endpoint)."""
        req = urllib.request.Request(f"http://{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()

    def options(self, **extra: object) -> dict[str, object]:
        """Backend options that reach this server: endpoint, http, explicit test keys."""
        return {"endpoint_override": self.endpoint, "scheme": "http", "region": "us-east-1",
                **KEYS, **extra}

    def env(self) -> dict[str, str]:
        """The same settings as AWS_* environment variables (for the CLI)."""
        return {"AWS_ENDPOINT_URL": f"http://{self.endpoint}", "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": KEYS["access_key"], "AWS_SECRET_ACCESS_KEY": KEYS["secret_key"],
                "AWS_EC2_METADATA_DISABLED": "true"}

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def requests_since(self, offset: int) -> Counter[str]:
        """Requests served since ``offset`` of the log, counted by method (``PUT``, ``GET``…)."""
        # The server logs a request when it sends the response headers, i.e. before the
        # client sees the response: nothing to wait for once the call has returned.
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return Counter(m.group(1) for m in _REQUEST.finditer(text)
                       if not m.group(2).startswith("/moto-api"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[MotoServer]:
    """A moto S3 server on 127.0.0.1, started once and stopped at the end of the session."""
    pytest.importorskip("moto.server", reason="install the test extra: pip install -e '.[test]'")
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: MotoServer) -> MotoServer:
    """The session's server, emptied for this test."""
    s3_server.reset()
    return s3_server
