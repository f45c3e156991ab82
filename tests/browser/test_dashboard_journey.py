"""A new user's whole journey in Chromium: sign up, verify, key, limits, API call, history, playground, revoke."""

import re
from decimal import Decimal

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import User
from billing import ledger
from generation.models import Generation

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMAIL = "mika@example.com"
PASSWORD = "a long and unusual passphrase"


def sign_up_and_verify(page, mailoutbox):
    page.goto("/")
    screenshot(page, "landing")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    screenshot(page, "signup")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    screenshot(page, "verification-sent")

    [message] = mailoutbox
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", message.body).group(0)
    page.goto(link)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    screenshot(page, "login")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))


def create_key(page, name):
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create key").click()
    field = page.locator("#new-key-value")
    expect(field).to_be_visible()
    full_key = field.input_value()
    assert re.fullmatch(r"ank_[0-9A-Za-z]{42}", full_key)
    new_key = page.get_by_test_id("new-key")
    new_key.get_by_role("button", name="Copy").click()
    expect(new_key.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == full_key
    screenshot(page, "keys-new-key")
    return full_key


def webhook_secret_and_limits(page, user):
    secret = page.get_by_test_id("webhook-secret")
    expect(secret).to_have_attribute("type", "password")
    webhooks = page.locator("#webhooks")
    webhooks.get_by_role("button", name="Reveal").click()
    expect(secret).to_have_attribute("type", "text")
    webhooks.get_by_role("button", name="Copy").click()
    expect(webhooks.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == user.webhook_secret

    year = timezone.now().year + 1
    page.get_by_role("link", name="Limits for Test server").click()
    page.get_by_label("Spend cap per day (USD)").fill("1")
    page.get_by_label("Expires (UTC)").fill(f"{year}-12-01T10:30")
    page.get_by_label("Allowed IP networks").fill("127.0.0.0/8, 10.0.0.300")
    page.get_by_role("button", name="Save limits").click()
    expect(page.locator("#id_allowed_networks_error")).to_have_text("'10.0.0.300' is not an IP address or network")
    screenshot(page, "key-limits")
    page.get_by_label("Allowed IP networks").fill("127.0.0.0/8")
    page.get_by_role("button", name="Save limits").click()
    expect(page.get_by_test_id("live-keys")).to_contain_text(f"$1.00/day · expires Dec 1, {year} · 127.0.0.0/8 only")


def call_api(live_server, key, prompt):
    return requests.post(f"{live_server.url}/api/generate", json={"prompt": prompt, "orientation": "square"},
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_journey(page, live_server, mailoutbox):
    sign_up_and_verify(page, mailoutbox)
    user = User.objects.get(email=EMAIL)
    expect(page.get_by_test_id("dashboard-balance")).to_have_text("$0.00")
    screenshot(page, "dashboard-empty")

    # A new account has no money: the playground says so in words, with a way to top up.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Playground").click()
    page.get_by_label("Prompt", exact=True).fill("anime girl with blue hair")
    page.get_by_role("button", name=re.compile("^Generate")).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Insufficient balance — top up")
    expect(alert.get_by_role("link", name="top up")).to_have_attribute("href", "/billing/#add-funds")
    page.console_errors.clear()  # the 402 itself is logged by the browser

    ledger.credit(user=user, amount=Decimal(1), kind=ledger.Kind.ADJUSTMENT, reference="browser-test-credit")

    full_key = create_key(page, "Test server")
    page.reload()
    expect(page.locator("#new-key-value")).to_have_count(0)
    assert full_key not in page.content()  # shown once, never again
    webhook_secret_and_limits(page, user)

    answer = call_api(live_server, full_key, "a knight cat on a castle wall")
    assert answer.status_code == 200, answer.text
    image = requests.get(answer.json()["image_url"], timeout=10)
    assert (image.status_code, image.headers["Content-Type"]) == (200, "image/webp")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    rows = page.get_by_test_id("history-rows")
    expect(rows).to_contain_text("a knight cat on a castle wall")
    expect(rows).to_contain_text(full_key[:10])
    screenshot(page, "history")
    page.get_by_label("Status").select_option("failed")
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(rows).to_contain_text("anime girl with blue hair")  # the attempt refused for its balance
    expect(rows).not_to_contain_text("a knight cat")
    page.get_by_label("Status").select_option("succeeded")
    expect(rows).to_contain_text("a knight cat on a castle wall")
    export = page.request.get(page.get_by_role("link", name="Export CSV").get_attribute("href"))
    assert export.ok and "a knight cat on a castle wall" in export.text()
    page.get_by_role("link", name=re.compile("Open generation: a knight cat")).click()
    expect(page.get_by_role("heading", name="Generation details")).to_be_visible()
    screenshot(page, "generation-detail")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Playground").click()
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill("girl with silver hair under cherry blossoms")
    expect(page.locator("#prompt-counter")).to_have_text("43 / 1000")
    expect(page.locator("#enhanced").get_by_test_id("enhanced-preview")).to_contain_text("cherry_blossoms")
    page.get_by_text("Landscape").click()
    generate = page.get_by_role("button", name=re.compile("^Generate"))
    generate.click()
    expect(page.get_by_test_id("result-image")).to_be_visible()
    expect(generate).to_be_enabled()
    expect(page.get_by_test_id("result-balance")).to_have_text("$0.982")
    expect(page.locator("#balance")).to_have_text("$0.982")
    screenshot(page, "playground-result")
    playground_row = Generation.objects.get(user=user, api_key=None, status="succeeded")
    assert playground_row.orientation == "landscape"

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("dashboard-balance")).to_have_text("$0.982")
    screenshot(page, "dashboard")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="Revoke Test server").click()
    expect(page.get_by_role("heading", name="Revoke “Test server”?")).to_be_visible()
    screenshot(page, "key-revoke")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status")).to_contain_text("revoked")
    refused = call_api(live_server, full_key, "after revoking")
    assert (refused.status_code, refused.json()["code"]) == (401, "INVALID_KEY")

    for path, name in [("/billing/", "billing"), ("/docs/", "docs"), ("/accounts/password/change/", "password-change"),
                       ("/accounts/email/", "email-addresses")]:
        page.goto(path)
        screenshot(page, name)
    page.emulate_media(color_scheme="dark")
    page.goto("/playground/")
    screenshot(page, "playground-dark")


def test_public_pages_and_keyboard(page, live_server):
    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.goto("/docs/#error-INVALID_KEY")
    expect(page.locator("#error-INVALID_KEY")).to_contain_text("401")
    expect(page.get_by_test_id("base-url")).to_have_text(live_server.url)
    page.goto("/accounts/password/reset/")
    screenshot(page, "password-reset")
    page.goto("/no-such-page/")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    screenshot(page, "not-found")
    page.console_errors.clear()  # the 404 itself is logged by the browser
