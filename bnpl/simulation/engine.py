"""The simulation loop: people act at their moments, the declared jobs run at their cadence, on one clock.

Between two moments nothing happens; at each moment either a person acts or the jobs that are due run, in the
order ``bnpl.schedules.JOBS`` declares them. A person's actions go through the services a merchant's system or the
consumer's app would call: the merchant places the order (``credit_order_create``), the consumer confirms it
(admission and scoring), the merchant reports usage and completes it with the bill; the charge run, retries,
overdue classification, guarantee, settlement, payouts, reminders and rewards happen only because their jobs ran.
The hidden risk type (population.py) acts only through the consumer's card: a top-up, or paying in the app
(``credit_order_pay_now``) after a reminder reached them.

Determinism: one ``random.Random(seed)`` drives every draw, in an order fixed by the event queue (time, then
insertion number) and by queries ordered by primary key; on a fresh database two runs give the same records.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, Sum
from django.test.utils import override_settings
from django.utils import timezone

from bnpl import services as order_services
from bnpl.charging import credit_order_pay_now
from bnpl.choices import ActorKind, OrderStatus
from bnpl.exceptions import DomainError
from bnpl.gateway.services import sandbox_funding_source_top_up
from bnpl.models import ChargeAttempt, CreditOrder, Payout, SandboxFundingSource, SettlementBatch
from bnpl.models.charging import AttemptStatus, ChargeTrigger
from bnpl.models.settlement import PayoutStatus
from bnpl.notifications import backends as sms_backends
from bnpl.notifications.models import Delivery, DeliveryStatus, Notification
from bnpl.schedules import JOBS
from merchants.choices import Scenario

from .clock import ScheduledJob, SimulatedClock, scheduled_jobs
from .population import (
    ABANDON_SHARE,
    CANCEL_SHARE,
    DEFAULT_ORDER_RATE,
    RISK_TYPES,
    SALARY_BALANCE,
    SALARY_FLOOR,
    Person,
    draw_population,
    funding_delay,
    reminder_delay,
)
from .world import SimMerchant, build_consumers, build_merchants, run_prefix

logger = logging.getLogger(__name__)
S = OrderStatus

#: Jobs whose declared arguments assume a live cluster: the webhook job sweeps for 55 wall-clock seconds per
#: run, which on a stopped clock would be 55 s of sleeping per tick; one sweep per tick does the same work.
JOB_KWARGS: dict[str, dict[str, Any]] = {"deliver-webhooks": {"run_for_s": 0.0}}

#: Notifications a consumer who "pays after reminders" acts on: the pre-charge reminders, a failed charge, overdue.
REMINDER_KINDS = ("charge_upcoming", "charge_failed", "payment_overdue")
UNPAID = (S.COMPLETED, S.COLLECTING, S.OVERDUE)
PAID = (S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED)
SHIPPING_TIME = timedelta(days=1)  # live-stream goods: completed when shipped, charged 7 days later (policy)


@dataclass(frozen=True)
class SimulationConfig:
    seed: int
    days: int
    consumers: int
    start: datetime
    order_rate: float = DEFAULT_ORDER_RATE
    tick: timedelta = timedelta(minutes=60)
    control_share: float = 0.2

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


@dataclass
class DayProgress:
    day: int
    date: str
    placed: int
    declined: int
    completed: int
    charged: int


@dataclass
class Outcomes:
    """What became of the billed orders of one hidden type (counts of orders)."""

    people: int = 0
    orders: int = 0
    declined: int = 0
    billed: int = 0
    on_time: int = 0
    late: int = 0  # collected by a scheduled retry after the first charge failed
    after_reminder: int = 0  # paid by the consumer in the app after the first charge failed
    unpaid: int = 0  # collecting or overdue at the end: defaulted (or not yet recovered)
    awaiting_charge: int = 0


@dataclass
class SimulationSummary:
    config: SimulationConfig
    orders_by_status: dict[str, int]
    charged: int
    charged_amount: Decimal
    by_type: dict[str, Outcomes]
    overdue_buckets: dict[str, tuple[int, Decimal]]
    guaranteed: int
    notifications: dict[str, int]
    settlement_batches: int
    settlement_gross: Decimal
    settlement_net: Decimal
    payouts_paid: int
    payouts_paid_amount: Decimal
    job_runs: dict[str, tuple[int, float]] = field(default_factory=dict)  # name → (runs, seconds)
    build_seconds: float = 0.0  # wall time spent creating the merchants and consumers (the command prints it)

    def counts(self) -> dict[str, Any]:
        """The figures two runs with the same seed must agree on (the determinism test compares these)."""
        return {
            "orders_by_status": self.orders_by_status,
            "charged": self.charged,
            "charged_amount": str(self.charged_amount),
            "by_type": {key: vars(value) for key, value in self.by_type.items()},
            "overdue_buckets": {key: [n, str(amount)] for key, (n, amount) in self.overdue_buckets.items()},
            "guaranteed": self.guaranteed,
            "notifications": self.notifications,
            "settlement": [self.settlement_batches, str(self.settlement_gross), str(self.settlement_net)],
            "payouts": [self.payouts_paid, str(self.payouts_paid_amount)],
        }

    def lines(self) -> list[str]:
        c = self.config
        out = [
            f"Simulated {c.days} days from {c.start:%Y-%m-%d} for {c.consumers} consumers (seed {c.seed}).",
            "Orders by status: " + ", ".join(f"{k} {v}" for k, v in sorted(self.orders_by_status.items())),
            f"Charged: {self.charged} charges, ¥{self.charged_amount}; platform guarantee on {self.guaranteed} orders.",
            "",
            f"{'hidden type':<22}{'people':>7}{'orders':>8}{'declined':>9}{'billed':>8}{'on time':>9}"
            f"{'late':>7}{'after rem.':>11}{'unpaid':>8}{'awaiting':>9}",
        ]
        for risk in RISK_TYPES:
            o = self.by_type[risk.key]
            out.append(
                f"{risk.label:<22}{o.people:>7}{o.orders:>8}{o.declined:>9}{o.billed:>8}{o.on_time:>9}"
                f"{o.late:>7}{o.after_reminder:>11}{o.unpaid:>8}{o.awaiting_charge:>9}"
            )
        out += [
            "",
            "Overdue by DPD bucket: "
            + (", ".join(f"{b} {n} (¥{a})" for b, (n, a) in sorted(self.overdue_buckets.items())) or "none"),
            "Notifications: " + ", ".join(f"{k} {v}" for k, v in sorted(self.notifications.items())),
            f"Settlement: {self.settlement_batches} batches, gross ¥{self.settlement_gross}, "
            f"net ¥{self.settlement_net}; payouts paid {self.payouts_paid} (¥{self.payouts_paid_amount}).",
        ]
        return out


class Simulation:
    """One run: build the world at the start, then play every moment up to the end."""

    def __init__(self, config: SimulationConfig, *, on_day: Callable[[DayProgress], None] | None = None) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.prefix = run_prefix(config.seed)
        self.on_day = on_day or (lambda progress: None)
        self._queue: list[tuple[datetime, int, str, tuple[Any, ...]]] = []
        self._sequence = itertools.count()
        self._order_numbers = itertools.count(1)
        self.day_counts: Counter[str] = Counter()
        self.people: dict[int, Person] = {}
        self.consumers: dict[int, Any] = {}
        self.sources: dict[int, SandboxFundingSource] = {}
        self.merchants: dict[str, SimMerchant] = {}
        self._person_by_consumer: dict[int, int] = {}
        self._observed_until = config.start
        self._seen_notifications: set[int] = set()
        self._late_payers: set[int] = set()  # consumer ids of the types that act on a failed charge / a reminder
        self._reminder_heeders: set[int] = set()

    # --- the run

    def run(self) -> SimulationSummary:
        c = self.config
        settings = {
            # The in-process sandbox answers at once: the charge run's thread pool would only add a database
            # connection per thread and run.
            "BNPL_CHARGE_THREADS": 1,
            "BNPL_SMS_BACKEND": "bnpl.notifications.backends.LocmemSmsBackend",
            "MAILERS": {"default": {"BACKEND": "django.core.mail.backends.dummy.EmailBackend"}},
            "BNPL_REMINDER_CONTROL_SHARE": c.control_share,
        }
        # Every service call commits; waiting for each commit's WAL flush would dominate a run. A crash mid-run can
        # lose the last moments of a simulated history (never corrupt it), which a rerun on a fresh database redoes.
        session = {"synchronous_commit": "off"}
        with override_settings(**settings), SimulatedClock(c.start, session_settings=session) as clock:
            began = time.perf_counter()
            self._build()
            build_seconds = time.perf_counter() - began
            jobs = scheduled_jobs(JOBS, start=c.start, tick=c.tick, kwargs_override=JOB_KWARGS)
            self._play(clock, jobs)
            job_runs = {job.spec.name: (job.runs, round(job.seconds, 1)) for job in jobs}
        summary = self.summary()
        summary.job_runs = job_runs
        summary.build_seconds = round(build_seconds, 1)
        return summary

    def _build(self) -> None:
        admin = get_user_model().objects.create_user(
            username=f"{self.prefix}-staff", email=f"{self.prefix}-staff@example.com", password=None, is_staff=True
        )
        self.merchants = build_merchants(seed=self.config.seed, admin=admin)
        people = draw_population(self.rng, self.config.consumers, order_rate=self.config.order_rate)
        self.people = {person.index: person for person in people}
        self.consumers, self.sources = build_consumers(seed=self.config.seed, people=people)
        self._person_by_consumer = {consumer.pk: index for index, consumer in self.consumers.items()}
        self._late_payers = {self.consumers[i].pk for i, p in self.people.items() if p.risk.fund_after is not None}
        self._reminder_heeders = {
            self.consumers[i].pk for i, p in self.people.items() if p.risk.reminder_response is not None
        }
        for person in people:
            self._schedule_next_order(person, self.config.start)

    def _play(self, clock: SimulatedClock, jobs: list[ScheduledJob]) -> None:
        end = self.config.end
        day_end = self.config.start + timedelta(days=1)
        while True:
            next_job = min(job.next_run for job in jobs)
            next_event = self._queue[0][0] if self._queue else end
            moment = min(next_job, next_event)
            while day_end <= min(moment, end):
                self._report_day(day_end)
                day_end += timedelta(days=1)
            if moment >= end:
                return
            clock.move_to(moment)
            if next_job <= next_event:
                for job in jobs:
                    if job.next_run <= moment:
                        self._run_job(job)
                        job.advance()
                self._observe(moment)
                sms_backends.outbox.clear()  # the messages are in the database; don't keep a copy in memory
            else:
                _when, _n, kind, payload = heapq.heappop(self._queue)
                getattr(self, f"_on_{kind}")(*payload)

    def _run_job(self, job: ScheduledJob) -> None:
        began = time.perf_counter()
        result = job.call(**job.kwargs)
        job.seconds += time.perf_counter() - began
        if job.spec.name == "charge-run" and isinstance(result, dict):
            self.day_counts["charged"] += int(result.get("succeeded") or 0)

    def _report_day(self, day_end: datetime) -> None:
        day = (day_end - self.config.start).days
        self.on_day(
            DayProgress(
                day=day,
                date=f"{day_end - timedelta(days=1):%Y-%m-%d}",
                placed=self.day_counts["placed"],
                declined=self.day_counts["declined"],
                completed=self.day_counts["completed"],
                charged=self.day_counts["charged"],
            )
        )
        self.day_counts.clear()

    def _push(self, when: datetime, kind: str, *payload: Any) -> None:
        heapq.heappush(self._queue, (when, next(self._sequence), kind, payload))

    # --- people's actions

    def _schedule_next_order(self, person: Person, after: datetime) -> None:
        """The person's next order: an exponential gap (a Poisson process), placed around their usual hour."""
        gap_days = self.rng.expovariate(person.order_rate)
        day = timezone.localtime(after + timedelta(days=gap_days))  # their hour is a Beijing-time hour
        hour = person.active_hour + self.rng.uniform(-1.5, 1.5)
        when = day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=hour)
        if when <= after:
            when += timedelta(days=1)
        if when < self.config.end:
            self._push(when, "place", person.index)

    def _on_place(self, index: int) -> None:
        person = self.people[index]
        consumer = self.consumers[index]
        now = self._now()
        self._schedule_next_order(person, now)
        scenarios, weights = zip(*person.scenarios, strict=True)
        scenario = self.rng.choices(scenarios, weights)[0]
        shop = self.merchants[scenario]
        listing = self.rng.choice(shop.listings)
        roll = self.rng.random()
        if person.risk.funded:
            self._salary(index)
        self.day_counts["placed"] += 1
        try:
            order = order_services.credit_order_create(
                actor=shop.owner,
                actor_kind=ActorKind.MERCHANT,
                merchant=shop.merchant,
                listing=listing,
                out_order_no=f"{self.prefix.upper()}-{next(self._order_numbers):07d}",
                consumer=consumer,
            )
            if roll < ABANDON_SHARE:
                return  # never confirmed: the expiry job expires it
            order = order_services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)
        except DomainError as exc:
            logger.debug("order refused for %s: %s", consumer.user.username, exc.code)
            self.day_counts["declined"] += 1
            return
        if order.status != S.ACTIVE:
            self.day_counts["declined"] += 1
            return
        if roll < ABANDON_SHARE + CANCEL_SHARE:
            self._push(now + timedelta(minutes=self.rng.randint(2, 20)), "cancel", order, index)
            return
        duration, quantity, properties = self._usage(scenario)
        self._push(now + duration, "complete", order, index, quantity, properties)

    def _usage(self, scenario: str) -> tuple[timedelta, Decimal | None, dict[str, Any]]:
        """How long the service takes and what the merchant reports: a session, a parcel, a swim, goods shipped."""
        rng = self.rng
        if scenario == Scenario.EBIKE_CHARGING:
            minutes = rng.randint(20, 300)
            hours = (Decimal(minutes) / Decimal(60)).quantize(Decimal("0.0001"))
            return timedelta(minutes=minutes), hours, {"minutes": minutes, "pile": f"HZ-{rng.randint(1, 99):02d}"}
        if scenario == Scenario.EXPRESS_DELIVERY:
            weight = Decimal(rng.randint(2, 200)) / Decimal(10)
            properties = {"packaging": rng.random() < 0.3, "declared_value": str(rng.choice([0, 200, 500]))}
            return timedelta(minutes=rng.randint(5, 30)), weight, properties
        if scenario == Scenario.SWIMMING_FITNESS:
            return timedelta(minutes=rng.randint(45, 120)), Decimal(1), {"gate": f"A{rng.randint(1, 4)}"}
        return SHIPPING_TIME, None, {}  # live-stream goods: a fixed price, completed when shipped

    def _on_complete(self, order: CreditOrder, index: int, quantity: Decimal | None, properties: dict) -> None:
        shop = self.merchants[order.scenario]
        try:
            if quantity is not None:
                order_services.usage_record(
                    actor=None,
                    merchant=shop.merchant,
                    order=order,
                    merchant_event_id=f"{order.out_order_no}-U1",
                    quantity=quantity,
                    occurred_at=self._now(),
                    properties=properties,
                )
            order_services.credit_order_complete(actor=shop.owner, actor_kind=ActorKind.MERCHANT, order=order)
        except DomainError as exc:
            logger.debug("order %s not completed: %s", order.out_order_no, exc.code)
            return
        self.day_counts["completed"] += 1

    def _on_cancel(self, order: CreditOrder, index: int) -> None:
        consumer = self.consumers[index]
        try:
            order_services.credit_order_cancel(
                actor=consumer.user, actor_kind=ActorKind.CONSUMER, order=order, reason="不需要了"
            )
        except DomainError as exc:
            logger.debug("order %s not cancelled: %s", order.out_order_no, exc.code)

    def _salary(self, index: int) -> None:
        source = self.sources[index]
        source.refresh_from_db(fields=["balance_amount"])
        if source.balance_amount < SALARY_FLOOR:
            self.sources[index] = sandbox_funding_source_top_up(
                actor=None, source=source, amount=SALARY_BALANCE - source.balance_amount
            )

    def _fund(self, index: int, *, statuses: tuple[str, ...]) -> list[CreditOrder]:
        """Top the card up by what the consumer owes on orders in ``statuses`` beyond its balance; returns them."""
        owed_orders = list(
            CreditOrder.objects.filter(consumer=self.consumers[index], status__in=statuses).order_by("id")
        )
        owed = sum((o.amount_due + o.late_fee_amount for o in owed_orders), Decimal("0.00"))
        source = self.sources[index]
        source.refresh_from_db(fields=["balance_amount"])
        if owed > source.balance_amount:
            user = self.consumers[index].user
            self.sources[index] = sandbox_funding_source_top_up(
                actor=user, source=source, amount=owed - source.balance_amount
            )
        return owed_orders

    def _on_fund(self, index: int) -> None:
        """A late payer's money arrives, enough for what has failed; the scheduled retries collect it."""
        self._fund(index, statuses=(S.COLLECTING, S.OVERDUE))

    def _on_pay(self, index: int) -> None:
        """A reminded consumer tops up for everything billed and pays what has failed in the app.

        An upcoming charge (the goods' pre-charge reminders) then simply finds the money at its due time.
        """
        consumer = self.consumers[index]
        for order in self._fund(index, statuses=UNPAID):
            if order.status in (S.COLLECTING, S.OVERDUE) and not order.charge_in_flight:
                try:
                    attempt = credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)
                except DomainError as exc:
                    logger.debug("pay now refused for %s: %s", order.out_order_no, exc.code)
                    continue
                if attempt.status == AttemptStatus.SUCCEEDED:
                    self.day_counts["charged"] += 1

    def _observe(self, now: datetime) -> None:
        """What people notice since the last tick: a late payer's failed charge, a reminder on the phone.

        Whose it is, is filtered here rather than in SQL: a tick finds a few rows, while an ``IN`` list of
        every late payer (a thousand ids in a run of 5,000) cost 20–30 ms a tick to build and bind.
        """
        since, self._observed_until = self._observed_until, now
        failed = (
            CreditOrder.objects.filter(consumer__isnull=False, collecting_since__gt=since, collecting_since__lte=now)
            .order_by("collecting_since", "id")
            .values_list("consumer_id", "collecting_since")
        )
        for consumer_id, collecting_since in failed:
            if consumer_id not in self._late_payers:
                continue
            index = self._person_by_consumer[consumer_id]
            delay = funding_delay(self.rng, self.people[index].risk)
            if delay is not None:
                self._push(max(now, collecting_since + delay), "fund", index)
        reached = (
            Delivery.objects.filter(
                status=DeliveryStatus.SENT,
                sent_at__gt=since,
                sent_at__lte=now,
                notification__consumer__isnull=False,
                notification__kind__in=REMINDER_KINDS,
            )
            .order_by("sent_at", "id")
            .values_list("notification_id", "notification__consumer_id", "sent_at")
        )
        for notification_id, consumer_id, sent_at in reached:
            if consumer_id not in self._reminder_heeders or notification_id in self._seen_notifications:
                continue  # the same reminder by email and SMS
            self._seen_notifications.add(notification_id)
            index = self._person_by_consumer[consumer_id]
            delay = reminder_delay(self.rng, self.people[index].risk)
            if delay is not None:
                self._push(max(now, sent_at + delay), "pay", index)

    def _now(self) -> datetime:
        return timezone.now()

    # --- the summary

    def summary(self) -> SimulationSummary:
        orders = CreditOrder.objects.filter(out_order_no__startswith=f"{self.prefix.upper()}-")
        by_status = dict(orders.values_list("status").annotate(n=Count("id")).order_by("status"))
        succeeded = ChargeAttempt.objects.filter(order__in=orders, status=AttemptStatus.SUCCEEDED)
        totals = succeeded.aggregate(n=Count("id"), amount=Sum("amount"))
        paid_by_app = set(succeeded.filter(trigger=ChargeTrigger.PAY_NOW).values_list("order_id", flat=True))
        by_type = {risk.key: Outcomes() for risk in RISK_TYPES}
        for person in self.people.values():
            by_type[person.risk.key].people += 1
        rows = orders.order_by("id").values_list("id", "consumer_id", "status", "collecting_since")
        for order_id, consumer_id, status, collecting_since in rows:
            if consumer_id not in self._person_by_consumer:
                continue
            o = by_type[self.people[self._person_by_consumer[consumer_id]].risk.key]
            o.orders += 1
            if status == S.DECLINED:
                o.declined += 1
            if status not in (*UNPAID, *PAID, S.WRITTEN_OFF):
                continue
            o.billed += 1
            if status == S.COMPLETED:
                o.awaiting_charge += 1
            elif status in PAID and collecting_since is None:
                o.on_time += 1
            elif status in PAID:
                if order_id in paid_by_app:
                    o.after_reminder += 1
                else:
                    o.late += 1
            else:
                o.unpaid += 1
        buckets: dict[str, tuple[int, Decimal]] = {}
        for bucket, n, amount in (
            orders.filter(status=S.OVERDUE)
            .values_list("dpd_bucket")
            .annotate(n=Count("id"), amount=Sum("amount_due"))
            .order_by("dpd_bucket")
        ):
            buckets[bucket or "-"] = (n, amount or Decimal("0.00"))
        merchant_ids = [shop.merchant.pk for shop in self.merchants.values()]
        batches = SettlementBatch.objects.filter(merchant_id__in=merchant_ids).aggregate(
            n=Count("id"), gross=Sum("gross_amount"), net=Sum("net_amount")
        )
        payouts = Payout.objects.filter(batch__merchant_id__in=merchant_ids, status=PayoutStatus.PAID).aggregate(
            n=Count("id"), amount=Sum("amount")
        )
        notifications = dict(
            Notification.objects.filter(Q(order__in=orders) | Q(consumer_id__in=list(self._person_by_consumer)))
            .values_list("kind")
            .annotate(n=Count("id"))
            .order_by("kind")
        )
        zero = Decimal("0.00")
        return SimulationSummary(
            config=self.config,
            orders_by_status=by_status,
            charged=totals["n"] or 0,
            charged_amount=totals["amount"] or zero,
            by_type=by_type,
            overdue_buckets=buckets,
            guaranteed=orders.filter(guaranteed_at__isnull=False).count(),
            notifications=notifications,
            settlement_batches=batches["n"] or 0,
            settlement_gross=batches["gross"] or zero,
            settlement_net=batches["net"] or zero,
            payouts_paid=payouts["n"] or 0,
            payouts_paid_amount=payouts["amount"] or zero,
        )
