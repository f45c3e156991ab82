"""Template context shared by every page."""

from billing import alerts, autorecharge


def balance_banner(request):
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    # A stopped auto-recharge comes first: it is why the balance will run low.
    banners = [autorecharge.banner_for(request.user), alerts.banner_for(request.user)]
    return {"balance_banner": " ".join(banner for banner in banners if banner)}
