"""Swagger UI runs under our Content-Security-Policy with locally served assets.

Until config/urls.py routes /api/docs/interactive/ to dashboard.views.InteractiveDocsView (and
serves the schema without a key), this test mounts both itself.
"""

import pytest
from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from playwright.sync_api import expect
from rest_framework.permissions import AllowAny

from dashboard.views import InteractiveDocsView
from config.urls import urlpatterns as site_urlpatterns

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
         name="api-schema"),
    path("api/docs/interactive/", InteractiveDocsView.as_view(url_name="api-schema"), name="api-docs-interactive"),
    *site_urlpatterns,
]


def test_swagger_ui_renders_the_generate_operation(page):
    response = page.goto("/api/docs/interactive/")
    assert "style-src 'self' 'unsafe-inline'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_text("/api/generate")).to_be_visible()
    expect(page.get_by_text("Generate an anime image from a text prompt")).to_be_visible()
