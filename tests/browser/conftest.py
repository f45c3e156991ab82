"""Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

One browser per session; a fresh context (cookies, viewport) per test. Any console error fails
the test: a Content-Security-Policy violation or a broken asset shows up there first.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import sync_playwright

# Playwright's sync API runs its own event loop in this thread; Django's ORM calls from the test
# (and the live server's thread) are still synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser():
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `make chromium`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def live_settings(settings):
    # allauth counts sign-ups and e-mails per address in the cache, which outlives a test run.
    settings.ACCOUNT_RATE_LIMITS = False
    return settings


@pytest.fixture
def page(browser, live_server, live_settings):
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.console_errors = errors
    yield page
    context.close()
    assert errors == [], "the browser console reported errors"


def screenshot(page, name):
    """Save the whole page at desktop and phone widths, and check the phone layout fits its screen."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    page.screenshot(path=SCREENSHOTS / f"{name}-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    assert overflow <= 0, f"{name} is {overflow}px wider than a phone screen"
