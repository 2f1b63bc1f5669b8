"""Fault: the worker doing a charge run is killed with SIGKILL, at a random point, again and again.

Each round is its own test (a fresh database): due orders, a real worker process (``manage.py run_charges``
against the test database) killed with SIGKILL at a random point of its run, then another run that
finishes. The point is random in two ways: how many attempts have succeeded when the kill is armed, and a
random delay after that, so kills land in every step of a chunk (claim, gateway calls, recording).

The survivor runs with the real settings, not a shortcut: the clock (time-machine) is moved past
``BNPL_CHARGE_RUN_STALE_AFTER``, which is also past ``BNPL_CHARGE_RESEND_PENDING_AFTER``, so the killed run is
marked failed and its pending attempts are sent again with their own keys, as they would be in production
15 minutes later.

Rounds: ``BNPL_FAULT_REPEATS`` (default 5, what CI runs; the nightly job sets 50). The random points come from
``BNPL_FAULT_SEED`` (default: a new seed each session, printed with a failure so it can be replayed).
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bnpl.charging import run_charges
from bnpl.gateway.services import sandbox_faults_set
from bnpl.models import ChargeAttempt, ChargeRun
from bnpl.models.charging import AttemptStatus, ChargeRunStatus
from tests.bnpl.charging_helpers import (
    ChargeWorker,
    assert_charged_exactly_once,
    bulk_due_orders,
    database_url,
    wait_until_mid_run,
)

REPEATS = int(os.environ.get("BNPL_FAULT_REPEATS", "5"))
SEED = int(os.environ.get("BNPL_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))
ORDERS = 100
CHUNK = 20


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_no", range(REPEATS))
def test_a_worker_killed_at_a_random_point_loses_nothing_and_doubles_nothing(listing, round_no):
    rng = random.Random(SEED * 1000 + round_no)
    succeeded_before_kill = rng.randrange(0, ORDERS - 2 * CHUNK)
    delay_s = rng.uniform(0, 0.1)
    print(f"BNPL_FAULT_SEED={SEED} round {round_no}: kill after {succeeded_before_kill} succeeded + {delay_s:.3f} s")
    order_ids = bulk_due_orders(listing, orders=ORDERS, consumers=ORDERS // 3)
    # A slow provider keeps the worker busy long enough for the kill to land inside its run: 250 ms per call (per
    # chunk: the sandbox takes a chunk in one call), well past the random delay, since up to three chunks' calls
    # are in flight at once while earlier chunks are recorded.
    sandbox_faults_set(actor=None, latency_ms=250)

    with ChargeWorker(database_url(connection.settings_dict), "--threads=4", f"--chunk-size={CHUNK}") as worker:
        wait_until_mid_run(worker, succeeded=succeeded_before_kill)
        time.sleep(delay_s)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL
    killed = ChargeRun.objects.get()
    left_pending = ChargeAttempt.objects.filter(status=AttemptStatus.PENDING).count()
    claimed_by_killed = ChargeAttempt.objects.filter(run=killed).count()
    assert killed.status == ChargeRunStatus.RUNNING  # it never got to say it stopped

    sandbox_faults_set(actor=None)
    later = timezone.now() + settings.BNPL_CHARGE_RUN_STALE_AFTER + timedelta(seconds=1)
    assert settings.BNPL_CHARGE_RUN_STALE_AFTER > settings.BNPL_CHARGE_RESEND_PENDING_AFTER
    with time_machine.travel(later, tick=True):
        survivor = run_charges(threads=4, chunk_size=50)

    killed.refresh_from_db()
    assert killed.status == ChargeRunStatus.FAILED  # the stale run is marked as such, not left running
    assert survivor.status == ChargeRunStatus.FINISHED and survivor.errors == 0
    assert survivor.resent == left_pending  # the attempts it had in flight, sent again with their keys
    assert survivor.claimed == ORDERS - claimed_by_killed  # the rest, claimed once
    assert ChargeAttempt.objects.count() == ORDERS  # no order got a second attempt
    assert_charged_exactly_once(order_ids, fee_rate=listing.merchant.fee_rate)
