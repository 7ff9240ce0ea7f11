"""Browser-test rig: a throwaway Redis, `python -m dashboard` as a subprocess, headless Chromium.

Everything listens on free loopback ports under tmp dirs and is stopped in fixture teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from dashboard_rig import Dashboard, LayoutWriter, start_dashboard, stop_dashboard
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from clickstream.local.redis import LocalRedis


@pytest.fixture
def layout(redis_server: LocalRedis) -> Iterator[LayoutWriter]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    yield LayoutWriter(client)
    client.close()


@pytest.fixture(scope="session")
def dashboard(
    redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    started = start_dashboard(tmp_path_factory.mktemp("dashboard"), redis_server.url)
    yield started
    stop_dashboard(started)


@pytest.fixture
def launch() -> Iterator[Callable[..., Dashboard]]:
    """Starts extra dashboards (`launch(tmp, redis_url, **env)`); stops them all afterwards."""
    started: list[Dashboard] = []

    def start(tmp: Path, redis_url: str, **env: str) -> Dashboard:
        started.append(start_dashboard(tmp, redis_url, **env))
        return started[-1]

    yield start
    for dashboard in started:
        stop_dashboard(dashboard)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1440,1200",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
