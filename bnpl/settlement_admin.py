"""Django admin of refunds, disputes and settlement (read-only rows; staff act through services).

- Refunds: read-only, with the gateway key and answer.
- Disputes: read-only, with evidence and events; actions decide for the consumer or
  the merchant (``dispute_decide``), asking for the reason on an intermediate page.
- Settlement batches: read-only with their lines and a statement (对账单) CSV / XLSX download.
- Payouts: "send now" (``payouts_send_due``, what the payout job does) and "mark paid" (``payout_mark_paid``,
  for a transfer made outside the gateway) post the payout to the ledger.

Imported by ``bnpl.admin`` so the registrations happen when the admin is discovered.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from bnpl.admin import ReadOnlyAdminMixin, ReadOnlyInline, _all_fields, _reason_page
from bnpl.admin_dashboard import DEADLINE_DUE_SOON, DEADLINE_PAST, dispute_deadline_q
from bnpl.disputes import dispute_decide
from bnpl.exceptions import DomainError
from bnpl.models import Dispute, DisputeEvent, DisputeEvidence, Payout, Refund, SettlementBatch, SettlementItem
from bnpl.models.settlement import DisputeOutcome, PayoutStatus
from bnpl.settlement import payout_mark_paid, payout_retry_now, payouts_send_due, statement_file


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Refunds with their fixed gateway key and the provider's answer."""

    list_display = ["id", "order", "amount", "status", "actor_kind", "reason", "requested_at", "finished_at"]
    list_filter = ["status", "actor_kind"]
    search_fields = ["gateway_key", "idempotency_key", "order__out_order_no"]
    list_select_related = ["order"]
    raw_id_fields = ["order", "dispute"]
    readonly_fields = _all_fields(Refund)


class DisputeEvidenceInline(ReadOnlyInline):
    model = DisputeEvidence
    fields = ["file", "uploaded_by", "created_at"]
    readonly_fields = fields


class DisputeEventInline(ReadOnlyInline):
    model = DisputeEvent
    fields = ["created_at", "actor", "actor_kind", "from_status", "to_status", "reason"]
    readonly_fields = fields


class _ActionsOnly(admin.ModelAdmin):
    """Rows read-only; the change permission only gates the actions (which call services)."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)


class ResponseDeadlineFilter(admin.SimpleListFilter):
    """Open disputes whose merchant response is due within 48 hours, or overdue (the dashboard's links)."""

    title = _("Response deadline")
    parameter_name = "deadline"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(DEADLINE_DUE_SOON, _("Due within 48 hours")), (DEADLINE_PAST, _("Past the deadline, unanswered"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> QuerySet[Dispute]:
        if self.value() in (DEADLINE_DUE_SOON, DEADLINE_PAST):
            return queryset.filter(dispute_deadline_q(self.value(), now=timezone.now())).order_by("respond_by", "id")
        return queryset


@admin.register(Dispute)
class DisputeAdmin(_ActionsOnly):
    """Disputes: staff read both sides and the evidence, then decide with a reason."""

    list_display = ["id", "order", "consumer", "reason", "disputed_amount", "status", "outcome", "respond_by"]
    list_filter = [ResponseDeadlineFilter, "status", "outcome", "reason", "after_charge"]
    search_fields = ["order__out_order_no", "consumer__phone"]
    list_select_related = ["order", "consumer"]
    inlines = [DisputeEvidenceInline, DisputeEventInline]
    actions = ["decide_for_consumer", "decide_for_merchant"]

    def get_readonly_fields(self, request: HttpRequest, obj: Dispute | None = None) -> list[str]:
        return _all_fields(Dispute)

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[Dispute], *, outcome: str, action: str, title: str
    ) -> TemplateResponse | None:
        form, page = _reason_page(self, request, queryset, action=action, title=title)
        if page is not None:
            return page
        decided = 0
        for dispute in queryset:
            try:
                dispute_decide(actor=request.user, dispute=dispute, outcome=outcome, reason=form.cleaned_data["reason"])
            except DomainError as exc:
                self.message_user(request, f"#{dispute.pk}: {exc.message}", messages.WARNING)
                continue
            decided += 1
        self.message_user(
            request,
            ngettext("%(n)d dispute decided.", "%(n)d disputes decided.", decided) % {"n": decided},
            messages.SUCCESS,
        )
        return None

    def has_decide_permission(self, request: HttpRequest) -> bool:
        # Deciding refunds the consumer or releases the merchant's hold: granted on its own (bnpl/staff_groups.py).
        return request.user.has_perm("bnpl.decide_dispute")

    @admin.action(description=_("Decide the selected disputes for the consumer"), permissions=["decide"])
    def decide_for_consumer(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> TemplateResponse | None:
        return self._decide(
            request,
            queryset,
            outcome=DisputeOutcome.CONSUMER_WON,
            action="decide_for_consumer",
            title=_("Decide disputes for the consumer"),
        )

    @admin.action(description=_("Decide the selected disputes for the merchant"), permissions=["decide"])
    def decide_for_merchant(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> TemplateResponse | None:
        return self._decide(
            request,
            queryset,
            outcome=DisputeOutcome.MERCHANT_WON,
            action="decide_for_merchant",
            title=_("Decide disputes for the merchant"),
        )


class SettlementItemInline(ReadOnlyInline):
    model = SettlementItem
    fields = ["occurred_at", "kind", "order", "amount", "ledger_entry", "dispute"]
    readonly_fields = fields


@admin.register(SettlementBatch)
class SettlementBatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Daily settlement batches per merchant, with their lines and the statement download."""

    list_display = [
        "id",
        "merchant",
        "business_date",
        "gross_amount",
        "fee_amount",
        "refund_amount",
        "held_amount",
        "net_amount",
        "item_count",
        "statement_link",
    ]
    list_filter = ["business_date"]
    search_fields = ["merchant__name"]
    list_select_related = ["merchant"]
    inlines = [SettlementItemInline]
    readonly_fields = [*_all_fields(SettlementBatch), "statement_link"]

    def get_urls(self):
        own = [
            path(
                "<int:batch_id>/statement.csv",
                self.admin_site.admin_view(self.statement_view),
                name="bnpl_settlementbatch_statement",
            ),
            path(
                "<int:batch_id>/statement.xlsx",
                self.admin_site.admin_view(self.statement_view),
                {"fmt": "xlsx"},
                name="bnpl_settlementbatch_statement_xlsx",
            ),
        ]
        return own + super().get_urls()

    @admin.display(description=_("Statement"))
    def statement_link(self, obj: SettlementBatch) -> str:
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">{}</a>',
            reverse("admin:bnpl_settlementbatch_statement", args=[obj.pk]),
            _("CSV"),
            reverse("admin:bnpl_settlementbatch_statement_xlsx", args=[obj.pk]),
            _("Excel"),
        )

    def statement_view(self, request: HttpRequest, batch_id: int, fmt: str = "csv") -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        batch = get_object_or_404(SettlementBatch, pk=batch_id)
        statement = statement_file(batch, fmt)
        response = HttpResponse(statement.content, content_type=statement.content_type)
        response["Content-Disposition"] = f'attachment; filename="{statement.filename}"'
        return response


@admin.register(Payout)
class PayoutAdmin(_ActionsOnly):
    """Payouts of settlement batches; "mark paid" records the bank transfer and posts it to the ledger."""

    list_display = [
        "id",
        "merchant",
        "batch",
        "amount",
        "status",
        "attempts",
        "failure_code",
        "next_attempt_at",
        "paid_at",
    ]
    list_filter = ["status"]
    list_select_related = ["merchant", "batch"]
    actions = ["send_now", "mark_paid"]

    def get_readonly_fields(self, request: HttpRequest, obj: Payout | None = None) -> list[str]:
        return _all_fields(Payout)

    @admin.action(description=_("Mark the selected payouts paid"), permissions=["change"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        paid = 0
        for payout in queryset:
            try:
                payout_mark_paid(actor=request.user, payout=payout)
            except DomainError as exc:
                self.message_user(request, f"#{payout.pk}: {exc.message}", messages.WARNING)
                continue
            paid += 1
        self.message_user(
            request, ngettext("%(n)d payout paid.", "%(n)d payouts paid.", paid) % {"n": paid}, messages.SUCCESS
        )

    @admin.action(description=_("Send the selected payouts now (pending or failed)"), permissions=["change"])
    def send_now(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        ids = []
        for payout in queryset:
            if payout.status == PayoutStatus.FAILED:
                payout_retry_now(actor=request.user, payout=payout)
            ids.append(payout.pk)
        counts = payouts_send_due(payout_ids=ids)
        self.message_user(
            request,
            _("%(sent)d sent: %(paid)d paid, %(failed)d failed, %(unknown)d unknown (reconciled later).") % counts,
            messages.SUCCESS if counts["sent"] else messages.WARNING,
        )
