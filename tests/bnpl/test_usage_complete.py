"""Usage reports and completing an order with its final bill."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bnpl import services
from bnpl.choices import ActorKind, OrderStatus
from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from bnpl.models import BillLine, OrderEvent, UsageEvent
from consumers.models import PromiseRecord
from merchants.choices import Scenario
from tests.bnpl.helpers import exposure, order_in, snapshot
from tests.factories import ListingFactory, MerchantFactory

S = OrderStatus
pytestmark = pytest.mark.django_db


@pytest.fixture
def active(listing, consumer):
    """An active e-bike order (¥1/h, round up, ¥10 cap per 24 h), ¥20 held."""
    return order_in(S.ACTIVE, listing=listing, consumer=consumer, out_order_no="O-1")


def record(order, event_id="E-1", quantity="1.6333", **kwargs):
    return services.usage_record(
        actor=None,
        merchant=order.merchant,
        order=order,
        merchant_event_id=event_id,
        quantity=quantity,
        occurred_at=kwargs.pop("occurred_at", timezone.now()),
        **kwargs,
    )


def complete(order, **kwargs):
    return services.credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=order, **kwargs)


def bill(order):
    return list(
        BillLine.objects.filter(order=order).values_list(
            "position", "name", "quantity", "unit", "unit_price", "amount", "is_discount"
        )
    )


# --------------------------------------------------------------------------- usage


def test_usage_is_recorded(active):
    event, created = record(active, quantity="1.6333", properties={"pile": "HZ-07"})
    assert created is True
    event.refresh_from_db()
    assert (event.order, event.merchant_event_id, event.quantity, event.properties) == (
        active,
        "E-1",
        Decimal("1.6333"),
        {"pile": "HZ-07"},
    )


def test_usage_duplicate_id_returns_the_original_and_counts_once(active):
    first, _ = record(active, quantity="1.6333")
    again, created = record(active, quantity=Decimal("1.63330"))
    assert created is False
    assert again.pk == first.pk
    assert UsageEvent.objects.filter(order=active).count() == 1


@pytest.mark.parametrize("change", ["quantity", "order"])
def test_usage_duplicate_id_with_different_content_is_refused(active, listing, consumer, change):
    record(active, quantity="1.5")
    other = order_in(S.ACTIVE, listing=listing, consumer=consumer, out_order_no="O-2")
    target, quantity = (active, "2.5") if change == "quantity" else (other, "1.5")
    with pytest.raises(ValidationFailed) as refused:
        record(target, quantity=quantity)
    assert refused.value.code == "duplicate_event_conflict"
    assert UsageEvent.objects.count() == 1


def test_same_event_id_at_another_merchant_is_another_event(active):
    other_listing = ListingFactory(merchant=MerchantFactory())
    other = order_in(S.ACTIVE, listing=other_listing, consumer=active.consumer, out_order_no="O-9")
    record(active, "E-1")
    _, created = record(other, "E-1")
    assert created is True
    assert UsageEvent.objects.count() == 2


@pytest.mark.parametrize("quantity", ["-1", "1.23456", "abc", 1.5, "NaN", None])
def test_usage_with_bad_quantity_is_refused(active, quantity):
    with pytest.raises(ValidationFailed) as refused:
        record(active, quantity=quantity)
    assert list(refused.value.fields) == ["quantity"]
    assert UsageEvent.objects.count() == 0


def test_usage_needs_an_aware_time(active):
    with pytest.raises(ValidationFailed) as refused:
        record(active, occurred_at=timezone.now().replace(tzinfo=None))
    assert list(refused.value.fields) == ["occurred_at"]


def test_usage_for_another_merchants_order_is_refused(active):
    with pytest.raises(NotAllowed) as refused:
        services.usage_record(
            actor=None,
            merchant=MerchantFactory(),
            order=active,
            merchant_event_id="E-1",
            quantity="1",
            occurred_at=timezone.now(),
        )
    assert refused.value.code == "wrong_merchant"
    assert UsageEvent.objects.count() == 0


def test_usage_on_a_completed_order_is_refused(listing, consumer):
    order = order_in(S.COMPLETED, listing=listing, consumer=consumer, out_order_no="O-1")
    before = snapshot(order)
    with pytest.raises(InvalidTransition, match=r"^order O-1 is completed; it cannot be given usage$"):
        record(order)
    assert snapshot(order) == before


def test_usage_replayed_after_completion_still_returns_the_original(active):
    first, _ = record(active)
    complete(active)
    again, created = record(active)
    assert (again.pk, created) == (first.pk, False)


# --------------------------------------------------------------------------- complete from usage


def test_complete_from_usage_rates_the_session(active, consumer):
    """E-bike ¥1/h, cap ¥10: 1.6333 h → 2 billed hours → ¥2.00; the hold shrinks to ¥2.00."""
    record(active, quantity="1.6333")
    before = timezone.now()

    order = complete(active)

    order.refresh_from_db()
    assert order.status == S.COMPLETED
    assert order.amount_due == Decimal("2.00")
    assert order.hold_amount == Decimal("2.00")
    assert exposure(consumer) == Decimal("2.00")
    assert before <= order.completed_at <= timezone.now()
    assert order.due_at == order.completed_at  # metered: due right after the session
    assert bill(order) == [(0, "使用时长", Decimal("2.0000"), "hour", Decimal("1.0000"), Decimal("2.00"), False)]
    event = OrderEvent.objects.get(order=order)
    assert (event.from_status, event.to_status, event.data["amount_due"]) == (S.ACTIVE, S.COMPLETED, "2.00")
    assert PromiseRecord.objects.count() == 0  # kept or broken only once it is paid


def test_complete_uses_the_ordered_rule_not_the_current_one(active, listing, consumer):
    listing.pricing_rule = {**listing.pricing_rule, "unit_price": "5.00"}
    listing.save()
    record(active, quantity="3")
    order = complete(active)
    assert order.amount_due == Decimal("3.00")


def test_complete_applies_the_24h_cap(active, consumer):
    record(active, quantity="15")
    order = complete(active)
    assert order.amount_due == Decimal("10.00")
    assert [line[1] for line in bill(order)] == ["使用时长", "每24小时封顶减免"]
    assert exposure(consumer) == Decimal("10.00")


def test_live_shopping_goods_fall_due_seven_days_after_completion(consumer):
    listing = ListingFactory(
        scenario=Scenario.LIVE_SHOPPING,
        max_amount=Decimal("199.00"),
        pricing_rule={"kind": "fixed", "price": "199.00", "name": "羽绒服"},
    )
    order = complete(order_in(S.ACTIVE, listing=listing, consumer=consumer))
    assert order.amount_due == Decimal("199.00")
    assert order.due_at == order.completed_at + timedelta(days=7)


# --------------------------------------------------------------------------- complete with merchant lines


EXPRESS_LINES = [
    {"name": "首重费", "quantity": "1", "unit": "item", "unit_price": "12.00", "amount": "12.00"},
    {"name": "续重费", "quantity": "2.5", "unit": "kg", "unit_price": "2.00", "amount": "5.00"},
]


def test_complete_with_merchant_lines_and_discounts(active, consumer):
    order = complete(active, lines=EXPRESS_LINES, discounts=[{"name": "新客立减", "amount": "3.00"}])

    order.refresh_from_db()
    assert order.amount_due == Decimal("14.00")
    assert order.hold_amount == Decimal("14.00")
    assert exposure(consumer) == Decimal("14.00")
    assert bill(order) == [
        (0, "首重费", Decimal("1.0000"), "item", Decimal("12.0000"), Decimal("12.00"), False),
        (1, "续重费", Decimal("2.5000"), "kg", Decimal("2.0000"), Decimal("5.00"), False),
        (2, "新客立减", Decimal("1.0000"), "", Decimal("3.0000"), Decimal("3.00"), True),
    ]


def test_complete_rejects_amount_over_cap(active, consumer):
    before = snapshot(active)
    lines = [*EXPRESS_LINES, {"name": "保价费", "quantity": "1", "unit_price": "8.00", "amount": "8.00"}]
    with pytest.raises(ValidationFailed) as refused:
        complete(active, lines=lines)
    assert refused.value.code == "amount_exceeds_cap"
    assert refused.value.message == "The bill of 25.00 exceeds the order's maximum of 20.00."
    assert snapshot(active) == before
    assert exposure(consumer) == Decimal("20.00")


def test_complete_rejects_discounts_above_the_bill(active):
    before = snapshot(active)
    with pytest.raises(ValidationFailed) as refused:
        complete(active, lines=EXPRESS_LINES, discounts=[{"name": "券", "amount": "18.00"}])
    assert refused.value.code == "negative_total"
    assert snapshot(active) == before


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"name": "A", "quantity": "1", "unit_price": "2.00", "amount": "2.001"}, "lines[0].amount"),
        ({"name": "A", "quantity": "-1", "unit_price": "2.00", "amount": "2.00"}, "lines[0].quantity"),
        ({"name": "A", "quantity": "2", "unit_price": "2.00", "amount": "3.00"}, "lines[0].amount"),
        ({"name": "", "quantity": "1", "unit_price": "2.00", "amount": "2.00"}, "lines[0].name"),
        ({"name": "A", "quantity": "1", "unit_price": "2.00", "amount": 2.0}, "lines[0].amount"),
    ],
)
def test_complete_rejects_invalid_lines(active, line, field):
    before = snapshot(active)
    with pytest.raises(ValidationFailed) as refused:
        complete(active, lines=[line])
    assert field in refused.value.fields
    assert snapshot(active) == before


def test_complete_with_zero_bill_is_paid_at_once(active, consumer):
    order = complete(active, lines=[])

    order.refresh_from_db()
    assert (order.status, order.amount_due, order.hold_amount) == (S.PAID, Decimal("0.00"), Decimal("0.00"))
    assert exposure(consumer) == Decimal("0.00")
    assert list(OrderEvent.objects.filter(order=order).values_list("from_status", "to_status", "reason")) == [
        (S.ACTIVE, S.COMPLETED, ""),
        (S.COMPLETED, S.PAID, "nothing to charge"),
    ]
    promise = PromiseRecord.objects.get(order_id=order.pk)
    assert (promise.outcome, promise.amount) == ("fulfilled", Decimal("0.00"))


def test_complete_without_usage_bills_nothing(active, consumer):
    order = complete(active)
    assert order.status == S.PAID
    assert exposure(consumer) == Decimal("0.00")
