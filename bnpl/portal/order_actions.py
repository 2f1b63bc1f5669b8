"""The order page's after-service actions: report a problem, open a dispute, ask for a due-date extension.

**A problem report is a dispute.** "Report a problem" (what went wrong + what happened) opens a
:class:`~bnpl.models.Dispute` of the whole bill through :func:`bnpl.disputes.dispute_open`, the same
as "Open a dispute". We reuse the dispute machinery rather than build a lighter "problem" object
because everything a report needs is already there and tested: the charge pause
(``CreditOrder.charge_paused``, which the charge run's claim skips), the merchant's response
deadline, the staff decision (refund or lowered bill), the withdrawal that resumes the charge, and
one active dispute per order (a partial unique constraint, so a double click opens one). A second,
lighter pause would have shared the one ``charge_paused`` flag with disputes, and closing either
would have resumed the charge the other was holding. The two doors differ in what they ask and
when they are offered: a problem report only before the charge (it pauses it), for the whole
bill, with a short list of what went wrong; a dispute also after the charge (the amount is then
held from the merchant's payout) with any of the five reasons and, optionally, part of the amount.

**A due-date extension** is :func:`bnpl.extensions.credit_order_extend_due_date`, once per order
when the scenario policy offers it.

An open dispute can be withdrawn from the same page (sorted out with the merchant): the charge
resumes, or the payout hold is released.

Each action is two clicks: the order page's button opens a page that says what will happen
(the charge pauses; the due date moves from … to …) and its button does it. Form errors re-render
the page with what was typed; a refusal about the order (already disputed, already extended)
goes back to the order page with the reason.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from consumers.forms import add_domain_error
from consumers.models import Consumer
from consumers.views import consumer_required

from ..disputes import AFTER_CHARGE, BEFORE_CHARGE, dispute_open, dispute_withdraw, response_days
from ..exceptions import DomainError
from ..extensions import credit_order_extend_due_date, extension_days, extension_refusal, extensions_used
from ..models import CreditOrder
from ..models.settlement import DISPUTE_ACTIVE
from ..templatetags.portal_format import bjtime
from .forms import DisputeForm, ProblemReportForm
from .selectors import consumer_order_detail, order_last_dispute


def order_actions_context(*, consumer: Consumer, order: CreditOrder) -> dict[str, Any]:
    """What the order page needs to offer (or explain) the three actions; one query (the last dispute)."""
    dispute = order_last_dispute(consumer=consumer, order=order)
    active = dispute is not None and dispute.status in DISPUTE_ACTIVE
    return {
        "dispute": dispute,
        "dispute_active": active,
        "can_report": not active and order.status in BEFORE_CHARGE,
        "can_dispute": not active and order.status in BEFORE_CHARGE + AFTER_CHARGE,
        "can_extend": extension_refusal(order) is None,
        "extended": extensions_used(order) > 0,
    }


def _order_or_404(request: HttpRequest, order_id: int) -> CreditOrder:
    try:
        return consumer_order_detail(consumer=request.consumer, order_id=order_id)  # type: ignore[attr-defined]
    except CreditOrder.DoesNotExist:
        raise Http404 from None


def _dispute_page(request: HttpRequest, order_id: int, *, kind: str) -> HttpResponse:
    order = _order_or_404(request, order_id)
    consumer = request.consumer  # type: ignore[attr-defined]
    problem = kind == "problem"
    last = order_last_dispute(consumer=consumer, order=order)
    if last is not None and last.status in DISPUTE_ACTIVE:
        # A second click (or a second tab): the first one already opened it.
        messages.info(request, _("This order already has an open dispute."))
        return redirect("me:order", order_id=order.pk)
    if order.status not in (BEFORE_CHARGE if problem else BEFORE_CHARGE + AFTER_CHARGE):
        if problem:
            messages.error(request, _("A problem can be reported while the order is waiting to be charged."))
        else:
            messages.error(request, _("This order cannot be disputed now."))
        return redirect("me:order", order_id=order.pk)
    form_class = ProblemReportForm if problem else DisputeForm
    form = form_class(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            dispute_open(
                actor=request.user,
                consumer=consumer,
                order=order,
                reason=data["reason"],
                description=data["description"],
                amount=data.get("amount") or None,
            )
        except DomainError as exc:
            if not exc.fields:
                messages.error(request, exc.message)
                return redirect("me:order", order_id=order.pk)
            add_domain_error(form, exc)
        else:
            if order.status in AFTER_CHARGE:
                messages.success(request, _("Your dispute is open. We will tell you when it is decided."))
            else:
                messages.success(
                    request, _("Thank you. The charge is paused while the merchant and our team look into it.")
                )
            return redirect("me:order", order_id=order.pk)
    return render(
        request,
        "consumers/order_dispute.html",
        {
            "order": order,
            "form": form,
            "problem": problem,
            "after_charge": order.status in AFTER_CHARGE,
            "response_days": response_days(),
        },
        status=400 if request.method == "POST" else 200,
    )


@consumer_required
@require_http_methods(["GET", "POST"])
def order_report_problem(request: HttpRequest, order_id: int) -> HttpResponse:
    """Report a problem with an unpaid order: the charge is paused while it is looked at."""
    return _dispute_page(request, order_id, kind="problem")


@consumer_required
@require_http_methods(["GET", "POST"])
def order_dispute(request: HttpRequest, order_id: int) -> HttpResponse:
    """Open a dispute with a reason and a description, before or after the charge."""
    return _dispute_page(request, order_id, kind="dispute")


@consumer_required
@require_http_methods(["GET", "POST"])
def order_dispute_withdraw(request: HttpRequest, order_id: int) -> HttpResponse:
    """Withdraw the order's open dispute or problem report (sorted out with the merchant): the charge resumes."""
    order = _order_or_404(request, order_id)
    consumer = request.consumer  # type: ignore[attr-defined]
    dispute = order_last_dispute(consumer=consumer, order=order)
    if dispute is None or dispute.status not in DISPUTE_ACTIVE:
        messages.info(request, _("This order has no open dispute."))
        return redirect("me:order", order_id=order.pk)
    if request.method == "POST":
        try:
            dispute_withdraw(
                actor=request.user, dispute=dispute, consumer=consumer, reason=_("Withdrawn by the consumer")
            )
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Your dispute is withdrawn."))
        return redirect("me:order", order_id=order.pk)
    return render(request, "consumers/order_dispute_withdraw.html", {"order": order, "dispute": dispute})


@consumer_required
@require_http_methods(["GET", "POST"])
def order_extend(request: HttpRequest, order_id: int) -> HttpResponse:
    """Ask for a due-date extension: this page shows the new date, its button moves it (once per order)."""
    order = _order_or_404(request, order_id)
    if request.method == "POST":
        try:
            order = credit_order_extend_due_date(actor=request.user, order=order, consumer=request.consumer)  # type: ignore[attr-defined]
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Done: the charge is now due on %(when)s.") % {"when": bjtime(order.due_at)})
        return redirect("me:order", order_id=order.pk)
    refusal = extension_refusal(order)
    days = extension_days(order)
    new_due = order.due_at + timedelta(days=days) if refusal is None and order.due_at else None
    return render(
        request,
        "consumers/order_extend.html",
        {"order": order, "refusal": refusal.message if refusal else "", "days": days, "new_due": new_due},
    )
