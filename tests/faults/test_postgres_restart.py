"""Fault: PostgreSQL is restarted (fast shutdown) in the middle of a charge run.

Not the shared server: a throwaway cluster of this test's own (``tests/faults/pg_cluster.py``), with the
test database's schema. Due orders are generated there, a real worker (``manage.py run_charges``) charges
them, and at a random point of its run, with attempts in flight, ``pg_ctl restart -m fast`` disconnects
every session and rolls back every open transaction.

The worker may resume or error out; it must not hang, and if it errors out it is because of the lost
connection. Then, 15 minutes later (time-machine; past ``BNPL_CHARGE_RUN_STALE_AFTER`` and the resend and
reconcile delays, so the real settings apply), the next charge run and the reconcile job finish the work:
every order charged exactly once (one provider charge, one succeeded attempt), nothing pending or unknown,
no run left "running", the ledger balanced.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bnpl.charging import reconcile_unknown_attempts, run_charges
from bnpl.gateway.services import sandbox_faults_set
from bnpl.models import ChargeAttempt, ChargeRun, SandboxCharge
from bnpl.models.charging import AttemptStatus, ChargeRunStatus
from tests.bnpl.charging_helpers import ChargeWorker, assert_charged_exactly_once, bulk_due_orders, wait_until_mid_run
from tests.factories import ListingFactory
from tests.faults.pg_cluster import ThrowawayCluster, default_database, find_bindir

ORDERS = 100
CHUNK = 20
# What a worker that lost its database connection may say on its way out (Django's wrappers of psycopg's).
CONNECTION_ERRORS = ("OperationalError", "InterfaceError")


@pytest.fixture(scope="module")
def cluster(django_db_setup):
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) found: set BNPL_PG_BINDIR to run this test")
    cluster = ThrowawayCluster(bindir)
    try:
        cluster.start()
        cluster.copy_schema_from(connection.settings_dict)  # the test database, set up by django_db_setup
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def on_cluster(cluster, django_db_blocker):
    """The test's ORM (all threads) talks to the throwaway cluster's database."""
    with django_db_blocker.unblock(), default_database(cluster.settings):
        yield cluster


# The marker makes pytest-django set up the test database (whose schema the cluster copies); the test itself
# runs on the cluster, and the (empty) test database is flushed afterwards as usual.
@pytest.mark.django_db(transaction=True)
def test_a_postgres_restart_mid_run_loses_nothing_and_doubles_nothing(on_cluster):
    restart_after = random.randrange(CHUNK, ORDERS - 2 * CHUNK)
    print(f"restart after {restart_after} succeeded attempts")
    listing = ListingFactory()
    order_ids = bulk_due_orders(listing, orders=ORDERS, consumers=ORDERS // 3)
    sandbox_faults_set(actor=None, latency_ms=20)  # keeps the run going long enough to be hit mid-way

    with ChargeWorker(on_cluster.url, "--threads=4", f"--chunk-size={CHUNK}") as worker:
        wait_until_mid_run(worker, succeeded=restart_after)
        connection.close()  # this process's session would be cut too; it reconnects afterwards
        on_cluster.restart()
        worker.wait(timeout=60)  # resumed and finished, or errored out: either way it must not hang
        errors = worker.stderr_text()
    assert worker.returncode in (0, 1), errors
    if worker.returncode:
        assert any(name in errors for name in CONNECTION_ERRORS), errors  # it died of the lost connection
    interrupted = ChargeRun.objects.get()
    charged_by_interrupted = ChargeAttempt.objects.filter(status=AttemptStatus.SUCCEEDED).count()
    assert charged_by_interrupted >= restart_after

    sandbox_faults_set(actor=None)
    later = timezone.now() + settings.BNPL_CHARGE_RUN_STALE_AFTER + timedelta(seconds=1)
    with time_machine.travel(later, tick=True):
        survivor = run_charges(threads=4, chunk_size=50)
        reconcile_unknown_attempts()

    interrupted.refresh_from_db()
    assert interrupted.status in (ChargeRunStatus.FINISHED, ChargeRunStatus.FAILED)  # never left "running"
    assert survivor.status == ChargeRunStatus.FINISHED and survivor.errors == 0
    assert survivor.succeeded + charged_by_interrupted <= ORDERS
    assert not ChargeRun.objects.filter(status=ChargeRunStatus.RUNNING).exists()
    assert SandboxCharge.objects.count() == ORDERS
    assert_charged_exactly_once(order_ids, fee_rate=listing.merchant.fee_rate)
