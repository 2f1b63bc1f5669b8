"""Arrangers and probes shared by the charging tests.

``due_order`` builds an order in a charging state with its completion posted, as the
services would have left it; ``bulk_due_orders`` does the same for thousands of
orders with bulk inserts (the exactly-once and crash tests). Every behaviour under
test goes through :mod:`bnpl.charging` and :mod:`bnpl.overdue`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.gateway.faults import NO_FAULTS
from bnpl.gateway.sandbox import InProcessSandboxGateway
from bnpl.gateway.services import sandbox_funding_source_add
from bnpl.ledger import ledger_account_code, ledger_account_for, ledger_check, order_account_balance, post_completion
from bnpl.models import (
    ChargeAttempt,
    CreditOrder,
    LedgerAccount,
    LedgerEntry,
    SandboxCharge,
    SandboxFundingSource,
)
from bnpl.models.charging import AttemptStatus
from bnpl.models.ledger import AccountKind
from bnpl.money import to_money
from consumers.models import Consumer, CreditProfile
from tests.bnpl.helpers import order_in

S = OrderStatus
D = Decimal
ROOT = Path(__file__).resolve().parents[2]


def one_call_per_charge() -> InProcessSandboxGateway:
    """The in-process sandbox without its batch call: the charge run sends each charge on its own, concurrently,
    as it does to the HTTP gateway (the path every provider without a batch endpoint takes)."""
    return InProcessSandboxGateway(faults=NO_FAULTS, batches=False)


def fund(consumer: Consumer, balance: str = "100.00") -> SandboxFundingSource:
    """Give the consumer a default sandbox card with ``balance``."""
    return sandbox_funding_source_add(
        actor=None, consumer=consumer, label="招商银行储蓄卡(1234)", balance_amount=balance
    )


def due_order(
    listing: Any,
    consumer: Consumer,
    *,
    amount: str = "5.00",
    status: str = S.COMPLETED,
    due_at: datetime | None = None,
    **extra: Any,
) -> CreditOrder:
    """An order in a charging state holding ``amount``, with its completion posted to the ledger."""
    value = D(amount)
    order = order_in(
        status,
        listing=listing,
        consumer=consumer,
        amount_due=value,
        hold_amount=value,
        due_at=due_at or timezone.now() - timedelta(minutes=1),
        **extra,
    )
    post_completion(order)
    return order


def bulk_due_orders(listing: Any, *, orders: int, consumers: int, amount: str = "5.00") -> list[int]:
    """``orders`` completed, due orders spread over ``consumers`` funded consumers, inserted in bulk.

    Consistent with the models and the services: each consumer's open exposure is the
    sum of its orders' holds, and each order's completion is posted.
    """
    value = D(amount)
    now = timezone.now()
    per_consumer = defaultdict(int)
    for i in range(orders):
        per_consumer[i % consumers] += 1
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"bulk-{i}", password="!") for i in range(consumers)
    )
    people = Consumer.objects.bulk_create(
        Consumer(user=user, phone=f"136{i:08d}", phone_verified=True) for i, user in enumerate(users)
    )
    CreditProfile.objects.bulk_create(
        CreditProfile(
            consumer=person,
            score=650,
            credit_limit_amount=D("100000.00"),
            open_exposure_amount=value * per_consumer[i],
        )
        for i, person in enumerate(people)
    )
    SandboxFundingSource.objects.bulk_create(
        SandboxFundingSource(consumer=person, label="wallet", balance_amount=D("100000.00"), is_default=True)
        for person in people
    )
    created = CreditOrder.objects.bulk_create(
        CreditOrder(
            merchant=listing.merchant,
            listing=listing,
            consumer=people[i % consumers],
            out_order_no=f"B-{i}",
            title=listing.title,
            scenario=listing.scenario,
            confirm_mode=listing.confirm_mode,
            pricing_rule=listing.pricing_rule,
            status=S.COMPLETED,
            max_amount=listing.max_amount,
            amount_due=value,
            hold_amount=value,
            confirmed_at=now - timedelta(hours=1),
            completed_at=now - timedelta(minutes=5),
            due_at=now - timedelta(minutes=1),
        )
        for i in range(orders)
    )
    with transaction.atomic():  # a posting's entries must be written in the transaction that wrote it
        _post_completions_in_bulk(created)
    return [order.pk for order in created]


def _post_completions_in_bulk(orders: list[CreditOrder]) -> None:
    """The completion posting of each order (what ``credit_order_complete`` posts), written set-wise."""
    consumer_ids = sorted({order.consumer_id for order in orders})
    LedgerAccount.objects.bulk_create(
        [
            LedgerAccount(
                code=ledger_account_code(AccountKind.CONSUMER_RECEIVABLE, consumer_id=pk),
                kind=AccountKind.CONSUMER_RECEIVABLE,
                consumer_id=pk,
            )
            for pk in consumer_ids
        ],
        ignore_conflicts=True,
    )
    receivable = dict(
        LedgerAccount.objects.filter(kind=AccountKind.CONSUMER_RECEIVABLE, consumer_id__in=consumer_ids).values_list(
            "consumer_id", "pk"
        )
    )
    payable = ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=orders[0].merchant_id).pk
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bnpl_ledgertransaction (kind, order_id, idempotency_key, description) "
            "SELECT 'completion', id, 'completion:' || id, 'order ' || id || ' completed' FROM unnest(%s::bigint[]) "
            "AS id RETURNING id, order_id",
            [[order.pk for order in orders]],
        )
        txn_of = dict((order_id, txn_id) for txn_id, order_id in cursor.fetchall())
        rows = [
            row
            for order in orders
            for row in (
                (txn_of[order.pk], receivable[order.consumer_id], order.amount_due),
                (txn_of[order.pk], payable, -order.amount_due),
            )
        ]
        cursor.execute(
            "INSERT INTO bnpl_ledgerentry (transaction_id, account_id, amount) "
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::numeric[])",
            [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
        )


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL naming the database of ``settings_dict`` (a unix-socket host goes in the query string)."""
    user = urllib.parse.quote(settings_dict.get("USER") or "postgres")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{urllib.parse.quote(password)}" if password else user
    host, port = str(settings_dict.get("HOST") or ""), str(settings_dict.get("PORT") or "5432")
    name = settings_dict["NAME"]
    if host.startswith("/"):
        return f"postgres://{auth}@/{name}?host={urllib.parse.quote(host)}&port={port}"
    return f"postgres://{auth}@{host}:{port}/{name}"


class ChargeWorker(subprocess.Popen):
    """``manage.py run_charges`` with ``options`` in a process of its own, against the database at ``url``.

    Its stderr goes to a temporary file, not a pipe: a pipe nobody reads fills up (a run that loses its
    database logs a traceback per attempt) and then blocks the worker, which would look like a hang of the
    charge run. Used as a context manager, a worker still running at the end is killed.
    """

    def __init__(self, url: str, *options: str) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__, after the process
        super().__init__(
            [sys.executable, "manage.py", "run_charges", *options],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def stderr_text(self) -> str:
        """What the worker wrote to stderr so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __exit__(self, *exc_info: object) -> None:
        if self.poll() is None:
            self.kill()
        try:
            super().__exit__(*exc_info)
        finally:
            self.log.close()


def wait_until_mid_run(worker: ChargeWorker, *, succeeded: int, timeout: float = 60) -> None:
    """Return once ``succeeded`` attempts have succeeded and another is still pending: the run is mid-way.

    Read through this process's default connection, which must name the worker's database.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = ChargeAttempt.objects.filter(status=AttemptStatus.SUCCEEDED).count()
        if done >= succeeded and ChargeAttempt.objects.filter(status=AttemptStatus.PENDING).exists():
            return
        assert worker.poll() is None, worker.stderr_text()
        time.sleep(0.02)
    raise AssertionError(f"the charge run did not reach {succeeded} succeeded attempts in {timeout} s")


def account_total(kind: str, **party: int) -> Decimal:
    """Σ of the entries of one account (0 when it was never used)."""
    code = ledger_account_code(kind, **party)
    total = LedgerEntry.objects.filter(account__code=code).aggregate(t=Sum("amount"))["t"]
    return to_money(total or 0)


def kind_total(kind: str) -> Decimal:
    """Σ of the entries of every account of ``kind``."""
    total = LedgerEntry.objects.filter(account__kind=kind).aggregate(t=Sum("amount"))["t"]
    return to_money(total or 0)


def assert_charged_exactly_once(order_ids: list[int], *, fee_rate: Decimal) -> None:
    """Each order paid by exactly one succeeded attempt and one provider charge; the ledger agrees to the fen."""
    attempts = ChargeAttempt.objects.filter(order_id__in=order_ids)
    succeeded = attempts.filter(status=AttemptStatus.SUCCEEDED)
    assert succeeded.count() == len(order_ids)
    assert succeeded.values("order_id").distinct().count() == len(order_ids)
    assert not attempts.filter(status__in=[AttemptStatus.PENDING, AttemptStatus.UNKNOWN]).exists()
    keys = list(attempts.values_list("idempotency_key", flat=True))
    charges = SandboxCharge.objects.filter(idempotency_key__in=keys, status="succeeded")
    assert charges.count() == len(order_ids)
    charged = to_money(charges.aggregate(t=Sum("amount"))["t"] or 0)
    due = to_money(CreditOrder.objects.filter(pk__in=order_ids).aggregate(t=Sum("amount_due"))["t"] or 0)
    assert to_money(succeeded.aggregate(t=Sum("amount"))["t"]) == charged == due
    assert CreditOrder.objects.filter(pk__in=order_ids, status=S.PAID, hold_amount=0).count() == len(order_ids)
    fees = sum(
        (
            to_money(amount * fee_rate)
            for amount in CreditOrder.objects.filter(pk__in=order_ids).values_list("amount_due", flat=True)
        ),
        D("0.00"),
    )
    # Balances are Σ entries; with only these orders in the ledger they say exactly what happened.
    assert kind_total(AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert kind_total(AccountKind.PAYMENT_CLEARING) == charged
    assert kind_total(AccountKind.PLATFORM_FEE_REVENUE) == -fees
    assert kind_total(AccountKind.MERCHANT_PAYABLE) == -(due - fees)
    for order_id in order_ids[:50]:
        assert order_account_balance(CreditOrder(pk=order_id), AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert ledger_check() == []
    assert LedgerAccount.objects.filter(kind=AccountKind.CONSUMER_RECEIVABLE).exists()
