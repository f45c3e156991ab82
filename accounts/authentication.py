from rest_framework import authentication, exceptions

from .apikeys import authenticate_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer ank_…`. Missing, malformed, unknown or revoked: 401 INVALID_KEY."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw_key.strip():
            raise exceptions.NotAuthenticated()
        api_key = authenticate_key(raw_key.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed()
        return api_key.user, api_key

    def authenticate_header(self, request):
        return self.keyword
