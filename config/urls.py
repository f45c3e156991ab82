from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView

from dashboard.views import InteractiveDocsView
from config import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/interactive/", InteractiveDocsView.as_view(url_name="api-schema"), name="api-docs-interactive"),
    path("api/", include("generation.urls")),
    path("v1/", include("generation.openai_urls")),
    path("billing/", include("billing.urls")),
    path("", include("dashboard.urls")),
]

def serve_media(request, path):
    # MEDIA_ROOT is read per request, not frozen into the URLconf when it is first imported.
    return serve(request, path, document_root=settings.MEDIA_ROOT)


if settings.SERVE_MEDIA:
    urlpatterns += [re_path(rf"^{settings.MEDIA_URL.lstrip('/')}(?P<path>.*)$", serve_media)]

handler400 = "config.errors.handler400"
handler404 = "config.errors.handler404"
handler500 = "config.errors.handler500"
