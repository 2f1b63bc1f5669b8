"""The charge run and the charge paths: outcomes, retries, unknowns, reconciliation, pay now."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from bnpl import charging, charging_bulk, tasks
from bnpl.charging import (
    charge_attempt_record,
    credit_order_pay_now,
    credit_order_retry_charge,
    reconcile_unknown_attempts,
    retry_delay,
    run_charges,
)
from bnpl.choices import ActorKind, OrderStatus
from bnpl.exceptions import InvalidTransition, NotAllowed
from bnpl.gateway.base import ChargeOutcome, GatewayResult
from bnpl.gateway.faults import NO_FAULTS
from bnpl.gateway.sandbox import InProcessSandboxGateway
from bnpl.gateway.services import sandbox_faults_set
from bnpl.ledger import ledger_check, order_account_balance
from bnpl.models import ChargeAttempt, ChargeRun, CreditOrder, LedgerTransaction, OrderEvent, SandboxCharge
from bnpl.models.charging import AttemptStatus, ChargeRunStatus, ChargeTrigger
from bnpl.models.ledger import AccountKind
from bnpl.schedules import JOBS
from bnpl.services import credit_order_complete, credit_order_mark_paid_elsewhere
from consumers.models import PromiseRecord
from tests.bnpl.charging_helpers import account_total, bulk_due_orders, due_order, fund, kind_total
from tests.bnpl.helpers import exposure, order_in
from tests.factories import ConsumerFactory

S = OrderStatus
D = Decimal
pytestmark = pytest.mark.django_db


def run(**options):
    """One charge run in this thread (the test's transaction is visible only to its own connection)."""
    return run_charges(threads=1, **options)


def attempts_of(order):
    return list(ChargeAttempt.objects.filter(order=order).order_by("sequence"))


def balance_of(source):
    source.refresh_from_db()
    return source.balance_amount


# --------------------------------------------------------------------------- success


def test_run_charges_a_due_order_once_and_records_everything(listing, consumer):
    source = fund(consumer, "100.00")
    order = due_order(listing, consumer, amount="5.00")

    result = run()

    order.refresh_from_db()
    assert (order.status, order.hold_amount, order.charge_in_flight) == (S.PAID, D("0.00"), False)
    assert order.paid_at is not None and order.next_attempt_at is None
    assert exposure(consumer) == D("0.00")
    [attempt] = attempts_of(order)
    assert (attempt.sequence, attempt.trigger, attempt.status, attempt.amount) == (
        1,
        ChargeTrigger.SCHEDULED,
        AttemptStatus.SUCCEEDED,
        D("5.00"),
    )
    assert attempt.funding_token == source.token and attempt.run == result
    charge = SandboxCharge.objects.get()
    assert (charge.idempotency_key, charge.reference, charge.amount) == (
        attempt.idempotency_key,
        attempt.gateway_reference,
        D("5.00"),
    )
    assert balance_of(source) == D("95.00")
    event = OrderEvent.objects.filter(order=order).get()
    assert (event.from_status, event.to_status, event.actor, event.actor_kind, event.reason) == (
        S.COMPLETED,
        S.PAID,
        None,
        ActorKind.SYSTEM,
        "Charged",
    )
    record = PromiseRecord.objects.get(order_id=order.pk)
    assert (record.outcome, record.amount) == ("fulfilled", D("5.00"))
    # Completion 5.00, charge 5.00, fee 0.6 % = 0.03.
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert account_total(AccountKind.MERCHANT_PAYABLE, merchant_id=order.merchant_id) == D("-4.97")
    assert kind_total(AccountKind.PAYMENT_CLEARING) == D("5.00")
    assert kind_total(AccountKind.PLATFORM_FEE_REVENUE) == D("-0.03")
    assert set(LedgerTransaction.objects.filter(order=order).values_list("idempotency_key", flat=True)) == {
        f"completion:{order.pk}",
        f"charge:{attempt.idempotency_key}",
        f"fee:{order.pk}",
    }
    assert ledger_check() == []
    assert (result.status, result.claimed, result.succeeded, result.declined, result.unknown, result.errors) == (
        ChargeRunStatus.FINISHED,
        1,
        1,
        0,
        0,
        0,
    )
    assert result.succeeded_amount == D("5.00") and result.finished_at is not None


def test_second_run_finds_nothing_to_charge(listing, consumer):
    fund(consumer)
    due_order(listing, consumer)
    run()

    again = run()

    assert (again.claimed, again.succeeded) == (0, 0)
    assert SandboxCharge.objects.count() == ChargeAttempt.objects.count() == 1


def test_run_leaves_orders_that_are_not_due(listing, consumer):
    fund(consumer)
    later = due_order(listing, consumer, due_at=timezone.now() + timedelta(days=7))
    active = due_order(listing, consumer, status=S.ACTIVE)

    assert run().claimed == 0
    later.refresh_from_db()
    active.refresh_from_db()
    assert (later.status, active.status) == (S.COMPLETED, S.ACTIVE)
    assert not ChargeAttempt.objects.exists()


def test_run_posts_the_completion_of_an_order_completed_before_completions_were_posted(listing, consumer):
    fund(consumer)
    posted = due_order(listing, consumer)
    # An order without its completion posting, as the foundation left completed orders.
    bare = order_in(S.COMPLETED, listing=listing, consumer=ConsumerFactory())
    fund(bare.consumer)

    assert run().succeeded == 2

    for order in (posted, bare):
        assert LedgerTransaction.objects.filter(idempotency_key=f"completion:{order.pk}").count() == 1
        assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert ledger_check() == []


# --------------------------------------------------------------------------- declines and retries


def test_decline_moves_the_order_to_collecting_and_schedules_a_retry(listing, consumer):
    source = fund(consumer, "1.00")
    order = due_order(listing, consumer, amount="5.00")
    now = timezone.now()

    with time_machine.travel(now, tick=False):
        result = run()

    order.refresh_from_db()
    assert (order.status, order.charge_in_flight, order.charge_failure_count) == (S.COLLECTING, False, 1)
    assert (order.collecting_since, order.next_attempt_at) == (now, now + timedelta(hours=1))
    assert order.hold_amount == D("5.00") and exposure(consumer) == D("5.00")
    [attempt] = attempts_of(order)
    assert (attempt.status, attempt.decline_code, attempt.finished_at) == (
        AttemptStatus.DECLINED,
        "insufficient_funds",
        now,
    )
    event = OrderEvent.objects.filter(order=order).get()
    assert (event.from_status, event.to_status, event.reason) == (
        S.COMPLETED,
        S.COLLECTING,
        "Charge declined: insufficient_funds",
    )
    assert balance_of(source) == D("1.00")
    assert not PromiseRecord.objects.filter(order_id=order.pk).exists()
    assert (result.declined, result.declined_amount) == (1, D("5.00"))
    # The bill is still owed: receivable unchanged, nothing in clearing.
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("5.00")
    assert kind_total(AccountKind.PAYMENT_CLEARING) == D("0.00")


def test_retries_follow_the_schedule_each_with_a_new_attempt_and_key_until_one_succeeds(listing, consumer):
    source = fund(consumer, "1.00")
    order = due_order(listing, consumer, amount="5.00")
    start = timezone.now()
    expected_gaps = [timedelta(hours=1), timedelta(hours=6), timedelta(hours=24), timedelta(hours=24)]

    with time_machine.travel(start, tick=False) as clock:
        run()
        at = start
        for gap in expected_gaps:
            order.refresh_from_db()
            assert order.next_attempt_at == at + gap
            clock.move_to(at + gap - timedelta(seconds=1))
            assert run().claimed == 0  # not a second early
            at += gap
            clock.move_to(at)
            if gap is expected_gaps[-1]:
                source.balance_amount = D("50.00")  # the consumer topped up their card
                source.save(update_fields=["balance_amount"])
            run()

    order.refresh_from_db()
    attempts = attempts_of(order)
    assert [(a.sequence, a.trigger, a.status) for a in attempts] == [
        (1, ChargeTrigger.SCHEDULED, AttemptStatus.DECLINED),
        (2, ChargeTrigger.RETRY, AttemptStatus.DECLINED),
        (3, ChargeTrigger.RETRY, AttemptStatus.DECLINED),
        (4, ChargeTrigger.RETRY, AttemptStatus.DECLINED),
        (5, ChargeTrigger.RETRY, AttemptStatus.SUCCEEDED),
    ]
    assert len({a.idempotency_key for a in attempts}) == 5
    assert (order.status, order.charge_failure_count, order.next_attempt_at) == (S.PAID, 4, None)
    assert SandboxCharge.objects.filter(status="succeeded").count() == 1
    assert balance_of(source) == D("45.00")
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "fulfilled"
    assert list(OrderEvent.objects.filter(order=order).values_list("to_status", flat=True)) == [S.COLLECTING, S.PAID]


@pytest.mark.parametrize(("failures", "hours"), [(1, 1), (2, 6), (3, 24), (4, 24), (10, 24)])
def test_retry_delay_schedule(failures, hours):
    assert retry_delay(failures) == timedelta(hours=hours)


def test_a_consumer_without_a_funding_source_is_declined_without_calling_the_gateway(listing, consumer):
    order = due_order(listing, consumer)

    run()

    [attempt] = attempts_of(order)
    assert (attempt.status, attempt.decline_code, attempt.funding_token) == (
        AttemptStatus.DECLINED,
        "no_funding_source",
        "",
    )
    assert not SandboxCharge.objects.exists()
    order.refresh_from_db()
    assert order.status == S.COLLECTING


# --------------------------------------------------------------------------- unknown outcomes and reconciliation


def test_lost_response_leaves_the_attempt_unknown_and_reconcile_finds_the_success(listing, consumer):
    source = fund(consumer)
    order = due_order(listing, consumer)
    sandbox_faults_set(actor=None, lost_response_rate="1")

    first = run()

    order.refresh_from_db()
    [attempt] = attempts_of(order)
    assert (attempt.status, attempt.finished_at) == (AttemptStatus.UNKNOWN, None)
    assert (order.status, order.charge_in_flight) == (S.COMPLETED, True)
    assert (first.unknown, first.unknown_amount) == (1, D("5.00"))
    # The provider did take the money; the platform does not know yet.
    assert SandboxCharge.objects.get().status == "succeeded"
    # No new attempt while the outcome is unknown, however often the run comes.
    assert run().claimed == 0
    # Too fresh to ask: a request could still be landing.
    assert reconcile_unknown_attempts(threads=1).claimed == 0

    reconciled = reconcile_unknown_attempts(older_than=timedelta(0), threads=1)

    order.refresh_from_db()
    attempt.refresh_from_db()
    assert (reconciled.claimed, reconciled.succeeded) == (1, 1)
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert attempt.gateway_reference == SandboxCharge.objects.get().reference
    assert (order.status, order.charge_in_flight) == (S.PAID, False)
    assert SandboxCharge.objects.count() == 1
    assert balance_of(source) == D("95.00")
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "fulfilled"
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert ledger_check() == []


def test_timeout_not_found_at_the_provider_is_replaced_by_a_new_attempt(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer)
    sandbox_faults_set(actor=None, timeout_rate="1")
    run()
    assert not SandboxCharge.objects.exists()  # dropped before the provider processed it
    sandbox_faults_set(actor=None)

    reconciled = reconcile_unknown_attempts(older_than=timedelta(0), threads=1)

    order.refresh_from_db()
    first, replacement = attempts_of(order)
    assert (first.status, first.decline_code) == (AttemptStatus.NOT_FOUND, "not_found")
    assert (replacement.sequence, replacement.trigger, replacement.status) == (
        2,
        ChargeTrigger.RECONCILE,
        AttemptStatus.SUCCEEDED,
    )
    assert replacement.idempotency_key != first.idempotency_key
    assert order.status == S.PAID and order.charge_failure_count == 0
    assert SandboxCharge.objects.get().idempotency_key == replacement.idempotency_key
    assert (reconciled.declined, reconciled.succeeded, reconciled.resent) == (1, 1, 1)


def test_a_stalled_pending_attempt_is_resent_with_its_own_key_and_charged_once(listing, consumer):
    source = fund(consumer)
    order = due_order(listing, consumer)
    # A worker claimed the order and sent the charge, then died before recording the answer.
    [item] = charging_bulk.claim_due(run_id=ChargeRun.objects.create(worker="dead").pk, limit=10, now=timezone.now())
    charging._charge_one(charging.get_gateway(), item)
    assert SandboxCharge.objects.count() == 1

    assert run().claimed == 0  # too fresh: its worker may still be recording it
    resumed = run(resend_pending_after=timedelta(0))

    [attempt] = attempts_of(order)
    order.refresh_from_db()
    assert (attempt.status, attempt.send_count, attempt.idempotency_key) == (AttemptStatus.SUCCEEDED, 2, item.key)
    assert (resumed.resent, resumed.claimed, resumed.succeeded) == (1, 0, 1)
    assert order.status == S.PAID
    assert SandboxCharge.objects.count() == 1
    assert balance_of(source) == D("95.00")


def test_recording_an_outcome_twice_has_one_effect(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer)
    [item] = charging_bulk.claim_due(run_id=ChargeRun.objects.create(worker="w").pk, limit=10, now=timezone.now())
    result, _error = charging._charge_one(charging.get_gateway(), item)

    first = charge_attempt_record(attempt_id=item.attempt_id, result=result)
    second = charge_attempt_record(attempt_id=item.attempt_id, result=result)

    assert (first.recorded, second.recorded) == (True, False)
    assert OrderEvent.objects.filter(order=order, to_status=S.PAID).count() == 1
    assert LedgerTransaction.objects.filter(order=order, kind="charge").count() == 1
    assert PromiseRecord.objects.filter(order_id=order.pk).count() == 1


def test_a_second_success_for_one_order_is_refused_by_the_database(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer)
    run()
    attempt = ChargeAttempt.objects.get(order=order)

    with pytest.raises(IntegrityError, match="charge_attempt_one_success_per_order"), transaction.atomic():
        ChargeAttempt.objects.create(
            order=order,
            sequence=2,
            idempotency_key="another",
            trigger=ChargeTrigger.PAY_NOW,
            amount=D("5.00"),
            status=AttemptStatus.SUCCEEDED,
            gateway_reference="sch_x",
            finished_at=timezone.now(),
        )
    with pytest.raises(IntegrityError, match="charge_attempt_one_in_flight_per_order"), transaction.atomic():
        for sequence in (3, 4):
            ChargeAttempt.objects.create(
                order=order, sequence=sequence, idempotency_key=f"k{sequence}", trigger="retry", amount=D("1.00")
            )
    assert ChargeAttempt.objects.filter(order=order).count() == 1 == attempt.sequence


# --------------------------------------------------------------------------- the bulk path and the one-by-one path


def ledger_shape(order):
    """The order's postings as (kind, key prefix, sorted (account kind, amount)) — ids and keys differ per order."""
    return sorted(
        (txn.kind, txn.idempotency_key.split(":")[0], sorted(txn.entries.values_list("account__kind", "amount")))
        for txn in LedgerTransaction.objects.filter(order=order)
    )


def test_bulk_and_one_by_one_recording_write_the_same_rows(listing):
    consumers = [ConsumerFactory(), ConsumerFactory()]
    for person in consumers:
        fund(person)
    bulk_order, single_order = (due_order(listing, person) for person in consumers)
    items = charging_bulk.claim_due(run_id=ChargeRun.objects.create(worker="w").pk, limit=10, now=timezone.now())
    results = {item.order_id: (item, charging._charge_one(charging.get_gateway(), item)[0]) for item in items}

    tally, rest = charging_bulk.record_batch([results[bulk_order.pk]])
    charge_attempt_record(attempt_id=results[single_order.pk][0].attempt_id, result=results[single_order.pk][1])

    assert (tally.succeeded, rest) == (1, [])

    def shape(order):
        order.refresh_from_db()
        attempt = ChargeAttempt.objects.get(order=order)
        return {
            "order": (order.status, order.hold_amount, order.charge_in_flight, order.next_attempt_at is None),
            "paid_at": order.paid_at is not None,
            "attempt": (
                attempt.status,
                attempt.decline_code,
                bool(attempt.gateway_reference),
                attempt.finished_at is not None,
            ),
            "events": list(
                OrderEvent.objects.filter(order=order).values_list("from_status", "to_status", "actor_kind", "reason")
            ),
            "ledger": sorted(
                (
                    txn.kind,
                    txn.idempotency_key.split(":")[0],
                    sorted(txn.entries.values_list("account__kind", "amount")),
                )
                for txn in LedgerTransaction.objects.filter(order=order)
            ),
            "promise": list(PromiseRecord.objects.filter(order_id=order.pk).values_list("outcome", "amount")),
            "exposure": exposure(order.consumer),
        }

    assert shape(bulk_order) == shape(single_order)


def test_bulk_recording_falls_back_to_one_by_one_when_a_row_surprises_it(listing, consumer, monkeypatch):
    fund(consumer)
    order = due_order(listing, consumer)

    def broken(postings):
        raise RuntimeError("disk full")

    monkeypatch.setattr(charging_bulk, "_post_batch", broken)
    result = run()

    order.refresh_from_db()
    assert (result.succeeded, result.errors, order.status) == (1, 0, S.PAID)
    assert LedgerTransaction.objects.filter(order=order, kind="charge").count() == 1


# --------------------------------------------------------------------------- pay now


def test_consumer_pays_early_before_the_order_is_due(listing, consumer):
    source = fund(consumer)
    order = due_order(listing, consumer, due_at=timezone.now() + timedelta(days=7))

    attempt = credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)

    order.refresh_from_db()
    assert (attempt.trigger, attempt.status, attempt.actor) == (
        ChargeTrigger.PAY_NOW,
        AttemptStatus.SUCCEEDED,
        consumer.user,
    )
    assert order.status == S.PAID
    event = OrderEvent.objects.get(order=order)
    assert (event.actor, event.actor_kind) == (consumer.user, ActorKind.CONSUMER)
    assert balance_of(source) == D("95.00")
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "fulfilled"
    assert run().claimed == 0


def test_pay_now_of_a_collecting_order_pays_it(listing, consumer):
    source = fund(consumer, "1.00")
    order = due_order(listing, consumer)
    run()
    source.balance_amount = D("10.00")
    source.save(update_fields=["balance_amount"])

    credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)

    order.refresh_from_db()
    assert (order.status, order.next_attempt_at) == (S.PAID, None)
    assert [a.trigger for a in attempts_of(order)] == [ChargeTrigger.SCHEDULED, ChargeTrigger.PAY_NOW]


def test_a_declined_pay_now_changes_neither_state_nor_schedule(listing, consumer):
    source = fund(consumer, "1.00")
    early = due_order(listing, consumer, due_at=timezone.now() + timedelta(days=7))

    attempt = credit_order_pay_now(actor=consumer.user, order=early, consumer=consumer)

    early.refresh_from_db()
    assert (attempt.status, attempt.decline_code) == (AttemptStatus.DECLINED, "insufficient_funds")
    assert (early.status, early.charge_in_flight, early.charge_failure_count, early.collecting_since) == (
        S.COMPLETED,
        False,
        0,
        None,
    )
    assert not OrderEvent.objects.filter(order=early).exists()
    assert balance_of(source) == D("1.00")


def test_pay_now_of_someone_elses_order_is_refused_and_changes_nothing(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer)
    stranger = ConsumerFactory()

    with pytest.raises(NotAllowed) as refused:
        credit_order_pay_now(actor=stranger.user, order=order, consumer=stranger)

    assert refused.value.code == "wrong_consumer"
    order.refresh_from_db()
    assert (order.status, order.charge_attempt_count, order.charge_in_flight) == (S.COMPLETED, 0, False)
    assert not ChargeAttempt.objects.exists() and not SandboxCharge.objects.exists()


def test_pay_now_of_a_paid_order_is_refused(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer)
    run()

    with pytest.raises(InvalidTransition, match="is paid"):
        credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)
    assert ChargeAttempt.objects.count() == SandboxCharge.objects.count() == 1


def test_pay_now_while_a_charge_is_in_flight_is_refused(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer)
    sandbox_faults_set(actor=None, lost_response_rate="1")
    run()
    sandbox_faults_set(actor=None)

    with pytest.raises(NotAllowed) as refused:
        credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)

    assert refused.value.code == "charge_in_progress"
    assert ChargeAttempt.objects.count() == SandboxCharge.objects.count() == 1


def test_pay_now_is_refused_inside_a_transaction(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer)
    with pytest.raises(RuntimeError), transaction.atomic():
        credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)
    assert not ChargeAttempt.objects.exists()


# --------------------------------------------------------------------------- other paths and a charge in flight


def test_paid_elsewhere_is_refused_while_a_charge_is_in_flight(listing, consumer, staff_user):
    fund(consumer)
    order = due_order(listing, consumer)
    sandbox_faults_set(actor=None, lost_response_rate="1")
    run()

    with pytest.raises(NotAllowed) as refused:
        credit_order_mark_paid_elsewhere(actor=staff_user, actor_kind=ActorKind.STAFF, order=order, reason="cash")

    assert refused.value.code == "charge_in_progress"
    order.refresh_from_db()
    assert order.status == S.COMPLETED


def test_staff_retry_brings_the_next_attempt_forward(listing, consumer, staff_user):
    fund(consumer, "1.00")
    order = due_order(listing, consumer)
    run()

    credit_order_retry_charge(actor=staff_user, order=order)

    order.refresh_from_db()
    assert order.next_attempt_at <= timezone.now()
    event = OrderEvent.objects.filter(order=order).last()
    assert (event.from_status, event.to_status, event.actor, event.data["event"]) == (
        S.COLLECTING,
        S.COLLECTING,
        staff_user,
        "retry_requested",
    )
    assert run().claimed == 1
    assert len(attempts_of(order)) == 2


def test_staff_retry_of_an_order_not_in_collection_is_refused(listing, consumer, staff_user):
    order = due_order(listing, consumer)
    with pytest.raises(InvalidTransition):
        credit_order_retry_charge(actor=staff_user, order=order)
    order.refresh_from_db()
    assert order.next_attempt_at is None
    assert not OrderEvent.objects.filter(order=order).exists()


# --------------------------------------------------------------------------- completion and paid-elsewhere postings


def test_completion_posts_the_bill_and_a_zero_bill_posts_nothing(listing, consumer):
    free = order_in(S.ACTIVE, listing=listing, consumer=ConsumerFactory())
    line = {"name": "充电", "quantity": "3", "unit": "hour", "unit_price": "1.00", "amount": "3.00"}

    credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=free, lines=[])
    fresh = order_in(S.ACTIVE, listing=listing, consumer=ConsumerFactory())
    credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=fresh, lines=[line])

    [posting] = LedgerTransaction.objects.filter(order=fresh)
    assert (posting.kind, posting.idempotency_key) == ("completion", f"completion:{fresh.pk}")
    assert sorted(posting.entries.values_list("account__kind", "amount")) == [
        (AccountKind.CONSUMER_RECEIVABLE, D("3.00")),
        (AccountKind.MERCHANT_PAYABLE, D("-3.00")),
    ]
    assert not LedgerTransaction.objects.filter(order=free).exists()
    free.refresh_from_db()
    assert (free.status, free.paid_at is not None) == (S.PAID, True)


def test_paid_elsewhere_reverses_the_completion(listing, consumer, staff_user):
    order = due_order(listing, consumer, amount="8.00")

    credit_order_mark_paid_elsewhere(actor=staff_user, actor_kind=ActorKind.STAFF, order=order, reason="现金")

    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert order_account_balance(order, AccountKind.MERCHANT_PAYABLE) == D("0.00")
    assert LedgerTransaction.objects.filter(idempotency_key=f"adjustment:paid_elsewhere:{order.pk}").count() == 1
    order.refresh_from_db()
    assert order.paid_at is not None
    assert ledger_check() == []


# --------------------------------------------------------------------------- runs, command, task, schedules


def test_a_run_whose_worker_died_is_marked_failed_by_the_next_run():
    stale = ChargeRun.objects.create(worker="gone", progress_at=timezone.now() - timedelta(hours=1))
    fresh = ChargeRun.objects.create(worker="busy")

    run()

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, stale.note) == (ChargeRunStatus.FAILED, "the worker stopped reporting progress")
    assert stale.finished_at is not None
    assert fresh.status == ChargeRunStatus.RUNNING


def test_max_orders_and_chunks(listing):
    people = [ConsumerFactory() for _ in range(5)]
    for person in people:
        fund(person)
        due_order(listing, person)

    first = run(max_orders=3, chunk_size=2)
    rest = run(chunk_size=2)

    assert (first.claimed, first.chunks, rest.claimed, rest.chunks) == (3, 2, 2, 1)
    assert CreditOrder.objects.filter(status=S.PAID).count() == 5


def test_run_charges_command_prints_the_run(listing, consumer, settings):
    settings.BNPL_CHARGE_THREADS = 1
    fund(consumer)
    due_order(listing, consumer)
    out = StringIO()

    call_command("run_charges", stdout=out)

    run_row = ChargeRun.objects.get()
    assert out.getvalue().strip() == (
        f"charge run #{run_row.pk} finished: claimed 1, resent 0, succeeded 1 (5.00), declined 0, unknown 0, errors 0"
    )


def test_charge_task_returns_a_summary(listing, consumer, settings):
    settings.BNPL_CHARGE_THREADS = 1
    fund(consumer)
    due_order(listing, consumer)

    summary = tasks.charge_run()

    assert {k: summary[k] for k in ("status", "claimed", "succeeded", "succeeded_amount")} == {
        "status": "finished",
        "claimed": 1,
        "succeeded": 1,
        "succeeded_amount": "5.00",
    }
    assert tasks.reconcile_charges()["claimed"] == 0


def test_a_backlog_fans_the_scheduled_run_out_to_helper_runs_that_do_not_fan_out(listing, consumer, settings):
    from django_q.models import OrmQ

    settings.BNPL_CHARGE_THREADS = 1
    settings.BNPL_CHARGE_CHUNK_SIZE = 2
    settings.BNPL_CHARGE_RUN_FAN_OUT = 4
    fund(consumer)
    for _ in range(5):  # three chunks of two: the run itself and two helpers, not four
        due_order(listing, consumer)

    assert charging_bulk.due_orders_count(now=timezone.now(), limit=100) == 5
    tasks.charge_run()

    helpers = [queued.task for queued in OrmQ.objects.order_by("id")]
    assert [(h["func"], h["args"]) for h in helpers] == [("bnpl.tasks.charge_run", (1,))] * 2
    assert ChargeRun.objects.get().succeeded == 5  # the helpers found nothing left when they ran
    tasks.charge_run(*helpers[0]["args"])  # a helper: nothing due, and it enqueues no one
    assert OrmQ.objects.count() == 2


def test_without_a_backlog_the_charge_run_enqueues_no_helpers(listing, consumer, settings):
    from django_q.models import OrmQ

    settings.BNPL_CHARGE_THREADS = 1
    settings.BNPL_CHARGE_RUN_FAN_OUT = 4
    fund(consumer)
    due_order(listing, consumer)

    tasks.charge_run()

    assert OrmQ.objects.count() == 0


def test_charging_jobs_are_scheduled():
    by_name = {job.name: job for job in JOBS}
    assert (by_name["charge-run"].func, by_name["charge-run"].minutes) == ("bnpl.tasks.charge_run", 1)
    assert (by_name["reconcile-charges"].func, by_name["reconcile-charges"].minutes) == (
        "bnpl.tasks.reconcile_charges",
        5,
    )
    assert (by_name["classify-overdue"].func, by_name["classify-overdue"].cron) == (
        "bnpl.tasks.classify_overdue_orders",
        "30 0 * * *",
    )
    assert (by_name["apply-guarantee"].func, by_name["apply-guarantee"].schedule_type) == (
        "bnpl.tasks.apply_platform_guarantee",
        "H",
    )


def test_gateway_answer_without_a_reference_still_records_a_success(listing, consumer):
    order = due_order(listing, consumer)
    [item] = charging_bulk.claim_due(run_id=ChargeRun.objects.create(worker="w").pk, limit=1, now=timezone.now())

    outcome = charge_attempt_record(
        attempt_id=item.attempt_id, result=GatewayResult(outcome=ChargeOutcome.SUCCEEDED, amount=D("5.00"))
    )

    assert (outcome.attempt.status, outcome.attempt.gateway_reference) == (AttemptStatus.SUCCEEDED, "unreported")
    order.refresh_from_db()
    assert order.status == S.PAID


class _BoundedSlowGateway(InProcessSandboxGateway):
    """The in-process sandbox without batches, 50 ms per charge, declaring that a call can take up to a second."""

    call_timeout_s = 1.0

    def __init__(self, **kwargs) -> None:
        super().__init__(batches=False, **kwargs)
        self.calls = 0

    def charge(self, idempotency_key: str, funding_source: str, amount: Decimal) -> GatewayResult:
        self.calls += 1
        time.sleep(0.05)
        return super().charge(idempotency_key, funding_source, amount)


@pytest.mark.django_db(transaction=True)
def test_chunks_hold_no_more_bounded_calls_than_the_threads_can_finish_in_the_time_left(listing):
    """2 threads, calls of up to 1 s, a 2.5 s budget: 4 calls fit, not the chunk's 100; none when under 1 s is left."""
    bulk_due_orders(listing, orders=200, consumers=200)  # more than the budget leaves time for

    gateway = _BoundedSlowGateway(faults=NO_FAULTS)
    run = run_charges(gateway=gateway, threads=2, chunk_size=100, time_budget=timedelta(seconds=2.5))

    sizes = [
        row["n"]
        for row in ChargeAttempt.objects.filter(run=run)
        .values("requested_at")
        .annotate(n=Count("id"))
        .order_by("requested_at")
    ]
    assert sizes[0] == 4  # 2 threads x int(2.5 s // 1 s)
    assert max(sizes) == 4 and sizes[-1] <= 2  # fewer as the budget runs out
    assert run.status == ChargeRunStatus.FINISHED and run.succeeded == sum(sizes) < 200
    assert gateway.calls == run.succeeded  # one call per charge
    assert (run.finished_at - run.started_at).total_seconds() < 2.5 + 1.0


class _BoundedSlowBatchGateway(InProcessSandboxGateway):
    """The in-process sandbox taking batches with 3 charges in flight at once, each up to a second (100 ms here)."""

    call_timeout_s = 1.0
    max_in_flight = 3

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batches: list[int] = []

    def charge_batch(self, requests):
        self.batches.append(len(requests))
        time.sleep(0.1 * -(-len(requests) // self.max_in_flight))
        return super().charge_batch(requests)


@pytest.mark.django_db(transaction=True)
def test_batches_hold_no_more_bounded_calls_than_those_in_flight_can_finish_in_the_time_left(listing):
    """3 in flight, calls of up to 1 s, a 2.5 s budget: batches of 6, not the chunk's 100 (nor 2 threads' 4)."""
    bulk_due_orders(listing, orders=200, consumers=200)

    gateway = _BoundedSlowBatchGateway(faults=NO_FAULTS)
    run = run_charges(gateway=gateway, threads=2, chunk_size=100, time_budget=timedelta(seconds=2.5))

    assert gateway.batches[0] == 6  # 3 in flight x int(2.5 s // 1 s)
    assert max(gateway.batches) == 6 and gateway.batches[-1] <= 3  # fewer as the budget runs out
    assert run.status == ChargeRunStatus.FINISHED and run.succeeded == sum(gateway.batches) < 200
    assert (run.finished_at - run.started_at).total_seconds() < 2.5 + 1.0
