"""Enumerations of the scoring app."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class DecisionOutcome(models.TextChoices):
    APPROVED = "approved", _("Admitted")
    DECLINED = "declined", _("Cannot open for now")


class DecisionChannel(models.TextChoices):
    """Where an assessment entered: 芝麻先享 assesses at every entry."""

    SIGN_UP = "sign_up", _("Sign-up")
    ORDER = "order", _("Order")
    CONFIRM = "confirm", _("Confirmation")
    API = "api", _("Merchant API")


class ReasonCode(models.TextChoices):
    """Stable codes of why an admission was declined (shown to the consumer, PIPL art. 24)."""

    SCORE_BELOW_MINIMUM = "score_below_minimum", _("Your credit score is below what this service requires")
    INSUFFICIENT_LIMIT = "insufficient_limit", _("Your available pay-later limit is not enough for this order")
    ACCOUNT_PAUSED = "account_paused", _("Pay-later is paused until your overdue order is paid")
    LISTING_UNAVAILABLE = "listing_unavailable", _("This service is not available right now")
    MERCHANT_UNAVAILABLE = "merchant_unavailable", _("This merchant is not available right now")
