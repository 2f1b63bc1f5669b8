"""The hosted pay pages (/pay/): confirm a merchant's order, or sign a standing agreement.

``/pay/confirm/<token>`` is the link the merchant API returns for a confirm-each-time order (and
where the catalogue leads). The page shows what the merchant asks before anything is agreed: the
merchant's name, the cap, the pricing rule in plain words, when the charge happens and how to
cancel; the consumer logs in or signs up on the spot, ticks an explicit consent box (never
pre-ticked) and confirms. Confirming runs the admission assessment: admitted → the order is active;
declined → "暂时无法开通" with the reasons and what would change them.

``/pay/agreement/<token>`` does the same for a merchant's sign-up link of a standing agreement.

A used, unknown or expired link shows a clear page and creates nothing. A second click on confirm
lands on the first click's result: the order row is locked by the service, the loser sees the
order already active and is sent to the same result.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from consumers.forms import ConsumerRegistrationForm, PhoneLoginForm
from consumers.models import Consumer
from consumers.selectors import consumer_get_for_user
from consumers.views import consumer_required
from merchants.models import Listing

from ..choices import AgreementSignupStatus, OrderStatus
from ..exceptions import DomainError, InvalidTransition, NotAllowed
from ..models import AgreementSignup, CreditOrder
from ..policies import policy_for
from ..selectors import credit_order_get_by_token, credit_order_get_for_consumer
from ..services import agreement_sign, credit_order_confirm
from .forms import AgreementConsentForm, ConsentForm
from .selectors import agreement_signup_get_by_token, order_decline_reasons, signup_is_pending
from .services import agreement_signup_sign

# Tokens this browser has confirmed, so a repeated submit after success finds its result.
SESSION_DONE_KEY = "pay_confirmed_tokens"
SESSION_DONE_MAX = 20


def _consumer_or_none(request: HttpRequest) -> Consumer | None:
    try:
        return consumer_get_for_user(user=request.user)
    except Consumer.DoesNotExist:
        return None


def _remember_done(request: HttpRequest, token: str, order_id: int) -> None:
    done = dict(request.session.get(SESSION_DONE_KEY, {}))
    done[token] = order_id
    request.session[SESSION_DONE_KEY] = dict(list(done.items())[-SESSION_DONE_MAX:])


def _invalid_link(request: HttpRequest, *, expired: bool, kind: str = "order") -> HttpResponse:
    # 410 Gone for a link that existed and ran out; 404 for one that was used or never existed
    # (a used confirmation token is cleared, so the two cannot be told apart, by design).
    return render(
        request,
        "bnpl/pay/link_invalid.html",
        {"expired": expired, "kind": kind},
        status=410 if expired else 404,
    )


def _auth_forms(request: HttpRequest) -> dict[str, Any]:
    return {"login_form": PhoneLoginForm(request), "signup_form": ConsumerRegistrationForm()}


def _confirm_context(request: HttpRequest, order: CreditOrder, consumer: Consumer | None) -> dict[str, Any]:
    return {
        "order": order,
        "merchant": order.merchant,
        "listing": order.listing,
        "policy": policy_for(order.scenario),
        "consumer": consumer,
        "profile": consumer.credit_profile if consumer else None,
        "wrong_consumer": consumer is not None and order.consumer_id not in (None, consumer.pk),
        "cancel_url": reverse("shop:listing", args=[order.listing_id]),
        **_auth_forms(request),
    }


@never_cache
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The hosted confirmation page of a confirm-each-time order."""
    try:
        order = credit_order_get_by_token(token=token)
    except CreditOrder.DoesNotExist:
        done = request.session.get(SESSION_DONE_KEY, {}).get(token)
        if done is not None and request.user.is_authenticated:
            return redirect("pay:result", order_id=done)
        return _invalid_link(request, expired=False)
    if order.expires_at is not None and order.expires_at <= timezone.now():
        return _invalid_link(request, expired=True)

    consumer = _consumer_or_none(request)
    form = ConsentForm(request.POST if request.method == "POST" else None)
    context = _confirm_context(request, order, consumer)
    if request.method == "POST":
        if consumer is None:
            return redirect(f"{reverse('accounts:login')}?next={request.path}")
        if form.is_valid():
            try:
                order = _confirm(request, order=order, consumer=consumer)
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                _remember_done(request, token, order.pk)
                return redirect("pay:result", order_id=order.pk)
        context["form"] = form
        return render(request, "bnpl/pay/confirm.html", context, status=400)
    context["form"] = form
    return render(request, "bnpl/pay/confirm.html", context)


def _confirm(request: HttpRequest, *, order: CreditOrder, consumer: Consumer) -> CreditOrder:
    """Confirm; a concurrent second click that finds the order already confirmed by this consumer gets it back."""
    try:
        return credit_order_confirm(actor=request.user, order=order, consumer=consumer)
    except InvalidTransition:
        try:
            settled = credit_order_get_for_consumer(consumer=consumer, order_id=order.pk)
        except CreditOrder.DoesNotExist:
            raise NotAllowed(_("This link has already been used.")) from None
        if settled.status == OrderStatus.PENDING_CONFIRMATION:
            raise
        return settled


@consumer_required
@require_GET
def result(request: HttpRequest, order_id: int) -> HttpResponse:
    """After confirming: admitted (the order is active) or "暂时无法开通" with the reasons and hints."""
    try:
        order = credit_order_get_for_consumer(consumer=request.consumer, order_id=order_id)  # type: ignore[attr-defined]
    except CreditOrder.DoesNotExist:
        raise Http404 from None
    if order.status == OrderStatus.PENDING_CONFIRMATION and order.confirmation_token:
        return redirect("pay:confirm", token=order.confirmation_token)
    declined = order.status == OrderStatus.DECLINED
    return render(
        request,
        "bnpl/pay/result.html",
        {
            "order": order,
            "declined": declined,
            "reasons": order_decline_reasons(order=order) if declined else [],
            "policy": policy_for(order.scenario),
        },
    )


# --------------------------------------------------------------------------- standing agreements


def agreement_page(
    request: HttpRequest,
    *,
    listing: Listing,
    form: AgreementConsentForm,
    signup: AgreementSignup | None,
    cancel_url: str,
) -> HttpResponse:
    """The agreement sign page, for a sign-up link or for a catalogue listing: show, or sign on POST."""
    consumer = _consumer_or_none(request)
    context: dict[str, Any] = {
        "listing": listing,
        "merchant": listing.merchant,
        "policy": policy_for(listing.scenario),
        "consumer": consumer,
        "profile": consumer.credit_profile if consumer else None,
        "signup": signup,
        "form": form,
        "cancel_url": cancel_url,
        **_auth_forms(request),
    }
    if request.method != "POST":
        return render(request, "bnpl/pay/agreement.html", context)
    if consumer is None:
        return redirect(f"{reverse('accounts:login')}?next={request.path}")
    if form.is_valid():
        try:
            if signup is not None:
                agreement = agreement_signup_sign(actor=request.user, signup=signup, consumer=consumer)
            else:
                agreement = agreement_sign(actor=request.user, consumer=consumer, listing=listing)
        except NotAllowed as exc:
            if exc.code != "declined":
                form.add_error(None, exc.message)
                return render(request, "bnpl/pay/agreement.html", context, status=400)
            return render(
                request,
                "bnpl/pay/agreement_result.html",
                {"listing": listing, "merchant": listing.merchant, "declined": True, "reasons": exc.reasons},
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return render(
                request,
                "bnpl/pay/agreement_result.html",
                {"listing": listing, "merchant": listing.merchant, "declined": False, "agreement": agreement},
            )
    return render(request, "bnpl/pay/agreement.html", context, status=400)


@never_cache
@require_http_methods(["GET", "POST"])
def agreement(request: HttpRequest, token: str) -> HttpResponse:
    """The hosted sign page of a merchant's agreement sign-up link."""
    try:
        signup = agreement_signup_get_by_token(token=token)
    except AgreementSignup.DoesNotExist:
        return _invalid_link(request, expired=False, kind="agreement")
    if not signup_is_pending(signup):
        consumer = _consumer_or_none(request)
        signed_by_me = (
            signup.agreement_id is not None and consumer is not None and signup.agreement.consumer_id == consumer.pk
        )
        if signed_by_me:
            return redirect("me:agreements")
        return _invalid_link(request, expired=signup.status == AgreementSignupStatus.PENDING, kind="agreement")
    return agreement_page(
        request,
        listing=signup.listing,
        form=AgreementConsentForm(request.POST if request.method == "POST" else None),
        signup=signup,
        cancel_url=reverse("shop:listing", args=[signup.listing_id]),
    )
