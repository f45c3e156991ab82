from django.urls import path

from . import api

urlpatterns = [
    path("enhance", api.EnhanceView.as_view(), name="api-enhance"),
    path("tags", api.TagSearchView.as_view(), name="api-tags"),
]
