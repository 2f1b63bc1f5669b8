"""Long portal work in the background (``MerchantTask``): start, run once, report progress, attach a file.

How to use it (exports, bulk imports, anything that outlasts a request):

1. Write a *runner*: a module-level function ``runner(task, progress) -> TaskOutcome``. ``task`` is the
   ``MerchantTask`` (read ``task.params`` and ``task.merchant``); call ``progress(done, total)`` as it goes
   (cheap: it writes at most every :data:`PROGRESS_EVERY_S` seconds, and always at the end). Return a
   :class:`TaskOutcome` with a JSON-safe ``summary`` and, for a download, ``file_name`` and ``content``
   (bytes). Raise ``bnpl.exceptions.DomainError`` (or any exception) to fail the task: a ``DomainError``'s
   message is shown to the member, any other error shows a generic message and is logged.
2. Start it from the view, after validating the input::

       from merchants.task_runner import merchant_task_start

       task = merchant_task_start(
           member=request.member, kind=MerchantTaskKind.IMPORT_LISTINGS,
           params={"rows": rows}, runner_path="merchants.portal.listings.import_listings_runner",
       )
       return redirect("merchant:task", task_id=task.pk)

   The row is created queued and handed to the django-q2 cluster (``async_task``) when the transaction
   commits. ``params`` must be JSON-safe; keep it small (the row holds it), e.g. ids and filters, not files.
3. ``merchant:task`` (GET /merchant/tasks/<id>/, in ``bnpl/merchant_portal/tasks.py``) shows the progress bar,
   which polls with htmx every second until the task ends, then the summary, the error, or the download
   link (``merchant:task_download``). Both are scoped to the member's merchant (other ids → 404).

Running a task twice is safe: :func:`merchant_task_run` starts only a queued task (a conditional UPDATE), so a
duplicate delivery by the cluster does nothing. ``runner_path`` is kept in ``params["_runner"]``. A task still
running after the cluster's timeout (its worker was killed) is marked failed when its page is next polled
(:func:`merchant_task_fail_if_stale`).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from bnpl.exceptions import DomainError

from .choices import MerchantTaskStatus
from .models import MerchantMember, MerchantTask

logger = logging.getLogger(__name__)

RUNNER_KEY = "_runner"
#: The progress bar is polled every second; writing more often than this is wasted work.
PROGRESS_EVERY_S = 0.5
#: The django-q2 function the cluster calls with the task's id.
RUN_FUNCTION = "merchants.task_runner.merchant_task_run"

Progress = Callable[[int, int], None]


@dataclass
class TaskOutcome:
    """What a runner hands back: a JSON-safe summary and, optionally, a file to download."""

    summary: dict[str, Any] = field(default_factory=dict)
    file_name: str = ""
    content: bytes = b""


def merchant_task_start(*, member: MerchantMember, kind: str, params: dict[str, Any], runner_path: str) -> MerchantTask:
    """Create a queued task for ``member``'s merchant and queue its run once the transaction commits."""
    _resolve(runner_path)  # fail now, in the request, rather than later in the cluster
    task = MerchantTask.objects.create(
        merchant=member.merchant,
        created_by=member.user,
        kind=kind,
        params={**params, RUNNER_KEY: runner_path},
    )
    transaction.on_commit(lambda: _enqueue(task.pk))
    return task


def _enqueue(task_id: int) -> None:
    from django_q.tasks import async_task

    async_task(RUN_FUNCTION, task_id, task_name=f"merchant-task-{task_id}")


def _resolve(runner_path: str) -> Callable[[MerchantTask, Progress], TaskOutcome]:
    module_name, _, attr = runner_path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def merchant_task_run(task_id: int) -> str:
    """Run task ``task_id`` if it is still queued; returns its final status (or the status it was left in)."""
    started = MerchantTask.objects.filter(pk=task_id, status=MerchantTaskStatus.QUEUED).update(
        status=MerchantTaskStatus.RUNNING, started_at=timezone.now()
    )
    task = MerchantTask.objects.select_related("merchant").filter(pk=task_id).first()
    if task is None:
        return "missing"
    if not started:
        return task.status
    last_write = 0.0

    def progress(done: int, total: int, *, force: bool = False) -> None:
        nonlocal last_write
        now = time.monotonic()
        if not force and now - last_write < PROGRESS_EVERY_S:
            return
        last_write = now
        total = max(total, 0)
        done = min(max(done, 0), total) if total else 0
        task.done, task.total = done, total
        MerchantTask.objects.filter(pk=task_id).update(done=done, total=total)

    try:
        outcome = _resolve(task.params[RUNNER_KEY])(task, progress)
    except DomainError as exc:
        _finish(task, status=MerchantTaskStatus.FAILED, error=str(exc.message))
    except Exception:
        logger.exception("merchant task %s failed", task_id)
        _finish(task, status=MerchantTaskStatus.FAILED, error=gettext("The task failed. Please try again later."))
    else:
        if task.total:
            progress(task.total, task.total, force=True)
        if outcome.file_name:
            task.result_file.save(outcome.file_name, ContentFile(outcome.content), save=False)
        task.result = outcome.summary
        _finish(task, status=MerchantTaskStatus.SUCCEEDED)
    return task.status


def stale_after() -> timedelta:
    """How long a task may stay running: past the cluster's timeout its worker has been killed."""
    return timedelta(seconds=int(settings.Q_CLUSTER.get("timeout", 300)) + 60)


def merchant_task_fail_if_stale(task: MerchantTask) -> MerchantTask:
    """Mark ``task`` failed if it has been running longer than a worker may live (its worker died); returns it.

    Called by the progress page, so a dead task stops being polled and says so instead of spinning forever.
    """
    if task.status != MerchantTaskStatus.RUNNING or task.started_at is None:
        return task
    if task.started_at > timezone.now() - stale_after():
        return task
    updated = MerchantTask.objects.filter(pk=task.pk, status=MerchantTaskStatus.RUNNING).update(
        status=MerchantTaskStatus.FAILED,
        error=gettext("The task stopped before it finished. Please start it again."),
        finished_at=timezone.now(),
    )
    if updated:
        task.refresh_from_db()
    return task


def _finish(task: MerchantTask, *, status: str, error: str = "") -> None:
    task.status = status
    task.error = error
    task.finished_at = timezone.now()
    task.save(update_fields=["status", "error", "finished_at", "result", "result_file", "done", "total"])
