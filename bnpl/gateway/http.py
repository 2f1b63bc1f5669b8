"""A gateway client that reaches the sandbox provider over HTTP, with a timeout.

It exists so the charge run can be exercised against a real network call: a slow
provider, a dropped connection and a lost response all look to the platform exactly
as they would with a real provider. Anything that leaves the request's fate open (a
timeout, a connection error, an HTTP 5xx, an unreadable answer) is ``unknown``,
never ``declined``: only the provider's explicit answer may say no money moved.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from bnpl.gateway.base import GatewayRequestError, GatewayResult, PaymentGateway, unknown


class HttpSandboxGateway(PaymentGateway):
    """JSON over HTTP to ``<base_url>charge``, ``refund``, ``payout`` and ``query`` (see ``bnpl.gateway.views``)."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"the sandbox gateway URL must be http(s): {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout_s = float(timeout_s)

    def _post(self, endpoint: str, payload: dict[str, Any]) -> GatewayResult:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s) in __init__
            self.base_url + endpoint,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - see above
                body = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                return unknown(f"sandbox HTTP {exc.code}")
            try:
                detail = json.loads(exc.read() or b"{}").get("error", "")
            except (ValueError, OSError, AttributeError):
                detail = ""
            raise GatewayRequestError(f"sandbox refused the request (HTTP {exc.code}): {detail}") from exc
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            return unknown(f"sandbox unreachable or timed out: {exc}")
        try:
            return GatewayResult.from_dict(json.loads(body))
        except (ValueError, TypeError, AttributeError, GatewayRequestError) as exc:
            return unknown(f"unreadable sandbox response: {exc}")

    def charge(self, idempotency_key: str, funding_source: str, amount: Decimal) -> GatewayResult:
        return self._post(
            "charge", {"idempotency_key": idempotency_key, "funding_source": funding_source, "amount": str(amount)}
        )

    def refund(self, idempotency_key: str, charge_ref: str, amount: Decimal) -> GatewayResult:
        return self._post(
            "refund", {"idempotency_key": idempotency_key, "charge_ref": charge_ref, "amount": str(amount)}
        )

    def payout(self, idempotency_key: str, account: str, amount: Decimal) -> GatewayResult:
        return self._post("payout", {"idempotency_key": idempotency_key, "account": account, "amount": str(amount)})

    def query(self, idempotency_key: str) -> GatewayResult:
        return self._post("query", {"idempotency_key": idempotency_key})
