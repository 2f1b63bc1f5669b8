"""The pay-later core: agreements, credit orders, their bills, usage and events."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from bnpl.choices import OPEN_STATUSES, ActorKind, AgreementStatus, OrderStatus
from merchants.choices import ConfirmMode, Scenario

from .charging import DpdBucket


class Agreement(models.Model):
    """先享服务授权: a consumer's standing authorisation for one merchant service.

    Under a valid agreement the merchant places orders server to server without
    asking the consumer each time. One valid agreement per consumer per listing
    (a partial unique constraint); signing again returns it.
    """

    consumer = models.ForeignKey("consumers.Consumer", on_delete=models.PROTECT, related_name="agreements")
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="agreements")
    listing = models.ForeignKey("merchants.Listing", on_delete=models.PROTECT, related_name="agreements")
    status = models.CharField(
        _("Status"), max_length=16, choices=AgreementStatus.choices, default=AgreementStatus.VALID
    )
    signed_at = models.DateTimeField(_("Signed at"))
    closed_at = models.DateTimeField(_("Closed at"), null=True, blank=True)
    close_reason = models.CharField(_("Close reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("Agreement")
        verbose_name_plural = _("Agreement")
        ordering = ["-signed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["consumer", "listing"], condition=Q(status="valid"), name="agreement_one_valid_per_listing"
            ),
            models.CheckConstraint(
                condition=Q(status="valid", closed_at__isnull=True) | Q(status="closed", closed_at__isnull=False),
                name="agreement_closed_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.consumer} ↔ {self.listing}"


class CreditOrder(models.Model):
    """先享订单: one use-first-pay-later order, charged exactly once after the service.

    ``max_amount`` is the most that may ever be charged (fixed at creation);
    ``amount_due`` is the final bill (Σ lines − Σ discounts), known at completion.
    ``hold_amount`` is what the order currently holds against the consumer's limit,
    kept on the order so a release gives back exactly what was taken.
    ``pricing_rule`` is a copy of the listing's rule at order time: a merchant who
    changes a price never changes an order already placed.
    """

    # No index of their own for merchant and consumer: every index this table has costs each order's non-HOT
    # update (the charge run makes two per order) an index write, and the composite indexes led by them
    # (``order_merchant_created_idx``, ``order_out_order_no_unique``, ``order_consumer_recent_idx``) serve every
    # lookup by either one, foreign-key checks included.
    merchant = models.ForeignKey(
        "merchants.Merchant", on_delete=models.PROTECT, related_name="credit_orders", db_index=False
    )
    listing = models.ForeignKey("merchants.Listing", on_delete=models.PROTECT, related_name="credit_orders")
    consumer = models.ForeignKey(
        "consumers.Consumer",
        on_delete=models.PROTECT,
        related_name="credit_orders",
        null=True,
        blank=True,
        db_index=False,
    )
    agreement = models.ForeignKey(
        Agreement, on_delete=models.PROTECT, related_name="credit_orders", null=True, blank=True
    )
    decision = models.ForeignKey(
        "scoring.AdmissionDecision", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    out_order_no = models.CharField(_("Merchant order no."), max_length=64)
    title = models.CharField(_("Title"), max_length=120)
    scenario = models.CharField(_("Scenario"), max_length=32, choices=Scenario.choices)
    confirm_mode = models.CharField(_("Confirmation mode"), max_length=16, choices=ConfirmMode.choices)
    pricing_rule = models.JSONField(_("Pricing rule (as ordered)"))
    status = models.CharField(_("Status"), max_length=24, choices=OrderStatus.choices, default=OrderStatus.CREATED)
    max_amount = models.DecimalField(_("Maximum amount"), max_digits=12, decimal_places=2)
    amount_due = models.DecimalField(_("Amount due"), max_digits=12, decimal_places=2, null=True, blank=True)
    hold_amount = models.DecimalField(_("Held amount"), max_digits=12, decimal_places=2, default=0)
    confirmation_token = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(_("Confirm by"), null=True, blank=True)
    confirmed_at = models.DateTimeField(_("Confirmed at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("Completed at"), null=True, blank=True)
    due_at = models.DateTimeField(_("Due at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("Closed at"), null=True, blank=True)
    close_reason = models.CharField(_("Close reason"), max_length=200, blank=True)
    # --- Charging and collection (bnpl/charging.py, bnpl/overdue.py; docs/charging.md).
    # True from the moment a charge attempt is written until its outcome is final; set and cleared in the same
    # transactions as the attempt row. The charge run tests it on the order row itself, so a worker that reaches
    # a row another worker has just claimed re-checks the new row version and skips it.
    charge_in_flight = models.BooleanField(_("Charge in progress"), default=False)
    charge_attempt_count = models.PositiveIntegerField(_("Charge attempts"), default=0)
    # Failed attempts that count for the retry schedule (declines, and attempts the provider never saw).
    charge_failure_count = models.PositiveIntegerField(_("Failed charge attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("Next charge attempt"), null=True, blank=True)
    collecting_since = models.DateTimeField(_("Collecting since"), null=True, blank=True)
    overdue_since = models.DateTimeField(_("Overdue since"), null=True, blank=True)
    dpd = models.PositiveIntegerField(_("Days past due"), default=0)
    dpd_bucket = models.CharField(_("Delinquency bucket"), max_length=4, choices=DpdBucket.choices, blank=True)
    guaranteed_at = models.DateTimeField(_("Guaranteed at"), null=True, blank=True)
    late_fee_amount = models.DecimalField(_("Late fee"), max_digits=12, decimal_places=2, default=0)
    paid_at = models.DateTimeField(_("Paid at"), null=True, blank=True)
    # When the platform's own charge succeeded (never for an order paid elsewhere): written with the succeeded
    # attempt by both charge paths (bnpl/charging.py, bnpl/charging_bulk.py), so that "charged by the platform" is
    # a fact of the order row — what the merchant dashboard's statement-level roll-up can see (bnpl/models/
    # order_stats.py) — rather than a probe of the attempts table per order.
    charged_at = models.DateTimeField(_("Charged at"), null=True, blank=True)
    # --- After the charge and disputes (bnpl/refunds.py, bnpl/disputes.py; docs/settlement.md).
    # Σ of succeeded refunds, a cache kept in the refund's own transaction on the locked row; the CHECK below makes
    # "refunded ≤ charged" hold for every writer.
    refunded_amount = models.DecimalField(_("Refunded"), max_digits=12, decimal_places=2, default=0)
    # An open dispute raised before the charge: the charge run leaves the order alone until it is decided.
    charge_paused = models.BooleanField(_("Charge paused (dispute)"), default=False)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("Updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Credit order")
        verbose_name_plural = _("Credit order")
        ordering = ["-created_at", "-id"]
        # Collection actions in the admin, apart from the change permission (which lets support cancel an
        # order): staff groups grant them separately (bnpl/staff_groups.py).
        permissions = [
            ("retry_charge_creditorder", _("Can charge credit orders again now")),
            ("write_off_creditorder", _("Can write off overdue credit orders")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "out_order_no"], name="order_out_order_no_unique"),
            models.CheckConstraint(condition=Q(max_amount__gt=0), name="order_max_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_due__isnull=True) | (Q(amount_due__gte=0) & Q(amount_due__lte=F("max_amount"))),
                name="order_amount_due_within_cap",
            ),
            models.CheckConstraint(
                condition=Q(hold_amount__gte=0) & Q(hold_amount__lte=F("max_amount")), name="order_hold_within_cap"
            ),
            # An order holding credit must belong to a consumer.
            models.CheckConstraint(
                condition=Q(hold_amount=0) | Q(consumer__isnull=False), name="order_hold_has_consumer"
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["completed", "collecting", "overdue", "paid"]) | Q(amount_due__isnull=False),
                name="order_completed_has_amount_due",
            ),
            models.CheckConstraint(condition=Q(late_fee_amount__gte=0), name="order_late_fee_non_negative"),
            models.CheckConstraint(
                condition=Q(refunded_amount=0) | (Q(refunded_amount__gt=0) & Q(refunded_amount__lte=F("amount_due"))),
                name="order_refunded_within_charged",
            ),
            models.CheckConstraint(
                condition=Q(dpd_bucket__in=["", "M0", "M1", "M2", "M3+"]), name="order_dpd_bucket_valid"
            ),
        ]
        indexes = [
            # Expiry job: pending confirmations past their deadline.
            models.Index(
                fields=["expires_at"], condition=Q(status="pending_confirmation"), name="order_pending_expiry_idx"
            ),
            # Charge run: completed orders by due time.
            models.Index(fields=["due_at"], condition=Q(status="completed"), name="order_due_idx"),
            # Charge run, retries: collecting and overdue orders by the time of their next attempt.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["collecting", "overdue"]),
                name="order_retry_due_idx",
            ),
            # Overdue job (classify_overdue): collecting orders by due time, to find those past the grace period.
            models.Index(fields=["due_at"], condition=Q(status="collecting"), name="order_collecting_due_idx"),
            # Overdue job, DPD refresh: every overdue order, by due time.
            models.Index(fields=["due_at"], condition=Q(status="overdue"), name="order_overdue_due_idx"),
            # Overdue job, DPD refresh: walks the overdue orders in id order, 5,000 at a time; without this each
            # chunk read and sorted every overdue order (docs/performance.md, "DPD refresh").
            models.Index(fields=["id"], condition=Q(status="overdue"), name="order_overdue_id_idx"),
            # Guarantee job (apply_guarantee): unguaranteed orders in collection, by first failure.
            models.Index(
                fields=["collecting_since"],
                condition=Q(status__in=["collecting", "overdue"], guaranteed_at__isnull=True),
                name="order_guarantee_due_idx",
            ),
            models.Index(fields=["consumer", "-created_at"], name="order_consumer_recent_idx"),
            # Merchant portal order list (bnpl/merchant_portal/selectors.py): keyset pages by (created_at, id),
            # by status, and by amount, for one merchant among millions of orders.
            models.Index(fields=["merchant", "-created_at", "-id"], name="order_merchant_created_idx"),
            models.Index(fields=["merchant", "status", "-created_at", "-id"], name="order_merchant_status_idx"),
            models.Index(fields=["merchant", "-max_amount", "-id"], name="order_merchant_amount_idx"),
            # The overdue list by amount (collections' worklist). Without it a small merchant's page read every
            # overdue order of the platform through order_overdue_id_idx: ids follow the table's physical order, so
            # the planner costed that walk as sequential I/O (docs/performance.md, "Merchant portal pages").
            models.Index(
                fields=["merchant", "-max_amount", "-id"],
                condition=Q(status="overdue"),
                name="order_merchant_overdue_amt_idx",
            ),
            # Agreement close check and open-order counts.
            models.Index(
                fields=["agreement"], condition=Q(status__in=sorted(OPEN_STATUSES)), name="order_open_agreement_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.out_order_no} ({self.status})"


class BillLine(models.Model):
    """One line of an order's final bill; discounts are their own lines (``is_discount``).

    ``amount_due = Σ lines − Σ discounts``, WeChat Pay Score's completion model.
    Quantities and unit prices keep four places (¥0.0167/minute); amounts two.
    """

    order = models.ForeignKey(CreditOrder, on_delete=models.CASCADE, related_name="bill_lines")
    position = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(_("Item"), max_length=64)
    quantity = models.DecimalField(_("Quantity"), max_digits=14, decimal_places=4)
    unit = models.CharField(_("Unit"), max_length=16, blank=True)
    unit_price = models.DecimalField(_("Unit price"), max_digits=12, decimal_places=4)
    amount = models.DecimalField(_("Amount"), max_digits=12, decimal_places=2)
    is_discount = models.BooleanField(_("Discount"), default=False)

    class Meta:
        verbose_name = _("Bill line")
        verbose_name_plural = _("Bill line")
        ordering = ["order_id", "position", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="bill_line_amount_non_negative"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="bill_line_quantity_non_negative"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="bill_line_unit_price_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {'-' if self.is_discount else ''}{self.amount}"


class UsageEvent(models.Model):
    """A metered usage report (a charging session, a parcel weighed, a gym visit).

    ``merchant_event_id`` is the merchant's idempotency id: unique per merchant, so a
    retried report returns the original event instead of counting twice.
    """

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    order = models.ForeignKey(CreditOrder, on_delete=models.CASCADE, related_name="usage_events")
    merchant_event_id = models.CharField(_("Merchant event id"), max_length=64)
    quantity = models.DecimalField(_("Quantity"), max_digits=14, decimal_places=4)
    occurred_at = models.DateTimeField(_("Occurred at"))
    properties = models.JSONField(_("Properties"), default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("Usage event")
        verbose_name_plural = _("Usage event")
        ordering = ["order_id", "occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "merchant_event_id"], name="usage_event_id_unique"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_quantity_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_event_id}: {self.quantity}"


class OrderEvent(models.Model):
    """An append-only row for every order state change: who, when, from, to, why.

    The same rows feed the consumer's timeline and, later, the merchant's webhooks.
    """

    order = models.ForeignKey(CreditOrder, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    from_status = models.CharField(max_length=24, choices=OrderStatus.choices, blank=True)
    to_status = models.CharField(max_length=24, choices=OrderStatus.choices)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("Order event")
        verbose_name_plural = _("Order event")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status or '∅'} → {self.to_status}"
