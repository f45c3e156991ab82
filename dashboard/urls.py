from django.urls import path

from . import playground, views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("keys/", views.keys, name="keys"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("keys/<int:key_id>/limits/", views.key_limits, name="key-limits"),
    path("keys/webhook-secret/rotate/", views.webhook_secret_rotate, name="webhook-secret-rotate"),
    path("playground/", playground.playground, name="playground"),
    path("playground/generate", playground.PlaygroundGenerateView.as_view(), name="playground-generate"),
    path("playground/enhance", playground.PlaygroundEnhanceView.as_view(), name="playground-enhance"),
    path("history/", views.usage_history, name="history"),
    path("history/export.csv", views.usage_history_csv, name="history-export"),
    path("history/<uuid:generation_id>/", views.generation_detail, name="generation-detail"),
    path("docs/", views.docs, name="docs"),
]
