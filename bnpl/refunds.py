"""Merchant actions on a completed order: refund after the charge, lower the amount before it, collect again.

Refunds follow the charge attempt's pattern (docs/charging.md, docs/settlement.md):

1. one short transaction locks the order, checks refunded + amount ≤ charged, and
   writes a pending :class:`Refund` with a fixed gateway idempotency key;
2. the gateway is called outside any transaction;
3. one transaction records the outcome: on success the ledger posting
   (``post_refund``), the order's ``refunded_amount`` cache and its transition to
   ``partially_refunded`` / ``refunded``.

An unknown outcome leaves the refund ``unknown`` (the order keeps at most one refund
in flight) until :func:`reconcile_pending_refunds` asks the gateway under the same key.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from consumers.services import credit_hold_release

from .choices import ActorKind, OrderStatus
from .exceptions import InvalidTransition, NotAllowed, ValidationFailed
from .gateway import get_gateway
from .gateway.base import ChargeOutcome, GatewayResult, PaymentGateway
from .ledger import post_amount_reduction, post_refund
from .models import ChargeAttempt, CreditOrder, LedgerTransaction, OrderEvent, Refund
from .models.charging import AttemptStatus
from .models.settlement import REFUND_IN_FLIGHT, RefundStatus
from .money import ZERO, MoneyError, parse_money
from .services import _lock_order, _move, _promise_on_paid, _refusal, _required_reason
from .webhooks import refund_webhook

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from .models import Dispute

    Actor = AbstractBaseUser | None

logger = logging.getLogger(__name__)

S = OrderStatus
REFUNDABLE = (S.PAID, S.PARTIALLY_REFUNDED)
BEFORE_CHARGE = (S.COMPLETED, S.COLLECTING, S.OVERDUE)
MESSAGE_MAX = 255
DEFAULT_RECONCILE_AFTER = timedelta(minutes=5)


def _user(actor: Actor) -> AbstractBaseUser | None:
    return actor if getattr(actor, "is_authenticated", False) else None


def _refuse_inside_transaction() -> None:
    """A gateway call never runs inside a database transaction (the test case's own wrapper does not count)."""
    blocks = connection.atomic_blocks
    if blocks and not getattr(blocks[-1], "_from_testcase", False):
        raise RuntimeError("gateway calls must not run inside a database transaction")


def _amount(value: object, *, field: str, allow_zero: bool = False) -> Decimal:
    try:
        return parse_money(value, allow_zero=allow_zero)
    except MoneyError as exc:
        message = _("Enter a valid amount: %(reason)s") % {"reason": exc}
        raise ValidationFailed(message, code="invalid_amount", fields={field: message}) from exc


def _order_event(order: CreditOrder, *, actor: Actor, actor_kind: str, reason: str, data: dict) -> OrderEvent:
    """An event that changes no state (from = to), for the order's timeline."""
    return OrderEvent.objects.create(
        order=order,
        actor=_user(actor),
        actor_kind=actor_kind,
        from_status=order.status,
        to_status=order.status,
        reason=reason,
        data=data,
    )


# --------------------------------------------------------------------------- refunds


def _start_refund(
    *,
    actor: Actor,
    actor_kind: str,
    order: CreditOrder,
    amount: Decimal,
    reason: str,
    idempotency_key: str,
    dispute: Dispute | None,
) -> tuple[Refund, bool]:
    """Lock the order, check, and write the pending refund; returns ``(refund, created)`` (a replay is not)."""
    with transaction.atomic():
        order = _lock_order(order)
        existing = Refund.objects.filter(merchant_id=order.merchant_id, idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.order_id != order.pk or existing.amount != amount:
                message = _("This idempotency key was already used for a different refund.")
                raise ValidationFailed(message, code="idempotency_conflict", fields={"idempotency_key": message})
            return existing, False
        if order.status not in REFUNDABLE:
            raise InvalidTransition(
                _("order %(order)s is %(status)s; it can be refunded only after the charge")
                % {"order": order.out_order_no, "status": order.status}
            )
        charge = ChargeAttempt.objects.filter(order=order, status=AttemptStatus.SUCCEEDED).first()
        if charge is None:
            raise NotAllowed(
                _("Order %(order)s was not charged through the platform; there is nothing to refund.")
                % {"order": order.out_order_no},
                code="not_charged",
            )
        if Refund.objects.filter(order=order, status__in=REFUND_IN_FLIGHT).exists():
            raise NotAllowed(
                _("A refund of this order is in progress; try again when it is settled."), code="refund_in_progress"
            )
        refundable = (order.amount_due or ZERO) - order.refunded_amount
        if amount > refundable:
            message = _("At most %(left)s can be refunded on this order (charged %(charged)s, refunded %(done)s).") % {
                "left": refundable,
                "charged": order.amount_due,
                "done": order.refunded_amount,
            }
            raise ValidationFailed(message, code="refund_exceeds_charged", fields={"amount": message})
        now = timezone.now()
        try:
            with transaction.atomic():
                refund = Refund.objects.create(
                    order=order,
                    merchant_id=order.merchant_id,
                    dispute=dispute,
                    actor=_user(actor),
                    actor_kind=actor_kind,
                    amount=amount,
                    reason=reason,
                    idempotency_key=idempotency_key,
                    gateway_key=f"rf_{order.pk}_{secrets.token_hex(8)}",
                    charge_reference=charge.gateway_reference,
                    requested_at=now,
                    last_sent_at=now,
                )
        except IntegrityError:
            # Two requests with one key raced past the replay check: the loser replays the winner's refund.
            existing = Refund.objects.filter(merchant_id=order.merchant_id, idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing, False
        _order_event(
            order,
            actor=actor,
            actor_kind=actor_kind,
            reason=reason,
            data={"event": "refund_requested", "refund": refund.gateway_key, "amount": str(amount)},
        )
    return refund, True


def _send_refund(gateway: PaymentGateway, refund: Refund) -> GatewayResult:
    try:
        return gateway.refund(refund.gateway_key, refund.charge_reference, refund.amount)
    except Exception as exc:  # the outcome is unknown whatever went wrong
        logger.exception("refund call %s failed", refund.gateway_key)
        return GatewayResult(outcome=ChargeOutcome.UNKNOWN, message=f"call failed: {exc!r}"[:MESSAGE_MAX])


def refund_record(*, refund_id: int, result: GatewayResult) -> Refund:
    """Record a gateway answer for a refund in flight; idempotent (a final refund is left as it is).

    Succeeded → ledger ``post_refund`` (key ``refund:<gateway key>``), the order's
    ``refunded_amount`` grows and the order moves to ``partially_refunded`` or ``refunded``;
    declined → the refund is closed, nothing posted; unknown → ``unknown`` (reconciled later).
    A final outcome also writes the ``refund.succeeded`` / ``refund.declined`` webhook event here.
    Locks the order, then the refund (the order-first lock order of every writer).
    """
    with transaction.atomic():
        order_id = Refund.objects.values_list("order_id", flat=True).get(pk=refund_id)
        order = CreditOrder.objects.select_for_update().get(pk=order_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status not in REFUND_IN_FLIGHT:
            return refund
        now = timezone.now()
        refund.message = (result.message or "")[:MESSAGE_MAX]
        if result.outcome == ChargeOutcome.SUCCEEDED:
            refund.status = RefundStatus.SUCCEEDED
            refund.gateway_reference = (result.reference or "")[:64]
            refund.finished_at = now
            refund.save(update_fields=["status", "gateway_reference", "message", "finished_at"])
            post_refund(order, refund_key=refund.gateway_key, amount=refund.amount)
            order.refunded_amount += refund.amount
            refund_webhook(refund=refund, order=order)  # in this transaction: no callback for a rollback
            to = S.REFUNDED if order.refunded_amount >= (order.amount_due or ZERO) else S.PARTIALLY_REFUNDED
            _move(
                order,
                to=to,
                actor=refund.actor,
                actor_kind=refund.actor_kind,
                reason=refund.reason,
                data={"event": "refunded", "refund": refund.gateway_key, "amount": str(refund.amount)},
                update_fields=["refunded_amount"],
            )
        elif result.outcome == ChargeOutcome.DECLINED:
            refund.status = RefundStatus.DECLINED
            refund.decline_code = (result.decline_code or "declined")[:32]
            refund.finished_at = now
            refund.save(update_fields=["status", "decline_code", "message", "finished_at"])
            _order_event(
                order,
                actor=None,
                actor_kind=ActorKind.SYSTEM,
                reason=_("Refund declined by the payment provider"),
                data={"event": "refund_declined", "refund": refund.gateway_key, "code": refund.decline_code},
            )
            refund_webhook(refund=refund, order=order)
        else:
            refund.status = RefundStatus.UNKNOWN
            refund.save(update_fields=["status", "message"])
    return refund


def credit_order_refund(
    *,
    actor: Actor,
    actor_kind: str,
    order: CreditOrder,
    amount: Decimal | str,
    reason: str,
    idempotency_key: str,
    dispute: Dispute | None = None,
    gateway: PaymentGateway | None = None,
) -> Refund:
    """Refund part or all of a charged order to the consumer (the merchant bears it; the fee is kept).

    Only after the charge (``paid``, ``partially_refunded``), only through the platform's
    own charge, a reason required, and Σ refunds ≤ charged (checked on the locked
    order and by the database's ``order_refunded_within_charged``). Refused, with
    nothing written or posted, otherwise. The same ``idempotency_key`` (per merchant)
    returns the first refund; the gateway is called outside any transaction. Returns the
    refund as recorded: ``unknown`` when the provider could not say (reconciled later).
    """
    _refuse_inside_transaction()
    reason = _required_reason(reason)
    value = _amount(amount, field="amount")
    key = (idempotency_key or "").strip()
    if not key or len(key) > 128:
        message = _("An idempotency key of 1 to 128 characters is required.")
        raise ValidationFailed(message, fields={"idempotency_key": message})
    refund, created = _start_refund(
        actor=actor,
        actor_kind=actor_kind,
        order=order,
        amount=value,
        reason=reason,
        idempotency_key=key,
        dispute=dispute,
    )
    if not created:
        return refund
    result = _send_refund(gateway or get_gateway(), refund)
    return refund_record(refund_id=refund.pk, result=result)


def reconcile_pending_refunds(
    *, older_than: timedelta = DEFAULT_RECONCILE_AFTER, gateway: PaymentGateway | None = None, limit: int = 500
) -> dict[str, int]:
    """Settle refunds left pending (a crash after writing) or unknown (timeout, lost response).

    For each, older than ``older_than`` so no request can still be landing, the gateway
    is asked under the refund's own key: a recorded result is recorded here; ``not_found``
    means the provider never processed it, so the refund is sent again with the same key
    (the provider refunds at most once per key). Safe to run twice and on several workers.
    """
    _refuse_inside_transaction()
    gateway = gateway or get_gateway()
    counts = {"checked": 0, "succeeded": 0, "declined": 0, "unknown": 0}
    ids = list(
        Refund.objects.filter(status__in=REFUND_IN_FLIGHT, last_sent_at__lte=timezone.now() - older_than)
        .order_by("last_sent_at")
        .values_list("id", flat=True)[:limit]
    )
    for refund_id in ids:
        refund = Refund.objects.get(pk=refund_id)
        if refund.status not in REFUND_IN_FLIGHT:
            continue
        try:
            result = gateway.query(refund.gateway_key)
        except Exception:
            logger.exception("query for refund %s failed", refund.gateway_key)
            continue
        if result.outcome == ChargeOutcome.NOT_FOUND:
            Refund.objects.filter(pk=refund.pk).update(last_sent_at=timezone.now())
            result = _send_refund(gateway, refund)
        refund = refund_record(refund_id=refund.pk, result=result)
        counts["checked"] += 1
        counts[str(refund.status) if refund.status != RefundStatus.PENDING else "unknown"] += 1
    return counts


# --------------------------------------------------------------------------- lowering the amount


def lower_amount_locked(
    order: CreditOrder, *, actor: Actor, actor_kind: str, new_amount: Decimal, reason: str, data: dict | None = None
) -> CreditOrder:
    """Lower a locked, unpaid order's amount due, in the caller's transaction (see :func:`credit_order_lower_amount`).

    Also used by a dispute decided for the consumer before the charge.
    """
    if order.status not in BEFORE_CHARGE:
        raise _refusal(order, _("lowered"))
    if order.charge_in_flight:
        raise NotAllowed(
            _("A charge of this order is in progress; try again when it is settled."), code="charge_in_progress"
        )
    old = order.amount_due or ZERO
    if new_amount >= old:
        message = _("The new amount must be below the current amount of %(old)s.") % {"old": old}
        raise ValidationFailed(message, code="amount_not_lower", fields={"new_amount": message})
    reduction = old - new_amount
    if LedgerTransaction.objects.filter(idempotency_key=f"completion:{order.pk}").exists():
        # Amounts only go down, so old → new names this reduction once and for all.
        post_amount_reduction(
            order,
            reduction_key=f"lower:{order.pk}:{old}:{new_amount}",
            amount=reduction,
            description=f"amount of order {order.pk} lowered from {old} to {new_amount}",
        )
    release = min(order.hold_amount, reduction)
    if release > ZERO:
        credit_hold_release(consumer=order.consumer, amount=release)  # type: ignore[arg-type]
    order.hold_amount -= release
    order.amount_due = new_amount
    event_data = {"event": "amount_lowered", "from": str(old), "to": str(new_amount), **(data or {})}
    if new_amount > ZERO:
        order.save(update_fields=["amount_due", "hold_amount", "updated_at"])
        _order_event(order, actor=actor, actor_kind=actor_kind, reason=reason, data=event_data)
        return order
    # Nothing left to charge: the order is done, as a completion with a ¥0 bill is.
    if order.hold_amount > ZERO:
        credit_hold_release(consumer=order.consumer, amount=order.hold_amount)  # type: ignore[arg-type]
        order.hold_amount = ZERO
    was_overdue = order.status == S.OVERDUE
    order.paid_at = timezone.now()
    order.next_attempt_at = None
    order.charge_paused = False
    _move(
        order,
        to=S.PAID,
        actor=_user(actor),
        actor_kind=actor_kind,
        reason=reason,
        data=event_data,
        update_fields=["amount_due", "hold_amount", "paid_at", "next_attempt_at", "charge_paused"],
    )
    if was_overdue:
        from .overdue import overdue_pause_lift

        overdue_pause_lift(actor=_user(actor), order=order)
    _promise_on_paid(order, actor=_user(actor), now=timezone.now())
    return order


@transaction.atomic(durable=True)
def credit_order_lower_amount(
    *, actor: Actor, actor_kind: str, order: CreditOrder, new_amount: Decimal | str, reason: str
) -> CreditOrder:
    """The merchant lowers an order's amount before the charge (WeChat Pay Score "modify"): only down, with a reason.

    Allowed while ``completed``, ``collecting`` or ``overdue`` and no charge attempt is
    in flight. The ledger reverses the difference (``post_amount_reduction``), the hold
    shrinks with it, and an event names the actor. Lowered to ¥0, the order is ``paid``
    (nothing to charge). A refused change writes nothing.
    """
    reason = _required_reason(reason)
    value = _amount(new_amount, field="new_amount", allow_zero=True)
    order = _lock_order(order)
    return lower_amount_locked(order, actor=actor, actor_kind=actor_kind, new_amount=value, reason=reason)


# --------------------------------------------------------------------------- one more collection attempt


@transaction.atomic(durable=True)
def credit_order_collect(*, actor: Actor, actor_kind: str, order: CreditOrder) -> CreditOrder:
    """The merchant asks for one more collection attempt now (collecting or overdue orders).

    Schedules it through the charge run's own mechanism: ``next_attempt_at`` becomes
    now, so the next run (within a minute) claims the order and makes exactly one
    attempt with a fresh idempotency key. Refused while an attempt is in flight, while
    a dispute pauses the charge, or when an attempt is already due.
    """
    order = _lock_order(order)
    if order.status not in (S.COLLECTING, S.OVERDUE):
        raise _refusal(order, _("collected"))
    if order.charge_in_flight:
        raise NotAllowed(_("A charge of this order is already in progress."), code="charge_in_progress")
    if order.charge_paused:
        raise NotAllowed(_("The charge of this order is paused by a dispute."), code="charge_paused")
    now = timezone.now()
    if order.next_attempt_at is not None and order.next_attempt_at <= now:
        raise NotAllowed(_("A charge attempt of this order is already due."), code="collection_already_due")
    order.next_attempt_at = now
    order.save(update_fields=["next_attempt_at", "updated_at"])
    _order_event(
        order,
        actor=actor,
        actor_kind=actor_kind,
        reason=_("Collection requested"),
        data={"event": "collect_requested", "next_attempt_at": now.isoformat()},
    )
    return order
