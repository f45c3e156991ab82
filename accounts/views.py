from django.conf import settings
from django.shortcuts import render


def landing(request):
    return render(request, "landing.html", {"price": settings.ANIMEAPI_PRICE_USD})
