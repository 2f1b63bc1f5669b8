"""Notifications: the notify service, deliveries (email, SMS, retries, quiet hours), preferences, inbox pages."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bnpl.notifications import backends
from bnpl.notifications.kinds import UnknownNotificationKind
from bnpl.notifications.models import (
    Delivery,
    DeliveryStatus,
    Notification,
    NotificationPreference,
    RecipientSettings,
)
from bnpl.notifications.rendering import NotificationTemplateError, engine
from bnpl.notifications.services import (
    NotifyRequest,
    deliver_due,
    notification_preferences_set,
    notify,
    notify_many,
    quiet_hours_end,
)
from tests.consumers.portal_helpers import logged_in
from tests.factories import ConsumerFactory, MerchantMemberFactory, UserFactory

pytestmark = pytest.mark.django_db

BEIJING = ZoneInfo("Asia/Shanghai")
DATA = {"merchant": "测试商家", "title": "充电", "url": "http://testserver/me/", "amount_due": Decimal("5.50")}


class FailingSms(backends.BaseSmsBackend):
    def send(self, *, to: str, text: str) -> str:
        raise backends.SmsSendError("provider down")


class FailingEmail:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("smtp down")


@pytest.fixture(autouse=True)
def _channels(settings):
    settings.BNPL_SMS_BACKEND = "bnpl.notifications.backends.LocmemSmsBackend"
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    settings.BNPL_NOTIFY_MAX_ATTEMPTS = 3
    backends.outbox.clear()
    yield
    backends.outbox.clear()


def upcoming(consumer, key="k1", *, now=None, **extra):
    data = {**DATA, "due_at": datetime(2026, 3, 5, 10, 0, tzinfo=BEIJING), **extra}
    return notify(key="charge_upcoming", data=data, dedupe_key=key, consumer=consumer, now=now)


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=BEIJING)


# --------------------------------------------------------------------------- notify


def test_notify_writes_the_inbox_entry_and_one_delivery_per_channel():
    consumer = ConsumerFactory()
    with time_machine.travel(at(10), tick=False):
        notification = upcoming(consumer)
    assert notification.user == consumer.user
    assert notification.mandatory is True
    assert notification.read_at is None
    assert set(notification.rendered) == {"zh-hans", "en"}
    assert notification.subject == "¥5.50 will be charged at 2026-03-05 10:00"
    deliveries = {d.channel: d for d in notification.deliveries.all()}
    assert deliveries["email"].address == consumer.user.email
    assert deliveries["sms"].address == consumer.phone
    assert {d.status for d in deliveries.values()} == {DeliveryStatus.PENDING}


def test_deliver_due_sends_email_and_sms_once():
    consumer = ConsumerFactory()
    with time_machine.travel(at(10), tick=False):
        upcoming(consumer)
        first = deliver_due()
        second = deliver_due()
    assert (first.sent, second.sent) == (2, 0)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "¥5.50 will be charged at 2026-03-05 10:00"
    assert mail.outbox[0].to == [consumer.user.email]
    assert [sms.to for sms in backends.outbox] == [consumer.phone]
    assert "¥5.50" in backends.outbox[0].text
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}


def test_the_same_dedupe_key_notifies_once():
    consumer = ConsumerFactory()
    assert upcoming(consumer, "same") is not None
    assert upcoming(consumer, "same") is None
    assert Notification.objects.count() == 1
    assert Delivery.objects.count() == 2


def _rows(notifications):
    """What a notification and its deliveries say, without ids (to compare two ways of writing them)."""
    fields = ("user_id", "consumer_id", "kind", "mandatory", "dedupe_key", "language", "subject", "body", "rendered")
    return [
        (
            tuple(getattr(n, f) for f in fields),
            sorted(n.deliveries.values_list("channel", "address", "status", "next_attempt_at", "last_error")),
        )
        for n in notifications
    ]


def test_notify_many_writes_what_notify_writes_one_by_one_in_a_few_statements():
    consumers = [ConsumerFactory() for _ in range(6)]
    # One switched an optional channel off, one reads Chinese at another address, one has no email.
    NotificationPreference.objects.create(
        user=consumers[1].user, kind="order_completed", channel="email", enabled=False
    )
    RecipientSettings.objects.create(user=consumers[2].user, language="zh-hans", email="zh@example.com")
    consumers[3].user.email = ""
    consumers[3].user.save()
    data = {**DATA, "due_at": datetime(2026, 3, 5, 10, 0, tzinfo=BEIJING)}
    with time_machine.travel(at(23), tick=False):  # quiet hours: the SMS waits until 08:00
        one_by_one = [
            notify(key="order_completed", data=data, dedupe_key=f"a{i}", consumer=c) for i, c in enumerate(consumers)
        ]
        requests = [
            NotifyRequest(key="order_completed", data=data, dedupe_key=f"b{i}", consumer=c)
            for i, c in enumerate(consumers)
        ]
        with CaptureQueriesContext(connection) as queries:
            batch = notify_many(requests)
    # Recipients, preferences, savepoint, notifications, deliveries, release: not six per message.
    assert len(queries.captured_queries) <= 6
    assert [n.pk for n in batch] == sorted(n.pk for n in batch)
    statuses = {status for _n, deliveries in _rows(one_by_one) for *_rest, status, _at, _err in deliveries}
    assert statuses == {DeliveryStatus.PENDING, DeliveryStatus.SKIPPED}
    expected = [((*row[0][:4], f"b{i}", *row[0][5:]), row[1]) for i, row in enumerate(_rows(one_by_one))]
    assert _rows(Notification.objects.filter(pk__in=[n.pk for n in batch]).order_by("id")) == expected


def test_notify_many_leaves_out_keys_already_notified_and_hands_back_a_bad_request():
    consumer = ConsumerFactory()
    data = {**DATA, "due_at": datetime(2026, 3, 5, 10, 0, tzinfo=BEIJING)}
    assert upcoming(consumer, "taken") is not None
    outcomes = notify_many(
        [
            NotifyRequest(key="charge_upcoming", data=data, dedupe_key="new-1", consumer=consumer),
            NotifyRequest(key="charge_upcoming", data=data, dedupe_key="taken", consumer=consumer),
            NotifyRequest(key="charge_upcoming", data=DATA, dedupe_key="no-due-at", consumer=consumer),
            NotifyRequest(key="charge_upcoming", data=data, dedupe_key="new-2", consumer=consumer),
            NotifyRequest(key="charge_upcoming", data=data, dedupe_key="new-2", consumer=consumer),
            NotifyRequest(key="charge_upcoming", data=data, dedupe_key="k" * 121, consumer=consumer),  # too long
        ]
    )
    assert isinstance(outcomes[0], Notification) and outcomes[0].dedupe_key == "new-1"
    assert outcomes[1] is None
    assert isinstance(outcomes[2], NotificationTemplateError)
    assert isinstance(outcomes[3], Notification) and outcomes[4] is None
    assert isinstance(outcomes[5], DatabaseError)
    assert sorted(Notification.objects.values_list("dedupe_key", flat=True)) == ["new-1", "new-2", "taken"]
    assert Delivery.objects.count() == 6


def test_unknown_template_key_raises():
    with pytest.raises(UnknownNotificationKind):
        notify(key="no_such_kind", data={}, dedupe_key="x", consumer=ConsumerFactory())
    assert Notification.objects.count() == 0


def test_missing_data_raises_and_writes_nothing():
    with pytest.raises(NotificationTemplateError, match="due_at"):
        notify(key="charge_upcoming", data=DATA, dedupe_key="x", consumer=ConsumerFactory())
    assert Notification.objects.count() == 0


def test_a_template_using_an_unknown_variable_raises():
    template = engine().from_string("{{ nobody_passed_this }}")
    from django.template import Context

    with pytest.raises(NotificationTemplateError, match="nobody_passed_this"):
        template.render(Context({}))


def test_merchant_kinds_go_to_members_only():
    with pytest.raises(ValueError):
        notify(
            key="merchant_digest",
            data={},
            dedupe_key="x",
            consumer=ConsumerFactory(),
        )
    member = MerchantMemberFactory()
    notification = notify(
        key="merchant_digest",
        data={
            "merchant": "m",
            "day": "2026-03-02",
            "failed_charges": [],
            "failed_total": 0,
            "disputes": [],
            "url": "u",
        },
        dedupe_key="digest",
        member=member,
    )
    deliveries = {d.channel: d.status for d in notification.deliveries.all()}
    # A member has a login email but no mobile number on file.
    assert deliveries == {"email": DeliveryStatus.PENDING, "sms": DeliveryStatus.SKIPPED}


# --------------------------------------------------------------------------- failures and retries


def test_a_failing_backend_marks_the_delivery_retrying_then_failed_without_raising(settings):
    settings.BNPL_SMS_BACKEND = f"{__name__}.FailingSms"
    settings.MAILERS = {"default": {"BACKEND": f"{__name__}.FailingEmail"}}
    consumer = ConsumerFactory()
    start = at(10)
    with time_machine.travel(start, tick=False):
        upcoming(consumer)
        report = deliver_due()
    assert (report.sent, report.retrying, report.failed) == (0, 2, 0)
    sms = Delivery.objects.get(channel="sms")
    assert sms.status == DeliveryStatus.RETRYING
    assert sms.attempts == 1
    assert sms.last_error == "SmsSendError: provider down"
    assert sms.next_attempt_at == start + timedelta(minutes=1)
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        assert deliver_due().retrying == 0  # not due yet
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        assert deliver_due().retrying == 2
    sms.refresh_from_db()
    assert (sms.attempts, sms.next_attempt_at) == (2, start + timedelta(minutes=1) + timedelta(minutes=5))
    with time_machine.travel(start + timedelta(minutes=6), tick=False):
        report = deliver_due()
    assert report.failed == 2
    sms.refresh_from_db()
    assert (sms.status, sms.attempts, sms.next_attempt_at) == (DeliveryStatus.FAILED, 3, None)
    # Failed deliveries are not picked up again.
    with time_machine.travel(start + timedelta(days=1), tick=False):
        assert deliver_due().as_dict() == {"sent": 0, "retrying": 0, "failed": 0, "deferred": 0}


def test_one_failing_channel_does_not_stop_the_other(settings):
    settings.BNPL_SMS_BACKEND = f"{__name__}.FailingSms"
    consumer = ConsumerFactory()
    with time_machine.travel(at(10), tick=False):
        upcoming(consumer)
        report = deliver_due()
    assert (report.sent, report.retrying) == (1, 1)
    assert len(mail.outbox) == 1


# --------------------------------------------------------------------------- quiet hours


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(21, 59), None),
        (at(22, 0), at(8, 0, day=3)),
        (at(23, 30), at(8, 0, day=3)),
        (at(3, 0), at(8, 0, day=2)),
        (at(8, 0), None),
    ],
)
def test_quiet_hours_end(moment, expected):
    assert quiet_hours_end(moment) == expected


def test_sms_reminder_written_at_night_waits_until_eight():
    consumer = ConsumerFactory()
    with time_machine.travel(at(23, 0), tick=False):
        upcoming(consumer)
        report = deliver_due()
    assert report.sent == 1  # the email
    assert backends.outbox == []
    sms = Delivery.objects.get(channel="sms")
    assert (sms.status, sms.next_attempt_at) == (DeliveryStatus.PENDING, at(8, 0, day=3))
    with time_machine.travel(at(7, 59, day=3), tick=False):
        deliver_due()
    assert backends.outbox == []
    with time_machine.travel(at(8, 0, day=3), tick=False):
        deliver_due()
    assert len(backends.outbox) == 1


def test_a_retry_falling_in_quiet_hours_is_deferred(settings):
    consumer = ConsumerFactory()
    with time_machine.travel(at(21, 59), tick=False):
        upcoming(consumer)
        settings.BNPL_SMS_BACKEND = f"{__name__}.FailingSms"
        deliver_due()
    settings.BNPL_SMS_BACKEND = "bnpl.notifications.backends.LocmemSmsBackend"
    with time_machine.travel(at(22, 5), tick=False):
        report = deliver_due()
    assert (report.deferred, report.sent) == (1, 0)
    assert Delivery.objects.get(channel="sms").next_attempt_at == at(8, 0, day=3)


def test_a_charge_result_is_exempt_from_quiet_hours():
    consumer = ConsumerFactory()
    with time_machine.travel(at(23, 0), tick=False):
        notify(
            key="charge_succeeded",
            data={**DATA, "amount": Decimal("5.50"), "paid_at": at(23, 0)},
            dedupe_key="paid",
            consumer=consumer,
        )
        deliver_due()
    assert len(backends.outbox) == 1


# --------------------------------------------------------------------------- preferences


def test_a_switched_off_channel_is_skipped_but_the_inbox_still_gets_it():
    consumer = ConsumerFactory()
    notification_preferences_set(
        actor=consumer.user, user=consumer.user, audience="consumer", enabled={("order_confirmed", "sms"): False}
    )
    notification = notify(
        key="order_confirmed",
        data={**DATA, "max_amount": Decimal("20.00"), "due_delay_days": 0},
        dedupe_key="c",
        consumer=consumer,
    )
    statuses = {d.channel: (d.status, d.last_error) for d in notification.deliveries.all()}
    assert statuses == {
        "email": (DeliveryStatus.PENDING, ""),
        "sms": (DeliveryStatus.SKIPPED, "switched off by the recipient"),
    }


def test_mandatory_notices_cannot_be_switched_off():
    consumer = ConsumerFactory()
    notification_preferences_set(
        actor=consumer.user, user=consumer.user, audience="consumer", enabled={("charge_upcoming", "sms"): False}
    )
    assert not NotificationPreference.objects.exists()
    # Even a row written behind the service's back does not silence a mandatory notice.
    NotificationPreference.objects.create(user=consumer.user, kind="charge_upcoming", channel="sms", enabled=False)
    notification = upcoming(consumer)
    assert notification.deliveries.get(channel="sms").status == DeliveryStatus.PENDING


def test_messages_are_written_in_the_recipients_language():
    consumer = ConsumerFactory()
    notification_preferences_set(
        actor=consumer.user, user=consumer.user, audience="consumer", enabled={}, language="en", email="me@example.org"
    )
    notification = upcoming(consumer)
    assert notification.language == "en"
    assert notification.subject == notification.rendered["en"]["subject"]
    assert notification.deliveries.get(channel="email").address == "me@example.org"


# --------------------------------------------------------------------------- pages


def test_inbox_shows_only_my_notifications_and_the_unread_count():
    mine, theirs = ConsumerFactory(), ConsumerFactory()
    upcoming(mine, "a")
    upcoming(mine, "b", amount_due=Decimal("7.00"))
    other = upcoming(theirs, "c", amount_due=Decimal("99.00"))
    page = logged_in(mine).get(reverse("me:inbox"))
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count('id="notification-') == 2
    assert "¥7.00" in text and "¥99.00" not in text
    assert f"notification-{other.pk}" not in text
    assert 'id="unread-count"><span class="visually-hidden">Unread: </span>2</span>' in text


def test_marking_read_is_scoped_to_the_reader():
    mine, theirs = ConsumerFactory(), ConsumerFactory()
    own = upcoming(mine, "a")
    other = upcoming(theirs, "b")
    client = logged_in(mine)
    assert client.post(reverse("me:inbox_read", args=[other.pk])).status_code == 302
    other.refresh_from_db()
    assert other.read_at is None
    client.post(reverse("me:inbox_read", args=[own.pk]))
    own.refresh_from_db()
    assert own.read_at is not None
    assert 'id="unread-count"' not in client.get(reverse("me:inbox")).content.decode()


def test_mark_all_read():
    consumer = ConsumerFactory()
    upcoming(consumer, "a")
    upcoming(consumer, "b")
    logged_in(consumer).post(reverse("me:inbox_read_all"))
    assert not Notification.objects.filter(read_at__isnull=True).exists()


def test_home_shows_the_unread_reminders_block():
    consumer = ConsumerFactory()
    client = logged_in(consumer)
    assert 'id="unread-reminders"' not in client.get(reverse("me:home")).content.decode()
    upcoming(consumer)
    text = client.get(reverse("me:home")).content.decode()
    assert 'id="unread-reminders"' in text
    assert "¥5.50 will be charged at 2026-03-05 10:00" in text


def test_inbox_costs_the_same_queries_for_2_or_20_notifications():
    few, many = ConsumerFactory(), ConsumerFactory()
    for i in range(2):
        upcoming(few, f"f{i}")
    for i in range(20):
        upcoming(many, f"m{i}")
    counts = []
    for consumer in (few, many):
        client = logged_in(consumer)
        client.get(reverse("me:inbox"))
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("me:inbox")).status_code == 200
        counts.append(len(ctx))
    assert counts[0] == counts[1]


def test_preferences_page_locks_mandatory_notices_and_saves_choices():
    consumer = ConsumerFactory()
    client = logged_in(consumer)
    page = client.get(reverse("me:notification_preferences")).content.decode()
    assert (
        'name="charge_upcoming__sms" id="id_charge_upcoming__sms" aria-label="Charge coming up · SMS" checked disabled'
        in page
    )
    assert (
        'name="order_confirmed__sms" id="id_order_confirmed__sms" aria-label="Order confirmed · SMS" checked>' in page
    )
    # Leave order_confirmed SMS (and the mandatory ones, which the browser cannot post) unticked.
    post = {"language": "en", "email": ""}
    for key in ("order_confirmed", "order_completed", "account_restored", "rewards_level_up"):
        post[f"{key}__email"] = "on"
    post["order_completed__sms"] = "on"
    post["account_restored__sms"] = "on"
    post["rewards_level_up__sms"] = "on"
    response = client.post(reverse("me:notification_preferences"), post)
    assert response.status_code == 302
    off = set(NotificationPreference.objects.filter(user=consumer.user, enabled=False).values_list("kind", "channel"))
    assert off == {("order_confirmed", "sms")}
    page = client.get(reverse("me:notification_preferences")).content.decode()
    assert 'aria-label="Order confirmed · SMS">' in page
    assert 'aria-label="Charge coming up · SMS" checked disabled' in page


def test_preferences_page_refuses_a_bad_email():
    consumer = ConsumerFactory()
    response = logged_in(consumer).post(reverse("me:notification_preferences"), {"language": "en", "email": "nope"})
    assert response.status_code == 400
    assert 'value="nope"' in response.content.decode()


def test_admin_lists_deliveries_and_shows_the_report():
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    consumer = ConsumerFactory()
    upcoming(consumer)
    from django.test import Client

    client = Client()
    client.force_login(staff)
    assert client.get(reverse("admin:notifications_delivery_changelist")).status_code == 200
    changelist = client.get(reverse("admin:notifications_notification_changelist"))
    assert reverse("admin:notifications_notification_report") in changelist.content.decode()
    report = client.get(reverse("admin:notifications_notification_report"))
    assert report.status_code == 200
    assert "Control (held out)" in report.content.decode()
    assert client.get(reverse("admin:notifications_delivery_add")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_notifies_with_one_key_write_one_notification():
    import threading

    from django.db import connections

    consumer = ConsumerFactory()
    barrier = threading.Barrier(2)
    results: list[object] = []

    def worker():
        try:
            barrier.wait()
            results.append(upcoming(consumer, "race"))
        except Exception as exc:  # surfaced by the assertion below
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "Notification"]
    assert Notification.objects.filter(dedupe_key="race").count() == 1
    assert Delivery.objects.count() == 2


def test_a_chinese_reader_gets_the_chinese_text_and_the_inbox_follows_the_page_language():
    consumer = ConsumerFactory()
    notification_preferences_set(
        actor=consumer.user, user=consumer.user, audience="consumer", enabled={}, language="zh-hans"
    )
    with time_machine.travel(at(10), tick=False):
        notification = upcoming(consumer)
        deliver_due()
    assert notification.language == "zh-hans"
    assert notification.subject == "将于 2026-03-05 10:00 扣款 ¥5.50"
    assert mail.outbox[0].subject == "将于 2026-03-05 10:00 扣款 ¥5.50"
    # The page is in English (the suite's language): the inbox shows the English rendering.
    assert "¥5.50 will be charged at 2026-03-05 10:00" in logged_in(consumer).get(reverse("me:inbox")).content.decode()


# --------------------------------------------------------------------------- batches and leases


def test_deliveries_are_claimed_in_batches_that_fit_their_lease(monkeypatch):
    from bnpl.notifications import services

    assert services.claim_batch_size() * services.send_timeout() < services.SEND_LEASE
    consumers = [ConsumerFactory() for _ in range(4)]
    in_flight: list[int] = []
    real_send = services._send

    def watching_send(delivery):
        in_flight.append(Delivery.objects.filter(status=DeliveryStatus.SENDING).count())
        return real_send(delivery)

    monkeypatch.setattr(services, "_send", watching_send)
    with time_machine.travel(at(10), tick=False):
        for i, consumer in enumerate(consumers):
            upcoming(consumer, key=f"batch-{i}")
        report = deliver_due(batch_size=3)

    assert report.sent == 8  # everything due is sent in one run...
    assert max(in_flight) <= 3  # ...but never more than one batch holds a lease at once
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}


def test_claiming_sets_updated_at_and_a_row_whose_lease_would_run_out_is_given_back(monkeypatch):
    from bnpl.notifications import services

    consumer = ConsumerFactory()
    with time_machine.travel(at(10), tick=False):
        upcoming(consumer)
    Delivery.objects.update(updated_at=at(9))
    seen: list[datetime] = []

    def slow_send(delivery):
        seen.append(Delivery.objects.get(pk=delivery.pk).updated_at)
        return ""

    monkeypatch.setattr(services, "_send", slow_send)
    monkeypatch.setattr(services, "send_timeout", lambda: services.SEND_LEASE)  # each send could outlast the lease
    with time_machine.travel(at(10, 5), tick=False):
        report = deliver_due(batch_size=2)

    assert report.sent == 0 and seen == []  # nothing sent on a lease that could expire mid-send
    rows = list(Delivery.objects.all())
    assert {(d.status, d.attempts) for d in rows} == {(DeliveryStatus.RETRYING, 0)}
    assert all(d.updated_at >= at(10, 5) for d in rows)

    monkeypatch.setattr(services, "send_timeout", lambda: timedelta(seconds=10))
    with time_machine.travel(at(10, 6), tick=False):
        assert deliver_due().sent == 2
    assert all(updated == at(10, 6) for updated in seen)  # the claim wrote updated_at
