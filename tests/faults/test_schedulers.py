"""Fault: two schedulers on the same tick, and a scheduler that was down for hours.

These run django-q2's own scheduler (``django_q.scheduler.scheduler``, what each cluster's sentinel calls every
30 s) against the ``Schedule`` rows ``setup_schedules`` writes from ``bnpl.schedules.JOBS``, with a real broker:
the ORM broker (the deployment default) and Redis at 127.0.0.1:6379, each under a queue name of its own.

What django-q2 1.11 does, read from its source: the scheduler selects the due rows (``next_run < now``) with
``SELECT … FOR UPDATE`` inside one transaction, enqueues a task per row, moves ``next_run`` on and commits. A
second scheduler at the same moment blocks on those row locks; when it gets them PostgreSQL re-checks
``next_run < now`` against the committed rows, which are no longer due, so it enqueues nothing. With
``catch_up: False`` (``Q_CLUSTER`` in settings) the next run after downtime is the first future occurrence,
so a job that missed many ticks runs once, not once per missed tick.

A task that is enqueued once can still run twice (a worker dies before acknowledging it and the broker
redelivers it after ``retry``); ``test_jobs_run_twice.py`` shows every job has one effect when that happens.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import pytest
import redis
from django.db import connection
from django.utils import timezone
from django_q.brokers import Broker
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule
from django_q.scheduler import scheduler
from django_q.signing import SignedPackage

from bnpl.schedules import JOBS, schedules_sync
from tests.bnpl.helpers import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)

# How long the first scheduler waits, holding its row locks, for the second to queue behind them.
OVERLAP_WAIT_S = 10.0
_BLOCKED_BY_ME = "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"


def _another_backend_waits_for_my_locks(timeout_s: float) -> bool:
    """Whether, within ``timeout_s``, some other PostgreSQL session is blocked by this one (read live)."""
    deadline = time.monotonic() + timeout_s
    with connection.cursor() as cursor:
        while True:
            # pg_stat_activity is snapshotted once per transaction; drop the snapshot to see new sessions.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(_BLOCKED_BY_ME)
            if cursor.fetchone()[0]:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


_COUNT_LOCK = threading.Lock()


class _Gated:
    """Mixin for a real broker: counts enqueues and, when ``gated``, makes the schedulers really overlap.

    The first enqueue (made by whichever scheduler holds the due rows' locks, inside its transaction) waits
    until PostgreSQL shows another session blocked by this one: the other scheduler, queued on the same
    rows. ``saw_overlap`` records that it did, whatever the machine's load.
    """

    gated = False
    enqueued = 0
    saw_overlap = False

    def enqueue(self, task: str) -> object:
        with _COUNT_LOCK:
            first = self.enqueued == 0
            self.enqueued += 1
        if first and self.gated:
            self.saw_overlap = _another_backend_waits_for_my_locks(OVERLAP_WAIT_S)
        return super().enqueue(task)  # type: ignore[misc]


class GatedOrm(_Gated, ORM):
    pass


class GatedRedis(_Gated, Redis):
    pass


def _queued(broker: Broker) -> list[dict]:
    """The tasks waiting in the broker's queue, decoded."""
    if isinstance(broker, ORM):
        return [row.task for row in OrmQ.objects.filter(key=broker.list_key).order_by("pk")]
    return [SignedPackage.loads(raw) for raw in broker.connection.lrange(broker.list_key, 0, -1)]


@pytest.fixture(params=["orm", "redis"])
def broker(request) -> Iterator[Broker]:
    name = f"bnpl-faults-{secrets.token_hex(4)}"
    if request.param == "orm":
        yield GatedOrm(list_key=name)
        return
    try:
        broker = GatedRedis(list_key=name)
        broker.connection.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis at the configured address")
    yield broker
    broker.delete_queue()


def _schedules_due(*, since: timedelta) -> None:
    """The declared schedules, every one of them due since ``since`` ago (the same tick for all)."""
    schedules_sync()
    assert Schedule.objects.count() == len(JOBS)
    Schedule.objects.update(next_run=timezone.now() - since)


def _two_schedulers_at_once(broker: _Gated) -> None:
    """django-q2's scheduler on two threads, each with its own connection, released together."""
    broker.gated = True
    try:
        results = run_concurrently(lambda: scheduler(broker=broker), lambda: scheduler(broker=broker))
    finally:
        broker.gated = False
    assert not [r for r in results if isinstance(r, BaseException)], results


def _assert_each_job_queued_once(broker: Broker) -> None:
    tasks = _queued(broker)
    assert Counter(task["group"] for task in tasks) == Counter({job.name: 1 for job in JOBS})
    assert {task["group"]: task["func"] for task in tasks} == {job.name: job.func for job in JOBS}


def _assert_next_runs_in_the_future() -> None:
    now = timezone.now()
    assert not Schedule.objects.filter(next_run__lte=now).exists()
    # Interval jobs are next due within one interval; nothing was pushed further than a day (the longest).
    assert not Schedule.objects.filter(next_run__gt=now + timedelta(days=1, minutes=1)).exists()


def test_two_schedulers_on_the_same_tick_enqueue_each_due_schedule_once(broker):
    _schedules_due(since=timedelta(seconds=1))

    _two_schedulers_at_once(broker)

    assert broker.enqueued == len(JOBS)  # one enqueue per schedule in all, not per scheduler
    _assert_each_job_queued_once(broker)
    _assert_next_runs_in_the_future()
    assert broker.saw_overlap, "the second scheduler never waited on the first one's row locks"


def test_after_hours_of_downtime_each_job_runs_once_and_next_run_moves_to_the_future():
    broker = GatedOrm(list_key=f"bnpl-faults-{secrets.token_hex(4)}")
    assert Conf.CATCH_UP is False  # Q_CLUSTER["catch_up"]: what this test is about
    _schedules_due(since=timedelta(hours=6))  # 360 missed ticks of the every-minute jobs

    # Both clusters come back at once after the outage.
    _two_schedulers_at_once(broker)

    _assert_each_job_queued_once(broker)
    _assert_next_runs_in_the_future()
    assert broker.saw_overlap
    # The next tick, a moment later, finds nothing due.
    scheduler(broker=broker)
    assert len(_queued(broker)) == len(JOBS)

    # The contrast that shows the setting matters: with catch_up on, django-q2 would replay the missed ticks,
    # one per scheduler cycle (every 30 s), because next_run only moves one interval each time.
    OrmQ.objects.filter(key=broker.list_key).delete()
    Schedule.objects.update(next_run=timezone.now() - timedelta(hours=6))
    every_minute = [job.name for job in JOBS if job.schedule_type == Schedule.MINUTES and job.minutes == 1]
    with mock.patch.object(Conf, "CATCH_UP", True):
        scheduler(broker=broker)
        scheduler(broker=broker)
    queued = Counter(task["group"] for task in _queued(broker))
    assert every_minute and all(queued[name] == 2 for name in every_minute)
    assert Schedule.objects.filter(name__in=every_minute, next_run__lt=timezone.now()).count() == len(every_minute)
