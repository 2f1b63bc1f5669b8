"""Consumers, their verified identity, credit profile and promise records."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from bnpl.validators import mask_phone, validate_cn_mobile

from .choices import (
    LimitChangeReason,
    PerkKind,
    PointsKind,
    ProfileEventKind,
    PromiseOutcome,
    RewardLevel,
    ScoreBand,
)


class Consumer(models.Model):
    """A person who buys 先享: a login plus a phone and, once verified, a real name.

    ``is_sandbox`` marks a test identity used with merchants' test-mode API keys.

    The resident ID number is never stored in clear: ``id_number_hash`` is an
    HMAC-SHA256 under ``IDENTITY_HASH_KEY`` (so one ID can be bound to one account,
    and a number can be matched without being readable), and ``id_number_masked``
    keeps the region prefix and last four digits for display.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="consumer")
    phone = models.CharField(_("Phone"), max_length=11, unique=True, validators=[validate_cn_mobile])
    phone_verified = models.BooleanField(_("Phone verified"), default=False)
    real_name = models.CharField(_("Real name"), max_length=50, blank=True)
    id_number_hash = models.CharField(max_length=64, blank=True, editable=False)
    id_number_masked = models.CharField(_("ID number"), max_length=18, blank=True, editable=False)
    verified_at = models.DateTimeField(_("Verified at"), null=True, blank=True)
    city = models.CharField(_("City"), max_length=50, blank=True)
    # A sandbox consumer is a test identity: only test-mode API keys may act on it, and live keys never
    # see it (and vice versa). It is what "test mode talks to sandbox consumers only" means.
    is_sandbox = models.BooleanField(
        _("Sandbox consumer"),
        default=False,
        help_text=_("Test identity for merchants' test-mode API keys; never used with live keys."),
    )
    created_at = models.DateTimeField(_("Joined at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Consumer")
        verbose_name_plural = _("Consumer")
        ordering = ["-created_at"]
        constraints = [
            # One resident ID, one account.
            models.UniqueConstraint(
                fields=["id_number_hash"], condition=~Q(id_number_hash=""), name="consumer_id_number_unique"
            ),
            models.CheckConstraint(
                condition=Q(verified_at__isnull=True) | (~Q(id_number_hash="") & ~Q(real_name="")),
                name="consumer_verified_has_identity",
            ),
        ]

    def __str__(self) -> str:
        return self.masked_phone

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone)

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None


class CreditProfile(models.Model):
    """A consumer's score, limit and open exposure: the row every admission locks.

    ``open_exposure_amount`` is the sum of what open orders hold against the limit
    (an active order's cap, a completed order's amount due). It changes only through
    ``consumers.services.credit_hold_*`` in the same transaction as the order change,
    with a conditional UPDATE so two concurrent orders can never over-commit.
    ``spend_cap_amount`` is the consumer's own lower ceiling: holds respect the smaller
    of the limit and the cap.
    """

    consumer = models.OneToOneField(Consumer, on_delete=models.CASCADE, related_name="credit_profile")
    score = models.PositiveSmallIntegerField(_("Credit score"), default=600)
    band = models.GeneratedField(
        expression=Case(
            When(score__gte=700, then=Value(ScoreBand.EXCELLENT.value)),
            When(score__gte=650, then=Value(ScoreBand.VERY_GOOD.value)),
            When(score__gte=600, then=Value(ScoreBand.GOOD.value)),
            When(score__gte=550, then=Value(ScoreBand.FAIR.value)),
            default=Value(ScoreBand.POOR.value),
        ),
        output_field=models.CharField(max_length=16, choices=ScoreBand.choices),
        db_persist=True,
        verbose_name=_("Score band"),
    )
    credit_limit_amount = models.DecimalField(
        _("Credit limit"), max_digits=12, decimal_places=2, default=Decimal("0.00")
    )
    open_exposure_amount = models.DecimalField(
        _("Held amount"), max_digits=12, decimal_places=2, default=Decimal("0.00")
    )
    available_amount = models.GeneratedField(
        expression=F("credit_limit_amount") - F("open_exposure_amount"),
        output_field=models.DecimalField(max_digits=12, decimal_places=2),
        db_persist=True,
        verbose_name=_("Available"),
    )
    # The consumer's own ceiling on what their open orders may hold (None: the limit alone
    # applies). A consumer may only lower what they can spend, never raise it past the limit.
    spend_cap_amount = models.DecimalField(
        _("Personal spend cap"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    is_paused = models.BooleanField(_("Paused"), default=False)
    paused_reason = models.CharField(_("Pause reason"), max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Credit profile")
        verbose_name_plural = _("Credit profile")
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=350) & Q(score__lte=950), name="profile_score_range"),
            models.CheckConstraint(condition=Q(credit_limit_amount__gte=0), name="profile_limit_non_negative"),
            models.CheckConstraint(condition=Q(open_exposure_amount__gte=0), name="profile_exposure_non_negative"),
            models.CheckConstraint(
                condition=Q(spend_cap_amount__isnull=True) | Q(spend_cap_amount__gte=0),
                name="profile_spend_cap_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(is_paused=False) | ~Q(paused_reason=""), name="profile_pause_has_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.consumer} · {self.score}"


class LimitChange(models.Model):
    """An append-only record of every credit-limit change with its reason and actor."""

    profile = models.ForeignKey(CreditProfile, on_delete=models.CASCADE, related_name="limit_changes")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason_code = models.CharField(max_length=16, choices=LimitChangeReason.choices)
    reason = models.TextField(blank=True)
    before_amount = models.DecimalField(max_digits=12, decimal_places=2)
    after_amount = models.DecimalField(max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("Limit change")
        verbose_name_plural = _("Limit change")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.before_amount} → {self.after_amount} ({self.reason_code})"


class CreditProfileEvent(models.Model):
    """An append-only record of a pause, a lifted pause or a score change: who, when, before, after, why.

    Limit changes have their own :class:`LimitChange` rows (with amounts); together
    they are the consumer's score and limit history.
    """

    profile = models.ForeignKey(CreditProfile, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(_("Kind"), max_length=16, choices=ProfileEventKind.choices)
    before = models.CharField(_("Before"), max_length=200, blank=True)
    after = models.CharField(_("After"), max_length=200, blank=True)
    reason = models.TextField(_("Reason"), blank=True)
    created_at = models.DateTimeField(_("Time"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("Credit profile event")
        verbose_name_plural = _("Credit profile events")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.before} → {self.after}"


class PromiseRecord(models.Model):
    """守约记录: one per finished credit order, the outcome that feeds score, limit and rewards.

    ``order_id`` names the credit order without a foreign key, because ``consumers``
    sits below ``bnpl`` and must not depend on its models; the unique constraint
    still makes it one record per order.
    """

    consumer = models.ForeignKey(Consumer, on_delete=models.PROTECT, related_name="promise_records")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    order_id = models.BigIntegerField(_("Order id"), unique=True)
    outcome = models.CharField(_("Outcome"), max_length=16, choices=PromiseOutcome.choices)
    amount = models.DecimalField(_("Amount"), max_digits=12, decimal_places=2, default=Decimal("0.00"))
    recorded_at = models.DateTimeField(_("Recorded at"))
    updated_at = models.DateTimeField(auto_now=True)
    # Set when the rewards hook failed for this record (the order change was kept): the rewards sweep
    # (``bnpl.incentives.rewards_apply_pending``) applies them later and clears it.
    rewards_pending = models.BooleanField(_("Rewards pending"), default=False)

    class Meta:
        verbose_name = _("Promise record")
        verbose_name_plural = _("Promise record")
        ordering = ["-recorded_at"]
        indexes = [
            models.Index(fields=["consumer", "-recorded_at"], name="promise_consumer_recent_idx"),
            models.Index(fields=["id"], condition=Q(rewards_pending=True), name="promise_rewards_pending_idx"),
        ]
        constraints = [models.CheckConstraint(condition=Q(amount__gte=0), name="promise_amount_non_negative")]

    def __str__(self) -> str:
        return f"#{self.order_id} {self.outcome}"


# --- Rewards programme (守约激励): docs/incentives.md ------------------------------------------


class RewardAccount(models.Model):
    """A consumer's place in the rewards programme: level, promise value, streak and points balance.

    The row every points posting locks (``consumers.rewards``), so two postings for one
    consumer are serialised. ``points_balance`` is a cache of the sum of the account's
    :class:`PointsEntry` rows, moved in the same transaction as each entry by a
    conditional UPDATE; the check constraint makes a negative balance impossible even for
    a writer that skipped the lock. ``promise_value`` (守约值) decides the level
    (``consumers.rewards_policy``); ``expired_through`` is how far the expiry job has got.
    """

    consumer = models.OneToOneField(Consumer, on_delete=models.CASCADE, related_name="reward_account")
    level = models.CharField(_("Level"), max_length=16, choices=RewardLevel.choices, default=RewardLevel.NEWCOMER)
    promise_value = models.PositiveIntegerField(_("Promise value"), default=0)
    streak = models.PositiveIntegerField(_("Kept in a row"), default=0)
    best_streak = models.PositiveIntegerField(_("Best streak"), default=0)
    points_balance = models.IntegerField(_("Points"), default=0)
    expired_through = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Rewards account")
        verbose_name_plural = _("Rewards accounts")
        # The overdue job excludes orders of consumers whose level lengthens the grace period.
        indexes = [models.Index(fields=["level"], name="reward_account_level_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(points_balance__gte=0), name="reward_points_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer} · {self.get_level_display()} · {self.points_balance}"


class PointsEntry(models.Model):
    """One movement of points, append-only (a database trigger refuses UPDATE and DELETE).

    Credits (``points > 0``) carry ``expires_at``; debits do not. ``key`` is unique, so an
    award for an order (``kept:<order>``) or an expiry run is posted at most once.
    """

    account = models.ForeignKey(RewardAccount, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(_("Kind"), max_length=16, choices=PointsKind.choices)
    points = models.IntegerField(_("Points"))
    key = models.CharField(max_length=80, unique=True)
    reason = models.CharField(_("Reason"), max_length=200, blank=True)
    order_id = models.BigIntegerField(_("Order id"), null=True, blank=True)
    expires_at = models.DateTimeField(_("Expires at"), null=True, blank=True)
    created_at = models.DateTimeField(_("Time"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("Points entry")
        verbose_name_plural = _("Points entries")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The expiry job: an account's credits by expiry date.
            models.Index(fields=["account", "expires_at"], condition=Q(points__gt=0), name="points_credit_expiry_idx"),
            models.Index(fields=["account", "-created_at"], name="points_account_recent_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="points_entry_non_zero"),
            models.CheckConstraint(
                condition=Q(points__gt=0, expires_at__isnull=False) | Q(points__lt=0, expires_at__isnull=True),
                name="points_credit_expires",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.points:+d}"


class LevelChange(models.Model):
    """An append-only record of a rewards level change: before, after, why."""

    account = models.ForeignKey(RewardAccount, on_delete=models.CASCADE, related_name="level_changes")
    before = models.CharField(_("Before"), max_length=16, choices=RewardLevel.choices)
    after = models.CharField(_("After"), max_length=16, choices=RewardLevel.choices)
    reason = models.CharField(_("Reason"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("Time"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("Level change")
        verbose_name_plural = _("Level changes")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.before} → {self.after}"


class RewardMarker(models.Model):
    """A rewards event applied once per key even when it moved no points (``breach:<order>`` at a zero balance).

    Points entries cannot be zero, so a breach that cost nothing left no trace and a replay demoted
    the consumer again; the unique key here makes the breach hook idempotent whatever it cost.
    """

    account = models.ForeignKey(RewardAccount, on_delete=models.CASCADE, related_name="markers")
    key = models.CharField(max_length=80, unique=True)
    created_at = models.DateTimeField(_("Time"), default=timezone.now)

    class Meta:
        verbose_name = _("Rewards marker")
        verbose_name_plural = _("Rewards markers")

    def __str__(self) -> str:
        return self.key


class PerkUse(models.Model):
    """One use of a counted perk (a free due-date extension) in a period (a quarter, ``2026Q4``).

    ``slot`` numbers the uses within the period (1 … the level's allowance), so the
    unique constraint holds the allowance even against a writer that skipped the lock.
    """

    account = models.ForeignKey(RewardAccount, on_delete=models.CASCADE, related_name="perk_uses")
    perk = models.CharField(_("Perk"), max_length=24, choices=PerkKind.choices)
    period = models.CharField(_("Period"), max_length=8)
    slot = models.PositiveSmallIntegerField(default=1)
    order_id = models.BigIntegerField(_("Order id"), null=True, blank=True)
    created_at = models.DateTimeField(_("Time"), default=timezone.now)

    class Meta:
        verbose_name = _("Perk use")
        verbose_name_plural = _("Perk uses")
        constraints = [
            models.UniqueConstraint(fields=["account", "perk", "period", "slot"], name="perk_use_one_per_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.perk} {self.period}#{self.slot}"
