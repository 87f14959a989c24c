"""``cas-repo watch``: printing, --exec, --post (signed, retried), the cursor across crashes, the lock."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cas_repo import ModelMetadata, ModelStore
from cas_repo.cli import main
from cas_repo.watch import CursorFile

from ..s3_server import fresh_url

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-for-the-test"


def md(model_id: str) -> ModelMetadata:
    return ModelMetadata(model_id, "exp", "LGBM", {"num_leaves": 31}, {"IC": 0.05}, datetime(2026, 1, 2))


@pytest.fixture
def root(tmp_path) -> Path:
    with ModelStore(tmp_path / "cas") as store:
        store.save_model({"w": 1}, md("m1"))
        store.set_alias("m1", "prod", 1)
        store.save_model({"w": 2}, md("m2"))
    return tmp_path / "cas"


def run(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--repo", str(root), "watch", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def ids(out: str) -> list[str]:
    return [json.loads(line)["id"] for line in out.splitlines()]


def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.01)


def test_json_lines_filters_and_once(root, capsys):
    code, out, err = run(capsys, root, "--from-start", "--once", "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert (code, err) == (0, "") and [e["kind"] for e in events] == ["save", "alias", "save"]
    assert [e["position"] for e in events] == [1, 2, 3] and events[1]["alias"] == "prod"
    assert run(capsys, root, "--from-start", "--once", "--json", "--alias", "prod")[1].count("\n") == 1
    code, out, _ = run(capsys, root, "--from-start", "--once", "--model", "m*", "--kind", "save")
    assert code == 0 and [line.split()[2:4] for line in out.splitlines()] == [["save", "m1@1"], ["save", "m2@1"]]
    assert run(capsys, root, "--once", "--json")[:2] == (0, "")  # from the end: nothing new
    code, _, err = run(capsys, root, "--once", "--kind", "saved")
    assert code == 2 and "invalid choice: 'saved'" in err


def test_exec_gets_the_event_on_stdin_and_in_its_environment(root, tmp_path, capsys):
    out_dir = tmp_path / "seen"
    out_dir.mkdir()
    command = ('cat > "$OUT/$CAS_REPO_POSITION.json"; '
               'echo "$CAS_REPO_EVENT_ID|$CAS_REPO_KIND|$CAS_REPO_MODEL|$CAS_REPO_VERSION|$CAS_REPO_ALIAS" '
               '> "$OUT/$CAS_REPO_POSITION.env"; printf %s "$CAS_REPO_EVENT" > "$OUT/$CAS_REPO_POSITION.var"')
    os.environ["OUT"] = str(out_dir)
    try:
        assert run(capsys, root, "--from-start", "--once", "--exec", command)[0] == 0
    finally:
        del os.environ["OUT"]
    stdin = json.loads((out_dir / "2.json").read_text())
    assert stdin == json.loads((out_dir / "2.var").read_text())
    assert (out_dir / "2.env").read_text() == f"{stdin['id']}|alias|m1|1|prod\n"
    assert (out_dir / "1.env").read_text().endswith("|save|m1|1|\n")


def test_a_cursor_resumes_after_the_last_change_and_starts_at_the_end_when_new(root, tmp_path, capsys):
    cursor = tmp_path / "watch.cursor"
    code, out, _ = run(capsys, root, "--cursor", str(cursor), "--once", "--json")
    assert (code, out) == (0, "") and json.loads(cursor.read_text())["position"] == 3  # written at once
    with ModelStore(root) as store:
        store.set_alias("m2", "prod", 1)
        store.set_tags("m2", {"k": "v"})
    code, out, _ = run(capsys, root, "--cursor", str(cursor), "--once", "--json", "--from-start")
    assert code == 0 and [json.loads(line)["position"] for line in out.splitlines()] == [4, 5]
    assert {k: json.loads(cursor.read_text())[k] for k in ("position", "index")} == {"position": 5, "index": 0}
    assert run(capsys, root, "--cursor", str(cursor), "--once", "--json")[:2] == (0, "")
    # A new cursor with --after starts there.
    code, out, _ = run(capsys, root, "--cursor", str(tmp_path / "other"), "--once", "--json", "--after", "3")
    assert [json.loads(line)["position"] for line in out.splitlines()] == [4, 5]


def test_a_cursor_with_narrow_filters_moves_past_the_commits_it_does_not_want(root, tmp_path, capsys):
    cursor = tmp_path / "prod.cursor"
    code, out, _ = run(capsys, root, "--cursor", str(cursor), "--once", "--json", "--from-start", "--alias", "prod")
    assert code == 0 and ids(out) and json.loads(cursor.read_text())["position"] == 3
    with ModelStore(root) as store:
        for i in range(3):
            store.save_model({"w": 10 + i}, md("m3"))
    code, out, _ = run(capsys, root, "--cursor", str(cursor), "--once", "--json", "--alias", "prod")
    # Nothing wanted, yet the cursor records that commits 4 to 6 were read.
    assert (code, out) == (0, "") and {k: json.loads(cursor.read_text())[k] for k in ("position", "index")} == \
        {"position": 6, "index": None}


def test_a_cursor_in_use_of_another_store_or_past_the_end_is_refused(root, tmp_path, capsys):
    cursor = tmp_path / "c"
    with CursorFile(cursor):
        code, _, err = run(capsys, root, "--cursor", str(cursor), "--once")
    assert code == 1 and "another watcher is using the cursor" in err
    assert run(capsys, root, "--cursor", str(cursor), "--once")[0] == 0  # the lock went with its holder
    body = json.loads(cursor.read_text())
    cursor.write_text(json.dumps(dict(body, position=99)))
    code, _, err = run(capsys, root, "--cursor", str(cursor), "--once")
    assert code == 1 and "past the log's end (3)" in err and "cas-repo fsck" in err
    cursor.write_text(json.dumps(dict(body, store="0" * 32)))
    code, _, err = run(capsys, root, "--cursor", str(cursor), "--once")
    assert code == 1 and "belongs to another store" in err and "new --cursor" in err
    cursor.write_text("{not json")
    code, _, err = run(capsys, root, "--cursor", str(cursor), "--once")
    assert code == 1 and "is not a watch cursor" in err


def test_a_failing_command_stops_the_watch_before_its_change(root, tmp_path, capsys):
    cursor = tmp_path / "c"
    code, _, err = run(capsys, root, "--cursor", str(cursor), "--from-start", "--once", "--retries", "2",
                       "--backoff", "0", "--exec", 'test "$CAS_REPO_KIND" != alias')
    assert code == 1 and ":2:0 (alias of m1@1 (prod), log position 2) was not handled" in err
    assert "exited with status 1; tried 3 times" in err and "restart `cas-repo watch` with the same --cursor" in err
    assert {k: json.loads(cursor.read_text())[k] for k in ("position", "index")} == {"position": 1, "index": 0}


# -- the webhook --------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on loopback that answers from a script and keeps what it received."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.answers = answers
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(*answers: tuple[int, dict[str, str]]) -> Receiver:
        made.append(Receiver(list(answers)))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_posted_events_carry_a_signature_the_receiver_verifies(root, receiver, capsys, monkeypatch):
    hook = receiver()
    code, _, err = run(capsys, root, "--from-start", "--once", "--post", hook.url)
    assert code == 2 and "CAS_REPO_WEBHOOK_SECRET, which is not set" in err and not hook.received
    monkeypatch.setenv("HOOK_KEY", SECRET)
    assert run(capsys, root, "--from-start", "--once", "--post", hook.url, "--secret-env", "HOOK_KEY")[0] == 0
    assert len(hook.received) == 3
    for headers, body in hook.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Cas-Repo-Signature-256"], expected)
        event = json.loads(body)
        assert headers["X-Cas-Repo-Event"] == event["kind"] and headers["X-Cas-Repo-Delivery"] == event["id"]
        assert abs(int(headers["X-Cas-Repo-Timestamp"]) - datetime.fromisoformat(event["sent_at"]).timestamp()) < 1
    assert [json.loads(b)["kind"] for _, b in hook.received] == ["save", "alias", "save"]
    assert run(capsys, root, "--from-start", "--once", "--post", hook.url, "--unsigned")[0] == 0
    assert "X-Cas-Repo-Signature-256" not in hook.received[-1][0]


def test_a_webhook_is_retried_after_failures_then_delivered(root, receiver, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CAS_REPO_WEBHOOK_SECRET", SECRET)
    hook = receiver((503, {}), (429, {"Retry-After": "0"}))
    cursor = tmp_path / "c"
    code, _, err = run(capsys, root, "--after", "2", "--once", "--cursor", str(cursor), "--post", hook.url,
                       "--backoff", "0.01")
    assert (code, err) == (0, "")
    assert [json.loads(b)["position"] for _, b in hook.received] == [3, 3, 3]
    assert len({h["X-Cas-Repo-Delivery"] for h, _ in hook.received}) == 1
    assert json.loads(cursor.read_text())["position"] == 3


def test_a_refusing_webhook_ends_the_watch_without_moving_the_cursor(root, receiver, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CAS_REPO_WEBHOOK_SECRET", SECRET)
    hook = receiver((403, {}))
    cursor = tmp_path / "c"
    code, _, err = run(capsys, root, "--from-start", "--once", "--cursor", str(cursor), "--post", hook.url)
    assert code == 1 and "refused the event: HTTP 403" in err and "tried once: the failure is permanent" in err
    assert len(hook.received) == 1 and ":1:0 (save of m1@1, log position 1)" in err
    assert {k: json.loads(cursor.read_text())[k] for k in ("position", "index")} == {"position": 0, "index": None}
    code, _, err = run(capsys, root, "--once", "--cursor", str(cursor), "--post", hook.url)  # the receiver is fixed
    assert code == 0 and len(hook.received) == 4 and json.loads(hook.received[1][1])["position"] == 1


# -- processes: kill -9, SIGTERM, a closed pipe, SeaweedFS -------------------------------------------


def _cli(root: str, *argv: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "cas_repo.cli", "--repo", root, "watch", *argv], env=env,
                            **kwargs)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_a_cursor_survives_kill_9_without_skipping_a_change(tmp_path):
    root = tmp_path / "cas"
    with ModelStore(root) as store:
        for i in range(24):
            store.save_model({"w": i}, md(f"m{i % 3}"))
        expected = [c.id for c in store.follow(0, idle_timeout=0)]
    seen, cursor = tmp_path / "seen", tmp_path / "cursor"
    handler = 'echo "$CAS_REPO_EVENT_ID" >> "$SEEN"'
    rng = random.Random(7)
    kills = 0
    while len(set(_lines(seen))) < len(expected) - 4:
        target = len(_lines(seen)) + rng.randint(1, 4)
        proc = _cli(str(root), "--from-start", "--cursor", str(cursor), "--exec", handler, env={"SEEN": str(seen)})
        try:
            until(lambda t=target, p=proc: len(_lines(seen)) >= t or p.poll() is not None,
                  "progress of the watcher")
        finally:
            proc.kill()  # SIGKILL: no handler, no cleanup; the cursor is wherever its last rename left it
            proc.wait()
        kills += 1
    done = _cli(str(root), "--cursor", str(cursor), "--once", "--exec", handler, env={"SEEN": str(seen)})
    assert done.wait(timeout=120) == 0
    counts = Counter(_lines(seen))
    assert set(counts) == set(expected)  # no change skipped
    assert kills >= 3 and sum(n - 1 for n in counts.values()) <= kills  # at most the interrupted one repeated, per kill
    first_seen = list(dict.fromkeys(_lines(seen)))
    assert first_seen == expected  # in log order


def test_sigterm_ends_the_watch_cleanly_after_the_current_handler(root, tmp_path):
    seen = tmp_path / "seen"
    proc = _cli(str(root), "--from-start", "--cursor", str(tmp_path / "c"), "--poll", "0.05",
                "--exec", 'echo "$CAS_REPO_POSITION" >> "$SEEN"', env={"SEEN": str(seen)}, stderr=subprocess.PIPE,
                text=True)
    try:
        until(lambda: len(_lines(seen)) == 3, "the three changes handled")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (0, "")
    assert json.loads((tmp_path / "c").read_text())["position"] == 3


def test_a_closed_pipe_ends_json_output_quietly(root):
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = _cli(str(root), "--from-start", "--json", stdout=write_end, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(write_end)
    assert (proc.returncode, err) == (141, "")


def test_watch_a_seaweedfs_store(seaweed, tmp_path, capsys, monkeypatch):
    url = fresh_url()
    with ModelStore(url, catalog=tmp_path / "index.duckdb", backend_options=seaweed.options()) as store:
        store.save_model({"w": 1}, md("m1"))
        store.set_alias("m1", "prod", 1)
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    cursor = tmp_path / "c"
    code, out, _ = run(capsys, url, "--from-start", "--once", "--json", "--cursor", str(cursor))  # type: ignore[arg-type]
    assert code == 0 and [json.loads(line)["kind"] for line in out.splitlines()] == ["save", "alias"]
    with ModelStore(url, catalog=tmp_path / "index.duckdb", backend_options=seaweed.options()) as store:
        store.log_metrics("m1", {"sharpe": 2.0})
    code, out, _ = run(capsys, url, "--once", "--json", "--cursor", str(cursor))  # type: ignore[arg-type]
    assert code == 0 and [json.loads(line)["details"]["metrics"] for line in out.splitlines()] == [{"sharpe": 2.0}]
