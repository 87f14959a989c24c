"""The web view in a real headless Chromium: what a person sees on each page.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them when run
as root); without them these tests skip. One browser for the module; every wait is for
an element, never a sleep. Screenshots go to the test's temp folder, and to
``$CAS_REPO_UI_SCREENSHOTS`` (e.g. ``docs/img``) when set.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from .conftest import ALIASES_AS_OF, AS_OF, HOSTILE_EXPERIMENT, HOSTILE_HP_KEY, HOSTILE_HP_VALUE, HOSTILE_TAG

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ENABLE = "install them with `apt-get install -y chromium chromium-driver` (`make test` does so when run as root)"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip(f"the browser tests need {CHROMIUM} and {DRIVER}: {ENABLE}")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="the browser tests need selenium (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1024,720", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    # Giving the driver's path keeps Selenium Manager from looking for (or downloading) one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    driver.shots = tmp_path_factory.mktemp("screenshots")  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver, url: str, wait_for: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    return WebDriverWait(driver, 20).until(EC.presence_of_element_located((By.CSS_SELECTOR, wait_for)))


def _shot(driver, name: str) -> None:
    path = driver.shots / f"{name}.png"
    driver.save_screenshot(str(path))
    target = os.environ.get("CAS_REPO_UI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / f"ui-{name}.png")


def _no_script_ran(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    assert driver.find_elements(By.TAG_NAME, "script") == []
    assert driver.find_elements(By.CSS_SELECTOR, "img") == []
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - the property raises when no alert is open


def _q(**params) -> str:
    return "?" + urllib.parse.urlencode(params)


def _stamp(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _badges(row) -> list[tuple[str, str, str]]:
    """A models-table row's alias badges: (text, alias, the version page it links to)."""
    from selenium.webdriver.common.by import By

    found = []
    for a in row.find_elements(By.CSS_SELECTOR, "td.aliases a.alias"):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(a.get_attribute("href")).query)
        found.append((a.text, a.get_attribute("data-alias"), f"{query['id'][0]}@{query['v'][0]}"))
    return found


def _rows(driver, css: str, *attrs: str) -> list[tuple[str | None, ...]]:
    from selenium.webdriver.common.by import By

    return [tuple(r.get_attribute(a) for a in attrs) for r in driver.find_elements(By.CSS_SELECTOR, css)]


def test_models_table_shows_each_live_model_and_hostile_text_as_text(browser, ui_url):
    from selenium.webdriver.common.by import By

    table = _open(browser, ui_url, "#models")
    rows = {r.get_attribute("data-model"): r for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert set(rows) == {"alpha", "evil-1"}  # beta is deleted
    cells = [c.text for c in rows["alpha"].find_elements(By.TAG_NAME, "td")]
    assert cells[:4] == ["alpha", "v3", "csi300", "LGBM"]
    evil = [c.text for c in rows["evil-1"].find_elements(By.TAG_NAME, "td")]
    assert evil[2] == HOSTILE_EXPERIMENT
    assert f"note={HOSTILE_TAG}" in evil
    # Aliases as badges linking to the version each points at; the removed `staging` is gone.
    assert _badges(rows["alpha"]) == [("prod → v2", "prod", "alpha@2")]
    assert _badges(rows["evil-1"]) == [("shadow-2 → v1", "shadow-2", "evil-1@1")]
    _no_script_ran(browser)
    _shot(browser, "models")

    table = _open(browser, ui_url + _q(deleted=1, metric="IC", order="desc"), "#models")
    order = [r.get_attribute("data-model") for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert order == ["alpha", "beta", "evil-1"]  # IC 0.031 (alpha@3 = alpha@1), 0.02, 0.01
    table = _open(browser, ui_url + _q(deleted=1, experiment="csi500"), "#models")
    assert [r.get_attribute("data-model") for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")] == ["beta"]


def test_model_page_charts_one_point_per_version_and_the_timeline(browser, ui_url):
    from selenium.webdriver.common.by import By

    _open(browser, ui_url + "/model" + _q(id="alpha"), "svg.metric-chart")
    chart = browser.find_element(By.CSS_SELECTOR, 'svg.metric-chart[data-metric="IC"]')
    points = chart.find_elements(By.CSS_SELECTOR, "circle.point")
    assert [(p.get_attribute("data-version"), p.get_attribute("data-value")) for p in points] == [
        ("v1", "0.031"), ("v2", "0.052"), ("v3", "0.031")]
    events = browser.find_elements(By.CSS_SELECTOR, "#timeline li.event")
    assert [(e.get_attribute("data-kind"), e.get_attribute("data-version")) for e in events] == [
        ("save", "1"), ("save", "2"), ("tag", "2"), ("rollback", "3"), ("metrics", "1"), ("metrics", "2")]
    assert "stage=prod" in events[2].text
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.bar-chart rect.bar")) == 3

    # The aliases: where each points now, and every move (when, from, to, by) in log order.
    assert browser.find_element(By.ID, "aliases").is_displayed()
    assert _rows(browser, "#alias-list tbody tr", "data-alias", "data-version") == [("prod", "2")]
    assert browser.find_element(By.CSS_SELECTOR, "#alias-list tbody tr").text.startswith(
        "prod v2 2026-03-02 15:00:00 ")
    assert _rows(browser, "#alias-history tbody tr", "data-alias", "data-from", "data-to") == [
        ("prod", "", "1"), ("staging", "", "2"), ("prod", "1", "2"), ("staging", "2", "")]
    moves = [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
             for r in browser.find_elements(By.CSS_SELECTOR, "#alias-history tbody tr")]
    assert [m[:4] for m in moves] == [
        ["2026-03-02 11:00:00", "prod", "new", "v1"], ["2026-03-02 13:00:00", "staging", "new", "v2"],
        ["2026-03-02 15:00:00", "prod", "v1", "v2"], ["2026-03-02 17:00:00", "staging", "v2", "removed"]]
    assert all(m[4] for m in moves)  # who moved it

    # A column per metric in the versions table, the best value of each highlighted.
    table = browser.find_element(By.ID, "versions")
    assert [h.text for h in table.find_elements(By.CSS_SELECTOR, "th.metric")] == ["IC", "Rank IC", "sharpe"]
    cells = {(r.get_attribute("data-version"), c.get_attribute("data-metric")):
             (c.text, "best" in c.get_attribute("class").split())
             for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
             for c in r.find_elements(By.CSS_SELECTOR, "td.metric")}
    assert cells == {("1", "IC"): ("0.031", False), ("2", "IC"): ("0.052", True), ("3", "IC"): ("0.031", False),
                     ("1", "Rank IC"): ("0.041", False), ("2", "Rank IC"): ("0.062", True),
                     ("3", "Rank IC"): ("0.041", False),
                     # logged after the saves; v3 (a rollback to v1) has none
                     ("1", "sharpe"): ("0.9", False), ("2", "sharpe"): ("1.4", True), ("3", "sharpe"): ("–", False)}
    assert table.find_element(By.CSS_SELECTOR, 'tr[data-version="2"] td .alias').text == "prod"
    _shot(browser, "model")
    browser.execute_script("window.scrollTo(0, arguments[0].getBoundingClientRect().top + window.scrollY - 80)",
                           table)
    _shot(browser, "model-versions")


def test_version_page_draws_lineage_edges_and_diffs_against_another_version(browser, ui_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    graph = _open(browser, ui_url + "/version" + _q(id="alpha", v=2), "#lineage-graph")
    edges = {(e.get_attribute("data-from"), e.get_attribute("data-to"), e.get_attribute("data-relation"))
             for e in graph.find_elements(By.CSS_SELECTOR, "line.edge")}
    assert edges == {("alpha@2", "alpha@1", "parent"), ("beta@1", "alpha@2", "parent")}
    nodes = {n.get_attribute("data-node") for n in graph.find_elements(By.CSS_SELECTOR, "g.node")}
    assert nodes == {"alpha@1", "alpha@2", "beta@1"}
    assert "shared with alpha@1" in browser.find_element(By.ID, "sharing").text
    # prod points here now; staging did, until it was removed.
    assert _rows(browser, "#version-aliases .alias", "data-alias") == [("prod",)]
    assert browser.find_element(By.ID, "version-aliases-before").text == (
        "staging 2026-03-02 13:00:00 – 2026-03-02 17:00:00, then removed")

    field = browser.find_element(By.CSS_SELECTOR, "#compare input[name=against]")
    field.send_keys("1")
    browser.find_element(By.CSS_SELECTOR, "#compare button").click()
    diff = WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "diff")))
    hp = [r.text for r in diff.find_elements(By.CSS_SELECTOR, "#diff-hyperparameters tr")][1:]
    assert hp == ["num_leaves 31 63"]
    metrics = [r.text for r in diff.find_elements(By.CSS_SELECTOR, "#diff-metrics tr")][1:]
    assert metrics[0] == "IC 0.031 0.052 +0.021"
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).scroll_to_element(browser.find_element(By.ID, "diff-content")).perform()
    _shot(browser, "version")

    graph = _open(browser, ui_url + "/version" + _q(id="alpha", v=1), "#lineage-graph")
    dataset = graph.find_element(By.CSS_SELECTOR, 'g.node[data-kind="dataset"]')
    assert dataset.text == "DataHandlerLP"
    assert {(e.get_attribute("data-from"), e.get_attribute("data-to"), e.get_attribute("data-relation"))
            for e in graph.find_elements(By.CSS_SELECTOR, "line.edge")} == {
        ("alpha@2", "alpha@1", "parent"), ("alpha@3", "alpha@1", "rollback_of"),
        ("beta@1", "alpha@2", "parent"), ("alpha@1", "dataset", "trained on")}
    assert browser.find_element(By.ID, "version-aliases").text == "–"
    assert browser.find_element(By.ID, "version-aliases-before").text == (
        "prod 2026-03-02 11:00:00 – 2026-03-02 15:00:00, then v2")
    _shot(browser, "lineage")


def test_as_of_shows_the_store_as_it_stood_then(browser, ui_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, ui_url, "#models")
    field = browser.find_element(By.ID, "at")
    field.send_keys(_stamp(AS_OF))
    browser.find_element(By.CSS_SELECTOR, "#as-of button").click()
    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "as-of-banner")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")
    assert [[c.text for c in r.find_elements(By.TAG_NAME, "td")][:2] for r in rows] == [["alpha", "v1"]]
    assert _badges(rows[0]) == [("prod → v1", "prod", "alpha@1")]  # prod moved to v2 later
    _shot(browser, "as-of")
    # The links keep the time: alpha's page then has one version, one event, one alias move.
    rows[0].find_element(By.LINK_TEXT, "alpha").click()
    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "timeline")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline li.event")) == 1
    assert browser.find_element(By.ID, "as-of-banner").is_displayed()
    assert _rows(browser, "#alias-list tbody tr", "data-alias", "data-version") == [("prod", "1")]
    assert _rows(browser, "#alias-history tbody tr", "data-alias", "data-from", "data-to") == [("prod", "", "1")]
    assert [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#versions th.metric")] == ["IC", "Rank IC"]

    # Before prod moved and staging was removed, the version pages say where each was then.
    _open(browser, ui_url + "/version" + _q(id="alpha", v=1, at=_stamp(ALIASES_AS_OF)), "#version-aliases")
    assert _rows(browser, "#version-aliases .alias", "data-alias") == [("prod",)]
    assert browser.find_elements(By.ID, "version-aliases-before") == []
    _open(browser, ui_url + "/version" + _q(id="alpha", v=2, at=_stamp(ALIASES_AS_OF)), "#version-aliases")
    assert _rows(browser, "#version-aliases .alias", "data-alias") == [("staging",)]
    assert browser.find_elements(By.ID, "version-aliases-before") == []


def test_sql_box_shows_results_and_refuses_writes_and_files(browser, ui_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, ui_url + "/sql", "#sql-form")
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("SELECT model_id, head_version, deleted FROM v_models ORDER BY model_id")
    browser.find_element(By.ID, "run").click()
    table = WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "sql-result")))
    assert [r.text for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")] == [
        "alpha 3 False", "beta 1 True", "evil-1 1 False"]
    _shot(browser, "sql")
    csv_url = browser.find_element(By.ID, "csv").get_attribute("href")
    with urllib.request.urlopen(csv_url) as r:
        assert r.read().decode().splitlines()[:2] == ["\"model_id\",\"head_version\",\"deleted\"", "\"alpha\",3,false"]

    for query in ("COPY v_models TO 'out.csv'", "SELECT * FROM read_csv('/etc/passwd')",
                  "DELETE FROM v_models"):
        _open(browser, ui_url + "/sql" + _q(q=query), "#sql-form")
        error = browser.find_element(By.ID, "error").text
        assert error.startswith("refused"), (query, error)
        assert browser.find_elements(By.ID, "sql-result") == []


def test_hostile_metadata_and_ids_are_text_on_every_page(browser, ui_url):
    from selenium.webdriver.common.by import By

    _open(browser, ui_url + "/version" + _q(id="evil-1", v=1), "#metadata")
    assert browser.find_element(By.ID, "tags").text == f"note={HOSTILE_TAG}"
    assert HOSTILE_HP_KEY in browser.find_element(By.ID, "hyperparameters").text
    assert HOSTILE_HP_VALUE in browser.find_element(By.ID, "hyperparameters").text
    assert HOSTILE_EXPERIMENT in browser.find_element(By.ID, "metadata").text
    _no_script_ran(browser)
    _open(browser, ui_url + "/model" + _q(id="evil-1"), "#versions")
    assert HOSTILE_HP_KEY in browser.find_element(By.ID, "versions").text
    assert _rows(browser, "#alias-list tbody tr", "data-alias", "data-version") == [("shadow-2", "1")]
    _no_script_ran(browser)

    bad = '<script>alert("id")</script>'
    _open(browser, ui_url + "/model" + _q(id=bad), "#error")
    assert bad in browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "error").text.startswith("invalid model_id")
    _no_script_ran(browser)


def test_store_page_shows_the_live_dedup_audit(browser, ui_url):
    from selenium.webdriver.common.by import By

    cards = _open(browser, ui_url + "/store", "#audit-cards")
    text = {c.text.split("\n")[0]: c.text.split("\n")[1] for c in cards.find_elements(By.CSS_SELECTOR, ".card")}
    assert text["models"] == "3 (1 deleted)"
    assert text["versions stored"].startswith("5 ")
    assert browser.find_elements(By.CSS_SELECTOR, 'svg[aria-label="cumulative logical vs stored bytes"] polyline')
    experiments = {r.find_elements(By.TAG_NAME, "td")[0].text
                   for r in browser.find_elements(By.CSS_SELECTOR, "#experiments tr")[1:]}
    assert experiments == {"csi300", "csi500", HOSTILE_EXPERIMENT}
    _no_script_ran(browser)
    _shot(browser, "store")
