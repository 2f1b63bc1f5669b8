"""Writes of the pay-later core: agreements, credit orders, usage and bills.

Every change of an order's state goes through one service here. Each one locks the
order row (``SELECT … FOR UPDATE``) inside one transaction, checks the move against
:data:`bnpl.choices.ALLOWED_TRANSITIONS`, writes an :class:`OrderEvent` naming the
actor, and changes the consumer's credit hold in the same transaction, so the
order's ``hold_amount`` and the profile's open exposure can never disagree. A refused
action raises a :mod:`bnpl.exceptions` error before anything is written (or inside
the transaction, which then rolls back), so it changes nothing.

Lock order, to stay free of deadlocks: agreement row → order row → credit profile row.

Charging proper (charge attempts, retries, reconciliation) lives in :mod:`bnpl.charging`,
overdue, guarantee and write-off in :mod:`bnpl.overdue`. The ledger is posted here where
an order's money facts arise: completion (``post_completion``) and payment elsewhere
(``post_amount_reduction``), in the same transaction as the transition.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from consumers.choices import PromiseOutcome
from consumers.models import Consumer, PromiseRecord
from consumers.services import (
    credit_hold_acquire,
    credit_hold_release,
    promise_record_add,
    promise_record_recover,
)
from merchants.choices import ConfirmMode, ListingStatus, MerchantStatus
from merchants.models import Listing, Merchant
from merchants.pricing import BillLineDraft, PricingRuleError, UsageItem, bill_total, parse_rule, rate
from scoring.choices import DecisionChannel, ReasonCode
from scoring.services import admission_assess, features_on_order_opened, features_on_promise_record

from . import sql_rows
from .choices import ALLOWED_TRANSITIONS, OPEN_STATUSES, USAGE_STATUSES, ActorKind, AgreementStatus, OrderStatus
from .exceptions import InsufficientCredit, InvalidTransition, NotAllowed, ValidationFailed
from .incentives import coupon_line_name, coupon_redeem_for_order, incentives_on_promise_record
from .ledger import ledger_account_for, ledger_post, post_amount_reduction, post_completion
from .models import Agreement, AgreementSignup, BillLine, CreditOrder, LedgerTransaction, OrderEvent, UsageEvent
from .models.ledger import AccountKind, TransactionKind
from .money import ZERO, MoneyError, parse_money, to_money
from .policies import due_at_for
from .webhooks import agreement_webhook, order_event_webhook

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from scoring.models import AdmissionDecision

    Actor = AbstractBaseUser | None

S = OrderStatus

QUANTITY_PLACES = 4
QUANTITY_STEP = Decimal(1).scaleb(-QUANTITY_PLACES)
MAX_QUANTITY = Decimal(10) ** 10  # the quantity columns hold 14 digits, 4 of them after the point
MAX_LINE_NAME = 64
MAX_LINE_UNIT = 16
MAX_OUT_ORDER_NO = 64
MAX_TITLE = 120
MAX_REASON = 200


# --------------------------------------------------------------------------- helpers


def _action_label(action: str) -> str:
    """The past participle used in refusals ("it cannot be cancelled"), translated."""
    labels = {
        "confirmed": _("confirmed"),
        "cancelled": _("cancelled"),
        "expired": _("expired"),
        "completed": _("completed"),
        "marked paid": _("marked paid"),
        "declined": _("declined"),
        "activated": _("activated"),
        "given usage": _("given usage"),
    }
    return labels.get(action, action)


def _refusal(order: CreditOrder, action: str) -> InvalidTransition:
    # The status code, not its label, names the state: it is what the API and the logs show,
    # and what a merchant's developer searches the documentation for.
    return InvalidTransition(
        _("order %(order)s is %(status)s; it cannot be %(action)s")
        % {"order": order.out_order_no, "status": order.status, "action": _action_label(action)}
    )


def _require_state(order: CreditOrder, *, sources: Iterable[str], target: str, action: str) -> None:
    """Refuse unless the order is in one of ``sources`` and the state machine allows ``target``."""
    if order.status not in set(sources) or target not in ALLOWED_TRANSITIONS[order.status]:
        raise _refusal(order, action)


def _lock_order(order: CreditOrder) -> CreditOrder:
    """Re-read the order under a row lock: every decision below is taken on the locked row."""
    return CreditOrder.objects.select_for_update().get(pk=order.pk)


def _move(
    order: CreditOrder,
    *,
    to: str,
    actor: Actor,
    actor_kind: str,
    reason: str = "",
    data: Mapping[str, Any] | None = None,
    update_fields: Sequence[str] = (),
) -> OrderEvent:
    """Apply one transition of a locked order and write its event, in the caller's transaction."""
    if to not in ALLOWED_TRANSITIONS[order.status]:
        raise _refusal(order, to)
    event = OrderEvent(
        order=order,
        actor=actor,
        actor_kind=actor_kind,
        from_status=order.status,
        to_status=to,
        reason=reason,
        data=dict(data or {}),
    )
    sql_rows.insert(event)  # save() and save(update_fields=…), each statement built once
    order.status = to
    sql_rows.update(order, ["status", "updated_at", *update_fields])
    # The merchant's webhook (order.<to>) is queued in this same transaction: no callback for a rollback.
    order_event_webhook(order=order, event=event)
    return event


def _promise_on_paid(order: CreditOrder, *, actor: Actor, now: datetime) -> None:
    """The 守约记录 of an order that owes nothing more (charged, paid elsewhere, lowered or billed to ¥0).

    No record yet → fulfilled; a breached record (the order went overdue) → recovered; any other
    record already says how the order ended. Scoring is told in the same transaction.
    """
    record = PromiseRecord.objects.filter(order_id=order.pk).first()
    if record is None:
        record = promise_record_add(
            consumer=order.consumer,  # type: ignore[arg-type]
            merchant_id=order.merchant_id,
            order_id=order.pk,
            outcome=PromiseOutcome.FULFILLED,
            amount=order.amount_due or ZERO,
            recorded_at=now,
        )
        features_on_promise_record(actor=actor, record=record)
        incentives_on_promise_record(actor=actor, record=record, now=now)
    elif record.outcome == PromiseOutcome.BREACHED:
        record = promise_record_recover(order_id=order.pk, recorded_at=now)
        features_on_promise_record(actor=actor, record=record, days_past_due=order.dpd)


def _reasons_data(reasons: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    return [{"code": str(r.get("code", "")), "message": str(r.get("message", ""))} for r in reasons]


def _required_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(_("Please give a reason."), fields={"reason": _("This field is required.")})
    if len(reason) > MAX_REASON:
        message = _("Keep the reason under %(n)d characters.") % {"n": MAX_REASON}
        raise ValidationFailed(message, fields={"reason": message})
    return reason


def _fresh_listing(listing: Listing) -> Listing:
    """The listing and its merchant as committed now: a paused merchant must stop taking orders at once."""
    return Listing.objects.select_related("merchant").get(pk=listing.pk)


def _require_operating(listing: Listing) -> None:
    if listing.merchant.status != MerchantStatus.APPROVED:
        raise NotAllowed(_("This merchant is not available right now."), code="merchant_unavailable")
    if listing.status != ListingStatus.ACTIVE:
        raise NotAllowed(_("This service is not available right now."), code="listing_unavailable")


def _hold_release_all(order: CreditOrder) -> None:
    """Give back everything the order holds; the order row is saved by the caller's ``_move``."""
    if order.hold_amount > 0:
        assert order.consumer is not None  # the database guarantees it (order_hold_has_consumer)
        credit_hold_release(consumer=order.consumer, amount=order.hold_amount)
    order.hold_amount = ZERO


# --------------------------------------------------------------------------- agreements


def agreement_sign(*, actor: Actor, consumer: Consumer, listing: Listing) -> Agreement:
    """Sign (先享服务开通) a consumer's standing agreement for an agreement-mode listing.

    Signing again returns the valid agreement the consumer already has, without a new
    assessment. Otherwise the sign-up is assessed (芝麻先享 assesses at every entry);
    a declined consumer gets :class:`NotAllowed` with code ``declined``, the message
    "Cannot open for now" and the decision's reasons in ``.reasons`` (a list of
    ``{code, message}``). The decision itself is committed before the refusal is
    raised: every automated decision is kept with its reasons (PIPL art. 24).

    Two concurrent sign-ups are made safe by the partial unique constraint
    ``agreement_one_valid_per_listing``: the loser's insert fails and it returns the
    winner's agreement.
    """
    with transaction.atomic(durable=True):
        listing = _fresh_listing(listing)
        if listing.confirm_mode != ConfirmMode.AGREEMENT:
            message = _("This service is confirmed order by order; it has no standing agreement.")
            raise ValidationFailed(message, code="not_agreement_listing", fields={"listing": message})
        _require_operating(listing)
        existing = Agreement.objects.filter(consumer=consumer, listing=listing, status=AgreementStatus.VALID).first()
        if existing is not None:
            return existing
        decision = admission_assess(
            consumer=consumer, listing=listing, amount=listing.max_amount, channel=DecisionChannel.SIGN_UP
        )
        if decision.approved:
            try:
                with transaction.atomic():
                    agreement = Agreement.objects.create(
                        consumer=consumer,
                        merchant=listing.merchant,
                        listing=listing,
                        status=AgreementStatus.VALID,
                        signed_at=timezone.now(),
                    )
                    agreement_webhook(agreement=agreement, event_type="agreement.signed")
                    return agreement
            except IntegrityError as exc:
                if _constraint_name(exc) != "agreement_one_valid_per_listing":
                    raise
                return Agreement.objects.get(consumer=consumer, listing=listing, status=AgreementStatus.VALID)
    # Raised after the commit so that the declined decision stays on record.
    refusal = NotAllowed(_("Cannot open for now"), code="declined")
    refusal.reasons = _reasons_data(decision.reasons)  # type: ignore[attr-defined]
    refusal.decision_id = decision.pk  # type: ignore[attr-defined]
    raise refusal


@transaction.atomic(durable=True)
def agreement_close(*, actor: Actor, agreement: Agreement, reason: str = "") -> Agreement:
    """Close (revoke) a standing agreement; refused while any order under it is open.

    The agreement row is locked first, and :func:`credit_order_create` locks the same
    row before it places an order under it, so an order cannot slip in between the
    "no open order" check and the close.
    """
    agreement = Agreement.objects.select_for_update().get(pk=agreement.pk)
    if agreement.status != AgreementStatus.VALID:
        raise InvalidTransition(
            _("agreement %(id)s is %(status)s; it cannot be closed") % {"id": agreement.pk, "status": agreement.status}
        )
    reason = (reason or "").strip()[:MAX_REASON]
    if CreditOrder.objects.filter(agreement=agreement, status__in=sorted(OPEN_STATUSES)).exists():
        raise NotAllowed(_("The agreement cannot be closed while an order under it is still open."), code="order_open")
    agreement.status = AgreementStatus.CLOSED
    agreement.closed_at = timezone.now()
    agreement.close_reason = reason
    agreement.save(update_fields=["status", "closed_at", "close_reason"])
    agreement_webhook(agreement=agreement, event_type="agreement.closed")
    return agreement


AGREEMENT_SIGNUP_TTL = timedelta(hours=24)
MAX_OUT_AGREEMENT_NO = 64


@transaction.atomic
def agreement_signup_create(
    *,
    actor: Actor,
    merchant: Merchant,
    listing: Listing,
    out_agreement_no: str,
    consumer: Consumer | None = None,
    livemode: bool = True,
) -> AgreementSignup:
    """Create a sign-up link (``SITE_URL/pay/agreement/<token>``) for a listing's standing agreement.

    The consumer signs on the hosted page (which assesses them, as every entry is assessed); this
    only stores the single-use token with a deadline. ``consumer``, when given, is the only person
    who may sign through the link. ``out_agreement_no`` is the merchant's reference, unique per
    merchant (``duplicate_out_agreement_no``). Not durable: the API stores its idempotent response
    in the same transaction.
    """
    listing = _fresh_listing(listing)
    if listing.merchant_id != merchant.pk:
        message = _("This service belongs to another merchant.")
        raise ValidationFailed(message, fields={"listing": message})
    if listing.confirm_mode != ConfirmMode.AGREEMENT:
        message = _("This service is confirmed order by order; it has no standing agreement.")
        raise ValidationFailed(message, code="not_agreement_listing", fields={"listing": message})
    _require_operating(listing)
    out_agreement_no = (out_agreement_no or "").strip()
    if not out_agreement_no or len(out_agreement_no) > MAX_OUT_AGREEMENT_NO:
        message = _("Give the merchant agreement number (1 to %(n)d characters).") % {"n": MAX_OUT_AGREEMENT_NO}
        raise ValidationFailed(message, fields={"out_agreement_no": message})
    duplicate = ValidationFailed(
        _("Merchant agreement number %(no)s is already used.") % {"no": out_agreement_no},
        code="duplicate_out_agreement_no",
        fields={"out_agreement_no": _("Already used.")},
    )
    if AgreementSignup.objects.filter(merchant=merchant, out_agreement_no=out_agreement_no).exists():
        raise duplicate
    try:
        with transaction.atomic():
            return AgreementSignup.objects.create(
                merchant=merchant,
                listing=listing,
                consumer=consumer,
                out_agreement_no=out_agreement_no,
                livemode=livemode,
                token=secrets.token_urlsafe(32),
                expires_at=timezone.now() + AGREEMENT_SIGNUP_TTL,
            )
    except IntegrityError as exc:
        if _constraint_name(exc) != "signup_out_agreement_no_unique":
            raise
        raise duplicate from None


# --------------------------------------------------------------------------- credit orders


def _constraint_name(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


def _parse_max_amount(max_amount: object, listing: Listing) -> Decimal:
    if max_amount is None:
        return listing.max_amount
    try:
        amount = parse_money(max_amount, allow_zero=False)
    except MoneyError:
        message = _("Enter an amount greater than zero with at most two decimal places.")
        raise ValidationFailed(message, fields={"max_amount": message}) from None
    if amount > listing.max_amount:
        message = _("The order amount %(amount)s exceeds this service's ceiling of %(ceiling)s.") % {
            "amount": amount,
            "ceiling": listing.max_amount,
        }
        raise ValidationFailed(message, code="amount_exceeds_cap", fields={"max_amount": message})
    return amount


def _admit(
    order: CreditOrder,
    *,
    consumer: Consumer,
    channel: str,
    actor: Actor,
    actor_kind: str,
    extra_update: Sequence[str] = (),
    listing_is_fresh: bool = False,
) -> CreditOrder:
    """Assess the consumer and take the hold: the order ends ``active`` or ``declined``.

    The assessment reads the profile without a lock; the hold's conditional UPDATE is
    what keeps the limit safe when two orders arrive at once. A hold the limit no longer
    covers turns into a decline with reason ``insufficient_limit``, returned like any
    other decline so the caller can show the reasons.
    """
    decision: AdmissionDecision = admission_assess(
        consumer=consumer,
        listing=order.listing,
        amount=order.max_amount,
        channel=channel,
        listing_is_fresh=listing_is_fresh,
    )
    order.decision = decision
    now = timezone.now()
    update = ["decision", "confirmation_token", *extra_update]
    order.confirmation_token = None  # single use: leaving pending_confirmation spends it
    if decision.approved:
        try:
            credit_hold_acquire(consumer=consumer, amount=order.max_amount)
        except InsufficientCredit:
            reasons = [
                {"code": ReasonCode.INSUFFICIENT_LIMIT.value, "message": str(ReasonCode.INSUFFICIENT_LIMIT.label)}
            ]
        else:
            # The score's open-order, velocity and tenure counters move with the hold.
            features_on_order_opened(
                actor=actor, consumer=consumer, merchant_id=order.merchant_id, scenario=order.scenario
            )
            order.hold_amount = order.max_amount
            order.confirmed_at = now
            _move(
                order,
                to=S.ACTIVE,
                actor=actor,
                actor_kind=actor_kind,
                data={"decision_id": decision.pk, "hold_amount": str(order.max_amount)},
                update_fields=[*update, "hold_amount", "confirmed_at"],
            )
            return order
    else:
        reasons = _reasons_data(decision.reasons)
    order.closed_at = now
    _move(
        order,
        to=S.DECLINED,
        actor=actor,
        actor_kind=actor_kind,
        reason=_("Cannot open for now"),
        data={"decision_id": decision.pk, "reasons": reasons},
        update_fields=[*update, "closed_at"],
    )
    return order


@functools.cache
def _valid_agreement_sql() -> str:
    meta = Agreement._meta
    column = {name: f'a."{meta.get_field(name).column}"' for name in ("id", "consumer", "listing", "status")}
    # At most one valid agreement per consumer and listing (agreement_one_valid_per_listing).
    return (
        f'SELECT {sql_rows.columns(Agreement, "a")} FROM "{meta.db_table}" a '  # noqa: S608
        f"WHERE {column['consumer']} = %s AND {column['listing']} = %s AND {column['status']} = %s "
        f"AND (%s::bigint IS NULL OR {column['id']} = %s::bigint) LIMIT 1 FOR UPDATE"
    )


def _valid_agreement_locked(*, consumer_id: int, listing_id: int, agreement_id: int | None) -> Agreement | None:
    """The consumer's valid agreement for the listing (that one, if ``agreement_id``), locked; None if none.

    Hand-written (``bnpl.sql_rows``): every API order under an agreement runs it, and compiling the
    queryset cost more than the locked read.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _valid_agreement_sql(), [consumer_id, listing_id, AgreementStatus.VALID, agreement_id, agreement_id]
        )
        row = cursor.fetchone()
    return None if row is None else sql_rows.instance(Agreement, row)


@transaction.atomic(durable=True)
def credit_order_create(
    *,
    actor: Actor,
    actor_kind: str,
    merchant: Merchant,
    listing: Listing,
    out_order_no: str,
    consumer: Consumer | None = None,
    max_amount: Decimal | str | None = None,
    title: str = "",
    agreement: Agreement | None = None,
    listing_is_fresh: bool = False,
) -> CreditOrder:
    """Place a credit order (先享订单) with a merchant, from the API or the catalogue.

    ``max_amount`` is the most that may ever be charged (``order_amount`` in 芝麻先享);
    it defaults to the listing's ceiling and may not exceed it. The scenario, the
    confirmation mode and the pricing rule are copied from the listing, so a later
    price change never touches this order.

    Confirm-each-time listings leave the order ``pending_confirmation`` with a single-use
    ``confirmation_token`` and a deadline. Agreement listings need the consumer's valid
    agreement; the order is assessed at once and ends ``active`` (its cap held against
    the limit) or ``declined`` — a declined order is returned, not raised, so that the
    caller can show the reasons.

    The listing and its merchant are read again, so that a caller holding them from an
    earlier request cannot order from a listing or merchant paused since. A caller that
    has just read both in this request (the API: ``listing_get_for_merchant`` with the
    key's merchant) passes ``listing_is_fresh=True`` to skip that read: neither read
    takes a lock, so reading again a few milliseconds later would guarantee nothing more.
    """
    if not listing_is_fresh:
        listing = _fresh_listing(listing)
    if listing.merchant_id != merchant.pk:
        message = _("This service belongs to another merchant.")
        raise ValidationFailed(message, fields={"listing": message})
    _require_operating(listing)
    out_order_no = (out_order_no or "").strip()
    if not out_order_no or len(out_order_no) > MAX_OUT_ORDER_NO:
        message = _("Give the merchant order number (1 to %(n)d characters).") % {"n": MAX_OUT_ORDER_NO}
        raise ValidationFailed(message, fields={"out_order_no": message})
    amount = _parse_max_amount(max_amount, listing)
    title = (title or "").strip() or listing.title
    if len(title) > MAX_TITLE:
        message = _("Keep the title under %(n)d characters.") % {"n": MAX_TITLE}
        raise ValidationFailed(message, fields={"title": message})
    try:
        parse_rule(listing.pricing_rule)
    except PricingRuleError as exc:
        raise ValidationFailed(
            _("This service's pricing rule is invalid; the merchant must fix it."),
            code="invalid_pricing_rule",
            fields=exc.errors,
        ) from None

    is_agreement = listing.confirm_mode == ConfirmMode.AGREEMENT
    if is_agreement:
        if consumer is None:
            message = _("An order under a standing agreement needs the consumer.")
            raise ValidationFailed(message, code="agreement_required", fields={"consumer": message})
        # Locking the agreement serialises this order with agreement_close: a close that won
        # the lock has made the row closed, and the re-checked WHERE clause finds nothing.
        agreement = _valid_agreement_locked(
            consumer_id=consumer.pk, listing_id=listing.pk, agreement_id=None if agreement is None else agreement.pk
        )
        if agreement is None:
            message = _("The consumer has no valid agreement for this service.")
            raise ValidationFailed(message, code="agreement_required", fields={"agreement": message})
    elif agreement is not None:
        message = _("This service is confirmed order by order; it takes no agreement.")
        raise ValidationFailed(message, fields={"agreement": message})

    # A number already used is found by the unique constraint, not by a read first: one statement
    # for the usual new number, and two requests with the same number at once are decided the same
    # way. No savepoint either: nothing is written before this INSERT, so the failed statement
    # aborts a transaction that the refusal rolls back anyway.
    order = CreditOrder(
        merchant=merchant,
        listing=listing,
        consumer=consumer,
        agreement=agreement,
        out_order_no=out_order_no,
        title=title,
        scenario=listing.scenario,
        confirm_mode=listing.confirm_mode,
        pricing_rule=listing.pricing_rule,
        status=S.CREATED,
        max_amount=amount,
    )
    try:
        sql_rows.insert(order)  # save(), without compiling the INSERT each time (every API order)
    except IntegrityError as exc:
        if _constraint_name(exc) != "order_out_order_no_unique":
            raise
        raise _duplicate_out_order_no(out_order_no) from None
    sql_rows.insert(
        OrderEvent(
            order=order,
            actor=actor,
            actor_kind=actor_kind,
            from_status="",
            to_status=S.CREATED,
            data={"max_amount": str(amount)},
        )
    )

    if is_agreement:
        assert consumer is not None
        # The listing and its merchant were read in this transaction (above, or by the caller just before).
        return _admit(
            order,
            consumer=consumer,
            channel=DecisionChannel.ORDER,
            actor=actor,
            actor_kind=actor_kind,
            listing_is_fresh=True,
        )

    order.confirmation_token = secrets.token_urlsafe(32)
    order.expires_at = timezone.now() + timedelta(minutes=listing.order_ttl_minutes)
    _move(
        order,
        to=S.PENDING_CONFIRMATION,
        actor=actor,
        actor_kind=actor_kind,
        data={"expires_at": order.expires_at.isoformat()},
        update_fields=["confirmation_token", "expires_at"],
    )
    return order


def _duplicate_out_order_no(out_order_no: str) -> ValidationFailed:
    message = _("Merchant order number %(no)s is already used.") % {"no": out_order_no}
    return ValidationFailed(message, code="duplicate_out_order_no", fields={"out_order_no": message})


@transaction.atomic(durable=True)
def credit_order_confirm(*, actor: Actor, order: CreditOrder, consumer: Consumer) -> CreditOrder:
    """The consumer confirms a confirm-each-time order on its hosted page.

    Only a pending order before its deadline can be confirmed (expiring it is left to
    the expiry job); an order already made out to a consumer can be confirmed by that
    consumer only. The consumer is assessed; approved → the cap is held and the order
    is ``active``, otherwise ``declined`` (returned with its reasons). Either way the
    confirmation token is spent.
    """
    order = _lock_order(order)
    _require_state(order, sources={S.PENDING_CONFIRMATION}, target=S.ACTIVE, action="confirmed")
    if order.consumer_id is not None and order.consumer_id != consumer.pk:
        raise NotAllowed(_("This order was made out to someone else."), code="wrong_consumer")
    if order.expires_at is not None and timezone.now() >= order.expires_at:
        raise NotAllowed(_("This order has expired; ask the merchant for a new one."), code="expired")
    order.consumer = consumer
    return _admit(
        order,
        consumer=consumer,
        channel=DecisionChannel.CONFIRM,
        actor=actor,
        actor_kind=ActorKind.CONSUMER,
        extra_update=["consumer"],
    )


@transaction.atomic(durable=True)
def credit_order_cancel(*, actor: Actor, actor_kind: str, order: CreditOrder, reason: str) -> CreditOrder:
    """Cancel a pending or active order, with a reason; the hold is given back.

    An active order (the consumer had confirmed) gets the promise record ``cancelled``
    (已取消); a pending one the consumer never confirmed gets none.
    """
    reason = _required_reason(reason)
    order = _lock_order(order)
    _require_state(order, sources={S.PENDING_CONFIRMATION, S.ACTIVE}, target=S.CANCELLED, action="cancelled")
    was_active = order.status == S.ACTIVE
    now = timezone.now()
    _hold_release_all(order)
    order.confirmation_token = None
    order.closed_at = now
    order.close_reason = reason
    _move(
        order,
        to=S.CANCELLED,
        actor=actor,
        actor_kind=actor_kind,
        reason=reason,
        update_fields=["hold_amount", "confirmation_token", "closed_at", "close_reason"],
    )
    if was_active:
        assert order.consumer is not None
        record = promise_record_add(
            consumer=order.consumer,
            merchant_id=order.merchant_id,
            order_id=order.pk,
            outcome=PromiseOutcome.CANCELLED,
            amount=ZERO,
            recorded_at=now,
        )
        features_on_promise_record(actor=actor, record=record)
    return order


@transaction.atomic
def credit_order_expire(*, order: CreditOrder) -> CreditOrder:
    """Expire a pending order left unconfirmed past its deadline (a system action).

    Not durable: the expiry job calls it inside the transaction that claimed the row.
    An order whose deadline has not passed is refused.
    """
    order = _lock_order(order)
    _require_state(order, sources={S.PENDING_CONFIRMATION}, target=S.EXPIRED, action="expired")
    now = timezone.now()
    if order.expires_at is None or now < order.expires_at:
        raise NotAllowed(
            _("order %(order)s can be confirmed until %(deadline)s; it cannot expire yet")
            % {"order": order.out_order_no, "deadline": order.expires_at},
            code="not_expired",
        )
    # A pending order holds nothing, but release defensively so a bug elsewhere cannot leak credit.
    _hold_release_all(order)
    order.confirmation_token = None
    order.closed_at = now
    _move(
        order,
        to=S.EXPIRED,
        actor=None,
        actor_kind=ActorKind.SYSTEM,
        reason=_("Not confirmed in time"),
        update_fields=["hold_amount", "confirmation_token", "closed_at"],
    )
    return order


# --------------------------------------------------------------------------- usage and completion


def _parse_quantity(value: object, field: str = "quantity") -> Decimal:
    """A usage or bill quantity: a decimal ≥ 0 with at most four places (never a float)."""
    message = _("Enter a number of at least 0 with at most %(places)d decimal places.") % {"places": QUANTITY_PLACES}
    if isinstance(value, float | bool) or value is None:
        raise ValidationFailed(message, fields={field: message})
    try:
        quantity = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationFailed(message, fields={field: message}) from None
    if not quantity.is_finite() or quantity < 0 or quantity >= MAX_QUANTITY:
        raise ValidationFailed(message, fields={field: message})
    # Trailing zeros are harmless ("1.63330"); a fifth significant place would be silently lost.
    if quantity.quantize(QUANTITY_STEP) != quantity:
        raise ValidationFailed(message, fields={field: message})
    return quantity.quantize(QUANTITY_STEP)


@transaction.atomic(durable=True)
def usage_record(
    *,
    actor: Actor,
    merchant: Merchant,
    order: CreditOrder,
    merchant_event_id: str,
    quantity: Decimal | str | int,
    occurred_at: datetime,
    properties: Mapping[str, Any] | None = None,
) -> tuple[UsageEvent, bool]:
    """Record one metered usage report (a charging session, a weighed parcel, a visit).

    ``merchant_event_id`` is the merchant's idempotency id: a retried report returns
    ``(original, False)`` and counts nothing twice, even after the order has finished.
    The same id naming another order or another quantity is a different report reusing
    an id, and is refused (``duplicate_event_conflict``). New usage is accepted only
    while the order is active; the order row is locked so a report cannot slip in after
    the completion that rated the usage.
    """
    if order.merchant_id != merchant.pk:
        raise NotAllowed(_("This order belongs to another merchant."), code="wrong_merchant")
    merchant_event_id = (merchant_event_id or "").strip()
    if not merchant_event_id or len(merchant_event_id) > 64:
        message = _("Give the event id (1 to 64 characters).")
        raise ValidationFailed(message, fields={"merchant_event_id": message})
    amount = _parse_quantity(quantity)
    if not isinstance(occurred_at, datetime) or timezone.is_naive(occurred_at):
        message = _("Give the time with its time zone.")
        raise ValidationFailed(message, fields={"occurred_at": message})
    props = dict(properties or {})

    existing = UsageEvent.objects.filter(merchant=merchant, merchant_event_id=merchant_event_id).first()
    if existing is not None:
        return _usage_replay(existing, order=order, quantity=amount), False

    order = _lock_order(order)
    if order.status not in USAGE_STATUSES:
        raise _refusal(order, "given usage")
    try:
        with transaction.atomic():
            event = UsageEvent.objects.create(
                merchant=merchant,
                order=order,
                merchant_event_id=merchant_event_id,
                quantity=amount,
                occurred_at=occurred_at,
                properties=props,
            )
    except IntegrityError as exc:
        # The same id reported twice at the same instant: the unique constraint picks one.
        if _constraint_name(exc) != "usage_event_id_unique":
            raise
        existing = UsageEvent.objects.get(merchant=merchant, merchant_event_id=merchant_event_id)
        return _usage_replay(existing, order=order, quantity=amount), False
    return event, True


def _usage_replay(existing: UsageEvent, *, order: CreditOrder, quantity: Decimal) -> UsageEvent:
    if existing.order_id != order.pk or existing.quantity != quantity:
        message = _("Event id %(id)s was already used for a different report.") % {"id": existing.merchant_event_id}
        raise ValidationFailed(message, code="duplicate_event_conflict", fields={"merchant_event_id": message})
    return existing


MAX_USAGE_BATCH = 1000


@dataclass(frozen=True)
class UsageInput:
    """One usage report of a batch; the order is named by platform id or by ``out_order_no``."""

    merchant_event_id: str
    quantity: Decimal | str | int
    occurred_at: datetime
    order_id: int | None = None
    out_order_no: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UsageBatchResult:
    """What a batch did: how many events are new, and the ids that were already recorded (replays)."""

    received: int
    created: int
    duplicates: list[str]


_USAGE_INSERT_SQL = """
INSERT INTO {table} (merchant_id, order_id, merchant_event_id, quantity, occurred_at, properties, created_at)
SELECT %s, r.order_id, r.event_id, r.quantity, r.occurred_at, coalesce(r.properties, '{{}}'::jsonb), %s
FROM jsonb_to_recordset(%s::jsonb)
    AS r(order_id bigint, event_id text, quantity numeric, occurred_at timestamptz, properties jsonb)
ON CONFLICT ON CONSTRAINT usage_event_id_unique DO NOTHING
RETURNING merchant_event_id
"""
_USAGE_RECORDED_SQL = """
SELECT merchant_event_id, order_id, quantity FROM {table} WHERE merchant_id = %s AND merchant_event_id = ANY(%s)
"""


def _quick_quantity(value: object) -> Decimal | None:
    """The common case of :func:`_parse_quantity` without building its error message; None if not simple."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    try:
        quantity = Decimal(value) if isinstance(value, int) else Decimal(value.strip())
    except (InvalidOperation, ValueError):
        return None
    if not quantity.is_finite() or quantity < 0 or quantity >= MAX_QUANTITY:
        return None
    quantized = quantity.quantize(QUANTITY_STEP)
    return quantized if quantized == quantity else None


def _usage_batch_clean(events: Sequence[UsageInput]) -> list[tuple[UsageInput, str, Decimal]]:
    if not 1 <= len(events) <= MAX_USAGE_BATCH:
        message = _("Send between 1 and %(n)d events.") % {"n": MAX_USAGE_BATCH}
        raise ValidationFailed(message, fields={"events": message})
    errors: dict[str, str] = {}
    cleaned: list[tuple[UsageInput, str, Decimal]] = []
    for index, item in enumerate(events):
        prefix = f"events[{index}]"
        event_id = (item.merchant_event_id or "").strip()
        if not event_id or len(event_id) > 64:
            errors[f"{prefix}.merchant_event_id"] = _("Give the event id (1 to 64 characters).")
        quantity = _quick_quantity(item.quantity)
        if quantity is None:
            try:
                quantity = _parse_quantity(item.quantity, f"{prefix}.quantity")
            except ValidationFailed as exc:
                errors.update(exc.fields)
                quantity = ZERO
        if not isinstance(item.occurred_at, datetime) or timezone.is_naive(item.occurred_at):
            errors[f"{prefix}.occurred_at"] = _("Give the time with its time zone.")
        if (item.order_id is None) == (item.out_order_no is None):
            errors[f"{prefix}.order_id"] = _("Name the order by order_id or by out_order_no (one of them).")
        elif item.order_id is not None and (
            isinstance(item.order_id, bool) or not isinstance(item.order_id, int) or not 0 < item.order_id < 2**63
        ):
            errors[f"{prefix}.order_id"] = _("No such order.")
        if not isinstance(item.properties, Mapping):
            errors[f"{prefix}.properties"] = _("Must be an object.")
        cleaned.append((item, event_id, quantity))
    if errors:
        raise ValidationFailed(_("The usage events have errors."), fields=errors)
    return cleaned


def _usage_recorded(merchant: Merchant, event_ids: Sequence[str]) -> dict[str, tuple[int, Decimal]]:
    """What is recorded under these event ids: ``{id: (order_id, quantity)}`` (one array parameter, not an IN list)."""
    table = connection.ops.quote_name(UsageEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(_USAGE_RECORDED_SQL.format(table=table), [merchant.pk, list(event_ids)])
        return {event_id: (order_id, quantity) for event_id, order_id, quantity in cursor.fetchall()}


@transaction.atomic
def usage_record_batch(
    *,
    actor: Actor,
    merchant: Merchant,
    events: Sequence[UsageInput],
    sandbox: bool | None = None,
) -> UsageBatchResult:
    """Record up to :data:`MAX_USAGE_BATCH` usage reports of the merchant's orders in one transaction.

    All or nothing: any invalid event, unknown order (``order_not_found``), order that no longer
    takes usage (``invalid_state``) or reused event id (``duplicate_event_conflict``) refuses the
    whole batch, naming the event (``events[i].…``). An event id already recorded with the same
    order and quantity is a replay: counted in ``duplicates``, not recorded twice — the same
    contract as :func:`usage_record`. ``sandbox`` (the API key's mode) restricts the batch to
    orders of sandbox (True) or real (False) consumers (``livemode_mismatch``).

    Built for throughput: orders are resolved and locked in one query (in id order, so two batches
    never deadlock), and the new events are written by one ``INSERT … SELECT FROM
    jsonb_to_recordset(…) ON CONFLICT DO NOTHING``; only the ids that insert skipped (already
    recorded) are read back and compared. Not durable: the API stores the idempotent response in
    the same transaction, and a refusal after the insert rolls the whole batch back.
    """
    cleaned = _usage_batch_clean(events)
    ids = {item.order_id for item, _eid, _q in cleaned if item.order_id is not None}
    numbers = {item.out_order_no for item, _eid, _q in cleaned if item.out_order_no is not None}
    # Locks the merchant's named orders in id order; another merchant's ids are simply not found.
    orders = list(
        CreditOrder.objects.select_for_update(of=("self",))
        .select_related("consumer")
        .only("id", "merchant_id", "status", "out_order_no", "consumer__id", "consumer__is_sandbox")
        .filter(Q(pk__in=ids) | Q(out_order_no__in=numbers), merchant=merchant)
        .order_by("pk")
    )
    by_id = {order.pk: order for order in orders}
    by_number = {order.out_order_no: order for order in orders}
    resolved: list[tuple[int, str, Decimal, CreditOrder, UsageInput]] = []
    errors: dict[str, str] = {}
    for index, (item, event_id, quantity) in enumerate(cleaned):
        order = by_id.get(item.order_id) if item.order_id is not None else by_number.get(item.out_order_no or "")
        if order is None:
            key = "order_id" if item.order_id is not None else "out_order_no"
            errors[f"events[{index}].{key}"] = _("No such order.")
            continue
        resolved.append((index, event_id, quantity, order, item))
    if errors:
        raise ValidationFailed(_("Some events name orders that do not exist."), code="order_not_found", fields=errors)
    if sandbox is not None:
        for index, _eid, _q, order, _item in resolved:
            if order.consumer is None or order.consumer.is_sandbox != sandbox:
                raise NotAllowed(
                    _("events[%(i)d]: this key's mode cannot act on order %(order)s.")
                    % {"i": index, "order": order.out_order_no},
                    code="livemode_mismatch",
                )

    def conflict(index: int, event_id: str) -> ValidationFailed:
        message = _("Event id %(id)s was already used for a different report.") % {"id": event_id}
        return ValidationFailed(
            message, code="duplicate_event_conflict", fields={f"events[{index}].merchant_event_id": message}
        )

    def replays(candidates: list[tuple[int, str, Decimal, CreditOrder, UsageInput]]) -> list[tuple[int, str]]:
        """The candidates already recorded identically; a different recording is a conflict."""
        recorded = _usage_recorded(merchant, [event_id for _i, event_id, _q, _o, _it in candidates])
        found = []
        for index, event_id, quantity, order, _item in candidates:
            previous = recorded.get(event_id)
            if previous is None:
                continue
            if previous != (order.pk, quantity):
                raise conflict(index, event_id)
            found.append((index, event_id))
        return found

    seen: dict[str, tuple[int, Decimal]] = {}
    duplicates: list[tuple[int, str]] = []
    candidates: list[tuple[int, str, Decimal, CreditOrder, UsageInput]] = []
    for index, event_id, quantity, order, item in resolved:
        if event_id in seen:
            if seen[event_id] != (order.pk, quantity):
                raise conflict(index, event_id)
            duplicates.append((index, event_id))
            continue
        seen[event_id] = (order.pk, quantity)
        candidates.append((index, event_id, quantity, order, item))

    # An order that no longer takes usage may still receive replays of what it recorded.
    closed = [c for c in candidates if c[3].status not in USAGE_STATUSES]
    if closed:
        replayed = replays(closed)
        replayed_ids = {event_id for _i, event_id in replayed}
        for index, event_id, _q, order, _item in closed:
            if event_id not in replayed_ids:
                refusal = _refusal(order, "given usage")
                refusal.fields = {f"events[{index}].order_id": refusal.message}
                raise refusal
        duplicates.extend(replayed)
        candidates = [c for c in candidates if c[1] not in replayed_ids]

    created = 0
    if candidates:
        rows = [
            {
                "order_id": order.pk,
                "event_id": event_id,
                "quantity": str(quantity),
                "occurred_at": item.occurred_at.isoformat(),
                "properties": dict(item.properties),
            }
            for _i, event_id, quantity, order, item in candidates
        ]
        table = connection.ops.quote_name(UsageEvent._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                _USAGE_INSERT_SQL.format(table=table),
                [merchant.pk, timezone.now(), json.dumps(rows, ensure_ascii=False, separators=(",", ":"))],
            )
            inserted = {row[0] for row in cursor.fetchall()}
        created = len(inserted)
        if created != len(candidates):
            # Recorded before (a retried report), or by a concurrent batch that committed first.
            skipped = [c for c in candidates if c[1] not in inserted]
            found = replays(skipped)
            if len(found) != len(skipped):  # vanished meanwhile: cannot happen, the ids are unique forever
                raise RuntimeError("usage events skipped by the insert are not recorded")
            duplicates.extend(found)
    return UsageBatchResult(
        received=len(events), created=created, duplicates=[event_id for _i, event_id in sorted(duplicates)]
    )


def _merchant_lines(lines: Sequence[Mapping[str, Any]], discounts: Sequence[Mapping[str, Any]]) -> list[BillLineDraft]:
    """Validate the bill a merchant sends: every line explainable as quantity × unit price."""
    errors: dict[str, str] = {}
    drafts: list[BillLineDraft] = []

    def text(item: Mapping[str, Any], key: str, prefix: str, limit: int, required: bool) -> str:
        value = str(item.get(key) or "").strip()
        if required and not value:
            errors[f"{prefix}.{key}"] = _("This field is required.")
        elif len(value) > limit:
            errors[f"{prefix}.{key}"] = _("Keep it under %(n)d characters.") % {"n": limit}
        return value

    def money(item: Mapping[str, Any], key: str, prefix: str, *, allow_zero: bool) -> Decimal | None:
        try:
            return parse_money(item.get(key), allow_zero=allow_zero)
        except MoneyError:
            errors[f"{prefix}.{key}"] = (
                _("Enter an amount of at least 0 with at most two decimal places.")
                if allow_zero
                else _("Enter an amount greater than zero with at most two decimal places.")
            )
            return None

    def quantity(item: Mapping[str, Any], key: str, prefix: str, default: object) -> Decimal | None:
        try:
            return _parse_quantity(item.get(key, default), f"{prefix}.{key}")
        except ValidationFailed as exc:
            errors.update(exc.fields)
            return None

    if not isinstance(lines, Sequence) or not isinstance(discounts, Sequence):
        raise ValidationFailed(_("Bill lines and discounts must be lists."), fields={"lines": _("Must be a list.")})
    for index, item in enumerate(lines):
        prefix = f"lines[{index}]"
        if not isinstance(item, Mapping):
            errors[prefix] = _("Each line must be an object.")
            continue
        name = text(item, "name", prefix, MAX_LINE_NAME, required=True)
        unit = text(item, "unit", prefix, MAX_LINE_UNIT, required=False)
        amount = money(item, "amount", prefix, allow_zero=True)
        qty = quantity(item, "quantity", prefix, "1")
        unit_price = quantity(item, "unit_price", prefix, item.get("amount"))
        if amount is None or qty is None or unit_price is None:
            continue
        expected = to_money(qty * unit_price)
        if amount != expected:
            errors[f"{prefix}.amount"] = _("%(qty)s × %(price)s comes to %(expected)s, not %(amount)s.") % {
                "qty": qty,
                "price": unit_price,
                "expected": expected,
                "amount": amount,
            }
            continue
        drafts.append(BillLineDraft(name, qty, unit, unit_price, amount))
    for index, item in enumerate(discounts):
        prefix = f"discounts[{index}]"
        if not isinstance(item, Mapping):
            errors[prefix] = _("Each discount must be an object.")
            continue
        name = text(item, "name", prefix, MAX_LINE_NAME, required=True)
        amount = money(item, "amount", prefix, allow_zero=False)
        if amount is None:
            continue
        drafts.append(BillLineDraft(name, Decimal(1), "", amount, amount, is_discount=True))
    if errors:
        raise ValidationFailed(_("The bill has errors."), fields=errors)
    return drafts


def _usage_lines(order: CreditOrder) -> list[BillLineDraft]:
    """Rate the order's usage under the pricing rule it was placed with (its own snapshot)."""
    usage = [
        UsageItem(quantity=event.quantity, occurred_at=event.occurred_at, properties=event.properties)
        for event in order.usage_events.order_by("occurred_at", "id")
    ]
    started_at = order.confirmed_at or order.created_at
    try:
        return rate(parse_rule(order.pricing_rule), usage, started_at=started_at)
    except PricingRuleError as exc:
        raise ValidationFailed(_("The usage cannot be rated."), code="rating_failed", fields=exc.errors) from None


@transaction.atomic(durable=True)
def credit_order_complete(
    *,
    actor: Actor,
    actor_kind: str,
    order: CreditOrder,
    lines: Sequence[Mapping[str, Any]] | None = None,
    discounts: Sequence[Mapping[str, Any]] | None = None,
    reason: str = "",
) -> CreditOrder:
    """Complete an active order with its final bill; the charge falls due by scenario policy.

    Without ``lines`` the bill is the order's usage rated under its pricing-rule snapshot
    (started at confirmation, for 24 h caps); with them it is the merchant's bill:
    ``lines`` of ``{name, quantity, unit, unit_price, amount}`` (each amount must equal
    quantity × unit price to the fen) and ``discounts`` of ``{name, amount}``, which may
    also be given with a usage bill. ``amount_due = Σ lines − Σ discounts`` must lie
    between 0 and the order's ``max_amount`` (invariant 4), else nothing changes. Then the
    consumer's oldest usable campaign coupon of the merchant, if any, is taken off as one more
    discount line, at most what is left (``coupon_redeem_for_order``; the coupon is marked used
    in this transaction).

    The hold shrinks from the cap to the amount due, and the ledger records the bill
    (``post_completion``: the consumer owes it, the merchant is owed it). A bill of zero
    has nothing to charge or post: the order goes on to ``paid`` in the same
    transaction, its promise kept.
    """
    order = _lock_order(order)
    _require_state(order, sources={S.ACTIVE}, target=S.COMPLETED, action="completed")
    if lines is None:
        drafts = _usage_lines(order) + _merchant_lines([], discounts or [])
    else:
        drafts = _merchant_lines(lines, discounts or [])
    charges = sum((d.amount for d in drafts if not d.is_discount), ZERO)
    total = bill_total(drafts)
    if total < 0:
        message = _("The discounts (%(discounts)s) exceed the bill (%(charges)s).") % {
            "discounts": charges - total,
            "charges": charges,
        }
        raise ValidationFailed(message, code="negative_total", fields={"discounts": message})
    if total > order.max_amount:
        message = _("The bill of %(total)s exceeds the order's maximum of %(cap)s.") % {
            "total": total,
            "cap": order.max_amount,
        }
        raise ValidationFailed(message, code="amount_exceeds_cap", fields={"lines": message})
    now = timezone.now()
    # A campaign coupon of this merchant comes off automatically (docs/incentives.md), at most the bill.
    redeemed = coupon_redeem_for_order(order=order, bill=total, now=now)
    if redeemed is not None:
        coupon, coupon_amount = redeemed
        drafts.append(
            BillLineDraft(coupon_line_name(coupon), Decimal(1), "", coupon_amount, coupon_amount, is_discount=True)
        )
        total = bill_total(drafts)

    BillLine.objects.bulk_create(
        BillLine(
            order=order,
            position=position,
            name=d.name[:MAX_LINE_NAME],
            quantity=d.quantity,
            unit=d.unit[:MAX_LINE_UNIT],
            unit_price=d.unit_price,
            amount=d.amount,
            is_discount=d.is_discount,
        )
        for position, d in enumerate(drafts)
    )
    assert order.consumer is not None  # an active order always has its consumer
    credit_hold_release(consumer=order.consumer, amount=order.hold_amount - total)
    order.hold_amount = total
    order.amount_due = total
    order.completed_at = now
    order.due_at = due_at_for(order, now)
    _move(
        order,
        to=S.COMPLETED,
        actor=actor,
        actor_kind=actor_kind,
        reason=(reason or "").strip(),
        data={
            "amount_due": str(total),
            "source": "usage" if lines is None else "merchant",
            "lines": len(drafts),
            **({"coupon": redeemed[0].pk, "coupon_amount": str(redeemed[1])} if redeemed else {}),
        },
        update_fields=["hold_amount", "amount_due", "completed_at", "due_at"],
    )
    if total > 0:
        post_completion(order, amount=total)
    if total == 0:
        _hold_release_all(order)
        order.paid_at = now
        _move(
            order,
            to=S.PAID,
            actor=actor,
            actor_kind=actor_kind,
            reason=_("nothing to charge"),
            update_fields=["hold_amount", "paid_at"],
        )
        _promise_on_paid(order, actor=actor, now=now)
    return order


@transaction.atomic(durable=True)
def credit_order_mark_paid_elsewhere(*, actor: Actor, actor_kind: str, order: CreditOrder, reason: str) -> CreditOrder:
    """Mark an unpaid completed order paid through another channel ("sync" in WeChat Pay Score).

    The hold is given back. The promise record becomes ``fulfilled`` for an order paid
    while completed or collecting; an overdue order whose record was already written as
    ``breached`` becomes ``recovered`` (paid late), and one without a record yet
    (the overdue job had not written it) is ``fulfilled``. A consumer paused for this
    overdue order is unpaused when no other order of theirs is overdue.

    Ledger: the platform will not collect the bill, so the completion is reversed
    (``post_amount_reduction``, key ``adjustment:paid_elsewhere:<order>``) and a late fee,
    if one was added, is waived (``adjustment:late_fee_waived:<order>``). Refused while a
    charge attempt is in flight (``charge_in_progress``): it might still take the money.
    """
    reason = _required_reason(reason)
    order = _lock_order(order)
    _require_state(order, sources={S.COMPLETED, S.COLLECTING, S.OVERDUE}, target=S.PAID, action="marked paid")
    if order.charge_in_flight:
        raise NotAllowed(
            _("A charge of this order is in progress; try again when it is settled."), code="charge_in_progress"
        )
    was_overdue = order.status == S.OVERDUE
    now = timezone.now()
    _post_paid_elsewhere(order)
    _hold_release_all(order)
    order.paid_at = now
    order.next_attempt_at = None
    _move(
        order,
        to=S.PAID,
        actor=actor,
        actor_kind=actor_kind,
        reason=reason,
        data={"channel": "elsewhere", "amount": str(order.amount_due)},
        update_fields=["hold_amount", "paid_at", "next_attempt_at"],
    )
    assert order.consumer is not None
    if was_overdue:
        # Imported here: bnpl.overdue builds on this module's transition helpers.
        from .overdue import overdue_pause_lift

        overdue_pause_lift(actor=actor, order=order)
    _promise_on_paid(order, actor=actor, now=now)
    return order


def _post_paid_elsewhere(order: CreditOrder) -> None:
    """Reverse in the ledger what the platform will no longer collect on an order paid elsewhere.

    Only what was posted is reversed: an order completed before completions were posted
    has nothing to reverse.
    """
    if not order.amount_due or not LedgerTransaction.objects.filter(idempotency_key=f"completion:{order.pk}").exists():
        return
    post_amount_reduction(
        order,
        reduction_key=f"paid_elsewhere:{order.pk}",
        amount=order.amount_due,
        description=f"order {order.pk} paid elsewhere",
    )
    if order.late_fee_amount > 0:
        fee = order.late_fee_amount
        ledger_post(
            kind=TransactionKind.ADJUSTMENT,
            idempotency_key=f"adjustment:late_fee_waived:{order.pk}",
            order=order,
            entries=[
                (ledger_account_for(AccountKind.PLATFORM_FEE_REVENUE), fee),
                (ledger_account_for(AccountKind.CONSUMER_RECEIVABLE, consumer=order.consumer_id), -fee),
            ],
            description=f"late fee on order {order.pk} waived: paid elsewhere",
        )
