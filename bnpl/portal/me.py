"""My pay-later (/me/): the consumer's one place for every order, agreement, charge and their score.

Every view is guarded by ``consumer_required`` and reads through selectors scoped to
``request.consumer``: another person's order, agreement or card is a 404. Actions call one service
each and turn a refusal into a message that says why (in the consumer's language).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from consumers.forms import add_domain_error
from consumers.views import consumer_required

from ..charging import credit_order_pay_now
from ..choices import ActorKind, AgreementStatus, OrderStatus
from ..exceptions import DomainError
from ..gateway.services import sandbox_funding_source_add
from ..incentives import coupon_for_order
from ..models import Agreement, CreditOrder, SandboxFundingSource
from ..models.charging import AttemptStatus
from ..policies import policy_for
from ..services import agreement_close, credit_order_cancel
from .forms import CancelOrderForm, FundingSourceForm, OrderFilterForm
from .order_actions import order_actions_context
from .selectors import (
    ORDER_TAB_LABELS,
    ORDER_TABS,
    agreement_open_orders,
    charge_stage,
    consumer_agreement_get,
    consumer_agreements,
    consumer_data_export,
    consumer_funding_source_get,
    consumer_funding_sources,
    consumer_order_detail,
    consumer_orders,
    promise_record_for_order,
    score_breakdown,
    score_history,
    upcoming_charges,
)
from .services import sandbox_funding_source_set_default

ORDERS_PAGE_SIZE = 10
CANCELLABLE = frozenset({OrderStatus.PENDING_CONFIRMATION, OrderStatus.ACTIVE})
# Orders with a bill that can be paid now: early (completed) or late (collecting, overdue).
PAYABLE = frozenset({OrderStatus.COMPLETED, OrderStatus.COLLECTING, OrderStatus.OVERDUE})


def _order_or_404(request: HttpRequest, order_id: int) -> CreditOrder:
    try:
        return consumer_order_detail(consumer=request.consumer, order_id=order_id)  # type: ignore[attr-defined]
    except CreditOrder.DoesNotExist:
        raise Http404 from None


@consumer_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Score and band, limit used and available, the charge timeline."""
    consumer = request.consumer  # type: ignore[attr-defined]
    profile = consumer.credit_profile
    return render(
        request,
        "consumers/home.html",
        {
            "consumer": consumer,
            "profile": profile,
            "breakdown": score_breakdown(consumer=consumer),
            "timeline": upcoming_charges(consumer=consumer),
        },
    )


@consumer_required
@require_GET
def orders(request: HttpRequest) -> HttpResponse:
    """Open, upcoming and past orders with filters, an active search and pagination (htmx partial updates)."""
    consumer = request.consumer  # type: ignore[attr-defined]
    form = OrderFilterForm(request.GET or None)
    filters = form.filters() if request.GET else {"tab": "all", "q": "", "status": "", "scenario": ""}
    page = Paginator(consumer_orders(consumer=consumer, **filters), ORDERS_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    base_query = query.copy()
    base_query.pop("tab", None)
    context = {
        "form": form,
        "page": page,
        "filters": filters,
        "tabs": ORDER_TAB_LABELS,
        "upcoming_statuses": sorted(ORDER_TABS["upcoming"]),
        "query": query.urlencode(),
        "base_query": base_query.urlencode(),
    }
    if request.htmx:
        return render(request, "consumers/orders.html#results", context)
    return render(request, "consumers/orders.html", context)


@consumer_required
@require_GET
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    """One order: its timeline, bill lines and usage, charge attempts, promise record and actions."""
    order = _order_or_404(request, order_id)
    return render(request, "consumers/order_detail.html", _order_context(request, order))


def _order_context(request: HttpRequest, order: CreditOrder, **extra: Any) -> dict[str, Any]:
    attempts = list(order.charge_attempts.all())
    return {
        "order": order,
        "stage": charge_stage(order),
        "policy": policy_for(order.scenario),
        "record": promise_record_for_order(consumer=request.consumer, order=order),  # type: ignore[attr-defined]
        "attempts": attempts,
        "can_pay": order.status in PAYABLE and not order.charge_in_flight,
        # What pay-now takes: the bill plus a late fee, if one was added when the order became overdue.
        "pay_amount": (order.amount_due or 0) + order.late_fee_amount,
        "can_cancel": order.status in CANCELLABLE,
        "cancel_form": extra.pop("cancel_form", None) or CancelOrderForm(),
        "lines": [line for line in order.bill_lines.all() if not line.is_discount],
        "discounts": [line for line in order.bill_lines.all() if line.is_discount],
        # A campaign coupon taken off the bill (a query only when the bill has discounts).
        "coupon": coupon_for_order(order_id=order.pk)
        if any(line.is_discount for line in order.bill_lines.all())
        else None,
        # Report a problem, open a dispute, extend the due date (bnpl/portal/order_actions.py).
        **order_actions_context(consumer=request.consumer, order=order),  # type: ignore[attr-defined]
        **extra,
    }


@consumer_required
@require_POST
def order_pay(request: HttpRequest, order_id: int) -> HttpResponse:
    """Pay now: early (before the due date) or an overdue order, which lifts the pause once paid."""
    order = _order_or_404(request, order_id)
    try:
        attempt = credit_order_pay_now(actor=request.user, order=order, consumer=request.consumer)  # type: ignore[attr-defined]
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        if attempt.status == AttemptStatus.SUCCEEDED:
            messages.success(request, _("Paid. Thank you for keeping your promise."))
        elif attempt.status == AttemptStatus.DECLINED:
            messages.error(
                request,
                _("The payment was declined (%(code)s). Check your payment method and try again.")
                % {"code": attempt.decline_code},
            )
        else:
            messages.info(request, _("The payment is being confirmed with your bank; check back in a few minutes."))
    return redirect("me:order", order_id=order.pk)


@consumer_required
@require_POST
def order_cancel(request: HttpRequest, order_id: int) -> HttpResponse:
    """Cancel an order while it is awaiting confirmation or in use, with a reason."""
    order = _order_or_404(request, order_id)
    form = CancelOrderForm(request.POST)
    if form.is_valid():
        try:
            credit_order_cancel(
                actor=request.user, actor_kind=ActorKind.CONSUMER, order=order, reason=form.reason_text()
            )
        except DomainError as exc:
            if not exc.fields:
                # A refusal about the order, not the form (it is no longer cancellable): say why on its page.
                messages.error(request, exc.message)
                return redirect("me:order", order_id=order.pk)
            add_domain_error(form, exc)
        else:
            messages.success(request, _("The order is cancelled."))
            return redirect("me:order", order_id=order.pk)
    order = _order_or_404(request, order_id)
    return render(request, "consumers/order_detail.html", _order_context(request, order, cancel_form=form), status=400)


@consumer_required
@require_GET
def agreements(request: HttpRequest) -> HttpResponse:
    """Every standing agreement, with a revoke button on the valid ones."""
    return render(
        request,
        "consumers/agreements.html",
        {"agreements": consumer_agreements(consumer=request.consumer)},  # type: ignore[attr-defined]
    )


@consumer_required
@require_http_methods(["GET", "POST"])
def agreement_revoke(request: HttpRequest, agreement_id: int) -> HttpResponse:
    """Revoke in two clicks: the list's "Revoke" opens this page, its button revokes.

    Refused with the explanation and the open orders while any order under the agreement is open.
    """
    try:
        agreement = consumer_agreement_get(consumer=request.consumer, agreement_id=agreement_id)  # type: ignore[attr-defined]
    except Agreement.DoesNotExist:
        raise Http404 from None
    error = ""
    if request.method == "POST":
        if agreement.status != AgreementStatus.VALID:
            return redirect("me:agreements")
        try:
            agreement_close(actor=request.user, agreement=agreement, reason=_("Revoked by the consumer"))
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(
                request,
                _("Your authorisation for %(merchant)s is revoked.") % {"merchant": agreement.merchant.display_name},
            )
            return redirect("me:agreements")
    return render(
        request,
        "consumers/agreement_revoke.html",
        {"agreement": agreement, "open_orders": agreement_open_orders(agreement=agreement), "error": error},
        status=409 if error else 200,
    )


@consumer_required
@require_GET
def score(request: HttpRequest) -> HttpResponse:
    """Score and limit history as a chart, and each change with its reason."""
    consumer = request.consumer  # type: ignore[attr-defined]
    history = score_history(consumer=consumer)
    chart = {
        "score": history["score_points"],
        "limit": history["limit_points"],
        "labels": {"score": _("Credit score"), "limit": _("Credit limit (¥)")},
    }
    return render(
        request,
        "consumers/score.html",
        {
            "profile": consumer.credit_profile,
            "rows": history["rows"],
            "chart": chart,
            "breakdown": score_breakdown(consumer=consumer),
        },
    )


@consumer_required
@require_http_methods(["GET", "POST"])
def payment_methods(request: HttpRequest) -> HttpResponse:
    """The consumer's sandbox cards and wallets: add one, choose the default, see balances (test mode)."""
    consumer = request.consumer  # type: ignore[attr-defined]
    form = FundingSourceForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            sandbox_funding_source_add(
                actor=request.user,
                consumer=consumer,
                label=form.cleaned_data["label"],
                balance_amount=form.cleaned_data["balance_amount"],
                is_default=form.cleaned_data["is_default"],
            )
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            messages.success(request, _("The payment method is added."))
            return redirect("me:payment_methods")
    return render(
        request,
        "consumers/payment_methods.html",
        {"sources": consumer_funding_sources(consumer=consumer), "form": form},
        status=400 if request.method == "POST" else 200,
    )


@consumer_required
@require_POST
def payment_method_default(request: HttpRequest, source_id: int) -> HttpResponse:
    """Make one of the consumer's payment methods the default."""
    consumer = request.consumer  # type: ignore[attr-defined]
    try:
        source = consumer_funding_source_get(consumer=consumer, source_id=source_id)
    except SandboxFundingSource.DoesNotExist:
        raise Http404 from None
    try:
        sandbox_funding_source_set_default(actor=request.user, consumer=consumer, source=source)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("%(label)s is now your default payment method.") % {"label": source.label})
    return redirect("me:payment_methods")


@consumer_required
@require_POST
def data_export(request: HttpRequest) -> HttpResponse:
    """Download a copy of everything the platform keeps about the consumer, as JSON."""
    data = consumer_data_export(consumer=request.consumer)  # type: ignore[attr-defined]
    body = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="my-pay-later-data-{stamp}.json"'
    return response
