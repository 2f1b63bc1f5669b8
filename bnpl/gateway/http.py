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
import threading
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from bnpl.gateway.base import GatewayRequestError, GatewayResult, PaymentGateway, unknown

#: Failures of a request on a kept-alive connection that the server closed meanwhile: nothing reached it.
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class HttpSandboxGateway(PaymentGateway):
    """JSON over HTTP to ``<base_url>charge``, ``refund``, ``payout`` and ``query`` (see ``bnpl.gateway.views``).

    Each thread keeps one HTTP/1.1 connection open and reuses it (a new TCP connection per request would
    cost the client and the provider more than the request). A request that fails on a reused connection
    because the server had closed it is sent once more on a new connection: it carries the same
    idempotency key, so the provider cannot act on it twice. Any other failure closes the connection.
    """

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"the sandbox gateway URL must be http(s): {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout_s = float(timeout_s)
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._path = urlsplit(self.base_url).path
        self._local = threading.local()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection and whether it has served a request before."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        factory = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = factory(self._netloc, timeout=self.timeout_s)
        self._local.conn = conn
        return conn, False

    def _discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _exchange(self, endpoint: str, body: bytes) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        while True:
            conn, reused = self._connection()
            try:
                conn.request("POST", self._path + endpoint, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except _STALE_CONNECTION:
                self._discard()
                if reused:
                    continue  # the server closed an idle connection: a fresh one, same idempotency key
                raise
            except BaseException:
                self._discard()
                raise
            if response.will_close:
                self._discard()
            return response.status, data

    def _post(self, endpoint: str, payload: dict[str, Any]) -> GatewayResult:
        try:
            status, body = self._exchange(endpoint, json.dumps(payload).encode())
        except (TimeoutError, http.client.HTTPException, OSError) as exc:
            return unknown(f"sandbox unreachable or timed out: {exc}")
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
