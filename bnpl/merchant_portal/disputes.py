"""Disputes in the merchant portal (/merchant/disputes/…): the queue with deadlines, answering, the outcome.

Reading needs ``Capability.VIEW``; answering needs ``Capability.RESPOND_DISPUTES`` (owner, operator,
finance) and goes through :func:`bnpl.disputes.dispute_respond` — the service the API uses — which checks
the deadline and the evidence (photos and PDFs up to 5 MB). Disputes and their evidence files are looked
up only under ``request.merchant``: another merchant's ids are a 404. Evidence is served by a view that
checks this, never from a public media URL.
"""

from __future__ import annotations

import os
from datetime import timedelta

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from merchants.activity import activity_record
from merchants.portal.access import Capability, member_can, member_required

from ..disputes import EVIDENCE_MAX_FILES, MAX_RESPONSE, dispute_respond
from ..exceptions import DomainError, ValidationFailed
from ..models import Dispute, DisputeEvidence
from ..models.settlement import DISPUTE_ACTIVE, DisputeStatus

PAGE_SIZE = 50
#: A deadline this close is shown as due soon.
DUE_SOON = timedelta(hours=24)
TABS = {
    "open": (gettext_lazy("To answer"), (DisputeStatus.OPEN,)),
    "responded": (gettext_lazy("Answered"), (DisputeStatus.MERCHANT_RESPONDED,)),
    "closed": (gettext_lazy("Closed"), (DisputeStatus.DECIDED, DisputeStatus.WITHDRAWN)),
    "all": (gettext_lazy("All"), ()),
}


def disputes_for_merchant(*, merchant: object) -> QuerySet[Dispute]:
    """The merchant's disputes with their orders (one query per page)."""
    return Dispute.objects.filter(merchant=merchant).select_related("order")


def _dispute_or_404(request: HttpRequest, dispute_id: int) -> Dispute:
    try:
        return disputes_for_merchant(merchant=request.merchant).get(pk=dispute_id)  # type: ignore[attr-defined]
    except Dispute.DoesNotExist:
        raise Http404 from None


class ResponseForm(forms.Form):
    """The merchant's answer; evidence files come from ``request.FILES.getlist("files")`` (the service checks them)."""

    text = forms.CharField(
        label=gettext_lazy("Your response"),
        max_length=MAX_RESPONSE,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=gettext_lazy("What happened, and what the evidence shows. Staff read it before they decide."),
    )


@member_required(Capability.VIEW)
@require_GET
def disputes_view(request: HttpRequest) -> HttpResponse:
    """The queue: disputes to answer first, the nearest deadline on top; overdue ones highlighted."""
    tab = request.GET.get("tab", "open")
    if tab not in TABS:
        tab = "open"
    disputes = disputes_for_merchant(merchant=request.merchant)  # type: ignore[attr-defined]
    statuses = TABS[tab][1]
    if statuses:
        disputes = disputes.filter(status__in=statuses)
    disputes = disputes.order_by("respond_by", "id") if tab == "open" else disputes.order_by("-created_at", "-id")
    page = Paginator(disputes, PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    counts = {
        "open": disputes_for_merchant(merchant=request.merchant).filter(status=DisputeStatus.OPEN).count()  # type: ignore[attr-defined]
    }
    context = {
        "page": page,
        "tab": tab,
        "tabs": [(key, label) for key, (label, _statuses) in TABS.items()],
        "now": now,
        "soon": now + DUE_SOON,
        "counts": counts,
        "query": f"tab={tab}",
    }
    return render(request, "merchants/disputes.html", context)


def _detail(request: HttpRequest, dispute: Dispute, form: ResponseForm, status: int = 200) -> HttpResponse:
    now = timezone.now()
    can_respond = member_can(request.member, Capability.RESPOND_DISPUTES)  # type: ignore[attr-defined]
    context = {
        "dispute": dispute,
        "order": dispute.order,
        "events": dispute.events.select_related("actor").order_by("created_at", "id"),
        "evidence": [(item, os.path.basename(item.file.name)) for item in dispute.evidence.order_by("id")],
        "form": form,
        "now": now,
        "overdue": dispute.status == DisputeStatus.OPEN and now > dispute.respond_by,
        "may_respond": can_respond and dispute.status == DisputeStatus.OPEN and now <= dispute.respond_by,
        "active": dispute.status in DISPUTE_ACTIVE,
        "max_files": EVIDENCE_MAX_FILES,
    }
    return render(request, "merchants/dispute_detail.html", context, status=status)


@member_required(Capability.VIEW)
@require_GET
def dispute_detail_view(request: HttpRequest, dispute_id: int) -> HttpResponse:
    """One dispute: the consumer's complaint, the deadline, the answer and evidence, the timeline, the outcome."""
    return _detail(request, _dispute_or_404(request, dispute_id), ResponseForm())


@member_required(Capability.RESPOND_DISPUTES)
@require_POST
def dispute_respond_view(request: HttpRequest, dispute_id: int) -> HttpResponse:
    """Answer a dispute with text and evidence files; a refusal keeps what was typed and says why."""
    dispute = _dispute_or_404(request, dispute_id)
    form = ResponseForm(request.POST)
    if not form.is_valid():
        return _detail(request, dispute, form)
    files = request.FILES.getlist("files")
    try:
        answered = dispute_respond(
            actor=request.user,
            dispute=dispute,
            text=form.cleaned_data["text"],
            files=files,
            merchant_id=request.merchant.pk,  # type: ignore[attr-defined]
        )
    except ValidationFailed as exc:
        for field, message in (exc.fields or {"__all__": exc.message}).items():
            if field == "files":
                form.file_error = message  # type: ignore[attr-defined]  # shown under the file input
            else:
                form.add_error(field if field in form.fields else None, message)
        return _detail(request, dispute, form)
    except DomainError as exc:
        form.add_error(None, exc.message)
        return _detail(request, dispute, form)
    # dispute_respond owns a durable transaction: the log line follows its commit.
    activity_record(
        merchant=request.merchant,  # type: ignore[attr-defined]
        member=request.member,  # type: ignore[attr-defined]
        action="dispute.respond",
        target=answered.order.out_order_no,
        detail={"dispute": answered.pk, "files": len(files)},
    )
    messages.success(request, _("Your response was sent. Staff will decide and you will see the outcome here."))
    return redirect("merchant:dispute", dispute_id=answered.pk)


@member_required(Capability.VIEW)
@require_GET
def dispute_evidence_view(request: HttpRequest, dispute_id: int, evidence_id: int) -> FileResponse:
    """One evidence file of one of the merchant's disputes."""
    dispute = _dispute_or_404(request, dispute_id)
    try:
        evidence = DisputeEvidence.objects.get(pk=evidence_id, dispute=dispute)
    except DisputeEvidence.DoesNotExist:
        raise Http404 from None
    name = os.path.basename(evidence.file.name)
    inline = name.lower().endswith((".jpg", ".jpeg", ".png", ".gif", ".webp", ".pdf"))
    response = FileResponse(evidence.file.open("rb"), as_attachment=not inline, filename=name)
    response["X-Content-Type-Options"] = "nosniff"
    return response


urlpatterns = [
    path("disputes/", disputes_view, name="disputes"),
    path("disputes/<int:dispute_id>/", dispute_detail_view, name="dispute"),
    path("disputes/<int:dispute_id>/respond/", dispute_respond_view, name="dispute_respond"),
    path("disputes/<int:dispute_id>/evidence/<int:evidence_id>/", dispute_evidence_view, name="dispute_evidence"),
]
