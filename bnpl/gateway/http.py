"""A gateway client that reaches the sandbox provider over HTTP, with a timeout.

It exists so the charge run can be exercised against a real network call: a slow
provider, a dropped connection and a lost response all look to the platform exactly
as they would with a real provider. Anything that leaves the request's fate open (a
timeout, a connection error, an HTTP 5xx, an unreadable answer) is ``unknown``,
never ``declined``: only the provider's explicit answer may say no money moved.

The transport is libcurl (pycurl): a charge run sends a request per order, and
``http.client`` spent 180-210 µs of the run's CPU on each (building the request,
parsing the answer's headers with the ``email`` package), libcurl about 80. A chunk's
charges go out through libcurl's multi interface (:meth:`HttpSandboxGateway.charge_batch`):
still one HTTP request per charge, as the provider's API asks, but all of them driven
by one thread instead of a thread per request in flight.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

import pycurl

from bnpl.gateway.base import ChargeArgs, GatewayRequestError, GatewayResult, PaymentGateway, unknown

_HEADERS = [
    "Content-Type: application/json",
    "Accept: application/json",
    "Expect:",  # no "100-continue" round trip before a body
]

#: Charges of one batch in flight at once, unless the constructor says otherwise (``BNPL_GATEWAY_MAX_IN_FLIGHT``).
DEFAULT_MAX_IN_FLIGHT = 64
#: The most it may be. The batch loop waits with ``select()`` (pycurl's ``CurlMulti.select``), which cannot watch a
#: descriptor numbered 1024 or above: libcurl leaves such a socket out, and its answer would wait for the next timer.
#: A run has a few batches in flight at once (one per chunk being sent or recorded), so 256 each keeps a worker's
#: sockets well below that.
MAX_IN_FLIGHT_LIMIT = 256
#: The longest the batch loop sleeps in ``select`` before it lets libcurl check its own timers again.
_SELECT_S = 1.0


@dataclass
class _Multi:
    """One thread's multi handle, and the easy handles it has finished with (reused: no setup per request)."""

    multi: pycurl.CurlMulti
    idle: list[pycurl.Curl] = field(default_factory=list)


class HttpSandboxGateway(PaymentGateway):
    """JSON over HTTP to ``<base_url>charge``, ``refund``, ``payout`` and ``query`` (see ``bnpl.gateway.views``).

    Each thread has its own libcurl handle, which keeps its HTTP/1.1 connection open and reuses it (a new
    TCP connection per request would cost the client and the provider more than the request). When the
    server has closed a kept-alive connection meanwhile, libcurl finds out before sending, or when the
    request gets no answer byte on it, and sends once more on a new connection: it carries the same
    idempotency key, so the provider cannot act on it twice. ``timeout_s`` bounds each request's whole
    exchange, connecting included; a batch has at most ``max_in_flight`` requests in flight, so it takes at
    most ``ceil(len(batch) / max_in_flight)`` timeouts (the charge run sizes its chunks by that).
    """

    charges_in_batches = True

    def __init__(self, base_url: str, timeout_s: float = 5.0, *, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"the sandbox gateway URL must be http(s): {base_url!r}")
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT_LIMIT:
            raise ValueError(f"max_in_flight must be from 1 to {MAX_IN_FLIGHT_LIMIT}, not {max_in_flight!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout_s = float(timeout_s)
        self.call_timeout_s = self.timeout_s
        self.max_in_flight = int(max_in_flight)
        self._local = threading.local()

    def _new_handle(self) -> pycurl.Curl:
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM, which threads must not use
        curl.setopt(pycurl.TIMEOUT_MS, max(1, round(self.timeout_s * 1000)))
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.HTTPHEADER, _HEADERS)
        curl.setopt(pycurl.PROXY, "")  # straight to the provider: no proxy from http_proxy and the like
        return curl

    def _handle(self) -> pycurl.Curl:
        """This thread's libcurl handle for single calls (a handle must not be shared between threads)."""
        curl = getattr(self._local, "curl", None)
        if curl is None:
            curl = self._local.curl = self._new_handle()
        return curl

    def _multi(self) -> _Multi:
        """This thread's multi handle for batches; its connection cache keeps the connections between batches."""
        multi = getattr(self._local, "multi", None)
        if multi is None:
            handle = pycurl.CurlMulti()
            handle.setopt(pycurl.M_MAXCONNECTS, self.max_in_flight)
            multi = self._local.multi = _Multi(handle)
        return multi

    @staticmethod
    def _prepare(curl: pycurl.Curl, url: str, body: bytes) -> BytesIO:
        answer = BytesIO()
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.POSTFIELDS, body)
        curl.setopt(pycurl.WRITEDATA, answer)
        return answer

    def _post(self, endpoint: str, payload: dict[str, Any]) -> GatewayResult:
        curl = self._handle()
        answer = self._prepare(curl, self.base_url + endpoint, json.dumps(payload).encode())
        try:
            curl.perform()
        except pycurl.error as exc:
            return _unreachable(exc.args[-1] if exc.args else exc)
        return _result(curl.getinfo(pycurl.RESPONSE_CODE), answer.getvalue())

    def charge(self, idempotency_key: str, funding_source: str, amount: Decimal) -> GatewayResult:
        return self._post("charge", _charge_payload(idempotency_key, funding_source, amount))

    def charge_batch(self, requests: Sequence[ChargeArgs]) -> list[GatewayResult]:
        """One ``charge`` request per item, up to ``max_in_flight`` at once, all driven by this thread.

        Each request is exactly what :meth:`charge` sends, with its own key and timeout; a request that fails
        is ``unknown`` and does not disturb the others. When the provider refuses any request as malformed
        (HTTP 4xx), the batch raises ``GatewayRequestError`` once every request has finished, as
        :meth:`charge` would for that request: the others went through, and their keys say so if asked.
        """
        state = self._multi()
        url = self.base_url + "charge"
        results: list[GatewayResult | None] = [None] * len(requests)
        refused: list[str] = []
        running: dict[pycurl.Curl, tuple[int, BytesIO]] = {}
        upcoming = iter(enumerate(requests))

        def start_next() -> None:
            """Put the next request in flight, if one is left."""
            following = next(upcoming, None)
            if following is None:
                return
            index, (key, funding_source, amount) = following
            curl = state.idle.pop() if state.idle else self._new_handle()
            body = json.dumps(_charge_payload(key, funding_source, amount)).encode()
            running[curl] = (index, self._prepare(curl, url, body))
            state.multi.add_handle(curl)

        def finish(curl: pycurl.Curl, failure: str | None) -> None:
            index, answer = running.pop(curl)
            state.multi.remove_handle(curl)
            state.idle.append(curl)
            if failure is not None:
                results[index] = _unreachable(failure)
            else:
                try:
                    results[index] = _result(curl.getinfo(pycurl.RESPONSE_CODE), answer.getvalue())
                except GatewayRequestError as exc:
                    refused.append(str(exc))
                    results[index] = unknown(str(exc))
            start_next()

        for _ in range(self.max_in_flight):
            start_next()
        while running:
            while state.multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            finished = False
            while True:
                queued, succeeded, failed = state.multi.info_read()
                for curl in succeeded:
                    finish(curl, None)
                for curl, _code, message in failed:
                    finish(curl, message)
                finished = finished or bool(succeeded or failed)
                if not queued:
                    break
            if running and not finished:  # nothing new: wait for a socket, or for libcurl's next timer
                wait_ms = state.multi.timeout()
                state.multi.select(_SELECT_S if wait_ms < 0 else min(_SELECT_S, wait_ms / 1000))
        if refused:
            raise GatewayRequestError(f"{len(refused)} of {len(requests)} charges refused; the first: {refused[0]}")
        return results  # type: ignore[return-value]  (every request has finished)

    def refund(self, idempotency_key: str, charge_ref: str, amount: Decimal) -> GatewayResult:
        return self._post(
            "refund", {"idempotency_key": idempotency_key, "charge_ref": charge_ref, "amount": str(amount)}
        )

    def payout(self, idempotency_key: str, account: str, amount: Decimal) -> GatewayResult:
        return self._post("payout", {"idempotency_key": idempotency_key, "account": account, "amount": str(amount)})

    def query(self, idempotency_key: str) -> GatewayResult:
        return self._post("query", {"idempotency_key": idempotency_key})


def _charge_payload(idempotency_key: str, funding_source: str, amount: Decimal) -> dict[str, str]:
    return {"idempotency_key": idempotency_key, "funding_source": funding_source, "amount": str(amount)}


def _unreachable(detail: object) -> GatewayResult:
    return unknown(f"sandbox unreachable or timed out: {detail}")


def _result(status: int, body: bytes) -> GatewayResult:
    """The outcome of one answered request; ``GatewayRequestError`` when the provider refused it as malformed."""
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
