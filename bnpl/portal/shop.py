"""The public catalogue (/shop/): every 先享 listing on sale, with its price in plain words.

It stands in for the 先享 badge on a merchant's own site: a listing page offers "先享后付" as the
way to order, which places a confirm-each-time order for the signed-in consumer and sends them to
its hosted confirmation page (or, for a standing-agreement service, to the agreement's sign page).
"""

from __future__ import annotations

import secrets

from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from consumers.models import Consumer
from consumers.selectors import consumer_get_for_user
from consumers.views import consumer_required
from merchants.choices import ConfirmMode
from merchants.models import Listing

from ..exceptions import DomainError
from ..policies import policy_for
from .forms import AgreementConsentForm, CatalogueFilterForm
from .pay import agreement_page
from .selectors import catalogue_cities, catalogue_listing_get, catalogue_listings
from .services import catalogue_order_place

PAGE_SIZE = 12


def _listing_or_404(listing_id: int) -> Listing:
    try:
        return catalogue_listing_get(listing_id=listing_id)
    except Listing.DoesNotExist:
        raise Http404 from None


def _consumer_or_none(request: HttpRequest) -> Consumer | None:
    try:
        return consumer_get_for_user(user=request.user)
    except Consumer.DoesNotExist:
        return None


@require_GET
def catalogue(request: HttpRequest) -> HttpResponse:
    """The catalogue with its filters; an htmx request gets only the results (the active search)."""
    form = CatalogueFilterForm(request.GET or None, cities=catalogue_cities())
    data: dict = {}
    if form.is_bound:
        # An invalid filter (a city no longer on sale) is dropped on its own; the valid ones still apply.
        form.is_valid()
        data = form.cleaned_data
    listings = catalogue_listings(scenario=data.get("scenario", ""), city=data.get("city", ""), q=data.get("q", ""))
    page = Paginator(listings, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    if request.htmx:
        return render(request, "bnpl/shop/catalogue.html#results", context)
    return render(request, "bnpl/shop/catalogue.html", context)


@require_GET
def listing_detail(request: HttpRequest, listing_id: int) -> HttpResponse:
    """One listing: the merchant, the price in plain words, the cap, when the charge happens."""
    listing = _listing_or_404(listing_id)
    return render(
        request,
        "bnpl/shop/listing.html",
        {
            "listing": listing,
            "merchant": listing.merchant,
            "policy": policy_for(listing.scenario),
            "consumer": _consumer_or_none(request),
            # Names the order the button places, so a double click places one (catalogue_order_place).
            "nonce": secrets.token_hex(8),
            "is_agreement": listing.confirm_mode == ConfirmMode.AGREEMENT,
        },
    )


@require_POST
def listing_order(request: HttpRequest, listing_id: int) -> HttpResponse:
    """The "先享后付" button: place the order and go to its confirmation page."""
    listing = _listing_or_404(listing_id)
    listing_url = reverse("shop:listing", args=[listing.pk])
    if not request.user.is_authenticated:
        return redirect_to_login(listing_url, reverse("accounts:login"))
    consumer = _consumer_or_none(request)
    if consumer is None:
        return render(request, "consumers/not_consumer.html", status=403)
    if listing.confirm_mode == ConfirmMode.AGREEMENT:
        return redirect("shop:sign", listing_id=listing.pk)
    try:
        order = catalogue_order_place(
            actor=request.user, consumer=consumer, listing=listing, nonce=request.POST.get("nonce", "")
        )
    except DomainError as exc:
        return render(
            request,
            "bnpl/shop/listing.html",
            {
                "listing": listing,
                "merchant": listing.merchant,
                "policy": policy_for(listing.scenario),
                "consumer": consumer,
                "nonce": secrets.token_hex(8),
                "error": exc.message,
            },
            status=400,
        )
    if order.confirmation_token:
        return redirect("pay:confirm", token=order.confirmation_token)
    return redirect("pay:result", order_id=order.pk)


@consumer_required
@require_http_methods(["GET", "POST"])
def listing_sign(request: HttpRequest, listing_id: int) -> HttpResponse:
    """Sign a standing agreement for an agreement-mode listing from the catalogue (same page as a sign-up link)."""
    listing = _listing_or_404(listing_id)
    if listing.confirm_mode != ConfirmMode.AGREEMENT:
        return redirect("shop:listing", listing_id=listing.pk)
    form = AgreementConsentForm(request.POST if request.method == "POST" else None)
    return agreement_page(
        request,
        listing=listing,
        form=form,
        signup=None,
        cancel_url=reverse("shop:listing", args=[listing.pk]),
    )
