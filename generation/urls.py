from django.urls import include, path

from . import api

urlpatterns = [
    path("generate", api.GenerateView.as_view(), name="api-generate"),
    path("generations", api.GenerationListView.as_view(), name="api-generations"),
    path("generations/<uuid:generation_id>", api.GenerationDetailView.as_view(), name="api-generation"),
    path("pricing", api.PricingView.as_view(), name="api-pricing"),
    path("models", api.ModelListView.as_view(), name="api-models"),
    path("", include("generation.enhance.urls")),
]
