"""The dashboard in real headless Chromium, over a real Redis seeded in the serving.keys layout."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from dashboard_rig import APP, LATEST, MINUTE, Dashboard, LayoutWriter, seed_fraud, seed_shop
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from clickstream import versions
from clickstream.local.process import free_port
from clickstream.local.redis import LocalRedis
from serving import keys
from tests.rig import clickstream

pytestmark = pytest.mark.browser

WAIT = 20.0  # seconds; the page refreshes every 2 s


def kpis(driver: webdriver.Chrome) -> dict[str, tuple[str, str]]:
    """KPI label -> (value, detail), read in one script: the cards are re-rendered every refresh.
    (textContent, because CSS upper-cases the labels on screen.)"""
    script = (
        "return Array.from(document.querySelectorAll('#kpis .kpi')).map(card =>"
        " ['label', 'value', 'detail'].map(p => card.querySelector('.kpi-' + p).textContent));"
    )
    cards: list[list[str]] = driver.execute_script(script)
    return {label: (value, detail) for label, value, detail in cards}


def plotted(driver: webdriver.Chrome, graph_id: str) -> list[dict[str, Any]]:
    """The traces Plotly has drawn in one dcc.Graph: name, x and y of each."""
    script = (
        "const plot = document.querySelector(arguments[0] + ' .js-plotly-plot');"
        "return plot && plot.data ? plot.data.map(t => ({name: t.name, x: t.x, y: t.y})) : [];"
    )
    result: list[dict[str, Any]] = driver.execute_script(script, f"#{graph_id}")
    return result


def wait_for(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any]) -> Any:
    waiting = WebDriverWait(
        driver, WAIT, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException]
    )
    return waiting.until(condition)


def test_page_shows_the_latest_window_summed_over_partitions(
    layout: LayoutWriter, dashboard: Dashboard, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    seed_shop(layout)
    layout.attributed(LATEST, 0, "www.google.com", "USD", orders=2, cents=4_000)
    layout.attributed(LATEST, 1, "(direct)", "USD", orders=4, cents=8_000)
    browser.get(dashboard.url)

    wait_for(browser, lambda d: kpis(d).get("Page views", ("",))[0] == "273")
    cards = kpis(browser)
    assert cards["Page views"] == ("273", "window 2026-01-01 12:20\u201312:21 UTC")
    assert cards["Orders"][0] == "6"
    assert cards["Revenue"] == ("USD 180.00", "EUR 45.50")
    assert cards["Late events"][0] == "3"
    assert cards["Duplicates dropped"][0] == "5"
    assert cards["Dead letters"][0] == "4"

    top = wait_for(browser, lambda d: plotted(d, "top-pages"))[0]
    assert (top["y"][-1], top["x"][-1]) == ("/home", 212)  # Plotly's last bar is the top one
    assert "/home" in browser.find_element(By.ID, "top-pages").text
    total = plotted(browser, "views-chart")[0]
    assert (total["name"], len(total["y"]), total["y"][-1]) == ("All pages", 21, 273)
    revenue = {t["name"]: t["y"][-1] for t in plotted(browser, "revenue-chart")}
    assert revenue == {"EUR": 45.5, "USD": 180.0}
    (attributed,) = plotted(browser, "attribution-chart")
    assert (attributed["name"], attributed["y"], attributed["x"]) == (
        "USD",
        ["www.google.com", "(direct)"],  # the most orders on top
        [2, 4],
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#pipeline-table tbody tr")
    assert len(rows) == 5  # clicks 0..2, orders 0..1
    assert "event time 2026-01-01 12:20:39 UTC" in browser.find_element(By.ID, "event-time").text
    assert browser.find_element(By.ID, "status").text.startswith("Live")

    browser.save_screenshot(str(tmp_path / "dashboard.png"))


def test_page_follows_new_numbers_written_to_redis(
    layout: LayoutWriter, dashboard: Dashboard, browser: webdriver.Chrome
) -> None:
    seed_shop(layout)
    browser.get(dashboard.url)
    wait_for(browser, lambda d: kpis(d).get("Page views", ("",))[0] == "273")

    layout.page_views(LATEST, 2, {"/home": 112, "/checkout": 6})  # partition 2 rewrites 12 -> 112
    layout.pipeline("orders", 1, dead_letters=10)

    wait_for(browser, lambda d: kpis(d)["Page views"][0] == "373")
    wait_for(browser, lambda d: kpis(d)["Dead letters"][0] == "11")

    layout.page_views(LATEST + MINUTE, 0, {"/pricing": 50})
    layout.page_views(LATEST + MINUTE, 1, {"/pricing": 25})

    wait_for(browser, lambda d: kpis(d)["Page views"][0] == "75")
    wait_for(browser, lambda d: plotted(d, "top-pages")[0]["y"] == ["/pricing"])


def test_the_fraud_section_shows_alerts_and_explains_the_one_clicked(
    layout: LayoutWriter,
    dashboard: Dashboard,
    browser: webdriver.Chrome,
    redis_server: LocalRedis,
    tmp_path: Path,
) -> None:
    seed_shop(layout)
    seed_fraud(redis_server.url)
    browser.get(dashboard.url)

    def alert_rows(d: webdriver.Chrome) -> list[str]:
        return [row.text for row in d.find_elements(By.CSS_SELECTOR, "#alerts-table tbody tr")]

    rows = wait_for(browser, alert_rows)
    assert [row.split()[2] for row in rows] == ["3", "2"]  # newest first: date, time, order id
    assert "different cards from this account" in rows[0]
    span = browser.find_element(By.ID, "fraud-span").text
    assert span.startswith("4 orders scored, 2 alerts (50.0%)")
    bars = plotted(browser, "fraud-chart")
    assert [t["name"] for t in bars] == ["Orders passed", "Alerts", "Alert rate"]
    assert bars[1]["y"] == [0, 2] and bars[2]["y"] == [0.0, 2 / 3]
    assert sum(plotted(browser, "scores-chart")[0]["y"]) == 4

    browser.find_elements(By.CSS_SELECTOR, "#alerts-table tbody tr")[1].click()

    wait_for(browser, lambda d: "Order 2 " in d.find_element(By.ID, "explanation").text)
    explained = browser.find_element(By.ID, "explanation").text
    assert "(alert) · policy v1" in explained and "3 different cards from this" in explained
    drawn = wait_for(browser, lambda d: plotted(d, "contributions-chart"))
    assert "user_cards_10m" in drawn[0]["y"]
    browser.save_screenshot(str(tmp_path / "fraud.png"))


def test_empty_redis_shows_empty_states_not_errors(
    layout: LayoutWriter, dashboard: Dashboard, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    browser.get(dashboard.url)

    no_worker = f"no worker of {APP} has ever reported"  # the pipeline's health, on the line
    wait_for(browser, lambda d: d.find_element(By.ID, "status").text.startswith(no_worker))
    assert "status-warn" in (browser.find_element(By.ID, "status").get_attribute("class") or "")
    assert kpis(browser)["Page views"] == ("0", "no windows yet")
    assert "No page views yet" in browser.find_element(By.ID, "views-chart").text
    assert "No orders yet" in browser.find_element(By.ID, "revenue-chart").text
    assert "No events processed yet" in browser.find_element(By.ID, "pipeline-table").text
    assert "No alert yet" in browser.find_element(By.ID, "alerts-table").text
    assert "No order scored yet" in browser.find_element(By.ID, "fraud-chart").text
    browser.save_screenshot(str(tmp_path / "empty.png"))


def test_the_status_line_says_what_in_the_pipeline_is_down(
    layout: LayoutWriter, dashboard: Dashboard, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    seed_shop(layout)  # with a healthy worker's report
    browser.get(dashboard.url)
    wait_for(browser, lambda d: d.find_element(By.ID, "status").text.startswith("Live"))

    now = int(time.time() * 1000)
    layout.worker_report(at_ms=now + 86_400_000, broker={"reachable": False, "since_ms": now})
    status = lambda d: d.find_element(By.ID, "status")  # noqa: E731
    wait_for(browser, lambda d: status(d).text.startswith("Kafka unreachable from 1 of 1"))
    assert "status-warn" in (status(browser).get_attribute("class") or "")
    assert kpis(browser)["Page views"][0] == "273"  # the numbers it has stay, not dimmed
    browser.save_screenshot(str(tmp_path / "broker-down.png"))

    layout.worker_report()  # the probe reaches Kafka again
    wait_for(browser, lambda d: status(d).text.startswith("Live"))


def test_page_says_redis_is_unreachable_when_it_goes_away(
    browser: webdriver.Chrome, launch: Callable[..., Dashboard], tmp_path: Path
) -> None:
    own_redis = LocalRedis(tmp_path / "redis", free_port())
    own_redis.start()
    try:
        seed_shop(LayoutWriter(redis.Redis.from_url(own_redis.url)))
        dashboard = launch(tmp_path / "dashboard", own_redis.url)
        browser.get(dashboard.url)
        wait_for(browser, lambda d: kpis(d).get("Page views", ("",))[0] == "273")

        own_redis.stop()

        wait_for(browser, lambda d: "Redis unreachable" in d.find_element(By.ID, "status").text)
        status = browser.find_element(By.ID, "status")
        assert "status-down" in (status.get_attribute("class") or "")
        assert "Connection refused" in (status.get_attribute("title") or "")
        assert "page-stale" in (browser.find_element(By.ID, "page").get_attribute("class") or "")
        assert kpis(browser)["Page views"][0] == "273"  # the last numbers stay, dimmed
        code, _, body = dashboard.get("/healthz")
        assert code == 503
        assert isinstance(body, dict)
        assert "unreachable" in body["error"]
        assert dashboard.get("/api/v1/page-views")[0] == 503
        browser.save_screenshot(str(tmp_path / "unreachable.png"))
    finally:
        own_redis.stop()


def test_a_password_guards_the_page_and_the_api(
    redis_server: LocalRedis,
    layout: LayoutWriter,
    launch: Callable[..., Dashboard],
    browser: webdriver.Chrome,
    tmp_path: Path,
) -> None:
    seed_shop(layout)
    dashboard = launch(
        tmp_path,
        redis_server.url,
        CLICKSTREAM_DASHBOARD_USER="ops",
        CLICKSTREAM_DASHBOARD_PASSWORD="s3cret",
    )

    for path in ("/api/v1/pipeline", "/api/v1/page-views", "/", "/_dash-layout"):
        code, headers, body = dashboard.get(path)
        assert (code, body) == (401, {"error": "login required"}), path
        assert headers["WWW-Authenticate"].startswith("Basic realm=")
    assert dashboard.get("/api/v1/pipeline", auth=("ops", "wrong"))[0] == 401
    assert dashboard.get("/api/v1/pipeline", auth=("admin", "s3cret"))[0] == 401
    assert dashboard.get("/api/v1/pipeline", auth=("ops", "s3cret"))[0] == 200
    assert dashboard.get("/healthz")[0] == 200

    token = base64.b64encode(b"ops:s3cret").decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )
    try:
        browser.get(dashboard.url)
        wait_for(browser, lambda d: kpis(d).get("Page views", ("",))[0] == "273")
    finally:
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})


def test_a_promoted_version_is_served_without_a_reload_then_retired(
    layout: LayoutWriter, dashboard: Dashboard, browser: webdriver.Chrome, kafka, redis_server
) -> None:
    """`clickstream promote` moves the pointer the read model follows: the open page and the
    API switch to the new version's numbers at the next refresh, and back again; `clickstream
    retire` then takes the version off the page and out of Redis."""
    seed_shop(layout)
    shadow = LayoutWriter(layout.client, "shadow")
    shadow.meta(MINUTE, 30_000)
    shadow.page_views(LATEST, 0, {"/home": 999})
    browser.get(dashboard.url)
    wait_for(browser, lambda d: kpis(d).get("Page views", ("",))[0] == "273")
    assert browser.find_element(By.ID, "app-chip").text == APP

    about = {"from": "earliest", "to": "now", "clock": APP, "state": "replayed"}
    versions.register(layout.client, APP, "shadow", about)
    assert browser.find_element(By.ID, "diff-table").text == "No diff yet"
    metrics = {
        "results clicks tumbling": {"equal": 1200, "different": 0, "only_live": 0,
                                    "only_shadow": 0, "largest": []},
        "sessions": {"equal": 310, "different": 2, "only_live": 1, "only_shadow": 0,
                     "largest": [{"id": "u-7/1767225600000", "difference": 3.0}]},
    }  # fmt: skip
    report = {"live": APP, "shadow": "shadow", "identical": False, "metrics": metrics}
    versions.save_diff(layout.client, APP, report)
    versions.promote(layout.client, APP, "shadow")

    wait_for(browser, lambda d: kpis(d)["Page views"][0] == "999")
    assert browser.find_element(By.ID, "app-chip").text == "shadow"
    rows = browser.find_elements(By.CSS_SELECTOR, "#versions-table tbody tr")
    assert [row.text.split()[:2] for row in rows] == [[APP, "base"], ["shadow", "●"]]
    assert "2 different, 1 only live" in rows[1].text and "earliest .. now" in rows[1].text
    assert browser.find_element(By.ID, "diff-title").text == f"{APP} vs shadow: different"
    diff_rows = browser.find_elements(By.CSS_SELECTOR, "#diff-table tbody tr")
    assert [row.text for row in diff_rows] == [
        "results clicks tumbling 1,200 0 0 0 —",
        "sessions 310 2 1 0 u-7/1767225600000: 3",
    ]
    assert dashboard.get("/api/v1/meta")[2]["version"] == "shadow"  # type: ignore[index]
    views = dashboard.get("/api/v1/page-views?windows=1")[2]
    assert views["rows"] == [{"window_start_ms": LATEST, "url": "/home", "views": 999}]  # type: ignore[index]

    versions.promote(layout.client, APP, APP)  # the base again: the pointer is removed

    wait_for(browser, lambda d: kpis(d)["Page views"][0] == "273")
    assert browser.find_element(By.ID, "app-chip").text == APP
    assert not layout.client.exists(keys.active(APP))

    env = {"CLICKSTREAM_APP_ID": APP, "CLICKSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
           "CLICKSTREAM_REDIS_URL": redis_server.url}  # fmt: skip
    retired = clickstream(env, "retire", "shadow", "--yes")
    assert retired.returncode == 0, retired.stderr
    wait_for(
        browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#versions-table tbody tr")) == 1
    )
    assert not layout.client.keys("shadow:*")
    assert kpis(browser)["Page views"][0] == "273"


HOSTILE = '/<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def test_markup_in_page_urls_and_referrers_renders_as_text_and_never_runs(
    layout: LayoutWriter, dashboard: Dashboard, browser: webdriver.Chrome, redis_server: LocalRedis
) -> None:
    """Page URLs and referrers come from producers (issue 15): the page shows them as text."""
    seed_shop(layout)
    layout.page_views(LATEST, 0, {HOSTILE: 500})
    layout.attributed(LATEST, 0, '<b onmouseover="window.__xss=3">x</b>', "USD", 1, 100)
    browser.get(dashboard.url)
    top = wait_for(browser, lambda d: plotted(d, "top-pages"))[0]
    assert top["y"][-1] == HOSTILE, "the top page, as it was written"
    text = browser.find_element(By.ID, "top-pages").text
    assert "<script>" in text or "onerror" in text, text  # shown, not parsed
    assert not browser.find_elements(By.CSS_SELECTOR, "#top-pages img, #top-pages script")
    time.sleep(3)  # a refresh or two
    assert browser.execute_script("return window.__xss === undefined")
