"""The lean sandbox server (``bnpl.gateway.server``) and the HTTP client's kept-alive connections, on real sockets.

The provider's behaviour over HTTP (charges, replays, faults) is in ``test_gateway.py``, which runs every
HTTP test against both servers; here is what only the transport does.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from decimal import Decimal
from urllib.parse import urlsplit

import pycurl
import pytest
from django.core.exceptions import ImproperlyConfigured

from bnpl.gateway.base import ChargeOutcome, GatewayRequestError
from bnpl.gateway.http import HttpSandboxGateway
from bnpl.gateway.server import SandboxServer, serve_in_thread
from bnpl.gateway.services import sandbox_faults_set, sandbox_funding_source_add
from bnpl.models import SandboxCharge
from tests.factories import ConsumerFactory

D = Decimal


@pytest.fixture
def lean_sandbox(settings):
    settings.BNPL_SANDBOX_HTTP_ENABLED = True
    with serve_in_thread(threads=2) as base_url:
        yield base_url


def raw_request(base_url: str, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_one_thread_charges_over_one_kept_alive_connection(lean_sandbox):
    source = sandbox_funding_source_add(actor=None, consumer=ConsumerFactory(), label="卡", balance_amount="100.00")
    client = HttpSandboxGateway(lean_sandbox, timeout_s=5)

    first = client.charge("keepalive:1", source.token, D("1.00"))
    second = client.charge("keepalive:2", source.token, D("2.00"))

    assert first.outcome == second.outcome == ChargeOutcome.SUCCEEDED
    assert client._local.curl.getinfo(pycurl.NUM_CONNECTS) == 0  # the second request opened no connection
    assert SandboxCharge.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_batch_keeps_its_connections_for_the_next_batch(lean_sandbox):
    source = sandbox_funding_source_add(actor=None, consumer=ConsumerFactory(), label="卡", balance_amount="100.00")
    client = HttpSandboxGateway(lean_sandbox, timeout_s=5, max_in_flight=3)

    first = client.charge_batch([(f"batch:1:{n}", source.token, D("1.00")) for n in range(6)])
    second = client.charge_batch([(f"batch:2:{n}", source.token, D("1.00")) for n in range(6)])

    assert {r.outcome for r in first + second} == {ChargeOutcome.SUCCEEDED}
    handles = client._local.multi.idle
    assert len(handles) == 3  # one easy handle per request in flight, reused
    assert [curl.getinfo(pycurl.NUM_CONNECTS) for curl in handles] == [0, 0, 0]  # the second batch opened none
    assert SandboxCharge.objects.count() == 12


def test_a_thread_reuses_its_connection_for_the_next_request():
    server = _CountingServer(hang_up=False)
    try:
        client = HttpSandboxGateway(server.base_url, timeout_s=5)
        results = [client.charge(f"reuse:{n}", "tok", D("1.00")) for n in range(3)]
    finally:
        server.close()

    assert {r.outcome for r in results} == {ChargeOutcome.SUCCEEDED}
    assert server.connections == 1
    assert len(server.requests) == 3


@pytest.mark.django_db(transaction=True)
def test_a_latency_switched_on_or_off_applies_to_the_next_request(lean_sandbox):
    """The server reads the faults first, then waits their latency: a change applies at once, either way."""
    source = sandbox_funding_source_add(actor=None, consumer=ConsumerFactory(), label="卡", balance_amount="100.00")
    client = HttpSandboxGateway(lean_sandbox, timeout_s=5)

    def timed_charge(key: str) -> float:
        started = time.monotonic()
        assert client.charge(key, source.token, D("1.00")).outcome == ChargeOutcome.SUCCEEDED
        return time.monotonic() - started

    timed_charge("latency:0")
    sandbox_faults_set(actor=None, latency_ms=500)
    raised = timed_charge("latency:1")
    steady = timed_charge("latency:2")
    sandbox_faults_set(actor=None, latency_ms=0)
    lowered = timed_charge("latency:3")
    after = timed_charge("latency:4")

    assert raised >= 0.5
    assert steady >= 0.5
    assert lowered < 0.4
    assert after < 0.4
    assert SandboxCharge.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_lean_server_answers_unknown_paths_methods_and_bodies_like_a_server(lean_sandbox):
    path = urlsplit(lean_sandbox).path

    assert raw_request(lean_sandbox, "POST", "/elsewhere/charge", b"{}")[0] == 404
    assert raw_request(lean_sandbox, "POST", path + "transfer", b"{}")[0] == 404
    assert raw_request(lean_sandbox, "GET", path + "charge")[0] == 405
    status, body = raw_request(lean_sandbox, "POST", path + "charge", b"[1, 2]")
    assert status == 400
    assert "JSON object" in body["error"]
    with pytest.raises(GatewayRequestError, match="400"):
        HttpSandboxGateway(lean_sandbox, timeout_s=5).charge("bad-amount", "tok", D("-1"))
    assert SandboxCharge.objects.count() == 0


def test_lean_server_refuses_to_start_unless_the_sandbox_is_enabled(settings):
    settings.BNPL_SANDBOX_HTTP_ENABLED = False
    with pytest.raises(ImproperlyConfigured):
        SandboxServer(threads=1)


class _CountingServer:
    """A real HTTP server that counts connections and answers every request with a success, kept alive.

    With ``hang_up`` it closes each connection after its first answer, as a provider's load balancer does
    to an idle kept-alive connection: the client only learns it when it sends its next request on it.
    """

    def __init__(self, *, hang_up: bool) -> None:
        self.hang_up = hang_up
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.connections = 0
        self.requests: list[dict] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/sandbox/gateway/"

    def _serve(self) -> None:
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self._answer(conn) and not self.hang_up:
                    pass

    def _answer(self, conn: socket.socket) -> bool:
        """Read one request and answer it; False when the client closed the connection instead."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _sep, body = data.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(json.loads(body))
        answer = json.dumps({"outcome": "succeeded", "reference": "ch_x", "message": "charged", "amount": "1.00"})
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
            + f"Content-Length: {len(answer)}\r\n\r\n{answer}".encode()
        )
        return True

    def close(self) -> None:
        self.sock.close()


def test_the_client_ignores_proxy_settings_of_the_environment(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    server = _CountingServer(hang_up=False)
    try:
        result = HttpSandboxGateway(server.base_url, timeout_s=5).charge("proxy:1", "tok", D("1.00"))
    finally:
        server.close()

    assert result.outcome == ChargeOutcome.SUCCEEDED
    assert server.connections == 1


def test_a_request_on_a_connection_the_server_closed_is_sent_again_on_a_new_one():
    server = _CountingServer(hang_up=True)
    try:
        client = HttpSandboxGateway(server.base_url, timeout_s=5)
        first = client.charge("stale:1", "tok", D("1.00"))
        second = client.charge("stale:2", "tok", D("1.00"))
    finally:
        server.close()

    assert first.outcome == second.outcome == ChargeOutcome.SUCCEEDED
    assert server.connections == 2
    assert [r["idempotency_key"] for r in server.requests] == ["stale:1", "stale:2"]


def dispatch(server: SandboxServer, endpoint: str, payload: dict) -> tuple[int, dict]:
    """One request through the server's request handling, without a socket."""

    async def run() -> tuple[int, dict]:
        try:
            return await server._dispatch("POST", f"/sandbox/gateway/{endpoint}", json.dumps(payload).encode())
        finally:
            await server.connections.close()

    return asyncio.run(run())


def dispatch_together(server: SandboxServer, payloads: list[dict]) -> list[tuple[int, dict]]:
    """Charges that reach the server's request handling in the same turn of its event loop."""

    async def run() -> list[tuple[int, dict]]:
        try:
            return await asyncio.gather(
                *(server._dispatch("POST", "/sandbox/gateway/charge", json.dumps(p).encode()) for p in payloads)
            )
        finally:
            await server.connections.close()

    return asyncio.run(run())


class _CountingStatements(SandboxServer):
    """The lean server's request handling, counting its database statements by what they do."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fault_reads = 0
        self.charge_batches: list[int] = []

    async def _load_faults(self, callers):
        self.fault_reads += 1
        return await super()._load_faults(callers)

    async def _run_charges(self, requests):
        self.charge_batches.append(len(requests))
        return await super()._run_charges(requests)


@pytest.mark.django_db(transaction=True)
def test_charges_that_arrive_together_share_one_faults_read_and_one_statement_each_with_its_own_answer(settings):
    """Four charges on one source with room for three, a replay and a key reused for another amount: one read of
    the faults, one statement, and each request answered as alone (in the order given, on the one source)."""
    settings.BNPL_SANDBOX_HTTP_ENABLED = True
    source = sandbox_funding_source_add(actor=None, consumer=ConsumerFactory(), label="卡", balance_amount="30.00")
    token = source.token
    earlier = dispatch(
        SandboxServer(threads=1), "charge", {"idempotency_key": "t:0", "funding_source": token, "amount": "5"}
    )
    server = _CountingStatements(threads=2)
    try:
        answers = dispatch_together(
            server,
            [
                {"idempotency_key": "t:1", "funding_source": token, "amount": "10"},
                {"idempotency_key": "t:0", "funding_source": token, "amount": "5"},  # replayed
                {"idempotency_key": "t:2", "funding_source": token, "amount": "10"},
                {"idempotency_key": "t:0", "funding_source": token, "amount": "6"},  # the key, another amount
                {"idempotency_key": "t:3", "funding_source": token, "amount": "10"},  # 5 left: declined
            ],
        )
    finally:
        server.close()

    assert (server.fault_reads, server.charge_batches) == (1, [5])
    assert [status for status, _body in answers] == [200, 200, 200, 400, 200]
    assert [body.get("outcome") for _status, body in answers] == [
        "succeeded",
        "succeeded",
        "succeeded",
        None,
        "declined",
    ]
    assert answers[1][1] == earlier[1]  # the replay is the first answer again
    assert answers[4][1]["decline_code"] == "insufficient_funds"
    source.refresh_from_db()
    assert source.balance_amount == Decimal("5.00")
    assert SandboxCharge.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_charge_whose_random_reference_collides_is_processed_again_with_another(settings, monkeypatch):
    settings.BNPL_SANDBOX_HTTP_ENABLED = True
    source = sandbox_funding_source_add(actor=None, consumer=ConsumerFactory(), label="卡", balance_amount="100.00")
    references = iter(["ch_same", "ch_same", "ch_other"])
    monkeypatch.setattr("bnpl.gateway.sandbox.new_charge_reference", lambda: next(references))
    server = SandboxServer(threads=1)
    try:
        first = dispatch(server, "charge", {"idempotency_key": "ref:1", "funding_source": source.token, "amount": "1"})
        second = dispatch(server, "charge", {"idempotency_key": "ref:2", "funding_source": source.token, "amount": "2"})
    finally:
        server.close()

    assert first == (200, {**first[1], "outcome": "succeeded", "reference": "ch_same"})
    assert second == (200, {**second[1], "outcome": "succeeded", "reference": "ch_other"})
    assert sorted(SandboxCharge.objects.values_list("reference", flat=True)) == ["ch_other", "ch_same"]


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_random_reference_collides_processes_nothing_and_each_charge_is_processed_again(
    settings, monkeypatch
):
    settings.BNPL_SANDBOX_HTTP_ENABLED = True
    source = sandbox_funding_source_add(actor=None, consumer=ConsumerFactory(), label="卡", balance_amount="100.00")
    references = iter(["ch_same", "ch_same", "ch_b", "ch_c", "ch_d"])
    monkeypatch.setattr("bnpl.gateway.sandbox.new_charge_reference", lambda: next(references))
    server = SandboxServer(threads=2)
    try:
        dispatch(server, "charge", {"idempotency_key": "ref:0", "funding_source": source.token, "amount": "1"})
        answers = dispatch_together(
            server,
            [
                {"idempotency_key": "ref:1", "funding_source": source.token, "amount": "2"},
                {"idempotency_key": "ref:2", "funding_source": source.token, "amount": "3"},
            ],
        )
    finally:
        server.close()

    assert [(status, body["outcome"]) for status, body in answers] == [(200, "succeeded")] * 2
    assert {body["reference"] for _status, body in answers} == {"ch_c", "ch_d"}  # ch_b went with the batch
    assert sorted(SandboxCharge.objects.values_list("reference", flat=True)) == ["ch_c", "ch_d", "ch_same"]
    source.refresh_from_db()
    assert source.balance_amount == Decimal("94.00")


@pytest.mark.django_db(transaction=True)
def test_a_database_the_server_cannot_reach_is_answered_503(settings):
    settings.BNPL_SANDBOX_HTTP_ENABLED = True
    server = SandboxServer(threads=1)
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        server.connections._params = {
            **server.connections._params,
            "host": "127.0.0.1",
            "port": unused.getsockname()[1],
        }
    try:
        status, body = dispatch(server, "charge", {"idempotency_key": "down:1", "funding_source": "tok", "amount": "1"})
    finally:
        server.close()

    assert (status, body) == (503, {"error": "service unavailable (database)"})
    assert SandboxCharge.objects.count() == 0
