"""The simulated clock: Python's time (time-machine) and this process's database clock, moved together.

The services read the time from ``django.utils.timezone.now()`` and take no ``now=`` argument on the paths a
simulation drives (order creation, confirmation, completion, the charge run), so the command travels in time
with time-machine, stopped (``tick=False``): every service call between two moves sees the same instant.

The database has a clock too: ledger postings are stamped by a trigger with PostgreSQL's ``now()``
(migration 0003), and settlement cuts business days on those stamps. Left alone, every posting of a 90-day
history would carry the minute the command ran, and no settlement run inside the history would find anything
to settle. So, for the command's own connections only, ``now()`` is shadowed: a function ``now()`` in the schema
:data:`CLOCK_SCHEMA` reads the session setting ``bnpl.sim_now``, and that schema is put before ``pg_catalog`` on
the session's ``search_path``. Other sessions (the web, the cluster) keep the real clock; the schema is dropped
when the clock stops. Every transaction opens after a move, so the ledger trigger's check that a posting and its
entries share one ``now()`` holds as it does in production.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import time_machine
from croniter import croniter
from django.db import connection
from django.db.backends.signals import connection_created
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Schedule

from bnpl.schedules import JobSpec

CLOCK_SCHEMA = "bnpl_simclock"
_SETTING = "bnpl.sim_now"
_INSTALL = f"""
CREATE SCHEMA IF NOT EXISTS {CLOCK_SCHEMA};
CREATE OR REPLACE FUNCTION {CLOCK_SCHEMA}.now() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(current_setting('{_SETTING}', true), '')::timestamptz, pg_catalog.now())
$$;
"""


class SimulatedClock:
    """A stopped clock that only moves forward when told to; a context manager.

    Inside it, ``timezone.now()`` and the database's ``now()`` (this process's connections) both read
    :attr:`now`. ``session_settings`` are further PostgreSQL settings for those connections while the clock runs.
    Leaving it restores all of them and drops the clock's schema.
    """

    def __init__(self, start: datetime, *, session_settings: dict[str, str] | None = None) -> None:
        self.now = start
        self.session_settings = dict(session_settings or {})
        self._traveller: Any = None
        self._coordinates: Any = None

    def __enter__(self) -> SimulatedClock:
        with connection.cursor() as cursor:
            cursor.execute(_INSTALL)
        connection_created.connect(self._on_connection, dispatch_uid="bnpl-simulated-clock")
        self._traveller = time_machine.travel(self.now, tick=False)
        self._coordinates = self._traveller.start()
        self._apply(connection.connection)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._traveller.stop()
        connection_created.disconnect(dispatch_uid="bnpl-simulated-clock")
        if connection.connection is not None:
            with connection.cursor() as cursor:
                resets = "".join(f"RESET {name}; " for name in (*self.session_settings, "search_path", _SETTING))
                cursor.execute(f"{resets}DROP SCHEMA IF EXISTS {CLOCK_SCHEMA} CASCADE")

    def move_to(self, moment: datetime) -> None:
        """Move to ``moment``; never backwards (a service may have stamped something with the current time)."""
        if moment < self.now:
            raise ValueError(f"the simulated clock cannot go back from {self.now} to {moment}")
        if moment == self.now:
            return
        self.now = moment
        self._coordinates.move_to(moment)
        self._apply(connection.connection)

    def _apply(self, raw: Any) -> None:
        if raw is None:  # not connected yet: connection_created sets it when the connection opens
            return
        settings = {
            **self.session_settings,
            "search_path": f'{CLOCK_SCHEMA}, pg_catalog, "$user", public',
            _SETTING: self.now.isoformat(),
        }
        with raw.cursor() as cursor:
            cursor.execute(
                "SELECT " + ", ".join("set_config(%s, %s, false)" for _name in settings),
                [part for item in settings.items() for part in item],
            )

    def _on_connection(self, sender: object, connection: Any, **kwargs: object) -> None:
        self._apply(connection.connection)


# --------------------------------------------------------------------------------------------------------------
# The scheduler, on the simulated clock


@dataclass
class ScheduledJob:
    """One declared job and when it next runs on the simulated clock."""

    spec: JobSpec
    call: Callable[..., object]
    kwargs: dict[str, Any]
    every: timedelta | None  # None for cron jobs
    next_run: datetime
    runs: int = 0
    seconds: float = 0.0  # wall time spent in the job (the command prints it with -v 2)

    def advance(self) -> None:
        self.runs += 1
        if self.every is not None:
            self.next_run += self.every
        else:
            self.next_run = croniter(self.spec.cron, timezone.localtime(self.next_run)).get_next(datetime)


_EVERY = {Schedule.HOURLY: timedelta(hours=1), Schedule.DAILY: timedelta(days=1), Schedule.WEEKLY: timedelta(weeks=1)}


def scheduled_jobs(
    jobs: Sequence[JobSpec], *, start: datetime, tick: timedelta, kwargs_override: dict[str, dict[str, Any]]
) -> list[ScheduledJob]:
    """The declared jobs as the scheduler would run them from ``start``, interval jobs at least ``tick`` apart.

    Cron jobs keep their exact times (02:00 settlement, 00:30 overdue close). An interval job that runs more
    often than ``tick`` runs once per tick instead: the jobs sweep whatever is due, so a coarser tick delays work
    by at most one tick and changes no outcome, and it keeps a 90-day history from running the one-minute jobs
    130,000 times. ``kwargs_override`` replaces a job's keyword arguments (see ``engine.JOB_KWARGS``).
    """
    scheduled = []
    for spec in jobs:
        kwargs = dict(kwargs_override.get(spec.name, spec.kwargs))
        if spec.schedule_type == Schedule.CRON:
            first = croniter(spec.cron, timezone.localtime(start) - timedelta(seconds=1)).get_next(datetime)
            scheduled.append(ScheduledJob(spec, import_string(spec.func), kwargs, None, first))
            continue
        if spec.schedule_type == Schedule.MINUTES:
            every = timedelta(minutes=spec.minutes or 1)
        elif spec.schedule_type in _EVERY:
            every = _EVERY[spec.schedule_type]
        else:
            raise ValueError(f"job {spec.name}: schedule type {spec.schedule_type} is not simulated")
        every = max(every, tick)
        scheduled.append(ScheduledJob(spec, import_string(spec.func), kwargs, every, start + every))
    return scheduled
