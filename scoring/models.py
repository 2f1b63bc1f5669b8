"""Scoring: admission decisions, the per-consumer feature row, versioned scorecards and the blocklist."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .choices import BlocklistKind, DecisionChannel, DecisionOutcome, ScorecardEventKind, ScorecardSource


class Scorecard(models.Model):
    """A versioned scorecard: bins → points per variable, scaled by points-to-double-odds.

    ``spec`` is the table the platform scores with (``scoring.scorecard.compile_spec``
    reads it): ``base_points`` and per variable its bins and points. Cards are
    immutable once created; a new fit is a new version, saved inactive, and staff
    activate it in the admin (a :class:`ScorecardEvent` names who and why). At most one
    card is active (a partial unique constraint); with none active the platform
    declines with ``scoring_unavailable`` rather than approving blindly.

    ``reference_distribution`` is the score distribution of the population the card
    was fitted on (bucket → share), the baseline for monitoring's PSI; ``metrics`` keeps
    the hold-out AUC, KS, Gini, cut-off table and PSI that the training reported.
    """

    version = models.CharField(_("Version"), max_length=40, unique=True)
    source = models.CharField(_("Source"), max_length=16, choices=ScorecardSource.choices)
    spec = models.JSONField(_("Bins and points"))
    pdo = models.PositiveSmallIntegerField(_("Points to double the odds"), default=50)
    anchor_score = models.PositiveSmallIntegerField(_("Anchor score"), default=600)
    anchor_odds = models.PositiveSmallIntegerField(_("Good:bad odds at the anchor"), default=19)
    is_active = models.BooleanField(_("Active"), default=False)
    metrics = models.JSONField(_("Training metrics"), default=dict, blank=True)
    reference_distribution = models.JSONField(_("Training score distribution"), default=dict, blank=True)
    notes = models.TextField(_("Notes"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    activated_at = models.DateTimeField(_("Activated at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Scorecard")
        verbose_name_plural = _("Scorecards")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="scorecard_one_active"),
            models.CheckConstraint(condition=Q(pdo__gt=0) & Q(anchor_odds__gt=0), name="scorecard_scaling_positive"),
        ]

    def __str__(self) -> str:
        return self.version


class ScorecardEvent(models.Model):
    """An append-only record of a scorecard's creation, activation or deactivation: who, when, why."""

    scorecard = models.ForeignKey(Scorecard, on_delete=models.PROTECT, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(_("Kind"), max_length=16, choices=ScorecardEventKind.choices)
    reason = models.TextField(_("Reason"), blank=True)
    created_at = models.DateTimeField(_("Time"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("Scorecard event")
        verbose_name_plural = _("Scorecard events")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.scorecard_id}: {self.kind}"


class ConsumerFeatures(models.Model):
    """Everything a decision needs about a consumer's history, in one row, kept current incrementally.

    Updated in the same transaction as the event that changes it: an order opening
    (``features_on_order_opened``), a promise record written or recovered
    (``features_on_promise_record``), a charge attempt (``features_on_charge_attempt``),
    a dispute (``features_on_dispute``). A decision reads this row and the credit
    profile, never the order history; time-based variables are derived from the
    timestamps here at decision time (``scoring.features.derive_variables``).

    ``open_orders`` / ``open_by_merchant`` count orders that hold credit (opened and
    not yet finished); ``recent_order_times`` keeps the opening times of the last 24
    hours for the velocity rules.
    """

    consumer = models.OneToOneField(
        "consumers.Consumer", on_delete=models.CASCADE, primary_key=True, related_name="features"
    )
    fulfilled_count = models.PositiveIntegerField(_("Kept promises"), default=0)
    cancelled_count = models.PositiveIntegerField(_("Cancelled"), default=0)
    breached_count = models.PositiveIntegerField(_("Breached"), default=0)
    recovered_count = models.PositiveIntegerField(_("Recovered"), default=0)
    worst_dpd = models.PositiveIntegerField(_("Worst days past due"), default=0)
    last_breach_at = models.DateTimeField(_("Last breach"), null=True, blank=True)
    orders_total = models.PositiveIntegerField(_("Orders opened"), default=0)
    first_order_at = models.DateTimeField(_("First order"), null=True, blank=True)
    last_order_at = models.DateTimeField(_("Last order"), null=True, blank=True)
    open_orders = models.PositiveIntegerField(_("Open orders"), default=0)
    open_by_merchant = models.JSONField(_("Open orders by merchant"), default=dict, blank=True)
    recent_order_times = ArrayField(models.DateTimeField(), default=list, blank=True)
    scenario_counts = models.JSONField(_("Orders by scenario"), default=dict, blank=True)
    kept_merchant_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    charge_failures = models.PositiveIntegerField(_("Recent charge failures"), default=0)
    last_charge_failure_at = models.DateTimeField(_("Last charge failure"), null=True, blank=True)
    disputes_count = models.PositiveIntegerField(_("Disputes"), default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Consumer features")
        verbose_name_plural = _("Consumer features")

    def __str__(self) -> str:
        return f"features of consumer {self.consumer_id}"


class BlocklistEntry(models.Model):
    """A consumer account, phone number or resident ID that may not use pay-later, with the reason.

    ``value`` is what is matched: the consumer's id, the phone number, or the keyed
    hash of the resident ID (never the number itself). Entries are lifted, not
    deleted, so the history of who was blocked, by whom and why stays.
    """

    kind = models.CharField(_("Kind"), max_length=16, choices=BlocklistKind.choices)
    value = models.CharField(_("Value"), max_length=64)
    consumer = models.ForeignKey(
        "consumers.Consumer", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(_("Reason"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("Added at"), auto_now_add=True)
    lifted_at = models.DateTimeField(_("Lifted at"), null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    lift_reason = models.TextField(_("Lift reason"), blank=True)

    class Meta:
        verbose_name = _("Blocklist entry")
        verbose_name_plural = _("Blocklist")
        ordering = ["-created_at", "-id"]
        constraints = [
            # One active entry per thing blocked; admission looks entries up by (kind, value).
            models.UniqueConstraint(
                fields=["kind", "value"], condition=Q(lifted_at__isnull=True), name="blocklist_active_unique"
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="blocklist_has_reason"),
            models.CheckConstraint(
                condition=Q(lifted_at__isnull=True) | ~Q(lift_reason=""), name="blocklist_lift_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.value}"


class AdmissionDecision(models.Model):
    """One 事前准入评估: the outcome, the reasons, and what it was based on.

    ``reasons`` is a list of ``{"code", "message", "message_zh", "hint", "hint_zh"}``
    objects for the policy rules that failed, in the policy's order; ``score_reasons``
    the scorecard's top reasons (the variables that cost the most points). ``snapshot``
    keeps the inputs the decision read (profile amounts, counters, thresholds) and, under
    ``"features"``, the scorecard's input variables, so a decision can be explained and
    replayed later, and a new scorecard trained, without reading anything that happened
    after it.
    """

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.PROTECT, related_name="admission_decisions")
    listing = models.ForeignKey("merchants.Listing", on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(_("Amount"), max_digits=12, decimal_places=2)
    channel = models.CharField(_("Channel"), max_length=16, choices=DecisionChannel.choices)
    outcome = models.CharField(_("Outcome"), max_length=16, choices=DecisionOutcome.choices)
    reasons = models.JSONField(_("Reasons"), default=list, blank=True)
    score = models.PositiveSmallIntegerField(_("Score"), null=True, blank=True)
    sub_scores = models.JSONField(_("Points by dimension"), default=dict, blank=True)
    score_reasons = models.JSONField(_("Score reasons"), default=list, blank=True)
    snapshot = models.JSONField(_("Snapshot"), default=dict, blank=True)
    scorecard = models.ForeignKey(Scorecard, on_delete=models.PROTECT, null=True, blank=True, related_name="decisions")
    scorecard_version = models.CharField(_("Scorecard version"), max_length=40, blank=True)
    policy_version = models.CharField(_("Policy version"), max_length=32)
    latency_ms = models.DecimalField(_("Latency (ms)"), max_digits=10, decimal_places=3, default=0)
    created_at = models.DateTimeField(_("Time"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("Admission decision")
        verbose_name_plural = _("Admission decision")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["consumer", "-created_at"], name="decision_consumer_recent_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="decision_amount_positive"),
            models.CheckConstraint(
                condition=Q(outcome=DecisionOutcome.APPROVED) | ~Q(reasons=[]), name="decision_decline_has_reasons"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.consumer} · {self.listing} · {self.outcome}"

    @property
    def approved(self) -> bool:
        return self.outcome == DecisionOutcome.APPROVED
