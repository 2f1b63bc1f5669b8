"""Fault: the payment provider misbehaves during a charge run over HTTP.

The charge run (``bnpl.charging.run_charges``) talks to the sandbox provider through the real HTTP client
(``HttpSandboxGateway``); the provider is the project's ``sandbox/gateway/`` views, served by a real threaded
server on a free local port (pytest-django's ``live_server``). Its switchable faults
(``bnpl.gateway.faults``) make it, in turn: slower than the client's timeout, answer 503 or 504 without
processing, or process the charge and lose the answer. Which request meets a fault is a hash of the seed and
the idempotency key, so the test knows exactly which attempts must become unknown.

For each fault the test asserts that no attempt is ever declined; the attempts that met the fault, and only
those, are ``unknown``; no new attempt is made for an order while its attempt is unknown; the reconcile job
leaves them alone before ``BNPL_RECONCILE_AFTER`` and settles them after it (the clock is moved with
time-machine); and in the end each order has exactly one provider charge and one succeeded attempt, with
the ledger clean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from bnpl.charging import reconcile_unknown_attempts, run_charges
from bnpl.gateway.faults import sandbox_faults_load
from bnpl.gateway.http import HttpSandboxGateway
from bnpl.gateway.services import sandbox_faults_set
from bnpl.models import ChargeAttempt, SandboxCharge
from bnpl.models.charging import AttemptStatus, ChargeRunStatus
from tests.bnpl.charging_helpers import assert_charged_exactly_once, bulk_due_orders

ORDERS = 24
SEED = 7


@dataclass(frozen=True)
class Fault:
    """One way the provider misbehaves: the ``sandbox_faults_set`` arguments and the client's timeout."""

    name: str
    switch: dict[str, object] = field(default_factory=dict)
    timeout_s: float = 15.0  # generous: on a loaded machine a healthy request must not look like a fault
    # The fault (a ``SandboxFaults.hits`` name) that decides which requests it strikes; None: every request.
    hits: str | None = None
    # Whether the provider still works for reconciliation while the fault is on (queries only meet latency).
    fixed_before_reconcile: bool = False


FAULTS = [
    # Every request takes 1 s; the client gives up after 0.3 s. The provider charges after the client left.
    Fault("slow", {"latency_ms": 1000}, timeout_s=0.3, fixed_before_reconcile=True),
    Fault("503", {"error_rate": "0.3"}, hits="error"),
    Fault("504", {"timeout_rate": "0.3"}, hits="timeout"),
    Fault("lost_response", {"lost_response_rate": "0.3"}, hits="lost_response"),
]


def _attempts(status: str) -> set[str]:
    return set(ChargeAttempt.objects.filter(status=status).values_list("idempotency_key", flat=True))


def _wait_for_slow_requests_to_land(expected: int, *, timeout: float = 30) -> None:
    """The provider's requests the client gave up on are still sleeping: wait until each has been processed.

    In production ``BNPL_RECONCILE_AFTER`` (5 min) is that wait; this test moves the clock instead of waiting,
    so it must not let reconciliation ask before a slow request has landed (it would find nothing, start a
    second attempt, and the test would report a double charge that a real clock rules out).
    """
    deadline = time.monotonic() + timeout
    while SandboxCharge.objects.count() < expected:
        assert time.monotonic() < deadline, "the slow provider never processed every request"
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.name)
def test_a_faulty_provider_leaves_attempts_unknown_and_reconcile_charges_each_order_once(
    settings_override, live_server, listing, fault
):
    order_ids = bulk_due_orders(listing, orders=ORDERS, consumers=ORDERS // 3)
    # Four requests in flight at once: the live server's listen backlog is 10, and a connection whose SYN it
    # drops is retried after 1 s, past the slow case's 0.3 s timeout — a request the provider never sees.
    gateway = HttpSandboxGateway(f"{live_server.url}/sandbox/gateway/", timeout_s=fault.timeout_s, max_in_flight=4)
    sandbox_faults_set(actor=None, seed=SEED, **fault.switch)

    run = run_charges(gateway=gateway, threads=4, chunk_size=12)

    keys = set(ChargeAttempt.objects.values_list("idempotency_key", flat=True))
    struck = keys if fault.hits is None else {key for key in keys if sandbox_faults_load().hits(fault.hits, key)}
    assert 0 < len(struck) <= len(keys) == ORDERS  # the fault struck, and each order got one attempt
    assert run.status == ChargeRunStatus.FINISHED and run.declined == 0
    assert _attempts(AttemptStatus.UNKNOWN) == struck  # never declined: only the provider may say no
    assert _attempts(AttemptStatus.SUCCEEDED) == keys - struck
    assert not _attempts(AttemptStatus.DECLINED) and not _attempts(AttemptStatus.PENDING)

    # While an attempt is unknown, no run starts another one for its order.
    again = run_charges(gateway=gateway, threads=4, chunk_size=12)
    assert (again.claimed, again.resent) == (0, 0)
    assert ChargeAttempt.objects.count() == ORDERS

    if fault.fixed_before_reconcile:
        _wait_for_slow_requests_to_land(ORDERS)
        sandbox_faults_set(actor=None)
    # Too early: a request may still be landing at the provider, so reconcile does not ask yet.
    early = reconcile_unknown_attempts(gateway=gateway)
    assert early.claimed == 0 and _attempts(AttemptStatus.UNKNOWN) == struck

    # Later (the clock moved past BNPL_RECONCILE_AFTER each round), reconcile settles them. A replacement
    # attempt (the provider never saw the first key) can meet the fault again: it waits for the next round.
    with time_machine.travel(timezone.now(), tick=True) as clock:
        for _round in range(10):
            clock.shift(settings.BNPL_RECONCILE_AFTER)
            reconcile_unknown_attempts(gateway=gateway)
            assert not _attempts(AttemptStatus.DECLINED) and not _attempts(AttemptStatus.PENDING)
            if not _attempts(AttemptStatus.UNKNOWN):
                break

    assert not _attempts(AttemptStatus.UNKNOWN), "reconcile did not settle every unknown attempt"
    assert SandboxCharge.objects.count() == ORDERS  # the provider charged each order once, declined none
    assert_charged_exactly_once(order_ids, fee_rate=listing.merchant.fee_rate)


@pytest.fixture
def settings_override(settings):
    """The sandbox endpoint is served (it is off unless enabled) by the live server of this process."""
    settings.BNPL_SANDBOX_HTTP_ENABLED = True
    return settings
