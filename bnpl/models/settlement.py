"""After the charge: merchant refunds, consumer disputes, and merchant settlement (docs/settlement.md).

- :class:`Refund`: one refund of a charged order, written *before* the gateway is
  called, with a fixed gateway idempotency key (the charge attempt's pattern).
- :class:`Dispute` (+ :class:`DisputeEvidence`, :class:`DisputeEvent`): a consumer's
  complaint about an order; it pauses the charge, or holds the disputed amount from
  the merchant's payout, until staff decide.
- :class:`SettlementBatch` / :class:`SettlementItem` / :class:`Payout`: the daily
  settlement of what the platform owes each merchant. Every merchant-payable ledger
  entry lands in at most one batch: ``SettlementItem.ledger_entry`` is unique, so two
  settlement jobs running at once can never settle the same entry twice.
  :class:`UnsettledEntry` is the queue of the entries no batch has taken yet.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

# --------------------------------------------------------------------------- refunds


class RefundStatus(models.TextChoices):
    """``pending``: written, gateway not answered yet; ``unknown``: the gateway could not say (reconciled later)."""

    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Succeeded")
    DECLINED = "declined", pgettext_lazy("refund outcome", "Declined")
    UNKNOWN = "unknown", _("Unknown")


REFUND_IN_FLIGHT = (RefundStatus.PENDING, RefundStatus.UNKNOWN)


class Refund(models.Model):
    """A refund of (part of) a charged order to the consumer, borne by the merchant.

    ``idempotency_key`` is the caller's (merchant API key, or ``dispute:<id>``): a replay
    returns this row. ``gateway_key`` is ours, fixed before the gateway is called and
    reused for every resend and reconciliation, so the provider refunds at most once.
    At most one refund per order is in flight at a time (a partial unique constraint),
    so "refunded ≤ charged" can be checked on the locked order row.
    """

    order = models.ForeignKey("bnpl.CreditOrder", on_delete=models.PROTECT, related_name="refunds")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    dispute = models.ForeignKey("bnpl.Dispute", on_delete=models.PROTECT, null=True, blank=True, related_name="refunds")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_kind = models.CharField(max_length=16)
    amount = models.DecimalField(_("Amount"), max_digits=12, decimal_places=2)
    reason = models.CharField(_("Reason"), max_length=200)
    idempotency_key = models.CharField(_("Idempotency key"), max_length=128)
    gateway_key = models.CharField(_("Gateway idempotency key"), max_length=128, unique=True)
    charge_reference = models.CharField(_("Charge reference"), max_length=64)
    status = models.CharField(_("Status"), max_length=16, choices=RefundStatus.choices, default=RefundStatus.PENDING)
    decline_code = models.CharField(_("Decline code"), max_length=32, blank=True)
    message = models.CharField(_("Gateway message"), max_length=255, blank=True)
    gateway_reference = models.CharField(_("Gateway reference"), max_length=64, blank=True)
    requested_at = models.DateTimeField(_("Requested at"), default=timezone.now)
    last_sent_at = models.DateTimeField(_("Last sent at"), default=timezone.now)
    finished_at = models.DateTimeField(_("Finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Refund")
        verbose_name_plural = _("Refunds")
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "idempotency_key"], name="refund_idempotency_unique"),
            models.UniqueConstraint(
                fields=["order"], condition=Q(status__in=["pending", "unknown"]), name="refund_one_in_flight_per_order"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "unknown"], finished_at__isnull=True)
                | Q(status__in=["succeeded", "declined"], finished_at__isnull=False),
                name="refund_final_has_time",
            ),
        ]
        indexes = [
            # reconcile_pending_refunds: refunds whose outcome is still open, oldest first.
            models.Index(
                fields=["last_sent_at"], condition=Q(status__in=["pending", "unknown"]), name="refund_in_flight_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gateway_key} {self.amount} ({self.status})"


# --------------------------------------------------------------------------- disputes


class DisputeReason(models.TextChoices):
    NOT_RECEIVED = "not_received", _("Not received")
    FAULTY = "faulty", _("Faulty or not as described")
    WRONG_AMOUNT = "wrong_amount", _("Wrong amount")
    ALREADY_PAID = "already_paid", _("Already paid")
    NOT_AUTHORISED = "not_authorised", _("Not authorised by me")


class DisputeStatus(models.TextChoices):
    OPEN = "open", _("Open")
    MERCHANT_RESPONDED = "merchant_responded", _("Merchant responded")
    DECIDED = "decided", _("Decided")
    WITHDRAWN = "withdrawn", _("Withdrawn")


class DisputeOutcome(models.TextChoices):
    NONE = "", _("Not decided")
    CONSUMER_WON = "consumer_won", _("Consumer won")
    MERCHANT_WON = "merchant_won", _("Merchant won")


DISPUTE_ACTIVE = (DisputeStatus.OPEN, DisputeStatus.MERCHANT_RESPONDED)

DISPUTE_TRANSITIONS: dict[str, frozenset[str]] = {
    DisputeStatus.OPEN: frozenset({DisputeStatus.MERCHANT_RESPONDED, DisputeStatus.DECIDED, DisputeStatus.WITHDRAWN}),
    DisputeStatus.MERCHANT_RESPONDED: frozenset({DisputeStatus.DECIDED, DisputeStatus.WITHDRAWN}),
    DisputeStatus.DECIDED: frozenset(),
    DisputeStatus.WITHDRAWN: frozenset(),
}


class Dispute(models.Model):
    """A consumer's dispute of a credit order (Klarna-style lifecycle with a response deadline).

    Opened before the charge, it pauses the charge (``CreditOrder.charge_paused``);
    opened after, the disputed amount is held from the merchant's payout by the
    settlement job until the dispute is decided or withdrawn. ``after_charge`` records
    which, as it was when the dispute opened. One active dispute per order.
    """

    order = models.ForeignKey("bnpl.CreditOrder", on_delete=models.PROTECT, related_name="disputes")
    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.PROTECT, related_name="disputes")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="disputes")
    reason = models.CharField(_("Reason"), max_length=24, choices=DisputeReason.choices)
    description = models.TextField(_("Description"), blank=True)
    disputed_amount = models.DecimalField(_("Disputed amount"), max_digits=12, decimal_places=2)
    after_charge = models.BooleanField(_("Opened after the charge"), default=False)
    status = models.CharField(_("Status"), max_length=24, choices=DisputeStatus.choices, default=DisputeStatus.OPEN)
    outcome = models.CharField(_("Outcome"), max_length=16, choices=DisputeOutcome.choices, blank=True, default="")
    respond_by = models.DateTimeField(_("Merchant responds by"))
    response_text = models.TextField(_("Merchant response"), blank=True)
    responded_at = models.DateTimeField(_("Responded at"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decision_reason = models.TextField(_("Decision reason"), blank=True)
    decided_at = models.DateTimeField(_("Decided at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("Closed at"), null=True, blank=True)
    created_at = models.DateTimeField(_("Opened at"), default=timezone.now)

    class Meta:
        verbose_name = _("Dispute")
        verbose_name_plural = _("Disputes")
        ordering = ["-created_at", "-id"]
        # Deciding moves money (refund or release of the hold): its own permission (bnpl/staff_groups.py).
        permissions = [("decide_dispute", _("Can decide disputes"))]
        constraints = [
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status__in=["open", "merchant_responded"]),
                name="dispute_one_active_per_order",
            ),
            models.CheckConstraint(condition=Q(disputed_amount__gt=0), name="dispute_amount_positive"),
            models.CheckConstraint(
                condition=Q(status="decided", outcome__in=["consumer_won", "merchant_won"])
                | (~Q(status="decided") & Q(outcome="")),
                name="dispute_decided_has_outcome",
            ),
        ]

    def __str__(self) -> str:
        return f"dispute {self.pk} on order {self.order_id} ({self.status})"


class DisputeEvidence(models.Model):
    """A file the merchant (or consumer) attached to a dispute: photos, delivery proof, chat logs."""

    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="evidence")
    file = models.FileField(_("File"), upload_to="disputes/%Y/%m/")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("Uploaded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Dispute evidence")
        verbose_name_plural = _("Dispute evidence")
        ordering = ["dispute_id", "id"]

    def __str__(self) -> str:
        return self.file.name


class DisputeEvent(models.Model):
    """Append-only row for every dispute state change: who, when, from, to, why."""

    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_kind = models.CharField(max_length=16)
    from_status = models.CharField(max_length=24, blank=True)
    to_status = models.CharField(max_length=24)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("Dispute event")
        verbose_name_plural = _("Dispute events")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.dispute_id}: {self.from_status or '∅'} → {self.to_status}"


# --------------------------------------------------------------------------- settlement


class SettlementItemKind(models.TextChoices):
    COMPLETION = "completion", _("Order")
    FEE = "fee", _("Fee")
    REFUND = "refund", _("Refund")
    ADJUSTMENT = "adjustment", _("Adjustment")
    HOLD = "hold", _("Dispute hold")
    RELEASE = "release", _("Dispute hold released")


class SettlementBatch(models.Model):
    """结算批次: what one merchant is paid for one business day.

    ``net = gross − fee − refund + adjustment − held + released``, every figure the sum
    of the batch's items (a database check keeps the identity). One batch per merchant
    per business day; entries posted up to ``cutoff_at`` that became settleable and were
    in no earlier batch.
    """

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="settlement_batches")
    business_date = models.DateField(_("Business day"))
    cutoff_at = models.DateTimeField(_("Entries up to"))
    gross_amount = models.DecimalField(_("Gross"), max_digits=14, decimal_places=2, default=0)
    fee_amount = models.DecimalField(_("Fees"), max_digits=14, decimal_places=2, default=0)
    refund_amount = models.DecimalField(_("Refunds"), max_digits=14, decimal_places=2, default=0)
    adjustment_amount = models.DecimalField(_("Adjustments"), max_digits=14, decimal_places=2, default=0)
    held_amount = models.DecimalField(_("Held (disputes)"), max_digits=14, decimal_places=2, default=0)
    released_amount = models.DecimalField(_("Released holds"), max_digits=14, decimal_places=2, default=0)
    net_amount = models.DecimalField(_("Net"), max_digits=14, decimal_places=2, default=0)
    item_count = models.PositiveIntegerField(_("Lines"), default=0)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Settlement batch")
        verbose_name_plural = _("Settlement batches")
        ordering = ["-business_date", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "business_date"], name="settlement_batch_one_per_day"),
            models.CheckConstraint(
                condition=Q(
                    net_amount=F("gross_amount")
                    - F("fee_amount")
                    - F("refund_amount")
                    + F("adjustment_amount")
                    - F("held_amount")
                    + F("released_amount")
                ),
                name="settlement_batch_net_identity",
            ),
            models.CheckConstraint(condition=Q(net_amount__gt=0), name="settlement_batch_net_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id} {self.business_date}: {self.net_amount}"


class SettlementItem(models.Model):
    """One line of a batch: a merchant-payable ledger entry, or a dispute hold or its release.

    ``amount`` is signed from the merchant's side (+ owed to the merchant). The unique
    ``ledger_entry`` is the guarantee that an entry is settled once, whoever races; the
    unique (dispute, kind) that a dispute is held and released at most once.
    """

    batch = models.ForeignKey(SettlementBatch, on_delete=models.PROTECT, related_name="items")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    order = models.ForeignKey("bnpl.CreditOrder", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    ledger_entry = models.OneToOneField(
        "bnpl.LedgerEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="settlement_item"
    )
    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    kind = models.CharField(_("Type"), max_length=16, choices=SettlementItemKind.choices)
    amount = models.DecimalField(_("Amount"), max_digits=14, decimal_places=2)
    occurred_at = models.DateTimeField(_("Time"))

    class Meta:
        verbose_name = _("Settlement line")
        verbose_name_plural = _("Settlement lines")
        ordering = ["batch_id", "occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dispute", "kind"], condition=Q(dispute__isnull=False), name="settlement_item_dispute_once"
            ),
            models.CheckConstraint(
                condition=Q(ledger_entry__isnull=False, dispute__isnull=True)
                | Q(ledger_entry__isnull=True, dispute__isnull=False, kind__in=["hold", "release"]),
                name="settlement_item_has_one_source",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"


#: Queue every merchant-payable entry of a settled kind that is in no settlement item yet (idempotent). The
#: trigger of migration 0015 queues new entries as they are posted; this fills the queue for entries loaded
#: without it (bench/generate.py's bulk load), through ``queue_unsettled_entries`` (bnpl/settlement.py).
#: Migration 0015 ran the same statement for the existing ledger, from its own frozen copy.
UNSETTLED_ENTRY_BACKFILL = """
INSERT INTO bnpl_unsettledentry (entry_id, account_id, created_at)
SELECT e.id, e.account_id, e.created_at
FROM bnpl_ledgerentry e
JOIN bnpl_ledgeraccount a ON a.id = e.account_id
JOIN bnpl_ledgertransaction t ON t.id = e.transaction_id
WHERE a.kind = 'merchant_payable'
  AND t.kind IN ('completion', 'fee', 'refund', 'adjustment')
  AND NOT EXISTS (SELECT 1 FROM bnpl_settlementitem s WHERE s.ledger_entry_id = e.id)
ON CONFLICT (entry_id) DO NOTHING
"""


class UnsettledEntry(models.Model):
    """The settlement queue: a merchant-payable ledger entry that no batch has taken yet.

    A row is written by the database, in the posting's own transaction, for each entry of a
    completion, fee, refund or adjustment posting on a merchant-payable account (trigger
    ``bnpl_ledgerentry_settlement_queue``, migration 0015), and deleted by the settlement job in
    the transaction that puts the entry in a batch. The daily selection therefore reads the
    entries still waiting (the day's, and older ones whose order is not settleable yet) instead
    of the account's whole history. Unlike a high-water mark of entry ids, it cannot skip an
    entry whose posting commits after a later one (docs/settlement.md). Not part of the ledger:
    its rows are deleted, the ledger stays append-only. ``created_at`` is the entry's posting time.
    """

    # DO_NOTHING: ledger entries are never deleted; the ledger's own trigger refuses it, not Django's collector.
    entry = models.OneToOneField("bnpl.LedgerEntry", on_delete=models.DO_NOTHING, primary_key=True, related_name="+")
    # Indexed by unsettled_entry_account_idx below (account first), so no separate FK index.
    account = models.ForeignKey("bnpl.LedgerAccount", on_delete=models.PROTECT, related_name="+", db_index=False)
    created_at = models.DateTimeField(_("Posted at"))

    class Meta:
        verbose_name = _("Unsettled entry")
        verbose_name_plural = _("Unsettled entries")
        ordering = ["account_id", "created_at", "entry_id"]
        indexes = [
            # settle_merchants: one merchant's waiting entries posted before the cutoff.
            models.Index(fields=["account", "created_at"], name="unsettled_entry_account_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}: entry {self.entry_id}"


class PayoutStatus(models.TextChoices):
    """``pending``: not sent yet; ``sending``: key written, gateway not answered yet; ``unknown``: the gateway
    could not say (reconciled later); ``failed``: refused by the provider, retried on a schedule; ``paid``."""

    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    UNKNOWN = "unknown", _("Unknown")
    FAILED = "failed", _("Failed")
    PAID = "paid", _("Paid")


PAYOUT_IN_FLIGHT = (PayoutStatus.SENDING, PayoutStatus.UNKNOWN)


class Payout(models.Model):
    """The transfer of one batch's net to the merchant's bank account; posted to the ledger when paid.

    The payout job (``bnpl.settlement.payouts_send_due``) sends it through the gateway under
    ``gateway_key`` (``po_<id>_<attempt>_<random>``), written before the call and reused for every resend and
    reconciliation of that attempt; a failed payout is retried later with the next attempt's key (the
    provider moved no money under the failed one). The ledger's ``payout:<id>`` key makes a second
    posting impossible whatever races.
    """

    batch = models.OneToOneField(SettlementBatch, on_delete=models.PROTECT, related_name="payout")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="payouts")
    amount = models.DecimalField(_("Amount"), max_digits=14, decimal_places=2)
    status = models.CharField(_("Status"), max_length=16, choices=PayoutStatus.choices, default=PayoutStatus.PENDING)
    reference = models.CharField(_("Bank reference"), max_length=64, blank=True)
    paid_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    paid_at = models.DateTimeField(_("Paid at"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("Attempts"), default=0)
    gateway_key = models.CharField(_("Gateway idempotency key"), max_length=128, blank=True)
    last_sent_at = models.DateTimeField(_("Last sent at"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("Next attempt at"), null=True, blank=True)
    failure_code = models.CharField(_("Failure code"), max_length=32, blank=True)
    message = models.CharField(_("Gateway message"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Payout")
        verbose_name_plural = _("Payouts")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_positive"),
            models.CheckConstraint(
                condition=(~Q(status="paid") & Q(paid_at__isnull=True)) | Q(status="paid", paid_at__isnull=False),
                name="payout_paid_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["sending", "unknown"]) | ~Q(gateway_key=""),
                name="payout_in_flight_has_key",
            ),
        ]
        indexes = [
            # payouts_send_due / payouts_reconcile: payouts to send, to retry or to ask about.
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=["pending", "failed", "sending", "unknown"]),
                name="payout_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"payout {self.pk}: {self.amount} ({self.status})"
