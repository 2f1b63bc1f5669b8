"""Notifications (the in-app inbox), their per-channel deliveries, preferences and reminder hold-outs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import translation
from django.utils.translation import gettext_lazy as _


class Channel(models.TextChoices):
    INBOX = "inbox", _("In-app inbox")
    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")


# Channels with a Delivery row; the inbox is the Notification itself and is always on.
OUTBOUND_CHANNELS = (Channel.EMAIL, Channel.SMS)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    RETRYING = "retrying", _("Retrying")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Skipped")


# Deliveries the delivery job still has to look at (a SENDING row whose lease expired was left by a dead worker).
OPEN_DELIVERY_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.RETRYING)


class Notification(models.Model):
    """One message to one person: the inbox entry, rendered in every language, and the record of what was said.

    ``user`` is the recipient's login (a consumer's or a merchant member's): the inbox and its unread count
    read by it. ``dedupe_key`` is unique: a reminder for the same order and moment
    (``charge_upcoming:order:42:120h``) can be written once, whatever runs twice.
    ``rendered`` holds ``{language: {"subject", "body", "sms"}}`` for every configured language, so the
    inbox follows the page's language; ``language`` is the one email and SMS were sent in.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    consumer = models.ForeignKey(
        "consumers.Consumer", on_delete=models.CASCADE, null=True, blank=True, related_name="notifications"
    )
    member = models.ForeignKey(
        "merchants.MerchantMember", on_delete=models.CASCADE, null=True, blank=True, related_name="notifications"
    )
    order = models.ForeignKey(
        "bnpl.CreditOrder", on_delete=models.SET_NULL, null=True, blank=True, related_name="notifications"
    )
    kind = models.CharField(_("Template key"), max_length=40)
    mandatory = models.BooleanField(_("Mandatory"), default=False)
    dedupe_key = models.CharField(_("Dedupe key"), max_length=120, unique=True)
    language = models.CharField(_("Language"), max_length=10)
    subject = models.CharField(_("Subject"), max_length=200)
    body = models.TextField(_("Body"))
    rendered = models.JSONField(_("Rendered texts"), default=dict)
    data = models.JSONField(_("Data"), default=dict)
    read_at = models.DateTimeField(_("Read at"), null=True, blank=True)
    created_at = models.DateTimeField(_("Created at"), db_index=True)

    class Meta:
        verbose_name = _("Notification")
        verbose_name_plural = _("Notifications")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(consumer__isnull=True) | Q(member__isnull=True), name="notification_one_recipient_kind"
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="notification_inbox_idx"),
            # The unread count in the portal navigation.
            models.Index(fields=["user"], condition=Q(read_at__isnull=True), name="notification_unread_idx"),
            models.Index(fields=["order", "kind"], name="notification_order_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.user_id}"

    @property
    def current_text(self) -> dict[str, str]:
        """Subject, body and SMS text in the active language (pages show this)."""
        return self.text_for(translation.get_language())

    def text_for(self, language: str | None) -> dict[str, str]:
        """Subject, body and SMS text in ``language`` (falling back to the language it was sent in)."""
        language = (language or "").lower()
        for code, texts in self.rendered.items():
            if code.lower() == language or (language and code.lower().split("-")[0] == language.split("-")[0]):
                return texts
        return {"subject": self.subject, "body": self.body, "sms": ""}


class Delivery(models.Model):
    """One notification sent on one outbound channel (email or SMS): status, attempts, next try and last error.

    Written ``pending`` (or ``skipped`` with the reason: switched off, no address) with the notification; the
    delivery job sends it outside any transaction, retries with back-off and ends ``sent`` or ``failed``.
    An SMS due in quiet hours waits in ``pending`` with ``next_attempt_at`` at 08:00 Beijing time.
    """

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(_("Channel"), max_length=8, choices=Channel.choices)
    address = models.CharField(_("Address"), max_length=254, blank=True)
    status = models.CharField(
        _("Status"), max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("Attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("Next attempt"), null=True, blank=True)
    last_error = models.TextField(_("Last error"), blank=True)
    provider_reference = models.CharField(_("Provider reference"), max_length=120, blank=True)
    sent_at = models.DateTimeField(_("Sent at"), null=True, blank=True)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("Updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Delivery")
        verbose_name_plural = _("Deliveries")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["notification", "channel"], name="delivery_one_per_channel"),
            models.CheckConstraint(condition=~Q(channel="inbox"), name="delivery_outbound_only"),
            models.CheckConstraint(
                condition=~Q(status__in=["pending", "sending", "retrying"]) | Q(next_attempt_at__isnull=False),
                name="delivery_open_has_next_attempt",
            ),
        ]
        indexes = [
            # Delivery job (deliver_due): open deliveries by the time of their next try.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending", "retrying"]),
                name="delivery_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.status} ({self.notification_id})"


class NotificationPreference(models.Model):
    """A person's choice for one kind on one outbound channel; no row means on. Mandatory kinds ignore it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(_("Template key"), max_length=40)
    channel = models.CharField(_("Channel"), max_length=8, choices=Channel.choices)
    enabled = models.BooleanField(_("Enabled"), default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Notification preference")
        verbose_name_plural = _("Notification preferences")
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "channel"], name="notification_preference_unique"),
            models.CheckConstraint(condition=~Q(channel="inbox"), name="notification_preference_outbound_only"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind}/{self.channel}: {'on' if self.enabled else 'off'}"


class RecipientSettings(models.Model):
    """The language messages are written in and the email address they go to (else the login's email)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    language = models.CharField(_("Language of messages"), max_length=10, choices=settings.LANGUAGES)
    email = models.EmailField(_("Email for notices"), blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Recipient settings")
        verbose_name_plural = _("Recipient settings")

    def __str__(self) -> str:
        return f"{self.user_id}: {self.language}"


class ReminderHoldout(models.Model):
    """An order in the reminder control group: its optional pre-charge reminders were withheld on purpose.

    Written by the pre-charge sweep the first time it passes the order over, so the "does it work?" report
    compares the orders that really were held out, whatever the control share is later changed to.
    """

    order = models.OneToOneField("bnpl.CreditOrder", on_delete=models.CASCADE, related_name="reminder_holdout")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("Reminder hold-out")
        verbose_name_plural = _("Reminder hold-outs")

    def __str__(self) -> str:
        return f"hold-out {self.order_id}"
