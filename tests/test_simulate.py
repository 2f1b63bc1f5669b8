"""``manage.py simulate`` on a tiny population: deterministic, each hidden type behaves as drawn, the ledger balances.

One test drives two full runs (the second after a flush, which also resets the id sequences, as a fresh database
would be), because a run costs tens of seconds: the jobs of every simulated tick really run.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from bnpl import services as order_services
from bnpl.choices import ActorKind, OrderStatus
from bnpl.ledger import ledger_check
from bnpl.models import ChargeAttempt, CreditOrder, SettlementBatch
from bnpl.models.charging import AttemptStatus, ChargeTrigger
from bnpl.notifications.report import reminder_report
from bnpl.schedules import JOBS
from bnpl.simulation.clock import CLOCK_SCHEMA, SimulatedClock, scheduled_jobs
from bnpl.simulation.population import ALWAYS_PAY, DEFAULT, PAY_AFTER_REMINDER, PAY_LATE, draw_population
from bnpl.simulation.world import run_prefix
from tests.factories import ConsumerFactory, ListingFactory

S = OrderStatus
SEED = 11
ARGS = [
    "simulate",
    "--days=10",
    "--consumers=50",
    f"--seed={SEED}",
    "--start=2026-03-02",
    "--order-rate=0.3",  # enough orders in ten days for every type to have some
    "--tick-minutes=240",
    "--json",
]
BILLED = [S.COMPLETED, S.COLLECTING, S.OVERDUE, S.PAID, S.WRITTEN_OFF]


def _simulate() -> dict:
    out = StringIO()
    call_command(*ARGS, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _orders_by_type() -> dict[str, list[CreditOrder]]:
    """The run's billed orders, by the hidden type of their consumer (the population is the seed's first draws)."""
    people = draw_population(random.Random(SEED), 50)
    types = {f"{run_prefix(SEED)}-c{p.index:05d}": p.risk.key for p in people}
    grouped: dict[str, list[CreditOrder]] = {}
    for order in CreditOrder.objects.filter(status__in=BILLED).select_related("consumer__user").order_by("id"):
        grouped.setdefault(types[order.consumer.user.username], []).append(order)
    return grouped


def _paid_in_app(orders: list[CreditOrder]) -> set[int]:
    return set(
        ChargeAttempt.objects.filter(
            order__in=orders, status=AttemptStatus.SUCCEEDED, trigger=ChargeTrigger.PAY_NOW
        ).values_list("order_id", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_simulate_is_deterministic_and_types_behave_as_drawn():
    # Fresh: no rows, id sequences reset (earlier transactional tests leave them advanced). Ids matter: the
    # reminder control group is drawn from order ids.
    call_command("flush", interactive=False, verbosity=0)
    first = _simulate()
    counts = {key: value for key, value in first.items() if key != "seconds"}
    assert sum(counts["orders_by_status"].values()) > 50
    assert ledger_check() == []

    by_type = _orders_by_type()
    assert set(by_type) == {ALWAYS_PAY, PAY_LATE, PAY_AFTER_REMINDER, DEFAULT}
    # Always-payers: every order that fell due was charged at once.
    due = [o for o in by_type[ALWAYS_PAY] if o.status != S.COMPLETED]
    assert due and all(o.status == S.PAID and o.collecting_since is None for o in due)
    # Defaulters never pay; those past the grace period are overdue and paused.
    assert all(o.status in (S.COLLECTING, S.OVERDUE, S.COMPLETED) for o in by_type[DEFAULT])
    assert any(o.status == S.OVERDUE and o.dpd > 0 for o in by_type[DEFAULT])
    # Late payers are collected by the scheduled retries once their money arrives, never in the app. (Money that
    # arrives for a failed charge may also meet a new bill that falls due meanwhile: hence "mostly" late.)
    late_paid = [o for o in by_type[PAY_LATE] if o.status == S.PAID]
    late = [o for o in late_paid if o.collecting_since is not None]
    assert late and len(late) > len(late_paid) - len(late)
    assert not _paid_in_app(late_paid)
    # Reminded payers pay in the app after a reminder reached them.
    reminded_late = [o for o in by_type[PAY_AFTER_REMINDER] if o.status == S.PAID and o.collecting_since]
    assert reminded_late and len(_paid_in_app(reminded_late)) > len(reminded_late) / 2
    # The daily settlement ran on the simulated clock, and the ledger's own clock followed it.
    assert SettlementBatch.objects.exists()
    assert first["settlement"][0] > 1

    # The scorecard trains on the outcomes (a short performance window: the history is ten days).
    out = StringIO()
    call_command(
        "train_scorecard",
        "--window-days=6",
        "--as-of=2026-03-12",
        "--min-rows=40",
        "--min-per-class=3",
        "--dry-run",
        stdout=out,
    )
    assert "bad rate" in out.getvalue() and "Hold-out (" in out.getvalue() and "Dry run" in out.getvalue()

    # The reminder report finds the goods orders that fell due, with and without the optional reminder.
    report = reminder_report(since=timezone.make_aware(datetime(2026, 3, 2)), until=timezone.now())
    assert report.reminded.orders + report.control.orders > 0

    with pytest.raises(CommandError, match="already ran"):
        call_command(*ARGS, stdout=StringIO())

    call_command("flush", interactive=False, verbosity=0)
    second = _simulate()
    assert {key: value for key, value in second.items() if key != "seconds"} == counts


@pytest.mark.django_db(transaction=True)
def test_simulate_refuses_a_database_with_real_orders():
    listing = ListingFactory()
    order_services.credit_order_create(
        actor=None,
        actor_kind=ActorKind.MERCHANT,
        merchant=listing.merchant,
        listing=listing,
        out_order_no="SHOP-000001",
        consumer=ConsumerFactory(),
    )
    with pytest.raises(CommandError, match="made by neither seed_demo nor a simulation"):
        call_command("simulate", "--days=1", "--consumers=1", stdout=StringIO())
    assert not CreditOrder.objects.filter(out_order_no__startswith="SIM").exists()


@pytest.mark.django_db(transaction=True)
def test_clock_moves_python_and_database_time_together():
    start = timezone.make_aware(datetime(2026, 3, 2, 9, 0))
    later = start + timedelta(hours=5)
    with SimulatedClock(start, session_settings={"synchronous_commit": "off"}) as clock:
        clock.move_to(later)
        with connection.cursor() as cursor:
            cursor.execute("SELECT now(), current_setting('synchronous_commit')")
            db_now, synchronous_commit = cursor.fetchone()
        assert timezone.now() == db_now == later
        assert synchronous_commit == "off"
        with pytest.raises(ValueError):
            clock.move_to(start)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT now() > %s, to_regnamespace(%s), current_setting('synchronous_commit')", [later, CLOCK_SCHEMA]
        )
        assert cursor.fetchone() == (True, None, "on")


def test_jobs_run_at_their_cadence_or_once_a_tick():
    start = timezone.make_aware(datetime(2026, 3, 2, 0, 0))
    jobs = {
        job.spec.name: job for job in scheduled_jobs(JOBS, start=start, tick=timedelta(minutes=60), kwargs_override={})
    }
    assert jobs["charge-run"].every == timedelta(hours=1)  # declared every minute
    assert jobs["apply-guarantee"].every == timedelta(hours=1)
    settle = jobs["settle-merchants"]
    assert timezone.localtime(settle.next_run).hour == 2 and settle.next_run - start == timedelta(hours=2)
    settle.advance()
    assert settle.next_run - start == timedelta(days=1, hours=2) and settle.runs == 1
