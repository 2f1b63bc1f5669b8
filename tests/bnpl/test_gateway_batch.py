"""The in-process sandbox's batch charge: a chunk in one call, each charge as it would be alone."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from bnpl.charging import _charge_batch
from bnpl.charging_bulk import Outgoing
from bnpl.gateway.base import ChargeOutcome, DeclineCode, GatewayRequestError, GatewayResult, PaymentGateway
from bnpl.gateway.faults import NO_FAULTS, SandboxFaults
from bnpl.gateway.sandbox import InProcessSandboxGateway, charge_request, sandbox_charge_batch
from bnpl.gateway.services import sandbox_funding_source_add, sandbox_funding_source_set_frozen
from bnpl.models import SandboxCharge, SandboxFundingSource
from tests.factories import ConsumerFactory

pytestmark = pytest.mark.django_db

D = Decimal


def add_source(balance: str) -> SandboxFundingSource:
    return sandbox_funding_source_add(
        actor=None, consumer=ConsumerFactory(), label="支付宝余额", balance_amount=balance
    )


def balance_of(source: SandboxFundingSource) -> Decimal:
    return SandboxFundingSource.objects.get(pk=source.pk).balance_amount


def a_mixed_chunk(tag: str) -> tuple[list[tuple[str, str, Decimal]], list[SandboxFundingSource]]:
    """Requests that meet every outcome: charged, charged to zero, short, frozen, closed, two on one source."""
    funded, exact, short, frozen, shared = (add_source(b) for b in ("100.00", "7.00", "3.00", "100.00", "12.00"))
    sandbox_funding_source_set_frozen(actor=None, source=frozen, frozen=True)
    requests = [
        (f"{tag}:funded", funded.token, D("10.00")),
        (f"{tag}:exact", exact.token, D("7.00")),
        (f"{tag}:short", short.token, D("5.00")),
        (f"{tag}:frozen", frozen.token, D("1.00")),
        (f"{tag}:closed", "fs_no_such_source", D("1.00")),
        (f"{tag}:shared-1", shared.token, D("8.00")),
        (f"{tag}:shared-2", shared.token, D("8.00")),  # the source has 4.00 left by then
    ]
    return requests, [funded, exact, short, frozen, shared]


def comparable(result: GatewayResult) -> tuple[object, ...]:
    return result.outcome, result.decline_code, result.amount, bool(result.reference)


def test_each_charge_in_a_batch_ends_as_it_would_alone():
    alone, alone_sources = a_mixed_chunk("alone")
    batched, batched_sources = a_mixed_chunk("batch")
    gateway = InProcessSandboxGateway(faults=NO_FAULTS)

    one_by_one = [gateway.charge(*request) for request in alone]
    at_once = gateway.charge_batch(batched)

    assert [comparable(r) for r in at_once] == [comparable(r) for r in one_by_one]
    assert [r.decline_code for r in at_once] == [
        None,
        None,
        DeclineCode.INSUFFICIENT_FUNDS,
        DeclineCode.CARD_FROZEN,
        DeclineCode.ACCOUNT_CLOSED,
        None,
        DeclineCode.INSUFFICIENT_FUNDS,
    ]
    assert [balance_of(s) for s in batched_sources] == [balance_of(s) for s in alone_sources]
    assert [balance_of(s) for s in batched_sources] == [D("90.00"), D("0.00"), D("3.00"), D("100.00"), D("4.00")]
    # Every request is recorded under its key, declines included, with the reference its answer gave.
    recorded = dict(
        SandboxCharge.objects.filter(idempotency_key__startswith="batch:").values_list("idempotency_key", "reference")
    )
    assert recorded == {key: result.reference for (key, _t, _a), result in zip(batched, at_once, strict=True)}


def test_charges_on_one_source_run_in_the_order_asked_whatever_their_keys():
    """A short balance covers the first of a consumer's charges, as one call after another would."""
    source = add_source("10.00")

    results = InProcessSandboxGateway(faults=NO_FAULTS).charge_batch(
        [("b-first", source.token, D("8.00")), ("a-second", source.token, D("8.00"))]
    )

    assert [r.outcome for r in results] == [ChargeOutcome.SUCCEEDED, ChargeOutcome.DECLINED]
    assert results[1].decline_code == DeclineCode.INSUFFICIENT_FUNDS
    assert balance_of(source) == D("2.00")


def test_a_batch_sent_again_replays_every_answer_and_moves_no_money():
    requests, sources = a_mixed_chunk("again")
    gateway = InProcessSandboxGateway(faults=NO_FAULTS)
    first = gateway.charge_batch(requests)
    balances = [balance_of(s) for s in sources]

    again = gateway.charge_batch(list(reversed(requests)))

    assert list(reversed(again)) == first  # same outcome, reference and amount for every key
    assert [balance_of(s) for s in sources] == balances
    assert SandboxCharge.objects.count() == len(requests)


def test_a_key_twice_in_one_batch_is_charged_once():
    source = add_source("100.00")

    results = InProcessSandboxGateway(faults=NO_FAULTS).charge_batch(
        [("twice", source.token, D("10.00")), ("twice", source.token, D("10.00"))]
    )

    assert results[0] == results[1] and results[0].succeeded
    assert balance_of(source) == D("90.00") and SandboxCharge.objects.count() == 1


def test_a_key_reused_for_another_charge_refuses_the_batch_and_single_calls_answer_the_rest():
    source = add_source("100.00")
    gateway = InProcessSandboxGateway(faults=NO_FAULTS)
    gateway.charge("used", source.token, D("10.00"))

    with pytest.raises(GatewayRequestError, match="already used"):
        gateway.charge_batch([("fresh", source.token, D("5.00")), ("used", source.token, D("99.00"))])

    # What the batch did stays done (one statement, committed); sent alone, "fresh" replays it.
    assert gateway.charge("fresh", source.token, D("5.00")).succeeded
    assert balance_of(source) == D("85.00") and SandboxCharge.objects.count() == 2


def test_a_malformed_request_refuses_the_batch_before_anything_is_processed():
    source = add_source("100.00")

    with pytest.raises(GatewayRequestError):
        InProcessSandboxGateway(faults=NO_FAULTS).charge_batch(
            [("fine", source.token, D("5.00")), ("bad", source.token, D("-1.00"))]
        )

    assert SandboxCharge.objects.count() == 0 and balance_of(source) == D("100.00")


def test_an_empty_batch_is_no_call():
    assert InProcessSandboxGateway(faults=NO_FAULTS).charge_batch([]) == []


def test_faults_strike_each_request_of_a_batch_by_its_own_key():
    source = add_source("1000.00")
    faults = SandboxFaults(
        timeout_rate=D("0.2"), error_rate=D("0.2"), lost_response_rate=D("0.3"), risk_reject_rate=D("0.3"), seed=3
    )
    keys = [f"fault:{i}" for i in range(60)]

    results = InProcessSandboxGateway(faults=faults).charge_batch([(key, source.token, D("1.00")) for key in keys])

    recorded = dict(SandboxCharge.objects.values_list("idempotency_key", "status"))
    for key, result in zip(keys, results, strict=True):
        if faults.hits("timeout", key) or faults.hits("error", key):
            assert result.outcome == ChargeOutcome.UNKNOWN and key not in recorded  # never reached the provider
        elif faults.hits("lost_response", key):
            assert result.outcome == ChargeOutcome.UNKNOWN and key in recorded  # processed, answer lost
        elif faults.hits("risk_reject", key):
            assert result.decline_code == DeclineCode.RISK_REJECTED and recorded[key] == "declined"
        else:
            assert result.succeeded and recorded[key] == "succeeded"
    assert {r.outcome for r in results} == {ChargeOutcome.UNKNOWN, ChargeOutcome.SUCCEEDED, ChargeOutcome.DECLINED}
    charged = sum(1 for status in recorded.values() if status == "succeeded")
    assert balance_of(source) == D("1000.00") - charged


def test_a_batch_waits_its_latency_once():
    source = add_source("100.00")
    gateway = InProcessSandboxGateway(faults=SandboxFaults(latency_ms=200))

    started = time.monotonic()
    results = gateway.charge_batch([(f"slow:{i}", source.token, D("1.00")) for i in range(10)])

    assert 0.2 <= time.monotonic() - started < 1.0  # one request to the provider, not ten
    assert all(r.succeeded for r in results)


@pytest.mark.django_db(transaction=True)
def test_two_batches_over_the_same_sources_in_opposite_orders_charge_each_key_once():
    """Funding sources are locked in one order whatever the order of the requests: no deadlock, no double."""
    sources = [add_source("1000.00") for _ in range(30)]
    requests = [(f"k:{i}:{j}", s.token, D("1.00")) for i, s in enumerate(sources) for j in range(3)]
    answers: dict[int, list[GatewayResult]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def send(index, chunk):
        try:
            barrier.wait(timeout=10)
            answers[index] = InProcessSandboxGateway(faults=NO_FAULTS).charge_batch(chunk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    chunks = [requests, list(reversed(requests)), requests[::2], requests[1::2]]
    threads = [threading.Thread(target=send, args=pair) for pair in enumerate(chunks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == [] and len(answers) == 4
    by_key = {c.idempotency_key: c.reference for c in SandboxCharge.objects.all()}
    assert len(by_key) == len(requests)
    for index, chunk in enumerate(chunks):  # every sender got the one charge of each of its keys
        assert [(r.outcome, r.reference) for r in answers[index]] == [
            (ChargeOutcome.SUCCEEDED, by_key[key]) for key, _t, _a in chunk
        ]
    assert all(balance_of(s) == D("997.00") for s in sources)


def test_sandbox_charge_batch_answers_in_the_order_asked():
    low, high = add_source("100.00"), add_source("100.00")
    # Sent in the reverse of the order they run in (by funding source token).
    first, second = sorted([low, high], key=lambda s: s.token, reverse=True)

    results = sandbox_charge_batch(
        [
            charge_request("order:a", first.token, D("1.00"), risk_reject=False),
            charge_request("order:b", second.token, D("2.00"), risk_reject=True),
        ]
    )

    assert [r.amount for r in results] == [D("1.00"), D("2.00")]
    assert [r.outcome for r in results] == [ChargeOutcome.SUCCEEDED, ChargeOutcome.DECLINED]


# --- the charge run's side: one call per chunk, and single calls when the batch fails ---------------------


class _Recording(InProcessSandboxGateway):
    """The in-process sandbox, counting its batch and single calls; the batch call can be made to fail."""

    def __init__(self, *, batch_fails: bool = False) -> None:
        super().__init__(faults=NO_FAULTS)
        self.batch_fails = batch_fails
        self.batches: list[int] = []
        self.singles: list[str] = []

    def charge_batch(self, requests):
        self.batches.append(len(requests))
        if self.batch_fails:
            raise ConnectionError("the provider's batch endpoint is down")
        return super().charge_batch(requests)

    def charge(self, idempotency_key, funding_source, amount):
        self.singles.append(idempotency_key)
        return super().charge(idempotency_key, funding_source, amount)


def outgoing(n: int) -> list[Outgoing]:
    items = [Outgoing(i, i, f"ca_{i}", add_source("50.00").token, D("5.00")) for i in range(1, n + 1)]
    items.append(Outgoing(n + 1, n + 1, f"ca_{n + 1}", "", D("5.00")))  # a consumer without a funding source
    return items


def test_a_gateway_without_a_batch_endpoint_answers_a_batch_one_call_after_another():
    gateway = _Recording()
    items = outgoing(2)[:2]

    results = PaymentGateway.charge_batch(gateway, [(item.key, item.token, item.amount) for item in items])

    assert gateway.batches == [] and gateway.singles == ["ca_1", "ca_2"]
    assert [r.outcome for r in results] == [ChargeOutcome.SUCCEEDED] * 2


def test_a_chunk_goes_to_a_batch_gateway_as_one_call():
    gateway = _Recording()
    items = outgoing(4)

    results = _charge_batch(gateway, items)

    assert gateway.batches == [4] and gateway.singles == []  # the consumer without a source costs no call
    assert [r.outcome for r, _error in results] == [ChargeOutcome.SUCCEEDED] * 4 + [ChargeOutcome.DECLINED]
    assert results[-1][0].decline_code == "no_funding_source"
    assert not any(error for _r, error in results)


def test_a_chunk_without_funding_sources_makes_no_call():
    gateway = _Recording()
    items = outgoing(0)

    results = _charge_batch(gateway, items)

    assert gateway.batches == [] and gateway.singles == []
    assert [(r.decline_code, error) for r, error in results] == [("no_funding_source", False)]


def test_a_batch_refused_after_it_ran_is_replayed_one_by_one_and_charges_nothing_twice():
    """One request reuses a key for another amount: the statement has committed the others when the batch is
    refused. Sent again alone, they replay what the batch did; the bad one's own call fails and stays unknown."""
    gateway = _Recording()
    used = add_source("50.00")
    gateway.charge("ca_used", used.token, D("5.00"))
    gateway.singles.clear()
    items = outgoing(2)
    items.insert(1, Outgoing(99, 99, "ca_used", used.token, D("7.00")))  # the same key, another amount
    sources = {
        item.token: balance_of(SandboxFundingSource.objects.get(token=item.token)) for item in items if item.token
    }

    results = _charge_batch(gateway, items)

    assert gateway.batches == [3] and gateway.singles == ["ca_1", "ca_used", "ca_2"]
    assert [(r.outcome, error) for r, error in results] == [
        (ChargeOutcome.SUCCEEDED, True),  # the failed batch call is counted once, on its first attempt
        (ChargeOutcome.UNKNOWN, True),  # its own call refused: unknown, to reconcile
        (ChargeOutcome.SUCCEEDED, False),
        (ChargeOutcome.DECLINED, False),
    ]
    charges = dict(SandboxCharge.objects.values_list("idempotency_key", "reference"))
    assert len(charges) == 3  # ca_used once (before), ca_1 and ca_2 once each (by the batch)
    assert [results[0][0].reference, results[2][0].reference] == [charges["ca_1"], charges["ca_2"]]
    for token, before in sources.items():
        charged = D("5.00") if token != used.token else D("0.00")
        assert balance_of(SandboxFundingSource.objects.get(token=token)) == before - charged


def test_a_failed_batch_call_is_sent_again_one_by_one_with_the_same_keys():
    gateway = _Recording(batch_fails=True)
    items = outgoing(3)

    results = _charge_batch(gateway, items)

    assert gateway.batches == [3] and gateway.singles == ["ca_1", "ca_2", "ca_3"]
    assert [r.outcome for r, _error in results] == [ChargeOutcome.SUCCEEDED] * 3 + [ChargeOutcome.DECLINED]
    assert [error for _r, error in results] == [True, False, False, False]  # one failed call, counted once
    assert SandboxCharge.objects.count() == 3


def test_a_failed_batch_to_a_gateway_that_bounds_its_calls_leaves_the_attempts_unknown():
    """Sent again one after another, bounded calls could take a timeout each, past the run's budget: the
    attempts stay unknown, and reconciliation asks the provider about each key."""
    gateway = _Recording(batch_fails=True)
    gateway.call_timeout_s = 1.0
    items = outgoing(3)

    results = _charge_batch(gateway, items)

    assert gateway.batches == [3] and gateway.singles == []
    assert [r.outcome for r, _error in results] == [ChargeOutcome.UNKNOWN] * 3 + [ChargeOutcome.DECLINED]
    assert "batch failed" in results[0][0].message
    assert [error for _r, error in results] == [True, False, False, False]  # one failed call, counted once
    assert SandboxCharge.objects.count() == 0
