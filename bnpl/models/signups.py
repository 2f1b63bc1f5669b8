"""Agreement sign-up links: a merchant's invitation to sign a standing agreement on a hosted page."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from bnpl.choices import AgreementSignupStatus


class AgreementSignup(models.Model):
    """A sign-up link a merchant created through the API (先享服务开通 with 芝麻先享's ``out_agreement_no``).

    The consumer opens ``SITE_URL/pay/agreement/<token>`` and signs the listing's standing agreement
    there (the hosted pages come with the consumer portal); the signed ``agreement`` is then linked
    here. ``consumer`` is set when the merchant named who may sign; ``livemode`` is the mode of the
    key that created it (a test-mode link may be signed by a sandbox consumer only).
    ``out_agreement_no`` is the merchant's own reference, unique per merchant.
    """

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    listing = models.ForeignKey("merchants.Listing", on_delete=models.PROTECT, related_name="+")
    consumer = models.ForeignKey(
        "consumers.Consumer", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    agreement = models.ForeignKey("bnpl.Agreement", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    out_agreement_no = models.CharField(_("Merchant agreement no."), max_length=64)
    livemode = models.BooleanField(_("Live mode"), default=True)
    status = models.CharField(
        _("Status"), max_length=16, choices=AgreementSignupStatus.choices, default=AgreementSignupStatus.PENDING
    )
    token = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField(_("Sign by"))
    created_at = models.DateTimeField(_("Created at"), auto_now_add=True)
    signed_at = models.DateTimeField(_("Signed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Agreement sign-up link")
        verbose_name_plural = _("Agreement sign-up links")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "out_agreement_no"], name="signup_out_agreement_no_unique"),
            models.CheckConstraint(
                condition=Q(status="pending") | (Q(agreement__isnull=False) & Q(signed_at__isnull=False)),
                name="signup_signed_has_agreement",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.out_agreement_no} ({self.status})"
