"""Project-level views: the health endpoint that load balancers and monitoring poll."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from bnpl.schedules import SchedulerStatus, scheduler_status

logger = logging.getLogger(__name__)


def check_database() -> dict[str, Any]:
    """Run ``SELECT 1`` on the default database; never raises.

    ``latency_ms`` is the wall time of the round trip, including the connect when the request had no open
    connection yet (with ``CONN_MAX_AGE=0`` that is every request), because that is what a page pays too.
    How long a dead server can stall this is bounded by the driver's ``connect_timeout``.
    """
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        ok = True
    except Exception as exc:
        # One line, not a traceback: load balancers probe every few seconds while the database is down.
        logger.error("Health check: database unreachable: %s", exc)
        ok = False
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return {"ok": ok, "latency_ms": latency_ms}


def check_scheduler() -> dict[str, Any]:
    """The django-q2 scheduler's health (see ``bnpl.schedules.scheduler_status``); never raises."""
    try:
        status = scheduler_status(stale_after=settings.BNPL_SCHEDULER_STALE_AFTER)
    except Exception:
        logger.exception("Health check: could not read the scheduler's state")
        status = SchedulerStatus(ok=False, clusters=0, last_seen=None)
    return _scheduler_payload(status)


def _scheduler_payload(status: SchedulerStatus) -> dict[str, Any]:
    return {
        "ok": status.ok,
        "clusters": status.clusters,
        "last_seen": status.last_seen.isoformat() if status.last_seen else None,
    }


@csrf_exempt  # outermost, so a POST gets the 405 below rather than a CSRF 403
@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Report whether this deployment can serve and whether its periodic jobs run.

    Status codes are chosen for load balancers: 200 whenever the database answers, even when the scheduler is
    down ("status": "degraded") — a web process without a scheduler still serves pages and the API, and taking
    it out of rotation would turn a background-job problem into an outage. 503 only when the database is down,
    because then no request can succeed. Monitoring should alert on "degraded" separately.

    The scheduler is "ok" when the scheduler-heartbeat job finished within ``BNPL_SCHEDULER_STALE_AFTER``
    (proof that the scheduler, the broker and a worker all work); ``clusters`` counts the clusters currently
    publishing stats. When the database is down the scheduler's state cannot be read (its evidence lives
    there) and is reported not ok.

    Open without login, GET only, never cached.
    """
    database = check_database()
    if database["ok"]:
        scheduler = check_scheduler()
    else:
        scheduler = _scheduler_payload(SchedulerStatus(ok=False, clusters=0, last_seen=None))
    body = {
        "status": "ok" if database["ok"] and scheduler["ok"] else "degraded",
        "database": database,
        "scheduler": scheduler,
        "version": getattr(settings, "BNPL_VERSION", "dev"),
    }
    response = JsonResponse(body, status=200 if database["ok"] else 503)
    response["Cache-Control"] = "no-store"
    return response
