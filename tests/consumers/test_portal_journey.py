"""The whole consumer journey through the pages: catalogue → confirm → use → complete → charged → 已守约."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bnpl.charging import run_charges
from bnpl.choices import ActorKind, OrderStatus
from bnpl.disputes import dispute_decide
from bnpl.models import ChargeAttempt, CreditOrder, Dispute, OrderEvent, SandboxFundingSource
from bnpl.models.settlement import DisputeOutcome
from bnpl.notifications.models import Notification
from bnpl.notifications.reminders import sweep_order_events, sweep_pre_charge
from bnpl.overdue import classify_overdue
from bnpl.services import credit_order_complete, usage_record
from consumers.models import Consumer, CreditProfile, PromiseRecord
from merchants.choices import Scenario
from tests.bnpl.charging_helpers import due_order, fund
from tests.consumers.portal_helpers import PASSWORD, logged_in, place_from_catalogue
from tests.factories import ConsumerFactory, ListingFactory, UserFactory

pytestmark = pytest.mark.django_db
S = OrderStatus
D = Decimal


def test_catalogue_to_charged_order_with_a_kept_promise(listing):
    client = Client()
    catalogue = client.get(reverse("shop:index"))
    assert catalogue.status_code == 200
    assert listing.title in catalogue.content.decode()
    assert "¥1.00/hour, each started hour billed in full, capped at ¥10.00 per 24 h" in catalogue.content.decode()

    signup = client.post(
        reverse("accounts:signup"),
        {"phone": "139 0000 1234", "password": PASSWORD, "password_confirm": PASSWORD, "city": "杭州"},
    )
    assert signup.status_code == 302
    consumer = Consumer.objects.get(phone="13900001234")

    order = place_from_catalogue(client, listing)
    assert (order.status, order.consumer_id, order.max_amount) == (S.PENDING_CONFIRMATION, consumer.pk, D("20.00"))
    confirm_url = reverse("pay:confirm", args=[order.confirmation_token])
    page = client.get(confirm_url).content.decode()
    assert listing.merchant.display_name in page
    assert "¥20.00" in page
    assert 'name="consent"' in page and "checked" not in page

    confirmed = client.post(confirm_url, {"consent": "on"})
    assert confirmed["Location"] == reverse("pay:result", args=[order.pk])
    result = client.get(confirmed["Location"]).content.decode()
    assert "You're all set: use first, pay later" in result
    order.refresh_from_db()
    assert (order.status, order.hold_amount, order.confirmation_token) == (S.ACTIVE, D("20.00"), None)
    assert CreditProfile.objects.get(consumer=consumer).open_exposure_amount == D("20.00")

    usage_record(
        actor=None,
        merchant=listing.merchant,
        order=order,
        merchant_event_id="session-1",
        quantity="2",
        occurred_at=timezone.now(),
    )
    order = credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=order)
    assert (order.status, order.amount_due) == (S.COMPLETED, D("2.00"))

    # The reminder: a metered session is charged at once, so the bill notice is the reminder (it states the amount).
    sweep_order_events()
    [reminder] = Notification.objects.filter(order=order, kind="order_completed")
    assert (reminder.consumer_id, reminder.read_at) == (consumer.pk, None)
    home = client.get(reverse("me:home")).content.decode()
    assert "To be charged" in home and "¥2.00" in home
    assert reminder.subject in home  # among the unread reminders

    added = client.post(reverse("me:payment_methods"), {"label": "招商银行储蓄卡(1234)", "balance_amount": "50.00"})
    assert added.status_code == 302
    run = run_charges(threads=1)
    assert run.succeeded == 1

    order.refresh_from_db()
    assert (order.status, order.hold_amount) == (S.PAID, D("0.00"))
    assert SandboxFundingSource.objects.get(consumer=consumer).balance_amount == D("48.00")
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "fulfilled"
    assert CreditProfile.objects.get(consumer=consumer).open_exposure_amount == D("0.00")
    detail = client.get(reverse("me:order", args=[order.pk])).content.decode()
    assert "Fulfilled" in detail
    assert "Paid" in detail
    assert [e.to_status for e in OrderEvent.objects.filter(order=order).order_by("id")] == [
        S.CREATED,
        S.PENDING_CONFIRMATION,
        S.ACTIVE,
        S.COMPLETED,
        S.PAID,
    ]
    home = client.get(reverse("me:home")).content.decode()
    assert "Charged" in home


def test_a_consumer_below_the_score_minimum_sees_cannot_open_for_now_with_reasons_and_hints(listing):
    consumer = ConsumerFactory(profile__score=500)
    client = logged_in(consumer)
    order = place_from_catalogue(client, listing)

    response = client.post(reverse("pay:confirm", args=[order.confirmation_token]), {"consent": "on"})
    page = client.get(response["Location"]).content.decode()

    order.refresh_from_db()
    assert (order.status, order.hold_amount) == (S.DECLINED, D("0.00"))
    assert "Cannot open for now" in page
    assert "Your credit score is below what this service requires" in page
    assert "Paying orders on time and verifying your identity raise your score." in page
    assert "No order was opened and nothing will be charged." in page
    assert CreditProfile.objects.get(consumer=consumer).open_exposure_amount == D("0.00")


def test_the_decline_page_speaks_chinese_by_default(listing, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    consumer = ConsumerFactory(profile__score=500)
    client = logged_in(consumer)
    order = place_from_catalogue(client, listing)
    response = client.post(reverse("pay:confirm", args=[order.confirmation_token]), {"consent": "on"})

    page = client.get(response["Location"]).content.decode()

    assert "暂时无法开通" in page
    assert "你的信用分暂未达到该服务的要求。" in page
    assert "按时付款、完成实名认证都能提升信用分。" in page


def test_pay_now_on_an_overdue_order_lifts_the_pause(listing):
    consumer = ConsumerFactory()
    source = fund(consumer, "1.00")
    now = timezone.now()
    order = due_order(
        listing,
        consumer,
        status=S.COLLECTING,
        due_at=now - timedelta(days=4),
        collecting_since=now - timedelta(days=4),
        next_attempt_at=now + timedelta(days=1),
        charge_failure_count=1,
    )
    classify_overdue()
    order.refresh_from_db()
    assert order.status == S.OVERDUE
    assert CreditProfile.objects.get(consumer=consumer).is_paused
    client = logged_in(consumer)
    home = client.get(reverse("me:home")).content.decode()
    assert "Pay later is paused until your overdue order is paid." in home
    SandboxFundingSource.objects.filter(pk=source.pk).update(balance_amount=D("20.00"))

    response = client.post(reverse("me:order_pay", args=[order.pk]))

    assert response["Location"] == reverse("me:order", args=[order.pk])
    order.refresh_from_db()
    profile = CreditProfile.objects.get(consumer=consumer)
    assert (order.status, profile.is_paused, profile.open_exposure_amount) == (S.PAID, False, D("0.00"))
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "recovered"
    page = client.get(response["Location"]).content.decode()
    assert "Paid. Thank you for keeping your promise." in page
    assert "Recovered" in page


def test_pay_now_clicked_twice_charges_once(listing):
    consumer = ConsumerFactory()
    fund(consumer, "50.00")
    order = due_order(listing, consumer, due_at=timezone.now() + timedelta(days=3))
    client = logged_in(consumer)

    client.post(reverse("me:order_pay", args=[order.pk]))
    second = client.post(reverse("me:order_pay", args=[order.pk]), follow=True)

    assert ChargeAttempt.objects.filter(order=order).count() == 1
    assert SandboxFundingSource.objects.get(consumer=consumer).balance_amount == D("45.00")
    assert CreditOrder.objects.get(pk=order.pk).status == S.PAID
    assert "it cannot be paid now" in second.content.decode()


def test_a_declined_pay_now_says_why_and_changes_nothing(listing):
    consumer = ConsumerFactory()
    fund(consumer, "1.00")
    order = due_order(listing, consumer, due_at=timezone.now() + timedelta(days=3))
    client = logged_in(consumer)

    response = client.post(reverse("me:order_pay", args=[order.pk]), follow=True)

    order.refresh_from_db()
    assert (order.status, order.charge_in_flight) == (S.COMPLETED, False)
    assert "The payment was declined (insufficient_funds)." in response.content.decode()


def test_cancel_an_active_order_with_a_reason(listing):
    consumer = ConsumerFactory()
    client = logged_in(consumer)
    order = place_from_catalogue(client, listing)
    client.post(reverse("pay:confirm", args=[order.confirmation_token]), {"consent": "on"})

    response = client.post(
        reverse("me:order_cancel", args=[order.pk]), {"reason": "ordered_by_mistake", "details": "wrong pile"}
    )

    assert response.status_code == 302
    order.refresh_from_db()
    assert (order.status, order.close_reason, order.hold_amount) == (
        S.CANCELLED,
        "I ordered by mistake: wrong pile",
        D("0.00"),
    )
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == "cancelled"
    assert OrderEvent.objects.get(order=order, to_status=S.CANCELLED).actor_kind == ActorKind.CONSUMER


def test_cancel_is_refused_once_the_order_is_completed_and_nothing_changes(listing):
    consumer = ConsumerFactory()
    order = due_order(listing, consumer, due_at=timezone.now() + timedelta(days=3))
    client = logged_in(consumer)

    response = client.post(reverse("me:order_cancel", args=[order.pk]), {"reason": "changed_mind"}, follow=True)

    assert response.redirect_chain == [(reverse("me:order", args=[order.pk]), 302)]
    assert "it cannot be cancelled" in response.content.decode()
    fresh = CreditOrder.objects.get(pk=order.pk)
    assert (fresh.status, fresh.hold_amount) == (S.COMPLETED, D("5.00"))
    assert not PromiseRecord.objects.filter(order_id=order.pk).exists()


def test_goods_journey_with_a_due_date_extension_and_a_problem_report(merchant):
    """Two live-stream orders: one extended (charged on the new date), one reported (not charged until decided)."""
    goods = ListingFactory(
        merchant=merchant,
        scenario=Scenario.LIVE_SHOPPING,
        max_amount=D("299.00"),
        pricing_rule={"kind": "fixed", "price": "299.00", "name": "羽绒服"},
    )
    consumer = ConsumerFactory()
    client = logged_in(consumer)
    client.post(reverse("me:payment_methods"), {"label": "招商银行储蓄卡(1234)", "balance_amount": "1000.00"})
    orders = []
    for _ in range(2):
        order = place_from_catalogue(client, goods)
        client.post(reverse("pay:confirm", args=[order.confirmation_token]), {"consent": "on"})
        order.refresh_from_db()
        orders.append(credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=order))
    extended, reported = orders
    due = extended.due_at
    assert due == extended.completed_at + timedelta(days=7)
    # The legal pre-charge notice, 5 days before the charge, for both orders.
    sweep_pre_charge(now=due - timedelta(days=5) + timedelta(minutes=1))
    assert Notification.objects.filter(order__in=orders, kind="charge_upcoming").count() == 2

    # Ask for the extension (two clicks), then report a problem with the other order (two clicks).
    assert "Extend the due date" in client.get(reverse("me:order", args=[extended.pk])).content.decode()
    assert client.get(reverse("me:order_extend", args=[extended.pk])).status_code == 200
    client.post(reverse("me:order_extend", args=[extended.pk]))
    assert client.get(reverse("me:order_report", args=[reported.pk])).status_code == 200
    client.post(reverse("me:order_report", args=[reported.pk]), {"reason": "faulty", "description": "拉链坏了"})
    assert CreditOrder.objects.get(pk=extended.pk).due_at == due + timedelta(days=7)
    assert CreditOrder.objects.get(pk=reported.pk).charge_paused is True

    # The extended order is told again about its new date (and the reported one, paused, is not).
    sweep_pre_charge(now=due + timedelta(days=2, minutes=1))
    assert list(
        Notification.objects.filter(kind="charge_upcoming", order__in=orders)
        .order_by("created_at", "id")
        .values_list("order_id", flat=True)
    ) == [extended.pk, reported.pk, extended.pk]
    # The original due date passes: neither order is charged.
    with time_machine.travel(due + timedelta(minutes=5), tick=False):
        assert run_charges(threads=1).claimed == 0
    # Staff decide the report for the merchant; the extended date passes: both are charged, both promises kept.
    dispute_decide(
        actor=UserFactory(is_staff=True),
        dispute=Dispute.objects.get(order=reported),
        outcome=DisputeOutcome.MERCHANT_WON,
        reason="商家提供了出库质检照片",
    )
    with time_machine.travel(due + timedelta(days=7, minutes=5), tick=False):
        assert run_charges(threads=1).succeeded == 2
    assert set(CreditOrder.objects.filter(pk__in=[extended.pk, reported.pk]).values_list("status", flat=True)) == {
        S.PAID
    }
    assert set(
        PromiseRecord.objects.filter(order_id__in=[extended.pk, reported.pk]).values_list("outcome", flat=True)
    ) == {"fulfilled"}
    assert SandboxFundingSource.objects.get(consumer=consumer).balance_amount == D("402.00")
    page = client.get(reverse("me:order", args=[extended.pk])).content.decode()
    assert "Due date extended by 7 days" in page and "Fulfilled" in page
