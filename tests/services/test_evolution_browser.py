"""The reviewers' page driven end to end in headless Chromium: the evolution service runs under
uvicorn on a free port, requests are submitted through the API, and reviewers use the page's
forms and buttons as a person would. Needs Debian's ``chromium`` and ``chromium-driver``
(``scripts/setup.sh``); without them the test is skipped, or fails when
``ACGS_BROWSER_REQUIRED`` is set (``make test-python``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from acgs.services.evolution import EvolutionSettings, create_app
from tests.services.conftest import ServerThread

# The Debian packages' paths; set explicitly so Selenium never fetches a driver of its own.
CHROMIUM = os.environ.get("ACGS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ACGS_CHROMEDRIVER", "/usr/bin/chromedriver")

DIFF = """--- a/tools/web_search.py
+++ b/tools/web_search.py
@@ -1,2 +1,3 @@
 import httpx
-TIMEOUT = 5
+TIMEOUT = 10
+MAX_RESULTS = 20"""

#: Human review (two reviewers): a feature addition with an external dependency, risk 0.8.
FEATURE: dict[str, Any] = {
    "agent_id": "agent-research-7",
    "type": "feature_addition",
    "requested_by": "dev@example.com",
    "changes": {
        "code_changes": ["tools/web_search.py"],
        "external_dependencies": ["httpx==0.28.1"],
        "diff": DIFF,
    },
    "rollback_plan": {"procedure": "redeploy 1.3.2", "tested": True, "automated": False},
    "justification": "agents need web search",
}
#: Fast track (one reviewer).
CONFIGURATION: dict[str, Any] = {
    "agent_id": "agent-7",
    "type": "configuration",
    "requested_by": "alice@example.com",
    "changes": {"code_changes": ["config/limits.toml"], "lines_changed": 4},
    "rollback_plan": {"procedure": "restore the previous file", "steps": ["notify"], "tested": True, "automated": True},
}


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (scripts/setup.sh installs chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def _require_browser() -> None:
    missing = _browser_missing()
    if missing is None:
        return
    if os.environ.get("ACGS_BROWSER_REQUIRED"):
        pytest.fail(f"ACGS_BROWSER_REQUIRED is set but {missing}")
    pytest.skip(missing)


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    settings = EvolutionSettings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'evolution.sqlite3'}", sweep_interval=3600.0
    )
    with ServerThread(create_app(settings)) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture
def browser() -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def _article(driver: Any, request_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, request_id)


def _review(driver: Any, request_id: str, reviewer: str, reason: str, verdict: str) -> None:
    """Fills the request's form as a reviewer would and presses Approve or Reject."""
    from selenium.webdriver.common.by import By

    form = _article(driver, request_id).find_element(By.CSS_SELECTOR, "form")
    name = form.find_element(By.NAME, "reviewer")
    name.clear()
    name.send_keys(reviewer)
    text = form.find_element(By.NAME, "reason")
    text.clear()
    text.send_keys(reason)
    form.find_element(By.CSS_SELECTOR, f'button[value="{verdict}"]').click()


def test_reviewers_approve_and_reject_through_the_page(base_url: str, browser: Any) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    # While Chromium swaps documents after a form post, a lookup can fail with a generic
    # inspector error rather than "stale" or "not found": every wait retries on those too.
    wait = WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,))
    api = httpx.Client(base_url=base_url, timeout=10)

    def submitted(payload: dict[str, Any]) -> dict[str, Any]:
        r = api.post("/evolution/request", json=payload)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def state(request_id: str) -> dict[str, Any]:
        r = api.get(f"/evolution/requests/{request_id}")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def notice_reads(expected: str) -> None:
        """Waits until the page loaded after a form post shows the service's notice (polling the
        new page's text rather than waiting for the old page to go stale)."""

        def shown(driver: Any) -> bool:
            return expected in driver.find_element(By.CSS_SELECTOR, "p.notice").text

        wait.until(shown)

    with api:
        feature = submitted(FEATURE)
        config = submitted(CONFIGURATION)
        assert (feature["approval_type"], feature["reviewers_required"]) == ("human_review", 2)
        assert (config["approval_type"], config["reviewers_required"]) == ("fast_track", 1)
        fid, cid = feature["request_id"], config["request_id"]

        # The pending queue lists both.
        browser.get(f"{base_url}/evolution/review")
        listed = {a.get_attribute("id") for a in browser.find_elements(By.CSS_SELECTOR, "main article")}
        assert listed == {fid, cid}

        # A request's detail: the risk breakdown adds up to its score; the changes and their diff.
        _article(browser, fid).find_element(By.CSS_SELECTOR, "a.detail").click()
        wait.until(expected_conditions.url_contains(f"/evolution/review/{fid}"))
        rows = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "table.factors tr")
        ]
        factors = {cells[0]: float(cells[1]) for cells in rows if cells}
        assert factors == {f["name"]: f["contribution"] for f in feature["factors"]}
        assert factors == {"base_risk": 0.4, "external_dependencies": 0.4}
        assert browser.find_elements(By.CSS_SELECTOR, "table.components tr td")
        assert "tools/web_search.py" in browser.find_element(By.CSS_SELECTOR, "pre.changes").text
        added = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "pre.diff .add")]
        removed = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "pre.diff .del")]
        assert "+TIMEOUT = 10" in added and "-TIMEOUT = 5" in removed

        # Reviewer A approves from the detail page: one of two approvals.
        _review(browser, fid, "rita@example.com", "dependency is pinned", "approve")
        notice_reads(f"approved {fid}: now pending")
        after_a = state(fid)
        assert after_a["status"] == "pending"
        assert [(a["reviewer"], a["reason"]) for a in after_a["approvals"]] == [("rita@example.com", "dependency is pinned")]

        # The page remembers the last reviewer's name; reviewer B replaces it and approves.
        name = _article(browser, fid).find_element(By.NAME, "reviewer")
        assert name.get_attribute("value") == "rita@example.com"
        _review(browser, fid, "sam@example.com", "read the tool's code", "approve")
        notice_reads(f"approved {fid}: now approved")
        assert state(fid)["status"] == "approved"
        assert [a.get_attribute("id") for a in browser.find_elements(By.CSS_SELECTOR, "main article")] == [cid]

        # A rejection without a reason is refused in the page: the browser will not send the form.
        _review(browser, cid, "sam@example.com", "", "reject")
        reason = _article(browser, cid).find_element(By.NAME, "reason")
        assert browser.execute_script("return arguments[0].validity.valueMissing", reason) is True
        assert state(cid)["status"] == "pending"
        # Nor does the service take one when the browser's check is bypassed.
        browser.execute_script("arguments[0].removeAttribute('required')", reason)
        _article(browser, cid).find_element(By.CSS_SELECTOR, "button.reject").click()
        wait.until(expected_conditions.alert_is_present()).accept()
        error = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "p.error")))
        assert "a reason is required" in error.text
        assert state(cid)["status"] == "pending"

        # Rejecting asks first (a rejection is final); dismissing it sends nothing.
        _review(browser, cid, "sam@example.com", "limits too loose", "reject")
        wait.until(expected_conditions.alert_is_present()).dismiss()
        assert state(cid)["status"] == "pending"
        _article(browser, cid).find_element(By.CSS_SELECTOR, "button.reject").click()
        wait.until(expected_conditions.alert_is_present()).accept()
        notice_reads(f"rejected {cid}: now rejected")
        rejected = state(cid)
        assert rejected["status"] == "rejected"
        assert (rejected["rejection"]["by"], rejected["rejection"]["reason"]) == ("sam@example.com", "limits too loose")
        assert "No pending requests" in browser.find_element(By.TAG_NAME, "main").text
