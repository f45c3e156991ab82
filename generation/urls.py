from django.urls import path

from . import api

urlpatterns = [
    path("generate", api.GenerateView.as_view(), name="api-generate"),
]
