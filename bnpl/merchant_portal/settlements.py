"""Settlements in the merchant portal (/merchant/settlements/…): batches, their lines, statement downloads.

Everything here needs ``Capability.VIEW_MONEY`` (owner, finance, viewer) and reads through the
merchant-scoped selectors of :mod:`bnpl.settlement`, so another merchant's batch is a 404. The statement
files are the ones staff download from the admin (:func:`bnpl.settlement.statement_file`): CSV in UTF-8
with a BOM, and XLSX, with the same lines and the same total.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_GET

from merchants.portal.access import Capability, member_required

from ..models import SettlementBatch
from ..models.settlement import SettlementItemKind
from ..settlement import (
    STATEMENT_FORMATS,
    settlement_batch_get_for_merchant,
    settlement_batches_for_merchant,
    statement_file,
)

BATCHES_PER_PAGE = 30
ITEMS_PER_PAGE = 100


def _batch_or_404(request: HttpRequest, batch_id: int) -> SettlementBatch:
    try:
        return settlement_batch_get_for_merchant(merchant=request.merchant, batch_id=batch_id)  # type: ignore[attr-defined]
    except SettlementBatch.DoesNotExist:
        raise Http404 from None


@member_required(Capability.VIEW_MONEY)
@require_GET
def settlements_view(request: HttpRequest) -> HttpResponse:
    """The merchant's daily batches, newest first: gross, fees, refunds, held, net and the payout's status."""
    batches = settlement_batches_for_merchant(merchant=request.merchant).order_by("-business_date", "-id")  # type: ignore[attr-defined]
    page = Paginator(batches, BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "merchants/settlements.html", {"page": page})


@member_required(Capability.VIEW_MONEY)
@require_GET
def settlement_detail_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    """One batch: its figures, its payout, and its lines (orders, fees, refunds, holds), each linking to the order."""
    batch = _batch_or_404(request, batch_id)
    kind = request.GET.get("kind", "")
    items = batch.items.select_related("order").order_by("occurred_at", "id")
    if kind in SettlementItemKind.values:
        items = items.filter(kind=kind)
    page = Paginator(items, ITEMS_PER_PAGE).get_page(request.GET.get("page"))
    payout = getattr(batch, "payout", None)
    context = {
        "batch": batch,
        "payout": payout,
        "page": page,
        "kind": kind,
        "kinds": SettlementItemKind.choices,
        "query": f"kind={kind}" if kind else "",
        "formats": STATEMENT_FORMATS,
    }
    return render(request, "merchants/settlement_detail.html", context)


@member_required(Capability.VIEW_MONEY)
@require_GET
def settlement_statement_view(request: HttpRequest, batch_id: int, fmt: str) -> HttpResponse:
    """The batch's statement (对账单) as ``csv`` (UTF-8 with a BOM) or ``xlsx``."""
    if fmt not in STATEMENT_FORMATS:
        raise Http404
    batch = _batch_or_404(request, batch_id)
    statement = statement_file(batch, fmt)
    response = HttpResponse(statement.content, content_type=statement.content_type)
    response["Content-Disposition"] = f'attachment; filename="{statement.filename}"'
    return response


urlpatterns = [
    path("settlements/", settlements_view, name="settlements"),
    path("settlements/<int:batch_id>/", settlement_detail_view, name="settlement"),
    path("settlements/<int:batch_id>/statement.<str:fmt>", settlement_statement_view, name="settlement_statement"),
]
