"""API-key authentication and the per-key rate limit.

``Authorization: Bearer sk_<mode>_<public id>_<secret>``. The key decides everything that follows:
the merchant every request is scoped to, and the mode (test keys reach sandbox consumers only,
live keys real consumers only).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from merchants.choices import ApiKeyMode
from merchants.models import ApiKey, Merchant
from merchants.selectors import api_key_get_by_token
from merchants.services import api_key_touch, api_rate_window_hit


@dataclass(frozen=True)
class ApiPrincipal:
    """``request.user`` of an API request: the merchant acting through one of its keys."""

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    pk = None

    @property
    def merchant(self) -> Merchant:
        return self.api_key.merchant

    @property
    def sandbox(self) -> bool:
        """True for a test-mode key: it acts on sandbox consumers only."""
        return self.api_key.mode == ApiKeyMode.TEST

    def __str__(self) -> str:
        return self.api_key.prefix


class ApiKeyAuthentication(BaseAuthentication):
    """Bearer API keys; a missing header is 401 ``authentication_required``, a bad or revoked key 401 too."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiPrincipal, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _sep, token = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not token.strip():
            raise AuthenticationFailed(_("Send your API key as Authorization: Bearer <key>."), code="invalid_api_key")
        key = api_key_get_by_token(token=token.strip())
        if key is None:
            raise AuthenticationFailed(_("This API key is not valid."), code="invalid_api_key")
        if not key.is_active:
            raise AuthenticationFailed(_("This API key has been revoked."), code="api_key_revoked")
        api_key_touch(api_key=key)
        return ApiPrincipal(api_key=key), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class ApiKeyRateThrottle(BaseThrottle):
    """``BNPL_API_RATE_LIMIT_LIVE`` / ``_TEST`` requests per second per key; over it, 429 with ``Retry-After``.

    The counter lives in PostgreSQL (``merchants.services.api_rate_window_hit``), shared by every web
    process and machine without another service to run; docs/api.md says why and what it costs.
    """

    def allow_request(self, request: Request, view: object) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        limit = settings.BNPL_API_RATE_LIMIT_LIVE if key.mode == ApiKeyMode.LIVE else settings.BNPL_API_RATE_LIMIT_TEST
        return api_rate_window_hit(api_key=key, limit=limit)

    def wait(self) -> float:
        # Fixed one-second windows: the next window opens within a second.
        return 1.0


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes the bearer API key in the OpenAPI document."""

    target_class = "bnpl.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sk_<test|live>_<id>_<secret>",
            "description": "An API key from the merchant's settings; test keys act on sandbox consumers only.",
        }
