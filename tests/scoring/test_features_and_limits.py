"""Features kept current incrementally, score refresh, limit growth and fall, the personal spend cap."""

from __future__ import annotations

from decimal import Decimal
from itertools import count

import pytest
from django.utils import timezone

from bnpl import services as orders
from bnpl.choices import ActorKind
from bnpl.exceptions import InsufficientCredit, ValidationFailed
from consumers import limits
from consumers.choices import LimitChangeReason, ProfileEventKind, PromiseOutcome, ScoreBand
from consumers.models import CreditProfile, CreditProfileEvent, LimitChange
from consumers.services import (
    consumer_register,
    credit_hold_acquire,
    credit_limit_cut_after_breach,
    credit_limit_grow,
    credit_spend_cap_set,
    promise_record_add,
    promise_record_recover,
)
from merchants.choices import ConfirmMode, Scenario
from scoring.models import ConsumerFeatures
from scoring.services import (
    admission_assess,
    features_on_charge_attempt,
    features_on_dispute,
    features_on_order_opened,
    features_on_promise_record,
)
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, MerchantMemberFactory

ORDER_IDS = count(10_000)


def record(consumer, outcome, *, merchant=None, order_id=None, days_past_due=None):
    """Write a promise record the way bnpl does: the record, then the scoring hook."""
    merchant_id = merchant.pk if merchant else MerchantFactory().pk
    written = promise_record_add(
        consumer=consumer,
        merchant_id=merchant_id,
        order_id=order_id or next(ORDER_IDS),
        outcome=outcome,
        amount=Decimal("5.00"),
        recorded_at=timezone.now(),
    )
    features_on_promise_record(actor=None, record=written, days_past_due=days_past_due)
    return written


def profile(consumer) -> CreditProfile:
    return CreditProfile.objects.get(consumer=consumer)


def limit_changes(consumer) -> list[tuple]:
    return list(
        LimitChange.objects.filter(profile__consumer=consumer)
        .order_by("id")
        .values_list("reason_code", "before_amount", "after_amount")
    )


# --- features, through the order services ----------------------------------------------------


@pytest.mark.django_db
def test_order_services_keep_the_feature_row_current():
    merchant = MerchantFactory()
    user = MerchantMemberFactory(merchant=merchant).user
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT, max_amount=Decimal("50.00"))
    consumer = ConsumerFactory()
    orders.agreement_sign(actor=None, consumer=consumer, listing=listing)

    def place(no):
        return orders.credit_order_create(
            actor=user,
            actor_kind=ActorKind.MERCHANT,
            merchant=merchant,
            listing=listing,
            out_order_no=no,
            consumer=consumer,
            max_amount="10.00",
        )

    first, second, third = place("F-1"), place("F-2"), place("F-3")
    features = ConsumerFeatures.objects.get(pk=consumer.pk)
    assert (features.orders_total, features.open_orders, features.open_by_merchant) == (3, 3, {str(merchant.pk): 3})
    assert len(features.recent_order_times) == 3
    assert features.scenario_counts == {Scenario.EBIKE_CHARGING: 3}
    assert features.first_order_at is not None

    orders.credit_order_cancel(actor=user, actor_kind=ActorKind.MERCHANT, order=first, reason="customer left")
    zero_bill = [{"name": "充电", "quantity": "0", "unit_price": "1.00", "amount": "0.00"}]
    orders.credit_order_complete(actor=user, actor_kind=ActorKind.MERCHANT, order=second, lines=zero_bill)
    bill = [{"name": "充电", "quantity": "5", "unit_price": "1.00", "amount": "5.00"}]
    orders.credit_order_complete(actor=user, actor_kind=ActorKind.MERCHANT, order=third, lines=bill)
    orders.credit_order_mark_paid_elsewhere(actor=None, actor_kind=ActorKind.STAFF, order=third, reason="cash")

    features.refresh_from_db()
    assert (features.cancelled_count, features.fulfilled_count, features.breached_count) == (1, 2, 0)
    assert (features.open_orders, features.open_by_merchant) == (0, {})
    assert features.kept_merchant_ids == [merchant.pk]
    # The next decision reads these counters.
    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("10.00"), channel="order")
    assert decision.snapshot["features"]["kept_promises"] == 2
    assert decision.snapshot["features"]["cancel_rate"] == pytest.approx(0.3333)
    assert decision.snapshot["orders_last_hour"] == 3


@pytest.mark.django_db
def test_breach_then_recovery_moves_arrears_and_worst_dpd():
    consumer = ConsumerFactory()
    merchant = MerchantFactory()
    features_on_order_opened(consumer=consumer, merchant_id=merchant.pk, scenario=Scenario.LIVE_SHOPPING)
    breached = record(consumer, PromiseOutcome.BREACHED, merchant=merchant)

    features = ConsumerFeatures.objects.get(pk=consumer.pk)
    assert (features.breached_count, features.open_orders, features.last_breach_at) == (1, 1, breached.recorded_at)

    recovered = promise_record_recover(order_id=breached.order_id, recorded_at=timezone.now())
    features_on_promise_record(actor=None, record=recovered, days_past_due=17)

    features.refresh_from_db()
    assert (features.breached_count, features.recovered_count, features.open_orders, features.worst_dpd) == (
        1,
        1,
        0,
        17,
    )


@pytest.mark.django_db
def test_counters_never_go_below_zero_for_orders_opened_before_the_features_existed():
    consumer = ConsumerFactory()
    record(consumer, PromiseOutcome.CANCELLED)

    features = ConsumerFeatures.objects.get(pk=consumer.pk)
    assert (features.open_orders, features.open_by_merchant, features.cancelled_count) == (0, {}, 1)


@pytest.mark.django_db
def test_velocity_times_older_than_a_day_are_dropped(consumer):
    features = ConsumerFeatures.objects.create(
        consumer=consumer, recent_order_times=[timezone.now() - timezone.timedelta(days=2)]
    )
    features_on_order_opened(consumer=consumer, merchant_id=1, scenario=Scenario.EBIKE_CHARGING)

    features.refresh_from_db()
    assert len(features.recent_order_times) == 1


@pytest.mark.django_db
def test_charge_failures_and_disputes_are_counted(consumer):
    features_on_charge_attempt(consumer=consumer, succeeded=False)
    features_on_charge_attempt(consumer=consumer, succeeded=False)
    features_on_dispute(consumer=consumer)
    features = ConsumerFeatures.objects.get(pk=consumer.pk)
    assert (features.charge_failures, features.disputes_count) == (2, 1)

    features_on_charge_attempt(consumer=consumer, succeeded=True)
    features.refresh_from_db()
    assert features.charge_failures == 0


# --- score refresh -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_kept_promise_re_scores_with_the_active_card_and_records_the_change(consumer):
    written = record(consumer, PromiseOutcome.FULFILLED)

    assert profile(consumer).score == 625
    event = CreditProfileEvent.objects.get(profile__consumer=consumer)
    assert (event.kind, event.before, event.after, event.actor) == (ProfileEventKind.SCORE_CHANGED, "650", "625", None)
    assert event.reason == f"scorecard default-1: promise record of order #{written.order_id} (fulfilled)"


@pytest.mark.django_db
def test_an_unchanged_score_writes_no_event(consumer):
    record(consumer, PromiseOutcome.FULFILLED)
    record(consumer, PromiseOutcome.FULFILLED)  # 2 kept: same bin as 1

    assert profile(consumer).score == 625
    assert CreditProfileEvent.objects.filter(profile__consumer=consumer).count() == 1


# --- limits -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_limit_grows_one_band_step_after_every_fifth_kept_promise(consumer):
    merchant = MerchantFactory()
    for _ in range(4):
        record(consumer, PromiseOutcome.FULFILLED, merchant=merchant)
    assert limit_changes(consumer) == []

    record(consumer, PromiseOutcome.FULFILLED, merchant=merchant)  # 5th: score 640, band good, step 200
    assert profile(consumer).score == 640
    assert limit_changes(consumer) == [(LimitChangeReason.GROWTH, Decimal("1000.00"), Decimal("1200.00"))]
    change = LimitChange.objects.get(profile__consumer=consumer)
    assert change.reason.startswith("5 kept promises (promise record of order #")

    for _ in range(5):
        record(consumer, PromiseOutcome.FULFILLED, merchant=merchant)  # 10th: score 660, very good, step 400
    assert profile(consumer).score == 660
    assert limit_changes(consumer)[-1] == (LimitChangeReason.GROWTH, Decimal("1200.00"), Decimal("1600.00"))
    assert profile(consumer).credit_limit_amount == Decimal("1600.00")


@pytest.mark.django_db
def test_growth_stops_at_the_band_ceiling():
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("2950.00"))
    merchant = MerchantFactory()
    for _ in range(5):
        record(consumer, PromiseOutcome.FULFILLED, merchant=merchant)  # score 640: good band, ceiling 3000
    assert limit_changes(consumer) == [(LimitChangeReason.GROWTH, Decimal("2950.00"), Decimal("3000.00"))]

    assert credit_limit_grow(actor=None, consumer=consumer, reason="again") is None
    assert profile(consumer).credit_limit_amount == Decimal("3000.00")
    assert len(limit_changes(consumer)) == 1


@pytest.mark.django_db
def test_limit_falls_after_a_breach_and_does_not_grow_while_it_is_unpaid(consumer):
    merchant = MerchantFactory()
    for _ in range(4):
        record(consumer, PromiseOutcome.FULFILLED, merchant=merchant)
    breach = record(consumer, PromiseOutcome.BREACHED, merchant=merchant)

    assert limit_changes(consumer) == [(LimitChangeReason.BREACH, Decimal("1000.00"), Decimal("500.00"))]
    assert LimitChange.objects.get(profile__consumer=consumer).reason == (
        f"promise record of order #{breach.order_id} (breached)"
    )
    score_after_breach = profile(consumer).score
    assert score_after_breach < 600

    record(consumer, PromiseOutcome.FULFILLED, merchant=merchant)  # 5th kept, but one order is still in arrears
    assert len(limit_changes(consumer)) == 1
    assert profile(consumer).credit_limit_amount == Decimal("500.00")


def test_limit_ladder_arithmetic():
    assert limits.initial_limit_for_score(720) == Decimal("3000.00")
    assert limits.initial_limit_for_score(549) == Decimal("200.00")
    assert limits.grown_limit(Decimal("1000.00"), 620) == Decimal("1200.00")
    assert limits.grown_limit(Decimal("7000.00"), 620) == Decimal("7000.00")  # above the ceiling: untouched
    assert limits.cut_limit(Decimal("1234.56")) == Decimal("610.00")
    assert limits.cut_limit(Decimal("15.00")) == Decimal("0.00")
    assert limits.INITIAL_LIMIT_BY_BAND[ScoreBand.GOOD] == Decimal("1000.00")


@pytest.mark.django_db
def test_a_cut_below_the_held_amount_keeps_the_holds_and_refuses_new_ones():
    consumer = ConsumerFactory(profile__open_exposure_amount=Decimal("700.00"))

    change = credit_limit_cut_after_breach(actor=None, consumer=consumer, reason="order #1 breached")

    assert (change.before_amount, change.after_amount) == (Decimal("1000.00"), Decimal("500.00"))
    assert profile(consumer).available_amount == Decimal("-200.00")
    with pytest.raises(InsufficientCredit):
        credit_hold_acquire(consumer=consumer, amount=Decimal("1.00"))


@pytest.mark.django_db
def test_no_growth_while_paused():
    consumer = ConsumerFactory(profile__is_paused=True, profile__paused_reason="overdue")
    assert credit_limit_grow(actor=None, consumer=consumer, reason="x") is None
    assert limit_changes(consumer) == []


@pytest.mark.django_db
def test_registration_starts_from_the_ladder():
    consumer = consumer_register(actor=None, phone="13912345678", password="Kd9!mq2#Lp", score=720)

    assert profile(consumer).credit_limit_amount == Decimal("3000.00")
    assert limit_changes(consumer) == [(LimitChangeReason.INITIAL, Decimal("0.00"), Decimal("3000.00"))]


# --- personal spend cap ------------------------------------------------------------------------


@pytest.mark.django_db
def test_spend_cap_is_set_with_an_event_and_holds_respect_it(consumer):
    updated = credit_spend_cap_set(actor=consumer.user, consumer=consumer, amount="300")

    assert updated.spend_cap_amount == Decimal("300.00")
    event = CreditProfileEvent.objects.get(profile__consumer=consumer)
    assert (event.kind, event.before, event.after, event.actor) == (
        ProfileEventKind.SPEND_CAP_SET,
        "",
        "300.00",
        consumer.user,
    )
    credit_hold_acquire(consumer=consumer, amount=Decimal("300.00"))
    with pytest.raises(InsufficientCredit):
        credit_hold_acquire(consumer=consumer, amount=Decimal("0.01"))
    assert profile(consumer).open_exposure_amount == Decimal("300.00")

    cleared = credit_spend_cap_set(actor=consumer.user, consumer=consumer, amount=None)
    assert cleared.spend_cap_amount is None
    credit_hold_acquire(consumer=consumer, amount=Decimal("700.00"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "code"),
    [("1000.01", "spend_cap_above_limit"), ("-1", "validation_failed"), (3.5, "validation_failed")],
)
def test_spend_cap_refusals_change_nothing(consumer, amount, code):
    with pytest.raises(ValidationFailed) as refused:
        credit_spend_cap_set(actor=None, consumer=consumer, amount=amount)
    assert refused.value.code == code
    assert profile(consumer).spend_cap_amount is None
    assert CreditProfileEvent.objects.count() == 0


@pytest.mark.django_db
def test_setting_the_same_spend_cap_again_is_refused():
    consumer = ConsumerFactory(profile__spend_cap_amount=Decimal("50.00"))
    with pytest.raises(ValidationFailed) as refused:
        credit_spend_cap_set(actor=None, consumer=consumer, amount="50.00")
    assert refused.value.code == "spend_cap_unchanged"
    assert CreditProfileEvent.objects.count() == 0


@pytest.mark.django_db
def test_order_opened_upsert_moves_every_counter_and_keeps_recent_times_in_order(consumer):
    now = timezone.now()
    kept, dropped = now - timezone.timedelta(hours=2), now - timezone.timedelta(hours=25)
    ConsumerFeatures.objects.create(
        consumer=consumer,
        orders_total=4,
        open_orders=1,
        open_by_merchant={"7": 1},
        scenario_counts={Scenario.EBIKE_CHARGING: 4},
        recent_order_times=[dropped, kept],
        first_order_at=dropped,
    )

    returned = features_on_order_opened(
        consumer=consumer, merchant_id=7, scenario=Scenario.EBIKE_CHARGING, opened_at=now
    )
    features_on_order_opened(consumer=consumer, merchant_id=8, scenario=Scenario.LIVE_SHOPPING, opened_at=now)

    features = ConsumerFeatures.objects.get(pk=consumer.pk)
    assert (features.orders_total, features.open_orders) == (6, 3)
    assert features.open_by_merchant == {"7": 2, "8": 1}
    assert features.scenario_counts == {Scenario.EBIKE_CHARGING: 5, Scenario.LIVE_SHOPPING: 1}
    assert features.recent_order_times == [kept, now, now]
    assert (features.first_order_at, features.last_order_at) == (dropped, now)
    # What the service returns is the row as written (the first call's).
    assert (returned.orders_total, returned.open_by_merchant, returned.recent_order_times) == (5, {"7": 2}, [kept, now])
