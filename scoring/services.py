"""Writes of the scoring app: admission decisions, feature updates, score and limit reviews, scorecards, blocklist.

**Admission** (事前准入评估) runs at every entry (sign-up, order, confirmation). It reads
two rows for the consumer (the profile and the feature row, in one query that also
asks the blocklist and which scorecard is active) and one for the listing, applies the
versioned policy (``scoring.policy``), and stores the decision with the variables it
scored, the score, the reasons (with a hint each), the scorecard and policy versions
and its latency, approved or not (PIPL art. 24).

**Which score decides.** The policy compares the consumer's published score (the one
on their credit profile, the one they see) with the thresholds, so a decline for
"score below the minimum" always refers to a number the consumer can look up. The
published score is the active scorecard's output on the feature row: it is refreshed
whenever the features change (a promise record is written) and by ``manage.py
refresh_scores`` (time-based variables such as tenure, and a newly activated card);
every change is a ``score_changed`` event. The decision also evaluates the card on the
current features for the sub-scores and reasons, and keeps that figure as
``scorecard_score`` in the snapshot.

**Features** are kept current incrementally by the ``features_on_*`` services, which
the upper app (``bnpl``) calls in the same transaction as the event: the consumers app
sits below scoring and cannot call up into it.

Transactions: ``admission_assess`` and the ``features_on_*`` services run inside their
caller's transaction (plain ``atomic`` or none); ``scorecard_activate``,
``blocklist_add`` and ``blocklist_lift`` are entry points (admin actions) and own a
durable transaction.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from bnpl import sql_rows
from bnpl.bulk_sql import insert_keys_ignoring_conflicts
from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from bnpl.money import MoneyError, parse_money
from bnpl.sql_arrays import int_array, text_array
from bnpl.validators import normalize_cn_mobile
from consumers import limits
from consumers.choices import PromiseOutcome
from consumers.models import Consumer, CreditProfile, PromiseRecord
from consumers.services import (
    credit_limit_cut_after_breach,
    credit_limit_grow,
    credit_score_set,
    credit_scores_set_many,
)
from merchants.choices import ListingStatus, MerchantStatus
from merchants.models import Listing, Merchant

from .choices import (
    ORDER_CHANNELS,
    BlocklistKind,
    DecisionChannel,
    DecisionOutcome,
    ReasonCode,
    ScorecardEventKind,
    ScorecardSource,
)
from .default_card import DEFAULT_SCORECARD_SPEC, DEFAULT_SCORECARD_VERSION
from .features import derive_variables
from .models import AdmissionDecision, BlocklistEntry, ConsumerFeatures, Scorecard, ScorecardEvent
from .policy import ACTIVE_POLICY_VERSION, AdmissionPolicy, active_policy
from .reasons import policy_reason, score_reason
from .scorecard import CompiledCard, ScorecardSpecError, compile_spec

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    Actor = AbstractBaseUser | None

logger = logging.getLogger(__name__)

# The version the foundation's tests and callers import; the active policy's version.
POLICY_VERSION = ACTIVE_POLICY_VERSION

# Limit growth needs a clean recent record besides the kept-promise count.
GROWTH_MIN_ON_TIME_RATE = 0.9
VELOCITY_HOUR = timedelta(hours=1)
VELOCITY_DAY = timedelta(days=1)
MAX_REASON = 500

# Compiled cards by primary key. Cards are immutable once created (a new fit is a new
# row), so a compiled card never goes stale; which card is active is asked on every
# decision, in the same query as the consumer.
_compiled_cards: dict[int, CompiledCard] = {}


def _actor_user(actor: Actor) -> AbstractBaseUser | None:
    return actor if getattr(actor, "is_authenticated", False) else None


def compiled_card(card_id: int) -> CompiledCard:
    """The compiled form of scorecard ``card_id`` (cached per process; cards never change)."""
    card = _compiled_cards.get(card_id)
    if card is None:
        row = Scorecard.objects.values_list("version", "spec").get(pk=card_id)
        card = compile_spec(row[1], version=row[0])
        _compiled_cards[card_id] = card
    return card


def active_compiled_card() -> tuple[Scorecard, CompiledCard] | None:
    """The active scorecard and its compiled form, or ``None`` when no card is active."""
    card = Scorecard.objects.filter(is_active=True).first()
    if card is None and scorecard_install_default(actor=None) is not None:
        card = Scorecard.objects.filter(is_active=True).first()
    if card is None:
        return None
    return card, compiled_card(card.pk)


def scorecard_install_default(*, actor: Actor) -> Scorecard | None:
    """Install the shipped default scorecard, active, when the platform has no scorecard at all.

    The data migration installs it on the first ``migrate``; this puts it back in a
    database that has lost it (restored without the row, or emptied by a test flush),
    so "the platform works from the first start" holds whatever happened to the table.
    It never overrides a choice: with any scorecard present (active or not) it does
    nothing and returns ``None``, and a platform whose cards are all inactive declines
    with ``scoring_unavailable``. Two callers at once are settled by the unique version.
    """
    if Scorecard.objects.exists():
        return None
    try:
        with transaction.atomic():
            card = Scorecard.objects.create(
                version=DEFAULT_SCORECARD_VERSION,
                source=ScorecardSource.DEFAULT,
                spec=DEFAULT_SCORECARD_SPEC,
                is_active=True,
                activated_at=timezone.now(),
                notes="Shipped default: judgement-based bins, see docs/scoring.md.",
            )
            for kind in (ScorecardEventKind.CREATED, ScorecardEventKind.ACTIVATED):
                ScorecardEvent.objects.create(
                    scorecard=card, actor=_actor_user(actor), kind=kind, reason="shipped default (reinstalled)"
                )
    except IntegrityError:
        return Scorecard.objects.filter(version=DEFAULT_SCORECARD_VERSION).first()
    logger.warning("scorecard table was empty: shipped default %s installed", DEFAULT_SCORECARD_VERSION)
    return card


def _default_card_id_if_none_exists() -> int | None:
    card = scorecard_install_default(actor=None)
    return card.pk if card is not None and card.is_active else None


# --------------------------------------------------------------------------- admission


def _clean_amount(amount: object) -> Decimal:
    try:
        return parse_money(amount, allow_zero=False)
    except MoneyError:
        message = _("Enter an amount greater than zero with at most two decimal places.")
        raise ValidationFailed(message, fields={"amount": message}) from None


# The admission's reads are hand-written SQL, built once from the models' metadata: the ORM would
# compile the same three-table query with two sub-queries on every call, which cost more than the
# query itself (see docs/scoring.md, "Performance"). Rows come back as model instances.
_CONSUMER_FIELDS = ("id", "phone", "phone_verified", "verified_at", "created_at", "id_number_hash")
_PROFILE_FIELDS = (
    "id",
    "score",
    "credit_limit_amount",
    "open_exposure_amount",
    "spend_cap_amount",
    "is_paused",
    "paused_reason",
)


_FEATURE_JSON_FIELDS = ("open_by_merchant", "scenario_counts")


def _feature_fields() -> tuple[str, ...]:
    return tuple(f.attname for f in ConsumerFeatures._meta.concrete_fields if f.attname != "updated_at")


@functools.cache
def _consumer_sql() -> str:
    def cols(model: type, alias: str, names: tuple[str, ...]) -> str:
        return ", ".join(f'{alias}."{model._meta.get_field(n).column}"' for n in names)

    c, p, f = Consumer._meta, CreditProfile._meta, ConsumerFeatures._meta
    card, block = Scorecard._meta, BlocklistEntry._meta
    # Identifiers come from the models' metadata and constants; the one value is a bound parameter.
    selected = f"{cols(Consumer, 'c', _CONSUMER_FIELDS)}, {cols(CreditProfile, 'p', _PROFILE_FIELDS)}"
    return (
        f"SELECT {selected}, "  # noqa: S608
        f"{cols(ConsumerFeatures, 'f', _feature_fields())}, "
        f'(SELECT s."id" FROM "{card.db_table}" s WHERE s."is_active" LIMIT 1), '
        f'EXISTS (SELECT 1 FROM "{block.db_table}" b WHERE b."lifted_at" IS NULL AND ('
        f'(b."kind" = \'{BlocklistKind.CONSUMER.value}\' AND b."value" = c."id"::text) OR '
        f'(b."kind" = \'{BlocklistKind.PHONE.value}\' AND b."value" = c."phone") OR '
        f"(b.\"kind\" = '{BlocklistKind.ID_HASH.value}' AND c.\"id_number_hash\" <> '' "
        f'AND b."value" = c."id_number_hash"))) '
        f'FROM "{c.db_table}" c '
        f'LEFT JOIN "{p.db_table}" p ON p."consumer_id" = c."id" '
        f'LEFT JOIN "{f.db_table}" f ON f."consumer_id" = c."id" '
        f'WHERE c."id" = %s'
    )


@functools.cache
def _listing_sql() -> str:
    listing, merchant = Listing._meta, Merchant._meta
    return (
        f'SELECT l."id", l."status", l."min_score", l."scenario", l."merchant_id", m."status" '  # noqa: S608
        f'FROM "{listing.db_table}" l JOIN "{merchant.db_table}" m ON m."id" = l."merchant_id" WHERE l."id" = %s'
    )


@dataclass(frozen=True)
class _ConsumerRow:
    consumer: Consumer
    profile: CreditProfile
    features: ConsumerFeatures | None
    card_id: int | None
    blocked: bool


def _load_consumer(consumer: Consumer) -> _ConsumerRow:
    """The consumer, profile and feature row as committed now, whether blocked, and the active card's id."""
    consumer_id = getattr(consumer, "pk", None)
    row = None
    if isinstance(consumer_id, int):
        with connection.cursor() as cursor:
            cursor.execute(_consumer_sql(), [consumer_id])
            row = cursor.fetchone()
    if row is None:
        message = _("Unknown consumer.")
        raise ValidationFailed(message, code="unknown_consumer", fields={"consumer": message})
    n_c, n_p, feature_names = len(_CONSUMER_FIELDS), len(_PROFILE_FIELDS), _feature_fields()
    fresh = Consumer(**dict(zip(_CONSUMER_FIELDS, row[:n_c], strict=True)))
    profile_values = dict(zip(_PROFILE_FIELDS, row[n_c : n_c + n_p], strict=True))
    if profile_values["id"] is None:
        message = _("This consumer has no credit profile.")
        raise ValidationFailed(message, code="unknown_consumer", fields={"consumer": message})
    profile = CreditProfile(consumer_id=fresh.pk, **profile_values)
    feature_values = dict(zip(feature_names, row[n_c + n_p : n_c + n_p + len(feature_names)], strict=True))
    for name in _FEATURE_JSON_FIELDS:
        # Django's backend hands jsonb over as text; the field decodes it, as the ORM would.
        field = ConsumerFeatures._meta.get_field(name)
        feature_values[name] = field.from_db_value(feature_values[name], None, connection)
    features = ConsumerFeatures(**feature_values) if feature_values["consumer_id"] is not None else None
    card_id, blocked = row[-2], row[-1]
    return _ConsumerRow(consumer=fresh, profile=profile, features=features, card_id=card_id, blocked=bool(blocked))


@dataclass(frozen=True)
class _ListingRow:
    pk: int
    status: str
    min_score: int
    scenario: str
    merchant_id: int
    merchant_status: str


def _load_listing(listing: Listing, *, fresh: bool = False) -> _ListingRow:
    listing_id = getattr(listing, "pk", None)
    row = None
    if fresh:  # the caller read the listing and its merchant in this transaction
        merchant = listing.merchant
        row = (listing_id, listing.status, listing.min_score, listing.scenario, merchant.pk, merchant.status)
    elif isinstance(listing_id, int):
        with connection.cursor() as cursor:
            cursor.execute(_listing_sql(), [listing_id])
            row = cursor.fetchone()
    if row is None:
        message = _("Unknown listing.")
        raise ValidationFailed(message, code="unknown_listing", fields={"listing": message})
    fresh = _ListingRow(*row)
    if fresh.status != ListingStatus.ACTIVE:
        raise NotAllowed(_("This service is not available right now."), code=ReasonCode.LISTING_UNAVAILABLE.value)
    return fresh


@dataclass(frozen=True)
class _Counters:
    open_orders: int
    open_at_merchant: int
    last_hour: int
    last_day: int


def _counters(features: ConsumerFeatures | None, merchant_id: int, now: datetime) -> _Counters:
    if features is None:
        return _Counters(0, 0, 0, 0)
    times = features.recent_order_times or []
    return _Counters(
        open_orders=features.open_orders,
        open_at_merchant=int((features.open_by_merchant or {}).get(str(merchant_id), 0)),
        last_hour=sum(1 for t in times if now - t < VELOCITY_HOUR),
        last_day=sum(1 for t in times if now - t < VELOCITY_DAY),
    )


def _policy_reasons(
    *,
    policy: AdmissionPolicy,
    listing: _ListingRow,
    profile: CreditProfile,
    blocked: bool,
    has_card: bool,
    amount: Decimal,
    channel: str,
    counters: _Counters,
) -> list[ReasonCode]:
    """The rules that fail, in the policy's order (``scoring.policy``)."""
    failed: list[ReasonCode] = []
    if listing.merchant_status != MerchantStatus.APPROVED:
        failed.append(ReasonCode.MERCHANT_UNAVAILABLE)
    if profile.is_paused:
        failed.append(ReasonCode.ACCOUNT_PAUSED)
    if blocked:
        failed.append(ReasonCode.BLOCKLISTED)
    if not has_card:
        failed.append(ReasonCode.SCORING_UNAVAILABLE)
    if profile.score < max(listing.min_score, policy.floor_for(listing.scenario)):
        failed.append(ReasonCode.SCORE_BELOW_MINIMUM)
    if profile.credit_limit_amount - profile.open_exposure_amount < amount:
        failed.append(ReasonCode.INSUFFICIENT_LIMIT)
    if profile.spend_cap_amount is not None and profile.spend_cap_amount - profile.open_exposure_amount < amount:
        failed.append(ReasonCode.SPEND_CAP_REACHED)
    if channel in ORDER_CHANNELS:
        if counters.open_orders >= policy.max_open_orders:
            failed.append(ReasonCode.TOO_MANY_OPEN_ORDERS)
        if counters.open_at_merchant >= policy.max_open_orders_per_merchant:
            failed.append(ReasonCode.TOO_MANY_OPEN_ORDERS_AT_MERCHANT)
        if counters.last_hour >= policy.max_orders_per_hour:
            failed.append(ReasonCode.TOO_MANY_ORDERS_THIS_HOUR)
        if counters.last_day >= policy.max_orders_per_day:
            failed.append(ReasonCode.TOO_MANY_ORDERS_TODAY)
    return failed


def admission_assess(
    *, consumer: Consumer, listing: Listing, amount: Decimal, channel: str, listing_is_fresh: bool = False
) -> AdmissionDecision:
    """Assess whether ``consumer`` may open an order of up to ``amount`` on ``listing``; store the decision.

    Returns the stored :class:`AdmissionDecision` (``.approved``, ``.outcome``,
    ``.reasons`` as ``{code, message, message_zh, hint, hint_zh}``, ``.score``,
    ``.sub_scores``, ``.score_reasons``). Bad input stores nothing and raises: an
    unknown consumer or listing, or an amount that is not a positive decimal with at
    most two places (:class:`ValidationFailed`); an unknown channel
    (:class:`ValidationFailed`); a listing that is not on sale (:class:`NotAllowed`,
    code ``listing_unavailable``). With no active scorecard the decision is a decline
    with ``scoring_unavailable``.

    Reads without locks: the decision says whether the consumer is eligible; the
    credit hold that follows (``credit_hold_acquire``, a conditional UPDATE) is what
    keeps the limit and the spend cap safe when two orders arrive at once.

    The listing and its merchant's status are read as committed now, unless the caller
    has just read both in its transaction and says so (``listing_is_fresh``, order
    creation): a second unlocked read a moment later would tell nothing more.
    """
    started = time.perf_counter()
    amount = _clean_amount(amount)
    if channel not in DecisionChannel.values:
        message = _("Unknown channel.")
        raise ValidationFailed(message, fields={"channel": message})
    listing_row = _load_listing(listing, fresh=listing_is_fresh)
    loaded = _load_consumer(consumer)
    profile, features = loaded.profile, loaded.features
    now = timezone.now()
    policy = active_policy()
    card_id = loaded.card_id if loaded.card_id is not None else _default_card_id_if_none_exists()
    card = compiled_card(card_id) if card_id is not None else None
    variables = derive_variables(consumer=loaded.consumer, profile=profile, features=features, now=now)
    result = card.evaluate(variables) if card is not None else None
    counters = _counters(features, listing_row.merchant_id, now)
    failed = _policy_reasons(
        policy=policy,
        listing=listing_row,
        profile=profile,
        blocked=loaded.blocked,
        has_card=card is not None,
        amount=amount,
        channel=channel,
        counters=counters,
    )
    floor = policy.floor_for(listing_row.scenario)
    snapshot: dict[str, Any] = {
        "score": profile.score,
        "score_threshold": max(listing_row.min_score, floor),
        "listing_min_score": listing_row.min_score,
        "scenario_floor": floor,
        "scorecard_score": result.score if result else None,
        "credit_limit_amount": str(profile.credit_limit_amount),
        "spend_cap_amount": None if profile.spend_cap_amount is None else str(profile.spend_cap_amount),
        "open_exposure_amount": str(profile.open_exposure_amount),
        "available_amount": str(profile.credit_limit_amount - profile.open_exposure_amount),
        "is_paused": profile.is_paused,
        "blocklisted": loaded.blocked,
        "merchant_status": listing_row.merchant_status,
        "listing_status": listing_row.status,
        "scenario": listing_row.scenario,
        "open_orders": counters.open_orders,
        "open_orders_at_merchant": counters.open_at_merchant,
        "orders_last_hour": counters.last_hour,
        "orders_last_day": counters.last_day,
        "limit_policy_version": limits.LIMIT_POLICY_VERSION,
        "features": variables,
    }
    decision = AdmissionDecision(
        consumer_id=loaded.consumer.pk,
        listing_id=listing_row.pk,
        amount=amount,
        channel=channel,
        outcome=DecisionOutcome.DECLINED if failed else DecisionOutcome.APPROVED,
        reasons=[policy_reason(code) for code in failed],
        score=profile.score,
        sub_scores=result.sub_scores if result else {},
        score_reasons=[score_reason(r) for r in result.reasons] if result else [],
        snapshot=snapshot,
        scorecard_id=card_id,
        scorecard_version=card.version if card else "",
        policy_version=policy.version,
    )
    decision.latency_ms = Decimal(f"{(time.perf_counter() - started) * 1000:.3f}")
    sql_rows.insert(decision)  # save(force_insert=True), the INSERT built once (every order is assessed)
    return decision


# --------------------------------------------------------------------------- features


def _lock_features(consumer_id: int) -> ConsumerFeatures:
    """The consumer's feature row under a row lock, created empty the first time."""
    ConsumerFeatures.objects.bulk_create([ConsumerFeatures(consumer_id=consumer_id)], ignore_conflicts=True)
    return ConsumerFeatures.objects.select_for_update().get(pk=consumer_id)


def _close_open_order(features: ConsumerFeatures, merchant_id: int) -> None:
    # Clamped at zero: an order placed before the features existed (or arranged by hand)
    # must not drive a counter negative.
    features.open_orders = max(features.open_orders - 1, 0)
    by_merchant = dict(features.open_by_merchant or {})
    key = str(merchant_id)
    remaining = max(int(by_merchant.get(key, 0)) - 1, 0)
    if remaining:
        by_merchant[key] = remaining
    else:
        by_merchant.pop(key, None)
    features.open_by_merchant = by_merchant


@functools.cache
def _order_opened_sql() -> str:
    """The feature row's upsert when an order opens: a new row, or the counters of the existing one moved."""
    meta = ConsumerFeatures._meta
    col = {field.attname: f'"{field.column}"' for field in meta.concrete_fields}
    names = ", ".join(col.values())
    values = ", ".join(["%s"] * len(col))

    def bump(name: str) -> str:
        # {key: n} → {key: n + 1}; a missing key counts from 0, a JSON null reads as {} (as in Python).
        current = f"COALESCE(NULLIF(f.{col[name]}, 'null'::jsonb), '{{}}'::jsonb)"
        return (
            f"{col[name]} = {current} || jsonb_build_object(%s::text, COALESCE(({current} ->> %s::text)::int, 0) + 1)"
        )

    return (
        f'INSERT INTO "{meta.db_table}" AS f ({names}) VALUES ({values}) '  # noqa: S608
        f"ON CONFLICT ({col['consumer_id']}) DO UPDATE SET "
        f"{col['orders_total']} = f.{col['orders_total']} + 1, "
        f"{col['first_order_at']} = COALESCE(f.{col['first_order_at']}, EXCLUDED.{col['first_order_at']}), "
        f"{col['last_order_at']} = EXCLUDED.{col['last_order_at']}, "
        f"{col['open_orders']} = f.{col['open_orders']} + 1, "
        f"{bump('open_by_merchant')}, "
        # The last 24 hours' opening times, in their order, then this one.
        f"{col['recent_order_times']} = ARRAY(SELECT r.t FROM unnest(f.{col['recent_order_times']}) "
        f"WITH ORDINALITY AS r(t, i) WHERE r.t > %s ORDER BY r.i) || EXCLUDED.{col['recent_order_times']}, "
        f"{bump('scenario_counts')}, "
        f"{col['updated_at']} = EXCLUDED.{col['updated_at']} "
        f"RETURNING {names}"
    )


def features_on_order_opened(
    *, actor: Actor = None, consumer: Consumer, merchant_id: int, scenario: str, opened_at: datetime | None = None
) -> ConsumerFeatures:
    """An order now holds the consumer's credit: count it as open, and in tenure, frequency and velocity.

    Called by ``bnpl`` in the transaction that activates the order (after the credit
    hold succeeded), so the counters commit or roll back with it.

    One statement (every order the API admits runs it): ``INSERT … ON CONFLICT DO UPDATE``
    creates the row the first time and otherwise moves the counters on the row, which it
    locks like the ``SELECT … FOR UPDATE`` and ``UPDATE`` it replaces, so concurrent openings
    for one consumer each count.
    """
    now = opened_at or timezone.now()
    merchant_key = str(merchant_id)
    new = ConsumerFeatures(
        consumer_id=consumer.pk,
        orders_total=1,
        first_order_at=now,
        last_order_at=now,
        open_orders=1,
        open_by_merchant={merchant_key: 1},
        recent_order_times=[now],
        scenario_counts={scenario: 1},
        updated_at=timezone.now(),
    )
    fields = ConsumerFeatures._meta.concrete_fields
    params = [field.get_db_prep_save(getattr(new, field.attname), connection) for field in fields]
    params += [merchant_key, merchant_key, now - VELOCITY_DAY, scenario, scenario]
    with connection.cursor() as cursor:
        cursor.execute(_order_opened_sql(), params)
        row = cursor.fetchone()
    values = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(fields, row, strict=True)
    ]
    return ConsumerFeatures.from_db(connection.alias, [field.attname for field in fields], values)


def features_on_promise_record(
    *, actor: Actor = None, record: PromiseRecord, days_past_due: int | None = None
) -> ConsumerFeatures:
    """A promise record was written (or recovered): update the features, then the score and the limit.

    ``bnpl`` calls it right after ``consumers.services.promise_record_add`` or
    ``promise_record_recover``, in the same transaction. By outcome:

    - fulfilled: a kept promise (and the merchant joins the kept-with list); the order
      is no longer open. Every ``GROWTH_EVERY_KEPT`` kept promises the limit grows one
      step of the band (``credit_limit_grow``), if nothing is in arrears and the
      on-time rate is at least 90 %;
    - cancelled: counted; the order is no longer open;
    - breached: counted, with its time (the order stays open: it is overdue); the
      limit is cut (``credit_limit_cut_after_breach``);
    - recovered: the breach was paid late; the order is no longer open.

    ``days_past_due`` (when the caller knows it) feeds the worst-DPD variable. The
    score is then re-evaluated with the active scorecard and, if it moved, written
    with ``credit_score_set`` (a ``score_changed`` event naming the record).
    """
    with transaction.atomic():
        features = _lock_features(record.consumer_id)
        _apply_promise_record(features, record, days_past_due)
        features.save()

        consumer = record.consumer
        why = _promise_reason(record)
        score_refresh(actor=actor, consumer=consumer, reason=why, features=features)
        _limit_after_promise_record(actor=actor, consumer=consumer, features=features, record=record, why=why)
    return features


def features_on_promises_kept(*, actor: Actor = None, records: Sequence[PromiseRecord]) -> None:
    """Many fulfilled promise records at once (a charge-run chunk): the same effects as one call each.

    The charge run records hundreds of payments per transaction; calling
    :func:`features_on_promise_record` for each would lock, read and write one feature row
    and re-score one consumer per order, a dozen statements each. Here the feature rows are
    created if missing, then read with the consumer and profile columns the scorecard needs
    and locked (by id, the order every writer uses) in one query, as plain values rather than
    three model instances per consumer; updated and written in one statement; and the score and
    limit are written only for consumers whose score moved or who earned a limit step — the same
    calls, with the same reasons, as the one-record path. A consumer with several records in the
    chunk gets one score write, from the final features, where the one-record path would write
    the intermediate scores too. A test holds the two paths to the same features, scores and limits.
    """
    if not records:
        return
    if any(record.outcome != PromiseOutcome.FULFILLED for record in records):
        raise ValueError("features_on_promises_kept takes fulfilled records only")
    with transaction.atomic():
        consumer_ids = sorted({record.consumer_id for record in records})
        insert_keys_ignoring_conflicts(ConsumerFeatures, consumer_ids, key_field="consumer")
        with connection.cursor() as cursor:
            cursor.execute(_KEPT_FEATURES_SQL, [int_array(consumer_ids)])
            rows = {row[0]: _ScoringRow.from_row(row) for row in cursor.fetchall()}
        # Growth is checked after each record, as the one-record path does: a consumer whose count
        # crosses a multiple of GROWTH_EVERY_KEPT inside the chunk still earns the step.
        growth: dict[int, PromiseRecord] = {}
        for record in sorted(records, key=lambda r: (r.consumer_id, r.recorded_at, r.order_id)):
            features = rows[record.consumer_id]
            _apply_promise_record(features, record, None)  # type: ignore[arg-type]  # the same attributes
            if _growth_due(features):  # type: ignore[arg-type]
                growth[record.consumer_id] = record
        _write_kept_counts([rows[pk] for pk in consumer_ids])
        last_record = {record.consumer_id: record for record in records}
        active = active_compiled_card()
        if active is not None:
            card_row, card = active
            now = timezone.now()
            changes = []
            for pk in consumer_ids:
                row = rows[pk]
                if row.score is None:
                    raise CreditProfile.DoesNotExist(f"consumer {pk} has no credit profile")
                variables = derive_variables(consumer=row, profile=row, features=row, now=now)  # type: ignore[arg-type]
                score = card.score(variables)
                if score != row.score:
                    why = _promise_reason(last_record[pk])
                    changes.append((pk, score, f"scorecard {card_row.version}: {why}"[:MAX_REASON]))
            credit_scores_set_many(actor=actor, changes=changes)
        if growth:
            consumers = Consumer.objects.in_bulk(sorted(growth))  # rare: every GROWTH_EVERY_KEPT-th kept promise
            for pk, record in sorted(growth.items()):
                credit_limit_grow(
                    actor=actor,
                    consumer=consumers[pk],
                    reason=f"{rows[pk].fulfilled_count} kept promises ({_promise_reason(record)})",
                )


# The feature row with the consumer and profile columns the scorecard reads, the feature row locked.
_KEPT_FEATURES_SQL = """
SELECT f.consumer_id, f.fulfilled_count, f.cancelled_count, f.breached_count, f.recovered_count, f.worst_dpd,
    f.last_breach_at, f.orders_total, f.first_order_at, f.last_order_at, f.open_orders, f.open_by_merchant,
    f.scenario_counts, f.kept_merchant_ids, f.charge_failures, f.last_charge_failure_at, f.disputes_count,
    c.verified_at, c.phone_verified, c.created_at, p.score, p.credit_limit_amount, p.open_exposure_amount
FROM scoring_consumerfeatures f
JOIN consumers_consumer c ON c.id = f.consumer_id
LEFT JOIN consumers_creditprofile p ON p.consumer_id = f.consumer_id
WHERE f.consumer_id = ANY(%s::bigint[])
ORDER BY f.consumer_id
FOR UPDATE OF f
"""


@dataclass(slots=True)
class _ScoringRow:
    """One consumer's feature row, with the consumer and profile columns ``derive_variables`` reads.

    It has the attribute names of ``ConsumerFeatures``, ``Consumer`` and ``CreditProfile`` that
    ``_apply_promise_record``, ``_growth_due`` and ``derive_variables`` use, so the chunk path runs the
    very code of the one-record path on plain values.
    """

    consumer_id: int
    fulfilled_count: int
    cancelled_count: int
    breached_count: int
    recovered_count: int
    worst_dpd: int
    last_breach_at: datetime | None
    orders_total: int
    first_order_at: datetime | None
    last_order_at: datetime | None
    open_orders: int
    open_by_merchant: dict[str, int]
    scenario_counts: dict[str, int]
    kept_merchant_ids: list[int]
    charge_failures: int
    last_charge_failure_at: datetime | None
    disputes_count: int
    verified_at: datetime | None
    phone_verified: bool
    created_at: datetime
    score: int | None
    credit_limit_amount: Decimal | None
    open_exposure_amount: Decimal | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> _ScoringRow:
        # jsonb arrives as text (Django's loader leaves decoding to JSONField, as here).
        return cls(*row[:11], json.loads(row[11]), json.loads(row[12]), *row[13:])

    @property
    def pk(self) -> int:
        return self.consumer_id


def _write_kept_counts(rows: Sequence[ConsumerFeatures | _ScoringRow]) -> None:
    """Write the four columns a kept promise changes for many feature rows in one statement.

    ``bulk_update`` would build a CASE per column and row, which costs more to compile than
    to run at a chunk's size; arrays through ``unnest`` cost nothing. The merchant-id lists
    travel as JSON because PostgreSQL arrays cannot nest ragged lists.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE scoring_consumerfeatures f SET fulfilled_count = v.fulfilled, open_orders = v.open, "
            "open_by_merchant = v.by_merchant, updated_at = now(), "
            "kept_merchant_ids = ARRAY(SELECT jsonb_array_elements_text(v.kept)::bigint) "
            "FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::jsonb[], %s::jsonb[]) "
            "AS v(id, fulfilled, open, by_merchant, kept) WHERE f.consumer_id = v.id",
            [
                int_array(row.pk for row in rows),
                int_array(row.fulfilled_count for row in rows),
                int_array(row.open_orders for row in rows),
                text_array(json.dumps(row.open_by_merchant or {}) for row in rows),
                text_array(json.dumps(list(row.kept_merchant_ids or [])) for row in rows),
            ],
        )


def _promise_reason(record: PromiseRecord) -> str:
    return f"promise record of order #{record.order_id} ({record.outcome})"


def _apply_promise_record(features: ConsumerFeatures, record: PromiseRecord, days_past_due: int | None) -> None:
    """Count one promise record into the consumer's features (in memory; the caller saves)."""
    outcome = record.outcome
    if outcome == PromiseOutcome.FULFILLED:
        features.fulfilled_count += 1
        if record.merchant_id not in (features.kept_merchant_ids or []):
            features.kept_merchant_ids = [*(features.kept_merchant_ids or []), record.merchant_id]
        _close_open_order(features, record.merchant_id)
    elif outcome == PromiseOutcome.CANCELLED:
        features.cancelled_count += 1
        _close_open_order(features, record.merchant_id)
    elif outcome == PromiseOutcome.BREACHED:
        features.breached_count += 1
        features.last_breach_at = record.recorded_at
    elif outcome == PromiseOutcome.RECOVERED:
        features.recovered_count += 1
        _close_open_order(features, record.merchant_id)
    if days_past_due is not None:
        features.worst_dpd = max(features.worst_dpd, max(int(days_past_due), 0))


def _limit_after_promise_record(
    *, actor: Actor, consumer: Consumer, features: ConsumerFeatures, record: PromiseRecord, why: str
) -> None:
    if record.outcome == PromiseOutcome.FULFILLED and _growth_due(features):
        credit_limit_grow(actor=actor, consumer=consumer, reason=f"{features.fulfilled_count} kept promises ({why})")
    elif record.outcome == PromiseOutcome.BREACHED:
        credit_limit_cut_after_breach(actor=actor, consumer=consumer, reason=why)


def _growth_due(features: ConsumerFeatures) -> bool:
    kept = features.fulfilled_count
    if kept == 0 or kept % limits.GROWTH_EVERY_KEPT != 0:
        return False
    if features.breached_count > features.recovered_count:
        return False  # something is still overdue
    return kept / (kept + features.breached_count) >= GROWTH_MIN_ON_TIME_RATE


def features_on_charge_attempt(*, actor: Actor = None, consumer: Consumer, succeeded: bool) -> ConsumerFeatures:
    """A charge attempt on the consumer's funding source finished (the funding-source health variable).

    A failure counts (failures older than 90 days stop counting); a success after
    failures clears the count, since the source is healthy again.
    """
    with transaction.atomic():
        features = _lock_features(consumer.pk)
        if succeeded:
            features.charge_failures = 0
        else:
            features.charge_failures += 1
            features.last_charge_failure_at = timezone.now()
        features.save()
    return features


def features_on_dispute(*, actor: Actor = None, consumer: Consumer) -> ConsumerFeatures:
    """The consumer opened a dispute on an order (a behaviour variable)."""
    with transaction.atomic():
        features = _lock_features(consumer.pk)
        features.disputes_count += 1
        features.save()
    return features


# --------------------------------------------------------------------------- score


def score_refresh(
    *, actor: Actor, consumer: Consumer, reason: str, features: ConsumerFeatures | None = None
) -> CreditProfile | None:
    """Re-score the consumer with the active scorecard; write the score if it moved.

    Returns the updated profile, or ``None`` when nothing changed (no active card, or
    the same score). ``features`` may be passed by a caller that already holds the
    row; otherwise it is read.
    """
    active = active_compiled_card()
    if active is None:
        return None
    card_row, card = active
    fresh = Consumer.objects.select_related("credit_profile").get(pk=consumer.pk)
    if features is None:
        features = ConsumerFeatures.objects.filter(pk=consumer.pk).first()
    variables = derive_variables(consumer=fresh, profile=fresh.credit_profile, features=features, now=timezone.now())
    score = card.evaluate(variables).score
    if score == fresh.credit_profile.score:
        return None
    return credit_score_set(
        actor=actor, consumer=fresh, score=score, reason=f"scorecard {card_row.version}: {reason}"[:MAX_REASON]
    )


# --------------------------------------------------------------------------- scorecards


def scorecard_create(
    *,
    actor: Actor,
    version: str,
    spec: dict[str, Any],
    source: str = ScorecardSource.TRAINED,
    pdo: int = 50,
    anchor_score: int = 600,
    anchor_odds: int = 19,
    metrics: dict[str, Any] | None = None,
    reference_distribution: dict[str, float] | None = None,
    notes: str = "",
) -> Scorecard:
    """Save a new scorecard version, inactive (staff activate it in the admin after review).

    The spec is compiled first, so a card that could not be evaluated is refused
    (:class:`ValidationFailed`) rather than stored; so is a version name already used.
    """
    version = (version or "").strip()
    if not version or len(version) > 40:
        message = _("Give the scorecard a version name of 1 to 40 characters.")
        raise ValidationFailed(message, fields={"version": message})
    try:
        compile_spec(spec, version=version)
    except ScorecardSpecError as exc:
        raise ValidationFailed(_("The scorecard cannot be evaluated: %(error)s") % {"error": exc}) from None
    if source not in ScorecardSource.values:
        raise ValidationFailed(_("Unknown scorecard source."), fields={"source": _("Unknown scorecard source.")})
    try:
        with transaction.atomic():
            card = Scorecard.objects.create(
                version=version,
                source=source,
                spec=spec,
                pdo=pdo,
                anchor_score=anchor_score,
                anchor_odds=anchor_odds,
                metrics=dict(metrics or {}),
                reference_distribution=dict(reference_distribution or {}),
                notes=notes,
                created_by=_actor_user(actor),
            )
            ScorecardEvent.objects.create(
                scorecard=card, actor=_actor_user(actor), kind=ScorecardEventKind.CREATED, reason=notes[:MAX_REASON]
            )
    except IntegrityError:
        message = _("Scorecard version %(version)s already exists.") % {"version": version}
        raise ValidationFailed(message, code="duplicate_version", fields={"version": message}) from None
    logger.info("scorecard created version=%s source=%s", version, source)
    return card


@transaction.atomic(durable=True)
def scorecard_activate(*, actor: Actor, scorecard: Scorecard, reason: str) -> Scorecard:
    """Make ``scorecard`` the one new decisions use; the previous active card is deactivated.

    A written reason is required (the activation is audited: a ``deactivated`` event
    for the old card and an ``activated`` event for the new one, naming the actor).
    Activating the card that is already active raises :class:`InvalidTransition`.
    Published scores move to the new card as ``refresh_scores`` runs.
    """
    reason = (reason or "").strip()
    if not reason:
        message = _("Give a reason for activating this scorecard.")
        raise ValidationFailed(message, fields={"reason": message})
    # Lock every card involved, in primary-key order, so two activations at once serialise.
    locked = list(Scorecard.objects.select_for_update().filter(Q(pk=scorecard.pk) | Q(is_active=True)).order_by("pk"))
    target = next(card for card in locked if card.pk == scorecard.pk)
    if target.is_active:
        raise InvalidTransition(
            _("scorecard %(version)s is already active") % {"version": target.version}, code="already_active"
        )
    now = timezone.now()
    for card in locked:
        if card.is_active:
            Scorecard.objects.filter(pk=card.pk).update(is_active=False)
            ScorecardEvent.objects.create(
                scorecard=card, actor=_actor_user(actor), kind=ScorecardEventKind.DEACTIVATED, reason=reason
            )
    Scorecard.objects.filter(pk=target.pk).update(is_active=True, activated_at=now)
    ScorecardEvent.objects.create(
        scorecard=target, actor=_actor_user(actor), kind=ScorecardEventKind.ACTIVATED, reason=reason
    )
    target.refresh_from_db()
    logger.info("scorecard activated version=%s actor=%s", target.version, getattr(actor, "pk", None))
    return target


# --------------------------------------------------------------------------- blocklist


def _blocklist_value(kind: str, value: str | None, consumer: Consumer | None) -> str:
    if kind == BlocklistKind.CONSUMER:
        if consumer is None:
            raise ValidationFailed(_("Choose the consumer to block."), fields={"consumer": _("Required.")})
        return str(consumer.pk)
    if kind == BlocklistKind.PHONE:
        raw = value or (consumer.phone if consumer else "")
        phone = normalize_cn_mobile(raw or "")
        if len(phone) != 11 or not phone.isdigit():
            raise ValidationFailed(
                _("Enter a valid mobile number."), fields={"value": _("Enter a valid mobile number.")}
            )
        return phone
    if kind == BlocklistKind.ID_HASH:
        hashed = value or (consumer.id_number_hash if consumer else "")
        if len(hashed or "") != 64:
            message = _("The consumer has no verified resident ID to block.")
            raise ValidationFailed(message, fields={"value": message})
        return hashed
    raise ValidationFailed(_("Unknown blocklist kind."), fields={"kind": _("Unknown blocklist kind.")})


@transaction.atomic(durable=True)
def blocklist_add(
    *, actor: Actor, kind: str, reason: str, consumer: Consumer | None = None, value: str | None = None
) -> BlocklistEntry:
    """Block a consumer account, a phone number or a resident ID (by its keyed hash) from pay-later.

    ``value`` may be omitted when ``consumer`` is given (their id, phone or ID hash is
    used). A reason is required. The same thing blocked twice is refused
    (``already_blocked``). Admission declines a matching consumer with ``blocklisted``.
    """
    reason = (reason or "").strip()
    if not reason:
        message = _("Give a reason for the block.")
        raise ValidationFailed(message, fields={"reason": message})
    matched = _blocklist_value(kind, value, consumer)
    if BlocklistEntry.objects.filter(kind=kind, value=matched, lifted_at__isnull=True).exists():
        raise ValidationFailed(_("This is already on the blocklist."), code="already_blocked")
    try:
        with transaction.atomic():
            entry = BlocklistEntry.objects.create(
                kind=kind, value=matched, consumer=consumer, reason=reason, created_by=_actor_user(actor)
            )
    except IntegrityError:
        raise ValidationFailed(_("This is already on the blocklist."), code="already_blocked") from None
    logger.info("blocklist add kind=%s entry=%s actor=%s", kind, entry.pk, getattr(actor, "pk", None))
    return entry


@transaction.atomic(durable=True)
def blocklist_lift(*, actor: Actor, entry: BlocklistEntry, reason: str) -> BlocklistEntry:
    """Lift a blocklist entry (kept for the record), with a reason; lifting twice raises :class:`InvalidTransition`."""
    reason = (reason or "").strip()
    if not reason:
        message = _("Give a reason for lifting the block.")
        raise ValidationFailed(message, fields={"reason": message})
    locked = BlocklistEntry.objects.select_for_update().get(pk=entry.pk)
    if locked.lifted_at is not None:
        raise InvalidTransition(_("This block was already lifted."), code="already_lifted")
    locked.lifted_at = timezone.now()
    locked.lifted_by = _actor_user(actor)
    locked.lift_reason = reason
    locked.save(update_fields=["lifted_at", "lifted_by", "lift_reason"])
    return locked
