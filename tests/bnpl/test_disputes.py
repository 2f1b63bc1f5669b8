"""Disputes: open (pause or hold), respond by the deadline, decide either way, withdraw."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from bnpl.charging import run_charges
from bnpl.choices import OrderStatus
from bnpl.disputes import dispute_decide, dispute_open, dispute_respond, dispute_withdraw
from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from bnpl.ledger import ledger_check, order_account_balance
from bnpl.models import ChargeAttempt, Dispute, DisputeEvent, DisputeEvidence, Refund
from bnpl.models.ledger import AccountKind
from bnpl.models.settlement import DisputeOutcome, DisputeStatus, RefundStatus
from scoring.models import ConsumerFeatures
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import exposure, snapshot
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ConsumerFactory, ListingFactory, UserFactory

S = OrderStatus
D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def listing(merchant):
    return ListingFactory(merchant=merchant, max_amount=D("500.00"))


@pytest.fixture
def staff(db):
    return UserFactory(username="risk-staff", is_staff=True)


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def open_dispute(order, consumer, **kw):
    kw.setdefault("reason", "not_received")
    kw.setdefault("description", "parcel never arrived")
    return dispute_open(actor=consumer.user, consumer=consumer, order=order, **kw)


def test_charge_run_skips_a_disputed_order_until_merchant_wins(listing, consumer, staff):
    fund(consumer)
    order = due_order(listing, consumer, amount="50.00")
    dispute = open_dispute(order, consumer)
    order.refresh_from_db()
    assert order.charge_paused is True
    assert dispute.after_charge is False
    assert dispute.disputed_amount == D("50.00")
    run_charges(threads=1)
    assert ChargeAttempt.objects.filter(order=order).count() == 0

    dispute_decide(actor=staff, dispute=dispute, outcome=DisputeOutcome.MERCHANT_WON, reason="delivery proof")
    order.refresh_from_db()
    assert order.charge_paused is False
    run_charges(threads=1)
    order.refresh_from_db()
    assert order.status == S.PAID
    assert ChargeAttempt.objects.filter(order=order, status="succeeded").count() == 1
    assert ledger_check() == []


def test_consumer_wins_before_charge_lowers_amount_and_nothing_is_charged(listing, consumer, staff):
    fund(consumer)
    order = due_order(listing, consumer, amount="50.00")
    dispute = open_dispute(order, consumer, reason="wrong_amount", amount="20.00")
    dispute_decide(actor=staff, dispute=dispute, outcome=DisputeOutcome.CONSUMER_WON, reason="overcharged")
    order.refresh_from_db()
    assert (order.status, order.amount_due, order.hold_amount, order.charge_paused) == (
        S.COMPLETED,
        D("30.00"),
        D("30.00"),
        False,
    )
    run_charges(threads=1)
    assert ChargeAttempt.objects.get(order=order, status="succeeded").amount == D("30.00")
    assert ledger_check() == []


def test_consumer_wins_whole_amount_before_charge_closes_order(listing, consumer, staff):
    order = due_order(listing, consumer, amount="50.00")
    dispute = open_dispute(order, consumer, reason="not_authorised")
    dispute_decide(actor=staff, dispute=dispute, outcome=DisputeOutcome.CONSUMER_WON, reason="fraud confirmed")
    order.refresh_from_db()
    assert (order.status, order.amount_due, order.hold_amount) == (S.PAID, D("0.00"), D("0.00"))
    assert exposure(consumer) == D("0.00")
    assert order_account_balance(order, AccountKind.CONSUMER_RECEIVABLE) == D("0.00")
    assert order_account_balance(order, AccountKind.MERCHANT_PAYABLE) == D("0.00")
    dispute.refresh_from_db()
    assert (dispute.status, dispute.outcome, dispute.decided_by_id) == (
        DisputeStatus.DECIDED,
        DisputeOutcome.CONSUMER_WON,
        staff.pk,
    )
    assert ledger_check() == []


def test_consumer_wins_after_charge_is_refunded_once(listing, consumer, staff):
    order = charged_order(listing, consumer, amount="80.00")
    dispute = open_dispute(order, consumer, reason="faulty", amount="25.00")
    assert dispute.after_charge is True
    order.refresh_from_db()
    assert order.charge_paused is False
    dispute_respond(actor=None, dispute=dispute, text="it worked when shipped")
    decided = dispute_decide(actor=staff, dispute=dispute, outcome=DisputeOutcome.CONSUMER_WON, reason="photos")
    refund = Refund.objects.get(dispute=decided)
    assert (refund.status, refund.amount, refund.actor_kind, refund.idempotency_key) == (
        RefundStatus.SUCCEEDED,
        D("25.00"),
        "staff",
        f"dispute:{dispute.pk}",
    )
    order.refresh_from_db()
    assert (order.status, order.refunded_amount) == (S.PARTIALLY_REFUNDED, D("25.00"))
    with pytest.raises(InvalidTransition):
        dispute_decide(actor=staff, dispute=dispute, outcome=DisputeOutcome.CONSUMER_WON, reason="again")
    assert Refund.objects.count() == 1
    assert ledger_check() == []


def test_lifecycle_events_and_evidence(listing, consumer, staff):
    order = charged_order(listing, consumer, amount="10.00")
    dispute = open_dispute(order, consumer)
    photo = SimpleUploadedFile("proof.jpg", b"\xff\xd8jpeg", content_type="image/jpeg")
    dispute_respond(actor=None, dispute=dispute, text="signed for by the consumer", files=[photo])
    dispute_decide(actor=staff, dispute=dispute, outcome=DisputeOutcome.MERCHANT_WON, reason="signature matches")
    events = list(DisputeEvent.objects.filter(dispute=dispute).values_list("from_status", "to_status", "actor_kind"))
    assert events == [
        ("", "open", "consumer"),
        ("open", "merchant_responded", "merchant"),
        ("merchant_responded", "decided", "staff"),
    ]
    evidence = DisputeEvidence.objects.get(dispute=dispute)
    assert evidence.file.read() == b"\xff\xd8jpeg"
    assert Refund.objects.count() == 0
    assert ConsumerFeatures.objects.get(pk=consumer.pk).disputes_count == 1


def test_response_after_deadline_is_refused(listing, consumer, settings):
    settings.BNPL_DISPUTE_RESPONSE_DAYS = 3
    order = due_order(listing, consumer, amount="10.00")
    dispute = open_dispute(order, consumer)
    assert dispute.respond_by - dispute.created_at == timedelta(days=3)
    with time_machine.travel(timezone.now() + timedelta(days=3, minutes=1)), pytest.raises(NotAllowed) as exc:
        dispute_respond(actor=None, dispute=dispute, text="late answer")
    assert exc.value.code == "response_too_late"
    dispute.refresh_from_db()
    assert (dispute.status, dispute.response_text) == (DisputeStatus.OPEN, "")


def test_withdraw_resumes_charge(listing, consumer):
    fund(consumer)
    order = due_order(listing, consumer, amount="10.00")
    dispute = open_dispute(order, consumer)
    with pytest.raises(NotAllowed):
        dispute_withdraw(actor=None, dispute=dispute, consumer=ConsumerFactory())
    dispute_withdraw(actor=consumer.user, dispute=dispute, consumer=consumer, reason="found it")
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.WITHDRAWN
    run_charges(threads=1)
    order.refresh_from_db()
    assert order.status == S.PAID


def test_open_refused_for_another_consumer_a_second_dispute_or_bad_amount(listing, consumer):
    order = due_order(listing, consumer, amount="10.00")
    before = snapshot(order)
    with pytest.raises(NotAllowed):
        open_dispute(order, ConsumerFactory())
    with pytest.raises(ValidationFailed):
        open_dispute(order, consumer, amount="10.01")
    with pytest.raises(ValidationFailed):
        open_dispute(order, consumer, reason="bored")
    assert snapshot(order) == before
    open_dispute(order, consumer)
    with pytest.raises(NotAllowed) as exc:
        open_dispute(order, consumer)
    assert exc.value.code == "dispute_exists"
    assert Dispute.objects.count() == 1
