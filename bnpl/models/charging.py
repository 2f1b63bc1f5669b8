"""Charging: every attempt to take a credit order's money, and the runs that make them.

A :class:`ChargeAttempt` is written, with its fixed idempotency key, *before* the
gateway is called (docs/charging.md). The key is sent again on every network retry
of that attempt and on every resend after a crash, so the provider moves money at
most once per attempt. Two partial unique constraints carry the invariants that no
code path may break, whichever worker or process writes:

- ``charge_attempt_one_success_per_order``: at most one succeeded attempt per order
  (architecture invariant 1, "one successful charge per credit order");
- ``charge_attempt_one_in_flight_per_order``: at most one attempt per order whose
  outcome is not known yet (pending or unknown), so a new attempt is never started
  while an earlier one might still take the money.

A :class:`ChargeRun` is one execution of the charge run by one worker: counts,
totals and progress for staff in the admin.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class AttemptStatus(models.TextChoices):
    """Where a charge attempt stands.

    ``pending``: written, sent (or about to be sent), no answer recorded yet.
    ``unknown``: the gateway could not say (timeout, lost response); only the reconcile job moves it on.
    ``not_found``: reconcile learnt the provider never saw the key: no money moved, a new attempt is safe.
    """

    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Succeeded")
    DECLINED = "declined", pgettext_lazy("payment outcome", "Declined")
    UNKNOWN = "unknown", _("Unknown")
    NOT_FOUND = "not_found", _("Not found at the provider")


# Outcomes still open: the provider may yet have taken (or take) the money.
IN_FLIGHT_STATUSES = (AttemptStatus.PENDING, AttemptStatus.UNKNOWN)
FINAL_STATUSES = (AttemptStatus.SUCCEEDED, AttemptStatus.DECLINED, AttemptStatus.NOT_FOUND)


class ChargeTrigger(models.TextChoices):
    """What started an attempt."""

    SCHEDULED = "scheduled", _("Charge run (due)")
    RETRY = "retry", _("Charge run (retry)")
    PAY_NOW = "pay_now", _("Consumer paid now")
    COLLECT = "collect", _("Collection requested")
    RECONCILE = "reconcile", _("Replacement after reconciliation")


class DpdBucket(models.TextChoices):
    """Delinquency buckets by days past due (Fineract-style), kept by the daily overdue job."""

    CURRENT = "", _("Current")
    M0 = "M0", _("M0 (1–30 days)")
    M1 = "M1", _("M1 (31–60 days)")
    M2 = "M2", _("M2 (61–90 days)")
    M3_PLUS = "M3+", _("M3+ (over 90 days)")


class ChargeRunKind(models.TextChoices):
    CHARGE = "charge", _("Charge run")
    RECONCILE = "reconcile", _("Reconciliation")


class ChargeRunStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    FINISHED = "finished", _("Finished")
    FAILED = "failed", _("Failed")


# Extra decline code of our own: the consumer has no funding source to charge (the gateway is not called).
NO_FUNDING_SOURCE = "no_funding_source"
# Extra decline code recorded for an attempt the provider never saw (``not_found`` after reconciliation).
NOT_FOUND_CODE = "not_found"


class ChargeRun(models.Model):
    """One execution of the charge run (or of the reconcile job) by one worker.

    Several runs may be ``running`` at once (several workers share the due orders
    through ``SKIP LOCKED``). Counters are incremented once per chunk; ``progress_at``
    is the heartbeat, so a run whose worker was killed is recognisable (it stops
    moving) and is marked ``failed`` by the next run.
    """

    kind = models.CharField(_("Kind"), max_length=16, choices=ChargeRunKind.choices, default=ChargeRunKind.CHARGE)
    worker = models.CharField(_("Worker"), max_length=100)
    status = models.CharField(
        _("Status"), max_length=16, choices=ChargeRunStatus.choices, default=ChargeRunStatus.RUNNING
    )
    started_at = models.DateTimeField(_("Started at"), default=timezone.now)
    progress_at = models.DateTimeField(_("Last progress"), default=timezone.now)
    finished_at = models.DateTimeField(_("Finished at"), null=True, blank=True)
    chunks = models.PositiveIntegerField(_("Chunks"), default=0)
    claimed = models.PositiveIntegerField(_("Orders claimed"), default=0)
    resent = models.PositiveIntegerField(_("Pending attempts resent"), default=0)
    succeeded = models.PositiveIntegerField(_("Succeeded"), default=0)
    declined = models.PositiveIntegerField(pgettext_lazy("payment outcome", "Declined"), default=0)
    unknown = models.PositiveIntegerField(_("Unknown"), default=0)
    errors = models.PositiveIntegerField(_("Errors"), default=0)
    succeeded_amount = models.DecimalField(_("Amount charged"), max_digits=14, decimal_places=2, default=0)
    declined_amount = models.DecimalField(_("Amount declined"), max_digits=14, decimal_places=2, default=0)
    unknown_amount = models.DecimalField(_("Amount unknown"), max_digits=14, decimal_places=2, default=0)
    note = models.TextField(_("Note"), blank=True)

    class Meta:
        verbose_name = _("Charge run")
        verbose_name_plural = _("Charge runs")
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="running", finished_at__isnull=True)
                | (~Q(status="running") & Q(finished_at__isnull=False)),
                name="charge_run_finished_has_time",
            ),
        ]
        indexes = [
            # The stale-run sweep at the start of every run: running rows whose heartbeat stopped.
            models.Index(fields=["progress_at"], condition=Q(status="running"), name="charge_run_running_idx"),
            # Admin dashboard (bnpl/admin_dashboard.py): today's runs; and the changelist, newest first.
            models.Index(fields=["started_at"], name="charge_run_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} run #{self.pk} ({self.status})"


class ChargeAttempt(models.Model):
    """One attempt to charge a credit order through the payment gateway.

    ``idempotency_key`` is fixed when the row is written, before the gateway is called,
    and reused for every network retry and every resend of this attempt; a new attempt
    (a retry after a decline) gets a new row and a new key. ``sequence`` numbers the
    attempts of one order (1, 2, …). ``funding_token`` is the provider token of the
    consumer's funding source at the time (empty: the consumer had none, and the
    attempt is declined with ``no_funding_source`` without calling the gateway).
    ``finished_at`` is set when the outcome became final (succeeded, declined,
    not_found); pending and unknown attempts have none.
    """

    # Indexed by the (order, sequence) unique constraint below, order first.
    order = models.ForeignKey(
        "bnpl.CreditOrder", on_delete=models.PROTECT, related_name="charge_attempts", db_index=False
    )
    run = models.ForeignKey(ChargeRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="attempts")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    sequence = models.PositiveIntegerField(_("Attempt no."))
    idempotency_key = models.CharField(_("Idempotency key"), max_length=128, unique=True)
    trigger = models.CharField(_("Trigger"), max_length=16, choices=ChargeTrigger.choices)
    amount = models.DecimalField(_("Amount"), max_digits=12, decimal_places=2)
    funding_token = models.CharField(_("Funding source token"), max_length=40, blank=True)
    status = models.CharField(_("Status"), max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.PENDING)
    decline_code = models.CharField(_("Decline code"), max_length=32, blank=True)
    message = models.CharField(_("Gateway message"), max_length=255, blank=True)
    gateway_reference = models.CharField(_("Gateway reference"), max_length=64, blank=True)
    send_count = models.PositiveSmallIntegerField(_("Times sent"), default=1)
    requested_at = models.DateTimeField(_("Requested at"), default=timezone.now)
    last_sent_at = models.DateTimeField(_("Last sent at"), default=timezone.now)
    finished_at = models.DateTimeField(_("Finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Charge attempt")
        verbose_name_plural = _("Charge attempts")
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "sequence"], name="charge_attempt_sequence_unique"),
            # Invariant 1: one successful charge per credit order, whatever writes the row.
            models.UniqueConstraint(
                fields=["order"], condition=Q(status="succeeded"), name="charge_attempt_one_success_per_order"
            ),
            # No new attempt while one may still take the money (pending, or outcome unknown).
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status__in=["pending", "unknown"]),
                name="charge_attempt_one_in_flight_per_order",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="charge_attempt_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "unknown"], finished_at__isnull=True)
                | Q(status__in=["succeeded", "declined", "not_found"], finished_at__isnull=False),
                name="charge_attempt_final_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["declined", "not_found"]) | ~Q(decline_code=""),
                name="charge_attempt_decline_has_code",
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | ~Q(gateway_reference=""),
                name="charge_attempt_success_has_reference",
            ),
        ]
        indexes = [
            # Charge run, resume step: pending attempts whose worker stopped before recording them.
            models.Index(fields=["last_sent_at"], condition=Q(status="pending"), name="charge_attempt_pending_idx"),
            # Reconcile job: attempts with an unknown outcome, oldest first.
            models.Index(fields=["last_sent_at"], condition=Q(status="unknown"), name="charge_attempt_unknown_idx"),
            # Admin dashboard (bnpl/admin_dashboard.py): today's failed attempts, a small slice of a large table.
            models.Index(
                fields=["requested_at"],
                condition=Q(status__in=["declined", "unknown", "not_found"]),
                name="charge_attempt_failed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.idempotency_key} ({self.status})"
