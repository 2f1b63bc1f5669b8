"""Enumerations of the merchants app."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Scenario(models.TextChoices):
    """The four 先享 scenarios a listing can belong to; each has its own charge policy."""

    EBIKE_CHARGING = "ebike_charging", _("E-bike charging")
    EXPRESS_DELIVERY = "express_delivery", _("Express delivery")
    SWIMMING_FITNESS = "swimming_fitness", _("Swimming and fitness")
    LIVE_SHOPPING = "live_shopping", _("Live-stream shopping")


class MerchantCategory(models.TextChoices):
    """Business categories a merchant applies for (the four scenarios plus excluded ones)."""

    EBIKE_CHARGING = "ebike_charging", _("E-bike charging")
    EXPRESS_DELIVERY = "express_delivery", _("Express delivery")
    SWIMMING_FITNESS = "swimming_fitness", _("Swimming and fitness")
    LIVE_SHOPPING = "live_shopping", _("Live-stream shopping")
    JEWELLERY_GOLD = "jewellery_gold", _("Jewellery and gold")
    LUXURY_GOODS = "luxury_goods", _("Luxury goods")
    PHONES_COMPUTERS = "phones_computers", _("Phones and computers")
    PREMIUM_LIQUOR = "premium_liquor", _("Premium liquor")


# Categories excluded from pay-later (as WeChat Pay Score excludes them): refused at application.
EXCLUDED_CATEGORIES = frozenset(
    {
        MerchantCategory.JEWELLERY_GOLD,
        MerchantCategory.LUXURY_GOODS,
        MerchantCategory.PHONES_COMPUTERS,
        MerchantCategory.PREMIUM_LIQUOR,
    }
)


class MerchantStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SUBMITTED = "submitted", _("Submitted")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    SUSPENDED = "suspended", _("Paused")


# draft → submitted → approved | rejected; rejected → submitted (fixed and resubmitted);
# approved → suspended → approved (reinstated).
MERCHANT_ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    MerchantStatus.DRAFT: frozenset({MerchantStatus.SUBMITTED}),
    MerchantStatus.SUBMITTED: frozenset({MerchantStatus.APPROVED, MerchantStatus.REJECTED}),
    MerchantStatus.REJECTED: frozenset({MerchantStatus.SUBMITTED}),
    MerchantStatus.APPROVED: frozenset({MerchantStatus.SUSPENDED}),
    MerchantStatus.SUSPENDED: frozenset({MerchantStatus.APPROVED}),
}


class MemberRole(models.TextChoices):
    OWNER = "owner", _("Owner")
    OPERATOR = "operator", _("Operator")
    FINANCE = "finance", _("Finance")
    VIEWER = "viewer", _("Viewer")


class ConfirmMode(models.TextChoices):
    """芝麻先享's two confirmation modes."""

    EACH_TIME = "each_time", _("Confirm each time")
    AGREEMENT = "agreement", _("Standing agreement (no confirmation)")


class ListingStatus(models.TextChoices):
    ACTIVE = "active", _("On sale")
    PAUSED = "paused", _("Paused")


class ApiKeyMode(models.TextChoices):
    """Test keys act on sandbox consumers only; live keys on real consumers only."""

    TEST = "test", _("Test")
    LIVE = "live", _("Live")


class IdempotencyStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", _("In progress")
    COMPLETED = "completed", _("Completed")


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


# pending → succeeded | failed (retries stay pending); succeeded | failed → pending (manual redelivery).
WEBHOOK_DELIVERY_TRANSITIONS: dict[str, frozenset[str]] = {
    WebhookDeliveryStatus.PENDING: frozenset({WebhookDeliveryStatus.SUCCEEDED, WebhookDeliveryStatus.FAILED}),
    WebhookDeliveryStatus.SUCCEEDED: frozenset({WebhookDeliveryStatus.PENDING}),
    WebhookDeliveryStatus.FAILED: frozenset({WebhookDeliveryStatus.PENDING}),
}

#: The families of webhook events a merchant can subscribe to (``order.*``) besides single types
#: (``order.completed``). The families follow WeChat Pay Score's and 芝麻先享's notifications.
WEBHOOK_EVENT_FAMILIES: tuple[str, ...] = ("order", "charge", "refund", "agreement", "dispute", "settlement")


class MerchantTaskKind(models.TextChoices):
    """Long portal work that runs in the background with a progress bar (merchants.portal.tasks)."""

    EXPORT_ORDERS = "export_orders", _("Order export")
    IMPORT_LISTINGS = "import_listings", _("Listing import")


class MerchantTaskStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Done")
    FAILED = "failed", _("Failed")


class InvitationStatus(models.TextChoices):
    """A team invitation: pending until accepted or revoked (expiry is a time, not a status)."""

    PENDING = "pending", _("Pending")
    ACCEPTED = "accepted", _("Accepted")
    REVOKED = "revoked", _("Revoked")
