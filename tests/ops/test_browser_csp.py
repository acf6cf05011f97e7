"""The admin and the API docs work in a real browser under the strict CSP: no violation is
reported, Swagger UI renders the operations, the admin's scripts run.

Needs Debian's Chromium (/usr/bin/chromium; `apt-get install chromium`, which .ci/run does);
skipped only outside CI when it is absent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    # CI installs Chromium (.ci/run), so there a missing browser is a failure, not a skip.
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
        reason="Chromium is not installed (apt-get install chromium)",
    ),
]


@pytest.fixture
def browser_page() -> Iterator[tuple[Any, list[str]]]:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        # Chromium reports each blocked script, style, image or fetch as a console error
        # naming the Content Security Policy; a missing favicon is not our concern.
        page.on(
            "console",
            lambda message: (
                problems.append(message.text)
                if message.type == "error"
                and "favicon" not in (message.location or {}).get("url", "")
                else None
            ),
        )
        page.on("pageerror", lambda error: problems.append(str(error)))
        try:
            yield page, problems
        finally:
            browser.close()


@pytest.fixture
def staff(transactional_db: Any) -> tuple[str, str]:
    get_user_model().objects.create_superuser("olivia", "olivia@example.org", "s3cret-pass-99")
    return "olivia", "s3cret-pass-99"


def test_it_renders_the_api_docs_under_the_csp(
    live_server: Any, browser_page: tuple[Any, list[str]]
) -> None:
    page, problems = browser_page
    response = page.goto(f"{live_server.url}/api/docs/")
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    page.wait_for_selector(".opblock-summary-path", timeout=15000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/v1/events" in path for path in paths)
    assert problems == []


def test_it_runs_the_admin_under_the_csp(
    live_server: Any, staff: tuple[str, str], browser_page: tuple[Any, list[str]]
) -> None:
    page, problems = browser_page
    username, password = staff
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    page.goto(f"{live_server.url}/admin/auth/user/")
    # actions.js (a script file) enables the action counter; it only works if scripts run.
    page.check("#action-toggle")
    assert "1 of 1 selected" in page.inner_text(".action-counter")
    assert problems == []
