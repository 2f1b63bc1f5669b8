"""Reminders: each fires once, at the right time (controlled clock), and a job run twice sends nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bnpl.charging import run_charges
from bnpl.choices import ActorKind, OrderStatus
from bnpl.models import Dispute, OrderEvent
from bnpl.notifications import backends
from bnpl.notifications import tasks as notification_tasks
from bnpl.notifications.models import Delivery, DeliveryStatus, Notification, ReminderHoldout
from bnpl.notifications.reminders import (
    in_control_group,
    send_merchant_digests,
    sweep_account_events,
    sweep_agreements,
    sweep_order_events,
    sweep_overdue,
    sweep_pre_charge,
)
from bnpl.notifications.report import reminder_report
from bnpl.schedules import JOBS
from bnpl.services import agreement_sign
from consumers.services import credit_profile_pause, credit_profile_unpause
from merchants.choices import ConfirmMode, Scenario
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, ListingFactory, MerchantMemberFactory

pytestmark = pytest.mark.django_db

BEIJING = ZoneInfo("Asia/Shanghai")
S = OrderStatus
# Monday 2026-03-02 10:00 Beijing time: outside SMS quiet hours.
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=BEIJING)


@pytest.fixture(autouse=True)
def _channels(settings):
    settings.BNPL_SMS_BACKEND = "bnpl.notifications.backends.LocmemSmsBackend"
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    settings.BNPL_REMINDER_CONTROL_SHARE = 0.0
    backends.outbox.clear()
    yield
    backends.outbox.clear()


@pytest.fixture
def goods():
    return ListingFactory(scenario=Scenario.LIVE_SHOPPING)


def kinds(consumer=None) -> list[str]:
    rows = Notification.objects.all() if consumer is None else Notification.objects.filter(consumer=consumer)
    return sorted(rows.values_list("kind", flat=True))


def event(order, to_status, from_status=""):
    return OrderEvent.objects.create(
        order=order, actor_kind=ActorKind.SYSTEM, from_status=from_status, to_status=to_status, reason="test"
    )


# --------------------------------------------------------------------------- order events


def test_order_confirmed_fires_once_with_what_happens_next_and_how_to_cancel(listing, consumer):
    with time_machine.travel(T0, tick=False):
        order = order_in(S.ACTIVE, listing=listing, consumer=consumer)
        event(order, S.ACTIVE, S.PENDING_CONFIRMATION)
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        assert sweep_order_events() == {"order_confirmed": 1}
        assert sweep_order_events() == {}
    notification = Notification.objects.get()
    assert (notification.kind, notification.order, notification.consumer) == ("order_confirmed", order, consumer)
    assert notification.dedupe_key == f"order_confirmed:order:{order.pk}"
    assert "How to cancel" in notification.body
    assert "never be charged more than ¥20.00" in notification.body


def test_a_sweep_costs_the_same_statements_for_one_row_or_many(listing):
    """Rows due are notified in one batch: the statements do not grow with them (the simulator's hot job)."""

    def statements_for(orders: int) -> int:
        with time_machine.travel(T0, tick=False):
            for _ in range(orders):
                event(order_in(S.ACTIVE, listing=listing, consumer=ConsumerFactory()), S.ACTIVE, S.PENDING_CONFIRMATION)
        with time_machine.travel(T0 + timedelta(minutes=5), tick=False), CaptureQueriesContext(connection) as queries:
            assert sweep_order_events()["order_confirmed"] == orders
        return len(queries.captured_queries)

    assert statements_for(1) == statements_for(6)


def test_events_older_than_the_lookback_are_not_notified(listing, consumer, settings):
    with time_machine.travel(T0, tick=False):
        order = order_in(S.ACTIVE, listing=listing, consumer=consumer)
        event(order, S.ACTIVE, S.PENDING_CONFIRMATION)
    with time_machine.travel(T0 + settings.BNPL_NOTIFY_EVENT_LOOKBACK + timedelta(minutes=1), tick=False):
        assert sweep_order_events() == {}
    assert not Notification.objects.exists()


def test_completed_order_tells_the_bill_and_when_it_is_charged(goods, consumer):
    with time_machine.travel(T0, tick=False):
        order = order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=T0 + timedelta(days=7))
        event(order, S.COMPLETED, S.ACTIVE)
        sweep_order_events()
    notification = Notification.objects.get()
    assert notification.kind == "order_completed"
    assert "The bill is ¥5.00" in notification.body
    assert "2026-03-09 10:00" in notification.body


def test_charge_success_and_failure_from_a_real_charge_run(listing):
    payer, broke = ConsumerFactory(), ConsumerFactory()
    fund(payer, "100.00")
    with time_machine.travel(T0, tick=False):
        paid = due_order(listing, payer, due_at=T0 - timedelta(minutes=1))
        failed = due_order(listing, broke, due_at=T0 - timedelta(minutes=1))
        run_charges(threads=1)
        paid.refresh_from_db()
        failed.refresh_from_db()
        assert (paid.status, failed.status) == (S.PAID, S.COLLECTING)
        assert sweep_order_events() == {"charge_succeeded": 1, "charge_failed": 1}
        assert sweep_order_events() == {}
    assert kinds(payer) == ["charge_succeeded"]
    notice = Notification.objects.get(consumer=broke)
    assert notice.kind == "charge_failed"
    # What to do, and by when: the due time plus the grace period (72 h).
    assert "top up your payment method" in notice.body
    assert "Please pay by 2026-03-05 09:59" in notice.body


def test_a_failed_charge_notice_gives_an_expert_their_longer_grace(listing):
    from consumers import rewards

    expert = ConsumerFactory()
    for i in range(10):
        rewards.rewards_on_promise_kept(actor=None, consumer_id=expert.pk, order_id=960_000 + i)
    with time_machine.travel(T0, tick=False):
        due_order(listing, expert, due_at=T0 - timedelta(minutes=1))
        run_charges(threads=1)
        sweep_order_events()
    notice = Notification.objects.get(consumer=expert, kind="charge_failed")
    # 72 h of the platform's grace plus the expert level's extra day.
    assert "Please pay by 2026-03-06 09:59" in notice.body


# --------------------------------------------------------------------------- before the charge


def test_pre_charge_notice_and_reminder_fire_once_each_at_their_lead(goods, consumer):
    due = T0 + timedelta(days=7)
    with time_machine.travel(T0, tick=False):
        order = order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=due)
        assert sweep_pre_charge() == {}
    with time_machine.travel(due - timedelta(days=5, minutes=1), tick=False):
        assert sweep_pre_charge() == {}
    with time_machine.travel(due - timedelta(days=5), tick=False):
        assert sweep_pre_charge() == {"charge_upcoming": 1}
        assert sweep_pre_charge() == {}
    with time_machine.travel(due - timedelta(days=1, minutes=1), tick=False):
        assert sweep_pre_charge() == {}
    with time_machine.travel(due - timedelta(days=1), tick=False):
        assert sweep_pre_charge() == {"charge_upcoming": 1}
    with time_machine.travel(due - timedelta(hours=1), tick=False):
        assert sweep_pre_charge() == {}
    keys = sorted(Notification.objects.values_list("dedupe_key", flat=True))
    epoch = int(due.timestamp())
    assert keys == [f"charge_upcoming:order:{order.pk}:120h:{epoch}", f"charge_upcoming:order:{order.pk}:24h:{epoch}"]


def test_the_legal_notice_is_at_least_five_days_for_goods():
    from bnpl.policies import LEGAL_CHARGE_NOTICE, policy_for

    assert timedelta(days=5) == LEGAL_CHARGE_NOTICE
    assert policy_for(Scenario.LIVE_SHOPPING).reminder_leads()[0] == timedelta(days=5)
    assert policy_for(Scenario.EBIKE_CHARGING).reminder_leads() == ()


def test_a_moved_due_date_is_announced_again(goods, consumer):
    due = T0 + timedelta(days=7)
    with time_machine.travel(T0, tick=False):
        order = order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=due)
    with time_machine.travel(due - timedelta(days=5), tick=False):
        sweep_pre_charge()
        order.due_at = due + timedelta(days=7)
        order.save(update_fields=["due_at"])
    with time_machine.travel(due + timedelta(days=2), tick=False):
        assert sweep_pre_charge() == {"charge_upcoming": 1}
    assert Notification.objects.count() == 2


def test_metered_orders_get_no_pre_charge_reminder(listing, consumer):
    with time_machine.travel(T0, tick=False):
        order_in(S.COMPLETED, listing=listing, consumer=consumer, due_at=T0 + timedelta(minutes=30))
        assert sweep_pre_charge() == {}


def test_paused_charge_gets_no_pre_charge_reminder(goods, consumer):
    due = T0 + timedelta(days=7)
    with time_machine.travel(T0, tick=False):
        order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=due, charge_paused=True)
    with time_machine.travel(due - timedelta(days=4), tick=False):
        assert sweep_pre_charge() == {}


def test_control_group_keeps_the_notice_but_not_the_extra_reminder(goods, consumer, settings):
    settings.BNPL_REMINDER_CONTROL_SHARE = 1.0
    due = T0 + timedelta(days=7)
    with time_machine.travel(T0, tick=False):
        order = order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=due)
    with time_machine.travel(due - timedelta(days=5), tick=False):
        assert sweep_pre_charge() == {"charge_upcoming": 1}
    with time_machine.travel(due - timedelta(days=1), tick=False):
        assert sweep_pre_charge() == {"held_out": 1}
        assert sweep_pre_charge() == {}
    assert Notification.objects.count() == 1
    assert ReminderHoldout.objects.get().order == order


def test_control_group_assignment_is_deterministic_and_follows_the_share():
    assert not any(in_control_group(i, share=0.0) for i in range(1000))
    assert all(in_control_group(i, share=1.0) for i in range(1000))
    held = sum(in_control_group(i, share=0.2) for i in range(10000))
    assert 1800 < held < 2200
    assert [in_control_group(i, share=0.5) for i in range(50)] == [in_control_group(i, share=0.5) for i in range(50)]


def test_pre_charge_sms_at_night_waits_for_eight(goods, consumer):
    night = datetime(2026, 3, 2, 23, 30, tzinfo=BEIJING)
    with time_machine.travel(night, tick=False):
        order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=night + timedelta(days=5))
        notification_tasks.send_reminders()
        notification_tasks.deliver_notifications()
    assert len(mail.outbox) == 1
    assert backends.outbox == []
    with time_machine.travel(datetime(2026, 3, 3, 8, 0, tzinfo=BEIJING), tick=False):
        assert notification_tasks.deliver_notifications()["sent"] == 1
    assert [sms.to for sms in backends.outbox] == [consumer.phone]


def test_switched_off_optional_channel_is_not_used_but_mandatory_are(goods, consumer):
    from bnpl.notifications.services import notification_preferences_set

    notification_preferences_set(
        actor=consumer.user,
        user=consumer.user,
        audience="consumer",
        enabled={("order_completed", "email"): False, ("order_completed", "sms"): False},
    )
    due = T0 + timedelta(days=7)
    with time_machine.travel(T0, tick=False):
        order = order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=due)
        event(order, S.COMPLETED, S.ACTIVE)
        notification_tasks.send_reminders()
        notification_tasks.deliver_notifications()
    assert mail.outbox == [] and backends.outbox == []
    assert kinds() == ["order_completed"]  # still in the inbox
    with time_machine.travel(due - timedelta(days=5), tick=False):
        notification_tasks.send_reminders()
        notification_tasks.deliver_notifications()
    assert len(mail.outbox) == 1 and len(backends.outbox) == 1


# --------------------------------------------------------------------------- overdue


def test_overdue_steps_fire_on_days_1_3_7_15_30_once_each(listing, consumer):
    due = T0
    with time_machine.travel(T0, tick=False):
        order = order_in(S.COLLECTING, listing=listing, consumer=consumer, due_at=due)
    fired = []
    moment = due
    while moment <= due + timedelta(days=32):
        with time_machine.travel(moment, tick=False):
            for key, count in sweep_overdue().items():
                fired.extend([(key, (moment - due).days)] * count)
        moment += timedelta(hours=6)
        if (moment - due).days == 4:
            order.status = S.OVERDUE
            order.save(update_fields=["status"])
    assert fired == [
        ("payment_overdue_d1", 1),
        ("payment_overdue_d3", 3),
        ("payment_overdue_d7", 7),
        ("payment_overdue_d15", 15),
        ("payment_overdue_d30", 30),
    ]
    assert "is 7 days past due" in Notification.objects.get(dedupe_key=f"payment_overdue:order:{order.pk}:d7").subject


def test_a_paid_order_gets_no_overdue_step(listing, consumer):
    with time_machine.travel(T0, tick=False):
        order_in(S.PAID, listing=listing, consumer=consumer, due_at=T0)
    with time_machine.travel(T0 + timedelta(days=3), tick=False):
        assert sweep_overdue() == {}


# --------------------------------------------------------------------------- account and agreements


def test_account_paused_and_restored(consumer):
    with time_machine.travel(T0, tick=False):
        credit_profile_pause(actor=None, consumer=consumer, reason="overdue order #1 (O-1)")
        assert sweep_account_events() == {"account_paused": 1}
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        credit_profile_unpause(actor=None, consumer=consumer, reason="paid")
        assert sweep_account_events() == {"account_restored": 1}
        assert sweep_account_events() == {}
    paused = Notification.objects.get(kind="account_paused")
    assert "Reason: overdue order #1 (O-1)" in paused.body


def test_a_new_agreement_is_explained_before_its_first_use(merchant, consumer):
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
    with time_machine.travel(T0, tick=False):
        agreement_sign(actor=None, consumer=consumer, listing=listing)
        assert sweep_agreements() == {"agreement_first_use": 1}
        assert sweep_agreements() == {}
    notification = Notification.objects.get()
    assert "revoke the authorisation at any time" in notification.body


# --------------------------------------------------------------------------- merchants


def test_merchant_digest_lists_failed_charges_and_disputes_near_deadline(listing, consumer):
    owner = MerchantMemberFactory(merchant=listing.merchant)
    operator = MerchantMemberFactory(merchant=listing.merchant)
    quiet_merchant_member = MerchantMemberFactory()
    with time_machine.travel(T0, tick=False):
        failed = order_in(
            S.COLLECTING,
            listing=listing,
            consumer=consumer,
            due_at=T0 - timedelta(hours=5),
            collecting_since=T0 - timedelta(hours=4),
        )
        disputed = order_in(S.COMPLETED, listing=listing, consumer=ConsumerFactory(), due_at=T0 + timedelta(days=1))
        Dispute.objects.create(
            order=disputed,
            consumer=disputed.consumer,
            merchant=listing.merchant,
            reason="faulty",
            disputed_amount=Decimal("5.00"),
            respond_by=T0 + timedelta(hours=20),
        )
        assert send_merchant_digests() == {"merchant_digest": 2}
        assert send_merchant_digests() == {}
    digests = Notification.objects.filter(kind="merchant_digest")
    assert {n.member for n in digests} == {owner, operator}
    assert quiet_merchant_member.notifications.count() == 0
    body = digests[0].body
    assert "1 charge failed in the last 24 hours." in body
    assert failed.out_order_no in body
    assert f"{disputed.out_order_no} (¥5.00): respond by 2026-03-03 06:00" in body


# --------------------------------------------------------------------------- jobs


def test_jobs_are_declared():
    funcs = {job.name: job.func for job in JOBS}
    assert funcs["send-reminders"] == "bnpl.notifications.tasks.send_reminders"
    assert funcs["deliver-notifications"] == "bnpl.notifications.tasks.deliver_notifications"
    assert funcs["merchant-digests"] == "bnpl.notifications.tasks.merchant_digests"


def test_a_job_run_twice_sends_nothing_twice(goods, listing, consumer):
    with time_machine.travel(T0, tick=False):
        active = order_in(S.ACTIVE, listing=listing, consumer=consumer)
        event(active, S.ACTIVE, S.PENDING_CONFIRMATION)
        order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=T0 + timedelta(days=4))
        order_in(S.COLLECTING, listing=listing, consumer=consumer, due_at=T0 - timedelta(days=1, hours=1))
        first = notification_tasks.send_reminders()
        notification_tasks.deliver_notifications()
        second = notification_tasks.send_reminders()
        notification_tasks.deliver_notifications()
    assert first == {"order_confirmed": 1, "charge_upcoming": 1, "payment_overdue_d1": 1}
    assert second == {}
    assert len(mail.outbox) == 3
    assert len(backends.outbox) == 3


def test_a_failing_backend_does_not_block_the_job(goods, consumer, settings):
    settings.BNPL_SMS_BACKEND = "tests.bnpl.test_notifications.FailingSms"
    settings.MAILERS = {"default": {"BACKEND": "tests.bnpl.test_notifications.FailingEmail"}}
    with time_machine.travel(T0, tick=False):
        order = order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=T0 + timedelta(days=4))
        assert notification_tasks.send_reminders() == {"charge_upcoming": 1}
        assert notification_tasks.deliver_notifications() == {"sent": 0, "retrying": 2, "failed": 0, "deferred": 0}
    order.refresh_from_db()
    assert order.status == S.COMPLETED
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.RETRYING}


# --------------------------------------------------------------------------- does it work?


def test_reminder_report_compares_reminded_and_control(goods, settings):
    from consumers.models import LevelChange, RewardAccount

    consumer = ConsumerFactory()
    expert = ConsumerFactory()
    account = RewardAccount.objects.create(consumer=expert, level="star")
    # Expert before the order; promoted to star only after it: the report counts the order as an expert's.
    LevelChange.objects.create(account=account, before="newcomer", after="expert", created_at=T0 - timedelta(days=30))
    LevelChange.objects.create(account=account, before="expert", after="star", created_at=T0 + timedelta(days=8))
    due = T0 + timedelta(days=7)
    with time_machine.travel(T0, tick=False):
        orders = [order_in(S.COMPLETED, listing=goods, consumer=consumer, due_at=due) for _ in range(5)]
    with time_machine.travel(due - timedelta(days=5), tick=False):
        sweep_pre_charge()
    # Orders 0-2 are held out, 3-4 receive the extra reminder.
    for order in orders[:3]:
        ReminderHoldout.objects.create(order=order)
    with time_machine.travel(due - timedelta(days=1), tick=False):
        assert sweep_pre_charge() == {"charge_upcoming": 2}
    outcomes = [False, False, True, True, True]  # control: 1 of 3 on time; reminded: 2 of 2
    for order, on_time in zip(orders, outcomes, strict=True):
        order.status = S.PAID
        order.paid_at = due
        order.collecting_since = None if on_time else due + timedelta(hours=1)
        order.save()
    with time_machine.travel(due + timedelta(days=1), tick=False):
        report = reminder_report(since=T0, until=due + timedelta(days=1))
        order_in(S.PAID, listing=goods, consumer=expert, due_at=due, completed_at=T0, paid_at=due)
        out = StringIO()
        call_command("reminder_report", "--days", "30", stdout=out)
    assert (report.reminded.orders, report.reminded.on_time) == (2, 2)
    assert (report.control.orders, report.control.on_time) == (3, 1)
    assert report.difference == pytest.approx(1 - 1 / 3)
    text = out.getvalue()
    assert "reminded                       2        2   100.0 %" in text
    assert "control (held out)             3        1    33.3 %" in text
    assert "difference (reminded − control): +66.7 points, 95 % CI +13.3 … +100.0 points" in text
    assert "Promise Newcomer               5        3    60.0 %" in text
    assert "Promise Expert                 1        1   100.0 %" in text
    assert "Promise Star" not in text
