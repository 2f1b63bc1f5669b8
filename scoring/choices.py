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


# Channels that open an order (a sign-up only signs an agreement): the open-order and
# velocity rules apply to these alone.
ORDER_CHANNELS = frozenset({DecisionChannel.ORDER, DecisionChannel.CONFIRM, DecisionChannel.API})


class ReasonCode(models.TextChoices):
    """Stable codes of why an admission was declined (shown to the consumer, PIPL art. 24).

    The label is the consumer-facing sentence; ``scoring.reasons`` adds the zh-hans
    sentence and a hint saying what would change the outcome.
    """

    SCORE_BELOW_MINIMUM = "score_below_minimum", _("Your credit score is below what this service requires")
    INSUFFICIENT_LIMIT = "insufficient_limit", _("Your available pay-later limit is not enough for this order")
    SPEND_CAP_REACHED = "spend_cap_reached", _("This order would go past the spending cap you set yourself")
    ACCOUNT_PAUSED = "account_paused", _("Pay-later is paused until your overdue order is paid")
    LISTING_UNAVAILABLE = "listing_unavailable", _("This service is not available right now")
    MERCHANT_UNAVAILABLE = "merchant_unavailable", _("This merchant is not available right now")
    BLOCKLISTED = "blocklisted", _("Pay-later is not available for this account")
    TOO_MANY_OPEN_ORDERS = "too_many_open_orders", _("You have too many pay-later orders open at once")
    TOO_MANY_OPEN_ORDERS_AT_MERCHANT = (
        "too_many_open_orders_at_merchant",
        _("You have too many pay-later orders open with this merchant"),
    )
    TOO_MANY_ORDERS_THIS_HOUR = "too_many_orders_this_hour", _("You have placed many pay-later orders in the last hour")
    TOO_MANY_ORDERS_TODAY = "too_many_orders_today", _("You have placed many pay-later orders today")
    SCORING_UNAVAILABLE = "scoring_unavailable", _("Your credit cannot be assessed right now")


class Dimension(models.TextChoices):
    """The five dimensions of the score (product.md: 35/25/20/15/5 % as commonly quoted)."""

    HISTORY = "history", _("Credit history")
    ABILITY = "ability", _("Ability to perform")
    BEHAVIOUR = "behaviour", _("Behaviour")
    IDENTITY = "identity", _("Identity")
    CONNECTIONS = "connections", _("Connections")


class ScorecardSource(models.TextChoices):
    DEFAULT = "default", _("Shipped default")
    TRAINED = "trained", _("Trained on platform outcomes")


class ScorecardEventKind(models.TextChoices):
    CREATED = "created", _("Created")
    ACTIVATED = "activated", _("Activated")
    DEACTIVATED = "deactivated", _("Deactivated")


class BlocklistKind(models.TextChoices):
    """What a blocklist entry matches: one account, a phone number, or a resident ID (by its keyed hash)."""

    CONSUMER = "consumer", _("Consumer account")
    PHONE = "phone", _("Phone number")
    ID_HASH = "id_hash", _("Resident ID")
