"""Every periodic job of the platform, declared as data, and the code that writes them to django-q2.

The ``JOBS`` tuple is the single source of truth for what runs on a timer. ``manage.py setup_schedules`` (run
before the cluster starts, see the Makefile) makes django-q2's ``Schedule`` table equal to it: rows are matched by
name, created when missing, corrected when someone edited them by hand, and rows whose name is not declared here
are deleted. To add a job, append a ``JobSpec`` and redeploy; nobody edits schedules in the admin.

Jobs sweep what is due from the database, so a run that is lost or delivered twice heals on the next run; that is
why a job is declared by what it calls and how often, never by a fixed list of rows to process.

The module also holds the scheduler's own health signal: the ``scheduler-heartbeat`` job runs a no-op every
minute, and django-q2 stores the result of each run in its ``Task`` table. A fresh successful heartbeat is proof
that the whole chain works — the cluster's scheduler created the task, the broker delivered it, a worker ran it
and the monitor saved the result — without a table of our own (see ``scheduler_status``).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from croniter import croniter
from django.db import connection, transaction
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf
from django_q.models import Schedule, Task
from django_q.status import Stat

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

HEARTBEAT_JOB_NAME = "scheduler-heartbeat"
HEARTBEAT_FUNC = "bnpl.schedules.heartbeat"

# Key of the transaction-level advisory lock that serialises concurrent `setup_schedules` runs (two machines
# deploying at once would otherwise both create a missing schedule). Any constant unique to this purpose works.
_SYNC_LOCK_KEY = 0x626E706C_5343  # "bnpl" "SC"

# Schedule types that repeat on an interval; ONCE is not a periodic job and CRON has its own expression.
_INTERVAL_TYPES = frozenset(
    {
        Schedule.MINUTES,
        Schedule.HOURLY,
        Schedule.DAILY,
        Schedule.WEEKLY,
        Schedule.BIWEEKLY,
        Schedule.MONTHLY,
        Schedule.BIMONTHLY,
        Schedule.QUARTERLY,
        Schedule.YEARLY,
    }
)


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """One periodic job: what it calls (a dotted path), how often, with which keyword arguments, and why.

    The spec is validated when the module is imported, so a typo in a cron expression or an unserialisable
    argument fails the deploy instead of a scheduler tick at night.
    """

    name: str
    func: str
    schedule_type: str
    minutes: int | None = None
    cron: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 100:
            raise ValueError(f"Job name must be 1–100 characters: {self.name!r}")
        if "." not in self.func or not all(part.isidentifier() for part in self.func.split(".")):
            raise ValueError(f"Job {self.name}: func must be a dotted path, got {self.func!r}")
        if self.schedule_type == Schedule.CRON:
            if not self.cron or not croniter.is_valid(self.cron):
                raise ValueError(f"Job {self.name}: invalid cron expression {self.cron!r}")
            if self.minutes is not None:
                raise ValueError(f"Job {self.name}: a cron job takes no minutes")
        elif self.schedule_type in _INTERVAL_TYPES:
            if self.cron is not None:
                raise ValueError(f"Job {self.name}: only cron jobs take a cron expression")
            if (self.schedule_type == Schedule.MINUTES) != (self.minutes is not None):
                raise ValueError(f"Job {self.name}: minutes is required for, and only for, the MINUTES type")
            if self.minutes is not None and not 1 <= self.minutes <= 32767:
                raise ValueError(f"Job {self.name}: minutes must be between 1 and 32767")
        else:
            raise ValueError(f"Job {self.name}: schedule type {self.schedule_type!r} is not periodic")
        # django-q2 reads Schedule.kwargs back with ast.literal_eval, so only literals survive the round trip.
        if self.kwargs:
            try:
                round_trips = ast.literal_eval(repr(dict(self.kwargs))) == dict(self.kwargs)
            except (ValueError, SyntaxError):
                round_trips = False
            if not round_trips:
                raise ValueError(f"Job {self.name}: kwargs must be Python literals")

    def schedule_fields(self) -> dict[str, Any]:
        """The ``Schedule`` column values this spec requires; every other managed column is reset to empty."""
        return {
            "func": self.func,
            "schedule_type": self.schedule_type,
            "minutes": self.minutes,
            "cron": self.cron,
            "kwargs": repr(dict(self.kwargs)) if self.kwargs else None,
            # Not declarable here on purpose: positional args, hooks, routing to another cluster and the
            # intended-date kwarg are reset so that a hand edit in the admin cannot change what a job does.
            "args": None,
            "hook": None,
            "cluster": None,
            "intended_date_kwarg": None,
            "repeats": -1,
        }


JOBS: tuple[JobSpec, ...] = (
    JobSpec(
        name="expire-pending-orders",
        func="bnpl.tasks.expire_pending_orders",
        schedule_type=Schedule.MINUTES,
        minutes=1,
        kwargs={"limit": 500},
        description="Expire credit orders left unconfirmed past their confirmation deadline "
        "(BNPL_CONFIRMATION_TTL); at most `limit` orders per run, the next run takes the rest.",
    ),
    JobSpec(
        name=HEARTBEAT_JOB_NAME,
        func=HEARTBEAT_FUNC,
        schedule_type=Schedule.MINUTES,
        minutes=1,
        description="No-op whose stored result proves the scheduler, broker and workers are alive (/healthz).",
    ),
    JobSpec(
        name="charge-run",
        func="bnpl.tasks.charge_run",
        schedule_type=Schedule.MINUTES,
        minutes=1,
        description="Charge completed orders that are due and collecting orders whose retry is due; resend "
        "attempts left pending by a dead worker (docs/charging.md). Stops within BNPL_CHARGE_RUN_TIME_BUDGET.",
    ),
    JobSpec(
        name="reconcile-charges",
        func="bnpl.tasks.reconcile_charges",
        schedule_type=Schedule.MINUTES,
        minutes=5,
        description="Ask the gateway about charge attempts whose outcome is unknown (older than "
        "BNPL_RECONCILE_AFTER) and record what really happened.",
    ),
    JobSpec(
        name="classify-overdue",
        func="bnpl.tasks.classify_overdue_orders",
        schedule_type=Schedule.CRON,
        cron="30 0 * * *",
        description="Daily close of business: collecting orders past BNPL_GRACE_PERIOD become overdue "
        "(consumer paused, promise breached); DPD and buckets of overdue orders are recomputed.",
    ),
    JobSpec(
        name="apply-guarantee",
        func="bnpl.tasks.apply_platform_guarantee",
        schedule_type=Schedule.HOURLY,
        description="Platform guarantee (代偿) for orders whose collection has failed for BNPL_GUARANTEE_WINDOW.",
    ),
    JobSpec(
        name="reconcile-refunds",
        func="bnpl.refunds.reconcile_pending_refunds",
        schedule_type=Schedule.MINUTES,
        minutes=5,
        description="Ask the gateway about refunds left pending or unknown for 5 minutes and record the outcome "
        "(a refund the provider never saw is sent again with its own key).",
    ),
    JobSpec(
        name="expire-rewards",
        func="bnpl.incentives.rewards_expire_due",
        schedule_type=Schedule.CRON,
        cron="15 1 * * *",
        description="Rewards points older than POINTS_EXPIRE_MONTHS expire, oldest first, and campaign coupons "
        "past their date expire (docs/incentives.md). Safe to run twice.",
    ),
    JobSpec(
        name="apply-pending-rewards",
        func="bnpl.incentives.rewards_apply_pending_task",
        schedule_type=Schedule.MINUTES,
        minutes=10,
        description="Apply the rewards (points, levels, campaign progress) of promise records whose rewards "
        "hook failed while the order change was kept; idempotent keys make a replay post nothing twice.",
    ),
    JobSpec(
        name="settle-merchants",
        func="bnpl.settlement.settle_merchants_task",
        schedule_type=Schedule.CRON,
        cron="0 2 * * *",
        description="Daily settlement: one batch and pending payout per merchant for yesterday's settleable "
        "payable entries, dispute holds and releases (docs/settlement.md). Safe to run twice.",
    ),
    JobSpec(
        name="send-payouts",
        func="bnpl.settlement.payouts_send_due_task",
        schedule_type=Schedule.MINUTES,
        minutes=5,
        description="Send pending settlement payouts, and failed ones whose retry is due (+1 h, +6 h, +24 h), "
        "through the gateway under a fixed key per attempt; post the payout only on success.",
    ),
    JobSpec(
        name="reconcile-payouts",
        func="bnpl.settlement.payouts_reconcile_task",
        schedule_type=Schedule.MINUTES,
        minutes=5,
        description="Ask the gateway about payouts left sending or unknown for 5 minutes and record the outcome "
        "(a payout the provider never saw is sent again with its own key).",
    ),
    JobSpec(
        name="deliver-webhooks",
        func="merchants.tasks.deliver_webhooks",
        schedule_type=Schedule.MINUTES,
        minutes=1,
        kwargs={"run_for_s": 55.0},
        description="Send due merchant webhooks, sweeping for most of each minute so the 0 s/15 s/15 s retries "
        "keep their timing (django-q2 schedules at most once a minute); claims skip locked rows.",
    ),
    JobSpec(
        name="purge-idempotency-records",
        func="merchants.tasks.purge_idempotency_records",
        schedule_type=Schedule.HOURLY,
        kwargs={"older_than_hours": 48},
        description="Delete stored Idempotency-Key responses older than 48 h (the API promises at least 24 h).",
    ),
    JobSpec(
        name="send-reminders",
        func="bnpl.notifications.tasks.send_reminders",
        schedule_type=Schedule.MINUTES,
        minutes=5,
        description="Reminders that have come due: order confirmed / bill ready / paid / charge failed, the "
        "pre-charge notice (scenario policy), overdue days 1-3-7-15-30, account paused or restored, new "
        "agreements. Deduplicated by key: a run twice sends nothing twice (docs/notifications.md).",
    ),
    JobSpec(
        name="deliver-notifications",
        func="bnpl.notifications.tasks.deliver_notifications",
        schedule_type=Schedule.MINUTES,
        minutes=1,
        kwargs={"limit": 500},
        description="Send due email and SMS deliveries (SMS not in quiet hours); failures retry with back-off, "
        "then show as failed in the admin.",
    ),
    JobSpec(
        name="fold-merchant-day-stats",
        func="bnpl.merchant_portal.day_stats.day_stats_fold_task",
        schedule_type=Schedule.MINUTES,
        minutes=1,
        description="Fold the merchant dashboard's pending deltas (written by triggers on orders and disputes) "
        "into its daily roll-up and drop days past the horizon; a second run at once finds the lock taken and "
        "returns. The dashboard reads the deltas too, so a late fold costs only a little more reading.",
    ),
    JobSpec(
        name="merchant-digests",
        func="bnpl.notifications.tasks.merchant_digests",
        schedule_type=Schedule.CRON,
        cron="0 9 * * *",
        description="Daily 09:00: each merchant's failed charges of the last 24 h and disputes near their "
        "response deadline, to its members.",
    ),
)


def heartbeat() -> str:
    """The scheduler-heartbeat task: does nothing but finish; django-q2 records when it did.

    It must stay free of database access and imports beyond Django, so that a failing business job can never
    make the scheduler look dead, and a dead scheduler can never look alive.
    """
    return timezone.now().isoformat()


# --------------------------------------------------------------------------------------------------------------
# Writing the declared jobs to django-q2's Schedule table


@dataclass
class ScheduleSyncReport:
    """What ``schedules_sync`` did (or, in a dry run, would do), by schedule name."""

    created: list[str] = field(default_factory=list)
    updated: dict[str, list[str]] = field(default_factory=dict)  # name → changed columns
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


def _describe(row: Schedule) -> str:
    return f"{row.name or '(unnamed)'} #{row.pk} ({row.func})"


def _next_run_for(row: Schedule, *, now: datetime, timing_changed: bool) -> datetime | None:
    """The next run a corrected schedule should have, or None to keep the current one.

    A changed cron expression takes its next occurrence from now (running a nightly money job right away
    because its time moved would be wrong). A changed interval keeps the pending run unless it is further
    away than one new interval, so shortening an interval takes effect at once and lengthening it does not
    trigger an extra run. A missing next run would never fire (django-q2 filters ``next_run < now``).
    """
    if row.schedule_type == Schedule.CRON and (timing_changed or row.next_run is None):
        return croniter(row.cron, timezone.localtime(now)).get_next(datetime)
    if row.next_run is None:
        return now
    if timing_changed:
        one_interval_ahead = row.calculate_next_run(now)
        if row.next_run > one_interval_ahead:
            return one_interval_ahead
    return None


def schedules_sync(
    *,
    actor: AbstractBaseUser | None = None,
    jobs: Sequence[JobSpec] = JOBS,
    dry_run: bool = False,
) -> ScheduleSyncReport:
    """Make django-q2's ``Schedule`` table equal to ``jobs``: create, correct, and delete orphans — all or nothing.

    Rows are matched by name. A row whose managed columns differ from its spec is corrected (the report names
    the columns); a row whose name is not declared, or a second row with a declared name, is deleted. Running it
    again reports nothing changed. With ``dry_run`` the same report is computed and nothing is written.

    ``actor`` is the person running the command, or None for a deploy script; schedules have no event table,
    so the command's printed report is the record.
    """
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"Duplicate job names in the schedule declaration: {sorted(names)}")
    report = ScheduleSyncReport(dry_run=dry_run)
    now = timezone.now()
    with transaction.atomic(durable=True):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SYNC_LOCK_KEY])
        rows = list(Schedule.objects.select_for_update().order_by("pk"))
        by_name: dict[str, Schedule] = {}
        orphans: list[Schedule] = []
        for row in rows:
            if row.name in names and row.name not in by_name:
                by_name[row.name] = row
            else:
                orphans.append(row)

        for job in jobs:
            wanted = job.schedule_fields()
            row = by_name.get(job.name)
            if row is None:
                report.created.append(job.name)
                if not dry_run:
                    # Schedule.save() computes the first cron occurrence; interval jobs start at the next tick.
                    Schedule(name=job.name, **wanted).save()
                continue
            changed = [column for column, value in wanted.items() if getattr(row, column) != value]
            timing_changed = any(column in changed for column in ("schedule_type", "minutes", "cron"))
            for column in changed:
                setattr(row, column, wanted[column])
            next_run = _next_run_for(row, now=now, timing_changed=timing_changed)
            if next_run is not None:
                row.next_run = next_run
                changed.append("next_run")
            if changed:
                report.updated[job.name] = changed
                if not dry_run:
                    row.save(update_fields=changed)
            else:
                report.kept.append(job.name)

        for row in orphans:
            report.deleted.append(_describe(row))
            if not dry_run:
                row.delete()

    if report.changed and not dry_run:
        logger.info(
            "Schedules synchronised by %s: created %s, updated %s, deleted %s",
            actor or "system",
            report.created,
            sorted(report.updated),
            report.deleted,
        )
    return report


# --------------------------------------------------------------------------------------------------------------
# Is the scheduler alive? (read by /healthz)


@dataclass(frozen=True)
class SchedulerStatus:
    """The scheduler's health as /healthz reports it."""

    ok: bool
    clusters: int
    last_seen: datetime | None


def live_cluster_count() -> int:
    """How many django-q2 clusters are running right now, from the stats their sentinels publish.

    Each cluster's sentinel saves a ``Stat`` every guard cycle (0.5 s) with a 3-second expiry. The Redis broker
    keeps them in Redis; every other broker keeps them in the cache named by ``Q_CLUSTER["cache"]``, which must be
    shared between processes (a database or Redis cache) for the web process to see them: with the per-process
    default (local memory) this always returns 0. Any failure reading them counts as none.
    """
    try:
        stats = Stat.get_all(broker=_stats_broker())
    except Exception:
        logger.warning("Could not read django-q2 cluster stats", exc_info=True)
        return 0
    # The states are lazy translations; compare them as text in whatever language is active.
    gone = {str(Conf.STOPPED), str(Conf.STOPPING)}
    return sum(1 for stat in stats if str(getattr(stat, "status", Conf.STOPPED)) not in gone)


def _stats_broker() -> Broker:
    """The broker to read cluster stats through.

    The ORM broker stores stats through the base class (the cache), but building one closes the current database
    connection when it is older than CONN_MAX_AGE — with the default of 0, the connection /healthz just opened.
    So for the ORM broker read the cache through the base class; every other broker is built as configured
    (the Redis broker keeps stats in Redis itself).
    """
    if Conf.ORM and not (Conf.BROKER_CLASS or Conf.IRON_MQ or isinstance(Conf.SQS, dict)):
        return Broker(list_key=Conf.CLUSTER_NAME)
    return get_broker()


def last_heartbeat() -> datetime | None:
    """When the scheduler-heartbeat job last finished successfully, from django-q2's own result table.

    Matching the group (the schedule name, set by django-q2's scheduler) as well as the function means a
    heartbeat queued by hand cannot pass for the scheduler working. The newest success is never pruned by
    ``save_limit`` (django-q2 deletes the oldest first); ``save_limit`` must not be negative, or no success is
    stored at all.
    """
    return (
        Task.objects.filter(group=HEARTBEAT_JOB_NAME, func=HEARTBEAT_FUNC, success=True)
        .order_by("-stopped")
        .values_list("stopped", flat=True)
        .first()
    )


def scheduler_status(*, now: datetime | None = None, stale_after: timedelta) -> SchedulerStatus:
    """Whether periodic jobs are running: ok when a heartbeat finished within ``stale_after``.

    The heartbeat, not the cluster count, decides: a sentinel process can be alive while its scheduler or its
    workers are stuck, and what the platform needs is that due jobs actually run. The live cluster count is
    reported beside it for the operator. After a cold start the first heartbeat arrives within about a minute
    (django-q2's scheduler ticks every 30 s), so ``stale_after`` should be a few minutes.
    """
    now = now or timezone.now()
    clusters = live_cluster_count()
    last_seen = last_heartbeat()
    ok = last_seen is not None and now - last_seen <= stale_after
    return SchedulerStatus(ok=ok, clusters=clusters, last_seen=last_seen)
