"""A Hypothesis state machine of the order lifecycle against a simple reference model of who owes what.

Rules: create an order, complete it, charge it (the consumer pays now; succeeds or is
declined by the sandbox funding source's balance), run the charge run after moving the
clock, refund, open and decide disputes. After every step the ledger must agree with
the model: what the consumer owes (receivable balance), what the merchant is owed
(payable balance), refunded ≤ charged, at most one successful charge per order, and
every ledger transaction balanced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bnpl.charging import credit_order_pay_now, run_charges
from bnpl.charging_bulk import fee_for
from bnpl.choices import ActorKind, OrderStatus
from bnpl.disputes import dispute_decide, dispute_open
from bnpl.exceptions import DomainError
from bnpl.ledger import account_balance, ledger_account_for, ledger_check
from bnpl.models import ChargeAttempt, CreditOrder, Dispute, SandboxFundingSource
from bnpl.models.ledger import AccountKind
from bnpl.models.settlement import DISPUTE_ACTIVE, DisputeOutcome
from bnpl.refunds import credit_order_refund
from bnpl.services import credit_order_complete
from tests.bnpl.charging_helpers import fund
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, UserFactory

S = OrderStatus
D = Decimal
ZERO = D("0.00")
AMOUNTS = [D("5.00"), D("12.50"), D("33.33"), D("49.99")]
UNPAID = (S.COMPLETED, S.COLLECTING, S.OVERDUE)
MAX_ORDERS = 6


@dataclass
class ModelOrder:
    """What the reference model knows of one order."""

    pk: int
    status: str = "active"  # active | unpaid | paid (charged) | closed (nothing left to charge)
    amount: Decimal = ZERO  # what is owed in total (lowered by a dispute won before the charge)
    charged: Decimal = ZERO
    refunded: Decimal = ZERO
    fee: Decimal = ZERO
    paused: bool = False
    dispute: int | None = None
    disputed: Decimal = ZERO


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.merchant = MerchantFactory()
        self.listing = ListingFactory(merchant=self.merchant, max_amount=D("100.00"))
        self.consumer = ConsumerFactory()
        self.source = fund(self.consumer, "0.00")
        self.staff = UserFactory(is_staff=True)
        self.orders: list[ModelOrder] = []
        self.funded = False
        self.clock = timezone.now()
        self.traveller = time_machine.travel(self.clock, tick=True)
        self.traveller.start()
        self.keys = 0

    def teardown(self) -> None:
        self.traveller.stop()

    # ------------------------------------------------------------------ helpers

    def _set_funding(self, funded: bool) -> None:
        balance = D("100000.00") if funded else ZERO
        SandboxFundingSource.objects.filter(pk=self.source.pk).update(balance_amount=balance)
        self.funded = funded

    def _record_charge(self, m: ModelOrder) -> None:
        m.charged = m.amount
        m.fee = fee_for(m.amount, self.merchant.fee_rate)
        m.status = "paid"

    def _in(self, *statuses: str) -> list[ModelOrder]:
        return [m for m in self.orders if m.status in statuses]

    # ------------------------------------------------------------------ rules

    @initialize(amounts=st.lists(st.sampled_from(AMOUNTS), min_size=1, max_size=3))
    def start_with_completed_orders(self, amounts: list[Decimal]) -> None:
        """Most interesting steps need completed orders: begin with a few, so short runs reach them."""
        for amount in amounts:
            self.create_order()
            self._complete(self.orders[-1], amount)

    @precondition(lambda self: len(self.orders) < MAX_ORDERS)
    @rule()
    def create_order(self) -> None:
        order = order_in(S.ACTIVE, listing=self.listing, consumer=self.consumer)
        self.orders.append(ModelOrder(pk=order.pk))

    @precondition(lambda self: any(m.status == "active" for m in self.orders))
    @rule(data=st.data(), amount=st.sampled_from(AMOUNTS))
    def complete(self, data: st.DataObject, amount: Decimal) -> None:
        self._complete(data.draw(st.sampled_from(self._in("active"))), amount)

    def _complete(self, m: ModelOrder, amount: Decimal) -> None:
        credit_order_complete(
            actor=None,
            actor_kind=ActorKind.MERCHANT,
            order=CreditOrder(pk=m.pk),
            lines=[{"name": "item", "quantity": "1", "unit": "pc", "unit_price": str(amount), "amount": str(amount)}],
        )
        m.status, m.amount = "unpaid", amount

    @precondition(lambda self: any(m.status == "unpaid" for m in self.orders))
    @rule(data=st.data(), funded=st.booleans())
    def pay_now(self, data: st.DataObject, funded: bool) -> None:
        m = data.draw(st.sampled_from(self._in("unpaid")))
        self._set_funding(funded)
        order = CreditOrder.objects.get(pk=m.pk)
        if order.charge_in_flight:
            return
        attempt = credit_order_pay_now(actor=None, order=order, consumer=self.consumer)
        assert attempt.status == ("succeeded" if funded else "declined")
        if funded:
            self._record_charge(m)

    # No precondition: time can always pass, and a charge run with nothing due must charge nothing. It also keeps
    # the machine able to move once every order is closed (six orders, each lost by the merchant in a dispute).
    @rule(hours=st.sampled_from([1, 7, 30, 100]), funded=st.booleans())
    def move_clock_and_run(self, hours: int, funded: bool) -> None:
        self.traveller.stop()
        self.clock += timedelta(hours=hours)
        self.traveller = time_machine.travel(self.clock, tick=True)
        self.traveller.start()
        self._set_funding(funded)
        now = timezone.now()
        due = set()
        for m in self._in("unpaid"):
            order = CreditOrder.objects.get(pk=m.pk)
            when = order.due_at if order.status == S.COMPLETED else order.next_attempt_at
            if not m.paused and when is not None and when <= now:
                due.add(m.pk)
        run_charges(threads=1)
        for m in self._in("unpaid"):
            succeeded = ChargeAttempt.objects.filter(order_id=m.pk, status="succeeded").exists()
            assert succeeded == (funded and m.pk in due), (m, funded, due)
            if succeeded:
                self._record_charge(m)

    @precondition(lambda self: any(m.status == "paid" and m.refunded < m.charged for m in self.orders))
    @rule(data=st.data(), share=st.sampled_from([D("0.25"), D("0.5"), D("1")]))
    def refund(self, data: st.DataObject, share: Decimal) -> None:
        m = data.draw(st.sampled_from([m for m in self._in("paid") if m.refunded < m.charged]))
        left = m.charged - m.refunded
        amount = max(D("0.01"), (left * share).quantize(D("0.01")))
        self.keys += 1
        refund = credit_order_refund(
            actor=None,
            actor_kind=ActorKind.MERCHANT,
            order=CreditOrder(pk=m.pk),
            amount=amount,
            reason="returned",
            idempotency_key=f"k{self.keys}",
        )
        assert refund.status == "succeeded"
        m.refunded += amount

    @precondition(lambda self: any(m.status == "paid" for m in self.orders))
    @rule(data=st.data())
    def refund_too_much_is_refused(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(self._in("paid")))
        self.keys += 1
        with pytest.raises(DomainError):
            credit_order_refund(
                actor=None,
                actor_kind=ActorKind.MERCHANT,
                order=CreditOrder(pk=m.pk),
                amount=m.charged - m.refunded + D("0.01"),
                reason="too much",
                idempotency_key=f"k{self.keys}",
            )

    @precondition(lambda self: any(m.status in ("unpaid", "paid") and m.dispute is None for m in self.orders))
    @rule(data=st.data())
    def open_dispute(self, data: st.DataObject) -> None:
        candidates = [m for m in self._in("unpaid", "paid") if m.dispute is None and m.amount - m.refunded > ZERO]
        if not candidates:
            return
        m = data.draw(st.sampled_from(candidates))
        order = CreditOrder.objects.get(pk=m.pk)
        if order.charge_in_flight:
            return
        dispute = dispute_open(actor=None, consumer=self.consumer, order=order, reason="faulty", description="broken")
        m.dispute, m.disputed = dispute.pk, dispute.disputed_amount
        m.paused = m.status == "unpaid"

    @precondition(lambda self: any(m.dispute is not None for m in self.orders))
    @rule(data=st.data(), consumer_wins=st.booleans())
    def decide_dispute(self, data: st.DataObject, consumer_wins: bool) -> None:
        m = data.draw(st.sampled_from([m for m in self.orders if m.dispute is not None]))
        dispute = Dispute.objects.get(pk=m.dispute)
        assert dispute.status in DISPUTE_ACTIVE
        outcome = DisputeOutcome.CONSUMER_WON if consumer_wins else DisputeOutcome.MERCHANT_WON
        dispute_decide(actor=self.staff, dispute=dispute, outcome=outcome, reason="decided")
        if consumer_wins and m.status == "unpaid":
            m.amount -= m.disputed
            if m.amount == ZERO:
                m.status = "closed"
        elif consumer_wins and m.status == "paid":
            m.refunded += min(m.disputed, m.charged - m.refunded)
        m.paused, m.dispute = False, None

    # ------------------------------------------------------------------ invariants

    @invariant()
    def consumer_owes_what_the_model_says(self) -> None:
        owed = sum((m.amount for m in self._in("unpaid")), ZERO)
        receivable = ledger_account_for(AccountKind.CONSUMER_RECEIVABLE, consumer=self.consumer)
        assert account_balance(receivable) == owed

    @invariant()
    def merchant_is_owed_what_the_model_says(self) -> None:
        owed = sum((m.amount - m.fee - m.refunded for m in self.orders if m.status != "active"), ZERO)
        payable = ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=self.merchant)
        assert account_balance(payable) == -owed

    @invariant()
    def orders_match_the_model(self) -> None:
        rows = CreditOrder.objects.in_bulk([m.pk for m in self.orders])
        for m in self.orders:
            order = rows[m.pk]
            assert order.refunded_amount == m.refunded
            assert order.refunded_amount <= (order.amount_due or ZERO)
            assert order.charge_paused == m.paused
            succeeded = ChargeAttempt.objects.filter(order_id=m.pk, status="succeeded").count()
            assert succeeded == (1 if m.status == "paid" else 0)
            expected = {
                "active": {S.ACTIVE},
                "unpaid": set(UNPAID),
                "closed": {S.PAID},
                "paid": {S.PAID} if m.refunded == ZERO else {S.PARTIALLY_REFUNDED, S.REFUNDED},
            }[m.status]
            assert order.status in expected, (m, order.status)

    @invariant()
    def ledger_is_balanced(self) -> None:
        assert ledger_check() == []


@pytest.mark.django_db
def test_order_lifecycle_against_reference_model():
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
