"""The sandbox provider's HTTP endpoint (``HttpSandboxGateway`` is its client).

Mounted at ``sandbox/gateway/`` and answering only when
``settings.BNPL_SANDBOX_HTTP_ENABLED`` is true (404 otherwise): it moves simulated
money and takes no credentials, so it must never be reachable in production.
The configured faults are applied as a real network would apply them
(``bnpl.gateway.endpoint``, shared with the lean server ``bnpl.gateway.server``):
latency before processing; a timeout (504) or a 5xx (503) without processing; a
lost response (504) after processing.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bnpl.gateway.base import GatewayRequestError
from bnpl.gateway.endpoint import answer, request_data
from bnpl.gateway.faults import sandbox_faults_load


def _respond(request: HttpRequest, endpoint: str) -> JsonResponse:
    if not getattr(settings, "BNPL_SANDBOX_HTTP_ENABLED", False):
        raise Http404("sandbox gateway disabled")
    try:
        data = request_data(request.body)
    except GatewayRequestError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    faults = sandbox_faults_load()
    faults.delay()
    status, body = answer(endpoint, data, faults)
    return JsonResponse(body, status=status)


@csrf_exempt
@require_POST
def charge(request: HttpRequest) -> JsonResponse:
    """Charge a funding source: ``{idempotency_key, funding_source, amount}`` (amount as a string)."""
    return _respond(request, "charge")


@csrf_exempt
@require_POST
def refund(request: HttpRequest) -> JsonResponse:
    """Refund a charge: ``{idempotency_key, charge_ref, amount}``."""
    return _respond(request, "refund")


@csrf_exempt
@require_POST
def payout(request: HttpRequest) -> JsonResponse:
    """Pay out to a bank account: ``{idempotency_key, account, amount}``."""
    return _respond(request, "payout")


@csrf_exempt
@require_POST
def query(request: HttpRequest) -> JsonResponse:
    """The outcome recorded under ``{idempotency_key}``; only latency applies, so reconciliation can work."""
    return _respond(request, "query")
