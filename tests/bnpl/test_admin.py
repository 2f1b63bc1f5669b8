"""The staff admin: read-only rows, actions that go through the services."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from bnpl import services
from bnpl.choices import ActorKind, AgreementStatus, OrderStatus
from bnpl.models import BillLine, CreditOrder, OrderEvent, UsageEvent
from tests.bnpl.helpers import exposure, order_in
from tests.factories import UserFactory

S = OrderStatus
pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_order_changelist_and_read_only_detail(staff_client, listing, consumer):
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer, out_order_no="O-1")
    changelist = staff_client.get(reverse("admin:bnpl_creditorder_changelist"), {"q": consumer.phone})
    assert changelist.status_code == 200
    assert "O-1" in changelist.text

    services.usage_record(
        actor=None,
        merchant=listing.merchant,
        order=order,
        merchant_event_id="E-SESSION-42",
        quantity="1.5",
        occurred_at=timezone.now(),
    )
    services.credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=order, reason="session ended")
    detail = staff_client.get(reverse("admin:bnpl_creditorder_change", args=[order.pk]))
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.text  # a view, not a form
    for shown in ("E-SESSION-42", "使用时长", "session ended"):  # usage, bill and timeline inlines
        assert shown in detail.text

    posted = staff_client.post(reverse("admin:bnpl_creditorder_change", args=[order.pk]), {"max_amount": "1.00"})
    assert posted.status_code == 403
    assert CreditOrder.objects.get(pk=order.pk).amount_due == Decimal("2.00")
    assert staff_client.get(reverse("admin:bnpl_creditorder_add")).status_code == 403


@pytest.mark.parametrize("model", [OrderEvent, BillLine, UsageEvent])
def test_row_admins_cannot_add_or_delete(staff_client, model):
    name = model._meta.model_name
    assert staff_client.get(reverse(f"admin:bnpl_{name}_changelist")).status_code == 200
    assert staff_client.get(reverse(f"admin:bnpl_{name}_add")).status_code == 403


def test_cancel_action_asks_for_a_reason_then_cancels_through_the_service(staff_client, staff_user, listing, consumer):
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer, out_order_no="O-1")
    url = reverse("admin:bnpl_creditorder_changelist")
    data = {"action": "cancel_with_reason", ACTION_CHECKBOX_NAME: [order.pk]}

    page = staff_client.post(url, data)
    assert page.status_code == 200
    assert "admin/bnpl/cancel_reason.html" in [t.name for t in page.templates]
    assert CreditOrder.objects.get(pk=order.pk).status == S.ACTIVE

    done = staff_client.post(url, {**data, "apply": "1", "reason": "merchant closed the site"})
    assert done.status_code == 302
    order.refresh_from_db()
    assert order.status == S.CANCELLED
    assert exposure(consumer) == Decimal("0.00")
    event = OrderEvent.objects.get(order=order)
    assert (event.actor, event.actor_kind, event.reason) == (staff_user, ActorKind.STAFF, "merchant closed the site")


def test_expire_action_expires_only_overdue_confirmations(staff_client, listing):
    late = order_in(S.PENDING_CONFIRMATION, listing=listing, expires_in=timedelta(minutes=-1))
    on_time = order_in(S.PENDING_CONFIRMATION, listing=listing)
    response = staff_client.post(
        reverse("admin:bnpl_creditorder_changelist"),
        {"action": "expire_overdue_confirmations", ACTION_CHECKBOX_NAME: [late.pk, on_time.pk]},
    )
    assert response.status_code == 302
    assert dict(CreditOrder.objects.values_list("pk", "status")) == {
        late.pk: S.EXPIRED,
        on_time.pk: S.PENDING_CONFIRMATION,
    }


def test_agreement_close_action_goes_through_the_service(staff_client, agreement_listing, consumer):
    agreement = services.agreement_sign(actor=None, consumer=consumer, listing=agreement_listing)
    url = reverse("admin:bnpl_agreement_changelist")
    response = staff_client.post(
        url,
        {"action": "close_with_reason", ACTION_CHECKBOX_NAME: [agreement.pk], "apply": "1", "reason": "consumer asked"},
    )
    assert response.status_code == 302
    agreement.refresh_from_db()
    assert (agreement.status, agreement.close_reason) == (AgreementStatus.CLOSED, "consumer asked")


@pytest.mark.django_db(transaction=True)
def test_cancel_action_runs_the_durable_service_outside_any_transaction(client, listing, consumer):
    """Durability is only checked outside TestCase's wrapping transaction: the admin must not nest it."""
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    client.force_login(staff)
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer)
    response = client.post(
        reverse("admin:bnpl_creditorder_changelist"),
        {"action": "cancel_with_reason", ACTION_CHECKBOX_NAME: [order.pk], "apply": "1", "reason": "fraud suspected"},
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == S.CANCELLED
    assert exposure(consumer) == Decimal("0.00")
