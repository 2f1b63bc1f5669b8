"""Writes of the consumers app: registration, identity, credit holds, limits, pauses and promise records.

Credit holds are the heart of invariant 3 (open exposure never exceeds the
limit): they change ``open_exposure_amount`` with one conditional UPDATE, so two
orders placed at the same instant from two connections cannot both take the last
of the limit: PostgreSQL serialises the two updates on the row and re-checks the
condition for the second one. The callers (``bnpl`` services) run these inside
their own transaction, so the hold commits or rolls back with the order change.

Transactions: ``consumer_register`` and ``consumer_verify_identity`` are entry
points (a sign-up form, a verification form) and own a durable transaction. The
profile services (``credit_limit_set``, ``credit_profile_pause`` / ``_unpause``,
``credit_score_set``) are also called from inside other services' transactions
(an overdue order pauses the profile, the scoring refresh moves score and limit),
so they use a plain ``transaction.atomic`` that becomes a savepoint there.

Personal data: the clear resident ID number is validated, hashed and masked in
memory and never written to a column, a log line or an exception message.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from bnpl.bulk_sql import copy_tuples
from bnpl.exceptions import InsufficientCredit, NotAllowed, ValidationFailed
from bnpl.money import MoneyError, format_cny, parse_money
from bnpl.ratelimit import rate_count, rate_hit
from bnpl.sql_arrays import int_array, numeric_array
from bnpl.validators import (
    mask_resident_id,
    normalize_cn_mobile,
    normalize_resident_id,
    validate_cn_mobile,
    validate_resident_id,
)

from . import limits
from .choices import LimitChangeReason, ProfileEventKind, PromiseOutcome, band_for_score
from .models import Consumer, CreditProfile, CreditProfileEvent, LimitChange, PromiseRecord

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    # A staff or consumer user, or None for a system job or a self-service sign-up.
    Actor = AbstractBaseUser | None

logger = logging.getLogger(__name__)

# The starting limits by band now live in the limit ladder (``consumers.limits``), with the
# growth and breach rules; re-exported here for callers of the foundation's name.
INITIAL_LIMIT_BY_BAND = limits.INITIAL_LIMIT_BY_BAND

SCORE_MIN = 350
SCORE_MAX = 950
# Matches CreditProfile.paused_reason and the model fields' max_length.
PAUSE_REASON_MAX_LENGTH = 200
REAL_NAME_MAX_LENGTH = 50
CITY_MAX_LENGTH = 50
USERNAME_MAX_LENGTH = 150


def _actor_id(actor: Actor) -> int | None:
    return getattr(actor, "pk", None)


def _actor_user(actor: Actor) -> AbstractBaseUser | None:
    """The actor to store on a history row: a real user, or None (a view may pass AnonymousUser)."""
    return actor if getattr(actor, "is_authenticated", False) else None


# --- Registration and identity ---------------------------------------------------------------


def _clean_phone(phone: str) -> str:
    try:
        validate_cn_mobile(phone)
    except DjangoValidationError as exc:
        raise ValidationFailed(_("Enter a valid mobile number."), fields={"phone": " ".join(exc.messages)}) from None
    return normalize_cn_mobile(phone)


def _clean_score(score: object) -> int:
    # bool is an int in Python; True is not a score.
    if isinstance(score, bool) or not isinstance(score, int) or not SCORE_MIN <= score <= SCORE_MAX:
        raise ValidationFailed(
            _("A credit score must be a whole number from 350 to 950."),
            fields={"score": _("Must be a whole number from 350 to 950.")},
        )
    return score


def _clean_username(username: str) -> str:
    username = username.strip()
    message = _("Enter a valid username (letters, digits and @/./+/-/_ only, at most 150 characters).")
    if not username or len(username) > USERNAME_MAX_LENGTH:
        raise ValidationFailed(message, fields={"username": message})
    try:
        UnicodeUsernameValidator()(username)
    except DjangoValidationError:
        raise ValidationFailed(message, fields={"username": message}) from None
    return username


def consumer_register(
    *,
    actor: Actor,
    phone: str,
    password: str,
    username: str | None = None,
    city: str = "",
    score: int = 600,
) -> Consumer:
    """Sign a consumer up: their login, their consumer row and a credit profile with a starting limit.

    The phone is normalised (``+86 138-0013-8000`` → ``13800138000``) and is the
    username unless one is given. The password must pass the project's password
    validators. The starting limit comes from the band of ``score`` through the limit
    ladder (:func:`consumers.limits.initial_limit_for_score`) and is recorded as a :class:`LimitChange` with
    reason ``initial`` (0 → limit), so the limit history starts at sign-up.

    All or nothing in one transaction: a duplicate phone or username, an invalid
    phone or a weak password raises :class:`ValidationFailed` naming the field, and
    creates nothing. ``actor`` is the staff user registering someone, or ``None``
    for a self-service sign-up.
    """
    user_model = get_user_model()
    normalized_phone = _clean_phone(phone)
    username = _clean_username(username if username is not None else normalized_phone)
    score = _clean_score(score)
    city = (city or "").strip()
    if len(city) > CITY_MAX_LENGTH:
        raise ValidationFailed(_("The city name is too long."), fields={"city": _("At most 50 characters.")})
    try:
        # An unsaved user lets the similarity validator compare the password with the username.
        password_validation.validate_password(password, user=user_model(username=username))
    except DjangoValidationError as exc:
        raise ValidationFailed(_("Choose a stronger password."), fields={"password": " ".join(exc.messages)}) from None

    _raise_if_taken(normalized_phone, username)
    initial_limit = limits.initial_limit_for_score(score)
    try:
        with transaction.atomic(durable=True):
            user = user_model.objects.create_user(username=username, password=password)
            consumer = Consumer.objects.create(user=user, phone=normalized_phone, city=city)
            profile = CreditProfile.objects.create(consumer=consumer, score=score, credit_limit_amount=initial_limit)
            LimitChange.objects.create(
                profile=profile,
                actor=_actor_user(actor),
                reason_code=LimitChangeReason.INITIAL,
                # Data, not a message: kept language-neutral so it reads the same in any locale.
                reason=f"score {score}, band {band_for_score(score)}",
                before_amount=Decimal("0.00"),
                after_amount=initial_limit,
            )
    except IntegrityError:
        # A concurrent sign-up took the phone or username between the check and the insert;
        # the transaction has rolled back, so report the field like the check would have.
        _raise_if_taken(normalized_phone, username)
        raise
    logger.info(
        "consumer registered consumer=%s actor=%s score=%s initial_limit=%s",
        consumer.pk,
        _actor_id(actor),
        score,
        initial_limit,
    )
    return consumer


def _raise_if_taken(phone: str, username: str) -> None:
    if Consumer.objects.filter(phone=phone).exists():
        raise ValidationFailed(
            _("This mobile number is already registered."),
            fields={"phone": _("This mobile number is already registered.")},
        )
    if get_user_model().objects.filter(username=username).exists():
        raise ValidationFailed(
            _("This username is already taken."), fields={"username": _("This username is already taken.")}
        )


def _compact_id_number(id_number: str) -> str:
    # bnpl.validators.normalize_resident_id (stdnum's compact) keeps inner spaces, and people
    # type the number in groups ("330106 19900101 123X"): drop all whitespace first.
    return normalize_resident_id(re.sub(r"\s+", "", str(id_number or "")))


def identity_hash(id_number: str) -> str:
    """HMAC-SHA256 of the normalised resident ID under ``settings.IDENTITY_HASH_KEY``, as hex.

    Keyed (not a plain hash) because resident IDs are few enough to enumerate: without
    the key, a leaked column could be reversed by hashing every possible number.
    Normalised first, so ``…123x`` and ``…123X`` (and spaced input) hash the same.
    """
    key = settings.IDENTITY_HASH_KEY
    if not key:
        raise ImproperlyConfigured("IDENTITY_HASH_KEY must be set to hash resident ID numbers")
    return hmac.new(key.encode(), _compact_id_number(id_number).encode(), hashlib.sha256).hexdigest()


#: Failed verification attempts allowed per account in :data:`VERIFY_FAILURE_WINDOW_S`; settings may override.
VERIFY_FAILURE_LIMIT = 5
VERIFY_FAILURE_WINDOW_S = 24 * 60 * 60


def _verify_failures_key(consumer_id: int) -> str:
    return f"consumer-verify-failures:{consumer_id}"


@transaction.atomic(durable=True)
def consumer_verify_identity(*, actor: Actor, consumer: Consumer, real_name: str, id_number: str) -> Consumer:
    """Bind a real name and a resident ID to the consumer (实名认证), once.

    Stores only ``id_number_hash`` (see :func:`identity_hash`) and the masked number;
    the clear number is never saved, logged or put into an error message. One ID
    binds one account: the same ID on another consumer raises
    :class:`ValidationFailed` on ``id_number`` with a generic message (it does not say
    the number is someone's). A consumer already verified raises
    :class:`NotAllowed` (changing a verified identity is a support case, not a form).
    Each refused attempt counts; after ``VERIFY_FAILURE_LIMIT`` in a day the account is
    refused (:class:`NotAllowed`, code ``verify_attempts_exceeded``) before any check, so
    the form cannot be used to probe which ID numbers are registered.
    Returns the consumer as re-read under the row lock.
    """
    limit = getattr(settings, "CONSUMER_VERIFY_FAILURE_LIMIT", VERIFY_FAILURE_LIMIT)
    key = _verify_failures_key(consumer.pk)
    if rate_count(key) >= limit:
        raise NotAllowed(
            _("Too many failed verification attempts. Try again tomorrow or contact support."),
            code="verify_attempts_exceeded",
        )
    try:
        return _verify_identity(actor=actor, consumer=consumer, real_name=real_name, id_number=id_number)
    except ValidationFailed:
        rate_hit(key, limit=limit, window_s=VERIFY_FAILURE_WINDOW_S)
        raise


def _verify_identity(*, actor: Actor, consumer: Consumer, real_name: str, id_number: str) -> Consumer:
    real_name = (real_name or "").strip()
    if not real_name or len(real_name) > REAL_NAME_MAX_LENGTH:
        raise ValidationFailed(
            _("Enter your real name as on your ID card."), fields={"real_name": _("Enter 1 to 50 characters.")}
        )
    id_number = _compact_id_number(id_number)
    try:
        validate_resident_id(id_number)
    except DjangoValidationError as exc:
        # ``from None``: the original error must not drag the input into a traceback.
        raise ValidationFailed(
            _("Enter a valid resident ID number."), fields={"id_number": " ".join(exc.messages)}
        ) from None
    number_hash = identity_hash(id_number)

    locked = Consumer.objects.select_for_update().get(pk=consumer.pk)
    if locked.verified_at is not None:
        raise NotAllowed(_("This account is already verified."), code="already_verified")
    # Generic on purpose: saying "bound to another account" would confirm that the number is registered.
    taken_message = _("This ID number cannot be verified for this account; contact support.")
    if Consumer.objects.filter(id_number_hash=number_hash).exclude(pk=locked.pk).exists():
        raise ValidationFailed(taken_message, fields={"id_number": taken_message})
    locked.real_name = real_name
    locked.id_number_hash = number_hash
    locked.id_number_masked = mask_resident_id(id_number)
    locked.verified_at = timezone.now()
    try:
        # A savepoint, so that losing a race on the unique hash can be reported as the field error.
        with transaction.atomic():
            locked.save(update_fields=["real_name", "id_number_hash", "id_number_masked", "verified_at"])
    except IntegrityError:
        raise ValidationFailed(taken_message, fields={"id_number": taken_message}) from None
    logger.info("consumer identity verified consumer=%s actor=%s", locked.pk, _actor_id(actor))
    return locked


# --- Credit holds (called by bnpl inside its order transactions) ------------------------------


def credit_hold_acquire(*, consumer: Consumer, amount: Decimal) -> None:
    """Hold ``amount`` of the consumer's limit for an order that becomes active.

    One conditional UPDATE (``exposure <= min(limit, personal cap) - amount``):
    concurrent holds on the same profile serialise on the row and the second one
    re-checks the condition against the first one's result, so neither the limit nor
    the consumer's own spend cap is ever over-committed. Raises
    :class:`InsufficientCredit` (and changes nothing) when the available limit does not
    cover it, including when a limit cut has left available negative.
    """
    if amount <= 0:
        raise ValidationFailed("a hold must be a positive amount", fields={"amount": "must be greater than zero"})
    # Hand-written: every admitted order runs it, and compiling the queryset's expressions cost more
    # than the UPDATE (docs/performance.md, "HTTP load").
    with connection.cursor() as cursor:
        cursor.execute(_HOLD_ACQUIRE_SQL, [amount, consumer.pk, amount])
        updated = cursor.rowcount
    if updated != 1:
        raise InsufficientCredit("the available credit limit does not cover this order")


_HOLD_ACQUIRE_SQL = (
    "UPDATE consumers_creditprofile SET open_exposure_amount = open_exposure_amount + %s "
    "WHERE consumer_id = %s "
    "AND open_exposure_amount <= LEAST(credit_limit_amount, COALESCE(spend_cap_amount, credit_limit_amount)) - %s"
)


def credit_hold_release(*, consumer: Consumer, amount: Decimal) -> None:
    """Give back ``amount`` that an order held (completion below the cap, cancel, expiry, payment).

    Releasing more than is held raises ``RuntimeError``: it means an order's hold and
    the profile disagree, a bug to surface rather than clamp.
    """
    if amount < 0:
        raise ValidationFailed("a release cannot be negative", fields={"amount": "must not be negative"})
    if amount == 0:
        return
    updated = CreditProfile.objects.filter(consumer=consumer, open_exposure_amount__gte=amount).update(
        open_exposure_amount=F("open_exposure_amount") - amount
    )
    if updated != 1:
        # Releasing more than is held means the order's hold_amount and the profile
        # disagree: a bug, never something to paper over.
        raise RuntimeError(f"consumer {consumer.pk}: releasing {amount} exceeds the open exposure")


def credit_holds_release_many(*, amounts: dict[int, Decimal]) -> None:
    """``credit_hold_release`` for many consumers in one statement (``{consumer_id: amount}``).

    The charge run releases the holds of a whole chunk of paid orders at once. Rows are
    updated in consumer-id order (the lock order of every writer); as in the one-consumer
    call, releasing more than a consumer holds is a bug and raises ``RuntimeError``, which
    rolls the caller's transaction back.
    """
    wanted = {pk: amount for pk, amount in amounts.items() if amount != 0}
    if any(amount < 0 for amount in wanted.values()):
        raise ValidationFailed("a release cannot be negative", fields={"amount": "must not be negative"})
    if not wanted:
        return
    ids = sorted(wanted)
    with transaction.atomic(), connection.cursor() as cursor:
        # An UPDATE locks rows in no set order; lock them by consumer id first.
        cursor.execute(
            "SELECT 1 FROM consumers_creditprofile WHERE consumer_id = ANY(%s::bigint[]) ORDER BY consumer_id "
            "FOR UPDATE",
            [int_array(ids)],
        )
        cursor.execute(
            "UPDATE consumers_creditprofile p SET open_exposure_amount = p.open_exposure_amount - v.amount "
            "FROM unnest(%s::bigint[], %s::numeric[]) AS v(consumer_id, amount) "
            "WHERE p.consumer_id = v.consumer_id AND p.open_exposure_amount >= v.amount",
            [int_array(ids), numeric_array(wanted[pk] for pk in ids)],
        )
        if cursor.rowcount != len(ids):
            raise RuntimeError(f"releasing holds of consumers {ids}: {len(ids) - cursor.rowcount} exceed the exposure")


# --- Limit, pause and score -------------------------------------------------------------------


def _lock_profile(consumer: Consumer) -> CreditProfile:
    return CreditProfile.objects.select_for_update().get(consumer=consumer)


@transaction.atomic
def credit_limit_set(
    *, actor: Actor, consumer: Consumer, amount: Decimal | str, reason_code: str, reason: str
) -> LimitChange:
    """Set the consumer's credit limit and record the change (before, after, why, who).

    ``amount`` is parsed strictly with :func:`bnpl.money.parse_money` (no floats, no
    third decimal). A staff adjustment (``reason_code="staff"``) needs a written
    reason. Setting the limit to its current value is refused (``limit_unchanged``)
    rather than writing an empty history row; automated callers check first.

    The limit may be cut below the current open exposure: existing orders keep their
    holds, ``available_amount`` goes negative, and no new hold succeeds until the
    exposure falls below the new limit. This is deliberate, and why the profile has
    no ``exposure <= limit`` constraint: a risk cut must never be blocked by orders
    already placed. The profile row is locked so the cut and a concurrent hold are
    ordered (the hold re-checks against the new limit).
    """
    try:
        new_amount = parse_money(amount)
    except MoneyError:
        message = _("Enter an amount in yuan, not negative, with at most two decimal places.")
        raise ValidationFailed(message, fields={"amount": message}) from None
    if reason_code not in LimitChangeReason.values:
        raise ValidationFailed(
            _("Unknown reason code."), fields={"reason_code": _("Choose one of the listed reasons.")}
        )
    reason = (reason or "").strip()
    if reason_code == LimitChangeReason.STAFF and not reason:
        message = _("A staff adjustment needs a written reason.")
        raise ValidationFailed(message, fields={"reason": message})

    profile = _lock_profile(consumer)
    before = profile.credit_limit_amount
    if new_amount == before:
        message = _("The new limit is the same as the current limit.")
        raise ValidationFailed(message, code="limit_unchanged", fields={"amount": message})
    CreditProfile.objects.filter(pk=profile.pk).update(credit_limit_amount=new_amount, updated_at=timezone.now())
    change = LimitChange.objects.create(
        profile=profile,
        actor=_actor_user(actor),
        reason_code=reason_code,
        reason=reason,
        before_amount=before,
        after_amount=new_amount,
    )
    logger.info(
        "credit limit set consumer=%s actor=%s before=%s after=%s reason_code=%s",
        consumer.pk,
        _actor_id(actor),
        before,
        new_amount,
        reason_code,
    )
    return change


def _limit_write(
    *, actor: Actor, profile: CreditProfile, new_amount: Decimal, reason_code: str, reason: str
) -> LimitChange:
    """Move a locked profile's limit and write its history row (the caller holds the row lock)."""
    before = profile.credit_limit_amount
    CreditProfile.objects.filter(pk=profile.pk).update(credit_limit_amount=new_amount, updated_at=timezone.now())
    profile.credit_limit_amount = new_amount
    change = LimitChange.objects.create(
        profile=profile,
        actor=_actor_user(actor),
        reason_code=reason_code,
        reason=reason,
        before_amount=before,
        after_amount=new_amount,
    )
    logger.info(
        "credit limit moved consumer=%s actor=%s before=%s after=%s reason_code=%s",
        profile.consumer_id,
        _actor_id(actor),
        before,
        new_amount,
        reason_code,
    )
    return change


@transaction.atomic
def credit_limit_grow(*, actor: Actor, consumer: Consumer, reason: str) -> LimitChange | None:
    """Grow the limit by one step of the consumer's band, never past the band's ceiling.

    The scoring app calls it when the consumer has kept another
    :data:`consumers.limits.GROWTH_EVERY_KEPT` promises (it decides *when*; the ladder
    here decides *how much*). Returns the :class:`LimitChange` (reason ``growth``), or
    ``None`` when the limit is already at or above the ceiling, or the profile is
    paused (no growth while an order is overdue): then nothing is written.
    """
    profile = _lock_profile(consumer)
    if profile.is_paused:
        return None
    new_amount = limits.grown_limit(profile.credit_limit_amount, profile.score)
    if new_amount <= profile.credit_limit_amount:
        return None
    return _limit_write(
        actor=actor,
        profile=profile,
        new_amount=new_amount,
        reason_code=LimitChangeReason.GROWTH,
        reason=(reason or "").strip(),
    )


@transaction.atomic
def credit_limit_cut_after_breach(*, actor: Actor, consumer: Consumer, reason: str) -> LimitChange | None:
    """Cut the limit after a breach (an order went overdue): keep half, rounded down to ¥10.

    Orders already open keep their holds (available may go negative, see
    :func:`credit_limit_set`). Returns the :class:`LimitChange` (reason ``breach``), or
    ``None`` when the limit is already zero.
    """
    profile = _lock_profile(consumer)
    new_amount = limits.cut_limit(profile.credit_limit_amount)
    if new_amount >= profile.credit_limit_amount:
        return None
    return _limit_write(
        actor=actor,
        profile=profile,
        new_amount=new_amount,
        reason_code=LimitChangeReason.BREACH,
        reason=(reason or "").strip(),
    )


@transaction.atomic
def credit_spend_cap_set(*, actor: Actor, consumer: Consumer, amount: Decimal | str | None) -> CreditProfile:
    """Set (or with ``None`` clear) the consumer's personal spend cap, a ceiling below their limit.

    The cap is the consumer's own choice ("never let my open orders hold more than
    ¥300"): admission and the credit hold use ``min(limit, cap)``. A cap above the
    limit is refused (it would promise more than the platform grants), as is a
    negative or malformed amount. Setting the value it already has is refused
    (``spend_cap_unchanged``). Writes a :class:`CreditProfileEvent` (before, after).
    """
    new_cap: Decimal | None
    if amount is None or (isinstance(amount, str) and not amount.strip()):
        new_cap = None
    else:
        try:
            new_cap = parse_money(amount)
        except MoneyError:
            message = _("Enter an amount in yuan, not negative, with at most two decimal places.")
            raise ValidationFailed(message, fields={"amount": message}) from None
    profile = _lock_profile(consumer)
    if new_cap is not None and new_cap > profile.credit_limit_amount:
        message = _("A personal spend cap cannot be above your credit limit of %(limit)s.") % {
            "limit": format_cny(profile.credit_limit_amount)
        }
        raise ValidationFailed(message, code="spend_cap_above_limit", fields={"amount": message})
    before = profile.spend_cap_amount
    if new_cap == before:
        message = _("The new spend cap is the same as the current one.")
        raise ValidationFailed(message, code="spend_cap_unchanged", fields={"amount": message})
    CreditProfile.objects.filter(pk=profile.pk).update(spend_cap_amount=new_cap, updated_at=timezone.now())
    CreditProfileEvent.objects.create(
        profile=profile,
        actor=_actor_user(actor),
        kind=ProfileEventKind.SPEND_CAP_SET,
        before="" if before is None else str(before),
        after="" if new_cap is None else str(new_cap),
    )
    profile.refresh_from_db()
    logger.info("spend cap set consumer=%s actor=%s before=%s after=%s", consumer.pk, _actor_id(actor), before, new_cap)
    return profile


@transaction.atomic
def credit_profile_pause(*, actor: Actor, consumer: Consumer, reason: str) -> CreditProfile:
    """Pause new pay-later orders for the consumer (a missed payment, a staff decision).

    Open orders are untouched; admission declines with ``account_paused`` while the
    profile is paused. A reason is required (shown to staff, kept on the profile).
    Pausing a paused profile raises :class:`NotAllowed` so that a second pause can
    never silently overwrite the first one's reason.
    """
    reason = (reason or "").strip()
    if not reason or len(reason) > PAUSE_REASON_MAX_LENGTH:
        message = _("Give a reason for the pause (at most 200 characters).")
        raise ValidationFailed(message, fields={"reason": message})
    profile = _lock_profile(consumer)
    if profile.is_paused:
        raise NotAllowed(
            _("Pay-later is already paused for this consumer (reason: %(reason)s).")
            % {"reason": profile.paused_reason},
            code="already_paused",
        )
    CreditProfile.objects.filter(pk=profile.pk).update(is_paused=True, paused_reason=reason, updated_at=timezone.now())
    CreditProfileEvent.objects.create(
        profile=profile,
        actor=_actor_user(actor),
        kind=ProfileEventKind.PAUSED,
        before="active",
        after="paused",
        reason=reason,
    )
    profile.refresh_from_db()
    logger.info("credit profile paused consumer=%s actor=%s reason=%s", consumer.pk, _actor_id(actor), reason)
    return profile


@transaction.atomic
def credit_profile_unpause(*, actor: Actor, consumer: Consumer, reason: str) -> CreditProfile:
    """Lift a pause (the overdue order was paid, or staff decided so); the reason is logged.

    Unpausing a profile that is not paused raises :class:`NotAllowed`.
    """
    reason = (reason or "").strip()
    profile = _lock_profile(consumer)
    if not profile.is_paused:
        raise NotAllowed(_("Pay-later is not paused for this consumer."), code="not_paused")
    CreditProfile.objects.filter(pk=profile.pk).update(is_paused=False, paused_reason="", updated_at=timezone.now())
    CreditProfileEvent.objects.create(
        profile=profile,
        actor=_actor_user(actor),
        kind=ProfileEventKind.UNPAUSED,
        before="paused",
        after="active",
        reason=reason,
    )
    profile.refresh_from_db()
    logger.info("credit profile unpaused consumer=%s actor=%s reason=%s", consumer.pk, _actor_id(actor), reason)
    return profile


@transaction.atomic
def credit_score_set(*, actor: Actor, consumer: Consumer, score: int, reason: str) -> CreditProfile:
    """Set the consumer's credit score (350–950); the band follows in the database.

    Minimal on purpose: the scoring issue extends it (scorecard version, a score
    history row, a limit review). The limit is not changed here.
    """
    score = _clean_score(score)
    reason = (reason or "").strip()
    if not reason:
        message = _("Give a reason for the score change.")
        raise ValidationFailed(message, fields={"reason": message})
    profile = _lock_profile(consumer)
    before = profile.score
    CreditProfile.objects.filter(pk=profile.pk).update(score=score, updated_at=timezone.now())
    CreditProfileEvent.objects.create(
        profile=profile,
        actor=_actor_user(actor),
        kind=ProfileEventKind.SCORE_CHANGED,
        before=str(before),
        after=str(score),
        reason=reason,
    )
    profile.refresh_from_db()
    logger.info(
        "credit score set consumer=%s actor=%s before=%s after=%s reason=%s",
        consumer.pk,
        _actor_id(actor),
        before,
        score,
        reason,
    )
    return profile


@transaction.atomic
def credit_scores_set_many(*, actor: Actor, changes: Sequence[tuple[int, int, str]]) -> None:
    """``credit_score_set`` for many consumers at once: ``[(consumer_id, score, reason), …]``.

    The charge run re-scores a whole chunk of consumers after their payments; this writes
    the scores in one statement and the ``score_changed`` events in another, with the same
    rows and log lines as one call each. Profiles are locked in consumer-id order.
    """
    if not changes:
        return
    cleaned = {consumer_id: (_clean_score(score), (reason or "").strip()) for consumer_id, score, reason in changes}
    if not all(reason for _score, reason in cleaned.values()):
        message = _("Give a reason for the score change.")
        raise ValidationFailed(message, fields={"reason": message})
    ids = sorted(cleaned)
    now = timezone.now()
    with connection.cursor() as cursor:
        # Plain tuples, not model instances: a charge-run chunk re-scores hundreds of consumers (docs/charging.md).
        cursor.execute(
            "SELECT consumer_id, id, score FROM consumers_creditprofile WHERE consumer_id = ANY(%s::bigint[]) "
            "ORDER BY consumer_id FOR UPDATE",
            [int_array(ids)],
        )
        profiles = cursor.fetchall()
        cursor.execute(
            "UPDATE consumers_creditprofile p SET score = v.score, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::int[]) AS v(consumer_id, score) WHERE p.consumer_id = v.consumer_id",
            [now, int_array(ids), int_array(cleaned[pk][0] for pk in ids)],
        )
    user_id = _actor_id(_actor_user(actor))
    copy_tuples(
        CreditProfileEvent,
        _SCORE_EVENT_COLUMNS,
        [
            (
                profile_id,
                user_id,
                ProfileEventKind.SCORE_CHANGED.value,
                str(before),
                str(cleaned[consumer_id][0]),
                cleaned[consumer_id][1],
                now,
            )
            for consumer_id, profile_id, before in profiles
        ],
    )
    for consumer_id, _profile_id, before in profiles:
        score, reason = cleaned[consumer_id]
        logger.info(
            "credit score set consumer=%s actor=%s before=%s after=%s reason=%s",
            consumer_id,
            _actor_id(actor),
            before,
            score,
            reason,
        )


_SCORE_EVENT_COLUMNS = ("profile_id", "actor_id", "kind", "before", "after", "reason", "created_at")


# --- Promise records (called by bnpl when an order finishes) ----------------------------------


def promise_record_add(
    *, consumer: Consumer, merchant_id: int, order_id: int, outcome: str, amount: Decimal, recorded_at: datetime
) -> PromiseRecord:
    """Write the 守约记录 of a finished order.

    One per order: ``order_id`` is unique, so a second call for the same order raises
    ``IntegrityError`` (the caller's transaction then rolls back with it).
    """
    if outcome not in PromiseOutcome.values:
        raise ValidationFailed(f"unknown promise outcome {outcome!r}", fields={"outcome": "unknown outcome"})
    return PromiseRecord.objects.create(
        consumer=consumer,
        merchant_id=merchant_id,
        order_id=order_id,
        outcome=outcome,
        amount=amount,
        recorded_at=recorded_at,
    )


def promise_records_add_many(*, records: list[PromiseRecord]) -> list[PromiseRecord]:
    """``promise_record_add`` for many unsaved records in one statement (the charge run's chunks).

    The unique ``order_id`` refuses a second record for an order, as for one record.
    """
    for record in records:
        if record.outcome not in PromiseOutcome.values:
            raise ValidationFailed(f"unknown promise outcome {record.outcome!r}", fields={"outcome": "unknown outcome"})
    # The rows bulk_create would write, from the instances' own values: no per-field preparation, which
    # cost more than the insert at a charge-run chunk's size (docs/charging.md, "Performance").
    now = timezone.now()
    rows = [
        (r.consumer_id, r.merchant_id, r.order_id, r.outcome, r.amount, r.recorded_at, now, r.rewards_pending)
        for r in records
    ]
    for record, pk in zip(records, copy_tuples(PromiseRecord, _PROMISE_COLUMNS, rows), strict=True):
        record.pk, record.updated_at = pk, now
        record._state.adding, record._state.db = False, connection.alias
    return records


_PROMISE_COLUMNS = (
    "consumer_id",
    "merchant_id",
    "order_id",
    "outcome",
    "amount",
    "recorded_at",
    "updated_at",
    "rewards_pending",
)


@transaction.atomic
def promise_record_recover(*, order_id: int, recorded_at: datetime) -> PromiseRecord:
    """A breached order was paid after all: its record becomes ``recovered``.

    Only a breached record can recover; any other raises :class:`ValidationFailed`
    with code ``invalid_state`` and leaves the record as it was.
    """
    record = PromiseRecord.objects.select_for_update().get(order_id=order_id)
    if record.outcome != PromiseOutcome.BREACHED:
        raise ValidationFailed(
            f"only a breached record can be recovered (this one is {record.outcome})", code="invalid_state"
        )
    record.outcome = PromiseOutcome.RECOVERED
    record.recorded_at = recorded_at
    record.save(update_fields=["outcome", "recorded_at", "updated_at"])
    return record
