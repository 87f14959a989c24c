"""The web view over HTTP without a browser: GET only, downloads, errors, the command itself."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from markupsafe import escape

from cas_repo.errors import CasRepoError, InvalidAliasError, ModelNotFoundError

from .conftest import ALIASES_AS_OF, HOSTILE_AUTHOR, METRICS_AS_OF

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str, method: str = "GET") -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method)) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_no_route_accepts_anything_but_get(ui_url):
    for path in ("/", "/model?id=alpha", "/sql?q=SELECT+1", "/sql/download?q=SELECT+1"):
        for method in ("POST", "PUT", "DELETE"):
            assert _get(ui_url + path, method)[0] == 405, (path, method)


@pytest.mark.parametrize("path", ["/", "/model?id=evil-1", "/version?id=evil-1&v=1", "/model?id=alpha"])
def test_pages_forbid_scripts_and_outside_loads(ui_url, path):
    status, body, headers = _get(ui_url + path)
    assert status == 200
    assert "default-src 'none'" in headers["content-security-policy"]
    assert b"<script" not in body and b"http://" not in body.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")


def test_alias_names_are_validated_so_pages_show_only_plain_names(ui_store, ui_url):
    hostile = '"><script>alert("alias")</script>'
    with pytest.raises(InvalidAliasError) as caught:
        ui_store.set_alias("evil-1", hostile, 1)
    assert isinstance(caught.value, CasRepoError)
    assert "shadow-2" in ui_store.aliases("evil-1")
    for path in ("/", "/model?id=evil-1", "/version?id=evil-1&v=1"):
        names = re.findall(r'data-alias="([^"]*)"', _get(ui_url + path)[1].decode())
        assert "shadow-2" in names
        assert all(re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", n) for n in names), names


def test_models_page_aliases_as_they_stood(ui_url):
    now = _get(ui_url + "/")[1].decode()
    assert 'data-alias="prod" data-version="2"' in now and 'data-alias="staging"' not in now
    at = urllib.parse.urlencode({"at": ALIASES_AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ")})
    then = _get(f"{ui_url}/?{at}")[1].decode()
    assert 'data-alias="prod" data-version="1"' in then and 'data-alias="staging" data-version="2"' in then
    assert "shadow-2" not in then  # set on evil-1, which did not exist yet
    # Badges link to the version page at the same time.
    assert f'href="/version?id=alpha&amp;v=1&amp;{at}"' in then


def test_parquet_download_holds_the_whole_result(ui_url):
    q = urllib.parse.urlencode({"q": "SELECT model_id, version FROM v_versions ORDER BY ALL", "format": "parquet"})
    status, body, headers = _get(f"{ui_url}/sql/download?{q}")
    assert status == 200 and "attachment" in headers["content-disposition"]
    assert pq.read_table(io.BytesIO(body)).to_pylist()[:2] == [{"model_id": "alpha", "version": 1},
                                                              {"model_id": "alpha", "version": 2}]


def test_download_of_a_refused_query_is_the_store_sql_error(ui_url):
    q = urllib.parse.urlencode({"q": "COPY v_models TO '/tmp/x.csv'", "format": "csv"})
    status, body, _ = _get(f"{ui_url}/sql/download?{q}")
    assert status == 400 and body.decode().startswith("refused a COPY statement")


@pytest.mark.parametrize("path, status, text", [
    ("/model?id=nobody", 404, str(escape(str(ModelNotFoundError("nobody", hint="it did not exist as of now"))))),
    ("/version?id=alpha&v=99", 404, "version 99 of model &#39;alpha&#39; does not exist"),
    ("/version?id=alpha&v=x", 400, "v is a whole number"),
    ("/?at=yesterday", 400, "is not an ISO 8601 time"),
    ("/model?id=beta&at=2026-03-02T10:00Z", 404, "did not exist as of"),
])
def test_errors_are_the_store_messages(ui_url, path, status, text):
    got, body, _ = _get(ui_url + path)
    assert got == status
    assert text in body.decode()


def test_the_command_serves_on_loopback_and_stops_on_interrupt(ui_store):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CAS_REPO_NO_BROWSER": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cas_repo.ui", "--repo", ui_store.url, "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # A child that never prints its address fails the test instead of hanging the worker.
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "`python -m cas_repo.ui` printed no address in 120 s"
        line = proc.stdout.readline()
        assert "read-only at http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split(" at ", 1)[1].split()[0]
        status, body, _ = _get(url)
        assert status == 200 and b'data-model="alpha"' in body
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0


def test_model_page_metric_values_as_they_stood(ui_url):
    """A metric logged after the save shows in the versions table from the time it arrived."""
    def sharpe(query: str) -> list[str]:
        body = _get(f"{ui_url}/model?{query}")[1].decode()
        return re.findall(r'<td class="n metric( best)?" data-metric="sharpe">([^<]*)</td>', body)

    assert sharpe("id=alpha") == [("", "0.9"), (" best", "1.4"), ("", "–")]
    then = urllib.parse.urlencode({"id": "alpha", "at": METRICS_AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert sharpe(then) == [("", "0.9"), ("", "–"), ("", "–")]  # one value: nothing to be best against


def test_model_page_names_who_did_each_thing_as_text(ui_url):
    """The timeline and the alias moves name the commit's author (here hostile text) and host."""
    body = _get(f"{ui_url}/model?id=alpha")[1].decode()
    authors = re.findall(r'<span class="author">([^<]*)</span>', body)
    assert len(authors) == body.count('<li class="event ') > 5
    assert all(a.startswith(str(escape(HOSTILE_AUTHOR)) + "@") for a in authors), authors[:2]
    assert body.count(str(escape(HOSTILE_AUTHOR)) + "@") >= len(authors) + 4  # and each of the four alias moves
    assert re.search(r'<span class="tag metric-logged">sharpe=1\.4</span>', body)
    version = _get(f"{ui_url}/version?id=alpha&v=2")[1].decode()
    assert re.search(r'<td id="saved-by">[^<]+ UTC by <span class="author">' + re.escape(str(escape(HOSTILE_AUTHOR)))
                     + "@", version)
