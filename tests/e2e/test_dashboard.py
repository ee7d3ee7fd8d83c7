"""The usage dashboard in a real headless Chromium (Debian's chromium and chromedriver,
driven by Selenium) against ``meterlake serve``: the page loads, a customer is selected,
its charts render, and its numbers are those ``meterlake usage show`` prints. The test
saves a screenshot (``$METERLAKE_LOG_DIR/dashboard.png``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterlake.audit.access import create_key
from meterlake.config import Settings
from tests.capture_server import ApiServer
from tests.conftest import USAGE_NOW
from tests.e2e.cli import cli_env, meterlake_here

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# The flags this machine's closed network needs (no background connections to Google).
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
)  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Chromium is not installed: run `infra/chromium.sh install` (make test does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(usage_warehouse: Settings):
    """`meterlake serve` on the suite's usage warehouse (its dashboard published by the
    views refresh) and an analyst key of tenant `default` (acme and initech)."""
    key, _ = create_key(usage_warehouse, "default", "analyst")
    server = ApiServer(usage_warehouse.warehouse).start()
    yield usage_warehouse, server, key
    server.stop()


def _usage_show(settings: Settings, customer: str) -> tuple[dict[tuple, str], str]:
    """Quantities per (segment start day, meter) and the estimated total ``usage show``
    prints."""
    shown = meterlake_here(
        "--now", USAGE_NOW.isoformat(), "usage", "show", "--customer", customer,
        env=cli_env(settings.warehouse),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    quantities, total = {}, ""
    for line in shown.stdout.splitlines():
        if line.startswith("  [") and ")" in line:
            segment, rest = line.strip()[1:].split(")", 1)
            _plan, meter, quantity = rest.split()
            quantities[segment[:10], meter] = quantity
        elif "estimated total" in line:
            total = line.split()[-1]
    return quantities, total


def test_dashboard_shows_what_usage_show_says(browser, served, spark) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    settings, server, key = served
    browser.get(f"{server.url}/dashboard")
    assert browser.title == "meterlake usage dashboard"
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.ID, "open").click()
    wait = WebDriverWait(browser, 20)
    wait.until(lambda b: b.find_element(By.ID, "customer").is_enabled())
    customers = Select(browser.find_element(By.ID, "customer"))
    assert [o.get_attribute("value") for o in customers.options] == ["acme", "initech"]

    for customer in ("initech", "acme"):
        customers.select_by_value(customer)
        quantities, total = _usage_show(settings, customer)
        wait.until(lambda b, t=total: b.find_element(By.ID, "estimated-total").text == t)
        assert browser.find_element(By.ID, "status").text == "ESTIMATE"
        assert "data fresh as of" in browser.find_element(By.ID, "freshness").text
        shown = {}
        for row in browser.find_elements(By.CSS_SELECTOR, "#usage tbody tr"):
            meter, _, day, quantity = (cell.text for cell in row.find_elements(By.TAG_NAME, "td"))
            shown[day, meter] = quantity
        assert shown == quantities and any(q != "0" for q in shown.values())
        charts = browser.find_elements(By.CSS_SELECTOR, "#charts svg")
        assert {c.get_attribute("data-meter") for c in charts} >= {"api_calls"}
        points = charts[0].find_element(By.CSS_SELECTOR, "polyline.series").get_attribute("points")
        assert len(points.split()) > 24  # hourly points over the period so far
        assert browser.find_element(By.CSS_SELECTOR, "#charts svg").size["height"] > 50
    invoices = browser.find_elements(By.CSS_SELECTOR, "#invoices tbody tr")
    assert invoices == [] or all("final" in r.text or "draft" in r.text for r in invoices)
    assert "data quality" in browser.find_element(By.ID, "checks").text

    screenshots = Path(Settings.load().log_dir)
    screenshots.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(screenshots / "dashboard.png"))


def test_dashboard_data_needs_a_key_of_the_tenant(served) -> None:
    import httpx

    settings, server, key = served

    def get(key: str | None, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(f"{server.url}/v1/dashboard", headers=headers, params=params)

    assert get(None).status_code == 401
    mine = get(key)
    assert mine.status_code == 200 and set(mine.json()["customers"]) == {"acme", "initech"}
    other, _ = create_key(settings, "t2", "analyst")
    assert set(get(other).json()["customers"]) == {"globex"}
    assert get(other, tenant="default").status_code == 403
    staff, _ = create_key(settings, "*", "auditor")
    assert get(staff).status_code == 400  # an all-tenant key names the tenant
    assert get(staff, tenant="nobody").status_code == 404
