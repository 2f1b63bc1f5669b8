"""Fault: a periodic job runs twice — one after the other, or on two workers at once.

django-q2 may deliver a task twice (a worker dies after the job but before the acknowledgement, ``retry``
expires), two clusters may both be up during a deploy, and a long run may still be going when the next tick
starts the job again. Every job in ``bnpl.schedules.JOBS`` must then have the effect of one run.

For each declared job (the test is parametrised over ``JOBS``, so a new job is covered, or fails for want of a
due-work arranger, automatically) the test builds due work of the kind that job sweeps, then:

- runs the job function twice in a row; the world after the second run equals the world after the first;
- from a fresh copy of the same state, runs it twice at once, on two threads each with its own PostgreSQL
  connection, released together by a barrier.

Both must leave exactly the change the arranger declares for one run: the row count of every model of the
project (ledger transactions and entries, provider charges, refunds and payouts, batches, notifications,
webhook attempts, points …), the status histograms of the rows jobs move, and what reached the outside world
(emails, SMS, webhook requests). ``ledger_check()`` must stay clean. Only the payment provider is the
in-process sandbox; the webhook receiver is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import pghistory.models
import pytest
import time_machine
from django.apps import apps
from django.core import mail
from django.db.models import Count
from django.utils import timezone
from django.utils.module_loading import import_string

from bnpl.charging import run_charges
from bnpl.choices import ActorKind, OrderStatus
from bnpl.gateway.faults import SandboxFaults
from bnpl.gateway.sandbox import InProcessSandboxGateway
from bnpl.gateway.services import sandbox_faults_set
from bnpl.incentives import campaign_create
from bnpl.ledger import ledger_check
from bnpl.models import ChargeAttempt, Coupon, CreditOrder, OrderEvent, Payout, Refund
from bnpl.models.incentives import BenefitKind
from bnpl.notifications import backends
from bnpl.notifications.services import notify
from bnpl.refunds import credit_order_refund
from bnpl.schedules import JOBS, JobSpec
from bnpl.services import agreement_sign, credit_order_mark_paid_elsewhere
from bnpl.settlement import payouts_send_due, settle_merchants
from consumers import rewards
from consumers.models import PointsEntry
from consumers.services import credit_profile_pause
from merchants.choices import ConfirmMode, Scenario
from merchants.models import IdempotencyRecord
from merchants.services import webhook_endpoint_create, webhook_event_enqueue
from scoring.services import scorecard_install_default
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import order_in, run_concurrently
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, MerchantMemberFactory

S = OrderStatus
D = Decimal
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


# Per-run bookkeeping, not effects: each run of the charge jobs writes its own ChargeRun row by design.
NOT_EFFECTS = {"bnpl.ChargeRun", "bnpl.MerchantDayDelta"}
# (MerchantDayDelta: the dashboard roll-up's pending changes, written by triggers for every statement that changes
# orders — how many depends on the statements, not on what changed; the fold job's effect is the roll-up rows.)
# The audit trail (bnpl/models/audit.py, pghistory events) records writes, not effects; the effects it audits
# are counted directly.
# Columns whose histogram is part of the world: the states jobs move rows between.
HISTOGRAMS: tuple[tuple[str, str], ...] = (
    ("bnpl.CreditOrder", "status"),
    ("bnpl.CreditOrder", "dpd_bucket"),
    ("bnpl.ChargeAttempt", "status"),
    ("bnpl.Refund", "status"),
    ("bnpl.Payout", "status"),
    ("bnpl.Coupon", "status"),
    ("consumers.PromiseRecord", "outcome"),
    ("consumers.PromiseRecord", "rewards_pending"),
    ("consumers.CreditProfile", "is_paused"),
    ("notifications.Delivery", "status"),
    ("merchants.WebhookDelivery", "status"),
)
PROJECT_APPS = ("bnpl", "consumers", "merchants", "notifications", "scoring")


def world() -> Counter:
    """Row counts of every project model, status histograms, and what left the process (mail, SMS)."""
    counts: Counter = Counter()
    for app_label in PROJECT_APPS:
        try:
            config = apps.get_app_config(app_label)
        except LookupError:
            continue
        for model in config.get_models():
            label = model._meta.label
            if label in NOT_EFFECTS or model._meta.proxy or issubclass(model, pghistory.models.Event):
                continue
            counts[label] = model._default_manager.count()
    for label, column in HISTOGRAMS:
        model = apps.get_model(label)
        for row in model._default_manager.values(column).annotate(n=Count("pk")).order_by():
            counts[f"{label}.{column}={row[column]}"] = row["n"]
    counts["sent: emails"] = len(mail.outbox)
    counts["sent: sms"] = len(backends.outbox)
    return counts


def change(before: Counter, after: Counter) -> dict[str, int]:
    """What differs between two worlds (zero differences left out), sorted for readable failures."""
    keys = set(before) | set(after)
    return {k: after[k] - before[k] for k in sorted(keys) if after[k] != before[k]}


# --------------------------------------------------------------------------------------------- the due work


@dataclass
class Due:
    """Due work for one job and the change one run of the job makes to :func:`world`."""

    expect: dict[str, int]
    # Overrides of the job's declared kwargs (only to keep a sweep-for-a-minute job short).
    kwargs: dict[str, Any] = field(default_factory=dict)
    # More of the outside world than mail and SMS (a webhook receiver's requests).
    outside: Callable[[], dict[str, int]] = dict
    # When the job runs, if not now (a daily job that takes yesterday's work runs tomorrow).
    run_at: datetime | None = None


@dataclass
class Receiver:
    """A merchant's webhook endpoint: a real HTTP server on 127.0.0.1 that answers 200 and counts requests."""

    server: ThreadingHTTPServer
    requests: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def seen(self) -> dict[str, int]:
        with self.lock:
            return {
                "sent: webhook requests": sum(self.requests.values()),
                "sent: distinct webhook-ids": len(self.requests),
            }


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with holder[0].lock:
                holder[0].requests[self.headers.get("webhook-id", "")] += 1
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Receiver(server))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield holder[0]
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _channels(settings) -> Iterator[None]:
    """Mail and SMS to in-memory outboxes, no SMS quiet hours (the tests run at any hour), no control group."""
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    settings.BNPL_SMS_BACKEND = "bnpl.notifications.backends.LocmemSmsBackend"
    settings.BNPL_SMS_QUIET_HOURS = (0, 0)
    settings.BNPL_REMINDER_CONTROL_SHARE = 0.0
    mail.outbox = []
    backends.outbox.clear()
    yield
    backends.outbox.clear()


def _listing(**extra: Any):
    return ListingFactory(merchant=MerchantFactory(), max_amount=D("500.00"), **extra)


def _paid_elsewhere(order):
    return credit_order_mark_paid_elsewhere(actor=None, actor_kind=ActorKind.STAFF, order=order, reason="paid at till")


def _refund(order, amount: str, key: str):
    return credit_order_refund(
        actor=None, actor_kind=ActorKind.MERCHANT, order=order, amount=amount, reason="returned", idempotency_key=key
    )


def due_expired_confirmations(_receiver: Receiver) -> Due:
    listing = _listing()
    for _ in range(3):
        order_in(S.PENDING_CONFIRMATION, listing=listing, consumer=ConsumerFactory(), expires_in=-timedelta(minutes=1))
    order_in(S.PENDING_CONFIRMATION, listing=listing, consumer=ConsumerFactory())  # not expired yet
    return Due(
        expect={
            "bnpl.CreditOrder.status=pending_confirmation": -3,
            "bnpl.CreditOrder.status=expired": 3,
            "bnpl.OrderEvent": 3,
        }
    )


def due_nothing(_receiver: Receiver) -> Due:
    """The heartbeat sweeps nothing: its one effect, a stored task result, is django-q2's."""
    return Due(expect={})


def due_day_stats(_receiver: Receiver) -> Due:
    """Orders of two merchants on two days, not folded yet: one fold writes a roll-up row per merchant and day."""
    first, second = _listing(), _listing()
    order_in(S.ACTIVE, listing=first, consumer=ConsumerFactory())
    order_in(S.ACTIVE, listing=second, consumer=ConsumerFactory())
    older = order_in(S.ACTIVE, listing=first, consumer=ConsumerFactory())
    CreditOrder.objects.filter(pk=older.pk).update(created_at=timezone.now() - 3 * DAY)
    return Due(expect={"bnpl.MerchantDayStats": 3})


def due_charges(_receiver: Receiver) -> Due:
    listing = _listing()
    for _ in range(3):
        payer = ConsumerFactory()
        fund(payer)
        due_order(listing, payer, amount="12.00")
    due_order(listing, ConsumerFactory(), amount="7.00")  # no card: declined, retried later (not now)
    due_order(listing, ConsumerFactory(), due_at=timezone.now() + DAY)  # not due
    return Due(
        expect={
            "bnpl.ChargeAttempt": 4,
            "bnpl.ChargeAttempt.status=succeeded": 3,
            "bnpl.ChargeAttempt.status=declined": 1,
            "bnpl.CreditOrder.status=completed": -4,
            "bnpl.CreditOrder.status=paid": 3,
            "bnpl.CreditOrder.status=collecting": 1,
            "bnpl.LedgerAccount": 2,  # the platform's clearing and fee accounts, opened by the first charge
            "bnpl.LedgerTransaction": 6,  # a charge and a fee per paid order
            "bnpl.LedgerEntry": 12,
            "bnpl.UnsettledEntry": 3,  # the fees' merchant-payable entries, queued for settlement
            "bnpl.OrderEvent": 4,
            "bnpl.SandboxCharge": 3,
            "consumers.CreditProfileEvent": 3,
            "consumers.PointsEntry": 3,
            "consumers.PromiseRecord": 3,
            "consumers.PromiseRecord.outcome=fulfilled": 3,
            "consumers.PromiseRecord.rewards_pending=False": 3,
            "consumers.RewardAccount": 3,
            "scoring.ConsumerFeatures": 4,
        }
    )


def due_unknown_attempts(_receiver: Receiver) -> Due:
    listing = _listing()
    for faults in ({"lost_response_rate": "1"}, {"timeout_rate": "1"}):
        payer = ConsumerFactory()
        fund(payer)
        due_order(listing, payer, amount="9.00")
        sandbox_faults_set(actor=None, **faults)  # the provider charged but the answer was lost / never arrived
        run_charges(threads=1)
    sandbox_faults_set(actor=None)
    assert ChargeAttempt.objects.filter(status="unknown").count() == 2
    ChargeAttempt.objects.update(last_sent_at=timezone.now() - HOUR)  # old enough to ask about
    return Due(
        expect={
            "bnpl.ChargeAttempt": 1,  # the never-processed one is replaced by a new attempt with a new key
            "bnpl.ChargeAttempt.status=unknown": -2,
            "bnpl.ChargeAttempt.status=succeeded": 2,
            "bnpl.ChargeAttempt.status=not_found": 1,
            "bnpl.CreditOrder.status=completed": -2,
            "bnpl.CreditOrder.status=paid": 2,
            "bnpl.LedgerAccount": 2,
            "bnpl.LedgerTransaction": 4,
            "bnpl.LedgerEntry": 8,
            "bnpl.UnsettledEntry": 2,  # the fees' merchant-payable entries, queued for settlement
            "bnpl.OrderEvent": 2,
            "bnpl.SandboxCharge": 1,  # the replacement; the lost answer's charge was already at the provider
            "consumers.CreditProfileEvent": 2,
            "consumers.PointsEntry": 2,
            "consumers.PromiseRecord": 2,
            "consumers.PromiseRecord.outcome=fulfilled": 2,
            "consumers.PromiseRecord.rewards_pending=False": 2,
            "consumers.RewardAccount": 2,
            "scoring.ConsumerFeatures": 2,
        }
    )


def _collecting(listing, *, due_ago: timedelta, status: str = S.COLLECTING, **extra: Any):
    now = timezone.now()
    return due_order(
        listing,
        ConsumerFactory(),
        status=status,
        due_at=now - due_ago,
        collecting_since=now - due_ago,
        next_attempt_at=now + DAY,
        charge_failure_count=1,
        **extra,
    )


def due_overdue_orders(_receiver: Receiver) -> Due:
    listing = _listing()
    for _ in range(2):
        _collecting(listing, due_ago=timedelta(hours=73))  # past the 72 h grace period
    _collecting(listing, due_ago=timedelta(hours=71))  # inside it
    _collecting(listing, due_ago=timedelta(days=40), status=S.OVERDUE, dpd=9, dpd_bucket="M0")  # DPD to refresh
    return Due(
        expect={
            "bnpl.CreditOrder.status=collecting": -2,
            "bnpl.CreditOrder.status=overdue": 2,
            "bnpl.CreditOrder.dpd_bucket=": -2,
            "bnpl.CreditOrder.dpd_bucket=M0": 1,
            "bnpl.CreditOrder.dpd_bucket=M1": 1,
            "bnpl.OrderEvent": 2,
            "consumers.CreditProfile.is_paused=False": -2,
            "consumers.CreditProfile.is_paused=True": 2,
            "consumers.CreditProfileEvent": 4,
            "consumers.LimitChange": 2,
            "consumers.PromiseRecord": 2,
            "consumers.PromiseRecord.outcome=breached": 2,
            "consumers.PromiseRecord.rewards_pending=False": 2,
            "consumers.RewardAccount": 2,
            "consumers.RewardMarker": 2,
            "scoring.ConsumerFeatures": 2,
        }
    )


def due_guarantees(_receiver: Receiver) -> Due:
    listing = _listing()
    for _ in range(2):
        _collecting(listing, due_ago=timedelta(hours=73))  # collection failed for the 72 h window
    _collecting(listing, due_ago=timedelta(hours=73), status=S.OVERDUE)
    _collecting(listing, due_ago=timedelta(hours=71))  # inside it
    return Due(
        expect={"bnpl.LedgerAccount": 2, "bnpl.LedgerTransaction": 3, "bnpl.LedgerEntry": 6, "bnpl.OrderEvent": 3}
    )


def due_unknown_refunds(_receiver: Receiver) -> Due:
    listing = _listing()
    for key, faults in (("lost", {"lost_response_rate": "1"}), ("never", {"timeout_rate": "1"})):
        order = charged_order(listing, ConsumerFactory(), amount="40.00")
        sandbox_faults_set(actor=None, **faults)
        _refund(order, "15.00", key)
        sandbox_faults_set(actor=None)
    assert Refund.objects.filter(status="unknown").count() == 2
    Refund.objects.update(last_sent_at=timezone.now() - HOUR)
    return Due(
        expect={
            "bnpl.Refund.status=unknown": -2,
            "bnpl.Refund.status=succeeded": 2,
            "bnpl.CreditOrder.status=paid": -2,
            "bnpl.CreditOrder.status=partially_refunded": 2,
            "bnpl.LedgerTransaction": 2,
            "bnpl.LedgerEntry": 4,
            "bnpl.UnsettledEntry": 2,  # the refunds' merchant-payable entries, queued for settlement
            "bnpl.OrderEvent": 2,
            "bnpl.SandboxRefund": 1,  # the lost answer's refund was already at the provider
        }
    )


def due_rewards_to_expire(_receiver: Receiver) -> Due:
    # Points and coupons earned more than a year ago (points entries are append-only: earn them back then).
    with time_machine.travel(timezone.now() - timedelta(days=400), tick=True):
        listing = _listing()
        campaign_create(
            actor=None,
            merchant=listing.merchant,
            title="充一次送券",
            goal_count=1,
            benefit_kind=BenefitKind.COUPON,
            benefit_amount="5.00",
            budget_amount="10.00",
        )
        for _ in range(2):
            _paid_elsewhere(due_order(listing, ConsumerFactory(), status=S.COLLECTING))
    assert Coupon.objects.count() == 2 and PointsEntry.objects.count() == 2
    assert not PointsEntry.objects.filter(expires_at__gt=timezone.now()).exists()
    assert not Coupon.objects.filter(expires_at__gt=timezone.now()).exists()
    return Due(
        expect={
            "consumers.PointsEntry": 2,  # one expiry entry per account
            "bnpl.Coupon.status=issued": -2,
            "bnpl.Coupon.status=expired": 2,
        }
    )


def due_pending_rewards(_receiver: Receiver) -> Due:
    listing = _listing()
    with mock.patch.object(rewards, "rewards_on_promise_kept", side_effect=RuntimeError("rewards are down")):
        for _ in range(3):
            _paid_elsewhere(due_order(listing, ConsumerFactory(), status=S.COLLECTING))
    assert PointsEntry.objects.count() == 0
    return Due(
        expect={
            "consumers.PointsEntry": 3,
            "consumers.PromiseRecord.rewards_pending=True": -3,
            "consumers.PromiseRecord.rewards_pending=False": 3,
            "consumers.RewardAccount": 3,
        }
    )


def due_settlement(_receiver: Receiver) -> Due:
    # Today's sales; the daily job settles the previous business day (Asia/Shanghai), so it runs tomorrow.
    # (Postings are stamped by the database clock, so the sales cannot be moved to yesterday instead.)
    for merchant in (MerchantFactory(), MerchantFactory()):
        listing = ListingFactory(merchant=merchant, max_amount=D("500.00"))
        for amount in ("100.00", "50.00"):
            charged_order(listing, ConsumerFactory(), amount=amount)
    return Due(
        run_at=timezone.now() + DAY,
        expect={
            "bnpl.SettlementBatch": 2,
            "bnpl.SettlementItem": 8,  # per merchant: two completions, two fees
            "bnpl.UnsettledEntry": -8,  # ...which leave the settlement queue
            "bnpl.Payout": 2,
            "bnpl.Payout.status=pending": 2,
        },
    )


def _settled_payouts() -> list[Payout]:
    for amount in ("100.00", "60.00"):
        merchant = MerchantFactory()
        charged_order(ListingFactory(merchant=merchant, max_amount=D("500.00")), ConsumerFactory(), amount=amount)
        settle_merchants(business_date=timezone.localdate(), merchant_ids=[merchant.pk])
    payouts = list(Payout.objects.order_by("pk"))
    assert len(payouts) == 2
    return payouts


def due_payouts(_receiver: Receiver) -> Due:
    _settled_payouts()
    return Due(
        expect={
            "bnpl.Payout.status=pending": -2,
            "bnpl.Payout.status=paid": 2,
            "bnpl.SandboxPayout": 2,
            "bnpl.LedgerTransaction": 2,
            "bnpl.LedgerEntry": 4,
        }
    )


def due_unknown_payouts(_receiver: Receiver) -> Due:
    first, second = _settled_payouts()
    for payout, fault in ((first, "lost_response_rate"), (second, "timeout_rate")):
        faulty = InProcessSandboxGateway(faults=SandboxFaults(**{fault: D(1)}))
        assert payouts_send_due(gateway=faulty, payout_ids=[payout.pk])["unknown"] == 1
    Payout.objects.update(last_sent_at=timezone.now() - HOUR)
    return Due(
        expect={
            "bnpl.Payout.status=unknown": -2,
            "bnpl.Payout.status=paid": 2,
            "bnpl.SandboxPayout": 1,  # the lost answer's payout was already at the provider
            "bnpl.LedgerTransaction": 2,
            "bnpl.LedgerEntry": 4,
        }
    )


def due_webhooks(receiver: Receiver) -> Due:
    merchant = MerchantFactory()
    webhook_endpoint_create(actor=None, merchant=merchant, url=receiver.url, event_types=["order.*"])
    for n in range(4):
        event = webhook_event_enqueue(
            merchant_id=merchant.pk,
            event_type="order.completed",
            payload={"order_id": n},
            ordering_key=f"order:{n}",
        )
        assert event is not None
    return Due(
        expect={
            "merchants.WebhookAttempt": 4,
            "merchants.WebhookDelivery.status=pending": -4,
            "merchants.WebhookDelivery.status=succeeded": 4,
            "sent: webhook requests": 4,
            "sent: distinct webhook-ids": 4,
        },
        # The declared run sweeps for 55 s; one sweep is what is under test.
        kwargs={"run_for_s": 0},
        outside=receiver.seen,
    )


def due_idempotency_records(_receiver: Receiver) -> Due:
    merchant = MerchantFactory()
    for n in range(5):
        IdempotencyRecord.objects.create(merchant=merchant, key=f"k{n}", fingerprint="f" * 64)
    old = IdempotencyRecord.objects.order_by("pk").values_list("pk", flat=True)[:3]
    IdempotencyRecord.objects.filter(pk__in=list(old)).update(created_at=timezone.now() - timedelta(hours=49))
    return Due(expect={"merchants.IdempotencyRecord": -3})


def due_reminders(_receiver: Receiver) -> Due:
    listing = _listing()
    goods = ListingFactory(scenario=Scenario.LIVE_SHOPPING)
    active = order_in(S.ACTIVE, listing=listing, consumer=ConsumerFactory())
    OrderEvent.objects.create(
        order=active, actor_kind=ActorKind.SYSTEM, from_status=S.PENDING_CONFIRMATION, to_status=S.ACTIVE, reason="t"
    )
    order_in(S.COMPLETED, listing=goods, consumer=ConsumerFactory(), due_at=timezone.now() + timedelta(days=4))
    order_in(S.COLLECTING, listing=listing, consumer=ConsumerFactory(), due_at=timezone.now() - DAY - HOUR)
    credit_profile_pause(actor=None, consumer=ConsumerFactory(), reason="overdue order #1 (O-1)")
    agreement_sign(
        actor=None,
        consumer=ConsumerFactory(),
        listing=ListingFactory(merchant=listing.merchant, confirm_mode=ConfirmMode.AGREEMENT),
    )
    # order confirmed, pre-charge notice, overdue day 1, account paused, agreement: five, each by email and SMS
    return Due(
        expect={
            "notifications.Notification": 5,
            "notifications.Delivery": 10,
            "notifications.Delivery.status=pending": 10,
        }
    )


def due_deliveries(_receiver: Receiver) -> Due:
    for n in range(3):
        consumer = ConsumerFactory()
        notify(
            key="account_paused",
            data={"reason": "test", "url": "https://pay.example.test/me/"},
            dedupe_key=f"account_paused:test:{n}",
            consumer=consumer,
        )
    return Due(
        expect={
            "notifications.Delivery.status=pending": -6,
            "notifications.Delivery.status=sent": 6,
            "sent: emails": 3,
            "sent: sms": 3,
        }
    )


def due_digests(_receiver: Receiver) -> Due:
    listing = _listing()
    for _ in range(2):
        MerchantMemberFactory(merchant=listing.merchant)
    MerchantMemberFactory()  # a merchant with nothing to report gets no digest
    now = timezone.now()
    order_in(
        S.COLLECTING,
        listing=listing,
        consumer=ConsumerFactory(),
        due_at=now - 5 * HOUR,
        collecting_since=now - 4 * HOUR,
    )
    return Due(
        expect={
            "notifications.Notification": 2,
            "notifications.Delivery": 4,
            "notifications.Delivery.status=pending": 2,
            "notifications.Delivery.status=skipped": 2,  # members have no phone on file
        }
    )


ARRANGERS: dict[str, Callable[[Receiver], Due]] = {
    "expire-pending-orders": due_expired_confirmations,
    "scheduler-heartbeat": due_nothing,
    "charge-run": due_charges,
    "reconcile-charges": due_unknown_attempts,
    "classify-overdue": due_overdue_orders,
    "apply-guarantee": due_guarantees,
    "reconcile-refunds": due_unknown_refunds,
    "expire-rewards": due_rewards_to_expire,
    "apply-pending-rewards": due_pending_rewards,
    "settle-merchants": due_settlement,
    "send-payouts": due_payouts,
    "reconcile-payouts": due_unknown_payouts,
    "deliver-webhooks": due_webhooks,
    "purge-idempotency-records": due_idempotency_records,
    "send-reminders": due_reminders,
    "deliver-notifications": due_deliveries,
    "merchant-digests": due_digests,
    "fold-merchant-day-stats": due_day_stats,
}


# --------------------------------------------------------------------------------------------- the tests


def arrange(job: JobSpec, receiver: Receiver) -> tuple[Due, Callable[[], object]]:
    """The job's due work, and a call of the job's function with its declared kwargs (plus the arranger's)."""
    arranger = ARRANGERS.get(job.name)
    if arranger is None:
        pytest.fail(f"job {job.name!r} has no due-work arranger in ARRANGERS: add one that builds work it sweeps")
    # The default scorecard is seeded by a migration, but a transactional test before this one may have emptied the
    # table, and scoring then reinstalls it on first use: put it back now, so that the job's effect is the same
    # whatever ran before.
    scorecard_install_default(actor=None)
    due = arranger(receiver)
    func = import_string(job.func)
    kwargs = {**job.kwargs, **due.kwargs}
    return due, lambda: func(**kwargs)


def clock(due: Due) -> AbstractContextManager[object]:
    """The moment the job runs at: now, or the arranger's ``run_at`` (the clock ticks on from there)."""
    return time_machine.travel(due.run_at, tick=True) if due.run_at else nullcontext()


def observe(due: Due) -> Counter:
    """The world, with what the arranger's outside observers (a webhook receiver) saw."""
    counts = world()
    counts.update(due.outside())
    return counts


def test_every_arranger_belongs_to_a_declared_job():
    assert set(ARRANGERS) <= {job.name for job in JOBS}


@pytest.mark.django_db
@pytest.mark.parametrize("job", JOBS, ids=[job.name for job in JOBS])
def test_a_job_run_twice_in_a_row_has_the_effect_of_one_run(job, receiver, settings):
    # One after the other, one connection is enough: the test's transaction holds the state (and is rolled back,
    # which is much faster than emptying every table). The charge jobs' gateway calls then run inline, since a
    # pool thread's own connection could not see that state; the concurrent test below runs them on the pool.
    settings.BNPL_CHARGE_THREADS = 1
    due, run = arrange(job, receiver)
    before = observe(due)

    with clock(due):
        run()
        once = observe(due)
        run()
        twice = observe(due)

    assert change(before, once) == due.expect
    assert change(once, twice) == {}
    assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("job", JOBS, ids=[job.name for job in JOBS])
def test_a_job_run_twice_at_once_has_the_effect_of_one_run(job, receiver):
    due, run = arrange(job, receiver)
    before = observe(due)

    with clock(due):
        results = run_concurrently(run, run)

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert change(before, observe(due)) == due.expect
    assert ledger_check() == []
