"""/v1/: the OpenAI-compatible surface (generation/openai_compat.py)."""

from django.urls import path

from . import openai_compat

urlpatterns = [
    path("images/generations", openai_compat.ImagesGenerationsView.as_view(), name="openai-images-generations"),
    path("images/files/<str:token>", openai_compat.image_file, name="openai-image-file"),
    path("models", openai_compat.ModelsView.as_view(), name="openai-models"),
]
