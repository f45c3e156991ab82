"""Template context shared by every page."""

from billing.alerts import banner_for


def balance_banner(request):
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"balance_banner": banner_for(request.user)}
