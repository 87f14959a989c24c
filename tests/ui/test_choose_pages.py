"""The leaderboard and compare pages in a real headless Chromium (the store of conftest.py)."""

from __future__ import annotations

from .conftest import HOSTILE_EXPERIMENT, HOSTILE_HP_KEY, HOSTILE_HP_VALUE
from .test_browser import _no_script_ran, _open, _q, _shot, browser  # noqa: F401 - browser is a fixture


def _cells(row) -> list[str]:
    from selenium.webdriver.common.by import By

    return [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]


def test_leaderboard_ranks_each_live_models_best_version_and_hands_picks_to_compare(browser, ui_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    table = _open(browser, ui_url + "/leaderboard" + _q(metric="IC"), "#leaderboard")
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr.standing")
    # beta (deleted) is left out; alpha's best IC is v2.
    assert [(r.get_attribute("data-model"), r.get_attribute("data-version")) for r in rows] == [
        ("alpha", "2"), ("evil-1", "1")]
    assert [r.find_element(By.CSS_SELECTOR, "td.value").text for r in rows] == ["0.052", "0.01"]
    assert HOSTILE_EXPERIMENT in rows[1].text
    _no_script_ran(browser)
    _shot(browser, "leaderboard")

    table = _open(browser, ui_url + "/leaderboard" + _q(metric="IC", order="lower"), "#leaderboard")
    assert [(r.get_attribute("data-model"), r.get_attribute("data-version"))
            for r in table.find_elements(By.CSS_SELECTOR, "tbody tr.standing")] == [("evil-1", "1"), ("alpha", "3")]
    table = _open(browser, ui_url + "/leaderboard" + _q(metric="Rank IC", where="params.num_leaves = 63"),
                  "#leaderboard")
    assert [r.get_attribute("data-version") for r in table.find_elements(By.CSS_SELECTOR, "tr.standing")] == ["2"]

    _open(browser, ui_url + "/leaderboard" + _q(metric="IC", where="metrics.IC >> 1"), "#error")
    assert "position 13" in browser.find_element(By.ID, "error").text
    assert browser.find_elements(By.ID, "leaderboard") == []

    _open(browser, ui_url + "/leaderboard" + _q(metric="IC"), "#leaderboard")
    browser.find_element(By.ID, "compare-selected").click()  # the top two are ticked
    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.ID, "compare-versions")))
    heads = browser.find_elements(By.CSS_SELECTOR, "#compare-versions th.ref")
    assert [h.get_attribute("data-ref") for h in heads] == ["alpha@2", "evil-1@1"]
    params = {r.get_attribute("data-param"): _cells(r)[1:]
              for r in browser.find_elements(By.CSS_SELECTOR, "#compare-hyperparameters tr.param")}
    assert params[HOSTILE_HP_KEY] == ["–", f'"{HOSTILE_HP_VALUE}"']
    _no_script_ran(browser)


def test_compare_page_puts_metrics_settings_and_shared_bytes_side_by_side(browser, ui_url):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url = ui_url + "/compare?" + "&".join(f"ref={r}" for r in ("alpha@1", "alpha@2", "beta@1"))
    _open(browser, url, "#compare-versions")
    ic = browser.find_element(By.CSS_SELECTOR, '#compare-metrics tr[data-metric="IC"]')
    assert _cells(ic) == ["IC", "0.031", "0.052", "0.02"]
    best = ic.find_elements(By.CSS_SELECTOR, "td.best")
    assert [b.text for b in best] == ["0.052"]
    params = {r.get_attribute("data-param"): _cells(r)[1:]
              for r in browser.find_elements(By.CSS_SELECTOR, "#compare-hyperparameters tr.param")}
    assert params == {"num_leaves": ["31", "63", "31"]}
    # beta@1 holds alpha@2's model bytes; alpha@1 (another model) shares what diff says it does.
    rows = browser.find_elements(By.CSS_SELECTOR, "#compare-bytes tr.shared")
    shared = {r.get_attribute("data-ref"): [int(c.get_attribute("data-bytes"))
                                            for c in r.find_elements(By.TAG_NAME, "td")] for r in rows}
    assert shared["alpha@2"][2] == shared["beta@1"][2] == shared["alpha@2"][1] > 0
    assert shared["alpha@1"][1] == shared["alpha@2"][0] < shared["alpha@1"][0]
    # One chart per metric: a line per model, the compared versions ringed.
    chart = browser.find_element(By.CSS_SELECTOR, 'svg.overlay-chart[data-metric="IC"]')
    series = {g.get_attribute("data-model"): g for g in chart.find_elements(By.CSS_SELECTOR, "g.series")}
    assert set(series) == {"alpha", "beta"}
    assert [c.get_attribute("data-ref") for c in series["alpha"].find_elements(By.TAG_NAME, "circle")] == [
        "alpha@1", "alpha@2", "alpha@3"]
    assert [c.get_attribute("data-ref") for c in chart.find_elements(By.CSS_SELECTOR, "circle.marked")] == [
        "alpha@1", "alpha@2", "beta@1"]
    _no_script_ran(browser)
    _shot(browser, "compare")

    # Picking with the form: untick alpha@1, type evil-1@1. Typed references (beta@1, of a
    # deleted model, is not offered as a box) come first, then the ticked boxes.
    browser.find_element(By.CSS_SELECTOR, '#candidates input[value="alpha@1"]').click()
    browser.find_element(By.ID, "extra-ref").send_keys("evil-1@1")
    browser.find_element(By.ID, "compare-button").click()
    WebDriverWait(browser, 20).until(EC.staleness_of(chart))
    heads = browser.find_elements(By.CSS_SELECTOR, "#compare-versions th.ref")
    assert [h.get_attribute("data-ref") for h in heads] == ["beta@1", "evil-1@1", "alpha@2"]
    assert HOSTILE_EXPERIMENT in browser.find_element(By.ID, "compare-versions").text
    _no_script_ran(browser)

    for refs, says in ((["alpha@1"], "at least two"), (["alpha@1", "alpha@9"], "does not exist"),
                       (["alpha", "beta@1"], "names a model, not a version"),
                       (['<script>alert(1)</script>@1', "alpha@1"], "invalid model_id")):
        _open(browser, ui_url + "/compare?" + "&".join(f"ref={r}" for r in refs), "#error")
        assert says in browser.find_element(By.ID, "error").text
        assert browser.find_elements(By.ID, "compare-versions") == []
        _no_script_ran(browser)
