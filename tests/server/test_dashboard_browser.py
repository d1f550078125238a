"""The ``/ui`` dashboard in a real headless Chromium (Debian's chromium + chromium-driver, Selenium).

A missing browser is a failure with an install hint, never a skip: the dashboard is
a product surface and CI installs the browser (scripts/setup). Set
``REPRISE_SCREENSHOT_DIR`` to keep the screenshots (docs/dashboard.png comes from here).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import AUTH, MASTER_KEY, GatewayProcess, chat

CHROMIUM = os.environ.get("REPRISE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("REPRISE_CHROMEDRIVER", "/usr/bin/chromedriver")
HINT = ("install the browser: apt-get install -y chromium chromium-driver (scripts/setup does it),"
        " and pip install selenium")


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.exists(p) or shutil.which(p))]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found; {HINT}", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed; {HINT}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--window-size=1400,1700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def _shot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    keep = os.environ.get("REPRISE_SCREENSHOT_DIR")
    if keep:
        shutil.copy(path, Path(keep) / name)
    return path


def test_login_traffic_and_delete_in_a_real_browser(
        browser: Any, make_gateway: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    gw = make_gateway()
    browser.get(gw.url + "/ui")
    assert browser.current_url.endswith("/ui/")
    login = browser.find_element(By.ID, "login-key")
    login.send_keys("sk-wrong")
    browser.find_element(By.ID, "login-submit").click()
    _wait(browser, lambda d: "invalid" in _text(d, "login-error").lower())
    assert not browser.find_element(By.ID, "dash").is_displayed()

    browser.find_element(By.ID, "login-key").send_keys(MASTER_KEY)
    browser.find_element(By.ID, "login-submit").click()
    _wait(browser, lambda d: d.find_element(By.ID, "dash").is_displayed())
    _wait(browser, lambda d: _text(d, "kpi-requests") == "0")
    assert browser.execute_script("return sessionStorage.getItem('reprise.masterKey')") == MASTER_KEY
    assert browser.get_cookies() == []

    prompts = ["What is the capital of France?", "Summarise RFC 9111 in one line", "Translate 'cache' to German"]
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        for i, prompt in enumerate(prompts):
            model = "gpt-4o" if i % 2 == 0 else "gpt-4o-mini"
            for _ in range(i + 2):
                c.post("/chat/completions", json=chat(prompt, model=model))
        c.post("/chat/completions", json=chat("no thanks", cache={"no-store": True}))
    # 2 + 3 + 4 requests (3 misses, 6 hits) and one no-store miss; the page polls every 5 s
    _wait(browser, lambda d: _text(d, "kpi-requests") == "10")
    assert _text(browser, "kpi-hit-rate") == "60.0%"
    assert _text(browser, "kpi-saved-usd") not in {"–", "$0"}
    rows = browser.find_elements(By.CSS_SELECTOR, "#entries-table tbody tr")
    assert len(rows) == 3
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-hit-rate svg polyline")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-top svg rect")) == 3
    _shot(browser, tmp_path, "dashboard.png")

    victim = rows[0].get_attribute("data-key")
    button = rows[0].find_element(By.CSS_SELECTOR, "button.delete-entry")
    button.click()
    assert button.text == "Confirm"
    button.click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#entries-table tbody tr")) == 2)
    assert httpx.get(f"{gw.url}/cache/entries/{victim}", headers=AUTH).status_code == 404
    _shot(browser, tmp_path, "dashboard-after-delete.png")

    browser.find_element(By.ID, "logout").click()
    assert browser.find_element(By.ID, "login").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('reprise.masterKey')") is None


def test_dashboard_assets_are_served_with_a_strict_policy(gateway: GatewayProcess) -> None:
    r = httpx.get(gateway.url + "/ui/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "<script src=\"app.js\"" in r.text and "http" not in r.text.split("<body>")[0].replace("http-equiv", "")
    assert httpx.get(gateway.url + "/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(gateway.url + "/ui/../config.yaml").status_code == 404
    assert httpx.get(gateway.url + "/ui/nothing.js").status_code == 404
