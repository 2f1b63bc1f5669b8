"""The sandbox payment provider's own tables.

The sandbox plays the part of an outside payment provider (a bank or a wallet) so
that charging can be exercised end to end without a network: consumers' simulated
funding sources with balances, the charges and refunds the "provider" has recorded
under each idempotency key, and a switchable fault configuration. Nothing in the
platform's own books reads these tables; the platform only talks to the provider
through ``bnpl.gateway``.
"""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


def new_funding_token() -> str:
    """A provider-side token for a funding source (what a real provider would hand back)."""
    return f"sfs_{secrets.token_hex(12)}"


def new_charge_reference() -> str:
    return f"sch_{secrets.token_hex(12)}"


def new_refund_reference() -> str:
    return f"srf_{secrets.token_hex(12)}"


def new_payout_reference() -> str:
    return f"spo_{secrets.token_hex(12)}"


class SandboxFundingSource(models.Model):
    """A consumer's simulated bank card or wallet, with a balance the sandbox debits.

    ``token`` is what the platform passes to ``gateway.charge``; a frozen source is
    declined with ``card_frozen`` and a short balance with ``insufficient_funds``.
    """

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.PROTECT, related_name="sandbox_sources")
    token = models.CharField(_("Token"), max_length=40, unique=True, default=new_funding_token, editable=False)
    label = models.CharField(_("Label"), max_length=64)
    balance_amount = models.DecimalField(_("Balance"), max_digits=12, decimal_places=2)
    frozen = models.BooleanField(_("Frozen"), default=False)
    is_default = models.BooleanField(_("Default"), default=False)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Sandbox funding source")
        verbose_name_plural = _("Sandbox funding sources")
        ordering = ["consumer_id", "-is_default", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(balance_amount__gte=0), name="sandbox_source_balance_non_negative"),
            models.UniqueConstraint(
                fields=["consumer"], condition=Q(is_default=True), name="sandbox_source_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.label


class SandboxChargeStatus(models.TextChoices):
    SUCCEEDED = "succeeded", _("Succeeded")
    DECLINED = "declined", pgettext_lazy("payment outcome", "Declined")


class SandboxCharge(models.Model):
    """A charge as the provider recorded it, one per idempotency key (declines included).

    A repeated request under the same key returns this row's result instead of
    moving money again, the way a real provider honours an idempotency key.
    ``funding_source`` is empty when the token named no known source.
    """

    idempotency_key = models.CharField(_("Idempotency key"), max_length=128, unique=True)
    funding_source = models.ForeignKey(
        SandboxFundingSource, on_delete=models.PROTECT, null=True, blank=True, related_name="charges"
    )
    funding_token = models.CharField(_("Funding source token"), max_length=40)
    amount = models.DecimalField(_("Amount"), max_digits=12, decimal_places=2)
    status = models.CharField(_("Status"), max_length=16, choices=SandboxChargeStatus.choices)
    decline_code = models.CharField(_("Decline code"), max_length=32, blank=True)
    reference = models.CharField(_("Reference"), max_length=40, unique=True, default=new_charge_reference)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Sandbox charge")
        verbose_name_plural = _("Sandbox charges")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="sandbox_charge_amount_positive"),
            models.CheckConstraint(
                condition=Q(status="succeeded", decline_code="", funding_source__isnull=False)
                | (Q(status="declined") & ~Q(decline_code="")),
                name="sandbox_charge_decline_has_code",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount} {self.status}"


class SandboxRefund(models.Model):
    """A refund of (part of) a succeeded sandbox charge, one per idempotency key.

    The provider keeps Σ refunds ≤ the charge amount by locking the charge row while
    it adds a refund (``bnpl.gateway.sandbox``).
    """

    idempotency_key = models.CharField(_("Idempotency key"), max_length=128, unique=True)
    charge = models.ForeignKey(SandboxCharge, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(_("Amount"), max_digits=12, decimal_places=2)
    reference = models.CharField(_("Reference"), max_length=40, unique=True, default=new_refund_reference)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Sandbox refund")
        verbose_name_plural = _("Sandbox refunds")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="sandbox_refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount}"


class SandboxPayoutStatus(models.TextChoices):
    SUCCEEDED = "succeeded", _("Succeeded")
    DECLINED = "declined", pgettext_lazy("payment outcome", "Declined")


class SandboxPayout(models.Model):
    """A payout (transfer to a merchant's bank account) as the provider recorded it, one per idempotency key.

    Declines are recorded under their key too, like charges: a repeat of the key replays the
    decline, and a retry of the payout must come with a new key.
    """

    idempotency_key = models.CharField(_("Idempotency key"), max_length=128, unique=True)
    account = models.CharField(_("Account number"), max_length=64)
    amount = models.DecimalField(_("Amount"), max_digits=14, decimal_places=2)
    status = models.CharField(_("Status"), max_length=16, choices=SandboxPayoutStatus.choices)
    decline_code = models.CharField(_("Decline code"), max_length=32, blank=True)
    reference = models.CharField(_("Reference"), max_length=40, unique=True, default=new_payout_reference)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Sandbox payout")
        verbose_name_plural = _("Sandbox payouts")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="sandbox_payout_amount_positive"),
            models.CheckConstraint(
                condition=Q(status="succeeded", decline_code="") | (Q(status="declined") & ~Q(decline_code="")),
                name="sandbox_payout_decline_has_code",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.amount} {self.status}"


class SandboxFaultConfig(models.Model):
    """The sandbox's switchable faults, a single row (pk 1) shared by every process.

    It lives in the database because the HTTP sandbox runs in another process (the
    web server) from the tests and benchmarks that switch faults on. Each ``*_rate``
    is a share of requests between 0 and 1 (1 = always); which requests are hit is
    decided by a hash of ``seed`` and the idempotency key, so a run is reproducible
    and a network retry of the same request meets the same fault.

    - ``latency_ms``: every request waits this long before being processed;
    - ``timeout_rate``: the request is dropped unprocessed and the caller times out;
    - ``lost_response_rate``: the request is processed (money moves) but the
      response is lost, so the caller sees a timeout;
    - ``error_rate``: the provider answers HTTP 503 without processing;
    - ``risk_reject_rate``: charges are declined with ``risk_rejected``.
    """

    SINGLETON_PK = 1

    latency_ms = models.PositiveIntegerField(_("Added latency (ms)"), default=0)
    timeout_rate = models.DecimalField(_("Timeout rate"), max_digits=5, decimal_places=4, default=0)
    lost_response_rate = models.DecimalField(_("Lost response rate"), max_digits=5, decimal_places=4, default=0)
    error_rate = models.DecimalField(_("HTTP 5xx rate"), max_digits=5, decimal_places=4, default=0)
    risk_reject_rate = models.DecimalField(_("Risk rejection rate"), max_digits=5, decimal_places=4, default=0)
    seed = models.IntegerField(_("Seed"), default=0)
    updated_at = models.DateTimeField(_("Updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Sandbox fault configuration")
        verbose_name_plural = _("Sandbox fault configuration")
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="sandbox_faults_singleton"),
            models.CheckConstraint(
                condition=Q(timeout_rate__gte=0, timeout_rate__lte=1)
                & Q(lost_response_rate__gte=0, lost_response_rate__lte=1)
                & Q(error_rate__gte=0, error_rate__lte=1)
                & Q(risk_reject_rate__gte=0, risk_reject_rate__lte=1),
                name="sandbox_faults_rates_in_range",
            ),
        ]

    def __str__(self) -> str:
        return "sandbox faults"
