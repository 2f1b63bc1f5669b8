"""The order page's actions: report a problem (pauses the charge), open a dispute, extend the due date once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bnpl.charging import run_charges
from bnpl.choices import ActorKind, OrderStatus
from bnpl.disputes import dispute_decide
from bnpl.exceptions import InvalidTransition, NotAllowed
from bnpl.extensions import EXTENSION_EVENT, credit_order_extend_due_date
from bnpl.models import ChargeAttempt, CreditOrder, Dispute, OrderEvent
from bnpl.models.settlement import DisputeOutcome, DisputeStatus
from bnpl.overdue import classify_overdue
from consumers.models import PromiseRecord
from merchants.choices import Scenario
from merchants.models import WebhookEvent
from merchants.services import webhook_endpoint_create
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import run_concurrently
from tests.bnpl.partb_helpers import charged_order
from tests.consumers.portal_helpers import logged_in
from tests.factories import ConsumerFactory, ListingFactory, UserFactory

pytestmark = pytest.mark.django_db
S = OrderStatus
D = Decimal


@pytest.fixture
def goods(merchant):
    """A live-stream shop: goods charged 7 days after completion; a 7-day extension is offered."""
    return ListingFactory(
        merchant=merchant,
        scenario=Scenario.LIVE_SHOPPING,
        max_amount=D("2000.00"),
        pricing_rule={"kind": "fixed", "price": "1234.50"},
    )


@pytest.fixture
def parcel(merchant):
    """Express delivery: charged after the parcel is sent; a 3-day extension is offered."""
    return ListingFactory(merchant=merchant, scenario=Scenario.EXPRESS_DELIVERY, max_amount=D("100.00"))


def link(name: str, order) -> str:
    """The ``href`` of a link to the order's page ``name`` (exact: /dispute/ is a prefix of /dispute/withdraw/)."""
    return f'href="{reverse(name, args=[order.pk])}"'


def extension_events(order) -> list[OrderEvent]:
    return list(OrderEvent.objects.filter(order=order, data__event=EXTENSION_EVENT))


# --------------------------------------------------------------------------- extension: the service


def test_extension_moves_the_due_date_once_and_records_who_asked(goods, consumer):
    due = timezone.now() + timedelta(days=2)
    order = due_order(goods, consumer, amount="1234.50", due_at=due)

    extended = credit_order_extend_due_date(actor=consumer.user, order=order, consumer=consumer)

    assert extended.due_at == due + timedelta(days=7)
    assert CreditOrder.objects.get(pk=order.pk).due_at == due + timedelta(days=7)
    [event] = extension_events(order)
    assert (event.actor_id, event.actor_kind, event.from_status, event.to_status) == (
        consumer.user.pk,
        ActorKind.CONSUMER,
        S.COMPLETED,
        S.COMPLETED,
    )
    assert event.data["days"] == 7
    assert event.reason == "Due date extended by 7 days"

    with pytest.raises(NotAllowed) as refused:
        credit_order_extend_due_date(actor=consumer.user, order=order, consumer=consumer)
    assert refused.value.code == "extension_used"
    assert refused.value.message == "The due date of this order has already been extended."
    assert CreditOrder.objects.get(pk=order.pk).due_at == due + timedelta(days=7)
    assert len(extension_events(order)) == 1


def test_the_merchant_is_told_of_the_new_due_date(goods, consumer, settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    webhook_endpoint_create(
        actor=None, merchant=goods.merchant, url="http://127.0.0.1:9/hooks", event_types=["order.*"]
    )
    due = timezone.now() + timedelta(days=2)
    order = due_order(goods, consumer, due_at=due)

    credit_order_extend_due_date(actor=consumer.user, order=order, consumer=consumer)

    [event] = WebhookEvent.objects.filter(type="order.due_date_extended")
    assert event.ordering_key == f"order:{order.pk}"
    assert event.payload["due_at"] == timezone.localtime(due + timedelta(days=7)).isoformat()
    assert event.payload["previous_due_at"] == timezone.localtime(due).isoformat()


def test_extension_is_refused_where_the_scenario_offers_none(listing, consumer):
    order = due_order(listing, consumer, due_at=timezone.now() + timedelta(hours=1))
    before = CreditOrder.objects.filter(pk=order.pk).values().get()

    with pytest.raises(NotAllowed) as refused:
        credit_order_extend_due_date(actor=consumer.user, order=order)

    assert refused.value.code == "extension_not_offered"
    assert refused.value.message == "Due-date extensions are not offered for E-bike charging."
    assert CreditOrder.objects.filter(pk=order.pk).values().get() == before
    assert extension_events(order) == []


@pytest.mark.parametrize("status", [S.ACTIVE, S.OVERDUE, S.PAID])
def test_extension_is_refused_before_completion_once_overdue_and_after_the_charge(goods, consumer, status):
    order = due_order(goods, consumer, status=status)
    before = CreditOrder.objects.filter(pk=order.pk).values().get()

    with pytest.raises(InvalidTransition) as refused:
        credit_order_extend_due_date(actor=consumer.user, order=order)

    assert refused.value.code == "extension_not_now"
    assert CreditOrder.objects.filter(pk=order.pk).values().get() == before


def test_a_collecting_order_past_its_grace_period_cannot_escape_the_breach_by_an_extension(parcel, consumer):
    from consumers import rewards

    due = timezone.now() - django_settings.BNPL_GRACE_PERIOD - timedelta(hours=1)  # not yet classified overdue
    order = due_order(parcel, consumer, status=S.COLLECTING, due_at=due, collecting_since=due)
    before = CreditOrder.objects.filter(pk=order.pk).values().get()

    with pytest.raises(InvalidTransition) as refused:
        credit_order_extend_due_date(actor=consumer.user, order=order, consumer=consumer)

    assert refused.value.code == "extension_not_now"
    assert CreditOrder.objects.filter(pk=order.pk).values().get() == before
    # An expert's longer grace (a level perk) still allows it an hour past the platform's.
    expert = ConsumerFactory()
    for i in range(10):
        rewards.rewards_on_promise_kept(actor=None, consumer_id=expert.pk, order_id=950_000 + i)
    theirs = due_order(parcel, expert, status=S.COLLECTING, due_at=due, collecting_since=due)
    credit_order_extend_due_date(actor=expert.user, order=theirs, consumer=expert)
    assert len(extension_events(theirs)) == 1


def test_extension_of_someone_elses_order_is_refused(goods, consumer):
    order = due_order(goods, consumer, due_at=timezone.now() + timedelta(days=1))
    other = ConsumerFactory()

    with pytest.raises(NotAllowed) as refused:
        credit_order_extend_due_date(actor=other.user, order=order, consumer=other)

    assert refused.value.code == "wrong_consumer"
    assert extension_events(order) == []


def test_the_charge_run_waits_for_the_extended_due_date(goods, consumer):
    fund(consumer, "2000.00")
    due = timezone.now() + timedelta(hours=1)
    order = due_order(goods, consumer, amount="1234.50", due_at=due)
    credit_order_extend_due_date(actor=consumer.user, order=order, consumer=consumer)

    with time_machine.travel(due + timedelta(minutes=5), tick=False):
        assert run_charges(threads=1).claimed == 0
    assert ChargeAttempt.objects.filter(order=order).count() == 0

    with time_machine.travel(due + timedelta(days=7, minutes=5), tick=False):
        assert run_charges(threads=1).succeeded == 1
    order.refresh_from_db()
    assert order.status == S.PAID
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "fulfilled"


def test_extending_a_collecting_order_holds_the_retries_and_the_overdue_clock(parcel, consumer):
    fund(consumer, "1.00")  # too little: the retry would be declined if it ran
    now = timezone.now()
    due = now - timedelta(days=1)
    order = due_order(
        parcel,
        consumer,
        status=S.COLLECTING,
        due_at=due,
        collecting_since=due,
        next_attempt_at=now - timedelta(minutes=1),
        charge_failure_count=1,
    )

    credit_order_extend_due_date(actor=consumer.user, order=order, consumer=consumer)

    order.refresh_from_db()
    assert order.due_at == due + timedelta(days=3)
    assert order.next_attempt_at == due + timedelta(days=3)
    assert run_charges(threads=1).claimed == 0
    # Past the old due date's grace period the order would be overdue; the extension moved that too.
    later = due + django_settings.BNPL_GRACE_PERIOD + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        classify_overdue()
    assert CreditOrder.objects.get(pk=order.pk).status == S.COLLECTING


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_extensions_extend_once(goods):
    consumer = ConsumerFactory()
    due = timezone.now() + timedelta(days=1)
    order = due_order(goods, consumer, due_at=due)

    results = run_concurrently(
        lambda: credit_order_extend_due_date(actor=None, order=order, consumer=consumer),
        lambda: credit_order_extend_due_date(actor=None, order=order, consumer=consumer),
    )

    assert sorted(type(r).__name__ for r in results) == ["CreditOrder", "NotAllowed"]
    assert CreditOrder.objects.get(pk=order.pk).due_at == due + timedelta(days=7)
    assert len(extension_events(order)) == 1


# --------------------------------------------------------------------------- extension: the pages


def test_the_extension_page_shows_both_dates_in_beijing_time_and_its_button_extends_once(goods, consumer):
    due = timezone.now().replace(second=0, microsecond=0) + timedelta(days=2)
    order = due_order(goods, consumer, amount="1234.50", due_at=due)
    client = logged_in(consumer)
    detail = client.get(reverse("me:order", args=[order.pk])).content.decode()
    assert link("me:order_extend", order) in detail

    page = client.get(reverse("me:order_extend", args=[order.pk])).content.decode()

    beijing = timezone.localtime(due)  # TIME_ZONE is Asia/Shanghai
    assert beijing.strftime("%Y-%m-%d %H:%M") in page
    assert (beijing + timedelta(days=7)).strftime("%Y-%m-%d %H:%M") in page
    assert "¥1,234.50" in page
    assert CreditOrder.objects.get(pk=order.pk).due_at == due  # looking changes nothing

    first = client.post(reverse("me:order_extend", args=[order.pk]), follow=True)
    second = client.post(reverse("me:order_extend", args=[order.pk]), follow=True)

    assert "Done: the charge is now due on" in first.content.decode()
    assert "The due date of this order has already been extended." in second.content.decode()
    assert CreditOrder.objects.get(pk=order.pk).due_at == due + timedelta(days=7)
    assert len(extension_events(order)) == 1
    detail = second.content.decode()
    assert "Extended" in detail
    assert link("me:order_extend", order) not in detail


def test_no_extension_button_where_none_is_offered_and_the_page_says_why(listing, consumer):
    order = due_order(listing, consumer, due_at=timezone.now() + timedelta(hours=1))
    client = logged_in(consumer)

    detail = client.get(reverse("me:order", args=[order.pk])).content.decode()
    page = client.get(reverse("me:order_extend", args=[order.pk])).content.decode()

    assert link("me:order_extend", order) not in detail
    assert "Due-date extensions are not offered for E-bike charging." in page
    assert "Yes, extend the due date" not in page


# --------------------------------------------------------------------------- report a problem


def test_reporting_a_problem_pauses_the_charge_run_for_that_order_only(goods, consumer):
    fund(consumer, "5000.00")
    order = due_order(goods, consumer, amount="1234.50")
    other = due_order(goods, consumer, amount="10.00")
    client = logged_in(consumer)
    page = client.get(reverse("me:order_report", args=[order.pk])).content.decode()
    assert "The charge is paused while the merchant and our team look into it." in page

    response = client.post(
        reverse("me:order_report", args=[order.pk]),
        {"reason": "not_received", "description": "快递显示已签收，但我没收到"},
        follow=True,
    )

    assert response.redirect_chain == [(reverse("me:order", args=[order.pk]), 302)]
    dispute = Dispute.objects.get(order=order)
    assert (dispute.reason, dispute.disputed_amount, dispute.after_charge, dispute.status) == (
        "not_received",
        D("1234.50"),
        False,
        DisputeStatus.OPEN,
    )
    assert dispute.description == "快递显示已签收，但我没收到"
    assert CreditOrder.objects.get(pk=order.pk).charge_paused is True
    page = response.content.decode()
    assert "Thank you. The charge is paused while the merchant and our team look into it." in page
    assert "Your dispute is being looked at" in page and "Charge paused" in page
    assert link("me:order_report", order) not in page

    run = run_charges(threads=1)

    assert run.succeeded == 1  # the other order
    assert ChargeAttempt.objects.filter(order=order).count() == 0
    assert CreditOrder.objects.get(pk=other.pk).status == S.PAID
    assert CreditOrder.objects.get(pk=order.pk).status == S.COMPLETED


def test_when_the_merchant_wins_the_reported_order_is_charged(goods, consumer):
    fund(consumer, "5000.00")
    order = due_order(goods, consumer, amount="1234.50")
    client = logged_in(consumer)
    client.post(reverse("me:order_report", args=[order.pk]), {"reason": "faulty", "description": "屏幕有划痕"})
    assert run_charges(threads=1).claimed == 0

    dispute_decide(
        actor=UserFactory(is_staff=True),
        dispute=Dispute.objects.get(order=order),
        outcome=DisputeOutcome.MERCHANT_WON,
        reason="商家提供了完好的签收照片",
    )

    assert run_charges(threads=1).succeeded == 1
    assert CreditOrder.objects.get(pk=order.pk).status == S.PAID
    page = client.get(reverse("me:order", args=[order.pk])).content.decode()
    assert "Merchant won" in page and "商家提供了完好的签收照片" in page


def test_reporting_twice_opens_one_dispute(goods, consumer):
    order = due_order(goods, consumer)
    client = logged_in(consumer)
    data = {"reason": "faulty", "description": "坏的"}

    client.post(reverse("me:order_report", args=[order.pk]), data)
    second = client.post(reverse("me:order_report", args=[order.pk]), data, follow=True)

    assert Dispute.objects.filter(order=order).count() == 1
    assert "This order already has an open dispute." in second.content.decode()


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_reports_open_one_dispute(goods):
    consumer = ConsumerFactory()
    order = due_order(goods, consumer)
    clients = [logged_in(consumer), logged_in(consumer)]
    url = reverse("me:order_report", args=[order.pk])
    data = {"reason": "faulty", "description": "坏的"}

    responses = run_concurrently(*(lambda c=c: c.post(url, data) for c in clients))

    assert [r.status_code for r in responses] == [302, 302]
    assert Dispute.objects.filter(order=order).count() == 1
    assert CreditOrder.objects.get(pk=order.pk).charge_paused is True


def test_a_problem_report_with_errors_keeps_what_was_typed(goods, consumer):
    order = due_order(goods, consumer)
    client = logged_in(consumer)

    response = client.post(reverse("me:order_report", args=[order.pk]), {"description": "包裹丢了，单号 SF123"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "Choose what went wrong." in page
    assert "包裹丢了，单号 SF123" in page
    assert not Dispute.objects.filter(order=order).exists()
    assert CreditOrder.objects.get(pk=order.pk).charge_paused is False


def test_a_problem_cannot_be_reported_on_a_charged_order(goods, consumer):
    order = charged_order(goods, consumer, amount="100.00")
    client = logged_in(consumer)

    response = client.post(
        reverse("me:order_report", args=[order.pk]), {"reason": "faulty", "description": "x"}, follow=True
    )

    assert "A problem can be reported while the order is waiting to be charged." in response.content.decode()
    assert not Dispute.objects.filter(order=order).exists()


def test_withdrawing_a_report_resumes_the_charge(goods, consumer):
    fund(consumer, "5000.00")
    order = due_order(goods, consumer, amount="1234.50")
    client = logged_in(consumer)
    client.post(reverse("me:order_report", args=[order.pk]), {"reason": "not_received", "description": "还没到"})
    detail = client.get(reverse("me:order", args=[order.pk])).content.decode()
    assert link("me:order_dispute_withdraw", order) in detail

    page = client.get(reverse("me:order_dispute_withdraw", args=[order.pk])).content.decode()
    assert "The charge resumes: ¥1,234.50, due" in page
    assert Dispute.objects.get(order=order).status == DisputeStatus.OPEN  # looking changes nothing
    response = client.post(reverse("me:order_dispute_withdraw", args=[order.pk]), follow=True)

    assert "Your dispute is withdrawn." in response.content.decode()
    assert Dispute.objects.get(order=order).status == DisputeStatus.WITHDRAWN
    assert CreditOrder.objects.get(pk=order.pk).charge_paused is False
    assert run_charges(threads=1).succeeded == 1
    again = client.post(reverse("me:order_dispute_withdraw", args=[order.pk]), follow=True)
    assert "This order has no open dispute." in again.content.decode()


# --------------------------------------------------------------------------- open a dispute


def test_a_dispute_after_the_charge_with_part_of_the_amount(goods, consumer):
    order = charged_order(goods, consumer, amount="1234.50", balance="5000.00")
    client = logged_in(consumer)
    detail = client.get(reverse("me:order", args=[order.pk])).content.decode()
    assert link("me:order_dispute", order) in detail
    assert link("me:order_report", order) not in detail  # nothing left to pause

    response = client.post(
        reverse("me:order_dispute", args=[order.pk]),
        {"reason": "wrong_amount", "description": "直播间价格是 ¥1,000.00", "amount": "234.50"},
        follow=True,
    )

    dispute = Dispute.objects.get(order=order)
    assert (dispute.reason, dispute.disputed_amount, dispute.after_charge) == ("wrong_amount", D("234.50"), True)
    page = response.content.decode()
    assert "Your dispute is open. We will tell you when it is decided." in page
    assert "¥234.50" in page
    assert link("me:order_dispute", order) not in page


def test_a_disputed_amount_above_what_is_at_stake_is_explained_and_kept(goods, consumer):
    order = due_order(goods, consumer, amount="100.00")
    client = logged_in(consumer)

    response = client.post(
        reverse("me:order_dispute", args=[order.pk]),
        {"reason": "not_authorised", "description": "不是我下的单", "amount": "150.00"},
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "The disputed amount must be more than 0 and at most ¥100.00." in page
    assert 'value="150.00"' in page and "不是我下的单" in page
    assert not Dispute.objects.filter(order=order).exists()


def test_a_dispute_needs_a_listed_reason_and_a_description(goods, consumer):
    order = due_order(goods, consumer)
    client = logged_in(consumer)

    response = client.post(reverse("me:order_dispute", args=[order.pk]), {"reason": "changed_my_mind"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "Choose a reason." in page and "Describe the problem." in page
    assert not Dispute.objects.filter(order=order).exists()


def test_an_active_order_cannot_be_disputed_yet(goods, consumer):
    order = due_order(goods, consumer, status=S.ACTIVE)
    client = logged_in(consumer)

    detail = client.get(reverse("me:order", args=[order.pk])).content.decode()
    response = client.get(reverse("me:order_dispute", args=[order.pk]), follow=True)

    assert link("me:order_dispute", order) not in detail
    assert "This order cannot be disputed now." in response.content.decode()


# --------------------------------------------------------------------------- access


@pytest.mark.parametrize(
    "name", ["me:order_report", "me:order_dispute", "me:order_extend", "me:order_dispute_withdraw"]
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_another_consumers_order_actions_are_404s(goods, name, method):
    owner = ConsumerFactory()
    order = due_order(goods, owner, due_at=timezone.now() + timedelta(days=1))
    if name == "me:order_dispute_withdraw":
        logged_in(owner).post(reverse("me:order_report", args=[order.pk]), {"reason": "faulty", "description": "坏"})
    before = CreditOrder.objects.filter(pk=order.pk).values().get()
    intruder = logged_in(ConsumerFactory())

    response = getattr(intruder, method)(
        reverse(name, args=[order.pk]), {"reason": "faulty", "description": "not mine"}
    )

    assert response.status_code == 404
    assert CreditOrder.objects.filter(pk=order.pk).values().get() == before
    assert list(Dispute.objects.filter(order=order).values_list("status", flat=True)) == (
        [DisputeStatus.OPEN] if name == "me:order_dispute_withdraw" else []
    )


@pytest.mark.parametrize("name", ["me:order_report", "me:order_dispute", "me:order_extend"])
def test_order_actions_need_csrf(goods, consumer, name):
    order = due_order(goods, consumer, due_at=timezone.now() + timedelta(days=1))
    client = Client(enforce_csrf_checks=True)
    client.force_login(consumer.user)

    response = client.post(reverse(name, args=[order.pk]), {"reason": "faulty", "description": "x"})

    assert response.status_code == 403
    assert not Dispute.objects.filter(order=order).exists()
    assert extension_events(order) == []


def test_the_order_page_costs_the_same_queries_with_or_without_a_dispute(goods, consumer, django_assert_num_queries):
    plain = due_order(goods, consumer, due_at=timezone.now() + timedelta(days=1))
    disputed = due_order(goods, consumer, due_at=timezone.now() + timedelta(days=1))
    client = logged_in(consumer)
    client.post(reverse("me:order_report", args=[disputed.pk]), {"reason": "faulty", "description": "x"})
    client.get(reverse("me:order", args=[plain.pk]))
    with CaptureQueriesContext(connection) as ctx:
        client.get(reverse("me:order", args=[plain.pk]))

    with django_assert_num_queries(len(ctx.captured_queries)):
        client.get(reverse("me:order", args=[disputed.pk]))
