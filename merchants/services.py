"""Writes of the merchants app: onboarding (KYB) and its review, team members, listings.

Every change to a merchant, a membership or a listing goes through a function here, so that the
rules live in one place whoever calls them (merchant portal, REST API, Django admin, jobs):

* a merchant's ``status`` moves only through one service per transition, guarded by
  :data:`~merchants.choices.MERCHANT_ALLOWED_TRANSITIONS`; each locks the row, refuses with
  :class:`~bnpl.exceptions.InvalidTransition` naming the current state, and writes a
  :class:`~merchants.models.MerchantEvent` naming the actor. A refusal changes nothing;
* input is normalised and validated here (USCC check character, CN mobile, excluded categories,
  pricing rules), and refused with :class:`~bnpl.exceptions.ValidationFailed` whose ``fields``
  map each offending field to a message, so a form or the API can show it next to the field;
* the ``*_clean`` / ``*_check`` functions do the same checks without writing. Forms call them
  for early field errors; the services call them again under the row lock, so the result of the
  service is what counts.

Transactions: the transition services and listing pause/resume are the top of their call stack
(portal views, admin actions) and own a durable transaction. The services the Django admin calls
from its change form (which already runs inside ``transaction.atomic``) use plain
``transaction.atomic``: merchant create/update/fee rate, members, listing create/update.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from bnpl import sql_rows
from bnpl.exceptions import DomainError, InvalidTransition, NotAllowed, ValidationFailed
from bnpl.money import MoneyError, parse_money
from bnpl.validators import normalize_cn_mobile, normalize_uscc, validate_cn_mobile, validate_uscc

from .choices import (
    EXCLUDED_CATEGORIES,
    MERCHANT_ALLOWED_TRANSITIONS,
    WEBHOOK_DELIVERY_TRANSITIONS,
    WEBHOOK_EVENT_FAMILIES,
    ApiKeyMode,
    ConfirmMode,
    IdempotencyStatus,
    InvitationStatus,
    ListingStatus,
    MemberRole,
    MerchantCategory,
    MerchantStatus,
    Scenario,
    WebhookDeliveryStatus,
)
from .models import (
    ApiKey,
    IdempotencyRecord,
    Listing,
    Merchant,
    MerchantEvent,
    MerchantInvitation,
    MerchantMember,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from .pricing import NON_FIELD_ERRORS, FixedRule, PricingRuleError, parse_rule
from .webhooks import (
    MAX_ATTEMPTS,
    RETRY_DELAYS_S,
    PostResult,
    UnsafeTarget,
    check_url,
    decrypt_secret,
    encrypt_secret,
    generate_secret,
    post,
    secret_hint,
    sign,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    Actor = AbstractBaseUser | None

# --------------------------------------------------------------------------- merchants

#: What an applicant fills in (KYB). ``fee_rate`` and ``status`` are not part of the application.
APPLICATION_FIELDS: tuple[str, ...] = (
    "legal_name",
    "display_name",
    "uscc",
    "legal_representative",
    "contact_name",
    "contact_phone",
    "contact_email",
    "city",
    "categories",
    "settlement_bank_name",
    "settlement_account_name",
    "settlement_account_number",
)
REQUIRED_APPLICATION_FIELDS = frozenset(
    {
        "legal_name",
        "display_name",
        "uscc",
        "contact_name",
        "contact_phone",
        "categories",
        "settlement_bank_name",
        "settlement_account_name",
        "settlement_account_number",
    }
)
#: An application can be edited while the applicant holds the pen: before submission, or after a rejection.
EDITABLE_STATUSES = frozenset({MerchantStatus.DRAFT, MerchantStatus.REJECTED})
#: A merchant under review or approved may prepare listings; a rejected or suspended one may not.
LISTING_BLOCKED_STATUSES = frozenset({MerchantStatus.REJECTED, MerchantStatus.SUSPENDED})
FEE_RATE_MAX = Decimal("0.1")
FEE_RATE_PLACES = 4
REASON_MAX_LENGTH = 2000
# Mainland bank account numbers are 8 to 30-odd digits (corporate accounts vary by bank); the
# column holds 34, the IBAN maximum.
ACCOUNT_NUMBER_MIN_LENGTH = 8

_TRANSITION_REFUSALS = {
    MerchantStatus.SUBMITTED: gettext_lazy(
        "Merchant “%(merchant)s” cannot be submitted for review: it is %(label)s (%(status)s)."
    ),
    MerchantStatus.APPROVED: gettext_lazy("Merchant “%(merchant)s” cannot be approved: it is %(label)s (%(status)s)."),
    MerchantStatus.REJECTED: gettext_lazy("Merchant “%(merchant)s” cannot be rejected: it is %(label)s (%(status)s)."),
    MerchantStatus.SUSPENDED: gettext_lazy(
        "Merchant “%(merchant)s” cannot be suspended: it is %(label)s (%(status)s)."
    ),
}
_REINSTATE_REFUSAL = gettext_lazy("Merchant “%(merchant)s” cannot be reinstated: it is %(label)s (%(status)s).")


def _state_params(merchant: Merchant) -> dict[str, str]:
    return {
        "merchant": str(merchant),
        "label": str(MerchantStatus(merchant.status).label),
        "status": merchant.status,
    }


def _required() -> str:
    return _("This field is required.")


def _clean_text(name: str, value: object, errors: dict[str, str]) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        errors[name] = _("Enter text.")
        return ""
    value = value.strip()
    max_length = Merchant._meta.get_field(name).max_length
    if max_length and len(value) > max_length:
        errors[name] = _("Enter at most %(max)d characters.") % {"max": max_length}
    return value


def _clean_categories(value: object, errors: dict[str, str]) -> list[str]:
    if value is None or isinstance(value, str) or not isinstance(value, Iterable):
        errors["categories"] = _("Choose at least one business category.")
        return []
    categories: list[str] = []
    for item in value:
        item = str(item)
        if item not in categories:
            categories.append(item)
    unknown = [item for item in categories if item not in MerchantCategory.values]
    if unknown:
        errors["categories"] = _("Unknown business categories: %(codes)s.") % {"codes": ", ".join(unknown)}
        return categories
    excluded = [MerchantCategory(item) for item in categories if item in EXCLUDED_CATEGORIES]
    if excluded:
        errors["categories"] = _("Pay-later is not available for these categories: %(names)s.") % {
            "names": ", ".join(str(category.label) for category in excluded)
        }
    elif not categories:
        errors["categories"] = _("Choose at least one business category.")
    # Stored in the order of the choices, so that two applications with the same categories compare equal.
    return sorted(categories, key=MerchantCategory.values.index)


def merchant_application_clean(
    *, data: Mapping[str, Any], merchant: Merchant | None = None, partial: bool = False
) -> dict[str, Any]:
    """Normalise and validate application fields; return the values to store.

    ``partial`` validates only the fields given (an edit); otherwise every application field is
    expected (missing optional ones count as empty). ``merchant`` is the application being edited,
    so that its own USCC does not count as a duplicate. Raises :class:`ValidationFailed` with one
    message per field. Writes nothing.
    """
    unknown = set(data) - set(APPLICATION_FIELDS)
    if unknown:
        raise TypeError(f"not application fields: {', '.join(sorted(unknown))}")
    names = [name for name in APPLICATION_FIELDS if name in data or not partial]
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    for name in names:
        value = data.get(name)
        if name == "categories":
            cleaned[name] = _clean_categories(value, errors)
            continue
        if name == "uscc":
            value = normalize_uscc(value) if isinstance(value, str) else value
        elif name == "contact_phone":
            value = normalize_cn_mobile(value) if isinstance(value, str) else value
        elif name == "settlement_account_number":
            value = "".join(value.split()) if isinstance(value, str) else value
        text = _clean_text(name, value, errors)
        cleaned[name] = text
        if name in errors:
            continue
        if not text:
            if name in REQUIRED_APPLICATION_FIELDS:
                errors[name] = _required()
            continue
        try:
            if name == "uscc":
                validate_uscc(text)
            elif name == "contact_phone":
                validate_cn_mobile(text)
            elif name == "contact_email":
                validate_email(text)
        except ValidationError as exc:
            errors[name] = str(exc.messages[0])
            continue
        if name == "settlement_account_number" and (not text.isdigit() or len(text) < ACCOUNT_NUMBER_MIN_LENGTH):
            errors[name] = _("Enter the account number as %(min)d or more digits.") % {"min": ACCOUNT_NUMBER_MIN_LENGTH}
    if "uscc" in cleaned and "uscc" not in errors:
        duplicates = Merchant.objects.filter(uscc=cleaned["uscc"])
        if merchant is not None and merchant.pk is not None:
            duplicates = duplicates.exclude(pk=merchant.pk)
        if duplicates.exists():
            errors["uscc"] = _("A merchant with this unified social credit code already exists.")
    if errors:
        raise ValidationFailed(_("Please correct the application."), fields=errors)
    return cleaned


def fee_rate_clean(value: object) -> Decimal:
    """A fee rate as a Decimal between 0 and 0.1 (10 %) with at most four places; floats are refused."""
    message = _("Enter a fee rate between 0 and 0.1 with at most four decimal places (0.0060 is 0.6%).")
    if isinstance(value, float | bool) or value is None:
        raise ValidationFailed(message, fields={"fee_rate": message})
    try:
        rate = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationFailed(message, fields={"fee_rate": message}) from None
    if not rate.is_finite() or rate < 0 or rate > FEE_RATE_MAX:
        raise ValidationFailed(message, fields={"fee_rate": message})
    quantized = rate.quantize(Decimal(1).scaleb(-FEE_RATE_PLACES))
    if quantized != rate:
        raise ValidationFailed(message, fields={"fee_rate": message})
    return quantized


def _is_staff(actor: Actor) -> bool:
    return bool(getattr(actor, "is_staff", False))


@transaction.atomic
def merchant_create(
    *,
    actor: Actor,
    legal_name: str,
    display_name: str,
    uscc: str,
    contact_name: str,
    contact_phone: str,
    categories: list[str],
    settlement_bank_name: str,
    settlement_account_name: str,
    settlement_account_number: str,
    legal_representative: str = "",
    contact_email: str = "",
    city: str = "",
    fee_rate: Decimal | str | None = None,
) -> Merchant:
    """Open a merchant application (KYB) in ``draft``.

    The applicant (a non-staff actor) becomes the merchant's first owner, so a merchant always
    has someone who can manage it. Staff creating an application on a merchant's behalf do not
    become members. The fee rate defaults to ``settings.BNPL_DEFAULT_FEE_RATE``.
    """
    cleaned = merchant_application_clean(
        data={
            "legal_name": legal_name,
            "display_name": display_name,
            "uscc": uscc,
            "legal_representative": legal_representative,
            "contact_name": contact_name,
            "contact_phone": contact_phone,
            "contact_email": contact_email,
            "city": city,
            "categories": categories,
            "settlement_bank_name": settlement_bank_name,
            "settlement_account_name": settlement_account_name,
            "settlement_account_number": settlement_account_number,
        }
    )
    rate = fee_rate_clean(settings.BNPL_DEFAULT_FEE_RATE if fee_rate is None else fee_rate)
    try:
        # A savepoint, so that losing the race for a USCC to a concurrent application turns into
        # the same field error as the duplicate check above rather than a broken transaction.
        with transaction.atomic():
            merchant = Merchant.objects.create(**cleaned, fee_rate=rate, status=MerchantStatus.DRAFT)
    except IntegrityError as exc:
        if Merchant.objects.filter(uscc=cleaned["uscc"]).exists():
            message = _("A merchant with this unified social credit code already exists.")
            raise ValidationFailed(message, fields={"uscc": message}) from exc
        raise
    MerchantEvent.objects.create(merchant=merchant, actor=actor, from_status="", to_status=MerchantStatus.DRAFT)
    if actor is not None and not _is_staff(actor):
        MerchantMember.objects.create(merchant=merchant, user=actor, role=MemberRole.OWNER)
    return merchant


def _lock_merchant(merchant: Merchant) -> Merchant:
    return Merchant.objects.select_for_update().get(pk=merchant.pk)


@transaction.atomic
def merchant_update_application(*, actor: Actor, merchant: Merchant, **fields: Any) -> Merchant:
    """Edit application fields while the applicant holds the pen (``draft`` or ``rejected``).

    Once submitted the application is frozen for review; after approval, changes to the legal
    entity or the settlement account are a new review, not an edit. Returns the updated merchant.
    """
    locked = _lock_merchant(merchant)
    if locked.status not in EDITABLE_STATUSES:
        raise InvalidTransition(
            _("The application of “%(merchant)s” cannot be edited: it is %(label)s (%(status)s).")
            % _state_params(locked)
        )
    cleaned = merchant_application_clean(data=fields, merchant=locked, partial=True)
    changed = [name for name, value in cleaned.items() if getattr(locked, name) != value]
    if not changed:
        return locked
    for name in changed:
        setattr(locked, name, cleaned[name])
    try:
        with transaction.atomic():
            locked.save(update_fields=[*changed, "updated_at"])
    except IntegrityError as exc:
        message = _("A merchant with this unified social credit code already exists.")
        raise ValidationFailed(message, fields={"uscc": message}) from exc
    return locked


@transaction.atomic
def merchant_fee_rate_set(*, actor: Actor, merchant: Merchant, fee_rate: Decimal | str) -> Merchant:
    """Change the platform's fee on the merchant's future charges (staff only, in any state).

    Charges already made keep the fee they were made with. The change is written to the
    merchant's timeline (an event that keeps the status) because it changes what the merchant is
    paid.
    """
    rate = fee_rate_clean(fee_rate)
    locked = _lock_merchant(merchant)
    if locked.fee_rate == rate:
        return locked
    previous = locked.fee_rate
    locked.fee_rate = rate
    locked.save(update_fields=["fee_rate", "updated_at"])
    MerchantEvent.objects.create(
        merchant=locked,
        actor=actor,
        from_status=locked.status,
        to_status=locked.status,
        reason=_("Fee rate changed from %(old)s to %(new)s.") % {"old": previous, "new": rate},
    )
    return locked


def _clean_reason(reason: object) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise ValidationFailed(_("Give a reason."), fields={"reason": _("Give a reason.")})
    if len(text) > REASON_MAX_LENGTH:
        message = _("Enter at most %(max)d characters.") % {"max": REASON_MAX_LENGTH}
        raise ValidationFailed(message, fields={"reason": message})
    return text


def _transition(
    *,
    actor: Actor,
    merchant: Merchant,
    from_statuses: frozenset[str],
    to_status: MerchantStatus,
    reason: str = "",
    refusal: Any = None,
) -> Merchant:
    """Lock, check the transition map, apply, write the event. The caller owns the transaction.

    ``from_statuses`` narrows the map to this service's edge: ``suspended → approved`` is a
    reinstatement, never an approval, although both end in ``approved``.
    """
    locked = _lock_merchant(merchant)
    allowed = MERCHANT_ALLOWED_TRANSITIONS.get(locked.status, frozenset())
    if locked.status not in from_statuses or to_status not in allowed:
        message = refusal or _TRANSITION_REFUSALS[to_status]
        raise InvalidTransition(str(message) % _state_params(locked))
    from_status = locked.status
    locked.status = to_status
    update_fields = ["status", "updated_at"]
    now = timezone.now()
    if to_status == MerchantStatus.SUBMITTED:
        # The rejection stays in the timeline (the event's reason); the application shows no stale one.
        locked.submitted_at, locked.rejection_reason = now, ""
        update_fields += ["submitted_at", "rejection_reason"]
    elif from_status == MerchantStatus.SUBMITTED and to_status == MerchantStatus.APPROVED:
        locked.approved_at = now
        update_fields.append("approved_at")
    elif to_status == MerchantStatus.REJECTED:
        locked.rejection_reason = reason
        update_fields.append("rejection_reason")
    locked.save(update_fields=update_fields)
    MerchantEvent.objects.create(
        merchant=locked, actor=actor, from_status=from_status, to_status=to_status, reason=reason
    )
    return locked


@transaction.atomic(durable=True)
def merchant_submit(*, actor: Actor, merchant: Merchant) -> Merchant:
    """Send a draft (or a rejected application, once fixed) for review: ``draft|rejected → submitted``.

    The whole application is validated again, because a draft may hold values saved before a
    rule changed (or written by an import) and review must only ever see a complete application.
    """
    locked = _lock_merchant(merchant)
    if locked.status in EDITABLE_STATUSES:
        merchant_application_clean(data={name: getattr(locked, name) for name in APPLICATION_FIELDS}, merchant=locked)
    return _transition(
        actor=actor, merchant=locked, from_statuses=EDITABLE_STATUSES, to_status=MerchantStatus.SUBMITTED
    )


@transaction.atomic(durable=True)
def merchant_approve(*, actor: Actor, merchant: Merchant) -> Merchant:
    """Approve a submitted application: ``submitted → approved``; the merchant may now take orders."""
    return _transition(
        actor=actor,
        merchant=merchant,
        from_statuses=frozenset({MerchantStatus.SUBMITTED}),
        to_status=MerchantStatus.APPROVED,
    )


@transaction.atomic(durable=True)
def merchant_reject(*, actor: Actor, merchant: Merchant, reason: str) -> Merchant:
    """Reject a submitted application with a reason the applicant sees: ``submitted → rejected``."""
    text = _clean_reason(reason)
    return _transition(
        actor=actor,
        merchant=merchant,
        from_statuses=frozenset({MerchantStatus.SUBMITTED}),
        to_status=MerchantStatus.REJECTED,
        reason=text,
    )


@transaction.atomic(durable=True)
def merchant_suspend(*, actor: Actor, merchant: Merchant, reason: str) -> Merchant:
    """Stop an approved merchant taking new orders: ``approved → suspended``.

    Its listings keep their own status (the catalogue shows only approved merchants' listings),
    so reinstating the merchant brings back exactly what was on sale before. Open orders are not
    touched: they finish under the terms the consumer agreed to.
    """
    text = _clean_reason(reason)
    return _transition(
        actor=actor,
        merchant=merchant,
        from_statuses=frozenset({MerchantStatus.APPROVED}),
        to_status=MerchantStatus.SUSPENDED,
        reason=text,
    )


@transaction.atomic(durable=True)
def merchant_reinstate(*, actor: Actor, merchant: Merchant, reason: str) -> Merchant:
    """Lift a suspension: ``suspended → approved``; ``approved_at`` keeps the date of the first approval."""
    text = _clean_reason(reason)
    return _transition(
        actor=actor,
        merchant=merchant,
        from_statuses=frozenset({MerchantStatus.SUSPENDED}),
        to_status=MerchantStatus.APPROVED,
        reason=text,
        refusal=_REINSTATE_REFUSAL,
    )


# --------------------------------------------------------------------------- members


def _clean_role(role: object) -> str:
    if role not in MemberRole.values:
        message = _("Choose a valid role.")
        raise ValidationFailed(message, fields={"role": message})
    return str(role)


def _owner_count(merchant_id: int) -> int:
    return MerchantMember.objects.filter(merchant_id=merchant_id, role=MemberRole.OWNER).count()


def member_change_role_check(*, member: MerchantMember, role: str) -> None:
    """Refuse (NotAllowed) demoting the merchant's last owner. Writes nothing."""
    if member.role == MemberRole.OWNER and role != MemberRole.OWNER and _owner_count(member.merchant_id) <= 1:
        raise NotAllowed(_("A merchant must keep at least one owner: make someone else an owner first."))


def member_remove_check(*, member: MerchantMember) -> None:
    """Refuse (NotAllowed) removing the merchant's last owner. Writes nothing."""
    if member.role == MemberRole.OWNER and _owner_count(member.merchant_id) <= 1:
        raise NotAllowed(_("A merchant must keep at least one owner: make someone else an owner first."))


@transaction.atomic
def member_add(*, actor: Actor, merchant: Merchant, user: Any, role: str) -> MerchantMember:
    """Give a user a role at a merchant (one membership per user and merchant)."""
    role = _clean_role(role)
    if MerchantMember.objects.filter(merchant=merchant, user=user).exists():
        message = _("This user is already a member of the merchant.")
        raise ValidationFailed(message, fields={"user": message})
    try:
        with transaction.atomic():
            return MerchantMember.objects.create(merchant=merchant, user=user, role=role)
    except IntegrityError as exc:  # a concurrent add of the same user won
        message = _("This user is already a member of the merchant.")
        raise ValidationFailed(message, fields={"user": message}) from exc


def _lock_member(member: MerchantMember) -> MerchantMember:
    # The merchant row is the lock for its owner count: two owners demoting each other at the
    # same moment would otherwise both see "another owner remains" and leave none.
    Merchant.objects.select_for_update().get(pk=member.merchant_id)
    return MerchantMember.objects.select_for_update().get(pk=member.pk)


@transaction.atomic
def member_change_role(*, actor: Actor, member: MerchantMember, role: str) -> MerchantMember:
    """Change a member's role; the last owner cannot be demoted."""
    role = _clean_role(role)
    locked = _lock_member(member)
    member_change_role_check(member=locked, role=role)
    if locked.role != role:
        locked.role = role
        locked.save(update_fields=["role"])
    return locked


@transaction.atomic
def member_remove(*, actor: Actor, member: MerchantMember) -> None:
    """Take a user off a merchant's team; the last owner cannot be removed."""
    locked = _lock_member(member)
    member_remove_check(member=locked)
    locked.delete()


# --------------------------------------------------------------------------- listings

#: Listings have no event table; their status map lives here with the only services that move it.
LISTING_ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    ListingStatus.ACTIVE: frozenset({ListingStatus.PAUSED}),
    ListingStatus.PAUSED: frozenset({ListingStatus.ACTIVE}),
}
LISTING_FIELDS: tuple[str, ...] = (
    "title",
    "description",
    "scenario",
    "confirm_mode",
    "max_amount",
    "pricing_rule",
    "min_score",
    "order_ttl_minutes",
)
MIN_SCORE_RANGE = (350, 950)
ORDER_TTL_RANGE = (1, 60 * 24 * 30)
TITLE_MAX_LENGTH = 120


def _clean_int(name: str, value: object, bounds: tuple[int, int], errors: dict[str, str]) -> int | None:
    low, high = bounds
    message = _("Enter a whole number from %(low)d to %(high)d.") % {"low": low, "high": high}
    if isinstance(value, bool) or not isinstance(value, int | str):
        errors[name] = message
        return None
    try:
        number = int(value)
    except ValueError:
        errors[name] = message
        return None
    if not low <= number <= high:
        errors[name] = message
        return None
    return number


def _pricing_rule_errors(errors: Mapping[str, str]) -> dict[str, str]:
    return {
        "pricing_rule" if key == NON_FIELD_ERRORS else f"pricing_rule.{key}": message for key, message in errors.items()
    }


def listing_fields_clean(
    *, merchant: Merchant, data: Mapping[str, Any], listing: Listing | None = None
) -> dict[str, Any]:
    """Normalise and validate listing fields; return the values to store. Writes nothing.

    With ``listing`` (an edit) only the given fields are validated, and the checks that tie
    fields together (scenario within the merchant's categories, a fixed price within the
    per-order ceiling) use the listing's current value for a field not given. The pricing rule
    is stored in its normalised form (``parse_rule(...).to_dict()``); its errors come back as
    ``pricing_rule.<field>``.
    """
    unknown = set(data) - set(LISTING_FIELDS)
    if unknown:
        raise TypeError(f"not listing fields: {', '.join(sorted(unknown))}")
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    rule = None
    for name in LISTING_FIELDS:
        if name not in data:
            continue
        value = data[name]
        if name in ("title", "description"):
            text = value.strip() if isinstance(value, str) else ("" if value is None else None)
            if text is None:
                errors[name] = _("Enter text.")
            elif name == "title" and not text:
                errors[name] = _required()
            elif name == "title" and len(text) > TITLE_MAX_LENGTH:
                errors[name] = _("Enter at most %(max)d characters.") % {"max": TITLE_MAX_LENGTH}
            cleaned[name] = text
        elif name == "scenario":
            if value not in Scenario.values:
                errors[name] = _("Choose a valid scenario.")
            elif value not in merchant.categories:
                errors[name] = _("“%(scenario)s” is not one of the merchant's business categories.") % {
                    "scenario": Scenario(value).label
                }
            cleaned[name] = value
        elif name == "confirm_mode":
            if value not in ConfirmMode.values:
                errors[name] = _("Choose a valid confirmation mode.")
            cleaned[name] = value
        elif name == "max_amount":
            try:
                cleaned[name] = parse_money(value, allow_zero=False)
            except MoneyError:
                errors[name] = _("Enter an amount greater than zero with at most two decimal places, e.g. 20.00.")
        elif name == "pricing_rule":
            try:
                rule = parse_rule(value)
            except PricingRuleError as exc:
                errors.update(_pricing_rule_errors(exc.errors))
            else:
                cleaned[name] = rule.to_dict()
        elif name == "min_score":
            cleaned[name] = _clean_int(name, value, MIN_SCORE_RANGE, errors)
        elif name == "order_ttl_minutes":
            cleaned[name] = _clean_int(name, value, ORDER_TTL_RANGE, errors)
    max_amount = cleaned.get("max_amount", listing.max_amount if listing is not None else None)
    if rule is None and listing is not None and "pricing_rule" not in data:
        try:
            rule = parse_rule(listing.pricing_rule)
        except PricingRuleError:
            rule = None
    # A fixed price above the ceiling would make every order of the listing impossible to complete.
    over_ceiling = isinstance(rule, FixedRule) and max_amount is not None and rule.price > max_amount
    if over_ceiling and "max_amount" not in errors:
        errors["max_amount"] = _("The per-order ceiling must be at least the fixed price (%(price)s).") % {
            "price": rule.price
        }
    if errors:
        raise ValidationFailed(_("Please correct the listing."), fields=errors)
    return cleaned


def _check_merchant_may_list(merchant: Merchant) -> None:
    if merchant.status in LISTING_BLOCKED_STATUSES:
        raise NotAllowed(
            _("Merchant “%(merchant)s” cannot change listings: it is %(label)s (%(status)s).") % _state_params(merchant)
        )


@transaction.atomic
def listing_create(
    *,
    actor: Actor,
    merchant: Merchant,
    title: str,
    scenario: str,
    max_amount: Decimal | str,
    pricing_rule: dict[str, Any],
    description: str = "",
    confirm_mode: str = ConfirmMode.EACH_TIME,
    min_score: int = 550,
    order_ttl_minutes: int = 30,
) -> Listing:
    """Put a good or service on 先享: a listing with its pricing rule, on sale from the start.

    A merchant under review may prepare listings; they are sold only once it is approved
    (the catalogue shows approved merchants only). Rejected and suspended merchants may not add any.
    """
    current = Merchant.objects.get(pk=merchant.pk)
    _check_merchant_may_list(current)
    cleaned = listing_fields_clean(
        merchant=current,
        data={
            "title": title,
            "description": description,
            "scenario": scenario,
            "confirm_mode": confirm_mode,
            "max_amount": max_amount,
            "pricing_rule": pricing_rule,
            "min_score": min_score,
            "order_ttl_minutes": order_ttl_minutes,
        },
    )
    return Listing.objects.create(merchant=current, status=ListingStatus.ACTIVE, **cleaned)


@transaction.atomic
def listing_update(*, actor: Actor, listing: Listing, **fields: Any) -> Listing:
    """Edit a listing. A new price applies to new orders only: each order keeps a copy of its rule."""
    locked = Listing.objects.select_for_update().get(pk=listing.pk)
    current = Merchant.objects.get(pk=locked.merchant_id)
    _check_merchant_may_list(current)
    cleaned = listing_fields_clean(merchant=current, data=fields, listing=locked)
    changed = [name for name, value in cleaned.items() if getattr(locked, name) != value]
    if changed:
        for name in changed:
            setattr(locked, name, cleaned[name])
        locked.save(update_fields=[*changed, "updated_at"])
    return locked


def _listing_transition(*, listing: Listing, to_status: ListingStatus, refusal: Any) -> Listing:
    locked = Listing.objects.select_for_update().get(pk=listing.pk)
    if to_status not in LISTING_ALLOWED_TRANSITIONS.get(locked.status, frozenset()):
        raise InvalidTransition(
            str(refusal)
            % {"listing": locked.title, "label": str(ListingStatus(locked.status).label), "status": locked.status}
        )
    locked.status = to_status
    locked.save(update_fields=["status", "updated_at"])
    return locked


@transaction.atomic(durable=True)
def listing_pause(*, actor: Actor, listing: Listing) -> Listing:
    """Take a listing off sale (``active → paused``); open orders are unaffected."""
    return _listing_transition(
        listing=listing,
        to_status=ListingStatus.PAUSED,
        refusal=gettext_lazy("Listing “%(listing)s” cannot be paused: it is %(label)s (%(status)s)."),
    )


@transaction.atomic(durable=True)
def listing_resume(*, actor: Actor, listing: Listing) -> Listing:
    """Put a paused listing back on sale (``paused → active``); only an approved merchant may sell."""
    # Lock the merchant too, so a suspension committing meanwhile cannot slip between check and write.
    merchant = Merchant.objects.select_for_update().get(pk=listing.merchant_id)
    if merchant.status != MerchantStatus.APPROVED:
        raise NotAllowed(
            _("Listing “%(listing)s” cannot go back on sale: merchant “%(merchant)s” is %(label)s (%(status)s).")
            % {"listing": listing.title, **_state_params(merchant)}
        )
    return _listing_transition(
        listing=listing,
        to_status=ListingStatus.ACTIVE,
        refusal=gettext_lazy("Listing “%(listing)s” cannot be resumed: it is %(label)s (%(status)s)."),
    )


# --------------------------------------------------------------------------- API keys

API_KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
API_KEY_PUBLIC_LENGTH = 12
API_KEY_SECRET_LENGTH = 40  # 40 base62 characters ≈ 238 bits
API_KEY_PATTERN = re.compile(
    rf"^sk_(test|live)_([0-9A-Za-z]{{{API_KEY_PUBLIC_LENGTH}}})_([0-9A-Za-z]{{{API_KEY_SECRET_LENGTH}}})$"
)
#: ``last_used_at`` is written at most this often per key, so the API does not write a row per request.
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(API_KEY_ALPHABET) for _ in range(length))


def api_key_hash(token: str, *, secret_key: str | None = None) -> str:
    """The stored form of an API key: HMAC-SHA256 keyed with a key derived from ``SECRET_KEY``.

    A fast keyed hash is the right tool here, not a slow password KDF (PBKDF2, Argon2): an API key
    is ~238 random bits, so nobody can guess it offline however fast the hash is, while a slow KDF
    would cost every API request tens of milliseconds of CPU. The HMAC key (never in the database)
    means a leaked table cannot even be used to test candidate keys.
    """
    return salted_hmac("merchants.ApiKey", token, secret=secret_key, algorithm="sha256").hexdigest()


def _clean_mode(mode: object) -> str:
    if mode not in ApiKeyMode.values:
        message = _("Choose test or live.")
        raise ValidationFailed(message, fields={"mode": message})
    return str(mode)


@transaction.atomic
def api_key_create(*, actor: Actor, merchant: Merchant, mode: str, label: str = "") -> tuple[ApiKey, str]:
    """Issue an API key; returns the key and its secret, which is shown this once and never stored.

    Test-mode keys may be issued to a merchant under review (to build the integration); live keys
    only to an approved merchant. Rejected and suspended merchants get none.
    """
    mode = _clean_mode(mode)
    label = (label or "").strip()
    if len(label) > 100:
        message = _("Enter at most %(max)d characters.") % {"max": 100}
        raise ValidationFailed(message, fields={"label": message})
    current = Merchant.objects.get(pk=merchant.pk)
    if current.status in LISTING_BLOCKED_STATUSES or (
        mode == ApiKeyMode.LIVE and current.status != MerchantStatus.APPROVED
    ):
        raise NotAllowed(
            _("Merchant “%(merchant)s” cannot get a %(mode)s key: it is %(label)s (%(status)s).")
            % {**_state_params(current), "mode": mode},
            code="merchant_unavailable",
        )
    public_id = _random_base62(API_KEY_PUBLIC_LENGTH)
    token = f"sk_{mode}_{public_id}_{_random_base62(API_KEY_SECRET_LENGTH)}"
    key = ApiKey.objects.create(
        merchant=current,
        mode=mode,
        label=label,
        prefix=f"sk_{mode}_{public_id}",
        secret_hash=api_key_hash(token),
        created_by=_actor_user(actor),
    )
    return key, token


@transaction.atomic
def api_key_revoke(*, actor: Actor, api_key: ApiKey) -> ApiKey:
    """Revoke a key at once (``active → revoked``, final); the next request with it gets 401."""
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if locked.revoked_at is not None:
        raise InvalidTransition(_("API key %(prefix)s is already revoked.") % {"prefix": locked.prefix})
    locked.revoked_at = timezone.now()
    locked.revoked_by = _actor_user(actor)
    locked.save(update_fields=["revoked_at", "revoked_by"])
    return locked


def api_key_touch(*, api_key: ApiKey, now: datetime | None = None) -> bool:
    """Record that the key was used, at most once per :data:`API_KEY_TOUCH_INTERVAL`; True if written.

    A compare-and-swap on the old value, so concurrent requests write it once, not once each.
    """
    now = now or timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < API_KEY_TOUCH_INTERVAL:
        return False
    updated = (
        ApiKey.objects.filter(pk=api_key.pk, last_used_at=api_key.last_used_at).update(last_used_at=now)
        if api_key.last_used_at is not None
        else ApiKey.objects.filter(pk=api_key.pk, last_used_at__isnull=True).update(last_used_at=now)
    )
    api_key.last_used_at = now
    return updated == 1


def _actor_user(actor: Actor) -> Any:
    return actor if getattr(actor, "pk", None) is not None else None


# --------------------------------------------------------------------------- rate limits

_RATE_HIT_SQL = """
INSERT INTO merchants_apiratewindow AS w (api_key_id, window_start, count)
VALUES (%s, floor(extract(epoch FROM clock_timestamp()))::bigint, 1)
ON CONFLICT (api_key_id) DO UPDATE SET
    count = CASE WHEN w.window_start = EXCLUDED.window_start THEN w.count + 1 ELSE 1 END,
    window_start = EXCLUDED.window_start
RETURNING count
"""


def api_rate_window_hit(*, api_key: ApiKey, limit: int) -> bool:
    """Count one request of ``api_key`` in the current one-second window; False when over ``limit``.

    A fixed one-second window in PostgreSQL: one ``INSERT … ON CONFLICT DO UPDATE`` on the key's
    row, which every web process shares, timed by the database clock so that processes on machines
    with skewed clocks agree on the window. Refused requests count too, so hammering does not help.
    """
    with connection.cursor() as cursor:
        cursor.execute(_RATE_HIT_SQL, [api_key.pk])
        (count,) = cursor.fetchone()
    return count <= limit


# --------------------------------------------------------------------------- idempotency

#: How long an in-progress claim blocks its key; after it, a retry may run the request again
#: (the process that held the claim is presumed dead). Longer than any API request takes.
IDEMPOTENCY_LEASE = timedelta(seconds=60)
#: Records are kept at least 24 hours (the contract); the purge job removes them after 48.
IDEMPOTENCY_RETENTION = timedelta(hours=48)
IDEMPOTENCY_KEY_MAX_LENGTH = 255


class IdempotencyInProgress(DomainError):
    """A request with this key is still running."""

    code = "idempotency_in_progress"


class IdempotencyKeyReused(DomainError):
    """The key was used for a different request."""

    code = "idempotency_key_reused"


@dataclass(frozen=True)
class IdempotencyClaim:
    """What ``idempotency_claim`` found: a record to finish, or a stored response to replay."""

    record: IdempotencyRecord
    replay: bool


@functools.cache
def _idempotency_claim_sql() -> str:
    """``INSERT … ON CONFLICT (merchant, key) DO NOTHING RETURNING id``, its names from the model's metadata."""
    meta = IdempotencyRecord._meta
    columns = ", ".join(
        f'"{meta.get_field(name).column}"'
        for name in ("merchant", "key", "fingerprint", "status", "response_body", "locked_until", "created_at")
    )
    merchant, key = meta.get_field("merchant").column, meta.get_field("key").column
    return (
        f"INSERT INTO \"{meta.db_table}\" ({columns}) VALUES (%s, %s, %s, %s, '', %s, %s) "  # noqa: S608
        f'ON CONFLICT ("{merchant}", "{key}") DO NOTHING RETURNING "{meta.pk.column}"'
    )


def idempotency_claim(*, merchant: Merchant, key: str, fingerprint: str) -> IdempotencyClaim:
    """Claim ``key`` for a request, or find the stored response to replay.

    Runs in autocommit (outside any transaction) so that the claim is visible to a concurrent
    request at once: the second request with the key sees ``in_progress`` and gets
    :class:`IdempotencyInProgress` (409) instead of running the effect twice. The same key with a
    different fingerprint is :class:`IdempotencyKeyReused` (422). A claim whose lease expired (its
    process died before finishing) is taken over by a compare-and-swap.

    The usual case, a new key, is one statement (``INSERT … ON CONFLICT DO NOTHING RETURNING``,
    the unique ``(merchant, key)`` deciding between concurrent claims); only a key seen before is
    read back.
    """
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _idempotency_claim_sql(),
            [merchant.pk, key, fingerprint, IdempotencyStatus.IN_PROGRESS, now + IDEMPOTENCY_LEASE, now],
        )
        inserted = cursor.fetchone()
    if inserted is not None:
        record = IdempotencyRecord(
            pk=inserted[0],
            merchant=merchant,
            key=key,
            fingerprint=fingerprint,
            status=IdempotencyStatus.IN_PROGRESS,
            locked_until=now + IDEMPOTENCY_LEASE,
            created_at=now,
        )
        return IdempotencyClaim(record=record, replay=False)
    record = IdempotencyRecord.objects.filter(merchant=merchant, key=key).first()
    if record is None:  # released (a 5xx) or purged since the insert met it: claim again
        return idempotency_claim(merchant=merchant, key=key, fingerprint=fingerprint)
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            _("This Idempotency-Key was already used for a different request; use a new key for a new request.")
        )
    if record.status == IdempotencyStatus.COMPLETED:
        return IdempotencyClaim(record=record, replay=True)
    if record.locked_until is not None and record.locked_until > now:
        raise IdempotencyInProgress(
            _("A request with this Idempotency-Key is still being processed; retry in a moment.")
        )
    taken = IdempotencyRecord.objects.filter(
        pk=record.pk, status=IdempotencyStatus.IN_PROGRESS, locked_until=record.locked_until
    ).update(locked_until=now + IDEMPOTENCY_LEASE)
    if taken != 1:  # another retry took it over first, or the first run finished meanwhile
        return idempotency_claim(merchant=merchant, key=key, fingerprint=fingerprint)
    record.locked_until = now + IDEMPOTENCY_LEASE
    return IdempotencyClaim(record=record, replay=False)


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: str) -> None:
    """Store the response of a claimed request; in the caller's transaction when it has one.

    Where the effect runs in the same transaction, the effect and its stored response commit
    together (see docs/api.md, "Crash semantics").
    """
    record.status, record.response_status, record.response_body = IdempotencyStatus.COMPLETED, status, body
    record.locked_until, record.completed_at = None, timezone.now()
    # One UPDATE of these columns (``save(update_fields=…)`` without compiling it on every request).
    fields = ["status", "response_status", "response_body", "locked_until", "completed_at"]
    sql_rows.update(record, fields, missing_ok=True)


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget a claim whose request failed unexpectedly (a 5xx), so that a retry runs it again."""
    IdempotencyRecord.objects.filter(pk=record.pk, status=IdempotencyStatus.IN_PROGRESS).delete()


def idempotency_records_purge(*, older_than: timedelta = IDEMPOTENCY_RETENTION, limit: int = 10_000) -> int:
    """Delete idempotency records older than ``older_than`` (at most ``limit``); returns how many."""
    if older_than < timedelta(hours=24):
        raise ValueError("idempotency records are kept at least 24 hours")
    cutoff = timezone.now() - older_than
    ids = list(
        IdempotencyRecord.objects.filter(created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    deleted, _details = IdempotencyRecord.objects.filter(pk__in=ids).delete()
    return deleted


# --------------------------------------------------------------------------- webhooks

WEBHOOK_TYPE_PATTERN = re.compile(r"^[a-z]+\.(\*|[a-z_]+)$")
WEBHOOK_CLAIM_LEASE = timedelta(seconds=60)


def _clean_event_types(event_types: object) -> list[str]:
    message = _("Choose event types such as order.* or order.completed (families: %(families)s).") % {
        "families": ", ".join(WEBHOOK_EVENT_FAMILIES)
    }
    if isinstance(event_types, str) or not isinstance(event_types, Iterable):
        raise ValidationFailed(message, fields={"event_types": message})
    cleaned: list[str] = []
    for item in event_types:
        item = str(item).strip()
        if item == "*" or (
            WEBHOOK_TYPE_PATTERN.match(item) and item.split(".", 1)[0] in WEBHOOK_EVENT_FAMILIES and len(item) <= 64
        ):
            if item not in cleaned:
                cleaned.append(item)
        else:
            raise ValidationFailed(message, fields={"event_types": message})
    if not cleaned:
        raise ValidationFailed(message, fields={"event_types": message})
    return cleaned


def _clean_webhook_url(url: object) -> str:
    url = str(url or "").strip()
    if not url or len(url) > 500:
        message = _("Enter an http:// or https:// URL of at most 500 characters.")
        raise ValidationFailed(message, fields={"url": message})
    try:
        check_url(url)
    except UnsafeTarget as exc:
        message = _("This URL cannot receive webhooks: %(why)s.") % {"why": str(exc)}
        raise ValidationFailed(message, code="unsafe_webhook_target", fields={"url": message}) from None
    return url


def webhook_endpoint_clean(*, url: object, event_types: object) -> tuple[str, list[str]]:
    """Validate a webhook URL (public target) and event types; returns them cleaned. Writes nothing."""
    errors: dict[str, str] = {}
    cleaned_url, types = "", []
    try:
        cleaned_url = _clean_webhook_url(url)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    try:
        types = _clean_event_types(event_types)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    if errors:
        raise ValidationFailed(_("Please correct the webhook endpoint."), fields=errors)
    return cleaned_url, types


@transaction.atomic
def webhook_endpoint_create(
    *,
    actor: Actor,
    merchant: Merchant,
    url: str,
    event_types: Iterable[str],
    livemode: bool = True,
    description: str = "",
) -> tuple[WebhookEndpoint, str]:
    """Register a URL for signed event callbacks; returns the endpoint and its ``whsec_`` secret (shown once).

    The URL must resolve to public addresses only (unless ``BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS``);
    it is checked again before every delivery, because DNS can change.
    """
    url = _clean_webhook_url(url)
    types = _clean_event_types(event_types)
    secret = generate_secret()
    endpoint = WebhookEndpoint.objects.create(
        merchant=merchant,
        url=url,
        description=(description or "").strip()[:200],
        event_types=types,
        livemode=bool(livemode),
        is_active=True,
        secret_encrypted=encrypt_secret(secret),
        secret_hint=secret_hint(secret),
        created_by=_actor_user(actor),
    )
    return endpoint, secret


@transaction.atomic
def webhook_endpoint_update(
    *,
    actor: Actor,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Iterable[str] | None = None,
    is_active: bool | None = None,
    description: str | None = None,
) -> WebhookEndpoint:
    """Change an endpoint's URL, event types, description or active flag (the secret stays)."""
    locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    changed: list[str] = []
    if url is not None and url != locked.url:
        locked.url = _clean_webhook_url(url)
        changed.append("url")
    if event_types is not None:
        types = _clean_event_types(event_types)
        if types != locked.event_types:
            locked.event_types = types
            changed.append("event_types")
    if is_active is not None and bool(is_active) != locked.is_active:
        locked.is_active = bool(is_active)
        changed.append("is_active")
    if description is not None and description.strip()[:200] != locked.description:
        locked.description = description.strip()[:200]
        changed.append("description")
    if changed:
        locked.save(update_fields=[*changed, "updated_at"])
    return locked


@functools.cache
def _active_endpoints_sql() -> str:
    meta = WebhookEndpoint._meta
    merchant, active = meta.get_field("merchant").column, meta.get_field("is_active").column
    return (
        f'SELECT {sql_rows.columns(WebhookEndpoint, "e")} FROM "{meta.db_table}" e '  # noqa: S608
        f'WHERE e."{merchant}" = %s AND e."{active}" ORDER BY e."{meta.pk.column}"'
    )


def webhook_event_enqueue(
    *,
    merchant_id: int,
    event_type: str,
    payload: Mapping[str, Any],
    ordering_key: str,
    livemode: bool | Callable[[], bool] = True,
) -> WebhookEvent | None:
    """Put an event in the outbox for every active endpoint of the merchant that subscribes to it.

    Call it inside the transaction that makes the change (the order services do): the event and its
    deliveries commit with the change or not at all, so a rolled-back change is never announced.
    With no subscribed endpoint nothing is written. ``livemode`` may be a callable, evaluated only
    when the merchant has endpoints at all (most order transitions then cost one indexed query).
    Returns the event, or None.
    """
    with connection.cursor() as cursor:  # every order transition asks (see ``bnpl.sql_rows``)
        cursor.execute(_active_endpoints_sql(), [merchant_id])
        rows = cursor.fetchall()
    candidates = [
        endpoint
        for endpoint in (sql_rows.instance(WebhookEndpoint, row) for row in rows)
        if endpoint.subscribes_to(event_type)
    ]
    if not candidates:
        return None
    if callable(livemode):
        livemode = livemode()
    endpoints = [endpoint for endpoint in candidates if endpoint.livemode == livemode]
    if not endpoints:
        return None
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            uuid=uuid.uuid4(),
            merchant_id=merchant_id,
            type=event_type,
            livemode=livemode,
            ordering_key=ordering_key[:64],
            payload=dict(payload),
        )
        now = timezone.now()
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                event=event,
                endpoint=endpoint,
                ordering_key=event.ordering_key,
                status=WebhookDeliveryStatus.PENDING,
                next_attempt_at=now,
            )
            for endpoint in endpoints
        )
    return event


@dataclass(frozen=True)
class PendingWebhookEvent:
    """One event for :func:`webhook_events_enqueue_many` (``livemode`` already known to the caller)."""

    merchant_id: int
    event_type: str
    payload: Mapping[str, Any]
    ordering_key: str
    livemode: bool


def webhook_events_enqueue_many(events: Sequence[PendingWebhookEvent]) -> int:
    """:func:`webhook_event_enqueue` for many events at once: three statements, whatever their number.

    For the charge run, which announces hundreds of charges and payments per transaction: the
    merchants' active endpoints are read once, then the events and their deliveries are inserted
    with one statement each. Events are inserted in the given order, so their ids (which order the
    deliveries of one ``ordering_key``) follow it. Same rules as one at a time: only subscribed
    endpoints of the event's mode get a delivery; an event nobody receives is not stored. Returns
    the number of events stored.
    """
    if not events:
        return 0
    endpoints_of: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in WebhookEndpoint.objects.filter(
        merchant_id__in={event.merchant_id for event in events}, is_active=True
    ).order_by("pk"):
        endpoints_of.setdefault(endpoint.merchant_id, []).append(endpoint)
    rows: list[tuple[WebhookEvent, list[WebhookEndpoint]]] = []
    for pending in events:
        receivers = [
            endpoint
            for endpoint in endpoints_of.get(pending.merchant_id, [])
            if endpoint.livemode == pending.livemode and endpoint.subscribes_to(pending.event_type)
        ]
        if receivers:
            event = WebhookEvent(
                uuid=uuid.uuid4(),
                merchant_id=pending.merchant_id,
                type=pending.event_type,
                livemode=pending.livemode,
                ordering_key=pending.ordering_key[:64],
                payload=dict(pending.payload),
            )
            rows.append((event, receivers))
    if not rows:
        return 0
    now = timezone.now()
    with transaction.atomic():
        WebhookEvent.objects.bulk_create([event for event, _receivers in rows])
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                event=event,
                endpoint=endpoint,
                ordering_key=event.ordering_key,
                status=WebhookDeliveryStatus.PENDING,
                next_attempt_at=now,
            )
            for event, receivers in rows
            for endpoint in receivers
        )
    return len(rows)


def webhook_body(event: WebhookEvent) -> str:
    """The JSON body sent for an event: the same bytes on every attempt (the signature covers them)."""
    envelope = {
        "type": event.type,
        "timestamp": event.created_at.astimezone(UTC).isoformat(),
        "livemode": event.livemode,
        "data": event.payload,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _claim_due_deliveries(*, now: datetime, limit: int) -> list[WebhookDelivery]:
    """Claim up to ``limit`` due deliveries: lease them (push ``next_attempt_at``) and count the attempt.

    ``SKIP LOCKED`` lets several workers sweep at once; a delivery whose order has an earlier event
    still pending for the same endpoint is held back, so a merchant receives one order's events in
    the order they happened (event N+1 only after N succeeded or failed for good).
    """
    earlier_pending = WebhookDelivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        ordering_key=OuterRef("ordering_key"),
        status=WebhookDeliveryStatus.PENDING,
        event_id__lt=OuterRef("event_id"),
    )
    with transaction.atomic():
        claimed = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=WebhookDeliveryStatus.PENDING, next_attempt_at__lte=now)
            .exclude(Exists(earlier_pending))
            .order_by("next_attempt_at", "id")[:limit]
        )
        if claimed:
            WebhookDelivery.objects.filter(pk__in=[d.pk for d in claimed]).update(
                next_attempt_at=now + WEBHOOK_CLAIM_LEASE, attempts=F("attempts") + 1
            )
    for delivery in claimed:
        delivery.attempts += 1
    return claimed


def _attempt(delivery: WebhookDelivery, *, event: WebhookEvent, endpoint: WebhookEndpoint) -> PostResult:
    """One signed POST, outside any transaction (a slow receiver must not hold locks)."""
    try:
        target = check_url(endpoint.url)
        secret = decrypt_secret(endpoint.secret_encrypted)
    except (UnsafeTarget, ValueError) as exc:
        return PostResult(status=None, excerpt="", error=f"refused: {exc}"[:500])
    body = webhook_body(event)
    headers = sign(secret=secret, msg_id=event.webhook_id, timestamp=timezone.now(), body=body)
    return post(target, body=body, headers=headers, timeout=settings.BNPL_WEBHOOK_TIMEOUT_S)


def _record_attempt(delivery: WebhookDelivery, *, result: PostResult, started_at: datetime, duration_ms: int) -> None:
    now = timezone.now()
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            started_at=started_at,
            duration_ms=duration_ms,
            response_status=result.status,
            response_excerpt=result.excerpt[:500],
            error=result.error[:500],
            succeeded=result.ok,
        )
        fields: dict[str, Any] = {"last_response_status": result.status, "last_error": result.error}
        if result.ok:
            fields.update(status=WebhookDeliveryStatus.SUCCEEDED, delivered_at=now, next_attempt_at=None)
        elif delivery.attempts >= MAX_ATTEMPTS:
            fields.update(status=WebhookDeliveryStatus.FAILED, next_attempt_at=None)
        else:
            fields.update(next_attempt_at=now + timedelta(seconds=RETRY_DELAYS_S[delivery.attempts]))
        # Compare-and-swap on the attempt number: a manual redelivery meanwhile has reset the row.
        WebhookDelivery.objects.filter(
            pk=delivery.pk, status=WebhookDeliveryStatus.PENDING, attempts=delivery.attempts
        ).update(**fields)


def webhook_deliveries_run(*, limit: int = 50, now: datetime | None = None) -> int:
    """Send every due webhook delivery once (up to ``limit``); returns how many were attempted.

    A system job: it claims deliveries in one short transaction, makes each HTTP call outside any
    transaction, then records the outcome (and the next attempt on the retry schedule
    0 s, 15 s, 15 s, 30 s, 3 min, 30 min ×4, 1 h; after the tenth failure the delivery has failed).
    Safe to run twice or on several workers at once: claims are leased and skip locked rows.
    """
    claimed = _claim_due_deliveries(now=now or timezone.now(), limit=limit)
    if not claimed:
        return 0
    events = WebhookEvent.objects.in_bulk({d.event_id for d in claimed})
    endpoints = WebhookEndpoint.objects.in_bulk({d.endpoint_id for d in claimed})
    for delivery in claimed:
        started_at = timezone.now()
        clock = time.perf_counter()
        result = _attempt(delivery, event=events[delivery.event_id], endpoint=endpoints[delivery.endpoint_id])
        duration_ms = int((time.perf_counter() - clock) * 1000)
        _record_attempt(delivery, result=result, started_at=started_at, duration_ms=duration_ms)
    return len(claimed)


@transaction.atomic
def webhook_delivery_redeliver(*, actor: Actor, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again (staff or the merchant asking): ``succeeded|failed → pending``, due now.

    The webhook-id stays the event's, so a receiver that already processed it can recognise it.
    The attempt count starts again, giving the redelivery the full retry schedule. A delivery that
    is still pending is refused: it is on its way already.
    """
    locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if WebhookDeliveryStatus.PENDING not in WEBHOOK_DELIVERY_TRANSITIONS[locked.status]:
        raise InvalidTransition(
            _("Delivery %(id)s is %(status)s; it cannot be sent again yet.")
            % {"id": locked.pk, "status": locked.status}
        )
    now = timezone.now()
    locked.status = WebhookDeliveryStatus.PENDING
    locked.attempts = 0
    locked.next_attempt_at = now
    locked.redelivered_at = now
    locked.redelivered_by = _actor_user(actor)
    locked.save(update_fields=["status", "attempts", "next_attempt_at", "redelivered_at", "redelivered_by"])
    return locked


@transaction.atomic
def webhook_endpoint_rotate_secret(*, actor: Actor, endpoint: WebhookEndpoint) -> tuple[WebhookEndpoint, str]:
    """Give an endpoint a new signing secret at once; returns the endpoint and the new secret (shown once).

    Deliveries signed from now on use the new secret, so the merchant's receiver must switch to it; the
    old one stops verifying immediately (rotate after a leak, not as routine).
    """
    locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    secret = generate_secret()
    locked.secret_encrypted = encrypt_secret(secret)
    locked.secret_hint = secret_hint(secret)
    locked.save(update_fields=["secret_encrypted", "secret_hint", "updated_at"])
    return locked, secret


# --------------------------------------------------------------------------- portal sign-up and onboarding

#: The wizard's first step: enough to open a draft application (the USCC reserves the legal entity).
APPLICATION_START_FIELDS: tuple[str, ...] = ("legal_name", "display_name", "uscc", "city")
USERNAME_MAX_LENGTH = 150


@transaction.atomic
def merchant_applicant_register(*, actor: Actor, username: str, email: str, phone: str, password: str) -> Any:
    """Create the login of someone opening a merchant account (or accepting a team invitation).

    The username and the e-mail address are unique (case-insensitive: the portal logs in by either);
    the password must pass the project's password validators. The mobile number is validated and
    returned normalised with the user (``user.applicant_phone``): the auth user has no phone column, so
    the portal keeps it to prefill the application's contact phone. Raises :class:`ValidationFailed`
    naming each field; creates nothing then.
    """
    user_model = get_user_model()
    errors: dict[str, str] = {}
    username = (username or "").strip()
    email = (email or "").strip()
    normalized_phone = normalize_cn_mobile(phone or "")
    if not username:
        errors["username"] = _required()
    elif len(username) > USERNAME_MAX_LENGTH:
        errors["username"] = _("Enter at most %(max)d characters.") % {"max": USERNAME_MAX_LENGTH}
    else:
        try:
            user_model.username_validator(username)
        except ValidationError as exc:
            errors["username"] = str(exc.messages[0])
        else:
            if user_model.objects.filter(username__iexact=username).exists():
                errors["username"] = _("This username is taken.")
    if not email:
        errors["email"] = _required()
    else:
        try:
            validate_email(email)
        except ValidationError as exc:
            errors["email"] = str(exc.messages[0])
        else:
            if user_model.objects.filter(email__iexact=email).exists():
                errors["email"] = _("An account with this e-mail address already exists; log in instead.")
    if phone:
        try:
            validate_cn_mobile(normalized_phone)
        except ValidationError as exc:
            errors["phone"] = str(exc.messages[0])
    user = user_model(username=username, email=email)
    try:
        validate_password(password or "", user=user)
    except ValidationError as exc:
        errors["password"] = " ".join(str(message) for message in exc.messages)
    if errors:
        raise ValidationFailed(_("Please correct the account details."), fields=errors)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # a concurrent sign-up took the username
        message = _("This username is taken.")
        raise ValidationFailed(message, fields={"username": message}) from exc
    user.applicant_phone = normalized_phone
    return user


@transaction.atomic
def merchant_application_start(
    *, actor: Actor, legal_name: str, display_name: str, uscc: str, city: str = ""
) -> Merchant:
    """Open a draft application from the onboarding wizard's company step; the applicant becomes its owner.

    Unlike :func:`merchant_create` (a complete application in one go, for staff and imports) only the
    company is required here: the wizard fills the other fields step by step through
    :func:`merchant_update_application`, and :func:`merchant_submit` validates the whole application
    before review sees it.
    """
    if actor is None or not getattr(actor, "is_authenticated", False):
        raise NotAllowed(_("Log in to open a merchant account."))
    cleaned = merchant_application_clean(
        data={"legal_name": legal_name, "display_name": display_name, "uscc": uscc, "city": city}, partial=True
    )
    rate = fee_rate_clean(settings.BNPL_DEFAULT_FEE_RATE)
    try:
        with transaction.atomic():
            merchant = Merchant.objects.create(**cleaned, fee_rate=rate, status=MerchantStatus.DRAFT)
    except IntegrityError as exc:
        message = _("A merchant with this unified social credit code already exists.")
        raise ValidationFailed(message, fields={"uscc": message}) from exc
    MerchantEvent.objects.create(merchant=merchant, actor=actor, from_status="", to_status=MerchantStatus.DRAFT)
    MerchantMember.objects.create(merchant=merchant, user=actor, role=MemberRole.OWNER)
    return merchant


# --------------------------------------------------------------------------- team invitations

INVITATION_TTL = timedelta(days=7)
INVITATION_TOKEN_BYTES = 32


def invitation_token_hash(token: str) -> str:
    """The stored form of an invitation link's token (SHA-256: the token is 256 random bits)."""
    return hashlib.sha256(str(token).encode()).hexdigest()


@transaction.atomic
def invitation_create(
    *, actor: Actor, merchant: Merchant, role: str, email: str = "", phone: str = ""
) -> tuple[MerchantInvitation, str]:
    """Invite someone, by e-mail address or mobile number, to join ``merchant``'s team with ``role``.

    Returns the invitation and the token of its link (shown to the inviter once; only its hash is kept).
    Refused when neither contact is valid, when the e-mail address already belongs to a member, or when
    a pending invitation to the same contact has not expired yet.
    """
    errors: dict[str, str] = {}
    try:
        role = _clean_role(role)
    except ValidationFailed as exc:
        errors.update(exc.fields)
    email = (email or "").strip().lower()
    phone_value = normalize_cn_mobile(phone or "") if (phone or "").strip() else ""
    if not email and not phone_value:
        errors["email"] = _("Enter an e-mail address or a mobile number.")
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            errors["email"] = str(exc.messages[0])
        else:
            if MerchantMember.objects.filter(merchant=merchant, user__email__iexact=email).exists():
                errors["email"] = _("Someone with this e-mail address is already a member.")
    if phone_value:
        try:
            validate_cn_mobile(phone_value)
        except ValidationError as exc:
            errors["phone"] = str(exc.messages[0])
    if errors:
        raise ValidationFailed(_("Please correct the invitation."), fields=errors)
    # The merchant row serialises invitations of one merchant, so two owners cannot both invite the same person.
    Merchant.objects.select_for_update().get(pk=merchant.pk)
    now = timezone.now()
    pending = MerchantInvitation.objects.filter(merchant=merchant, status=InvitationStatus.PENDING, expires_at__gt=now)
    if email and pending.filter(email=email).exists():
        message = _("An invitation to this e-mail address is still pending: revoke it first to send a new one.")
        raise ValidationFailed(message, fields={"email": message})
    if phone_value and pending.filter(phone=phone_value).exists():
        message = _("An invitation to this mobile number is still pending: revoke it first to send a new one.")
        raise ValidationFailed(message, fields={"phone": message})
    token = secrets.token_urlsafe(INVITATION_TOKEN_BYTES)
    invitation = MerchantInvitation.objects.create(
        merchant=merchant,
        email=email,
        phone=phone_value,
        role=role,
        token_hash=invitation_token_hash(token),
        expires_at=now + INVITATION_TTL,
        invited_by=_actor_user(actor),
    )
    return invitation, token


@transaction.atomic
def invitation_revoke(*, actor: Actor, invitation: MerchantInvitation) -> MerchantInvitation:
    """Withdraw a pending invitation (``pending → revoked``); its link stops working at once."""
    locked = MerchantInvitation.objects.select_for_update().get(pk=invitation.pk)
    if locked.status != InvitationStatus.PENDING:
        raise InvalidTransition(
            _("This invitation cannot be revoked: it is %(status)s.")
            % {"status": InvitationStatus(locked.status).label}
        )
    locked.status = InvitationStatus.REVOKED
    locked.save(update_fields=["status"])
    return locked


def _invitation_contact_check(*, invitation: MerchantInvitation, actor: Any, phone: str) -> None:
    """Refuse (``invitation_contact_mismatch``) unless ``actor`` is the person the invitation was sent to."""
    if invitation.email:
        if (getattr(actor, "email", "") or "").strip().lower() == invitation.email.strip().lower():
            return
        message = _(
            "This invitation was sent to %(contact)s. Log in with the account that uses that e-mail address, "
            "or ask the owner to invite you."
        ) % {"contact": invitation.masked_contact}
        raise NotAllowed(message, code="invitation_contact_mismatch", fields={"email": message})
    if phone and normalize_cn_mobile(phone) == invitation.phone:
        return
    message = _(
        "This invitation was sent to the mobile number %(contact)s. Create a login with that number on the "
        "invitation page, or ask the owner to invite your e-mail address."
    ) % {"contact": invitation.masked_contact}
    raise NotAllowed(message, code="invitation_contact_mismatch", fields={"phone": message})


@transaction.atomic
def invitation_accept(*, actor: Any, invitation: MerchantInvitation, phone: str = "") -> MerchantMember:
    """Join the team through an invitation (``pending → accepted``): ``actor`` becomes a member with its role.

    Only the invited person may accept: for an e-mail invitation ``actor``'s e-mail must be the invited
    one (case-insensitive); for a mobile invitation ``phone`` (the number the login was just created with
    on the invitation page; auth users keep no phone) must be the invited number, so a signed-in account
    cannot take a mobile invitation. A leaked link alone does not let a stranger join. Refused too when the
    invitation was revoked, already used or has expired, and when ``actor`` is already a member of the
    merchant (an owner cannot downgrade themselves by opening a viewer link).
    """
    if actor is None or not getattr(actor, "is_authenticated", False):
        raise NotAllowed(_("Log in or create an account to accept the invitation."))
    locked = MerchantInvitation.objects.select_for_update().get(pk=invitation.pk)
    if locked.status != InvitationStatus.PENDING:
        raise InvalidTransition(
            _("This invitation can no longer be used: it is %(status)s.")
            % {"status": InvitationStatus(locked.status).label},
            code="invitation_used",
        )
    if locked.expires_at <= timezone.now():
        raise NotAllowed(_("This invitation has expired: ask the owner for a new one."), code="invitation_expired")
    _invitation_contact_check(invitation=locked, actor=actor, phone=phone)
    if MerchantMember.objects.filter(merchant_id=locked.merchant_id, user=actor).exists():
        raise NotAllowed(_("You are already a member of this merchant."), code="already_member")
    member = member_add(actor=actor, merchant=locked.merchant, user=actor, role=locked.role)
    locked.status = InvitationStatus.ACCEPTED
    locked.accepted_by = actor
    locked.accepted_at = timezone.now()
    locked.save(update_fields=["status", "accepted_by", "accepted_at"])
    return member
