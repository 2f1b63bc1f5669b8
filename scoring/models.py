"""Admission decisions: every assessment is stored with its reasons (PIPL art. 24)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .choices import DecisionChannel, DecisionOutcome


class AdmissionDecision(models.Model):
    """One 事前准入评估: the outcome, the reasons, and what it was based on.

    ``reasons`` is a list of ``{"code", "message"}`` objects in the order they apply;
    ``snapshot`` keeps the inputs the decision read (score, limit, exposure, …) so a
    decision can be explained and replayed later without reading anything that
    happened after it.
    """

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.PROTECT, related_name="admission_decisions")
    listing = models.ForeignKey("merchants.Listing", on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(_("Amount"), max_digits=12, decimal_places=2)
    channel = models.CharField(_("Channel"), max_length=16, choices=DecisionChannel.choices)
    outcome = models.CharField(_("Outcome"), max_length=16, choices=DecisionOutcome.choices)
    reasons = models.JSONField(_("Reasons"), default=list, blank=True)
    snapshot = models.JSONField(_("Snapshot"), default=dict, blank=True)
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
