"""The merchant dashboard's daily roll-up (bnpl/models/order_stats.py, migration 0017).

Whatever changes the orders — a service, a bulk ``update()``, a delete, a moved creation time — and however the
deltas are folded, the roll-up must equal the figures computed from the orders themselves
(``merchant_day_figures_scan``). Writers of the same merchant and day must not wait on one another.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bnpl.charging import credit_order_pay_now, run_charges
from bnpl.choices import ActorKind, OrderStatus
from bnpl.disputes import dispute_open
from bnpl.merchant_portal import day_stats
from bnpl.merchant_portal.selectors import merchant_dashboard, merchant_day_figures, merchant_day_figures_scan
from bnpl.models import (
    ChargeAttempt,
    CreditOrder,
    Dispute,
    MerchantDayDelta,
    MerchantDayStats,
    SandboxFundingSource,
)
from bnpl.models.order_stats import DAY_FIGURES, DAY_STATS_HORIZON_DAYS, DAY_STATS_TIME_ZONE
from bnpl.overdue import classify_overdue, credit_order_guarantee
from bnpl.refunds import credit_order_refund
from bnpl.schedules import JOBS
from bnpl.services import (
    agreement_sign,
    credit_order_cancel,
    credit_order_complete,
    credit_order_create,
    credit_order_mark_paid_elsewhere,
)
from consumers.models import CreditProfile
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import order_in, run_concurrently
from tests.factories import ConsumerFactory, ListingFactory

S = OrderStatus
D = Decimal
DAY = timedelta(days=1)


def first_day():
    """The oldest day compared: beyond the dashboard's 30 days, inside the roll-up's horizon."""
    return timezone.localdate() - timedelta(days=DAY_STATS_HORIZON_DAYS - 1)


def nonzero(by_day):
    """Days with any figure other than zero (the roll-up keeps a day whose orders have all gone)."""
    return {day: row for day, row in by_day.items() if any(row[name] for name in DAY_FIGURES)}


def assert_matches_scan(*merchants):
    for merchant in merchants:
        kept = nonzero(merchant_day_figures(merchant=merchant, first_day=first_day()))
        scanned = nonzero(merchant_day_figures_scan(merchant=merchant, first_day=first_day()))
        differences = {
            (day, name): (kept.get(day, {}).get(name), scanned.get(day, {}).get(name))
            for day in kept.keys() | scanned.keys()
            for name in DAY_FIGURES
            if kept.get(day, {}).get(name, 0) != scanned.get(day, {}).get(name, 0)
        }
        assert not differences, (merchant, "(roll-up, scan)", differences)
        assert kept == scanned


def make(listing, status, *, days_ago=0, **extra):
    order = order_in(status, listing=listing, consumer=ConsumerFactory(), **extra)
    if days_ago:
        CreditOrder.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return order


def succeeded_attempt(order):
    """A succeeded attempt as the charge paths write it (attempt, count and ``charged_at`` together)."""
    now = timezone.now()
    CreditOrder.objects.filter(pk=order.pk).update(charge_attempt_count=1, charged_at=now)
    ChargeAttempt.objects.create(
        order=order,
        sequence=1,
        idempotency_key=f"k-{order.pk}",
        trigger="scheduled",
        amount=D("5.00"),
        status="succeeded",
        gateway_reference="ref",
        finished_at=now,
    )


def dispute(order):
    return Dispute.objects.create(
        order=order,
        consumer=order.consumer,
        merchant=order.merchant,
        reason="wrong_amount",
        disputed_amount=D("1.00"),
        respond_by=timezone.now() + 3 * DAY,
    )


# --------------------------------------------------------------------------- any writer, any change


@pytest.mark.django_db
def test_the_roll_up_follows_every_kind_of_change_to_orders_and_disputes():
    listing, other = ListingFactory(max_amount=D("100.00")), ListingFactory(max_amount=D("100.00"))
    orders = [
        make(listing, status, days_ago=days)
        for days in (0, 3, 12, 29, 35)
        for status in (S.CREATED, S.ACTIVE, S.DECLINED, S.COMPLETED, S.COLLECTING, S.PAID, S.CANCELLED)
    ]
    make(other, S.PAID, days_ago=3)
    assert_matches_scan(listing.merchant, other.merchant)

    paid = [o for o in orders if o.status == S.PAID]
    for order in paid:
        succeeded_attempt(order)
    assert_matches_scan(listing.merchant)

    # A bulk update across days (one statement, many (merchant, day) groups), then single-row changes.
    CreditOrder.objects.filter(merchant=listing.merchant, status=S.COLLECTING).update(
        status=S.OVERDUE, dpd=40, dpd_bucket="M1", guaranteed_at=timezone.now()
    )
    assert_matches_scan(listing.merchant)
    CreditOrder.objects.filter(pk=paid[0].pk).update(status=S.PARTIALLY_REFUNDED, refunded_amount=D("2.00"))
    CreditOrder.objects.filter(pk=paid[1].pk).update(status=S.REFUNDED, refunded_amount=D("5.00"))
    CreditOrder.objects.filter(merchant=listing.merchant, status=S.OVERDUE).update(dpd_bucket="M3+")
    completed = CreditOrder.objects.filter(merchant=listing.merchant, status=S.COMPLETED)
    completed.update(charge_in_flight=True, charge_attempt_count=1)
    assert_matches_scan(listing.merchant)
    day_stats.day_stats_fold()
    completed.update(charge_in_flight=False)
    assert_matches_scan(listing.merchant)

    # Disputes count on their order's day, and move with it; an order moved to another merchant moves too.
    disputed = dispute(paid[2])
    dispute(paid[3])
    assert_matches_scan(listing.merchant)
    CreditOrder.objects.filter(pk=paid[2].pk).update(created_at=timezone.now() - 20 * DAY)
    assert_matches_scan(listing.merchant)
    CreditOrder.objects.filter(pk=orders[0].pk).update(merchant=other.merchant)
    assert_matches_scan(listing.merchant, other.merchant)
    disputed.delete()
    CreditOrder.objects.filter(pk=orders[1].pk).delete()
    assert_matches_scan(listing.merchant, other.merchant)

    day_stats.day_stats_fold()
    assert not MerchantDayDelta.objects.exists()
    assert_matches_scan(listing.merchant, other.merchant)


@pytest.mark.django_db
def test_a_change_that_moves_no_figure_writes_no_delta(listing):
    order = make(listing, S.COMPLETED, amount_due=D("5.00"))
    day_stats.day_stats_fold()
    CreditOrder.objects.filter(pk=order.pk).update(title="renamed", updated_at=timezone.now())
    # The charge run's claim of a first attempt: not tried yet before, in flight (not counted) after.
    CreditOrder.objects.filter(pk=order.pk).update(charge_in_flight=True, charge_attempt_count=1)
    assert not MerchantDayDelta.objects.exists()


@pytest.mark.django_db
def test_orders_older_than_the_horizon_write_nothing_and_old_days_are_pruned(listing):
    old = make(listing, S.COLLECTING, days_ago=DAY_STATS_HORIZON_DAYS + 2)
    day_stats.day_stats_fold()
    past = timezone.localdate() - timedelta(days=DAY_STATS_HORIZON_DAYS + 1)
    MerchantDayStats.objects.create(merchant=listing.merchant, day=past, orders=1)  # left from before
    CreditOrder.objects.filter(pk=old.pk).update(status=S.OVERDUE, dpd_bucket="M2")  # the daily DPD refresh
    assert not MerchantDayDelta.objects.exists()
    report = day_stats.day_stats_fold()
    assert report["pruned"] == 1 and not MerchantDayStats.objects.filter(day__lte=past).exists()
    assert_matches_scan(listing.merchant)


@pytest.mark.django_db
def test_rebuild_recomputes_the_roll_up_from_the_orders(listing):
    for days in (0, 5, 20):
        succeeded_attempt(make(listing, S.PAID, days_ago=days))
    make(listing, S.OVERDUE, days_ago=5, dpd_bucket="M0")
    day_stats.day_stats_fold()
    MerchantDayStats.objects.update(orders=999)  # damaged
    assert day_stats.day_stats_rebuild() == 3
    assert not MerchantDayDelta.objects.exists()
    assert_matches_scan(listing.merchant)


def test_the_triggers_group_by_the_time_zone_the_portal_shows():
    assert settings.TIME_ZONE == DAY_STATS_TIME_ZONE


def test_the_fold_is_a_scheduled_job():
    [job] = [job for job in JOBS if job.func == "bnpl.merchant_portal.day_stats.day_stats_fold_task"]
    assert job.minutes == 1


# --------------------------------------------------------------------------- through the services


@pytest.mark.django_db
def test_the_dashboard_equals_the_orders_through_their_lifecycle(listing, staff_user):
    merchant = listing.merchant

    def check():
        assert_matches_scan(merchant)
        scanned = merchant_day_figures_scan(merchant=merchant, first_day=first_day())
        today = scanned.get(timezone.localdate(), {})
        window = merchant_dashboard(merchant=merchant)["windows"]["today"]
        assert window["orders"] == today.get("orders", 0)
        return window

    funded = [ConsumerFactory() for _ in range(3)]
    for person in funded:
        fund(person, "100.00")
    broke = ConsumerFactory()
    card = fund(broke, "0.00")
    to_charge = [due_order(listing, person) for person in funded]
    to_decline = due_order(listing, broke)
    elsewhere = due_order(listing, ConsumerFactory(), due_at=timezone.now() + DAY)  # not due: never tried
    check()

    run_charges(threads=1)  # the bulk path: three charged, one declined
    window = check()
    assert (window["charged"], window["charge_tried"]) == (3, 4)

    refund = credit_order_refund(
        actor=None,
        actor_kind=ActorKind.MERCHANT,
        order=to_charge[0],
        amount="2.00",
        reason="late",
        idempotency_key="r-1",
    )
    assert refund.status == "succeeded"
    window = check()
    assert (window["refunded"], window["refunded_amount"]) == (1, D("2.00"))

    dispute_open(
        actor=None,
        consumer=to_charge[1].consumer,
        order=to_charge[1],
        reason="wrong_amount",
        description="billed twice",
        amount="1.00",
    )
    assert check()["disputes"] == 1

    credit_order_mark_paid_elsewhere(actor=staff_user, actor_kind=ActorKind.STAFF, order=elsewhere, reason="cash")
    check()

    # Collecting past the grace period → overdue; guaranteed; then paid by the consumer (the one-by-one path).
    CreditOrder.objects.filter(pk=to_decline.pk).update(
        due_at=timezone.now() - 10 * DAY, collecting_since=timezone.now() - 10 * DAY
    )
    classify_overdue()
    window = check()
    assert window["overdue"] == 1
    to_decline.refresh_from_db()
    credit_order_guarantee(order=to_decline)
    assert check()["guaranteed"] == 1
    SandboxFundingSource.objects.filter(pk=card.pk).update(balance_amount=D("100.00"))
    to_decline.refresh_from_db()
    credit_order_pay_now(actor=None, order=to_decline, consumer=broke)
    window = check()
    assert (window["overdue"], window["charged"]) == (0, 4)

    day_stats.day_stats_fold()
    assert check() == window


@pytest.mark.django_db
def test_the_dashboard_follows_admission_and_completion(agreement_listing, merchant_user):
    """Orders placed under an agreement (approved, or declined over the limit), then completed and cancelled."""
    merchant = agreement_listing.merchant
    rich, poor = ConsumerFactory(), ConsumerFactory()
    for person in (rich, poor):
        agreement_sign(actor=None, consumer=person, listing=agreement_listing)
    CreditProfile.objects.filter(consumer=poor).update(credit_limit_amount=D("1.00"))  # cut after signing

    def place(person, number):
        return credit_order_create(
            actor=merchant_user,
            actor_kind=ActorKind.MERCHANT,
            merchant=merchant,
            listing=agreement_listing,
            out_order_no=number,
            consumer=person,
            max_amount="10.00",
        )

    approved, declined, cancelled = place(rich, "A-1"), place(poor, "A-2"), place(rich, "A-3")
    assert (approved.status, declined.status) == (S.ACTIVE, S.DECLINED)
    window = merchant_dashboard(merchant=merchant)["windows"]["today"]
    assert (window["orders"], window["approved"], window["declined"], window["approval_rate"]) == (3, 2, 1, 66.7)
    assert_matches_scan(merchant)

    line = {"name": "充电", "quantity": "3", "unit": "hour", "unit_price": "1.00", "amount": "3.00"}
    credit_order_complete(actor=merchant_user, actor_kind=ActorKind.MERCHANT, order=approved, lines=[line])
    credit_order_cancel(actor=merchant_user, actor_kind=ActorKind.MERCHANT, order=cancelled, reason="no show")
    window = merchant_dashboard(merchant=merchant)["windows"]["today"]
    assert (window["billed"], window["gmv"]) == (1, D("3.00"))
    assert_matches_scan(merchant)


@pytest.mark.django_db
def test_reading_the_dashboard_is_one_query_whatever_the_orders(listing):
    for days in range(0, 30, 3):
        make(listing, S.PAID, days_ago=days)
    day_stats.day_stats_fold()
    make(listing, S.ACTIVE)  # and an unfolded delta
    with CaptureQueriesContext(connection) as queries:
        merchant_dashboard(merchant=listing.merchant)
    assert len(queries) == 1


# --------------------------------------------------------------------------- concurrency (real connections)


@pytest.mark.django_db(transaction=True)
def test_writers_of_one_merchant_and_day_do_not_wait_for_each_other():
    """Two transactions update different orders of the same merchant and day: no shared row, no wait."""
    listing = ListingFactory(max_amount=D("100.00"))
    first, second = make(listing, S.COMPLETED), make(listing, S.COMPLETED)
    holding, release = threading.Event(), threading.Event()

    def hold_an_update():
        try:
            with transaction.atomic():
                CreditOrder.objects.filter(pk=first.pk).update(status=S.COLLECTING)
                holding.set()
                assert release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold_an_update)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            CreditOrder.objects.filter(pk=second.pk).update(status=S.COLLECTING)
            day_stats.day_stats_fold()  # nor does a fold wait for the open transaction
    finally:
        release.set()
        thread.join(timeout=30)
    day_stats.day_stats_fold()
    assert_matches_scan(listing.merchant)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_folds_keep_the_roll_up_exact():
    """Four connections change orders of one merchant and day, two more fold at the same time, repeatedly."""
    listing = ListingFactory(max_amount=D("100.00"))
    orders = [make(listing, S.COMPLETED, amount_due=D("5.00")) for _ in range(40)]
    steps = [S.COLLECTING, S.OVERDUE, S.PAID]

    def writer(chunk):
        def run():
            for status in steps:
                for order in chunk:
                    with transaction.atomic():
                        extra = {"charged_at": timezone.now()} if status == S.PAID else {}
                        CreditOrder.objects.filter(pk=order.pk).update(status=status, **extra)
            return True

        return run

    def folder():
        reports = [day_stats.day_stats_fold(batch=7) for _ in range(20)]
        return reports

    results = run_concurrently(*(writer(orders[i::4]) for i in range(4)), folder, folder)

    assert all(not isinstance(r, Exception) for r in results), results
    assert_matches_scan(listing.merchant)
    day_stats.day_stats_fold()
    assert not MerchantDayDelta.objects.exists()
    assert_matches_scan(listing.merchant)
    figures = merchant_day_figures(merchant=listing.merchant, first_day=first_day())[timezone.localdate()]
    assert (figures["orders"], figures["overdue"], figures["billed"]) == (40, 0, 40)


@pytest.mark.django_db(transaction=True)
def test_a_second_fold_at_the_same_time_steps_aside():
    listing = ListingFactory(max_amount=D("100.00"))
    make(listing, S.ACTIVE)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [day_stats.FOLD_LOCK_KEY])
        [report] = run_concurrently(day_stats.day_stats_fold)
    assert report["skipped"] == 1 and report["deltas"] == 0
    assert MerchantDayDelta.objects.count() == 1
    assert day_stats.day_stats_fold()["deltas"] == 1


@pytest.mark.django_db(transaction=True)
def test_truncating_the_orders_empties_the_roll_up():
    listing = ListingFactory(max_amount=D("100.00"))
    make(listing, S.PAID)
    day_stats.day_stats_fold()
    assert MerchantDayStats.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE bnpl_creditorder CASCADE")
    assert not MerchantDayStats.objects.exists() and not MerchantDayDelta.objects.exists()
