"""Every order service against every order state: allowed moves happen, the rest change nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from bnpl import services
from bnpl.choices import ALLOWED_TRANSITIONS, ActorKind, OrderStatus
from bnpl.exceptions import InvalidTransition
from bnpl.models import OrderEvent
from tests.bnpl.helpers import order_in, snapshot

S = OrderStatus

LINE = {"name": "商品金额", "quantity": "1", "unit": "item", "unit_price": "5.00", "amount": "5.00"}


@dataclass(frozen=True)
class Case:
    name: str
    sources: frozenset[str]
    target: str | None  # None: the service changes no state (usage)
    past_deadline: bool = False

    def call(self, order, *, consumer, user) -> Any:
        if self.name == "confirm":
            return services.credit_order_confirm(actor=user, order=order, consumer=consumer)
        if self.name == "cancel":
            return services.credit_order_cancel(
                actor=user, actor_kind=ActorKind.MERCHANT, order=order, reason="out of stock"
            )
        if self.name == "expire":
            return services.credit_order_expire(order=order)
        if self.name == "complete":
            return services.credit_order_complete(actor=user, actor_kind=ActorKind.MERCHANT, order=order, lines=[LINE])
        if self.name == "mark_paid_elsewhere":
            return services.credit_order_mark_paid_elsewhere(
                actor=user, actor_kind=ActorKind.MERCHANT, order=order, reason="paid in cash at the counter"
            )
        if self.name == "usage":
            return services.usage_record(
                actor=user,
                merchant=order.merchant,
                order=order,
                merchant_event_id="E-1",
                quantity=Decimal("1.5"),
                occurred_at=timezone.now(),
            )
        raise AssertionError(self.name)


CASES = [
    Case("confirm", frozenset({S.PENDING_CONFIRMATION}), S.ACTIVE),
    Case("cancel", frozenset({S.PENDING_CONFIRMATION, S.ACTIVE}), S.CANCELLED),
    Case("expire", frozenset({S.PENDING_CONFIRMATION}), S.EXPIRED, past_deadline=True),
    Case("complete", frozenset({S.ACTIVE}), S.COMPLETED),
    Case("mark_paid_elsewhere", frozenset({S.COMPLETED, S.COLLECTING, S.OVERDUE}), S.PAID),
    Case("usage", frozenset({S.ACTIVE}), None),
]


def test_the_cases_follow_the_state_machine():
    for case in CASES:
        if case.target is None:
            continue
        for source in case.sources:
            assert case.target in ALLOWED_TRANSITIONS[source], (case.name, source)


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("status", list(OrderStatus), ids=str)
def test_service_from_every_state(case, status, listing, consumer, merchant_user):
    expires_in = timedelta(minutes=-1) if case.past_deadline else timedelta(minutes=30)
    order = order_in(status, listing=listing, consumer=consumer, out_order_no="O-1", expires_in=expires_in)
    before = snapshot(order)

    if status not in case.sources:
        with pytest.raises(InvalidTransition) as refused:
            case.call(order, consumer=consumer, user=merchant_user)
        assert refused.value.code == "invalid_state"
        assert refused.value.message.startswith(f"order O-1 is {status}; it cannot be ")
        assert snapshot(order) == before
        return

    case.call(order, consumer=consumer, user=merchant_user)
    after = snapshot(order)
    if case.target is None:
        assert after["order"]["status"] == status
        assert after["events"] == before["events"]
        assert after["usage"] == before["usage"] + 1
        return
    assert after["order"]["status"] == case.target
    assert after["events"] == before["events"] + 1
    event = OrderEvent.objects.get(order=order)
    assert (event.from_status, event.to_status) == (status, case.target)
    if case.name == "expire":
        assert (event.actor, event.actor_kind) == (None, ActorKind.SYSTEM)
    elif case.name == "confirm":
        assert (event.actor, event.actor_kind) == (merchant_user, ActorKind.CONSUMER)
    else:
        assert (event.actor, event.actor_kind) == (merchant_user, ActorKind.MERCHANT)


@pytest.mark.django_db
def test_refusal_message_names_the_state_and_the_action(listing, consumer, merchant_user):
    order = order_in(S.COMPLETED, listing=listing, consumer=consumer, out_order_no="O-1")
    with pytest.raises(InvalidTransition, match=r"^order O-1 is completed; it cannot be cancelled$"):
        services.credit_order_cancel(actor=merchant_user, actor_kind=ActorKind.MERCHANT, order=order, reason="x")
