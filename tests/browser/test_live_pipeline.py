"""The whole path a user watches: generator -> Kafka -> worker -> Redis -> dashboard in
headless Chromium, compared with the oracle's numbers for the latest window, and the fraud
section with every accepted order scored once."""

from __future__ import annotations

from collections import Counter

import pytest
import redis
from selenium.webdriver.common.by import By
from test_dashboard_page import kpis, plotted, wait_for

from generator.config import GeneratorConfig
from serving import read_model
from tests.rig import processed, produce_and_expect, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TRAFFIC = GeneratorConfig(seed=11, count=4_000, events_per_second=40, fraud_rate=0.1)


def test_dashboard_shows_what_the_pipeline_computed(
    settings, start_worker, pipeline_env, redis_server, launch, browser, tmp_path
):
    pipeline_env["CLICKSTREAM_IDLE_SECONDS"] = "1"  # the last orders are scored once idle
    expected = produce_and_expect(settings, TRAFFIC, tmp_path)
    worker = start_worker()
    client = redis.Redis.from_url(redis_server.url)
    wait_until(
        lambda: (
            processed(client, settings.app_id, "clicks") == expected.messages[settings.clicks_topic]
        ),
        within=180,
        why="clicks processed",
        alive=worker.alive,
    )

    latest = max(start for start, _ in expected.page_views)
    pages = Counter(
        {page: n for (start, page), n in expected.page_views.items() if start == latest}
    )
    dashboard = launch(tmp_path / "dashboard", redis_server.url, CLICKSTREAM_APP_ID=settings.app_id)
    browser.get(dashboard.url)

    wait_for(browser, lambda d: kpis(d).get("Page views", ("",))[0] == f"{pages.total():,}")
    top_page, top_views = pages.most_common(1)[0]
    bars = wait_for(browser, lambda d: plotted(d, "top-pages"))
    drawn = dict(zip(bars[0]["y"], bars[0]["x"], strict=True))
    assert drawn[top_page] == top_views

    orders = expected.accepted[settings.orders_topic]
    reader = read_model.connect(redis_server.url)
    wait_until(
        lambda: read_model.fraud_summary(reader, settings.app_id, 30).orders == orders,
        within=120,
        why="every order scored",
        alive=worker.alive,
    )

    def span(d) -> str:
        return d.find_element(By.ID, "fraud-span").text

    wait_for(browser, lambda d: span(d).startswith(f"{orders:,} orders scored, "))
    rows = browser.find_elements(By.CSS_SELECTOR, "#alerts-table tbody tr")
    assert rows, span(browser)  # the traffic has its share of fraud
    rows[0].click()
    wait_for(browser, lambda d: "· policy v1" in d.find_element(By.ID, "explanation").text)
    browser.save_screenshot(str(tmp_path / "live.png"))
