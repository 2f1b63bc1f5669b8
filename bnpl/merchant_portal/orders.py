"""The merchant's orders (/merchant/orders/…): the list, one order, its actions and the CSV export.

The list is filtered by the query string (``OrderFilterForm``), paged by keyset cursors (``after`` /
``before``) and re-rendered by htmx as the ``#orders`` partial with the URL pushed, so a filtered list can
be bookmarked and shared. Every action is a GET confirmation page and a POST that calls the same service as
the API (``actor`` is the member's user, ``actor_kind`` merchant); a refusal re-renders the page with the
reason and changes nothing; a success writes one ``MerchantActivity`` line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bnpl.choices import ActorKind, OrderStatus
from bnpl.exceptions import DomainError, InvalidTransition
from bnpl.incentives import coupon_for_order
from bnpl.models import CreditOrder
from bnpl.models.settlement import RefundStatus
from bnpl.refunds import credit_order_collect, credit_order_lower_amount, credit_order_refund
from bnpl.services import credit_order_cancel, credit_order_complete, credit_order_mark_paid_elsewhere
from merchants.activity import activity_record
from merchants.choices import MerchantTaskKind
from merchants.models import Listing
from merchants.portal.access import Capability, member_can, member_required
from merchants.task_runner import merchant_task_start

from .forms import CompleteForm, EmptyForm, LowerAmountForm, OrderFilterForm, ReasonForm, RefundForm
from .selectors import merchant_order_detail, merchant_order_get, merchant_order_page

S = OrderStatus
ROW_FIELD = re.compile(r"^(line|discount)\d+_")
EXPORT_RUNNER = "bnpl.merchant_portal.exports.export_orders_runner"


def _listing_choices(merchant: Any) -> list[tuple[int, str]]:
    return list(Listing.objects.filter(merchant=merchant).order_by("title", "pk").values_list("pk", "title"))


def _filter_form(request: HttpRequest) -> OrderFilterForm:
    return OrderFilterForm(request.GET, merchant=request.merchant, listings=_listing_choices(request.merchant))  # type: ignore[attr-defined]


@member_required(Capability.VIEW)
@require_GET
def order_list(request: HttpRequest) -> HttpResponse:
    form = _filter_form(request)
    filters = form.filters()
    page = merchant_order_page(
        merchant=request.merchant,  # type: ignore[attr-defined]
        filters=filters,
        after=request.GET.get("after", ""),
        before=request.GET.get("before", ""),
    )
    # Labels resolved once per page: get_status_display() re-translates every choice on each call.
    labels = {value: str(label) for value, label in S.choices}
    for order in page.rows:
        order.status_label = labels.get(order.status, order.status)  # type: ignore[attr-defined]
    query = request.GET.copy()
    for key in ("after", "before"):
        query.pop(key, None)
    context = {
        "form": form,
        "filters": filters,
        "page": page,
        "query": query.urlencode(),
        # One reverse() for the page rather than one per row.
        "detail_prefix": reverse("merchant:order_detail", args=[0]).removesuffix("0/"),
    }
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "merchants/orders.html#orders", context)
    return render(request, "merchants/orders.html", context)


@member_required(Capability.MANAGE_ORDERS)
@require_POST
def order_export(request: HttpRequest) -> HttpResponse:
    """Export the filtered list as CSV in the background; the task page shows progress and the download."""
    query = QueryDict(request.POST.get("query", ""), mutable=True)
    for key in ("after", "before"):
        query.pop(key, None)
    with transaction.atomic():
        task = merchant_task_start(
            member=request.member,  # type: ignore[attr-defined]
            kind=MerchantTaskKind.EXPORT_ORDERS,
            params={"query": query.urlencode(), "language": request.LANGUAGE_CODE},
            runner_path=EXPORT_RUNNER,
        )
        activity_record(
            merchant=request.merchant,  # type: ignore[attr-defined]
            member=request.member,  # type: ignore[attr-defined]
            action="order.export",
            target=f"task {task.pk}",
            detail={"query": query.urlencode()},
        )
    back = reverse("merchant:orders")
    return redirect(f"{reverse('merchant:task', args=[task.pk])}?back={back}")


@member_required(Capability.VIEW)
@require_GET
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    detail = merchant_order_detail(merchant=request.merchant, order_id=order_id)  # type: ignore[attr-defined]
    member = request.member  # type: ignore[attr-defined]
    actions = [a for a in ACTIONS.values() if a.available(detail.order) and member_can(member, a.capability)]
    return render(
        request,
        "merchants/order_detail.html",
        {
            "d": detail,
            "order": detail.order,
            "actions": actions,
            "bill_lines": [line for line in detail.lines if not line.is_discount],
            "discounts": [line for line in detail.lines if line.is_discount],
            # A campaign coupon taken off the bill (a query only when the bill has discounts).
            "coupon": coupon_for_order(order_id=detail.order.pk)
            if any(line.is_discount for line in detail.lines)
            else None,
        },
    )


# --------------------------------------------------------------------------- actions


def _complete(request: HttpRequest, order: CreditOrder, data: dict[str, Any]) -> CreditOrder:
    return credit_order_complete(
        actor=request.user,
        actor_kind=ActorKind.MERCHANT,
        order=order,
        lines=data["lines"],
        discounts=data["discounts"],
        reason=data.get("reason", ""),
    )


def _lower(request: HttpRequest, order: CreditOrder, data: dict[str, Any]) -> CreditOrder:
    return credit_order_lower_amount(
        actor=request.user,
        actor_kind=ActorKind.MERCHANT,
        order=order,
        new_amount=data["amount"],
        reason=data["reason"],
    )


def _cancel(request: HttpRequest, order: CreditOrder, data: dict[str, Any]) -> CreditOrder:
    return credit_order_cancel(actor=request.user, actor_kind=ActorKind.MERCHANT, order=order, reason=data["reason"])


def _refund(request: HttpRequest, order: CreditOrder, data: dict[str, Any]) -> Any:
    return credit_order_refund(
        actor=request.user,
        actor_kind=ActorKind.MERCHANT,
        order=order,
        amount=data["amount"],
        reason=data["reason"],
        idempotency_key=data["refund_key"],
    )


def _collect(request: HttpRequest, order: CreditOrder, data: dict[str, Any]) -> CreditOrder:
    return credit_order_collect(actor=request.user, actor_kind=ActorKind.MERCHANT, order=order)


def _paid_elsewhere(request: HttpRequest, order: CreditOrder, data: dict[str, Any]) -> CreditOrder:
    return credit_order_mark_paid_elsewhere(
        actor=request.user, actor_kind=ActorKind.MERCHANT, order=order, reason=data["reason"]
    )


@dataclass(frozen=True)
class OrderAction:
    """One thing a member may do to an order: who may, when it is offered, its form and its service."""

    slug: str
    label: Promise
    explanation: Promise
    verb: Promise  # "completed", for "it cannot be completed now"
    capability: Capability
    statuses: frozenset[str]
    form_class: type
    perform: Callable[[HttpRequest, CreditOrder, dict[str, Any]], Any]
    done: Promise
    style: str = "primary"

    def available(self, order: CreditOrder) -> bool:
        return order.status in self.statuses

    @property
    def url_name(self) -> str:
        return f"order_{self.slug.replace('-', '_')}"


ACTIONS: dict[str, OrderAction] = {
    a.slug: a
    for a in (
        OrderAction(
            "complete",
            gettext_lazy("Complete with the bill"),
            gettext_lazy("The bill becomes the amount due; the charge follows by the scenario's policy."),
            gettext_lazy("completed"),
            Capability.MANAGE_ORDERS,
            frozenset({S.ACTIVE}),
            CompleteForm,
            _complete,
            gettext_lazy("The order is completed."),
        ),
        OrderAction(
            "lower",
            gettext_lazy("Lower the amount"),
            gettext_lazy("Only down, before the charge; the consumer is charged the new amount."),
            gettext_lazy("lowered"),
            Capability.MANAGE_ORDERS,
            frozenset({S.COMPLETED, S.COLLECTING, S.OVERDUE}),
            LowerAmountForm,
            _lower,
            gettext_lazy("The amount is lowered."),
            "outline-primary",
        ),
        OrderAction(
            "cancel",
            gettext_lazy("Cancel the order"),
            gettext_lazy("The consumer's credit hold is given back. This cannot be undone."),
            gettext_lazy("cancelled"),
            Capability.MANAGE_ORDERS,
            frozenset({S.PENDING_CONFIRMATION, S.ACTIVE}),
            ReasonForm,
            _cancel,
            gettext_lazy("The order is cancelled."),
            "outline-danger",
        ),
        OrderAction(
            "refund",
            gettext_lazy("Refund"),
            gettext_lazy("Part or all of the charged amount goes back to the consumer; you bear it."),
            gettext_lazy("refunded"),
            Capability.REFUND,
            frozenset({S.PAID, S.PARTIALLY_REFUNDED}),
            RefundForm,
            _refund,
            gettext_lazy("The refund is sent."),
            "outline-danger",
        ),
        OrderAction(
            "collect",
            gettext_lazy("Collect again"),
            gettext_lazy("One more charge attempt within a minute."),
            gettext_lazy("collected"),
            Capability.MANAGE_ORDERS,
            frozenset({S.COLLECTING, S.OVERDUE}),
            EmptyForm,
            _collect,
            gettext_lazy("A new charge attempt is scheduled."),
            "outline-primary",
        ),
        OrderAction(
            "paid-elsewhere",
            gettext_lazy("Mark paid elsewhere"),
            gettext_lazy("The consumer paid you another way; the platform stops collecting."),
            gettext_lazy("marked paid"),
            Capability.MANAGE_ORDERS,
            frozenset({S.COMPLETED, S.COLLECTING, S.OVERDUE}),
            ReasonForm,
            _paid_elsewhere,
            gettext_lazy("The order is marked paid."),
            "outline-secondary",
        ),
    )
}


def _refusal_message(action: OrderAction, order: CreditOrder, exc: DomainError) -> str:
    if isinstance(exc, InvalidTransition):
        return _("This order is %(status)s, so it cannot be %(verb)s now.") % {
            "status": order.get_status_display(),
            "verb": action.verb,
        }
    return exc.message


def _action_view(action: OrderAction) -> Callable[..., HttpResponse]:
    @member_required(action.capability)
    @require_http_methods(["GET", "POST"])
    def view(request: HttpRequest, order_id: int) -> HttpResponse:
        merchant, member = request.merchant, request.member  # type: ignore[attr-defined]
        order = merchant_order_get(merchant=merchant, order_id=order_id)
        form = action.form_class(request.POST if request.method == "POST" else None)
        status = 200
        if request.method == "POST":
            status = 400
            if form.is_valid():
                try:
                    result = action.perform(request, order, form.cleaned_data)
                    if getattr(result, "status", None) == RefundStatus.DECLINED:
                        raise DomainError(
                            _("The payment provider declined the refund: %(message)s")
                            % {"message": result.message or result.decline_code},
                            code="refund_declined",
                        )
                except DomainError as exc:
                    order.refresh_from_db()
                    status = 409 if isinstance(exc, InvalidTransition) else 400
                    for name, message in exc.fields.items():
                        if name in form.fields:
                            form.add_error(name, message)
                    form.add_error(None, _refusal_message(action, order, exc))
                else:
                    detail = {
                        key: value
                        for key, value in form.cleaned_data.items()
                        if key not in {"mode", "refund_key"}
                        and not ROW_FIELD.match(key)  # the typed rows are in "lines" / "discounts"
                        and value not in (None, "", [])
                    }
                    activity_record(
                        merchant=merchant,
                        member=member,
                        action=f"order.{action.slug.replace('-', '_')}",
                        target=f"order {order.out_order_no}",
                        detail={"order_id": order.pk, **detail},
                    )
                    messages.success(request, action.done)
                    return redirect("merchant:order_detail", order_id=order.pk)
        refusal = ""
        if request.method == "GET" and not action.available(order):
            refusal = _("This order is %(status)s, so it cannot be %(verb)s now.") % {
                "status": order.get_status_display(),
                "verb": action.verb,
            }
        context = {"order": order, "action": action, "form": form, "refusal": refusal}
        return render(request, "merchants/order_action.html", context, status=status)

    view.__name__ = f"order_{action.slug.replace('-', '_')}_view"
    return view


urlpatterns = [
    path("orders/", order_list, name="orders"),
    path("orders/export/", order_export, name="order_export"),
    path("orders/<int:order_id>/", order_detail, name="order_detail"),
    *[path(f"orders/<int:order_id>/{a.slug}/", _action_view(a), name=a.url_name) for a in ACTIONS.values()],
]
