"""Schedules as code: the declared jobs and `manage.py setup_schedules` writing them to django-q2."""

import importlib
from datetime import datetime, timedelta
from io import StringIO
from unittest import mock

import pytest
from croniter import croniter
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from bnpl import schedules
from bnpl.schedules import JOBS, JobSpec, schedules_sync

pytestmark = pytest.mark.django_db

MANAGED = ("func", "schedule_type", "minutes", "cron", "kwargs", "args", "hook", "cluster", "intended_date_kwarg")


def run(*args):
    out = StringIO()
    call_command("setup_schedules", *args, stdout=out)
    return out.getvalue()


def snapshot():
    return sorted(
        Schedule.objects.values_list("pk", "name", *MANAGED, "repeats", "next_run"),
        key=lambda row: row[0],
    )


def row_for(job):
    return Schedule.objects.get(name=job.name)


# --- the declaration


def test_declares_expiry_and_heartbeat_every_minute():
    by_name = {job.name: job for job in JOBS}

    # The first two jobs are the foundation's; later issues append theirs (and test them where they live).
    assert [job.name for job in JOBS[:2]] == ["expire-pending-orders", "scheduler-heartbeat"]
    assert len(by_name) == len(JOBS)
    expiry = by_name["expire-pending-orders"]
    assert (expiry.func, expiry.schedule_type, expiry.minutes, expiry.cron) == (
        "bnpl.tasks.expire_pending_orders",
        Schedule.MINUTES,
        1,
        None,
    )
    assert dict(expiry.kwargs) == {"limit": 500}
    heartbeat = by_name["scheduler-heartbeat"]
    assert (heartbeat.func, heartbeat.schedule_type, heartbeat.minutes) == (
        "bnpl.schedules.heartbeat",
        Schedule.MINUTES,
        1,
    )
    assert all(job.description for job in JOBS)


def test_every_declared_function_is_importable():
    for job in JOBS:
        module_path, func_name = job.func.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module_path), func_name)), job.func


def test_heartbeat_does_nothing_but_return_when_it_ran():
    before = timezone.now()

    ran_at = datetime.fromisoformat(schedules.heartbeat())

    assert before <= ran_at <= timezone.now()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule_type": Schedule.CRON, "cron": "61 * * * *"}, "invalid cron"),
        ({"schedule_type": Schedule.CRON, "cron": "0 2 * * *", "minutes": 5}, "takes no minutes"),
        ({"schedule_type": Schedule.MINUTES}, "minutes is required"),
        ({"schedule_type": Schedule.DAILY, "minutes": 5}, "minutes is required"),
        ({"schedule_type": Schedule.MINUTES, "minutes": 0}, "between 1 and"),
        ({"schedule_type": Schedule.HOURLY, "cron": "0 2 * * *"}, "only cron jobs"),
        ({"schedule_type": Schedule.ONCE}, "not periodic"),
        ({"schedule_type": Schedule.HOURLY, "func": "no_module"}, "dotted path"),
        ({"schedule_type": Schedule.HOURLY, "kwargs": {"at": timezone.now()}}, "literals"),
    ],
)
def test_job_spec_rejects_invalid_declarations(spec, message):
    fields = {"name": "job", "func": "bnpl.tasks.job", **spec}

    with pytest.raises(ValueError, match=message):
        JobSpec(**fields)


def test_sync_rejects_duplicate_job_names():
    job = JobSpec(name="twice", func="bnpl.tasks.x", schedule_type=Schedule.HOURLY)

    with pytest.raises(ValueError, match="Duplicate job names"):
        schedules_sync(jobs=[job, job])
    assert Schedule.objects.count() == 0


# --- setup_schedules


def test_setup_schedules_creates_every_declared_job():
    before = timezone.now()

    output = run()

    assert Schedule.objects.count() == len(JOBS)
    for job in JOBS:
        row = row_for(job)
        assert row.func == job.func
        assert row.schedule_type == job.schedule_type
        assert row.minutes == job.minutes
        assert row.cron == job.cron
        assert row.kwargs == (repr(dict(job.kwargs)) if job.kwargs else None)
        assert row.repeats == -1
        assert (row.args, row.hook, row.cluster, row.intended_date_kwarg) == (None, None, None, None)
        if job.cron:
            # A cron job starts at its next occurrence, never "now".
            assert row.next_run == croniter(job.cron, timezone.localtime(before)).get_next(datetime)
        else:
            # Interval jobs start at the cluster's next scheduler tick.
            assert before <= row.next_run <= timezone.now()
    assert row_for(JOBS[0]).kwargs == "{'limit': 500}"
    assert row_for(JOBS[1]).kwargs is None
    assert output.splitlines() == [f"created: {job.name}" for job in JOBS]


def test_setup_schedules_second_run_changes_nothing():
    run()
    before = snapshot()

    output = run()

    assert snapshot() == before
    assert output.splitlines() == [
        *(f"kept: {job.name}" for job in JOBS),
        "Schedules are up to date; nothing changed.",
    ]


def test_setup_schedules_restores_a_hand_edited_row_and_keeps_its_id():
    run()
    edited = row_for(JOBS[0])
    pk = edited.pk
    edited.func = "bnpl.tasks.something_else"
    edited.minutes = 5
    edited.kwargs = "limit=1"
    edited.args = "1, 2"
    edited.hook = "bnpl.tasks.hook"
    edited.cluster = "elsewhere"
    edited.repeats = 0
    edited.save()
    untouched = row_for(JOBS[1])

    output = run()

    restored = row_for(JOBS[0])
    assert restored.pk == pk
    assert (restored.func, restored.minutes, restored.kwargs, restored.args, restored.hook, restored.cluster) == (
        "bnpl.tasks.expire_pending_orders",
        1,
        "{'limit': 500}",
        None,
        None,
        None,
    )
    assert restored.repeats == -1
    assert row_for(JOBS[1]).next_run == untouched.next_run
    assert output.splitlines() == [
        "updated: expire-pending-orders (func, minutes, kwargs, args, hook, cluster, repeats)",
        *(f"kept: {job.name}" for job in JOBS[1:]),
    ]
    assert "nothing changed" in run()


def test_setup_schedules_deletes_orphans_and_duplicates():
    run()
    declared_pks = sorted(row_for(job).pk for job in JOBS)
    legacy = Schedule.objects.create(name="legacy-report", func="bnpl.tasks.old_report", schedule_type=Schedule.DAILY)
    unnamed = Schedule.objects.create(func="bnpl.tasks.adhoc", schedule_type=Schedule.HOURLY)
    duplicate = Schedule.objects.create(
        name="scheduler-heartbeat", func="bnpl.schedules.heartbeat", schedule_type=Schedule.MINUTES, minutes=1
    )

    output = run()

    assert sorted(Schedule.objects.values_list("pk", flat=True)) == declared_pks
    assert output.splitlines() == [
        f"deleted: legacy-report #{legacy.pk} (bnpl.tasks.old_report)",
        f"deleted: (unnamed) #{unnamed.pk} (bnpl.tasks.adhoc)",
        f"deleted: scheduler-heartbeat #{duplicate.pk} (bnpl.schedules.heartbeat)",
        *(f"kept: {job.name}" for job in JOBS),
    ]


def test_setup_schedules_dry_run_writes_nothing():
    output = run("--dry-run")

    assert Schedule.objects.count() == 0
    assert output.splitlines() == [
        *(f"would be created: {job.name}" for job in JOBS),
        "Dry run: nothing was written.",
    ]


def test_setup_schedules_dry_run_reports_but_keeps_edits_and_orphans():
    run()
    row = row_for(JOBS[1])
    row.minutes = 10
    row.save()
    orphan = Schedule.objects.create(name="legacy", func="bnpl.tasks.old", schedule_type=Schedule.HOURLY)
    before = snapshot()

    output = run("--dry-run")

    assert snapshot() == before
    assert output.splitlines() == [
        "would be updated: scheduler-heartbeat (minutes)",
        f"would be deleted: legacy #{orphan.pk} (bnpl.tasks.old)",
        *(f"kept: {job.name}" for job in JOBS if job is not JOBS[1]),
        "Dry run: nothing was written.",
    ]


def test_sync_is_all_or_nothing():
    orphan = Schedule.objects.create(name="legacy", func="bnpl.tasks.old", schedule_type=Schedule.HOURLY)

    with (
        mock.patch.object(Schedule, "delete", side_effect=RuntimeError("disk full")),
        pytest.raises(RuntimeError, match="disk full"),
    ):
        schedules_sync()

    # The declared jobs were created before the failing delete, and rolled back with it.
    assert list(Schedule.objects.values_list("pk", flat=True)) == [orphan.pk]


def test_sync_report_of_a_fresh_table():
    report = schedules_sync()

    assert report.created == [job.name for job in JOBS]
    assert (report.updated, report.deleted, report.kept, report.changed) == ({}, [], [], True)


# --- when a corrected schedule runs next


def test_cron_job_is_created_at_its_next_occurrence():
    nightly = JobSpec(name="nightly", func="bnpl.tasks.nightly", schedule_type=Schedule.CRON, cron="0 2 * * *")

    schedules_sync(jobs=[nightly])

    expected = croniter("0 2 * * *", timezone.localtime()).get_next(datetime)
    assert Schedule.objects.get(name="nightly").next_run == expected


def test_changed_cron_expression_moves_next_run_to_its_next_occurrence_not_now():
    schedules_sync(jobs=[JobSpec(name="nightly", func="bnpl.tasks.n", schedule_type=Schedule.CRON, cron="0 2 * * *")])

    report = schedules_sync(
        jobs=[JobSpec(name="nightly", func="bnpl.tasks.n", schedule_type=Schedule.CRON, cron="30 3 * * *")]
    )

    assert report.updated == {"nightly": ["cron", "next_run"]}
    row = Schedule.objects.get(name="nightly")
    assert row.next_run == croniter("30 3 * * *", timezone.localtime()).get_next(datetime)
    assert row.next_run > timezone.now()


def test_shortened_interval_takes_effect_within_one_new_interval():
    hourly = JobSpec(name="sweep", func="bnpl.tasks.sweep", schedule_type=Schedule.MINUTES, minutes=60)
    schedules_sync(jobs=[hourly])
    Schedule.objects.filter(name="sweep").update(next_run=timezone.now() + timedelta(minutes=55))

    before = timezone.now()
    schedules_sync(jobs=[JobSpec(name="sweep", func="bnpl.tasks.sweep", schedule_type=Schedule.MINUTES, minutes=5)])

    next_run = Schedule.objects.get(name="sweep").next_run
    assert before + timedelta(minutes=5) <= next_run <= timezone.now() + timedelta(minutes=5)


def test_lengthened_interval_keeps_the_pending_run():
    schedules_sync(jobs=[JobSpec(name="sweep", func="bnpl.tasks.sweep", schedule_type=Schedule.MINUTES, minutes=1)])
    pending = timezone.now() + timedelta(seconds=40)
    Schedule.objects.filter(name="sweep").update(next_run=pending)

    report = schedules_sync(
        jobs=[JobSpec(name="sweep", func="bnpl.tasks.sweep", schedule_type=Schedule.MINUTES, minutes=30)]
    )

    assert report.updated == {"sweep": ["minutes"]}
    assert Schedule.objects.get(name="sweep").next_run == pending


def test_missing_next_run_is_repaired_because_it_would_never_fire():
    run()
    Schedule.objects.filter(name="scheduler-heartbeat").update(next_run=None)

    before = timezone.now()
    output = run()

    assert "updated: scheduler-heartbeat (next_run)" in output.splitlines()
    assert before <= row_for(JOBS[1]).next_run <= timezone.now()
