"""The payment gateway interface and the sandbox provider, in-process and over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from bnpl.exceptions import ValidationFailed
from bnpl.gateway import get_gateway
from bnpl.gateway.base import ChargeOutcome, DeclineCode, GatewayRequestError, GatewayResult
from bnpl.gateway.faults import NO_FAULTS, SandboxFaults, sandbox_faults_load
from bnpl.gateway.http import HttpSandboxGateway
from bnpl.gateway.sandbox import InProcessSandboxGateway
from bnpl.gateway.server import serve_in_thread
from bnpl.gateway.services import (
    sandbox_faults_set,
    sandbox_funding_source_add,
    sandbox_funding_source_default,
    sandbox_funding_source_set_frozen,
)
from bnpl.models import SandboxCharge, SandboxFundingSource, SandboxRefund
from tests.factories import ConsumerFactory

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def gateway() -> InProcessSandboxGateway:
    return InProcessSandboxGateway(faults=NO_FAULTS)


def add_source(consumer, balance: str = "100.00", label: str = "招商银行储蓄卡(1234)") -> SandboxFundingSource:
    return sandbox_funding_source_add(actor=None, consumer=consumer, label=label, balance_amount=balance)


@pytest.fixture
def source(consumer) -> SandboxFundingSource:
    return add_source(consumer)


def balance_of(source: SandboxFundingSource) -> Decimal:
    return SandboxFundingSource.objects.get(pk=source.pk).balance_amount


def run_threads(n: int, target) -> list[BaseException]:
    """Start ``n`` threads together on a barrier; each closes its connection. Returns their errors."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


# --- funding sources --------------------------------------------------------------------------------


def test_first_funding_source_becomes_the_default(consumer):
    first = add_source(consumer, "10.00", "支付宝余额")
    second = add_source(consumer, "20.00", "工商银行储蓄卡(8888)")

    assert first.is_default is True
    assert second.is_default is False
    assert sandbox_funding_source_default(consumer) == first
    assert first.token.startswith("sfs_")
    assert first.token != second.token


def test_new_default_funding_source_demotes_the_old_one(consumer):
    first = add_source(consumer)
    second = sandbox_funding_source_add(
        actor=None, consumer=consumer, label="建设银行信用卡(0001)", balance_amount="5.00", is_default=True
    )

    assert sandbox_funding_source_default(consumer) == second
    assert SandboxFundingSource.objects.get(pk=first.pk).is_default is False
    assert SandboxFundingSource.objects.filter(consumer=consumer, is_default=True).count() == 1


def test_consumer_without_sources_has_no_default(consumer):
    assert sandbox_funding_source_default(consumer) is None


@pytest.mark.parametrize(("label", "balance"), [("", "1.00"), ("卡", "-1.00"), ("卡", "1.001"), ("卡", 1.5)])
def test_funding_source_add_refuses_bad_input(consumer, label, balance):
    with pytest.raises(ValidationFailed):
        sandbox_funding_source_add(actor=None, consumer=consumer, label=label, balance_amount=balance)
    assert SandboxFundingSource.objects.count() == 0


# --- charges ----------------------------------------------------------------------------------------


def test_charge_succeeds_and_debits_the_source(gateway, source):
    result = gateway.charge("charge:1", source.token, D("30.50"))

    assert result.outcome == ChargeOutcome.SUCCEEDED
    assert result.succeeded is True
    assert result.reference.startswith("sch_")
    assert result.decline_code is None
    assert result.amount == D("30.50")
    assert balance_of(source) == D("69.50")
    charge = SandboxCharge.objects.get()
    assert (charge.idempotency_key, charge.reference, charge.amount, charge.status) == (
        "charge:1",
        result.reference,
        D("30.50"),
        "succeeded",
    )


def test_charge_of_more_than_the_balance_is_declined_insufficient_funds(gateway, source):
    result = gateway.charge("charge:big", source.token, D("100.01"))

    assert result.outcome == ChargeOutcome.DECLINED
    assert result.decline_code == DeclineCode.INSUFFICIENT_FUNDS
    assert result.reference is not None
    assert balance_of(source) == D("100.00")
    assert SandboxCharge.objects.get().status == "declined"


def test_charge_of_the_exact_balance_succeeds(gateway, source):
    assert gateway.charge("charge:all", source.token, D("100.00")).succeeded
    assert balance_of(source) == D("0.00")


def test_charge_on_a_frozen_source_is_declined_card_frozen(gateway, source):
    sandbox_funding_source_set_frozen(actor=None, source=source, frozen=True)

    result = gateway.charge("charge:frozen", source.token, D("1.00"))

    assert result.outcome == ChargeOutcome.DECLINED
    assert result.decline_code == DeclineCode.CARD_FROZEN
    assert balance_of(source) == D("100.00")


def test_charge_on_an_unknown_source_is_declined_account_closed(gateway, source):
    result = gateway.charge("charge:ghost", "sfs_doesnotexist", D("1.00"))

    assert result.outcome == ChargeOutcome.DECLINED
    assert result.decline_code == DeclineCode.ACCOUNT_CLOSED
    assert balance_of(source) == D("100.00")


def test_charge_replay_returns_the_original_result_and_moves_money_once(gateway, source):
    first = gateway.charge("charge:replay", source.token, D("40.00"))
    second = gateway.charge("charge:replay", source.token, D("40.00"))

    assert second == first
    assert balance_of(source) == D("60.00")
    assert SandboxCharge.objects.count() == 1


def test_declined_charge_replays_as_declined_even_after_a_top_up(gateway, source):
    declined = gateway.charge("charge:d", source.token, D("150.00"))
    SandboxFundingSource.objects.filter(pk=source.pk).update(balance_amount=D("500.00"))

    assert gateway.charge("charge:d", source.token, D("150.00")) == declined
    assert balance_of(source) == D("500.00")


@pytest.mark.parametrize(("token", "amount"), [("other", D("40.00")), (None, D("41.00"))])
def test_charge_key_reused_for_a_different_charge_is_refused(gateway, source, token, amount):
    gateway.charge("charge:reuse", source.token, D("40.00"))

    with pytest.raises(GatewayRequestError):
        gateway.charge("charge:reuse", token or source.token, amount)

    assert balance_of(source) == D("60.00")
    assert SandboxCharge.objects.count() == 1


@pytest.mark.parametrize("amount", [D("0.00"), D("-1.00"), D("1.001"), 1.5, "abc"])
def test_charge_with_a_malformed_amount_is_refused(gateway, source, amount):
    with pytest.raises(GatewayRequestError):
        gateway.charge("charge:bad", source.token, amount)
    assert SandboxCharge.objects.count() == 0
    assert balance_of(source) == D("100.00")


def test_gateway_refuses_to_run_inside_a_callers_transaction(gateway, source):
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        gateway.charge("charge:nested", source.token, D("1.00"))
    assert SandboxCharge.objects.count() == 0


def test_the_sandbox_charge_commits_without_waiting_for_the_flush(gateway, source):
    # The test case's transaction stands for the charge's own: the setting holds until its end.
    gateway.charge("charge:async", source.token, D("1.00"))

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "off"


@pytest.mark.django_db(transaction=True)
def test_the_callers_next_transactions_still_wait_for_the_flush(gateway, source):
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        configured = cursor.fetchone()[0]

        result = gateway.charge("charge:async", source.token, D("2.00"))  # autocommit: its own transaction

        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == configured != "off"
    assert result.succeeded and balance_of(source) == D("98.00")


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_charges_with_one_key_charge_once():
    source = add_source(ConsumerFactory(), "100.00")
    gateway = InProcessSandboxGateway(faults=NO_FAULTS)
    results: list[GatewayResult] = []

    errors = run_threads(20, lambda i: results.append(gateway.charge("charge:same", source.token, D("10.00"))))

    assert errors == []
    assert len(results) == 20
    assert {r.outcome for r in results} == {ChargeOutcome.SUCCEEDED}
    assert len({r.reference for r in results}) == 1
    assert SandboxCharge.objects.count() == 1
    assert balance_of(source) == D("90.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_naming_two_sources_charge_one_of_them_once():
    """The sources' locks do not serialise these: the unique key does (the later insert waits, then replays)."""
    first, second = add_source(ConsumerFactory(), "100.00"), add_source(ConsumerFactory(), "100.00")
    gateway = InProcessSandboxGateway(faults=NO_FAULTS)
    results: list[GatewayResult] = []

    errors = run_threads(
        12, lambda i: results.append(gateway.charge("charge:twin", (first, second)[i % 2].token, D("10.00")))
    )

    charge = SandboxCharge.objects.get()
    winner = first if charge.funding_token == first.token else second
    assert {type(e) for e in errors} <= {GatewayRequestError}  # the other source's requests: key reused
    assert len(results) + len(errors) == 12
    assert {r.reference for r in results} == {charge.reference}
    assert len(results) == 6  # every request naming the charged source replays its one charge
    assert balance_of(winner) == D("90.00")
    assert balance_of(first) + balance_of(second) == D("190.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_charges_never_overdraw_a_source():
    source = add_source(ConsumerFactory(), "50.00")
    gateway = InProcessSandboxGateway(faults=NO_FAULTS)
    results: list[GatewayResult] = []

    errors = run_threads(12, lambda i: results.append(gateway.charge(f"charge:{i}", source.token, D("10.00"))))

    assert errors == []
    outcomes = sorted(r.outcome for r in results)
    assert outcomes.count(ChargeOutcome.SUCCEEDED) == 5
    assert outcomes.count(ChargeOutcome.DECLINED) == 7
    assert {r.decline_code for r in results if not r.succeeded} == {DeclineCode.INSUFFICIENT_FUNDS}
    assert balance_of(source) == D("0.00")


# --- refunds and queries ---------------------------------------------------------------------------


def test_refunds_up_to_the_charge_succeed_and_one_more_fen_is_declined(gateway, source):
    charge = gateway.charge("charge:r", source.token, D("100.00"))

    part = gateway.refund("refund:1", charge.reference, D("30.00"))
    rest = gateway.refund("refund:2", charge.reference, D("70.00"))
    over = gateway.refund("refund:3", charge.reference, D("0.01"))

    assert part.succeeded and rest.succeeded
    assert part.reference.startswith("srf_")
    assert over.outcome == ChargeOutcome.DECLINED
    assert over.decline_code == DeclineCode.REFUND_EXCEEDS_CHARGE
    assert balance_of(source) == D("100.00")
    assert SandboxRefund.objects.count() == 2


def test_refund_replay_returns_the_original_refund(gateway, source):
    charge = gateway.charge("charge:rr", source.token, D("20.00"))
    first = gateway.refund("refund:rr", charge.reference, D("5.00"))

    assert gateway.refund("refund:rr", charge.reference, D("5.00")) == first
    with pytest.raises(GatewayRequestError):
        gateway.refund("refund:rr", charge.reference, D("6.00"))
    assert SandboxRefund.objects.count() == 1
    assert balance_of(source) == D("85.00")


def test_refund_of_a_declined_or_unknown_charge_is_declined(gateway, source):
    declined = gateway.charge("charge:no", source.token, D("500.00"))

    for ref in (declined.reference, "sch_nope"):
        result = gateway.refund(f"refund:{ref}", ref, D("1.00"))
        assert result.outcome == ChargeOutcome.DECLINED
        assert result.decline_code == DeclineCode.CHARGE_NOT_FOUND
    assert SandboxRefund.objects.count() == 0
    assert balance_of(source) == D("100.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_never_exceed_the_charge():
    source = add_source(ConsumerFactory(), "100.00")
    gateway = InProcessSandboxGateway(faults=NO_FAULTS)
    charge = gateway.charge("charge:cr", source.token, D("100.00"))
    results: list[GatewayResult] = []

    errors = run_threads(10, lambda i: results.append(gateway.refund(f"refund:{i}", charge.reference, D("30.00"))))

    assert errors == []
    assert sum(r.succeeded for r in results) == 3
    assert SandboxRefund.objects.count() == 3
    assert balance_of(source) == D("90.00")


def test_query_reports_what_the_provider_recorded(gateway, source):
    charged = gateway.charge("charge:q", source.token, D("10.00"))
    declined = gateway.charge("charge:qd", source.token, D("999.00"))
    refunded = gateway.refund("refund:q", charged.reference, D("4.00"))

    assert gateway.query("charge:q") == charged
    assert gateway.query("charge:qd") == declined
    assert gateway.query("refund:q") == refunded
    missing = gateway.query("charge:never")
    assert missing.outcome == ChargeOutcome.NOT_FOUND
    assert missing.reference is None


# --- faults (in-process) ---------------------------------------------------------------------------


def test_timeout_fault_returns_unknown_and_processes_nothing(source):
    gateway = InProcessSandboxGateway(faults=SandboxFaults(timeout_rate=D("1")))

    assert gateway.charge("charge:t", source.token, D("10.00")).outcome == ChargeOutcome.UNKNOWN
    assert gateway.query("charge:t").outcome == ChargeOutcome.NOT_FOUND
    assert balance_of(source) == D("100.00")


def test_lost_response_fault_charges_but_answers_unknown(source):
    gateway = InProcessSandboxGateway(faults=SandboxFaults(lost_response_rate=D("1")))

    assert gateway.charge("charge:l", source.token, D("10.00")).outcome == ChargeOutcome.UNKNOWN
    # A network retry under the same key meets the same fault but never charges again.
    assert gateway.charge("charge:l", source.token, D("10.00")).outcome == ChargeOutcome.UNKNOWN
    found = gateway.query("charge:l")
    assert found.outcome == ChargeOutcome.SUCCEEDED
    assert found.amount == D("10.00")
    assert balance_of(source) == D("90.00")
    assert SandboxCharge.objects.count() == 1


def test_error_fault_returns_unknown_and_processes_nothing(source):
    gateway = InProcessSandboxGateway(faults=SandboxFaults(error_rate=D("1")))
    assert gateway.refund("refund:e", "sch_x", D("1.00")).outcome == ChargeOutcome.UNKNOWN
    assert gateway.charge("charge:e", source.token, D("1.00")).outcome == ChargeOutcome.UNKNOWN
    assert SandboxCharge.objects.count() == 0


def test_risk_fault_declines_risk_rejected(source):
    gateway = InProcessSandboxGateway(faults=SandboxFaults(risk_reject_rate=D("1")))
    result = gateway.charge("charge:risk", source.token, D("1.00"))
    assert result.decline_code == DeclineCode.RISK_REJECTED
    assert balance_of(source) == D("100.00")


def test_fault_selection_is_deterministic_per_seed_and_key():
    keys = [f"charge:{i}" for i in range(1000)]
    half = SandboxFaults(lost_response_rate=D("0.5"), seed=7)

    hits = [k for k in keys if half.hits("lost_response", k)]

    assert hits == [k for k in keys if SandboxFaults(lost_response_rate=D("0.5"), seed=7).hits("lost_response", k)]
    assert hits != [k for k in keys if SandboxFaults(lost_response_rate=D("0.5"), seed=8).hits("lost_response", k)]
    assert 450 <= len(hits) <= 550
    assert not any(half.hits("timeout", k) for k in keys)  # other faults stay off


def test_in_process_gateway_reads_faults_switched_on_in_the_database(source):
    gateway = InProcessSandboxGateway()  # no fixed faults: reads the configuration row per call
    assert gateway.charge("charge:before", source.token, D("1.00")).succeeded

    sandbox_faults_set(actor=None, timeout_rate="1")
    assert gateway.charge("charge:after", source.token, D("1.00")).outcome == ChargeOutcome.UNKNOWN

    sandbox_faults_set(actor=None)
    assert sandbox_faults_load() == NO_FAULTS
    assert gateway.charge("charge:after", source.token, D("1.00")).succeeded
    assert balance_of(source) == D("98.00")


@pytest.mark.parametrize("kwargs", [{"timeout_rate": "1.5"}, {"error_rate": "-0.1"}, {"latency_ms": -1}])
def test_faults_set_refuses_out_of_range_values(kwargs):
    with pytest.raises(ValidationFailed):
        sandbox_faults_set(actor=None, **kwargs)
    assert sandbox_faults_load() == NO_FAULTS


# --- configuration ---------------------------------------------------------------------------------


def test_get_gateway_defaults_to_the_in_process_sandbox(settings):
    del settings.BNPL_GATEWAY
    assert isinstance(get_gateway(), InProcessSandboxGateway)


def test_get_gateway_builds_the_http_client_from_settings(settings):
    settings.BNPL_GATEWAY = "sandbox_http"
    settings.BNPL_GATEWAY_URL = "http://127.0.0.1:9/sandbox/gateway"
    settings.BNPL_GATEWAY_TIMEOUT_S = "2.5"
    settings.BNPL_GATEWAY_MAX_IN_FLIGHT = 12

    gateway = get_gateway()

    assert isinstance(gateway, HttpSandboxGateway)
    assert gateway.base_url == "http://127.0.0.1:9/sandbox/gateway/"
    assert gateway.timeout_s == gateway.call_timeout_s == 2.5
    assert gateway.charges_in_batches and gateway.max_in_flight == 12


def test_get_gateway_refuses_an_unknown_name(settings):
    settings.BNPL_GATEWAY = "stripe"
    with pytest.raises(ImproperlyConfigured):
        get_gateway()


# --- over HTTP (a real local server in a thread) ---------------------------------------------------


@pytest.fixture(params=["django", "lean"])
def http_sandbox(request, settings):
    """Each HTTP test runs against both servers of the provider: the web app's views and the lean server."""
    settings.BNPL_SANDBOX_HTTP_ENABLED = True
    if request.param == "django":
        yield f"{request.getfixturevalue('live_server').url}/sandbox/gateway/"
    else:
        with serve_in_thread(threads=2) as base_url:
            yield base_url


@pytest.mark.django_db(transaction=True)
def test_http_charge_refund_and_query(http_sandbox):
    source = add_source(ConsumerFactory(), "100.00")
    client = HttpSandboxGateway(http_sandbox, timeout_s=5)

    charged = client.charge("charge:h1", source.token, D("12.34"))
    replay = client.charge("charge:h1", source.token, D("12.34"))
    refunded = client.refund("refund:h1", charged.reference, D("2.34"))
    declined = client.charge("charge:h2", source.token, D("1000.00"))

    assert charged.outcome == ChargeOutcome.SUCCEEDED
    assert charged.amount == D("12.34")
    assert replay == charged
    assert refunded.outcome == ChargeOutcome.SUCCEEDED
    assert declined.decline_code == DeclineCode.INSUFFICIENT_FUNDS
    assert client.query("charge:h1") == charged
    assert client.query("charge:none").outcome == ChargeOutcome.NOT_FOUND
    assert balance_of(source) == D("90.00")
    assert SandboxCharge.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_http_latency_beyond_the_client_timeout_is_unknown_and_the_charge_lands_later(http_sandbox):
    source = add_source(ConsumerFactory(), "100.00")
    sandbox_faults_set(actor=None, latency_ms=800)

    started = time.monotonic()
    result = HttpSandboxGateway(http_sandbox, timeout_s=0.2).charge("charge:slow", source.token, D("5.00"))

    assert result.outcome == ChargeOutcome.UNKNOWN
    assert time.monotonic() - started < 0.7
    # The provider did process it after the delay: reconciliation by query finds the charge.
    patient = HttpSandboxGateway(http_sandbox, timeout_s=5)
    assert patient.query("charge:slow").outcome == ChargeOutcome.SUCCEEDED
    assert balance_of(source) == D("95.00")


@pytest.mark.django_db(transaction=True)
def test_http_lost_response_is_unknown_then_query_finds_the_success(http_sandbox):
    source = add_source(ConsumerFactory(), "100.00")
    sandbox_faults_set(actor=None, lost_response_rate="1")
    client = HttpSandboxGateway(http_sandbox, timeout_s=5)

    assert client.charge("charge:lost", source.token, D("7.00")).outcome == ChargeOutcome.UNKNOWN
    assert client.charge("charge:lost", source.token, D("7.00")).outcome == ChargeOutcome.UNKNOWN  # retried

    found = client.query("charge:lost")
    assert found.outcome == ChargeOutcome.SUCCEEDED
    assert found.amount == D("7.00")
    assert balance_of(source) == D("93.00")
    assert SandboxCharge.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fault", ["error_rate", "timeout_rate"])
def test_http_5xx_is_unknown_and_nothing_was_charged(http_sandbox, fault):
    source = add_source(ConsumerFactory(), "100.00")
    sandbox_faults_set(actor=None, **{fault: "1"})
    client = HttpSandboxGateway(http_sandbox, timeout_s=5)

    assert client.charge("charge:5xx", source.token, D("7.00")).outcome == ChargeOutcome.UNKNOWN
    assert client.query("charge:5xx").outcome == ChargeOutcome.NOT_FOUND
    assert balance_of(source) == D("100.00")


@pytest.mark.django_db(transaction=True)
def test_http_malformed_request_is_refused_not_unknown(http_sandbox):
    source = add_source(ConsumerFactory(), "100.00")
    client = HttpSandboxGateway(http_sandbox, timeout_s=5)

    with pytest.raises(GatewayRequestError, match="400"):
        client.charge("charge:m", source.token, D("1.001"))
    assert SandboxCharge.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_http_sandbox_is_closed_unless_enabled(settings, live_server):
    settings.BNPL_SANDBOX_HTTP_ENABLED = False
    source = add_source(ConsumerFactory(), "100.00")

    with pytest.raises(GatewayRequestError, match="404"):
        HttpSandboxGateway(f"{live_server.url}/sandbox/gateway/", timeout_s=5).charge("c", source.token, D("1.00"))
    assert SandboxCharge.objects.count() == 0


def test_http_connection_refused_is_unknown():
    with socket.socket() as sock:  # a local port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = HttpSandboxGateway(f"http://127.0.0.1:{port}/sandbox/gateway/", timeout_s=1).charge("c", "t", D("1.00"))
    assert result.outcome == ChargeOutcome.UNKNOWN


def test_http_client_refuses_a_non_http_url():
    with pytest.raises(ValueError, match="http"):
        HttpSandboxGateway("file:///etc/passwd")


@pytest.mark.parametrize("in_flight", [0, 257])
def test_http_client_refuses_a_number_in_flight_out_of_range(in_flight):
    with pytest.raises(ValueError, match="max_in_flight must be from 1 to 256"):
        HttpSandboxGateway("http://127.0.0.1:9/", max_in_flight=in_flight)


# --- a batch over HTTP: one request per charge, driven together ----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_http_batch_answers_each_charge_as_a_single_call_would(http_sandbox):
    """More charges than in flight at once: each is its own request with its own key, and a batch sent again
    replays every answer."""
    rich, poor = add_source(ConsumerFactory(), "100.00"), add_source(ConsumerFactory(), "3.00")
    client = HttpSandboxGateway(http_sandbox, timeout_s=5, max_in_flight=2)
    batch = [
        ("charge:b1", rich.token, D("10.00")),
        ("charge:b2", poor.token, D("5.00")),
        ("charge:b3", rich.token, D("20.00")),
        ("charge:b4", "no-such-token", D("1.00")),
        ("charge:b5", rich.token, D("30.00")),
    ]

    results = client.charge_batch(batch)
    replay = client.charge_batch(batch)

    assert [r.outcome for r in results] == ["succeeded", "declined", "succeeded", "declined", "succeeded"]
    assert results[1].decline_code == DeclineCode.INSUFFICIENT_FUNDS
    assert replay == results
    assert [client.query(key) for key, _token, _amount in batch] == results
    assert balance_of(rich) == D("40.00") and balance_of(poor) == D("3.00")
    assert SandboxCharge.objects.filter(status="succeeded").count() == 3


@pytest.mark.django_db(transaction=True)
def test_http_batch_lost_responses_are_unknown_and_the_charges_landed(http_sandbox):
    source = add_source(ConsumerFactory(), "100.00")
    sandbox_faults_set(actor=None, lost_response_rate="1")
    client = HttpSandboxGateway(http_sandbox, timeout_s=5, max_in_flight=2)

    results = client.charge_batch([(f"charge:bl{i}", source.token, D("1.00")) for i in range(3)])

    assert [r.outcome for r in results] == [ChargeOutcome.UNKNOWN] * 3
    assert [client.query(f"charge:bl{i}").outcome for i in range(3)] == [ChargeOutcome.SUCCEEDED] * 3
    assert balance_of(source) == D("97.00")


@pytest.mark.django_db(transaction=True)
def test_http_batch_waits_at_most_its_timeouts_in_turn(http_sandbox):
    """4 charges, 2 in flight, 0.3 s each, a provider 1.5 s slow: about two timeouts, every answer unknown;
    the provider processed them all the same, as reconciliation finds."""
    source = add_source(ConsumerFactory(), "100.00")
    sandbox_faults_set(actor=None, latency_ms=1500)
    client = HttpSandboxGateway(http_sandbox, timeout_s=0.3, max_in_flight=2)

    started = time.monotonic()
    results = client.charge_batch([(f"charge:bs{i}", source.token, D("1.00")) for i in range(4)])

    assert 0.6 <= time.monotonic() - started < 1.4
    assert [r.outcome for r in results] == [ChargeOutcome.UNKNOWN] * 4
    assert all("timed out" in r.message for r in results)
    patient = HttpSandboxGateway(http_sandbox, timeout_s=5)
    assert [patient.query(f"charge:bs{i}").outcome for i in range(4)] == [ChargeOutcome.SUCCEEDED] * 4


@pytest.mark.django_db(transaction=True)
def test_http_batch_with_a_malformed_request_is_refused_once_the_others_went_through(http_sandbox):
    source = add_source(ConsumerFactory(), "100.00")
    client = HttpSandboxGateway(http_sandbox, timeout_s=5, max_in_flight=2)

    with pytest.raises(GatewayRequestError, match=r"1 of 3 charges refused.*400"):
        client.charge_batch(
            [
                ("charge:bm1", source.token, D("1.00")),
                ("charge:bm2", source.token, D("1.001")),
                ("charge:bm3", source.token, D("2.00")),
            ]
        )
    assert sorted(SandboxCharge.objects.values_list("idempotency_key", flat=True)) == ["charge:bm1", "charge:bm3"]
    assert balance_of(source) == D("97.00")


def test_http_batch_to_a_closed_port_is_unknown_for_every_charge():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpSandboxGateway(f"http://127.0.0.1:{port}/sandbox/gateway/", timeout_s=1, max_in_flight=2)

    results = client.charge_batch([(f"c{i}", "t", D("1.00")) for i in range(3)])

    assert [r.outcome for r in results] == [ChargeOutcome.UNKNOWN] * 3
    assert client.charge_batch([]) == []
