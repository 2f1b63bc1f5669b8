"""Merchants (KYB), their team members, their 先享 listings, and their API integration (keys, webhooks)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from bnpl.validators import mask_account_number, mask_email, mask_phone, validate_cn_mobile, validate_uscc

from .choices import (
    ApiKeyMode,
    ConfirmMode,
    IdempotencyStatus,
    InvitationStatus,
    ListingStatus,
    MemberRole,
    MerchantCategory,
    MerchantStatus,
    MerchantTaskKind,
    MerchantTaskStatus,
    Scenario,
    WebhookDeliveryStatus,
)


class Merchant(models.Model):
    """A business that offers 先享 goods or services, onboarded through review (KYB).

    Only an approved merchant may have orders placed with it; ``status`` moves only
    through the services in ``merchants.services``, each of which writes a
    :class:`MerchantEvent`.
    """

    legal_name = models.CharField(_("Legal name"), max_length=200)
    display_name = models.CharField(_("Display name"), max_length=100)
    uscc = models.CharField(_("USCC"), max_length=18, unique=True, validators=[validate_uscc])
    legal_representative = models.CharField(_("Legal representative"), max_length=50, blank=True)
    contact_name = models.CharField(_("Contact"), max_length=50)
    contact_phone = models.CharField(_("Contact phone"), max_length=11, validators=[validate_cn_mobile])
    contact_email = models.EmailField(_("Contact email"), blank=True)
    city = models.CharField(_("City"), max_length=50, blank=True)
    categories = ArrayField(
        models.CharField(max_length=32, choices=MerchantCategory.choices),
        verbose_name=_("Business categories"),
        default=list,
    )
    settlement_bank_name = models.CharField(_("Bank"), max_length=100)
    settlement_account_name = models.CharField(_("Account name"), max_length=200)
    settlement_account_number = models.CharField(_("Account number"), max_length=34)
    fee_rate = models.DecimalField(
        _("Fee rate"),
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.0060"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("0.1"))],
        help_text=_("The platform's fee on each charge, e.g. 0.0060 means 0.6%."),
    )
    status = models.CharField(_("Status"), max_length=16, choices=MerchantStatus.choices, default=MerchantStatus.DRAFT)
    rejection_reason = models.TextField(_("Rejection reason"), blank=True)
    submitted_at = models.DateTimeField(_("Submitted at"), null=True, blank=True)
    approved_at = models.DateTimeField(_("Approved at"), null=True, blank=True)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("Updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Merchant")
        verbose_name_plural = _("Merchant")
        ordering = ["-created_at"]
        # Approve, reject, suspend and reinstate: apart from the change permission (editing an application),
        # so that who may let a merchant sell is granted on its own (bnpl/staff_groups.py).
        permissions = [("review_merchant", _("Can approve, reject, suspend and reinstate merchants"))]
        constraints = [
            models.CheckConstraint(
                condition=Q(fee_rate__gte=0) & Q(fee_rate__lte=Decimal("0.1")), name="merchant_fee_rate_range"
            ),
            models.CheckConstraint(
                condition=~Q(status=MerchantStatus.REJECTED) | ~Q(rejection_reason=""),
                name="merchant_rejection_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.legal_name

    @property
    def masked_account_number(self) -> str:
        return mask_account_number(self.settlement_account_number)

    @property
    def is_operating(self) -> bool:
        return self.status == MerchantStatus.APPROVED


class MerchantEvent(models.Model):
    """An append-only record of every onboarding state change: who, when, from, to, why."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    from_status = models.CharField(max_length=16, choices=MerchantStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=MerchantStatus.choices)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("Merchant event")
        verbose_name_plural = _("Merchant event")
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.merchant_id}: {self.from_status or '∅'} → {self.to_status}"


class MerchantMember(models.Model):
    """Links a user to a merchant with a role (owner, operator, finance, viewer)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_memberships")
    role = models.CharField(_("Role"), max_length=16, choices=MemberRole.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("Merchant member")
        verbose_name_plural = _("Merchant member")
        constraints = [models.UniqueConstraint(fields=["merchant", "user"], name="merchant_member_unique")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant} ({self.role})"


class Listing(models.Model):
    """A 先享 good or service: what the badge sits on, with its pricing rule.

    ``pricing_rule`` is the JSON form of a rule from :mod:`merchants.pricing`; it is
    validated by ``parse_rule`` in the services, and copied onto every order at
    creation so that a later price change never touches an order already placed.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="listings")
    title = models.CharField(_("Title"), max_length=120)
    description = models.TextField(_("Description"), blank=True)
    scenario = models.CharField(_("Scenario"), max_length=32, choices=Scenario.choices)
    confirm_mode = models.CharField(
        _("Confirmation mode"), max_length=16, choices=ConfirmMode.choices, default=ConfirmMode.EACH_TIME
    )
    max_amount = models.DecimalField(_("Per-order ceiling"), max_digits=12, decimal_places=2)
    min_score = models.PositiveSmallIntegerField(
        _("Minimum score"), default=550, validators=[MinValueValidator(350), MaxValueValidator(950)]
    )
    order_ttl_minutes = models.PositiveIntegerField(
        _("Confirmation time-to-live (minutes)"),
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(60 * 24 * 30)],
    )
    pricing_rule = models.JSONField(_("Pricing rule"))
    status = models.CharField(_("Status"), max_length=16, choices=ListingStatus.choices, default=ListingStatus.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("Listing")
        verbose_name_plural = _("Listing")
        ordering = ["merchant_id", "title"]
        constraints = [
            models.CheckConstraint(condition=Q(max_amount__gt=0), name="listing_max_amount_positive"),
            models.CheckConstraint(
                condition=Q(min_score__gte=350) & Q(min_score__lte=950), name="listing_min_score_range"
            ),
            models.CheckConstraint(
                condition=Q(order_ttl_minutes__gte=1) & Q(order_ttl_minutes__lte=60 * 24 * 30),
                name="listing_order_ttl_range",
            ),
        ]
        indexes = [
            # The catalogue lists active listings by scenario.
            models.Index(fields=["scenario"], condition=Q(status="active"), name="listing_active_scenario_idx"),
        ]

    def __str__(self) -> str:
        return self.title


# --------------------------------------------------------------------------- API integration


class ApiKey(models.Model):
    """A secret a merchant's systems use to call the REST API (``Authorization: Bearer <secret>``).

    The secret is ``sk_<mode>_<public id>_<random>``; only its keyed hash is stored (see
    ``merchants.services.api_key_hash`` for why a fast HMAC rather than a password hash), so it is
    shown once, at creation. ``prefix`` (``sk_live_<public id>``) is not secret: it finds the row and
    names the key in the admin and in logs. A test-mode key acts on sandbox consumers only, a live
    key on real consumers only. A revoked key (``revoked_at`` set) authenticates nothing.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    mode = models.CharField(_("Mode"), max_length=8, choices=ApiKeyMode.choices)
    label = models.CharField(_("Label"), max_length=100, blank=True)
    prefix = models.CharField(_("Key prefix"), max_length=32, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("Last used at"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("Revoked at"), null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["merchant_id", "-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.label})" if self.label else f"{self.prefix}…"

    @property
    def is_live(self) -> bool:
        return self.mode == ApiKeyMode.LIVE

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiRateWindow(models.Model):
    """The request counter of one API key in its current one-second window (the rate limiter's state).

    One row per key, updated by a single ``INSERT … ON CONFLICT DO UPDATE`` per request: the database
    is the store every web process shares, so the limit holds however many processes serve the API.
    """

    api_key = models.OneToOneField(ApiKey, on_delete=models.CASCADE, primary_key=True, related_name="+")
    window_start = models.BigIntegerField()  # Unix second of the window, from the database clock
    count = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("API rate window")
        verbose_name_plural = _("API rate windows")

    def __str__(self) -> str:
        return f"{self.api_key_id}@{self.window_start}: {self.count}"


class IdempotencyRecord(models.Model):
    """The stored outcome of one POST sent with an ``Idempotency-Key`` (kept at least 24 hours).

    ``fingerprint`` hashes the method, path, key mode and body: the same key with another request
    is refused. While ``in_progress`` a second request with the key gets 409; ``locked_until`` is the
    lease after which a request whose process died may be retried. ``response_body`` is the rendered
    JSON, replayed verbatim.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=IdempotencyStatus.choices, default=IdempotencyStatus.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("Idempotency record")
        verbose_name_plural = _("Idempotency records")
        constraints = [
            models.UniqueConstraint(fields=["merchant", "key"], name="idempotency_key_unique"),
            models.CheckConstraint(
                condition=Q(status=IdempotencyStatus.IN_PROGRESS) | Q(response_status__isnull=False),
                name="idempotency_completed_has_response",
            ),
        ]
        indexes = [
            # Purge job: records older than the retention window.
            models.Index(fields=["created_at"], name="idempotency_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id}:{self.key} ({self.status})"


class WebhookEndpoint(models.Model):
    """A URL of the merchant's that receives signed event callbacks (Standard Webhooks).

    ``secret_encrypted`` holds the ``whsec_…`` signing secret encrypted with Fernet under a key
    derived from ``BNPL_WEBHOOK_SECRET_KEY``: the signer needs the secret itself (unlike an API key
    it cannot be hashed), and a database dump alone does not reveal it. It is shown once, at
    creation. ``event_types`` lists exact types (``order.completed``) or families (``order.*``).
    Events of one mode go to endpoints of the same mode (``livemode``).
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(_("URL"), max_length=500)
    description = models.CharField(_("Description"), max_length=200, blank=True)
    event_types = ArrayField(models.CharField(max_length=64), verbose_name=_("Event types"), default=list)
    livemode = models.BooleanField(_("Live mode"), default=True)
    is_active = models.BooleanField(_("Active"), default=True)
    secret_encrypted = models.TextField(editable=False)
    secret_hint = models.CharField(_("Secret"), max_length=32, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("Updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Webhook endpoint")
        verbose_name_plural = _("Webhook endpoints")
        ordering = ["merchant_id", "id"]
        indexes = [
            # webhook_event_enqueue: the merchant's active endpoints, on every order transition.
            models.Index(
                fields=["merchant", "livemode"], condition=Q(is_active=True), name="webhook_endpoint_active_idx"
            )
        ]

    def __str__(self) -> str:
        return self.url

    def subscribes_to(self, event_type: str) -> bool:
        family = event_type.split(".", 1)[0]
        return event_type in self.event_types or f"{family}.*" in self.event_types or "*" in self.event_types


class WebhookEvent(models.Model):
    """The outbox: one event to tell a merchant about, written in the transaction of the change.

    A change that rolls back takes its event with it, so nothing is ever sent for work that did not
    happen. ``uuid`` is the ``webhook-id`` (the same on every retry, so receivers can deduplicate);
    ``ordering_key`` (``order:<id>``) groups the events that must arrive in the order they happened.
    """

    uuid = models.UUIDField(unique=True, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(_("Type"), max_length=64)
    livemode = models.BooleanField(_("Live mode"), default=True)
    ordering_key = models.CharField(max_length=64)
    payload = models.JSONField(_("Payload"))
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Webhook event")
        verbose_name_plural = _("Webhook events")
        ordering = ["-id"]
        indexes = [models.Index(fields=["merchant", "-created_at"], name="webhook_event_recent_idx")]

    def __str__(self) -> str:
        return f"{self.type} {self.ordering_key}"

    @property
    def webhook_id(self) -> str:
        return f"evt_{self.uuid.hex}"


class WebhookDelivery(models.Model):
    """One event to one endpoint: the retry state (10 attempts on WeChat Pay Score's schedule).

    ``next_attempt_at`` is also the lease of a claimed delivery: the sweeper pushes it forward before
    it sends, so a worker that dies mid-send leaves a delivery that comes due again by itself.
    ``ordering_key`` is copied from the event so the sweep can hold back a later event of the same
    order while an earlier one is still pending (index ``webhook_delivery_order_idx``).
    """

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    ordering_key = models.CharField(max_length=64)
    status = models.CharField(
        _("Status"), max_length=16, choices=WebhookDeliveryStatus.choices, default=WebhookDeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("Attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("Next attempt at"), null=True, blank=True)
    last_response_status = models.PositiveSmallIntegerField(_("Last response"), null=True, blank=True)
    last_error = models.TextField(_("Last error"), blank=True)
    delivered_at = models.DateTimeField(_("Delivered at"), null=True, blank=True)
    redelivered_at = models.DateTimeField(_("Redelivery requested at"), null=True, blank=True)
    redelivered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Webhook delivery")
        verbose_name_plural = _("Webhook deliveries")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_unique"),
            models.CheckConstraint(
                condition=~Q(status=WebhookDeliveryStatus.SUCCEEDED) | Q(delivered_at__isnull=False),
                name="webhook_delivery_succeeded_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status=WebhookDeliveryStatus.PENDING) | Q(next_attempt_at__isnull=False),
                name="webhook_delivery_pending_has_time",
            ),
        ]
        indexes = [
            # Delivery sweep: pending deliveries by due time.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_delivery_due_idx"),
            # Delivery sweep: "is an earlier event of this order still pending for this endpoint?"
            models.Index(
                fields=["endpoint", "ordering_key", "event"],
                condition=Q(status="pending"),
                name="webhook_delivery_order_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """The delivery log: one row per HTTP attempt, with what the merchant's server answered."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField(_("Attempt"))
    started_at = models.DateTimeField(_("Started at"))
    duration_ms = models.PositiveIntegerField(_("Duration (ms)"), default=0)
    response_status = models.PositiveSmallIntegerField(_("Response status"), null=True, blank=True)
    response_excerpt = models.CharField(_("Response"), max_length=500, blank=True)
    error = models.CharField(_("Error"), max_length=500, blank=True)
    succeeded = models.BooleanField(_("Succeeded"), default=False)

    class Meta:
        verbose_name = _("Webhook attempt")
        verbose_name_plural = _("Webhook attempts")
        ordering = ["delivery_id", "started_at", "id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"


class MerchantActivity(models.Model):
    """The team's activity log: who did what in the portal or through the API, for the owner to read.

    Append-only by convention (admin is read-only); written by ``merchants.activity.activity_record`` in
    the same transaction as the change it describes, so a refused or rolled-back action leaves no line.
    ``target`` is a short human label ("order T123", "listing 12"); ``detail`` holds the facts (amounts,
    reasons, before/after) as JSON-safe values.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="activities")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    role = models.CharField(_("Role"), max_length=16, choices=MemberRole.choices, blank=True)
    action = models.CharField(_("Action"), max_length=48)
    target = models.CharField(_("Target"), max_length=120, blank=True)
    detail = models.JSONField(_("Detail"), default=dict, blank=True)
    created_at = models.DateTimeField(_("At"), auto_now_add=True)

    class Meta:
        verbose_name = _("Merchant activity")
        verbose_name_plural = _("Merchant activity")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["merchant", "-created_at", "-id"], name="merchant_activity_recent")]

    def __str__(self) -> str:
        return f"{self.merchant_id} {self.action} {self.target}"


class MerchantTask(models.Model):
    """A long piece of portal work (export, bulk import) run by a django-q2 task, polled for progress.

    The row is created with the request (status queued) and handed to the cluster by id; the task moves it
    to running, advances ``done`` of ``total`` as it goes, and ends succeeded with ``result_file`` (a
    download) and ``result`` (a summary), or failed with ``error``. Running it twice is safe: a task that is
    not queued is left alone.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="tasks")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(_("Kind"), max_length=32, choices=MerchantTaskKind.choices)
    status = models.CharField(
        _("Status"), max_length=16, choices=MerchantTaskStatus.choices, default=MerchantTaskStatus.QUEUED
    )
    params = models.JSONField(_("Parameters"), default=dict, blank=True)
    done = models.PositiveIntegerField(_("Done"), default=0)
    total = models.PositiveIntegerField(_("Total"), default=0)
    result = models.JSONField(_("Result"), default=dict, blank=True)
    result_file = models.FileField(_("File"), upload_to="merchant-tasks/%Y/%m/", blank=True)
    error = models.TextField(_("Error"), blank=True)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("Started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("Finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Merchant task")
        verbose_name_plural = _("Merchant task")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(done__lte=models.F("total")) | Q(total=0), name="merchant_task_done_le_total"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        return (
            100 if self.status == MerchantTaskStatus.SUCCEEDED else (100 * self.done // self.total if self.total else 0)
        )


class MerchantInvitation(models.Model):
    """An owner's invitation to join the merchant's team with a role, sent to a phone number or an e-mail.

    The link carries a random token; only its SHA-256 is stored (``token_hash``), so the link is shown
    once to the inviter, who passes it on. Whoever opens the link before ``expires_at`` and accepts it
    (signing in, or creating an account on the spot) becomes a member with ``role``. ``status`` moves
    ``pending → accepted | revoked`` through ``merchants.services.invitation_*`` only.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(_("E-mail"), blank=True)
    phone = models.CharField(_("Mobile number"), max_length=11, blank=True)
    role = models.CharField(_("Role"), max_length=16, choices=MemberRole.choices)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    status = models.CharField(
        _("Status"), max_length=16, choices=InvitationStatus.choices, default=InvitationStatus.PENDING
    )
    expires_at = models.DateTimeField(_("Expires at"))
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    accepted_at = models.DateTimeField(_("Accepted at"), null=True, blank=True)
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Team invitation")
        verbose_name_plural = _("Team invitations")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(email="") | ~Q(phone=""), name="invitation_has_contact"),
            models.CheckConstraint(
                condition=~Q(status=InvitationStatus.ACCEPTED) | Q(accepted_at__isnull=False),
                name="invitation_accepted_has_time",
            ),
        ]
        indexes = [
            # The team page lists the merchant's pending invitations.
            models.Index(fields=["merchant"], condition=Q(status="pending"), name="invitation_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.email or self.phone} → {self.merchant_id} ({self.role}, {self.status})"

    @property
    def contact(self) -> str:
        return self.email or self.phone

    @property
    def masked_contact(self) -> str:
        """The invited address as the join page shows it to whoever holds the link: ``c***@example.com``."""
        return mask_email(self.email) if self.email else mask_phone(self.phone)
