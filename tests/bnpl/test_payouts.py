"""Sandbox payouts of settlement batches: the payout job, retries, reconciliation, refusals, two runs at once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from bnpl.choices import ActorKind
from bnpl.exceptions import InvalidTransition, NotAllowed
from bnpl.gateway.base import ChargeOutcome, DeclineCode, GatewayRequestError
from bnpl.gateway.faults import NO_FAULTS, SandboxFaults
from bnpl.gateway.http import HttpSandboxGateway
from bnpl.gateway.sandbox import InProcessSandboxGateway, sandbox_payout
from bnpl.ledger import ledger_check
from bnpl.models import LedgerTransaction, Payout, SandboxPayout
from bnpl.models.ledger import AccountKind
from bnpl.models.settlement import PayoutStatus
from bnpl.refunds import credit_order_refund
from bnpl.schedules import JOBS
from bnpl.settlement import (
    PAYOUT_RETRY_DELAYS,
    _claim_payouts,
    payout_mark_paid,
    payout_record,
    payout_retry_now,
    payouts_reconcile,
    payouts_send_due,
    settle_merchants,
)
from tests.bnpl.charging_helpers import account_total
from tests.bnpl.helpers import run_concurrently
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory

D = Decimal
CLEAN = InProcessSandboxGateway(faults=NO_FAULTS)


def settled_payout(merchant=None, amount: str = "100.00") -> Payout:
    """A charged order of ``amount`` settled into a batch with a pending payout (fee 0.6 %)."""
    merchant = merchant or MerchantFactory()
    listing = ListingFactory(merchant=merchant, max_amount=D("500.00"))
    charged_order(listing, ConsumerFactory(), amount=amount)
    [batch_id] = settle_merchants(business_date=timezone.localdate(), merchant_ids=[merchant.pk])
    return Payout.objects.get(batch_id=batch_id)


def payout_postings() -> int:
    return LedgerTransaction.objects.filter(kind="payout").count()


@pytest.mark.django_db
def test_job_pays_a_pending_payout_once_and_posts_it():
    payout = settled_payout(amount="100.00")
    assert payout.status == PayoutStatus.PENDING

    counts = payouts_send_due(gateway=CLEAN)

    payout.refresh_from_db()
    assert counts == {"sent": 1, "paid": 1, "failed": 0, "unknown": 0}
    assert payout.status == PayoutStatus.PAID
    assert payout.gateway_key.startswith(f"po_{payout.pk}_1_") and payout.attempts == 1
    assert payout.paid_at is not None and payout.reference.startswith("spo_")
    sandbox = SandboxPayout.objects.get()
    assert (sandbox.idempotency_key, sandbox.amount, sandbox.account) == (
        payout.gateway_key,
        D("99.40"),
        payout.merchant.settlement_account_number,
    )
    assert LedgerTransaction.objects.filter(kind="payout", idempotency_key=f"payout:{payout.pk}").count() == 1
    assert account_total(AccountKind.MERCHANT_PAYABLE, merchant_id=payout.merchant_id) == D("0.00")
    # A second run finds nothing to send; recording the old answer again posts nothing.
    assert payouts_send_due(gateway=CLEAN)["sent"] == 0
    payout_record(payout_id=payout.pk, key=payout.gateway_key, result=CLEAN.query(payout.gateway_key))
    assert (SandboxPayout.objects.count(), payout_postings()) == (1, 1)
    assert ledger_check() == []


@pytest.mark.django_db
def test_declined_payout_fails_posts_nothing_and_is_retried_on_schedule_with_a_new_key():
    merchant = MerchantFactory(settlement_account_number="6225880100000000")  # a closed sandbox account
    payout = settled_payout(merchant, amount="50.00")

    before = timezone.now()
    assert payouts_send_due(gateway=CLEAN)["failed"] == 1
    payout.refresh_from_db()
    assert payout.status == PayoutStatus.FAILED
    assert payout.failure_code == DeclineCode.ACCOUNT_CLOSED
    assert payout.next_attempt_at >= before + PAYOUT_RETRY_DELAYS[0]
    assert payout_postings() == 0
    # Not due yet: the next run leaves it alone.
    assert payouts_send_due(gateway=CLEAN)["sent"] == 0

    merchant.settlement_account_number = "6225880123456789"  # the merchant fixes its account
    merchant.save(update_fields=["settlement_account_number"])
    with time_machine.travel(payout.next_attempt_at + timedelta(seconds=1)):
        assert payouts_send_due(gateway=CLEAN)["paid"] == 1
    payout.refresh_from_db()
    assert payout.status == PayoutStatus.PAID
    assert payout.attempts == 2 and payout.gateway_key.startswith(f"po_{payout.pk}_2_")
    rows = sorted(SandboxPayout.objects.values_list("idempotency_key", "status"))
    assert [(key.rsplit("_", 1)[0], status) for key, status in rows] == [
        (f"po_{payout.pk}_1", "declined"),
        (f"po_{payout.pk}_2", "succeeded"),
    ]
    assert payout_postings() == 1
    assert ledger_check() == []


@pytest.mark.django_db
def test_retries_stop_after_the_schedule_and_staff_can_send_again():
    payout = settled_payout(MerchantFactory(settlement_account_number="6225880100000000"), amount="20.00")
    now = timezone.now()
    payouts_send_due(gateway=CLEAN)
    for _ in PAYOUT_RETRY_DELAYS:
        payout.refresh_from_db()
        now = payout.next_attempt_at + timedelta(seconds=1)
        with time_machine.travel(now):
            assert payouts_send_due(gateway=CLEAN)["failed"] == 1
    payout.refresh_from_db()
    assert payout.attempts == len(PAYOUT_RETRY_DELAYS) + 1
    assert payout.next_attempt_at is None  # no more automatic retries
    with time_machine.travel(now + timedelta(days=30)):
        assert payouts_send_due(gateway=CLEAN)["sent"] == 0
    with pytest.raises(InvalidTransition):
        payout_retry_now(actor=None, payout=Payout.objects.get(pk=settled_payout().pk))  # a pending one
    payout_retry_now(actor=None, payout=payout)
    assert payouts_send_due(gateway=CLEAN, payout_ids=[payout.pk])["failed"] == 1
    assert payout_postings() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("fault", ["lost_response", "timeout"])
def test_unknown_payout_is_reconciled_and_paid_once(fault):
    payout = settled_payout(amount="30.00")
    faulty = InProcessSandboxGateway(faults=SandboxFaults(**{f"{fault}_rate": D(1)}))

    assert payouts_send_due(gateway=faulty)["unknown"] == 1
    payout.refresh_from_db()
    assert payout.status == PayoutStatus.UNKNOWN
    assert SandboxPayout.objects.count() == (1 if fault == "lost_response" else 0)
    assert payout_postings() == 0
    # Neither the job nor staff touch a payout whose fate is open.
    assert payouts_send_due(gateway=CLEAN)["sent"] == 0
    with pytest.raises(NotAllowed) as exc:
        payout_mark_paid(actor=None, payout=payout)
    assert exc.value.code == "payout_in_flight"
    # Too recent for the reconcile job.
    assert payouts_reconcile(gateway=CLEAN)["checked"] == 0

    counts = payouts_reconcile(gateway=CLEAN, older_than=timedelta(0))

    payout.refresh_from_db()
    assert counts == {"checked": 1, "paid": 1, "failed": 0, "unknown": 0}
    assert payout.status == PayoutStatus.PAID
    assert list(SandboxPayout.objects.values_list("idempotency_key", flat=True)) == [payout.gateway_key]
    assert payout.gateway_key.startswith(f"po_{payout.pk}_1_")
    assert payout_postings() == 1
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_payout_claimed_by_a_worker_that_died_is_finished_by_reconcile():
    payout = settled_payout(amount="40.00")
    [claimed] = _claim_payouts(now=timezone.now(), limit=10, payout_ids=None)  # the worker dies after this

    assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.SENDING
    assert payouts_send_due(gateway=CLEAN)["sent"] == 0
    assert payouts_reconcile(gateway=CLEAN, older_than=timedelta(0))["paid"] == 1
    assert SandboxPayout.objects.get().idempotency_key == claimed.key
    assert payout_postings() == 1


@pytest.mark.django_db
def test_payout_that_does_not_match_its_settled_batch_is_refused_and_nothing_is_sent():
    payout = settled_payout(amount="20.00")
    Payout.objects.filter(pk=payout.pk).update(amount=D("25.00"))  # more than was settled

    counts = payouts_send_due(gateway=CLEAN)

    payout.refresh_from_db()
    assert counts["sent"] == 0
    assert (payout.status, payout.failure_code, payout.next_attempt_at) == (
        PayoutStatus.FAILED,
        "payout_unsettled",
        None,
    )
    assert SandboxPayout.objects.count() == 0
    assert payout_postings() == 0


@pytest.mark.django_db
def test_payout_not_covered_after_a_later_refund_fails_and_is_retried():
    payout = settled_payout(amount="100.00")
    order = payout.batch.items.first().order
    credit_order_refund(
        actor=None, actor_kind=ActorKind.MERCHANT, order=order, amount="40.00", reason="return", idempotency_key="r"
    )

    assert payouts_send_due(gateway=CLEAN)["sent"] == 0

    payout.refresh_from_db()
    assert (payout.status, payout.failure_code) == (PayoutStatus.FAILED, "payout_exceeds_payable")
    assert payout.next_attempt_at is not None  # retried: later sales may cover it
    assert (payout.attempts, payout.gateway_key) == (1, "")  # counted, but nothing was sent
    assert SandboxPayout.objects.count() == 0 and payout_postings() == 0


@pytest.mark.django_db
def test_a_batch_is_never_paid_twice_by_job_and_staff():
    payout = settled_payout(amount="20.00")
    payout_mark_paid(actor=None, payout=payout, reference="BANK-1")

    assert payouts_send_due(gateway=CLEAN)["sent"] == 0
    with pytest.raises(InvalidTransition):
        payout_mark_paid(actor=None, payout=payout)
    assert SandboxPayout.objects.count() == 0
    assert payout_postings() == 1


@pytest.mark.django_db(transaction=True)
def test_two_payout_runs_and_a_reconcile_at_once_pay_each_batch_once():
    payouts = [settled_payout(amount=amount) for amount in ("10.00", "20.00", "30.00")]
    slow = InProcessSandboxGateway(faults=SandboxFaults(latency_ms=100))

    results = run_concurrently(
        lambda: payouts_send_due(gateway=slow),
        lambda: payouts_send_due(gateway=slow),
        lambda: payouts_reconcile(gateway=slow, older_than=timedelta(0)),
    )

    assert not any(isinstance(r, Exception) for r in results), results
    assert results[0]["sent"] + results[1]["sent"] == 3
    assert set(Payout.objects.values_list("status", flat=True)) == {PayoutStatus.PAID}
    assert SandboxPayout.objects.count() == 3
    assert sorted(SandboxPayout.objects.values_list("idempotency_key", flat=True)) == sorted(
        Payout.objects.get(pk=p.pk).gateway_key for p in payouts
    )
    assert payout_postings() == 3
    for payout in payouts:
        assert account_total(AccountKind.MERCHANT_PAYABLE, merchant_id=payout.merchant_id) == D("0.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_payout_the_provider_refuses_fails_without_retry_and_staff_can_send_it_again(caplog):
    payout = settled_payout(amount="25.00")
    refusing = InProcessSandboxGateway(faults=NO_FAULTS)
    calls = []

    def refuse(key, account, amount):
        calls.append(key)
        raise GatewayRequestError("sandbox refused the request (HTTP 400): bad account")

    refusing.payout = refuse

    assert payouts_send_due(gateway=refusing) == {"sent": 1, "paid": 0, "failed": 1, "unknown": 0}

    payout.refresh_from_db()
    assert payout.status == PayoutStatus.FAILED
    assert payout.failure_code == "request_refused"
    assert payout.next_attempt_at is None  # not retried automatically
    # Neither job loops on it.
    with time_machine.travel(timezone.now() + timedelta(days=3)):
        assert payouts_send_due(gateway=refusing)["sent"] == 0
        assert payouts_reconcile(gateway=refusing, older_than=timedelta(0))["checked"] == 0
    assert len(calls) == 1 and payout_postings() == 0
    # Staff fix the cause and send it again, under a new key.
    payout_retry_now(actor=None, payout=payout)
    assert payouts_send_due(gateway=CLEAN, payout_ids=[payout.pk])["paid"] == 1
    payout.refresh_from_db()
    assert payout.status == PayoutStatus.PAID and payout.gateway_key != calls[0]
    assert payout_postings() == 1


@pytest.mark.django_db
def test_a_payout_to_a_merchant_without_account_is_not_sent():
    merchant = MerchantFactory()
    payout = settled_payout(merchant, amount="15.00")
    type(merchant).objects.filter(pk=merchant.pk).update(settlement_account_number="  ")

    assert payouts_send_due(gateway=CLEAN)["sent"] == 0

    payout.refresh_from_db()
    assert (payout.status, payout.failure_code, payout.next_attempt_at) == (
        PayoutStatus.FAILED,
        "payout_account_missing",
        None,
    )
    assert SandboxPayout.objects.count() == 0 and payout_postings() == 0


@pytest.mark.django_db
def test_payout_keys_are_unique_across_databases_and_a_foreign_success_is_not_trusted(caplog):
    payout = settled_payout(amount="35.00")
    [claimed] = _claim_payouts(now=timezone.now(), limit=10, payout_ids=None)
    assert claimed.key.startswith(f"po_{payout.pk}_1_") and len(claimed.key) > len(f"po_{payout.pk}_1_")
    # Another environment sharing the provider account paid a different amount under this key.
    sandbox_payout(claimed.key, "6225880123456789", "99.99")

    with caplog.at_level("ERROR", logger="bnpl.settlement"):
        result = payout_record(payout_id=payout.pk, key=claimed.key, result=CLEAN.query(claimed.key))

    assert result.status == PayoutStatus.UNKNOWN
    assert payout_postings() == 0
    assert any("left unknown for staff" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_sandbox_payout_honours_its_key_and_declines_deterministically():
    first = sandbox_payout("po:k1", "6225880123456789", "12.30")
    assert first.outcome == ChargeOutcome.SUCCEEDED
    assert sandbox_payout("po:k1", "6225880123456789", "12.30") == first
    with pytest.raises(GatewayRequestError):
        sandbox_payout("po:k1", "6225880123456789", "99.00")
    closed = sandbox_payout("po:k2", "6225880100000000", "1.00")
    assert (closed.outcome, closed.decline_code) == (ChargeOutcome.DECLINED, DeclineCode.ACCOUNT_CLOSED)
    assert sandbox_payout("po:k3", "not-a-number", "1.00").decline_code == DeclineCode.ACCOUNT_CLOSED
    assert CLEAN.query("po:k1") == first
    assert CLEAN.query("po:k2") == closed
    assert SandboxPayout.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_http_sandbox_payout(settings, live_server):
    settings.BNPL_SANDBOX_HTTP_ENABLED = True
    client = HttpSandboxGateway(f"{live_server.url}/sandbox/gateway/", timeout_s=5)

    paid = client.payout("po:h1", "6225880123456789", D("8.80"))

    assert paid.outcome == ChargeOutcome.SUCCEEDED and paid.amount == D("8.80")
    assert client.payout("po:h1", "6225880123456789", D("8.80")) == paid
    assert client.query("po:h1") == paid
    assert SandboxPayout.objects.count() == 1


def test_payout_jobs_are_scheduled():
    by_func = {job.func: job for job in JOBS}
    assert "bnpl.settlement.payouts_send_due_task" in by_func
    assert "bnpl.settlement.payouts_reconcile_task" in by_func


@pytest.mark.django_db
def test_admin_send_now_pays_a_pending_payout_and_lists_payouts(client, staff_user):
    payout = settled_payout(amount="20.00")
    client.force_login(staff_user)

    response = client.post("/admin/bnpl/payout/", {"action": "send_now", "_selected_action": [payout.pk]}, follow=True)

    assert response.status_code == 200
    assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.PAID
    assert payout_postings() == 1
    assert client.get("/admin/bnpl/payout/").status_code == 200
    assert client.get(f"/admin/bnpl/payout/{payout.pk}/change/").status_code == 200
