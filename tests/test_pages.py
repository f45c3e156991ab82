"""The dashboard's pages: each renders for its user, and another user's rows never show or open."""

import csv
import datetime
import io
import re
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path

import pytest
from django.utils import timezone

from dashboard.apidocs import ERROR_CODES
from accounts.apikeys import create_api_key
from dashboard.history import bar_chart, daily_totals, usage_charts
from generation.models import ORIENTATIONS, Generation

from .conftest import generate

PAGES = ["/dashboard/", "/keys/", "/playground/", "/history/", "/docs/", "/"]
PRIVATE = ["/dashboard/", "/keys/", "/playground/", "/history/", "/history/export.csv"]


def make_generation(user, *, api_key=None, status="succeeded", orientation="portrait", prompt="anime girl",
                    created_at=None, cost="0.009", **fields):
    width, height = ORIENTATIONS[orientation]
    succeeded = status == Generation.Status.SUCCEEDED
    return Generation.objects.create(
        user=user, api_key=api_key, prompt=prompt, enhanced_prompt=f"{prompt}, masterpiece",
        orientation=orientation, width=width, height=height, allow_nsfw=True, enhance=True, backend="preview",
        status=status, cost_usd=Decimal(cost if succeeded else "0"), error_code="" if succeeded else "GENERATION_FAILED",
        image=f"images/test/{prompt.replace(' ', '-')}.webp" if succeeded else "", total_ms=4200,
        created_at=created_at or timezone.now(), **fields,
    )


def text(response):
    return re.sub(r"\s+", " ", response.content.decode())


def csv_of(response):
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.mark.parametrize("url", PAGES)
def test_each_page_renders_for_alice(alice_client, url):
    response = alice_client.get(url)
    assert response.status_code == HTTPStatus.OK
    page = text(response)
    assert '<link rel="stylesheet" href="/static/css/app.css">' in page
    assert '<script src="/static/js/htmx.min.js" defer></script>' in page
    assert 'href="/billing/"' in page  # the nav links to the Stripe engineer's billing page
    assert "style=" not in page and "<style" not in page  # our CSP allows no inline styles


@pytest.mark.parametrize("url", PRIVATE)
def test_logged_out_users_are_sent_to_log_in(client, db, url):
    response = client.get(url)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == f"/accounts/login/?next={url}"


@pytest.mark.parametrize("url", ["/", "/docs/"])
def test_public_pages_need_no_login(client, db, url):
    assert client.get(url).status_code == HTTPStatus.OK


def test_pages_carry_the_csp_and_the_csrf_header_for_htmx(alice_client):
    response = alice_client.get("/dashboard/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert re.search(r"""hx-headers='\{"X-CSRFToken": "[A-Za-z0-9]+"\}'""", text(response))


def test_landing_states_price_limits_and_a_curl_example(client, db, settings):
    settings.PUBLIC_BASE_URL = "https://api.example.test"
    page = text(client.get("/"))
    assert "$0.009" in page
    assert "5,000" in page and ">10<" in page
    assert "curl -X POST https://api.example.test/api/generate" in page
    assert 'href="/accounts/signup/"' in page


def test_dashboard_shows_balance_usage_limit_and_keys(alice_client, alice, charlie):
    key, _ = create_api_key(user=alice, name="Production server")
    make_generation(alice, api_key=key, prompt="today one")
    make_generation(alice, prompt="today two")
    make_generation(alice, status="failed", prompt="failed today")
    make_generation(alice, prompt="last year", created_at=timezone.now() - datetime.timedelta(days=400))
    make_generation(charlie, prompt="charlie secret")
    page = text(alice_client.get("/dashboard/"))
    assert 'data-testid="dashboard-balance">$1.00<' in page
    assert "2 <span class=\"stat-unit\">images</span>" in page  # today: failed ones are not images
    assert "$0.018 spent" in page
    assert "Production server" in page
    assert "today one" in page and "failed today" in page
    assert "charlie" not in page
    assert '<progress max="5000" value="0"' in page


def test_dashboard_warns_when_the_balance_cannot_pay_for_an_image(client, db):
    from .conftest import make_user

    client.force_login(make_user("broke@example.com"))
    page = text(client.get("/dashboard/"))
    # One warning, the same one every page shows (billing.pricing decides, nothing else).
    assert page.count("too low for another image") == 1
    assert "does not cover an image" not in page
    assert "No images yet." in page and "No API keys yet." in page


def test_dashboard_counts_the_daily_limit_the_api_uses(client, alice, alice_key):
    assert generate(client, alice_key).status_code == HTTPStatus.OK
    client.force_login(alice)
    assert '<progress max="5000" value="1"' in text(client.get("/dashboard/"))


# Usage history


def test_history_lists_only_the_users_generations_newest_first(alice_client, alice, charlie):
    now = timezone.now()
    make_generation(alice, prompt="older", created_at=now - datetime.timedelta(hours=2))
    make_generation(alice, prompt="newer", created_at=now)
    make_generation(charlie, prompt="charlie secret")
    page = text(alice_client.get("/history/"))
    assert page.index("newer") < page.index("older")
    assert "charlie secret" not in page
    assert "2 generations" in page


def test_history_filters(alice_client, alice):
    key, _ = create_api_key(user=alice, name="bot")
    now = timezone.now()
    make_generation(alice, prompt="keyed square", api_key=key, orientation="square")
    make_generation(alice, prompt="playground failed", status="failed")
    make_generation(alice, prompt="long ago", created_at=now - datetime.timedelta(days=10))

    def rows(**filters):
        return [g.prompt for g in alice_client.get("/history/", filters).context["page"].object_list]

    assert rows(status="failed") == ["playground failed"]
    assert rows(orientation="square") == ["keyed square"]
    assert rows(key=str(key.pk)) == ["keyed square"]
    assert set(rows(key="playground")) == {"playground failed", "long ago"}
    today = now.date().isoformat()
    assert set(rows(start=today)) == {"keyed square", "playground failed"}
    ten_days_ago = (now - datetime.timedelta(days=10)).date().isoformat()
    assert rows(start=ten_days_ago, end=ten_days_ago) == ["long ago"]


def test_history_ignores_a_bad_filter_and_says_so(alice_client, alice, charlie):
    charlies_key, _ = create_api_key(user=charlie, name="charlie's")
    make_generation(charlie, api_key=charlies_key, prompt="charlie secret")
    make_generation(alice, prompt="mine")
    response = alice_client.get("/history/", {"key": str(charlies_key.pk), "start": "2025-02-01", "end": "2025-01-01"})
    page = text(response)
    assert "Select a valid choice" in page
    assert "The end date is before the start date." in page
    assert "charlie secret" not in page


def test_history_paginates_and_keeps_the_filters(alice_client, alice):
    now = timezone.now()
    for minute in range(30):
        make_generation(alice, prompt=f"prompt {minute:02}", created_at=now - datetime.timedelta(minutes=minute))
    first = alice_client.get("/history/", {"status": "succeeded"})
    assert len(first.context["page"].object_list) == 25
    assert 'href="?status=succeeded&amp;page=2"' in text(first)
    second = alice_client.get("/history/", {"status": "succeeded", "page": 2})
    assert [g.prompt for g in second.context["page"].object_list] == [f"prompt {m:02}" for m in range(25, 30)]


def test_history_htmx_request_gets_only_the_results(alice_client, alice):
    make_generation(alice, prompt="mine")
    partial = alice_client.get("/history/", {"status": "succeeded"}, HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode()
    assert "mine" in text(partial)
    assert "HX-Request" in partial["Vary"]
    restore = alice_client.get("/history/", HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in restore.content.decode()


def test_history_thumbnails_open_the_generation(alice_client, alice):
    generation = make_generation(alice, prompt="with image")
    page = text(alice_client.get("/history/"))
    assert f'href="/history/{generation.id}/"' in page
    assert f'src="/media/{generation.image}"' in page


def test_history_charts_count_images_and_spend_per_day(alice_client, alice):
    make_generation(alice)
    make_generation(alice)
    make_generation(alice, status="failed")
    page = text(alice_client.get("/history/"))
    assert '<svg viewBox="0 0 720 160" preserveAspectRatio="none" role="img"' in page
    assert "2 images from" in page
    assert "$0.018 from" in page


def test_daily_totals_fill_every_day_of_the_range(alice):
    today = timezone.now().date()
    make_generation(alice, created_at=timezone.now() - datetime.timedelta(days=2))
    rows = Generation.objects.filter(user=alice)
    totals = daily_totals(rows, start=today - datetime.timedelta(days=3), end=today)
    assert [(t.images, t.spend_usd) for t in totals] == [
        (0, Decimal(0)), (1, Decimal("0.009")), (0, Decimal(0)), (0, Decimal(0))
    ]
    chart = usage_charts(totals)["images"]
    assert [bar.height for bar in chart.bars] == [0.0, 151.0, 0.0, 0.0]
    assert chart.total_label == "1 image"


def test_bar_chart_keeps_small_days_visible():
    day = datetime.date(2025, 1, 1)
    totals = [type("T", (), {"day": day + datetime.timedelta(days=i), "images": n})() for i, n in enumerate([1000, 1])]
    chart = bar_chart(totals, value=lambda t: t.images, describe=str)
    assert chart.bars[1].height == 1.0


def test_generation_detail_and_another_users_is_404(alice_client, alice, charlie):
    mine = make_generation(alice, prompt="my prompt")
    page = text(alice_client.get(f"/history/{mine.id}/"))
    assert "my prompt" in page and str(mine.id) in page
    assert "/playground/?prompt=my%20prompt&amp;orientation=portrait" in page
    theirs = make_generation(charlie, prompt="charlie secret")
    response = alice_client.get(f"/history/{theirs.id}/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert "charlie secret" not in text(response)


def test_failed_generation_detail_explains_and_links_the_code(alice_client, alice):
    failed = make_generation(alice, status="failed")
    page = text(alice_client.get(f"/history/{failed.id}/"))
    assert "No image: this generation failed." in page
    assert 'href="/docs/#error-GENERATION_FAILED"' in page


# CSV export


def test_csv_has_the_users_rows_only(alice_client, alice, charlie):
    key, _ = create_api_key(user=alice, name="bot")
    mine = make_generation(alice, api_key=key, prompt="mine")
    make_generation(charlie, prompt="charlie secret")
    response = alice_client.get("/history/export.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="animeapi-history-')
    [row] = csv_of(response)
    assert row["id"] == str(mine.id)
    assert row["prompt"] == "mine"
    assert row["key_prefix"] == key.prefix and row["key_name"] == "bot"
    assert row["cost_usd"] == "0.009000"
    assert row["image_url"] == f"http://testserver/media/{mine.image}"
    assert row["status"] == "succeeded" and row["generation_time_ms"] == "4200"


def test_csv_follows_the_filters(alice_client, alice):
    make_generation(alice, prompt="square one", orientation="square")
    make_generation(alice, prompt="portrait one")
    make_generation(alice, prompt="broken", status="failed")
    rows = csv_of(alice_client.get("/history/export.csv", {"orientation": "square"}))
    assert [row["prompt"] for row in rows] == ["square one"]
    rows = csv_of(alice_client.get("/history/export.csv", {"status": "failed"}))
    assert [(row["prompt"], row["error_code"], row["image_url"]) for row in rows] == [("broken", "GENERATION_FAILED", "")]
    rows = csv_of(alice_client.get("/history/export.csv", {"key": "playground"}))
    assert {row["key_name"] for row in rows} == {"playground"}


def test_csv_export_link_carries_the_current_filters(alice_client, alice):
    make_generation(alice)
    page = text(alice_client.get("/history/", {"status": "succeeded", "page": 1}))
    assert 'href="/history/export.csv?status=succeeded"' in page


def test_csv_defuses_spreadsheet_formulas(alice_client, alice):
    make_generation(alice, prompt="=HYPERLINK(\"http://evil\")")
    [row] = csv_of(alice_client.get("/history/export.csv"))
    assert row["prompt"] == "'=HYPERLINK(\"http://evil\")"


def test_csv_of_a_real_api_call(client, alice, alice_key):
    assert generate(client, alice_key, {"prompt": "anime girl", "orientation": "landscape"}).status_code == 200
    client.force_login(alice)
    [row] = csv_of(client.get("/history/export.csv"))
    generation = Generation.objects.get(user=alice)
    assert (row["orientation"], row["width"], row["height"]) == ("landscape", "1280", "832")
    assert row["enhanced_prompt"] == generation.enhanced_prompt


# API docs


def test_docs_document_every_error_code_with_an_anchor(client, db):
    page = text(client.get("/docs/"))
    codes = [error.code for error in ERROR_CODES]
    assert len(codes) == len(set(codes))
    # Every code the API can answer has its section: those raised in the source, each field's
    # code, and the failed generations' codes.
    from generation import api, openai_compat, resources

    source = "".join(path.read_text() for app in ("accounts", "billing", "config", "generation")
                     for path in (Path(__file__).resolve().parent.parent / app).rglob("*.py"))
    raised = set(re.findall(r'code="([A-Z][A-Z_]+)"', source))
    raised |= set(api.FIELD_CODES.values()) | set(openai_compat.FIELD_CODES.values()) | set(resources.ERRORS)
    assert raised - {"PROCESSING_FAILED", "INVALID_SIGNATURE", "INVALID_PAYLOAD"} <= set(codes), \
        sorted(raised - set(codes))  # (the three left out are the Stripe webhook's, for Stripe)
    for code in codes:
        assert f'id="error-{code}"' in page
    for header in ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "X-Request-ID",
                   "Idempotency-Key"]:
        assert f'id="header-{header}"' in page
    assert 'href="/api/schema/"' in page and 'href="/api/docs/interactive/"' in page


def test_docs_use_our_base_url(client, db, settings):
    assert "curl -X POST http://testserver/api/generate" in text(client.get("/docs/"))
    settings.PUBLIC_BASE_URL = "https://anime.example.com"
    page = text(client.get("/docs/"))
    assert "curl -X POST https://anime.example.com/api/generate" in page
    assert "api.animeapi.com" not in page


def test_unknown_page_is_our_404(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert "Page not found" in text(response)
