"""The sandbox payment provider: simulated funding sources that behave like a real provider.

``sandbox_charge``, ``sandbox_refund`` and ``sandbox_query`` are the provider's own
processing, shared by the in-process gateway and the HTTP endpoint
(``bnpl.gateway.views``). Like a real provider they honour idempotency keys: the same
key returns the original result and never moves money twice, even when many
requests with that key arrive at once. Declines are deterministic: an unknown
source is ``account_closed``, a frozen one ``card_frozen``, a short balance
``insufficient_funds``.

Each request is the provider's own database transaction (``durable=True``). That is
the provider's work, not the caller's: the caller must not be inside a transaction
when it calls a gateway, and the durable block makes an in-process call from inside
one fail loudly instead of silently tying the "provider" to the caller's rollback.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from bnpl.gateway.base import ChargeOutcome, DeclineCode, GatewayRequestError, GatewayResult, PaymentGateway, unknown
from bnpl.gateway.faults import SandboxFaults, sandbox_faults_load
from bnpl.models import SandboxCharge, SandboxFundingSource, SandboxRefund
from bnpl.models.gateway import SandboxChargeStatus
from bnpl.money import ZERO, MoneyError, parse_money

DECLINE_MESSAGES = {
    DeclineCode.ACCOUNT_CLOSED: "the funding source does not exist or is closed",
    DeclineCode.CARD_FROZEN: "the funding source is frozen",
    DeclineCode.INSUFFICIENT_FUNDS: "the balance does not cover the amount",
    DeclineCode.RISK_REJECTED: "rejected by the provider's risk control",
    DeclineCode.CHARGE_NOT_FOUND: "no succeeded charge with that reference",
    DeclineCode.REFUND_EXCEEDS_CHARGE: "the refunds would exceed the amount charged",
}


def _amount(value: object) -> Decimal:
    try:
        return parse_money(value, allow_zero=False)
    except MoneyError as exc:
        raise GatewayRequestError(str(exc)) from exc


def _key(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise GatewayRequestError("the idempotency key must be a string of 1 to 128 characters")
    return value


def _token(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise GatewayRequestError(f"the {what} must be a non-empty string")
    return value


def _charge_result(charge: SandboxCharge) -> GatewayResult:
    if charge.status == SandboxChargeStatus.SUCCEEDED:
        return GatewayResult(
            outcome=ChargeOutcome.SUCCEEDED, reference=charge.reference, message="charged", amount=charge.amount
        )
    return GatewayResult(
        outcome=ChargeOutcome.DECLINED,
        reference=charge.reference,
        decline_code=DeclineCode(charge.decline_code),
        message=DECLINE_MESSAGES.get(charge.decline_code, "declined"),
        amount=charge.amount,
    )


def _refund_result(refund: SandboxRefund) -> GatewayResult:
    return GatewayResult(
        outcome=ChargeOutcome.SUCCEEDED, reference=refund.reference, message="refunded", amount=refund.amount
    )


def _replay_charge(charge: SandboxCharge, funding_token: str, amount: Decimal) -> GatewayResult:
    if charge.funding_token != funding_token or charge.amount != amount:
        raise GatewayRequestError("idempotency key already used for a different charge")
    return _charge_result(charge)


def _replay_refund(refund: SandboxRefund, charge_ref: str, amount: Decimal) -> GatewayResult:
    if refund.charge.reference != charge_ref or refund.amount != amount:
        raise GatewayRequestError("idempotency key already used for a different refund")
    return _refund_result(refund)


def sandbox_charge(
    idempotency_key: str, funding_token: str, amount: object, *, risk_reject: bool = False
) -> GatewayResult:
    """Process a charge once per key; declines are recorded under their key too.

    The funding source row is locked first, so concurrent requests for one source
    (and so every duplicate of one key) queue; the first one records the charge and
    the others, reading after it committed, replay it. The unique key is the
    backstop for duplicates naming different or unknown sources.
    """
    key, value = _key(idempotency_key), _amount(amount)
    token = _token(funding_token, "funding source")
    try:
        with transaction.atomic(durable=True):
            source = SandboxFundingSource.objects.select_for_update().filter(token=token).first()
            existing = SandboxCharge.objects.filter(idempotency_key=key).first()
            if existing is not None:
                return _replay_charge(existing, token, value)
            if source is None:
                decline = DeclineCode.ACCOUNT_CLOSED
            elif source.frozen:
                decline = DeclineCode.CARD_FROZEN
            elif risk_reject:
                decline = DeclineCode.RISK_REJECTED
            elif source.balance_amount < value:
                decline = DeclineCode.INSUFFICIENT_FUNDS
            else:
                decline = None
                SandboxFundingSource.objects.filter(pk=source.pk).update(balance_amount=F("balance_amount") - value)
            charge = SandboxCharge.objects.create(
                idempotency_key=key,
                funding_source=source,
                funding_token=token,
                amount=value,
                status=SandboxChargeStatus.DECLINED if decline else SandboxChargeStatus.SUCCEEDED,
                decline_code=decline or "",
            )
            return _charge_result(charge)
    except IntegrityError:
        existing = SandboxCharge.objects.filter(idempotency_key=key).first()
        if existing is None:
            raise
        return _replay_charge(existing, token, value)


def sandbox_refund(idempotency_key: str, charge_ref: str, amount: object) -> GatewayResult:
    """Refund part or all of a succeeded charge, once per key; Σ refunds never exceeds the charge.

    The charge row is locked while the refunded total is summed and the refund added,
    so two concurrent refunds cannot both fit in the same remainder. A refused refund
    is not recorded (the same key may be tried again).
    """
    key, value = _key(idempotency_key), _amount(amount)
    ref = _token(charge_ref, "charge reference")
    try:
        with transaction.atomic(durable=True):
            charge = SandboxCharge.objects.select_for_update().filter(reference=ref).first()
            existing = SandboxRefund.objects.select_related("charge").filter(idempotency_key=key).first()
            if existing is not None:
                return _replay_refund(existing, ref, value)
            if charge is None or charge.status != SandboxChargeStatus.SUCCEEDED:
                return GatewayResult(
                    outcome=ChargeOutcome.DECLINED,
                    decline_code=DeclineCode.CHARGE_NOT_FOUND,
                    message=DECLINE_MESSAGES[DeclineCode.CHARGE_NOT_FOUND],
                )
            refunded = charge.refunds.aggregate(total=Sum("amount"))["total"] or ZERO
            if refunded + value > charge.amount:
                return GatewayResult(
                    outcome=ChargeOutcome.DECLINED,
                    decline_code=DeclineCode.REFUND_EXCEEDS_CHARGE,
                    message=f"{DECLINE_MESSAGES[DeclineCode.REFUND_EXCEEDS_CHARGE]}: "
                    f"{charge.amount - refunded} of {charge.amount} is refundable",
                )
            refund = SandboxRefund.objects.create(idempotency_key=key, charge=charge, amount=value)
            SandboxFundingSource.objects.filter(pk=charge.funding_source_id).update(
                balance_amount=F("balance_amount") + value
            )
            return _refund_result(refund)
    except IntegrityError:
        existing = SandboxRefund.objects.select_related("charge").filter(idempotency_key=key).first()
        if existing is None:
            raise
        return _replay_refund(existing, ref, value)


def sandbox_query(idempotency_key: str) -> GatewayResult:
    """What the provider recorded under a key: the charge's result, a succeeded refund, or ``not_found``."""
    key = _key(idempotency_key)
    charge = SandboxCharge.objects.filter(idempotency_key=key).first()
    if charge is not None:
        return _charge_result(charge)
    refund = SandboxRefund.objects.filter(idempotency_key=key).first()
    if refund is not None:
        return _refund_result(refund)
    return GatewayResult(outcome=ChargeOutcome.NOT_FOUND, message="no request with this idempotency key")


class InProcessSandboxGateway(PaymentGateway):
    """The sandbox provider called directly, in this process (the default gateway).

    ``faults`` fixes the fault configuration (``NO_FAULTS`` for a fast, fault-free
    run); when None, the configuration row is read on every call so faults switched
    on elsewhere take effect at once. Faults act as they would over a network: a
    timeout or 5xx returns ``unknown`` without processing, a lost response processes
    the request and then returns ``unknown``.
    """

    def __init__(self, faults: SandboxFaults | None = None) -> None:
        self._faults = faults

    def _current_faults(self) -> SandboxFaults:
        return self._faults if self._faults is not None else sandbox_faults_load()

    def charge(self, idempotency_key: str, funding_source: str, amount: Decimal) -> GatewayResult:
        faults = self._current_faults()
        faults.delay()
        stopped = faults.before_processing(idempotency_key)
        if stopped:
            return unknown(f"sandbox: {stopped} (simulated), request not processed")
        result = sandbox_charge(
            idempotency_key, funding_source, amount, risk_reject=faults.hits("risk_reject", idempotency_key)
        )
        if faults.hits("lost_response", idempotency_key):
            return unknown("sandbox: response lost (simulated)")
        return result

    def refund(self, idempotency_key: str, charge_ref: str, amount: Decimal) -> GatewayResult:
        faults = self._current_faults()
        faults.delay()
        stopped = faults.before_processing(idempotency_key)
        if stopped:
            return unknown(f"sandbox: {stopped} (simulated), request not processed")
        result = sandbox_refund(idempotency_key, charge_ref, amount)
        if faults.hits("lost_response", idempotency_key):
            return unknown("sandbox: response lost (simulated)")
        return result

    def query(self, idempotency_key: str) -> GatewayResult:
        self._current_faults().delay()
        return sandbox_query(idempotency_key)
