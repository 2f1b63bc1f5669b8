"""/healthz: database and scheduler checks, status codes for load balancers, and its HTTP contract."""

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import caches
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone
from django_q.brokers import Broker
from django_q.conf import Conf
from django_q.models import Task
from django_q.signing import SignedPackage
from django_q.status import Stat, Status

from bnpl import views
from bnpl.schedules import HEARTBEAT_FUNC, HEARTBEAT_JOB_NAME

pytestmark = pytest.mark.django_db

URL = "/healthz"


@pytest.fixture(autouse=True)
def _empty_cluster_stats():
    # Cluster stats live in django-q2's cache (local memory in tests); start and end every test without any.
    caches[Conf.CACHE].clear()
    yield
    caches[Conf.CACHE].clear()


def make_task(*, stopped, func=HEARTBEAT_FUNC, group=HEARTBEAT_JOB_NAME, success=True):
    return Task.objects.create(
        id=uuid.uuid4().hex,
        name=f"heartbeat-{uuid.uuid4().hex[:8]}",
        func=func,
        group=group,
        started=stopped - timedelta(milliseconds=5),
        stopped=stopped,
        result=None,
        success=success,
    )


def publish_cluster_stat(*, status=Conf.IDLE):
    """What a running cluster's sentinel does every guard cycle: save its Stat in django-q2's cache."""
    stat = Status(pid=4242, cluster_id=uuid.uuid4())
    stat.status = status
    Broker().set_stat(Stat.get_key(stat.cluster_id), SignedPackage.dumps(stat, True), 3)
    return stat


def test_healthz_url_is_named():
    assert reverse("healthz") == URL


def test_healthz_ok_with_database_up_and_fresh_heartbeat(client):
    heartbeat = make_task(stopped=timezone.now() - timedelta(seconds=20))

    response = client.get(URL)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"status", "database", "scheduler", "version"}
    assert set(body["database"]) == {"ok", "latency_ms"}
    assert set(body["scheduler"]) == {"ok", "clusters", "last_seen"}
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert isinstance(body["database"]["latency_ms"], float)
    assert body["database"]["latency_ms"] >= 0
    assert body["scheduler"] == {"ok": True, "clusters": 0, "last_seen": heartbeat.stopped.isoformat()}
    assert body["version"] == "dev"


def test_healthz_reports_configured_version(client, settings):
    settings.BNPL_VERSION = "2026.11.25-abc1234"

    assert client.get(URL).json()["version"] == "2026.11.25-abc1234"


def test_healthz_degraded_but_200_when_no_heartbeat_ever(client):
    response = client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    assert body["scheduler"] == {"ok": False, "clusters": 0, "last_seen": None}


def test_healthz_degraded_when_newest_heartbeat_is_older_than_stale_window(client, settings):
    settings.BNPL_SCHEDULER_STALE_AFTER = timedelta(minutes=3)
    make_task(stopped=timezone.now() - timedelta(minutes=10))
    newest = make_task(stopped=timezone.now() - timedelta(minutes=3, seconds=5))

    response = client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["scheduler"] == {"ok": False, "clusters": 0, "last_seen": newest.stopped.isoformat()}


def test_healthz_stale_window_comes_from_settings(client, settings):
    make_task(stopped=timezone.now() - timedelta(minutes=5))
    settings.BNPL_SCHEDULER_STALE_AFTER = timedelta(minutes=10)

    assert client.get(URL).json()["scheduler"]["ok"] is True


def test_healthz_ignores_failed_heartbeats_and_heartbeats_not_from_the_scheduler(client):
    now = timezone.now()
    make_task(stopped=now, success=False)
    make_task(stopped=now, group=None)  # queued by hand with async_task: proves workers, not the scheduler
    make_task(stopped=now, func="bnpl.tasks.expire_pending_orders", group="expire-pending-orders")

    body = client.get(URL).json()

    assert body["status"] == "degraded"
    assert body["scheduler"] == {"ok": False, "clusters": 0, "last_seen": None}


def test_healthz_counts_running_clusters_from_their_published_stats(client):
    publish_cluster_stat(status=Conf.IDLE)
    publish_cluster_stat(status=Conf.WORKING)
    publish_cluster_stat(status=Conf.STOPPED)  # a cluster saying goodbye is not running
    heartbeat = make_task(stopped=timezone.now())

    body = client.get(URL).json()

    assert body["scheduler"] == {"ok": True, "clusters": 2, "last_seen": heartbeat.stopped.isoformat()}


def test_healthz_live_cluster_without_heartbeat_is_still_degraded(client):
    # A sentinel can be alive while its scheduler or workers are stuck: only a finished heartbeat proves jobs run.
    publish_cluster_stat()

    response = client.get(URL)

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["scheduler"] == {"ok": False, "clusters": 1, "last_seen": None}


def test_healthz_503_when_database_down(client):
    make_task(stopped=timezone.now())
    down = {"ok": False, "latency_ms": 3001.5}

    with (
        mock.patch.object(views, "check_database", return_value=down),
        mock.patch.object(views, "check_scheduler") as check_scheduler,
    ):
        response = client.get(URL)

    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "status": "degraded",
        "database": {"ok": False, "latency_ms": 3001.5},
        "scheduler": {"ok": False, "clusters": 0, "last_seen": None},
        "version": "dev",
    }
    # Its evidence lives in the database: not even tried, so a dead server is not waited for twice.
    assert check_scheduler.call_count == 0


def test_check_database_reports_failure_instead_of_raising():
    broken = mock.Mock()
    broken.cursor.side_effect = OperationalError("connection refused")

    with mock.patch.object(views, "connection", broken):
        result = views.check_database()

    assert result["ok"] is False
    assert isinstance(result["latency_ms"], float)


def test_check_database_ok_against_real_database():
    result = views.check_database()

    assert result["ok"] is True
    assert result["latency_ms"] >= 0


def test_check_scheduler_reports_not_ok_instead_of_raising():
    with mock.patch("bnpl.schedules.last_heartbeat", side_effect=OperationalError("gone")):
        assert views.check_scheduler() == {"ok": False, "clusters": 0, "last_seen": None}


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_healthz_rejects_methods_other_than_get(client, method):
    response = getattr(client, method)(URL)

    assert response.status_code == 405
    assert response["Allow"] == "GET"


def test_healthz_post_gets_405_not_csrf_403_when_csrf_enforced():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(URL)

    assert response.status_code == 405


def test_healthz_is_never_cached(client):
    assert client.get(URL)["Cache-Control"] == "no-store"


def test_healthz_open_without_login_even_with_login_required_middleware(client, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]

    response = client.get(URL)

    assert response.status_code == 200
    assert response.json()["database"]["ok"] is True
