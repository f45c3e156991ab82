from urllib.parse import unquote_plus

from django.conf import settings
from rest_framework import authentication, exceptions

from config.errors import ApiError

from . import keys
from .apikeys import authenticate_key, network_allows


def client_ip(request) -> str:
    """The caller's address: REMOTE_ADDR, or the right entry of X-Forwarded-For when
    NUM_PROXIES trusted proxies stand in front (as DRF counts them)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if forwarded and settings.NUM_PROXIES:
        addresses = [item.strip() for item in forwarded.split(",")]
        return addresses[-min(settings.NUM_PROXIES, len(addresses))]
    return request.META.get("REMOTE_ADDR", "")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer ank_…`. Missing, malformed, unknown or revoked: 401 INVALID_KEY;
    past its expiry: 401 KEY_EXPIRED; outside its allowed networks: 403 IP_NOT_ALLOWED."""

    keyword = "Bearer"

    def authenticate(self, request):
        if keys.KEY_IN_TEXT.search(unquote_plus(request.META.get("QUERY_STRING", ""))):
            # Never read from a URL: URLs end up in access logs, proxies and browser history.
            # (A search for "tank_top" is not a key: only a key's shape counts.)
            raise ApiError(status_code=401, code="INVALID_KEY",
                           message="Send the API key in the Authorization header, never in the URL "
                                   "(consider this key exposed and rotate it)")
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw_key.strip():
            raise exceptions.NotAuthenticated()
        api_key = authenticate_key(raw_key.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed()
        if api_key.is_expired:
            raise ApiError(status_code=401, code="KEY_EXPIRED",
                           message=f"This API key expired at {api_key.expires_at:%Y-%m-%d %H:%M} UTC")
        if not network_allows(api_key, client_ip(request)):
            raise ApiError(status_code=403, code="IP_NOT_ALLOWED",
                           message="This API key may not be used from your IP address")
        return api_key.user, api_key

    def authenticate_header(self, request):
        return self.keyword
