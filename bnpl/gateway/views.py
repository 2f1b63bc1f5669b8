"""The sandbox provider's HTTP endpoint (``HttpSandboxGateway`` is its client).

Mounted at ``sandbox/gateway/`` and answering only when
``settings.BNPL_SANDBOX_HTTP_ENABLED`` is true (404 otherwise): it moves simulated
money and takes no credentials, so it must never be reachable in production.
The configured faults are applied here, as a real network would apply them:
latency before processing; a timeout (504) or a 5xx (503) without processing; a
lost response (504) after processing.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.conf import settings
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bnpl.gateway.base import GatewayRequestError, GatewayResult
from bnpl.gateway.faults import sandbox_faults_load
from bnpl.gateway.sandbox import sandbox_charge, sandbox_payout, sandbox_query, sandbox_refund


def _payload(request: HttpRequest) -> dict:
    if not getattr(settings, "BNPL_SANDBOX_HTTP_ENABLED", False):
        raise Http404("sandbox gateway disabled")
    try:
        data = json.loads(request.body or b"{}")
    except ValueError as exc:
        raise GatewayRequestError("the body must be a JSON object") from exc
    if not isinstance(data, dict):
        raise GatewayRequestError("the body must be a JSON object")
    return data


def _respond(request: HttpRequest, process: Callable[[dict, bool], GatewayResult], *, faulty: bool) -> JsonResponse:
    try:
        data = _payload(request)
        key = data.get("idempotency_key")
        faults = sandbox_faults_load()
        faults.delay()
        if faulty and isinstance(key, str):
            stopped = faults.before_processing(key)
            if stopped == "timeout":
                return JsonResponse({"error": "gateway timeout (simulated)"}, status=504)
            if stopped == "error":
                return JsonResponse({"error": "service unavailable (simulated)"}, status=503)
        result = process(data, faulty and isinstance(key, str) and faults.hits("risk_reject", key))
        if faulty and isinstance(key, str) and faults.hits("lost_response", key):
            return JsonResponse({"error": "gateway timeout (simulated lost response)"}, status=504)
    except GatewayRequestError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(result.to_dict())


@csrf_exempt
@require_POST
def charge(request: HttpRequest) -> JsonResponse:
    """Charge a funding source: ``{idempotency_key, funding_source, amount}`` (amount as a string)."""

    def process(data: dict, risk_reject: bool) -> GatewayResult:
        return sandbox_charge(
            data.get("idempotency_key"), data.get("funding_source"), data.get("amount"), risk_reject=risk_reject
        )

    return _respond(request, process, faulty=True)


@csrf_exempt
@require_POST
def refund(request: HttpRequest) -> JsonResponse:
    """Refund a charge: ``{idempotency_key, charge_ref, amount}``."""
    return _respond(
        request,
        lambda d, _risk: sandbox_refund(d.get("idempotency_key"), d.get("charge_ref"), d.get("amount")),
        faulty=True,
    )


@csrf_exempt
@require_POST
def payout(request: HttpRequest) -> JsonResponse:
    """Pay out to a bank account: ``{idempotency_key, account, amount}``."""

    def process(data: dict, risk_reject: bool) -> GatewayResult:
        return sandbox_payout(
            data.get("idempotency_key"), data.get("account"), data.get("amount"), risk_reject=risk_reject
        )

    return _respond(request, process, faulty=True)


@csrf_exempt
@require_POST
def query(request: HttpRequest) -> JsonResponse:
    """The outcome recorded under ``{idempotency_key}``; only latency applies, so reconciliation can work."""
    return _respond(request, lambda d, _risk: sandbox_query(d.get("idempotency_key")), faulty=False)
