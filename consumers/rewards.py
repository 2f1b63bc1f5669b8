"""守约激励: writes and reads of the rewards programme (points, levels, perks). docs/incentives.md.

Every posting locks the consumer's :class:`RewardAccount` row first (``SELECT … FOR
UPDATE``), so concurrent awards, spends, breach costs and expiry for one consumer are
serialised; the balance then moves by one conditional UPDATE (``balance + x >= 0``)
in the same transaction as the append-only :class:`PointsEntry`, and a check
constraint on the balance refuses anything that slipped past both. The balance is
always the sum of the entries (``points_balance_check`` proves it).

The promise hooks (``rewards_on_promise_*``) are called by ``bnpl`` in the same
transaction as the promise record they react to; they use a plain
``transaction.atomic`` (a savepoint there). Lock order: order → credit profile →
rewards account; the limit perk locks the profile through ``credit_limit_set`` after
the account, which is safe because no path locks the account before an order.

Points expire FIFO: debits consume the oldest credits first, so at any moment the
points that have expired are ``max(0, credits expiring by now − all debits so far)``;
the expiry job posts the difference from what it already posted. A spend runs the
account's expiry first, so expired points can never be spent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from bnpl.bulk_sql import copy_tuples, insert_keys_ignoring_conflicts
from bnpl.exceptions import NotAllowed, ValidationFailed
from bnpl.sql_arrays import int_array, text_array

from . import limits
from . import rewards_policy as policy
from .choices import LimitChangeReason, PerkKind, PointsKind
from .models import Consumer, CreditProfile, LevelChange, PerkUse, PointsEntry, RewardAccount, RewardMarker
from .services import credit_limit_set

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    Actor = AbstractBaseUser | None

logger = logging.getLogger(__name__)

MAX_REASON = 200


@dataclass(frozen=True)
class RewardOutcome:
    """What a promise hook did: points moved and the level before and after."""

    points: int
    level_before: str
    level_after: str

    @property
    def promoted(self) -> bool:
        return policy.LEVEL_RANK[self.level_after] > policy.LEVEL_RANK[self.level_before]

    @property
    def demoted(self) -> bool:
        return policy.LEVEL_RANK[self.level_after] < policy.LEVEL_RANK[self.level_before]


# --------------------------------------------------------------------------- account and posting


def reward_account_lock(consumer_id: int) -> RewardAccount:
    """The consumer's rewards account, created on first use, re-read under a row lock.

    Created with ``INSERT … ON CONFLICT DO NOTHING`` so two first postings at once both
    end up locking the one row instead of one failing on the unique consumer.
    """
    RewardAccount.objects.bulk_create([RewardAccount(consumer_id=consumer_id)], ignore_conflicts=True)
    return RewardAccount.objects.select_for_update().get(consumer_id=consumer_id)


def _post(
    account: RewardAccount,
    *,
    kind: str,
    points: int,
    key: str,
    reason: str = "",
    order_id: int | None = None,
    now: datetime,
) -> PointsEntry | None:
    """Post one entry on a locked account; None (nothing written) when ``key`` was posted before.

    A debit larger than the balance raises ``NotAllowed`` (``insufficient_points``)
    and writes nothing.
    """
    if points == 0:
        return None
    if PointsEntry.objects.filter(key=key).exists():
        return None
    moved = RewardAccount.objects.filter(pk=account.pk, points_balance__gte=-points).update(
        points_balance=F("points_balance") + points, updated_at=now
    )
    if moved != 1:
        raise NotAllowed(_("Not enough points."), code="insufficient_points")
    account.points_balance += points
    return PointsEntry.objects.create(
        account=account,
        kind=kind,
        points=points,
        key=key,
        reason=reason[:MAX_REASON],
        order_id=order_id,
        expires_at=policy.expiry_for(now) if points > 0 else None,
        created_at=now,
    )


def _set_level(account: RewardAccount, *, now: datetime, reason: str) -> tuple[str, str]:
    """Recompute the level of a locked account from its promise value; write a LevelChange if it moved."""
    before = account.level
    after = policy.level_for(account.promise_value)
    if after != before:
        account.level = after
        LevelChange.objects.create(
            account=account, before=before, after=after, reason=reason[:MAX_REASON], created_at=now
        )
    return before, after


def _limit_perk(*, actor: Actor, consumer_id: int, before: str, after: str, why: str) -> None:
    """A promotion raises the limit by the new levels' steps of the band, never past its ceiling.

    Goes through ``credit_limit_set`` (reason ``reward``), so it is in the limit history. Not
    while the profile is paused (nothing grows while an order is overdue).
    """
    steps = sum(
        p.limit_steps
        for p in policy.LEVELS
        if policy.LEVEL_RANK[before] < policy.LEVEL_RANK[p.level] <= policy.LEVEL_RANK[after]
    )
    profile = (
        CreditProfile.objects.select_for_update(of=("self",)).select_related("consumer").get(consumer_id=consumer_id)
    )
    if steps <= 0 or profile.is_paused:
        return
    amount = profile.credit_limit_amount
    for _step in range(steps):
        amount = limits.grown_limit(amount, profile.score)
    if amount <= profile.credit_limit_amount:
        return
    credit_limit_set(
        actor=actor,
        consumer=profile.consumer,
        amount=amount,
        reason_code=LimitChangeReason.REWARD,
        reason=f"level {after} ({why})"[:MAX_REASON],
    )


# --------------------------------------------------------------------------- promise hooks


@transaction.atomic
def rewards_on_promise_kept(
    *, actor: Actor, consumer_id: int, order_id: int, now: datetime | None = None
) -> RewardOutcome:
    """A promise was kept (the order was paid on time): points, streak bonus, promise value, level, perks.

    Posts ``POINTS_PER_KEPT`` (key ``kept:<order>``) and, from the third kept promise in a
    row, a streak bonus (``streak:<order>``). A promotion is recorded and raises the limit
    (:func:`_limit_perk`). Posting twice for one order changes nothing the second time.
    """
    now = now or timezone.now()
    account = reward_account_lock(consumer_id)
    entry = _post(
        account,
        kind=PointsKind.KEPT,
        points=policy.POINTS_PER_KEPT,
        key=f"kept:{order_id}",
        reason=f"order #{order_id}",
        order_id=order_id,
        now=now,
    )
    if entry is None:
        return RewardOutcome(0, account.level, account.level)
    account.streak += 1
    account.best_streak = max(account.best_streak, account.streak)
    account.promise_value += 1
    points = entry.points
    bonus = policy.streak_bonus(account.streak)
    if bonus:
        _post(
            account,
            kind=PointsKind.STREAK,
            points=bonus,
            key=f"streak:{order_id}",
            reason=f"{account.streak} kept in a row (order #{order_id})",
            order_id=order_id,
            now=now,
        )
        points += bonus
    why = f"kept promise, order #{order_id}"
    before, after = _set_level(account, now=now, reason=why)
    account.save(update_fields=["streak", "best_streak", "promise_value", "level", "updated_at"])
    if policy.LEVEL_RANK[after] > policy.LEVEL_RANK[before]:
        _limit_perk(actor=actor, consumer_id=consumer_id, before=before, after=after, why=why)
    logger.info("rewards kept consumer=%s order=%s points=%s level=%s→%s", consumer_id, order_id, points, before, after)
    return RewardOutcome(points, before, after)


@transaction.atomic
def rewards_on_promises_kept_many(
    *, actor: Actor, kept: list[tuple[int, int]], now: datetime | None = None
) -> list[tuple[int, str]]:
    """Many kept promises at once (the bulk charge run): ``kept`` is ``(consumer_id, order_id)`` pairs.

    The same outcome as :func:`rewards_on_promise_kept` for each pair in order, in a handful of
    statements for the whole batch: accounts created and locked in consumer order, entries and level
    changes inserted in bulk, accounts updated in one statement. Only credits are posted, so the
    locked balances cannot go negative. Returns the ``(consumer_id, new level)`` of each promotion
    (whose limit perk has been applied).
    """
    now = now or timezone.now()
    if not kept:
        return []
    consumer_ids = sorted({consumer_id for consumer_id, _order in kept})
    insert_keys_ignoring_conflicts(RewardAccount, consumer_ids, key_field="consumer")
    with connection.cursor() as cursor:
        # Plain values, not model instances: a charge-run chunk holds hundreds of accounts (docs/charging.md).
        cursor.execute(
            "SELECT consumer_id, id, points_balance, streak, best_streak, promise_value, level "
            "FROM consumers_rewardaccount WHERE consumer_id = ANY(%s::bigint[]) ORDER BY consumer_id FOR UPDATE",
            [int_array(consumer_ids)],
        )
        accounts = {row[0]: _KeptAccount(*row) for row in cursor.fetchall()}
        cursor.execute(
            "SELECT key FROM consumers_pointsentry WHERE key = ANY(%s::text[])",
            [text_array(f"kept:{o}" for _c, o in kept)],
        )
        done = {key for (key,) in cursor.fetchall()}
    expires_at = policy.expiry_for(now)
    entries: list[tuple[object, ...]] = []
    changes: list[tuple[object, ...]] = []
    first_level = {c: a.level for c, a in accounts.items()}
    touched: set[int] = set()
    for consumer_id, order_id in sorted(kept):
        key = f"kept:{order_id}"
        if key in done:
            continue
        done.add(key)
        account = accounts[consumer_id]
        touched.add(consumer_id)
        account.streak += 1
        account.best_streak = max(account.best_streak, account.streak)
        account.promise_value += 1
        bonus = policy.streak_bonus(account.streak)
        # Columns: _ENTRY_COLUMNS.
        entries.append(
            (
                account.pk,
                PointsKind.KEPT.value,
                policy.POINTS_PER_KEPT,
                key,
                f"order #{order_id}",
                order_id,
                expires_at,
                now,
            )
        )
        if bonus:
            reason = f"{account.streak} kept in a row (order #{order_id})"
            entries.append(
                (account.pk, PointsKind.STREAK.value, bonus, f"streak:{order_id}", reason, order_id, expires_at, now)
            )
        account.points_balance += policy.POINTS_PER_KEPT + bonus
        level = policy.level_for(account.promise_value)
        if level != account.level:
            changes.append((account.pk, account.level, level, f"kept promise, order #{order_id}"[:MAX_REASON], now))
            account.level = level
    if not touched:
        return []
    copy_tuples(PointsEntry, _ENTRY_COLUMNS, entries)
    copy_tuples(LevelChange, _LEVEL_CHANGE_COLUMNS, changes)
    changed = [accounts[c] for c in sorted(touched)]
    # One UPDATE … FROM unnest: bulk_update's CASE per column and row costs more to build than to run.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE consumers_rewardaccount a SET points_balance = v.points, streak = v.streak, "
            "best_streak = v.best, promise_value = v.promise, level = v.level, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::int[], %s::int[], %s::text[]) "
            "AS v(id, points, streak, best, promise, level) WHERE a.id = v.id",
            [
                now,
                int_array(a.pk for a in changed),
                int_array(a.points_balance for a in changed),
                int_array(a.streak for a in changed),
                int_array(a.best_streak for a in changed),
                int_array(a.promise_value for a in changed),
                text_array(a.level for a in changed),
            ],
        )
    promoted = []
    for account in changed:
        before = first_level[account.consumer_id]
        if policy.LEVEL_RANK[account.level] > policy.LEVEL_RANK[before]:
            _limit_perk(
                actor=actor, consumer_id=account.consumer_id, before=before, after=account.level, why="kept promises"
            )
            promoted.append((account.consumer_id, account.level))
    return promoted


_ENTRY_COLUMNS = ("account_id", "kind", "points", "key", "reason", "order_id", "expires_at", "created_at")
_LEVEL_CHANGE_COLUMNS = ("account_id", "before", "after", "reason", "created_at")


@dataclass(slots=True)
class _KeptAccount:
    """The columns of a locked rewards account that a kept promise changes (the chunk path's plain values)."""

    consumer_id: int
    pk: int
    points_balance: int
    streak: int
    best_streak: int
    promise_value: int
    level: str


@transaction.atomic
def rewards_on_promise_breached(
    *, actor: Actor, consumer_id: int, order_id: int, now: datetime | None = None
) -> RewardOutcome:
    """A promise was breached (the order went overdue): the streak ends, points and a level are lost.

    Costs ``BREACH_POINTS`` but never more than the balance (key ``breach:<order>``); the
    promise value falls to the floor of the level below, which demotes one level. New
    orders are already paused by the overdue service until the order is paid.

    Points past their date are expired first, so the cost comes out of live points only. Applied
    once per order whatever it cost: a :class:`RewardMarker` ``breach:<order>`` is written even at a
    zero cost, so a replay neither charges nor demotes again.
    """
    now = now or timezone.now()
    account = reward_account_lock(consumer_id)
    key = f"breach:{order_id}"
    if RewardMarker.objects.filter(key=key).exists() or PointsEntry.objects.filter(key=key).exists():
        return RewardOutcome(0, account.level, account.level)
    RewardMarker.objects.create(account=account, key=key, created_at=now)
    _expire_locked(account, now=now)
    cost = min(policy.BREACH_POINTS, account.points_balance)
    _post(
        account, kind=PointsKind.BREACH, points=-cost, key=key, reason=f"order #{order_id}", order_id=order_id, now=now
    )
    account.streak = 0
    account.promise_value = policy.value_after_breach(account.promise_value)
    before, after = _set_level(account, now=now, reason=f"breach, order #{order_id}")
    account.save(update_fields=["streak", "promise_value", "level", "updated_at"])
    logger.info(
        "rewards breach consumer=%s order=%s points=-%s level=%s→%s", consumer_id, order_id, cost, before, after
    )
    return RewardOutcome(-cost, before, after)


# --------------------------------------------------------------------------- awards and spends


def _clean_points(points: object) -> int:
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        message = _("Points must be a whole number greater than zero.")
        raise ValidationFailed(message, fields={"points": message})
    return points


@transaction.atomic
def points_award(
    *, actor: Actor, consumer: Consumer, points: int, kind: str, key: str, reason: str, now: datetime | None = None
) -> PointsEntry | None:
    """Credit ``points`` (a campaign benefit, a staff adjustment); once per ``key`` (None on a replay)."""
    points = _clean_points(points)
    if kind not in (PointsKind.CAMPAIGN, PointsKind.ADJUSTMENT):
        raise ValidationFailed("awards are campaign or adjustment entries", fields={"kind": "not an award kind"})
    now = now or timezone.now()
    account = reward_account_lock(consumer.pk)
    return _post(account, kind=kind, points=points, key=key, reason=reason, now=now)


@transaction.atomic
def points_spend(
    *, actor: Actor, consumer: Consumer, points: int, key: str, reason: str, now: datetime | None = None
) -> PointsEntry | None:
    """Spend ``points`` (for a perk or a coupon); refused with ``insufficient_points`` beyond the balance.

    Expired points are written off first (:func:`points_expire_account`), so they cannot be
    spent. Once per ``key``: a replay returns None and spends nothing.
    """
    points = _clean_points(points)
    now = now or timezone.now()
    account = reward_account_lock(consumer.pk)
    _expire_locked(account, now=now)
    return _post(account, kind=PointsKind.SPEND, points=-points, key=key, reason=reason, now=now)


# --------------------------------------------------------------------------- expiry


def _expire_locked(account: RewardAccount, *, now: datetime) -> int:
    """Post what has expired on a locked account by ``now`` (FIFO); returns the points expired."""
    totals = PointsEntry.objects.filter(account=account).aggregate(
        due=Coalesce(Sum("points", filter=Q(points__gt=0, expires_at__lte=now)), 0),
        debits=Coalesce(Sum("points", filter=Q(points__lt=0)), 0),
    )
    expired = max(0, totals["due"] + totals["debits"])  # debits are negative
    expired = min(expired, account.points_balance)
    if expired:
        _post(
            account,
            kind=PointsKind.EXPIRY,
            points=-expired,
            key=f"expiry:{account.pk}:{now.isoformat()}",
            reason=f"earned {policy.POINTS_EXPIRE_MONTHS} months or more before {timezone.localtime(now):%Y-%m-%d}",
            now=now,
        )
    account.expired_through = now
    RewardAccount.objects.filter(pk=account.pk).update(expired_through=now)
    return expired


@transaction.atomic
def points_expire_account(*, consumer: Consumer, now: datetime | None = None) -> int:
    """Expire the consumer's points that are past their date; returns how many expired."""
    now = now or timezone.now()
    return _expire_locked(reward_account_lock(consumer.pk), now=now)


def points_expire_due(*, now: datetime | None = None, limit: int = 5000) -> int:
    """The daily expiry job: every account with credits that expired since its last run.

    Accounts are claimed with ``SKIP LOCKED`` one small transaction each, so two runs
    share the work and a second run finds nothing left. Returns the points expired.
    """
    now = now or timezone.now()
    total, seen = 0, 0
    while seen < limit:
        with transaction.atomic():
            # A credit that expired after the account's last expiry run (partial index points_credit_expiry_idx).
            newly_expired = PointsEntry.objects.filter(
                Q(account__expired_through__isnull=True) | Q(expires_at__gt=OuterRef("expired_through")),
                account=OuterRef("pk"),
                points__gt=0,
                expires_at__lte=now,
            )
            account = (
                RewardAccount.objects.select_for_update(skip_locked=True)
                .filter(Exists(newly_expired))
                .order_by("pk")
                .first()
            )
            if account is None:
                break
            total += _expire_locked(account, now=now)
        seen += 1
    logger.info("points_expire_due: %d points expired on %d accounts", total, seen)
    return total


# --------------------------------------------------------------------------- perks


def grace_extra_for(consumer_id: int | None) -> policy.timedelta:
    """How much longer than the platform's grace period this consumer's level allows."""
    level = RewardAccount.objects.filter(consumer_id=consumer_id).values_list("level", flat=True).first()
    return policy.LEVEL_POLICY[level or policy.LEVELS[0].level].extra_grace


def perk_free_extensions_left(consumer: Consumer, *, now: datetime | None = None) -> int:
    """How many free due-date extensions the consumer's level still allows this quarter."""
    now = now or timezone.now()
    account = RewardAccount.objects.filter(consumer=consumer).first()
    if account is None:
        return 0
    allowance = policy.LEVEL_POLICY[account.level].free_extensions_per_quarter
    used = PerkUse.objects.filter(account=account, perk=PerkKind.FREE_EXTENSION, period=policy.quarter_of(now)).count()
    return max(allowance - used, 0)


def perk_free_extension_available(consumer: Consumer, *, now: datetime | None = None) -> bool:
    """Whether the consumer may extend a due date for free this quarter (their level's perk)."""
    return perk_free_extensions_left(consumer, now=now) > 0


@transaction.atomic
def perk_free_extension_use(*, actor: Actor, consumer: Consumer, order_id: int, now: datetime | None = None) -> PerkUse:
    """Use one free due-date extension of this quarter for ``order_id``.

    Refused with ``NotAllowed`` (``no_free_extension``) when the level has none or this
    quarter's are used. Call it in the same transaction as the extension itself, so a
    refused or failed extension does not use the perk.
    """
    now = now or timezone.now()
    account = reward_account_lock(consumer.pk)
    period = policy.quarter_of(now)
    allowance = policy.LEVEL_POLICY[account.level].free_extensions_per_quarter
    used = PerkUse.objects.filter(account=account, perk=PerkKind.FREE_EXTENSION, period=period).count()
    if used >= allowance:
        raise NotAllowed(_("No free due-date extension is left this quarter."), code="no_free_extension")
    return PerkUse.objects.create(
        account=account, perk=PerkKind.FREE_EXTENSION, period=period, slot=used + 1, order_id=order_id, created_at=now
    )


# --------------------------------------------------------------------------- reads


def points_balance_check(consumer: Consumer) -> tuple[int, int]:
    """(cached balance, sum of entries) of the consumer's account: they are always equal."""
    account = RewardAccount.objects.filter(consumer=consumer).first()
    if account is None:
        return 0, 0
    total = PointsEntry.objects.filter(account=account).aggregate(s=Coalesce(Sum("points"), 0))["s"]
    return account.points_balance, total


def rewards_summary(consumer: Consumer, *, now: datetime | None = None) -> dict[str, object]:
    """What the consumer's rewards page shows: level, points, progress to the next level, perks.

    Two queries (the account, the uses of this quarter's perk) plus one for points expiring soon.
    """
    now = now or timezone.now()
    account = RewardAccount.objects.filter(consumer=consumer).first() or RewardAccount(consumer=consumer)
    current = policy.LEVEL_POLICY[account.level]
    upcoming = policy.next_level(account.level)
    progress = None
    if upcoming is not None:
        span = upcoming.floor - current.floor
        done = max(account.promise_value - current.floor, 0)
        progress = {
            "level": upcoming.level,
            "needed": max(upcoming.floor - account.promise_value, 0),
            "percent": min(100, int(done * 100 / span)) if span else 100,
        }
    soon = policy.add_months(now, 1)
    expiring = 0
    if account.pk:
        totals = PointsEntry.objects.filter(account=account).aggregate(
            due=Coalesce(Sum("points", filter=Q(points__gt=0, expires_at__lte=soon)), 0),
            debits=Coalesce(Sum("points", filter=Q(points__lt=0)), 0),
        )
        expiring = max(0, totals["due"] + totals["debits"])
    return {
        "account": account,
        "level": current,
        "next": progress,
        "free_extensions_left": perk_free_extensions_left(consumer, now=now) if account.pk else 0,
        "expiring_within_month": min(expiring, account.points_balance),
        "levels": policy.LEVELS,
    }


def points_history(consumer: Consumer, *, limit: int = 50) -> list[PointsEntry]:
    """The consumer's latest points entries, newest first (one query)."""
    return list(PointsEntry.objects.filter(account__consumer=consumer).order_by("-created_at", "-id")[:limit])


def level_history(consumer: Consumer, *, limit: int = 20) -> list[LevelChange]:
    """The consumer's level changes, newest first (one query)."""
    return list(LevelChange.objects.filter(account__consumer=consumer).order_by("-created_at", "-id")[:limit])


def programme_totals() -> dict[str, object]:
    """The programme's totals for staff: points issued, spent, lost to breaches, expired; consumers per level."""
    by_kind = dict(PointsEntry.objects.values_list("kind").annotate(total=Sum("points")).order_by())
    per_level = dict(RewardAccount.objects.values_list("level").annotate(n=Count("id")).order_by())
    issued = sum(
        v
        for k, v in by_kind.items()
        if k in (PointsKind.KEPT, PointsKind.STREAK, PointsKind.CAMPAIGN, PointsKind.ADJUSTMENT)
    )
    return {
        "issued": issued,
        "by_kind": {label: by_kind.get(value, 0) for value, label in PointsKind.choices},
        "spent": -by_kind.get(PointsKind.SPEND, 0),
        "breach": -by_kind.get(PointsKind.BREACH, 0),
        "expired": -by_kind.get(PointsKind.EXPIRY, 0),
        "outstanding": RewardAccount.objects.aggregate(s=Coalesce(Sum("points_balance"), 0))["s"],
        "per_level": [(p.level, per_level.get(p.level, 0)) for p in policy.LEVELS],
        "point_value": Decimal(policy.POINT_VALUE_YUAN),
    }
