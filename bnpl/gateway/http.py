"""A gateway client that reaches the sandbox provider over HTTP, with a timeout.

It exists so the charge run can be exercised against a real network call: a slow
provider, a dropped connection and a lost response all look to the platform exactly
as they would with a real provider. Anything that leaves the request's fate open (a
timeout, a connection error, an HTTP 5xx, an unreadable answer) is ``unknown``,
never ``declined``: only the provider's explicit answer may say no money moved.

The transport is libcurl (pycurl): a charge run sends a request per order from dozens
of threads, and ``http.client`` spent 180-210 µs of the run's CPU on each (building the
request, parsing the answer's headers with the ``email`` package), libcurl about 80.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

import pycurl

from bnpl.gateway.base import GatewayRequestError, GatewayResult, PaymentGateway, unknown

_HEADERS = [
    "Content-Type: application/json",
    "Accept: application/json",
    "Expect:",  # no "100-continue" round trip before a body
]


class HttpSandboxGateway(PaymentGateway):
    """JSON over HTTP to ``<base_url>charge``, ``refund``, ``payout`` and ``query`` (see ``bnpl.gateway.views``).

    Each thread has its own libcurl handle, which keeps its HTTP/1.1 connection open and reuses it (a new
    TCP connection per request would cost the client and the provider more than the request). When the
    server has closed a kept-alive connection meanwhile, libcurl finds out before sending, or when the
    request gets no answer byte on it, and sends once more on a new connection: it carries the same
    idempotency key, so the provider cannot act on it twice. ``timeout_s`` bounds the whole exchange,
    connecting included.
    """

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"the sandbox gateway URL must be http(s): {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout_s = float(timeout_s)
        self.call_timeout_s = self.timeout_s
        self._local = threading.local()

    def _handle(self) -> pycurl.Curl:
        """This thread's libcurl handle (a handle must not be shared between threads)."""
        curl = getattr(self._local, "curl", None)
        if curl is None:
            curl = pycurl.Curl()
            curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM, which threads must not use
            curl.setopt(pycurl.TIMEOUT_MS, max(1, round(self.timeout_s * 1000)))
            curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
            curl.setopt(pycurl.HTTPHEADER, _HEADERS)
            curl.setopt(pycurl.PROXY, "")  # straight to the provider: no proxy from http_proxy and the like
            self._local.curl = curl
        return curl

    def _exchange(self, endpoint: str, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, body) of one POST; ``pycurl.error`` when no complete answer arrived."""
        curl = self._handle()
        answer = BytesIO()
        curl.setopt(pycurl.URL, self.base_url + endpoint)
        curl.setopt(pycurl.POSTFIELDS, body)
        curl.setopt(pycurl.WRITEDATA, answer)
        curl.perform()
        return curl.getinfo(pycurl.RESPONSE_CODE), answer.getvalue()

    def _post(self, endpoint: str, payload: dict[str, Any]) -> GatewayResult:
        try:
            status, body = self._exchange(endpoint, json.dumps(payload).encode())
        except pycurl.error as exc:
            return unknown(f"sandbox unreachable or timed out: {exc.args[-1] if exc.args else exc}")
        if status >= 500:
            return unknown(f"sandbox HTTP {status}")
        if status >= 400:
            try:
                detail = json.loads(body or b"{}").get("error", "")
            except (ValueError, AttributeError):
                detail = ""
            raise GatewayRequestError(f"sandbox refused the request (HTTP {status}): {detail}")
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
