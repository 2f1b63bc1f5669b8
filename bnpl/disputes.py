"""Disputes: the consumer questions an order, the merchant answers by a deadline, staff decide.

Before the charge an open dispute pauses it (``CreditOrder.charge_paused``; the charge
run's claim skips paused orders). After the charge the disputed amount is held from
the merchant's payout: the settlement job puts a ``hold`` line in the next batch and
a ``release`` line once the dispute is closed (bnpl/settlement.py).

Deciding for the consumer refunds them (after the charge, through
:func:`bnpl.refunds.credit_order_refund`) or lowers what is left to charge (before it);
deciding for the merchant resumes the charge or lets the hold go.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from consumers.models import Consumer
from scoring.services import features_on_dispute

from .choices import ActorKind, OrderStatus
from .exceptions import InvalidTransition, NotAllowed, ValidationFailed
from .gateway.base import PaymentGateway
from .models import CreditOrder, Dispute, DisputeEvent, DisputeEvidence, Refund
from .models.settlement import DISPUTE_ACTIVE, DISPUTE_TRANSITIONS, DisputeOutcome, DisputeReason, DisputeStatus
from .money import ZERO, MoneyError, format_cny, parse_money
from .refunds import _refuse_inside_transaction, _user, credit_order_refund, lower_amount_locked
from .services import _lock_order, _required_reason
from .webhooks import dispute_webhook

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    Actor = AbstractBaseUser | None

S = OrderStatus
BEFORE_CHARGE = (S.COMPLETED, S.COLLECTING, S.OVERDUE)
AFTER_CHARGE = (S.PAID, S.PARTIALLY_REFUNDED)
MAX_DESCRIPTION = 2000
MAX_RESPONSE = 4000


#: Evidence a merchant may attach: photos and PDFs, each up to 5 MB, at most 10 per response.
EVIDENCE_MAX_BYTES = 5 * 1024 * 1024
EVIDENCE_MAX_FILES = 10
EVIDENCE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".pdf"})


def _evidence_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is (its signature), or None: the name alone is not trusted."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\xff\xd8"):  # JPEG start-of-image marker
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        return "heic"
    return None


def evidence_files_check(files: Iterable[File]) -> list[File]:
    """Refuse evidence that is not an image or a PDF (by content and name), is empty or over 5 MB.

    Raises ``ValidationFailed`` with ``fields={"files": …}`` naming the first bad file; writes nothing.
    """
    checked = list(files)
    if len(checked) > EVIDENCE_MAX_FILES:
        message = _("Attach at most %(n)d files.") % {"n": EVIDENCE_MAX_FILES}
        raise ValidationFailed(message, code="evidence_invalid", fields={"files": message})
    for upload in checked:
        name = str(getattr(upload, "name", "") or "")
        size = upload.size or 0
        if size > EVIDENCE_MAX_BYTES or size == 0:
            message = _("“%(name)s” is %(size)s; each file must be more than 0 and at most 5 MB.") % {
                "name": name,
                "size": f"{size / 1024 / 1024:.1f} MB",
            }
            raise ValidationFailed(message, code="evidence_invalid", fields={"files": message})
        upload.seek(0)
        head = upload.read(16)
        upload.seek(0)
        extension = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
        if _evidence_kind(head) is None or extension not in EVIDENCE_EXTENSIONS:
            message = _("“%(name)s” is not a photo (JPEG, PNG, GIF, WebP, HEIC) or a PDF.") % {"name": name}
            raise ValidationFailed(message, code="evidence_invalid", fields={"files": message})
    return checked


def response_days() -> int:
    """Days the merchant has to respond (``BNPL_DISPUTE_RESPONSE_DAYS``, default 7)."""
    return int(getattr(settings, "BNPL_DISPUTE_RESPONSE_DAYS", 7))


def _lock_dispute(dispute: Dispute) -> Dispute:
    return Dispute.objects.select_for_update().get(pk=dispute.pk)


def _transition(
    dispute: Dispute, *, to: str, actor: Actor, actor_kind: str, reason: str = "", data: dict | None = None
) -> None:
    """Move a locked dispute and write its event (the caller saves the other fields it changed)."""
    if to not in DISPUTE_TRANSITIONS[dispute.status]:
        raise InvalidTransition(
            _("dispute %(id)s is %(status)s; it cannot become %(to)s")
            % {"id": dispute.pk, "status": dispute.status, "to": to}
        )
    DisputeEvent.objects.create(
        dispute=dispute,
        actor=_user(actor),
        actor_kind=actor_kind,
        from_status=dispute.status,
        to_status=to,
        reason=reason,
        data=data or {},
    )
    dispute.status = to


def _unpause(order: CreditOrder) -> None:
    if order.charge_paused:
        order.charge_paused = False
        order.save(update_fields=["charge_paused", "updated_at"])


@transaction.atomic(durable=True)
def dispute_open(
    *,
    actor: Actor,
    consumer: Consumer,
    order: CreditOrder,
    reason: str,
    description: str,
    amount: Decimal | str | None = None,
) -> Dispute:
    """The consumer disputes one of their orders (not received, faulty, wrong amount, already paid, not authorised).

    Before the charge (completed, collecting, overdue) the charge is paused; after it
    (paid, partially refunded) the disputed amount is held from the merchant's payout.
    ``amount`` defaults to all that is still at stake (the amount due, less refunds) and
    may not exceed it. One active dispute per order. The merchant must respond within
    ``BNPL_DISPUTE_RESPONSE_DAYS``. Scoring counts the dispute (a behaviour variable).
    """
    if reason not in DisputeReason.values:
        message = _("Choose one of the listed reasons.")
        raise ValidationFailed(message, code="invalid_reason", fields={"reason": message})
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        message = _("Keep the description under %(n)d characters.") % {"n": MAX_DESCRIPTION}
        raise ValidationFailed(message, fields={"description": message})
    order = _lock_order(order)
    if order.consumer_id != consumer.pk:
        raise NotAllowed(_("This order belongs to someone else."), code="wrong_consumer")
    if order.status not in BEFORE_CHARGE + AFTER_CHARGE:
        raise InvalidTransition(
            _("order %(order)s is %(status)s; it cannot be disputed")
            % {"order": order.out_order_no, "status": order.status}
        )
    at_stake = (order.amount_due or ZERO) - order.refunded_amount
    if amount is None:
        value = at_stake
    else:
        try:
            value = parse_money(amount)
        except MoneyError as exc:
            message = _("Enter a valid amount: %(reason)s") % {"reason": exc}
            raise ValidationFailed(message, code="invalid_amount", fields={"amount": message}) from exc
    if value <= ZERO or value > at_stake:
        message = _("The disputed amount must be more than 0 and at most %(max)s.") % {"max": format_cny(at_stake)}
        raise ValidationFailed(message, code="invalid_amount", fields={"amount": message})
    now = timezone.now()
    after_charge = order.status in AFTER_CHARGE
    try:
        with transaction.atomic():
            dispute = Dispute.objects.create(
                order=order,
                consumer=consumer,
                merchant_id=order.merchant_id,
                reason=reason,
                description=description,
                disputed_amount=value,
                after_charge=after_charge,
                respond_by=now + timedelta(days=response_days()),
                created_at=now,
            )
    except IntegrityError:
        raise NotAllowed(_("This order already has an open dispute."), code="dispute_exists") from None
    DisputeEvent.objects.create(
        dispute=dispute,
        actor=_user(actor),
        actor_kind=ActorKind.CONSUMER,
        to_status=DisputeStatus.OPEN,
        reason=description,
        data={"reason": reason, "amount": str(value), "after_charge": after_charge},
    )
    if not after_charge:
        order.charge_paused = True
        order.save(update_fields=["charge_paused", "updated_at"])
    features_on_dispute(actor=None, consumer=consumer)
    dispute_webhook(dispute=dispute, order=order, event_type="dispute.opened")
    return dispute


@transaction.atomic(durable=True)
def dispute_respond(
    *, actor: Actor, dispute: Dispute, text: str, files: Iterable[File] = (), merchant_id: int | None = None
) -> Dispute:
    """The merchant answers an open dispute, with optional evidence files, before ``respond_by``.

    Evidence must be photos or PDFs of at most 5 MB each (:func:`evidence_files_check`).

    ``merchant_id``, when given, must be the dispute's merchant (the caller's tenant).
    After the deadline the answer is refused: staff decide on what they have.
    """
    text = (text or "").strip()
    if not text:
        raise ValidationFailed(_("Please write a response."), fields={"text": _("This field is required.")})
    if len(text) > MAX_RESPONSE:
        message = _("Keep the response under %(n)d characters.") % {"n": MAX_RESPONSE}
        raise ValidationFailed(message, fields={"text": message})
    files = evidence_files_check(files)
    dispute = _lock_dispute(dispute)
    if merchant_id is not None and dispute.merchant_id != merchant_id:
        raise NotAllowed(_("This dispute concerns another merchant."), code="wrong_merchant")
    if dispute.status != DisputeStatus.OPEN:
        raise InvalidTransition(
            _("dispute %(id)s is %(status)s; it cannot be answered") % {"id": dispute.pk, "status": dispute.status}
        )
    now = timezone.now()
    if now > dispute.respond_by:
        raise NotAllowed(_("The deadline to respond to this dispute has passed."), code="response_too_late")
    _transition(dispute, to=DisputeStatus.MERCHANT_RESPONDED, actor=actor, actor_kind=ActorKind.MERCHANT, reason=text)
    dispute.response_text = text
    dispute.responded_at = now
    dispute.save(update_fields=["status", "response_text", "responded_at"])
    for upload in files:
        DisputeEvidence.objects.create(dispute=dispute, file=upload, uploaded_by=_user(actor))
    dispute_webhook(dispute=dispute, order=dispute.order, event_type="dispute.responded")
    return dispute


def _close_decided(*, actor: Actor, dispute: Dispute, outcome: str, reason: str) -> tuple[Dispute, bool]:
    """Mark the dispute decided; returns whether a refund must follow (consumer won after the charge)."""
    with transaction.atomic(durable=True):
        order = _lock_order(dispute.order)
        dispute = _lock_dispute(dispute)
        now = timezone.now()
        _transition(
            dispute,
            to=DisputeStatus.DECIDED,
            actor=actor,
            actor_kind=ActorKind.STAFF,
            reason=reason,
            data={"outcome": outcome},
        )
        dispute.outcome = outcome
        dispute.decided_by = _user(actor)
        dispute.decision_reason = reason
        dispute.decided_at = now
        dispute.closed_at = now
        dispute.save(update_fields=["status", "outcome", "decided_by", "decision_reason", "decided_at", "closed_at"])
        refund_needed = False
        if outcome == DisputeOutcome.CONSUMER_WON and order.status in BEFORE_CHARGE:
            # Nothing was taken yet: what the consumer won is not charged at all.
            left = (order.amount_due or ZERO) - min(dispute.disputed_amount, order.amount_due or ZERO)
            order.charge_paused = False
            lower_amount_locked(
                order,
                actor=actor,
                actor_kind=ActorKind.STAFF,
                new_amount=left,
                reason=reason,
                data={"dispute": dispute.pk},
            )
            if order.status != S.PAID:
                order.save(update_fields=["charge_paused", "updated_at"])
        elif outcome == DisputeOutcome.CONSUMER_WON:
            _unpause(order)  # a charge in flight when the dispute opened may have succeeded since
            refund_needed = order.status in AFTER_CHARGE
        else:
            _unpause(order)
        dispute_webhook(dispute=dispute, order=order, event_type="dispute.decided")
    return dispute, refund_needed


def dispute_decide(
    *, actor: Actor, dispute: Dispute, outcome: str, reason: str, gateway: PaymentGateway | None = None
) -> Dispute:
    """Staff decide an open or answered dispute, with a reason.

    ``consumer_won``: before the charge the amount due drops by the disputed amount (to
    ¥0: the order is closed as paid); after the charge the consumer is refunded the
    disputed amount (at most what is still refundable) through ``credit_order_refund``,
    outside any transaction, keyed ``dispute:<id>`` so a repeat cannot refund twice.
    ``merchant_won``: the charge resumes, or the payout hold is released by the next
    settlement. Refused for a dispute already closed.
    """
    _refuse_inside_transaction()
    reason = _required_reason(reason)
    if outcome not in (DisputeOutcome.CONSUMER_WON, DisputeOutcome.MERCHANT_WON):
        message = _("Choose who won the dispute.")
        raise ValidationFailed(message, code="invalid_outcome", fields={"outcome": message})
    dispute, refund_needed = _close_decided(actor=actor, dispute=dispute, outcome=outcome, reason=reason)
    if refund_needed:
        dispute_refund(actor=actor, dispute=dispute, gateway=gateway)
    return dispute


def dispute_refund(*, actor: Actor, dispute: Dispute, gateway: PaymentGateway | None = None) -> Refund | None:
    """Refund a dispute the consumer won after the charge (also to retry one whose refund was declined).

    The key is ``dispute:<id>``: calling it again returns the same refund, never a second one.
    """
    order = CreditOrder.objects.get(pk=dispute.order_id)
    refundable = (order.amount_due or ZERO) - order.refunded_amount
    amount = min(dispute.disputed_amount, refundable)
    existing = Refund.objects.filter(merchant_id=order.merchant_id, idempotency_key=f"dispute:{dispute.pk}").first()
    if existing is not None:
        return existing
    if amount <= ZERO:
        return None
    return credit_order_refund(
        actor=actor,
        actor_kind=ActorKind.STAFF,
        order=order,
        amount=amount,
        reason=dispute.decision_reason or _("Dispute decided for the consumer"),
        idempotency_key=f"dispute:{dispute.pk}",
        dispute=dispute,
        gateway=gateway,
    )


@transaction.atomic(durable=True)
def dispute_withdraw(*, actor: Actor, dispute: Dispute, consumer: Consumer, reason: str = "") -> Dispute:
    """The consumer withdraws their dispute: the charge resumes or the hold is released."""
    order = _lock_order(dispute.order)
    dispute = _lock_dispute(dispute)
    if dispute.consumer_id != consumer.pk:
        raise NotAllowed(_("This dispute belongs to someone else."), code="wrong_consumer")
    if dispute.status not in DISPUTE_ACTIVE:
        raise InvalidTransition(
            _("dispute %(id)s is %(status)s; it cannot be withdrawn") % {"id": dispute.pk, "status": dispute.status}
        )
    _transition(dispute, to=DisputeStatus.WITHDRAWN, actor=actor, actor_kind=ActorKind.CONSUMER, reason=reason)
    dispute.closed_at = timezone.now()
    dispute.save(update_fields=["status", "closed_at"])
    _unpause(order)
    dispute_webhook(dispute=dispute, order=order, event_type="dispute.withdrawn")
    return dispute
