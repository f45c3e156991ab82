from django.urls import path

from generation import views as generation_views

from . import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("keys/", views.keys, name="keys"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("keys/<int:key_id>/limits/", views.key_limits, name="key-limits"),
    path("keys/webhook-secret/rotate/", views.webhook_secret_rotate, name="webhook-secret-rotate"),
    path("playground/", generation_views.playground, name="playground"),
    path("playground/generate", generation_views.PlaygroundGenerateView.as_view(), name="playground-generate"),
    path("playground/enhance", generation_views.PlaygroundEnhanceView.as_view(), name="playground-enhance"),
    path("history/", generation_views.usage_history, name="history"),
    path("history/export.csv", generation_views.usage_history_csv, name="history-export"),
    path("history/<uuid:generation_id>/", generation_views.generation_detail, name="generation-detail"),
    path("docs/", views.docs, name="docs"),
]
