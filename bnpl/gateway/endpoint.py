"""What the sandbox provider answers to one HTTP request, whichever server received it.

Shared by the Django views (``bnpl.gateway.views``, mounted in the web app) and the lean
stand-alone server (``bnpl.gateway.server``), so that both process a request the same way and
apply the configured faults the same way, as a real network would: latency before processing
(the caller waits it, each server in its own manner); a timeout (504) or a 5xx (503) without
processing; a lost response (504) after processing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bnpl.gateway.base import GatewayRequestError, GatewayResult
from bnpl.gateway.faults import SandboxFaults
from bnpl.gateway.sandbox import sandbox_charge, sandbox_payout, sandbox_query, sandbox_refund

#: The processing of an endpoint: (request body, whether risk control rejects it) → result.
Process = Callable[[dict[str, Any], bool], GatewayResult]


def _charge(data: dict[str, Any], risk_reject: bool) -> GatewayResult:
    return sandbox_charge(
        data.get("idempotency_key"),  # type: ignore[arg-type]  (checked by the provider)
        data.get("funding_source"),  # type: ignore[arg-type]
        data.get("amount"),
        risk_reject=risk_reject,
    )


def _refund(data: dict[str, Any], _risk_reject: bool) -> GatewayResult:
    return sandbox_refund(data.get("idempotency_key"), data.get("charge_ref"), data.get("amount"))  # type: ignore[arg-type]


def _payout(data: dict[str, Any], risk_reject: bool) -> GatewayResult:
    return sandbox_payout(
        data.get("idempotency_key"),  # type: ignore[arg-type]
        data.get("account"),
        data.get("amount"),
        risk_reject=risk_reject,
    )


def _query(data: dict[str, Any], _risk_reject: bool) -> GatewayResult:
    return sandbox_query(data.get("idempotency_key"))  # type: ignore[arg-type]


#: Endpoint name → (processing, whether faults other than latency apply). ``query`` meets only the
#: latency, so that reconciliation can always learn what happened.
ENDPOINTS: dict[str, tuple[Process, bool]] = {
    "charge": (_charge, True),
    "refund": (_refund, True),
    "payout": (_payout, True),
    "query": (_query, False),
}


def request_data(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body; ``GatewayRequestError`` (HTTP 400) when it is not one."""
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise GatewayRequestError("the body must be a JSON object") from exc
    if not isinstance(data, dict):
        raise GatewayRequestError("the body must be a JSON object")
    return data


def answer(endpoint: str, data: dict[str, Any], faults: SandboxFaults) -> tuple[int, dict[str, Any]]:
    """Process a request whose latency has been waited: (HTTP status, JSON body).

    ``endpoint`` must be a key of :data:`ENDPOINTS`. A malformed request is a 400 with
    ``{"error": …}``; the client treats it as a bug, never as an outcome.
    """
    process = ENDPOINTS[endpoint][0]
    key = fault_key(endpoint, data)
    if (stopped := stopped_before_processing(key, faults)) is not None:
        return stopped
    try:
        result = process(data, key is not None and faults.hits("risk_reject", key))
    except GatewayRequestError as exc:
        return 400, {"error": str(exc)}
    return reply(key, faults, result)


# The steps of :func:`answer`, for a server that processes an endpoint its own way (the lean server's charge).


def fault_key(endpoint: str, data: dict[str, Any]) -> str | None:
    """The key that decides which faults strike this request; None when only the latency applies."""
    key = data.get("idempotency_key")
    return key if ENDPOINTS[endpoint][1] and isinstance(key, str) else None


def stopped_before_processing(key: str | None, faults: SandboxFaults) -> tuple[int, dict[str, Any]] | None:
    """The answer of a request a fault stops before the provider processes it (timeout 504, error 503)."""
    stopped = faults.before_processing(key) if key is not None else None
    if stopped == "timeout":
        return 504, {"error": "gateway timeout (simulated)"}
    if stopped == "error":
        return 503, {"error": "service unavailable (simulated)"}
    return None


def reply(key: str | None, faults: SandboxFaults, result: GatewayResult) -> tuple[int, dict[str, Any]]:
    """The answer of a processed request: its result, unless the response is lost (504)."""
    if key is not None and faults.hits("lost_response", key):
        return 504, {"error": "gateway timeout (simulated lost response)"}
    return 200, result.to_dict()
