"""Enumerations and the credit-order state machine."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class OrderStatus(models.TextChoices):
    CREATED = "created", _("Created")
    PENDING_CONFIRMATION = "pending_confirmation", _("Awaiting confirmation")
    DECLINED = "declined", _("Declined")
    ACTIVE = "active", _("Active")
    EXPIRED = "expired", _("Expired")
    CANCELLED = "cancelled", _("Cancelled")
    COMPLETED = "completed", _("Awaiting charge")
    COLLECTING = "collecting", _("Collecting")
    OVERDUE = "overdue", _("Overdue")
    PAID = "paid", _("Paid")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
    REFUNDED = "refunded", _("Refunded")
    WRITTEN_OFF = "written_off", _("Written off")


S = OrderStatus

# The credit-order state machine (docs/architecture.md). A transition not listed here
# raises InvalidTransition; every transition writes an OrderEvent.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.CREATED: frozenset({S.PENDING_CONFIRMATION, S.ACTIVE, S.DECLINED}),
    S.PENDING_CONFIRMATION: frozenset({S.ACTIVE, S.DECLINED, S.EXPIRED, S.CANCELLED}),
    S.ACTIVE: frozenset({S.COMPLETED, S.CANCELLED}),
    S.COMPLETED: frozenset({S.PAID, S.COLLECTING}),
    S.COLLECTING: frozenset({S.PAID, S.OVERDUE}),
    S.OVERDUE: frozenset({S.PAID, S.WRITTEN_OFF}),
    S.PAID: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.DECLINED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset(),
    S.WRITTEN_OFF: frozenset(),
}

# Orders that still hold part of the consumer's limit.
HOLDING_STATUSES = frozenset({S.ACTIVE, S.COMPLETED, S.COLLECTING, S.OVERDUE})
# Orders that are "open" for the consumer: an agreement cannot be closed while one exists.
OPEN_STATUSES = frozenset({S.CREATED, S.PENDING_CONFIRMATION} | HOLDING_STATUSES)
# Usage may be reported only while the service is being used.
USAGE_STATUSES = frozenset({S.ACTIVE})


class AgreementStatus(models.TextChoices):
    VALID = "valid", _("Valid")
    CLOSED = "closed", _("Closed")


class ActorKind(models.TextChoices):
    """Who caused an order event; ``actor`` names the user when there is one."""

    SYSTEM = "system", _("System")
    CONSUMER = "consumer", _("Consumer")
    MERCHANT = "merchant", _("Merchant")
    STAFF = "staff", _("Platform")


class AgreementSignupStatus(models.TextChoices):
    PENDING = "pending", _("Awaiting signature")
    SIGNED = "signed", _("Signed")
