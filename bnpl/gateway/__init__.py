"""Payment gateways: the interface (``base``), the sandbox provider, and the configured choice.

``get_gateway()`` returns the gateway named by ``settings.BNPL_GATEWAY``:

- ``"sandbox"`` (default): ``InProcessSandboxGateway``, the sandbox called in-process;
- ``"sandbox_http"``: ``HttpSandboxGateway`` to ``BNPL_GATEWAY_URL`` with a timeout of
  ``BNPL_GATEWAY_TIMEOUT_S`` seconds per request and up to ``BNPL_GATEWAY_MAX_IN_FLIGHT`` of a
  chunk's charges in flight at once (the sandbox endpoint of a running web server).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from bnpl.gateway.base import (
    ChargeOutcome,
    DeclineCode,
    GatewayRequestError,
    GatewayResult,
    PaymentGateway,
)

DEFAULT_GATEWAY_URL = "http://127.0.0.1:8000/sandbox/gateway/"
DEFAULT_TIMEOUT_S = 5.0

__all__ = [
    "ChargeOutcome",
    "DeclineCode",
    "GatewayRequestError",
    "GatewayResult",
    "PaymentGateway",
    "get_gateway",
]


def get_gateway() -> PaymentGateway:
    """The payment gateway this deployment charges through (a fresh, stateless client)."""
    name = getattr(settings, "BNPL_GATEWAY", "sandbox")
    if name == "sandbox":
        from bnpl.gateway.sandbox import InProcessSandboxGateway  # models need the app registry

        return InProcessSandboxGateway()
    if name == "sandbox_http":
        from bnpl.gateway.http import DEFAULT_MAX_IN_FLIGHT, HttpSandboxGateway

        return HttpSandboxGateway(
            getattr(settings, "BNPL_GATEWAY_URL", DEFAULT_GATEWAY_URL),
            timeout_s=float(getattr(settings, "BNPL_GATEWAY_TIMEOUT_S", DEFAULT_TIMEOUT_S)),
            max_in_flight=int(getattr(settings, "BNPL_GATEWAY_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)),
        )
    raise ImproperlyConfigured(f"BNPL_GATEWAY must be 'sandbox' or 'sandbox_http', not {name!r}")
