"""Collection after failed charges: overdue and DPD, pause and recovery, guarantee, write-off, late fees."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from bnpl import overdue, tasks
from bnpl.charging import credit_order_pay_now, run_charges
from bnpl.choices import ActorKind, OrderStatus
from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from bnpl.ledger import ledger_check, order_account_balance
from bnpl.models import ChargeAttempt, CreditOrder, LedgerTransaction, OrderEvent
from bnpl.models.charging import AttemptStatus
from bnpl.models.ledger import AccountKind
from bnpl.overdue import (
    apply_guarantee,
    classify_overdue,
    credit_order_mark_overdue,
    credit_order_write_off,
    dpd_bucket_for,
    dpd_for,
    late_fee_for,
)
from bnpl.services import credit_order_mark_paid_elsewhere
from consumers.models import CreditProfile, CreditProfileEvent, PromiseRecord
from consumers.services import credit_profile_pause
from tests.bnpl.charging_helpers import due_order, fund, kind_total
from tests.bnpl.helpers import exposure, snapshot
from tests.factories import ConsumerFactory

S = OrderStatus
D = Decimal
pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


def collecting(listing, consumer, *, due_ago: timedelta, amount: str = "5.00", **extra) -> CreditOrder:
    """An order whose first charge failed ``due_ago`` ago: collecting, retried daily."""
    now = timezone.now()
    return due_order(
        listing,
        consumer,
        amount=amount,
        status=S.COLLECTING,
        due_at=now - due_ago,
        collecting_since=now - due_ago,
        next_attempt_at=now + DAY,
        charge_failure_count=1,
        **extra,
    )


def profile(consumer) -> CreditProfile:
    return CreditProfile.objects.get(consumer=consumer)


# --------------------------------------------------------------------------- policies


@pytest.mark.parametrize(
    ("days", "bucket"),
    [(0, ""), (1, "M0"), (30, "M0"), (31, "M1"), (60, "M1"), (61, "M2"), (90, "M2"), (91, "M3+"), (400, "M3+")],
)
def test_dpd_buckets(days, bucket):
    assert dpd_bucket_for(days) == bucket


def test_dpd_counts_whole_days_past_due():
    due = timezone.now()
    assert [dpd_for(due, due + delta) for delta in (-DAY, timedelta(hours=23), DAY, DAY * 31 + timedelta(hours=5))] == [
        0,
        0,
        1,
        31,
    ]


def test_late_fees_are_off_by_default():
    assert late_fee_for(D("100.00")) == D("0.00")


@pytest.mark.parametrize(
    ("fee", "share", "amount_due", "expected"),
    [
        ("10.00", "0.10", "5.00", "0.50"),  # capped at 10 % of the order
        ("10.00", "0.10", "500.00", "10.00"),  # the fee itself, below the cap
        ("3.33", "0.25", "10.01", "2.50"),  # 2.5025 rounds half-up to the fen
        ("10.00", "0", "50.00", "0.00"),  # a cap of nothing is no fee
    ],
)
def test_late_fee_is_capped_at_a_share_of_the_order(settings, fee, share, amount_due, expected):
    settings.BNPL_LATE_FEE_AMOUNT = D(fee)
    settings.BNPL_LATE_FEE_MAX_SHARE = D(share)
    assert late_fee_for(D(amount_due)) == D(expected)


# --------------------------------------------------------------------------- overdue


def test_order_past_the_grace_period_becomes_overdue_pauses_and_breaches(listing, consumer):
    order = collecting(listing, consumer, due_ago=timedelta(hours=73))
    young = collecting(listing, ConsumerFactory(), due_ago=timedelta(hours=71))

    report = classify_overdue()

    order.refresh_from_db()
    young.refresh_from_db()
    assert (report.marked_overdue, young.status) == (1, S.COLLECTING)
    assert (order.status, order.dpd, order.dpd_bucket, order.late_fee_amount) == (S.OVERDUE, 3, "M0", D("0.00"))
    assert order.overdue_since is not None
    event = OrderEvent.objects.get(order=order)
    assert (event.from_status, event.to_status, event.actor, event.actor_kind, event.reason) == (
        S.COLLECTING,
        S.OVERDUE,
        None,
        ActorKind.SYSTEM,
        "Not paid within the grace period",
    )
    paused = profile(consumer)
    assert (paused.is_paused, paused.paused_reason) == (True, f"overdue order #{order.pk} ({order.out_order_no})")
    record = PromiseRecord.objects.get(order_id=order.pk)
    assert (record.outcome, record.amount) == ("breached", D("5.00"))
    # Still collected: the order keeps its hold and its retries.
    assert (order.hold_amount, order.next_attempt_at is not None) == (D("5.00"), True)
    assert classify_overdue().marked_overdue == 0


def test_grace_period_is_a_setting(listing, consumer, settings):
    settings.BNPL_GRACE_PERIOD = timedelta(hours=24)
    order = collecting(listing, consumer, due_ago=timedelta(hours=25))

    assert classify_overdue().marked_overdue == 1
    order.refresh_from_db()
    assert order.status == S.OVERDUE


def test_an_order_with_a_charge_in_flight_is_not_marked_overdue(listing, consumer):
    order = collecting(listing, consumer, due_ago=timedelta(hours=80), charge_in_flight=True)
    before = snapshot(order)

    assert classify_overdue().marked_overdue == 0
    with pytest.raises(NotAllowed):
        credit_order_mark_overdue(order=order)
    assert snapshot(order) == before


def test_marking_an_order_overdue_within_grace_or_in_another_state_is_refused(listing, consumer):
    young = collecting(listing, consumer, due_ago=timedelta(hours=1))
    paid = due_order(listing, consumer, status=S.PAID)
    with pytest.raises(NotAllowed, match="grace period"):
        credit_order_mark_overdue(order=young)
    with pytest.raises(InvalidTransition, match="is paid"):
        credit_order_mark_overdue(order=paid)
    young.refresh_from_db()
    assert young.status == S.COLLECTING


def test_one_failing_order_does_not_stop_the_overdue_job(listing, consumer, monkeypatch):
    bad = collecting(listing, consumer, due_ago=timedelta(days=5))
    good = collecting(listing, ConsumerFactory(), due_ago=timedelta(days=5))
    real = overdue.promise_record_add

    def flaky(**kwargs):
        if kwargs["order_id"] == bad.pk:
            raise RuntimeError("disk full")
        return real(**kwargs)

    monkeypatch.setattr(overdue, "promise_record_add", flaky)
    before = snapshot(bad)

    report = classify_overdue()

    assert (report.marked_overdue, report.skipped) == (1, 1)
    assert snapshot(bad) == before
    assert profile(consumer).is_paused is False  # its pause rolled back with it
    good.refresh_from_db()
    assert good.status == S.OVERDUE


def test_a_consumer_already_paused_keeps_the_first_reason(listing, consumer):
    first = collecting(listing, consumer, due_ago=timedelta(days=5))
    second = collecting(listing, consumer, due_ago=timedelta(days=4))

    classify_overdue()

    assert profile(consumer).paused_reason == f"overdue order #{first.pk} ({first.out_order_no})"
    assert CreditOrder.objects.filter(pk__in=[first.pk, second.pk], status=S.OVERDUE).count() == 2
    assert CreditProfileEvent.objects.filter(profile__consumer=consumer, kind="paused").count() == 1


@pytest.mark.parametrize(("days", "bucket"), [(31, "M1"), (61, "M2"), (91, "M3+")])
def test_daily_job_keeps_dpd_and_bucket_current(listing, consumer, days, bucket):
    order = collecting(listing, consumer, due_ago=timedelta(days=4))
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        classify_overdue()
        order.refresh_from_db()
        assert (order.dpd, order.dpd_bucket) == (4, "M0")
        clock.move_to(start + timedelta(days=days - 4))
        report = tasks.classify_overdue_orders()

    order.refresh_from_db()
    assert (order.dpd, order.dpd_bucket) == (days, bucket)
    assert report == {"marked_overdue": 0, "dpd_updated": 1}


def test_dpd_refresh_is_idempotent(listing, consumer):
    collecting(listing, consumer, due_ago=timedelta(days=40))
    classify_overdue()
    assert classify_overdue().dpd_updated == 0


def test_paying_an_overdue_order_recovers_the_record_and_lifts_the_pause(listing, consumer):
    source = fund(consumer, "1.00")
    order = collecting(listing, consumer, due_ago=timedelta(days=4))
    classify_overdue()
    source.balance_amount = D("20.00")
    source.save(update_fields=["balance_amount"])

    attempt = credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)

    order.refresh_from_db()
    assert (attempt.status, order.status, order.hold_amount) == (AttemptStatus.SUCCEEDED, S.PAID, D("0.00"))
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "recovered"
    lifted = profile(consumer)
    assert (lifted.is_paused, lifted.paused_reason) == (False, "")
    unpause = CreditProfileEvent.objects.filter(profile__consumer=consumer, kind="unpaused").get()
    assert unpause.reason == f"overdue order #{order.pk} paid ({order.out_order_no})"
    assert exposure(consumer) == D("0.00")
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert ledger_check() == []


def test_the_pause_stays_while_another_order_is_overdue(listing, consumer):
    fund(consumer, "100.00")
    first = collecting(listing, consumer, due_ago=timedelta(days=5))
    second = collecting(listing, consumer, due_ago=timedelta(days=4))
    classify_overdue()

    credit_order_pay_now(actor=consumer.user, order=first, consumer=consumer)
    assert profile(consumer).is_paused is True

    credit_order_pay_now(actor=consumer.user, order=second, consumer=consumer)
    assert profile(consumer).is_paused is False
    assert list(PromiseRecord.objects.filter(consumer=consumer).values_list("outcome", flat=True)) == [
        "recovered",
        "recovered",
    ]


def test_a_pause_staff_set_for_another_reason_is_not_lifted(listing, consumer):
    fund(consumer)
    order = collecting(listing, consumer, due_ago=timedelta(days=4))
    credit_profile_pause(actor=None, consumer=consumer, reason="fraud review")
    classify_overdue()

    credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)

    assert (profile(consumer).is_paused, profile(consumer).paused_reason) == (True, "fraud review")


def test_the_charge_run_keeps_collecting_an_overdue_order_and_recovers_it(listing, consumer):
    source = fund(consumer, "1.00")
    order = collecting(listing, consumer, due_ago=timedelta(days=4))
    classify_overdue()
    source.balance_amount = D("20.00")
    source.save(update_fields=["balance_amount"])
    CreditOrder.objects.filter(pk=order.pk).update(next_attempt_at=timezone.now())

    result = run_charges(threads=1)

    order.refresh_from_db()
    assert (result.succeeded, order.status) == (1, S.PAID)
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "recovered"
    assert profile(consumer).is_paused is False


def test_paid_elsewhere_after_overdue_lifts_the_pause(listing, consumer, staff_user):
    order = collecting(listing, consumer, due_ago=timedelta(days=4))
    classify_overdue()

    credit_order_mark_paid_elsewhere(actor=staff_user, actor_kind=ActorKind.STAFF, order=order, reason="转账已收到")

    assert profile(consumer).is_paused is False
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "recovered"


# --------------------------------------------------------------------------- late fees


def test_a_late_fee_when_enabled_is_added_once_and_charged_with_the_order(listing, consumer, settings):
    settings.BNPL_LATE_FEE_AMOUNT = D("10.00")
    settings.BNPL_LATE_FEE_MAX_SHARE = D("0.10")
    source = fund(consumer, "100.00")
    order = collecting(listing, consumer, due_ago=timedelta(days=4))

    classify_overdue()
    classify_overdue()

    order.refresh_from_db()
    assert order.late_fee_amount == D("0.50")
    assert LedgerTransaction.objects.filter(idempotency_key=f"late_fee:{order.pk}").count() == 1
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("5.50")

    attempt = credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)

    assert attempt.amount == D("5.50")
    source.refresh_from_db()
    assert source.balance_amount == D("94.50")
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert kind_total(AccountKind.PLATFORM_FEE_REVENUE) == D("-0.53")  # late fee 0.50 + merchant fee 0.03
    assert ledger_check() == []


# --------------------------------------------------------------------------- guarantee


def test_guarantee_is_applied_once_after_the_window(listing, consumer):
    order = collecting(listing, consumer, due_ago=timedelta(hours=73))
    inside = collecting(listing, ConsumerFactory(), due_ago=timedelta(hours=71))

    assert apply_guarantee() == 1
    assert apply_guarantee() == 0
    assert tasks.apply_platform_guarantee() == 0

    order.refresh_from_db()
    inside.refresh_from_db()
    assert order.guaranteed_at is not None and inside.guaranteed_at is None
    [posting] = LedgerTransaction.objects.filter(order=order, kind="guarantee")
    assert posting.idempotency_key == f"guarantee:{order.pk}"
    assert sorted(posting.entries.values_list("account__kind", "amount")) == [
        (AccountKind.GUARANTEE_ADVANCES, D("-5.00")),
        (AccountKind.PAYMENT_CLEARING, D("5.00")),
    ]
    event = OrderEvent.objects.get(order=order)
    assert (event.from_status, event.to_status, event.data["event"]) == (S.COLLECTING, S.COLLECTING, "guaranteed")
    # Collection goes on: the consumer still owes the order.
    assert order.status == S.COLLECTING
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("5.00")


def test_guarantee_window_is_a_setting(listing, consumer, settings):
    settings.BNPL_GUARANTEE_WINDOW = timedelta(hours=24)
    collecting(listing, consumer, due_ago=timedelta(hours=25))
    assert apply_guarantee() == 1


def test_a_later_charge_repays_the_guarantee_advance(listing, consumer):
    fund(consumer)
    order = collecting(listing, consumer, due_ago=timedelta(hours=80))
    apply_guarantee()
    CreditOrder.objects.filter(pk=order.pk).update(next_attempt_at=timezone.now())

    run_charges(threads=1)

    order.refresh_from_db()
    assert order.status == S.PAID
    assert kind_total(AccountKind.GUARANTEE_ADVANCES) == D("0.00")
    assert kind_total(AccountKind.PAYMENT_CLEARING) == D("5.00")
    assert LedgerTransaction.objects.filter(order=order, idempotency_key__startswith="guarantee_recovery:").count() == 1
    assert ledger_check() == []


# --------------------------------------------------------------------------- write-off


def test_staff_write_off_turns_what_is_owed_into_bad_debt(listing, consumer, staff_user):
    order = collecting(listing, consumer, due_ago=timedelta(days=100))
    classify_overdue()

    credit_order_write_off(actor=staff_user, order=order, reason="uncollectable after 100 days")

    order.refresh_from_db()
    assert (order.status, order.hold_amount, order.close_reason) == (
        S.WRITTEN_OFF,
        D("0.00"),
        "uncollectable after 100 days",
    )
    assert exposure(consumer) == D("0.00")
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert kind_total(AccountKind.BAD_DEBT) == D("5.00")
    event = OrderEvent.objects.filter(order=order).last()
    assert (event.from_status, event.to_status, event.actor, event.actor_kind) == (
        S.OVERDUE,
        S.WRITTEN_OFF,
        staff_user,
        ActorKind.STAFF,
    )
    assert profile(consumer).is_paused is True  # the debt was not paid
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "breached"
    assert run_charges(threads=1).claimed == 0
    assert ledger_check() == []


def test_write_off_is_refused_without_a_reason_for_an_order_not_overdue_and_while_charging(
    listing, consumer, staff_user
):
    not_overdue = collecting(listing, consumer, due_ago=timedelta(days=1))
    in_flight = due_order(listing, ConsumerFactory(), status=S.OVERDUE, charge_in_flight=True)
    before = [snapshot(not_overdue), snapshot(in_flight)]

    with pytest.raises(ValidationFailed):
        credit_order_write_off(actor=staff_user, order=in_flight, reason=" ")
    with pytest.raises(InvalidTransition, match="is collecting"):
        credit_order_write_off(actor=staff_user, order=not_overdue, reason="no")
    with pytest.raises(NotAllowed) as refused:
        credit_order_write_off(actor=staff_user, order=in_flight, reason="give up")

    assert refused.value.code == "charge_in_progress"
    assert [snapshot(not_overdue), snapshot(in_flight)] == before
    assert not LedgerTransaction.objects.filter(kind="write_off").exists()


# --------------------------------------------------------------------------- admin


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_charge_admins_are_read_only_lists(staff_client, listing, consumer):
    fund(consumer)
    due_order(listing, consumer)
    run_charges(threads=1)
    attempt = ChargeAttempt.objects.get()
    for name in ("chargerun", "chargeattempt"):
        assert staff_client.get(reverse(f"admin:bnpl_{name}_changelist")).status_code == 200
        assert staff_client.get(reverse(f"admin:bnpl_{name}_add")).status_code == 403
    page = staff_client.get(reverse("admin:bnpl_chargeattempt_change", args=[attempt.pk]))
    assert page.status_code == 200 and attempt.idempotency_key in page.text and 'name="_save"' not in page.text
    order_page = staff_client.get(reverse("admin:bnpl_creditorder_change", args=[attempt.order_id]))
    assert attempt.idempotency_key in order_page.text  # the attempts inline


def test_admin_retry_action_requeues_the_failures_of_a_run(staff_client, staff_user, listing, consumer):
    fund(consumer, "1.00")
    order = due_order(listing, consumer)
    run = run_charges(threads=1)

    response = staff_client.post(
        reverse("admin:bnpl_chargerun_changelist"), {"action": "retry_failures", ACTION_CHECKBOX_NAME: [run.pk]}
    )

    assert response.status_code == 302
    order.refresh_from_db()
    assert order.next_attempt_at <= timezone.now()
    assert OrderEvent.objects.filter(order=order, actor=staff_user, data__event="retry_requested").count() == 1


def test_admin_write_off_asks_for_a_reason_then_writes_off(staff_client, staff_user, listing, consumer):
    order = collecting(listing, consumer, due_ago=timedelta(days=10))
    classify_overdue()
    url = reverse("admin:bnpl_creditorder_changelist")
    data = {"action": "write_off_with_reason", ACTION_CHECKBOX_NAME: [order.pk]}

    page = staff_client.post(url, data)
    assert page.status_code == 200
    order.refresh_from_db()
    assert order.status == S.OVERDUE

    done = staff_client.post(url, {**data, "apply": "1", "reason": "debtor deceased"})
    assert done.status_code == 302
    order.refresh_from_db()
    assert (order.status, order.close_reason) == (S.WRITTEN_OFF, "debtor deceased")


def test_a_disputed_order_is_neither_marked_overdue_nor_guaranteed(listing, consumer):
    order = collecting(listing, consumer, due_ago=timedelta(hours=80), charge_paused=True)
    before = snapshot(order)

    assert classify_overdue().marked_overdue == 0
    assert apply_guarantee() == 0
    assert snapshot(order) == before
    order.refresh_from_db()
    assert order.guaranteed_at is None
