from django.urls import path

from . import views

app_name = "billing"

urlpatterns = [
    path("", views.home, name="home"),
    path("topup/", views.topup, name="topup"),
    path("alerts/", views.alert_settings, name="alert-settings"),
    path("card/", views.card_setup, name="card-setup"),
    path("card/remove/", views.card_remove, name="card-remove"),
    path("auto-recharge/", views.auto_recharge_settings, name="auto-recharge"),
    path("topup/success/", views.topup_success, name="topup-success"),
    path("topup/cancel/", views.topup_cancel, name="topup-cancel"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe-webhook"),
]
