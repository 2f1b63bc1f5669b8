"""守约激励 in the order flow: points and levels on every promise record, and merchant campaigns.

:func:`incentives_on_promise_record` is the one hook: the order services call it right after a
promise record is written or recovered (``bnpl.services._promise_on_paid``, the bulk charge run,
the overdue service), in the same transaction, so an order that rolls back awards nothing. The
rewards run in a savepoint: if they fail, the order change (a charge the provider already took) is
kept, the record is marked ``rewards_pending`` and the sweep ``rewards_apply_pending`` (job
``apply-pending-rewards``) applies them later; the idempotency keys make that safe.

- fulfilled → points, streak bonus, promise value and level (``consumers.rewards``), then one
  step of progress in each of the merchant's active campaigns the consumer may join; reaching a
  campaign's goal awards its benefit (a coupon or points) within the campaign's budget;
- breached → points and a level are lost (the overdue service has already paused new orders);
- recovered and cancelled → nothing: a late payment lifts the pause but earns no points; an order
  billed ¥0 earns nothing either (no money was at stake, and free orders must not farm points).

Campaign budgets are held like credit holds: one conditional UPDATE
(``spent + cost <= budget``) that PostgreSQL serialises on the campaign row, so two consumers
reaching the goal at once can never overspend. Lock order: order → profile → rewards account →
campaign → campaign progress.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from consumers import rewards
from consumers import rewards_policy as policy
from consumers.choices import PointsKind, PromiseOutcome, RewardLevel
from consumers.models import Consumer, LevelChange, PromiseRecord, RewardAccount

from .exceptions import InvalidTransition, ValidationFailed
from .models.incentives import (
    CAMPAIGN_TRANSITIONS,
    BenefitKind,
    Campaign,
    CampaignProgress,
    CampaignStatus,
    Coupon,
    CouponStatus,
)
from .money import ZERO, MoneyError, parse_money, to_money

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from merchants.models import Merchant

    from .models import CreditOrder

    Actor = AbstractBaseUser | None

logger = logging.getLogger(__name__)

MAX_GOAL = 100
MAX_TITLE = 80
MAX_POINTS_BENEFIT = 100_000


# --------------------------------------------------------------------------- the hook


def incentives_on_promise_record(*, actor: Actor, record: PromiseRecord, now: datetime | None = None) -> None:
    """React to a promise record just written or recovered (same transaction as the record).

    The rewards run in a savepoint: if they fail, the order change is kept (a charge that succeeded at
    the provider must be recorded), the error is logged and the record is marked ``rewards_pending``
    for :func:`rewards_apply_pending`.
    """
    now = now or timezone.now()
    try:
        with transaction.atomic():
            promoted = _apply_record(actor=actor, record=record, outcome=record.outcome, now=now)
    except Exception:
        logger.exception("rewards for promise record of order %s failed; left pending", record.order_id)
        _mark_pending([record.pk])
        return
    for consumer_id, level in promoted:
        _notify_level_up(consumer_id, level)


def _apply_record(*, actor: Actor, record: PromiseRecord, outcome: str, now: datetime) -> list[tuple[int, str]]:
    """The rewards of one record (``outcome`` decides which); returns the promotions ``(consumer, level)``."""
    if outcome == PromiseOutcome.FULFILLED:
        if record.amount <= ZERO:
            return []  # nothing was owed (billed ¥0): no promise was at stake, so nothing to reward
        result = rewards.rewards_on_promise_kept(
            actor=actor, consumer_id=record.consumer_id, order_id=record.order_id, now=now
        )
        _campaigns_progress(records=[record], now=now)
    elif outcome == PromiseOutcome.BREACHED:
        result = rewards.rewards_on_promise_breached(
            actor=actor, consumer_id=record.consumer_id, order_id=record.order_id, now=now
        )
    else:
        return []
    return [(record.consumer_id, result.level_after)] if result.promoted else []


def incentives_on_promises_kept(*, actor: Actor, records: list[PromiseRecord], now: datetime | None = None) -> None:
    """The bulk charge run's kept promises: points and levels in a few statements for the whole chunk
    (``rewards_on_promises_kept_many``), then campaign progress only for merchants running a campaign.

    In a savepoint, as :func:`incentives_on_promise_record`: a failure leaves the chunk's charges
    recorded and its records ``rewards_pending``.
    """
    now = now or timezone.now()
    records = [r for r in records if r.outcome == PromiseOutcome.FULFILLED and r.amount > ZERO]
    if not records:
        return
    try:
        with transaction.atomic():
            promoted = rewards.rewards_on_promises_kept_many(
                actor=actor, kept=[(r.consumer_id, r.order_id) for r in records], now=now
            )
            _campaigns_progress(records=records, now=now)
    except Exception:
        logger.exception("rewards for %d kept promises failed; left pending", len(records))
        _mark_pending([r.pk for r in records])
        return
    for consumer_id, level in promoted:
        _notify_level_up(consumer_id, level)


def _mark_pending(record_ids: list[int]) -> None:
    """Note that the rewards of these promise records are still to be applied (by the sweep)."""
    try:
        with transaction.atomic():
            PromiseRecord.objects.filter(pk__in=record_ids).update(rewards_pending=True)
    except Exception:
        logger.exception("could not mark the rewards of promise records %s pending", record_ids)


def rewards_apply_pending(*, limit: int = 500, now: datetime | None = None) -> dict[str, int]:
    """The rewards sweep: apply the rewards whose hook failed (records marked ``rewards_pending``).

    Each record in its own transaction, claimed with ``SKIP LOCKED`` so two sweeps never take the same
    one; the flag is cleared in that transaction, and the idempotency keys (``kept:<order>``,
    ``breach:<order>``, ``campaign:<id>:<consumer>``) make a replay post nothing twice. A breached
    record recovered since still costs its breach. A record that fails again stays pending.
    """
    counts = {"applied": 0, "failed": 0}
    ids = list(PromiseRecord.objects.filter(rewards_pending=True).order_by("pk").values_list("pk", flat=True)[:limit])
    for pk in ids:
        promoted: list[tuple[int, str]] = []
        try:
            with transaction.atomic():
                record = (
                    PromiseRecord.objects.select_for_update(skip_locked=True)
                    .filter(pk=pk, rewards_pending=True)
                    .first()
                )
                if record is None:
                    continue
                outcome = PromiseOutcome.BREACHED if record.outcome == PromiseOutcome.RECOVERED else record.outcome
                promoted = _apply_record(actor=None, record=record, outcome=outcome, now=now or timezone.now())
                PromiseRecord.objects.filter(pk=pk).update(rewards_pending=False)
        except Exception:
            logger.exception("rewards sweep: promise record %s failed again; still pending", pk)
            counts["failed"] += 1
            continue
        counts["applied"] += 1
        for consumer_id, level in promoted:
            _notify_level_up(consumer_id, level)
    return counts


def rewards_apply_pending_task() -> dict[str, int]:
    """django-q2 entry point of the rewards sweep."""
    return rewards_apply_pending()


def _notify_level_up(consumer_id: int, level: str) -> None:
    """Tell the consumer about a promotion (notifications service, kind ``rewards_level_up``) when it is declared.

    Runs inside the order's transaction, in a savepoint: a notification that fails is logged and never
    undoes the order change. The dedupe key names the consumer, the new level and the
    :class:`~consumers.models.LevelChange` that made it, so a replay writes nothing and a later
    promotion to the same level (after a demotion) is told again.
    """
    from django.urls import reverse

    from .notifications.kinds import KINDS

    if "rewards_level_up" not in KINDS:
        return
    from .notifications.reminders import site_url
    from .notifications.services import notify

    try:
        with transaction.atomic():
            change_id = (
                LevelChange.objects.filter(account__consumer_id=consumer_id, after=level)
                .order_by("-pk")
                .values_list("pk", flat=True)
                .first()
            )
            notify(
                actor=None,
                key="rewards_level_up",
                consumer=Consumer.objects.select_related("user").get(pk=consumer_id),
                data={"level": str(RewardLevel(level).label), "url": site_url(reverse("me:rewards"))},
                dedupe_key=f"rewards_level_up:{consumer_id}:{level}:{change_id}",
            )
    except Exception:
        logger.exception("level-up notification failed for consumer %s", consumer_id)


def _active_campaigns(*, merchant_ids: set[int], now: datetime) -> list[Campaign]:
    """The active, started, not yet ended campaigns of these merchants, by id (one query)."""
    return list(
        Campaign.objects.filter(
            Q(ends_at__isnull=True) | Q(ends_at__gt=now),
            merchant_id__in=merchant_ids,
            status=CampaignStatus.ACTIVE,
            starts_at__lte=now,
        ).order_by("pk")
    )


def _campaigns_progress(*, records: list[PromiseRecord], now: datetime) -> list[CampaignProgress]:
    """Kept promises with merchants move their consumers on in each active campaign they may join.

    For a whole chunk in a fixed number of statements: the consumers' levels and the merchants'
    active campaigns are read once, the steps are counted in memory, then, following the lock order
    campaign → progress, the campaigns that may pay an award are locked by id, the progress rows
    locked by (campaign, consumer), and the awards paid in campaign-id order. The caller holds the
    consumers' rewards accounts, so no other transaction moves these consumers' progress meanwhile.
    One step per order (``last_order_id``), one award per consumer per campaign.
    """
    campaigns = _active_campaigns(merchant_ids={r.merchant_id for r in records}, now=now)
    if not campaigns:
        return []
    levels = dict(
        RewardAccount.objects.filter(consumer_id__in={r.consumer_id for r in records}).values_list(
            "consumer_id", "level"
        )
    )
    by_merchant: dict[int, list[Campaign]] = {}
    for campaign in campaigns:
        by_merchant.setdefault(campaign.merchant_id, []).append(campaign)
    steps: dict[tuple[int, int], list[int]] = {}  # (campaign, consumer) → orders, in order
    for record in sorted(records, key=lambda r: (r.consumer_id, r.order_id)):
        rank = policy.LEVEL_RANK[levels.get(record.consumer_id) or RewardLevel.NEWCOMER]
        for campaign in by_merchant.get(record.merchant_id, []):
            if policy.LEVEL_RANK[campaign.min_level] <= rank:
                steps.setdefault((campaign.pk, record.consumer_id), []).append(record.order_id)
    if not steps:
        return []
    pairs = Q()
    for campaign_id, consumer_id in steps:
        pairs |= Q(campaign_id=campaign_id, consumer_id=consumer_id)
    CampaignProgress.objects.bulk_create(
        [CampaignProgress(campaign_id=c, consumer_id=k) for c, k in sorted(steps)], ignore_conflicts=True
    )
    goals = {c.pk: c for c in campaigns}
    may_award = {
        p.campaign_id
        for p in CampaignProgress.objects.filter(pairs)
        if p.awarded_at is None
        and not p.missed_budget
        and p.kept_count + len(steps[(p.campaign_id, p.consumer_id)]) >= goals[p.campaign_id].goal_count
    }
    locked = {
        c.pk: c for c in Campaign.objects.select_for_update().filter(pk__in=may_award).order_by("pk")
    }  # campaign before progress
    moved = []
    for progress in CampaignProgress.objects.select_for_update().filter(pairs).order_by("campaign_id", "consumer_id"):
        campaign = locked.get(progress.campaign_id, goals[progress.campaign_id])
        changed = False
        for order_id in steps[(progress.campaign_id, progress.consumer_id)]:
            if progress.awarded_at is not None or progress.last_order_id == order_id:
                continue  # one award per consumer per campaign; one step per order
            if campaign.pk in locked and campaign.status != CampaignStatus.ACTIVE:
                break  # paused or ended since it was read: this step does not count
            progress.kept_count += 1
            progress.last_order_id = order_id
            changed = True
            if progress.kept_count >= campaign.goal_count and not progress.missed_budget:
                paid = _campaign_award(campaign=campaign, consumer_id=progress.consumer_id, now=now)
                if paid == AWARD_PAID:
                    progress.awarded_at = now
                elif paid == AWARD_NO_BUDGET:
                    progress.missed_budget = True
                # AWARD_INACTIVE: paused or ended meanwhile, not the budget; the next step may still award.
        if changed:
            progress.updated_at = now
            moved.append(progress)
    CampaignProgress.objects.bulk_update(
        moved, ["kept_count", "last_order_id", "awarded_at", "missed_budget", "updated_at"], batch_size=500
    )
    return moved


AWARD_PAID = "paid"
AWARD_NO_BUDGET = "no_budget"
AWARD_INACTIVE = "inactive"


def _campaign_award(*, campaign: Campaign, consumer_id: int, now: datetime) -> str:
    """Pay one award of ``campaign`` if it is active and its budget still covers it.

    Returns ``paid``, ``no_budget`` (the campaign is then marked exhausted) or ``inactive`` (paused or
    ended since it was read: the budget was not the reason, so the consumer has not missed it).
    """
    taken = Campaign.objects.filter(
        pk=campaign.pk, status=CampaignStatus.ACTIVE, spent_amount__lte=F("budget_amount") - campaign.cost_amount
    ).update(spent_amount=F("spent_amount") + campaign.cost_amount, awards_count=F("awards_count") + 1, updated_at=now)
    if taken != 1:
        status = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
        if status == CampaignStatus.EXHAUSTED:
            return AWARD_NO_BUDGET
        if status != CampaignStatus.ACTIVE:
            return AWARD_INACTIVE
        Campaign.objects.filter(
            pk=campaign.pk, status=CampaignStatus.ACTIVE, spent_amount__gt=F("budget_amount") - campaign.cost_amount
        ).update(status=CampaignStatus.EXHAUSTED, updated_at=now)
        return AWARD_NO_BUDGET
    if campaign.benefit_kind == BenefitKind.COUPON:
        Coupon.objects.create(
            consumer_id=consumer_id,
            merchant_id=campaign.merchant_id,
            campaign=campaign,
            amount=campaign.benefit_amount,
            expires_at=now + timedelta(days=campaign.coupon_valid_days),
            created_at=now,
        )
    else:
        assert campaign.benefit_points is not None
        rewards.points_award(
            actor=None,
            consumer=Consumer.objects.get(pk=consumer_id),
            points=campaign.benefit_points,
            kind=PointsKind.CAMPAIGN,
            key=f"campaign:{campaign.pk}:{consumer_id}",
            reason=campaign.title,
            now=now,
        )
    # The award that used the last of the budget closes the campaign for the next consumer.
    Campaign.objects.filter(
        pk=campaign.pk, status=CampaignStatus.ACTIVE, spent_amount__gt=F("budget_amount") - campaign.cost_amount
    ).update(status=CampaignStatus.EXHAUSTED, updated_at=now)
    return AWARD_PAID


# --------------------------------------------------------------------------- coupon redemption

MAX_COUPON_LINE_NAME = 64  # BillLine.name


def coupon_redeem_for_order(*, order: CreditOrder, bill: Decimal, now: datetime) -> tuple[Coupon, Decimal] | None:
    """Take the consumer's oldest usable coupon of the order's merchant off a bill of ``bill``.

    Called by ``credit_order_complete`` inside its transaction, before the bill is stored: the
    caller adds a discount line of the returned amount, ``min(coupon, bill)`` (never below ¥0),
    and the lower ``amount_due`` is what the ledger posts (the campaign paid for the coupon at
    award). One coupon per order (``Coupon.used_order`` is one-to-one). Two completions of the
    same consumer at once never use one coupon twice: the row is claimed with ``FOR UPDATE SKIP
    LOCKED`` (the other completion takes the next coupon, or none) and marked used by a
    conditional UPDATE. Nothing to take off (bill of ¥0, no coupon) → ``None``.
    """
    if bill <= ZERO or order.consumer_id is None:
        return None
    coupon = (
        Coupon.objects.select_for_update(skip_locked=True)
        .filter(
            consumer_id=order.consumer_id,
            merchant_id=order.merchant_id,
            status=CouponStatus.ISSUED,
            expires_at__gt=now,
            created_at__lte=now,
        )
        .select_related("campaign")
        .order_by("expires_at", "created_at", "id")
        .first()
    )
    if coupon is None:
        return None
    amount = to_money(min(coupon.amount, bill))
    claimed = Coupon.objects.filter(pk=coupon.pk, status=CouponStatus.ISSUED).update(
        status=CouponStatus.USED, used_order=order, used_at=now, used_amount=amount
    )
    if claimed != 1:  # pragma: no cover - the row lock makes this unreachable; kept as the last guard
        return None
    coupon.status, coupon.used_order_id, coupon.used_at, coupon.used_amount = CouponStatus.USED, order.pk, now, amount
    logger.info("coupon used coupon=%s order=%s amount=%s", coupon.pk, order.pk, amount)
    return coupon, amount


def coupon_line_name(coupon: Coupon) -> str:
    """The bill line of a redeemed coupon, e.g. "Campaign coupon: 充电满3次送¥5券"."""
    name = _("Campaign coupon: %(title)s") % {"title": coupon.campaign.title}
    return name[:MAX_COUPON_LINE_NAME]


def coupon_for_order(*, order_id: int) -> Coupon | None:
    """The coupon taken off an order, with its campaign (for the order pages), or ``None``."""
    return Coupon.objects.filter(used_order_id=order_id).select_related("campaign").first()


# --------------------------------------------------------------------------- the daily job


def coupons_expire_due(*, now: datetime | None = None) -> int:
    """Coupons past their date become ``expired`` (one set-based UPDATE; running it twice changes nothing)."""
    now = now or timezone.now()
    return Coupon.objects.filter(status=CouponStatus.ISSUED, expires_at__lte=now).update(status=CouponStatus.EXPIRED)


def rewards_expire_due(*, now: datetime | None = None) -> dict[str, int]:
    """The daily rewards job: points past their date expire (oldest first), then coupons past theirs."""
    now = now or timezone.now()
    return {"points": rewards.points_expire_due(now=now), "coupons": coupons_expire_due(now=now)}


# --------------------------------------------------------------------------- merchant services


def _money(value: object, field: str, *, positive: bool = True) -> Decimal:
    try:
        amount = parse_money(value, allow_zero=not positive)
    except MoneyError:
        message = _("Enter an amount in yuan with at most two decimal places.")
        raise ValidationFailed(message, fields={field: message}) from None
    return amount


@transaction.atomic(durable=True)
def campaign_create(
    *,
    actor: Actor,
    merchant: Merchant,
    title: str,
    goal_count: int,
    benefit_kind: str,
    budget_amount: Decimal | str,
    benefit_amount: Decimal | str | None = None,
    benefit_points: int | None = None,
    min_level: str = RewardLevel.NEWCOMER,
    coupon_valid_days: int = 30,
    ends_at: datetime | None = None,
) -> Campaign:
    """A merchant starts a campaign: keep ``goal_count`` promises with us → a coupon or points.

    The cost of one award is fixed now (the coupon amount, or the points at
    ``POINT_VALUE_YUAN`` each) and the budget must cover at least one award.
    """
    title = (title or "").strip()
    errors: dict[str, str] = {}
    if not title or len(title) > MAX_TITLE:
        errors["title"] = _("Enter a title of at most %(n)d characters.") % {"n": MAX_TITLE}
    if isinstance(goal_count, bool) or not isinstance(goal_count, int) or not 1 <= goal_count <= MAX_GOAL:
        errors["goal_count"] = _("Enter a whole number from 1 to %(n)d.") % {"n": MAX_GOAL}
    if min_level not in RewardLevel.values:
        errors["min_level"] = _("Choose one of the listed levels.")
    if ends_at is not None and ends_at <= timezone.now():
        errors["ends_at"] = _("The end must be in the future.")
    if errors:
        raise ValidationFailed(_("Please correct the campaign."), fields=errors)
    budget = _money(budget_amount, "budget_amount")
    if benefit_kind == BenefitKind.COUPON:
        amount = _money(benefit_amount, "benefit_amount")
        points = None
        cost = amount
    elif benefit_kind == BenefitKind.POINTS:
        if (
            isinstance(benefit_points, bool)
            or not isinstance(benefit_points, int)
            or not 1 <= benefit_points <= MAX_POINTS_BENEFIT
        ):
            message = _("Enter a whole number of points from 1 to %(n)d.") % {"n": MAX_POINTS_BENEFIT}
            raise ValidationFailed(message, fields={"benefit_points": message})
        amount, points = None, benefit_points
        cost = to_money(Decimal(policy.POINT_VALUE_YUAN) * points)
    else:
        raise ValidationFailed(
            _("Choose a coupon or points."), fields={"benefit_kind": _("Choose a coupon or points.")}
        )
    if cost <= ZERO:
        message = _("The benefit must be worth at least ¥0.01.")
        raise ValidationFailed(message, fields={"benefit_points": message})
    if budget < cost:
        message = _("The budget must cover at least one award (%(cost)s).") % {"cost": cost}
        raise ValidationFailed(message, fields={"budget_amount": message})
    campaign = Campaign.objects.create(
        merchant=merchant,
        title=title,
        goal_count=goal_count,
        benefit_kind=benefit_kind,
        benefit_amount=amount,
        benefit_points=points,
        cost_amount=cost,
        budget_amount=budget,
        min_level=min_level,
        coupon_valid_days=coupon_valid_days,
        ends_at=ends_at,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    logger.info(
        "campaign created campaign=%s merchant=%s actor=%s", campaign.pk, merchant.pk, getattr(actor, "pk", None)
    )
    return campaign


def _campaign_move(*, actor: Actor, campaign: Campaign, to: str) -> Campaign:
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if to not in CAMPAIGN_TRANSITIONS[locked.status]:
        raise InvalidTransition(
            _("The campaign is %(status)s; it cannot become %(to)s.")
            % {"status": locked.get_status_display(), "to": CampaignStatus(to).label}
        )
    locked.status = to
    locked.save(update_fields=["status", "updated_at"])
    logger.info("campaign %s → %s actor=%s", locked.pk, to, getattr(actor, "pk", None))
    return locked


@transaction.atomic(durable=True)
def campaign_pause(*, actor: Actor, campaign: Campaign) -> Campaign:
    """Pause an active campaign: progress stops counting until it is resumed."""
    return _campaign_move(actor=actor, campaign=campaign, to=CampaignStatus.PAUSED)


@transaction.atomic(durable=True)
def campaign_resume(*, actor: Actor, campaign: Campaign) -> Campaign:
    """Resume a paused campaign."""
    return _campaign_move(actor=actor, campaign=campaign, to=CampaignStatus.ACTIVE)


@transaction.atomic(durable=True)
def campaign_end(*, actor: Actor, campaign: Campaign) -> Campaign:
    """End a campaign for good (awards already paid stay paid)."""
    return _campaign_move(actor=actor, campaign=campaign, to=CampaignStatus.ENDED)


# --------------------------------------------------------------------------- selectors


def campaigns_for_merchant(*, merchant: Merchant) -> list[Campaign]:
    """The merchant's campaigns with what they cost and how many consumers take part (one query)."""
    return list(
        Campaign.objects.filter(merchant=merchant)
        .annotate(participants=Count("progress"))
        .order_by("-created_at", "-id")
    )


def campaign_get_for_merchant(*, merchant: Merchant, campaign_id: int) -> Campaign:
    """One campaign of the merchant; another merchant's id raises ``Campaign.DoesNotExist`` (a 404)."""
    return Campaign.objects.get(merchant=merchant, pk=campaign_id)


def campaigns_for_consumer(*, consumer: Consumer, now: datetime | None = None) -> dict[str, list[Any]]:
    """The consumer's campaign progress, the campaigns open to them that they have not started, coupons.

    Three queries, whatever the number of campaigns.
    """
    now = now or timezone.now()
    progress = list(
        CampaignProgress.objects.filter(consumer=consumer)
        .select_related("campaign__merchant")
        .order_by("awarded_at", "-updated_at")[:50]
    )
    started = {p.campaign_id for p in progress}
    level = RewardAccount.objects.filter(consumer=consumer).values_list("level", flat=True).first()
    rank = policy.LEVEL_RANK[level or RewardLevel.NEWCOMER]
    allowed = [p.level for p in policy.LEVELS if policy.LEVEL_RANK[p.level] <= rank]
    open_campaigns = [
        c
        for c in Campaign.objects.filter(
            Q(ends_at__isnull=True) | Q(ends_at__gt=now),
            status=CampaignStatus.ACTIVE,
            starts_at__lte=now,
            min_level__in=allowed,
        )
        .select_related("merchant")
        .order_by("-created_at")[:30]
        if c.pk not in started
    ][:10]
    coupons = list(Coupon.objects.filter(consumer=consumer).select_related("merchant").order_by("-created_at")[:20])
    return {"progress": progress, "open": open_campaigns, "coupons": coupons}


def campaign_totals() -> dict[str, Any]:
    """What merchant campaigns have cost across the platform (staff's programme totals)."""
    totals = Campaign.objects.aggregate(
        campaigns=Count("id"),
        active=Count("id", filter=Q(status=CampaignStatus.ACTIVE)),
        budget=Coalesce(Sum("budget_amount"), ZERO),
        spent=Coalesce(Sum("spent_amount"), ZERO),
        awards=Coalesce(Sum("awards_count"), 0),
    )
    totals["coupons_issued"] = Coupon.objects.count()
    return totals
