"""Writes the consumer pages need that the pay-later core did not have: catalogue orders, signing
through a merchant's sign-up link, and choosing the default payment method.

Each one is a thin entry point over the core services (``bnpl.services``, ``bnpl.gateway.services``),
which keep the rules, locks and events; these add what a web page needs on top (a double click is one
order, a link is single-use).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from consumers.models import Consumer
from merchants.models import Listing

from ..choices import ActorKind, AgreementSignupStatus
from ..exceptions import InvalidTransition, NotAllowed, ValidationFailed
from ..models import Agreement, AgreementSignup, CreditOrder, SandboxFundingSource
from ..selectors import credit_order_get_by_out_order_no
from ..services import agreement_sign, credit_order_create

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    Actor = AbstractBaseUser | None

# The form nonce of the catalogue's "先享后付" button: 16 hex digits, made when the page is shown.
NONCE_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def catalogue_order_out_order_no(*, consumer: Consumer, nonce: str) -> str:
    """The merchant order number of a catalogue order: one per consumer per shown page."""
    return f"SHOP-{consumer.pk}-{nonce}"


def catalogue_order_place(*, actor: Actor, consumer: Consumer, listing: Listing, nonce: str) -> CreditOrder:
    """Place a confirm-each-time order from the catalogue for the signed-in consumer (先享后付 button).

    The order is made out to ``consumer`` and left ``pending_confirmation`` with its confirmation
    token; the consumer confirms it on the hosted page like any merchant's order. ``nonce`` comes from
    the page that showed the button and names the order (``SHOP-<consumer>-<nonce>``), so a double
    click or a resubmitted form returns the order the first click placed instead of a second one
    (the unique merchant order number decides, even for two requests at once).
    """
    if not NONCE_PATTERN.match(nonce or ""):
        message = _("This page has expired; open the service again.")
        raise ValidationFailed(message, code="invalid_nonce", fields={"nonce": message})
    out_order_no = catalogue_order_out_order_no(consumer=consumer, nonce=nonce)
    try:
        return credit_order_create(
            actor=actor,
            actor_kind=ActorKind.CONSUMER,
            merchant=listing.merchant,
            listing=listing,
            out_order_no=out_order_no,
            consumer=consumer,
        )
    except ValidationFailed as exc:
        if exc.code != "duplicate_out_order_no":
            raise
        # The number embeds the consumer, so the existing order is theirs; re-check rather than assume.
        existing = credit_order_get_by_out_order_no(merchant=listing.merchant, out_order_no=out_order_no)
        if existing.consumer_id != consumer.pk:
            raise
        return existing


def agreement_signup_sign(*, actor: Actor, signup: AgreementSignup, consumer: Consumer) -> Agreement:
    """Sign a listing's standing agreement through a merchant's sign-up link (``/pay/agreement/<token>``).

    The link must still be pending and before its deadline (``expired``), be meant for this consumer
    when the merchant named one (``wrong_consumer``), and match the consumer's mode: a test-mode link
    is for sandbox consumers only and a live link for real ones (``livemode_mismatch``). The consumer
    is then assessed by :func:`bnpl.services.agreement_sign` (which raises ``NotAllowed`` code
    ``declined`` with ``.reasons``, or returns the agreement they already have), and the link is
    marked signed with a compare-and-swap: a second click, or a second tab, finds it signed and gets
    the same agreement back. A link someone else already used raises :class:`InvalidTransition`.
    """
    now = timezone.now()
    signup = AgreementSignup.objects.select_related("listing", "listing__merchant").get(pk=signup.pk)
    if signup.status == AgreementSignupStatus.SIGNED:
        if signup.agreement is not None and signup.agreement.consumer_id == consumer.pk:
            return signup.agreement
        raise InvalidTransition(_("This sign-up link has already been used."), code="invalid_state")
    if signup.expires_at <= now:
        raise NotAllowed(_("This sign-up link has expired; ask the merchant for a new one."), code="expired")
    if signup.consumer_id is not None and signup.consumer_id != consumer.pk:
        raise NotAllowed(_("This sign-up link was made out to someone else."), code="wrong_consumer")
    if signup.livemode == consumer.is_sandbox:
        raise NotAllowed(_("This sign-up link cannot be used with this account."), code="livemode_mismatch")
    agreement = agreement_sign(actor=actor, consumer=consumer, listing=signup.listing)
    with transaction.atomic(durable=True):
        marked = AgreementSignup.objects.filter(pk=signup.pk, status=AgreementSignupStatus.PENDING).update(
            status=AgreementSignupStatus.SIGNED, agreement=agreement, signed_at=now
        )
    if not marked:
        # Another request signed the link between our check and now: fine if it was this consumer.
        signup.refresh_from_db()
        if signup.agreement_id != agreement.pk:
            raise InvalidTransition(_("This sign-up link has already been used."), code="invalid_state")
    return agreement


@transaction.atomic(durable=True)
def sandbox_funding_source_set_default(
    *, actor: Actor, consumer: Consumer, source: SandboxFundingSource
) -> SandboxFundingSource:
    """Make one of the consumer's sandbox funding sources the one charges go to.

    The consumer row is locked (as ``sandbox_funding_source_add`` does), so two concurrent changes
    cannot leave two defaults; the partial unique constraint ``sandbox_source_one_default`` would
    refuse that anyway. Another consumer's source raises :class:`NotAllowed` and changes nothing.
    """
    Consumer.objects.select_for_update().filter(pk=consumer.pk).first()
    if source.consumer_id != consumer.pk:
        raise NotAllowed(_("This payment method belongs to someone else."), code="wrong_consumer")
    sources = SandboxFundingSource.objects.filter(consumer=consumer)
    sources.filter(is_default=True).exclude(pk=source.pk).update(is_default=False)
    sources.filter(pk=source.pk).update(is_default=True)
    source.refresh_from_db()
    return source
