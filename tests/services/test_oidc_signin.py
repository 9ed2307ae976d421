"""Reviewers sign in through a real OpenID Connect provider (``tests/services/oidc.py``: the
``oidc-provider`` package under Node) in headless Chromium, approve a request on the review
page, and the audit event names the person as the provider does (issuer and subject). A user
whose groups map to no ACGS role is refused; signing out ends the session. Needs Debian's
``chromium`` and ``chromium-driver`` (see ``test_evolution_browser``) and Node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps import evolution_events
from tests.services.oidc import SignedInService, User, evolution_with_sign_in
from tests.services.test_evolution_browser import browser  # noqa: F401 - the shared Chromium fixture


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SignedInService]:
    with evolution_with_sign_in(tmp_path) as running:
        yield running


def _wait(driver: Any, condition: Any, timeout: float = 15) -> Any:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(condition)


def _provider_login(driver: Any, service: SignedInService, user: User) -> None:
    """On the provider's own login page (its URL is the provider's, not ACGS's), as a person."""
    from selenium.webdriver.common.by import By

    _wait(driver, lambda d: d.current_url.startswith(f"{service.provider.issuer}/interaction/"))
    driver.find_element(By.ID, "login").send_keys(user.login)
    driver.find_element(By.ID, "password").send_keys(user.password)
    driver.find_element(By.ID, "submit").click()


def test_reviewer_signs_in_approves_and_the_audit_names_the_provider_subject(
    service: SignedInService,
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    request_id = service.submit()
    rita = service.provider.users["rita"]
    review = f"{service.base_url}/evolution/review"

    # The page sends a visitor without a session to sign in, and the provider sends them back.
    browser.get(review)
    _provider_login(browser, service, rita)
    _wait(browser, lambda d: d.current_url == review and d.find_elements(By.CSS_SELECTOR, ".signed-in .who"))
    assert browser.find_element(By.CSS_SELECTOR, ".signed-in .who").text == rita.name
    assert service.provider.issuer in browser.find_element(By.CSS_SELECTOR, ".signed-in").text

    cookie = browser.get_cookie("acgs_session")
    assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # plain HTTP on loopback only; Secure everywhere else

    # The form has no name to type: the provider said who this is.
    form = browser.find_element(By.ID, request_id).find_element(By.CSS_SELECTOR, "form")
    assert not form.find_elements(By.NAME, "reviewer")
    form.find_element(By.NAME, "reason").send_keys("limits reviewed against the load test")
    form.find_element(By.CSS_SELECTOR, 'button[value="approve"]').click()
    _wait(browser, lambda d: "now approved" in d.find_element(By.CSS_SELECTOR, ".notice").text)
    assert service.status_of(request_id) == "approved"

    approvals = [e for e in evolution_events(service.data_dir) if e["action"] == "evolution.approve"]
    assert len(approvals) == 1
    meta = approvals[0]["metadata"]
    assert meta["request_id"] == request_id
    assert meta["actor"] == "rita"
    assert meta["actor_via"] == "oidc"
    assert meta["actor_issuer"] == service.provider.issuer
    assert meta["actor_subject"] == "rita"

    # Signing out ends the session: the page asks to sign in again, and the provider asks for
    # the password again rather than signing the same person back in from its own session.
    stale = {"acgs_session": browser.get_cookie("acgs_session")["value"]}
    browser.find_element(By.CSS_SELECTOR, ".signed-in button.sign-out").click()
    _wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Signed out")
    browser.get(review)
    _wait(browser, lambda d: d.current_url.startswith(f"{service.provider.issuer}/interaction/"))
    assert browser.find_elements(By.ID, "password")
    # A copy of the signed-out cookie opens nothing either.
    kept = httpx.get(review, cookies=stale, follow_redirects=False)
    assert kept.status_code == 303 and kept.headers["location"].startswith("/auth/login")


def test_a_user_whose_groups_map_to_no_role_is_refused(service: SignedInService, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    request_id = service.submit()
    oscar = service.provider.users["oscar"]
    browser.get(f"{service.base_url}/evolution/review")
    _provider_login(browser, service, oscar)
    _wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Not permitted")
    message = browser.find_element(By.CSS_SELECTOR, ".error").text
    assert "staff" in message and "map to no ACGS role" in message
    # No session came of it: with the browser's cookie the review page still sends one to sign in.
    cookie = browser.get_cookie("acgs_session")
    jar = {"acgs_session": cookie["value"]} if cookie else {}
    page = httpx.get(f"{service.base_url}/evolution/review/{request_id}", cookies=jar, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login")
    assert service.status_of(request_id) == "pending"
    decided = ("evolution.approve", "evolution.approval_recorded")
    assert not [e for e in evolution_events(service.data_dir) if e["action"] in decided]
