"""The console in a real browser: Debian's headless Chromium driven by Selenium, against
a console served by uvicorn on the real Redis and Kafka.

``./scripts/browsers`` installs ``chromium`` and ``chromium-driver``; the driver's path
is given explicitly, so Selenium Manager never tries to download one. Each page's
screenshot goes to ``--screenshots DIR`` (default: under the test's tmp dir).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from inferloop.console.app import create_app
from inferloop.keys import Keys
from inferloop.local.process import free_port
from inferloop.monitor.state import Changes, StateStore
from inferloop.ops.monitor_history import DriftAlarm
from tests.console.conftest import HOSTILE, OPERATOR_TOKEN, VIEWER_TOKEN, Loop
from tests.console.test_views import evaluation

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1400", "--disable-gpu"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    # A page that reads Kafka takes a moment on a loaded machine: find waits for it.
    driver.implicitly_wait(15)
    yield driver
    driver.quit()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where the pages' screenshots go."""
    chosen = request.config.getoption("--screenshots")
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def console_url(loop: Loop) -> Iterator[str]:
    """The console of the test's loop, served by uvicorn in a thread."""
    port = free_port()
    config = uvicorn.Config(create_app(loop.settings, loop.registry), host="127.0.0.1",
                            port=port, log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def log_in(browser: WebDriver, url: str, token: str) -> None:
    """Log in through the login form."""
    browser.delete_all_cookies()
    browser.get(f"{url}/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "login").click()
    # The login page's own h1 may be read while the redirect replaces the document: on a
    # loaded machine chromedriver then answers "Node ... does not belong to the document",
    # a WebDriverException rather than a stale element. Wait for the new page first.
    WebDriverWait(browser, 20).until(lambda b: not b.current_url.endswith("/login"))
    WebDriverWait(
        browser, 20, ignored_exceptions=(StaleElementReferenceException, WebDriverException)
    ).until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Overview"))


def submit(browser: WebDriver, url: str, form_id: str, **fields: str) -> str:
    """Fill and send one form of the actions page; the outcome line."""
    browser.get(f"{url}/actions")
    form = browser.find_element(By.ID, form_id)
    for name, value in fields.items():
        form.find_element(By.NAME, name).send_keys(value)
    form.find_element(By.NAME, "confirm").click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    return str(browser.find_element(By.ID, "outcome").text)


def test_each_page_renders_real_data(
    browser: WebDriver, console_url: str, screenshots: Path
) -> None:
    log_in(browser, console_url, VIEWER_TOKEN)
    pages = {
        "overview": ("/", "v2"),
        "versions": ("/versions/emails", "v3"),
        "version": ("/versions/emails/2", "emails.labels"),
        "timeline": ("/timeline/emails", "setup"),
        "dead-letters": ("/dlq/emails", "invalid_json"),
        "actions": ("/actions", "Roll the champion back"),
    }
    for name, (path, expected) in pages.items():
        browser.get(console_url + path)
        assert expected in browser.find_element(By.TAG_NAME, "main").text, name
        # The stylesheet loaded (CSP allows 'self' only): the header is dark.
        header = browser.find_element(By.TAG_NAME, "header")
        assert header.value_of_css_property("background-color") == "rgba(29, 36, 48, 1)"
        browser.save_screenshot(str(screenshots / f"console-{name}.png"))
    browser.get(f"{console_url}/timeline/emails")
    assert browser.find_element(By.ID, "timeline-plot").get_property("naturalWidth") == 900


def test_a_promote_and_a_rollback_through_the_page_show_in_the_history(
    browser: WebDriver, console_url: str, loop: Loop
) -> None:
    log_in(browser, console_url, OPERATOR_TOKEN)
    back = submit(browser, console_url, "form-rollback-emails", reason="live recall fell")
    assert back == "emails: rolled back to v1"
    up = submit(browser, console_url, "form-promote-emails", version="3", reason="v3 reviewed")
    assert up == "emails: champion is now v3"
    env = {**loop.settings.to_env(), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run(
        [sys.executable, "-m", "inferloop", "registry", "history", "emails", "--json"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    entries = json.loads(shown.stdout)
    moves = [(e["action"], e["actor"], e["reason"]) for e in entries[:2]]
    assert moves == [
        ("promote", "console:alice", "v3 reviewed"),
        ("rollback", "console:alice", "live recall fell"),
    ]


def test_a_viewers_action_is_refused(browser: WebDriver, console_url: str, loop: Loop) -> None:
    log_in(browser, console_url, VIEWER_TOKEN)
    refused = submit(browser, console_url, "form-rollback-emails", reason="viewer tries")
    assert refused == "viewers cannot act"
    assert loop.registry.resolve("emails").version == 2  # type: ignore[union-attr]


def test_a_hostile_dead_letter_renders_as_text(
    browser: WebDriver, console_url: str, screenshots: Path
) -> None:
    log_in(browser, console_url, VIEWER_TOKEN)
    browser.get(f"{console_url}/dlq/emails/0:0")
    assert browser.find_element(By.ID, "letter-value").text == HOSTILE
    browser.implicitly_wait(0)  # the element must not exist: no waiting for it
    try:
        assert browser.find_elements(By.ID, "hostile") == []
    finally:
        browser.implicitly_wait(15)
    assert browser.title != "owned"
    browser.save_screenshot(str(screenshots / "console-dead-letter.png"))


def test_the_monitors_history_and_drift_alarms_render_in_the_browser(
    browser: WebDriver, console_url: str, loop: Loop, screenshots: Path
) -> None:
    keys = Keys(loop.settings.redis.key_prefix)
    store = StateStore(loop.registry.client, keys, "emails", 5.0, history_every_s=0.0)
    start = datetime.now(UTC) - timedelta(minutes=5)
    for i, value in enumerate((0.92, 0.9, 0.86, 0.8, 0.83)):
        store.put_status(evaluation(start + timedelta(minutes=i), value))
    store.acquire()
    alarm = DriftAlarm(start.timestamp() + 200, "error", 16.5, 15.0, "up", 640, 2)
    store.commit(Changes(offsets={"labels:0": 1}, alarms=[alarm]))
    log_in(browser, console_url, VIEWER_TOKEN)
    browser.get(f"{console_url}/versions/emails/2")
    plots = browser.find_elements(By.CLASS_NAME, "live-plot")
    assert [p.get_property("naturalWidth") for p in plots] == [900, 900, 900]
    browser.save_screenshot(str(screenshots / "console-version-live.png"))
    browser.get(f"{console_url}/timeline/emails")
    drift = browser.find_element(By.CLASS_NAME, "drift").text
    assert "error 16.50 15.0 up 640 v2" in drift
    browser.get(f"{console_url}/dlq/emails")
    assert "This page read 1 records" in browser.find_element(By.CLASS_NAME, "cost").text
