"""Django admin of the ledger and the sandbox provider, read-only.

Ledger rows are append-only in the database itself, so the admin offers no add,
change or delete: staff read accounts (with their balance, Σ entries), postings with
their entries, and run the ledger check (``…/ledgertransaction/check/``). Imported
by ``bnpl.admin`` so that the registrations happen when the admin is discovered.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import DecimalField, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from bnpl.admin_mixins import ReadOnlyAdminMixin
from bnpl.ledger import ledger_check
from bnpl.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    SandboxCharge,
    SandboxFaultConfig,
    SandboxFundingSource,
    SandboxRefund,
)
from bnpl.money import ZERO, format_cny


class ReadOnlyModelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """No add, change or delete: the rows are written by services (and the database refuses edits)."""


class LedgerEntryInline(admin.TabularInline):
    model = LedgerEntry
    extra = 0
    can_delete = False
    fields = ["account", "amount", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyModelAdmin):
    list_display = ["code", "kind", "consumer", "merchant", "balance_display", "created_at"]
    list_filter = ["kind"]
    search_fields = ["code"]
    list_select_related = ["consumer", "merchant"]
    readonly_fields = ["code", "kind", "consumer", "merchant", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # One aggregate for the whole page instead of a balance query per row.
        zero = Value(ZERO, output_field=DecimalField(max_digits=14, decimal_places=2))
        return super().get_queryset(request).annotate(balance=Coalesce(Sum("entries__amount"), zero))

    @admin.display(description=_("Balance (debit +, credit −)"), ordering="balance")
    def balance_display(self, obj: LedgerAccount) -> str:
        return format_cny(obj.balance)  # type: ignore[attr-defined]


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "created_at", "kind", "order", "idempotency_key", "description"]
    list_filter = ["kind"]
    search_fields = ["idempotency_key", "=order__id", "order__out_order_no"]
    readonly_fields = ["kind", "order", "idempotency_key", "description", "created_at"]
    raw_id_fields = ["order"]
    inlines = [LedgerEntryInline]
    date_hierarchy = "created_at"

    def get_urls(self) -> list[URLPattern]:
        return [
            path("check/", self.admin_site.admin_view(self.check_view), name="bnpl_ledger_check"),
            *super().get_urls(),
        ]

    def check_view(self, request: HttpRequest) -> HttpResponseRedirect:
        """Run ``ledger_check`` and report its findings as messages on the changelist."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        problems = ledger_check()
        if not problems:
            messages.success(
                request, _("Ledger check passed: every transaction balances and the triggers are in place.")
            )
        else:
            messages.error(
                request,
                ngettext("Ledger check found %(n)d problem.", "Ledger check found %(n)d problems.", len(problems))
                % {"n": len(problems)},
            )
            for problem in problems[:50]:
                messages.error(request, problem)
        return HttpResponseRedirect(reverse("admin:bnpl_ledgertransaction_changelist"))


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "created_at", "transaction", "account", "amount"]
    list_filter = ["account__kind"]
    search_fields = ["account__code", "transaction__idempotency_key"]
    list_select_related = ["transaction", "account"]
    readonly_fields = ["transaction", "account", "amount", "created_at"]


@admin.register(SandboxFundingSource)
class SandboxFundingSourceAdmin(ReadOnlyModelAdmin):
    list_display = ["label", "consumer", "token", "balance_amount", "frozen", "is_default", "created_at"]
    list_filter = ["frozen", "is_default"]
    search_fields = ["token", "label", "consumer__phone"]
    list_select_related = ["consumer"]


@admin.register(SandboxCharge)
class SandboxChargeAdmin(ReadOnlyModelAdmin):
    list_display = ["reference", "idempotency_key", "funding_source", "amount", "status", "decline_code", "created_at"]
    list_filter = ["status", "decline_code"]
    search_fields = ["reference", "idempotency_key", "funding_token"]
    list_select_related = ["funding_source"]


@admin.register(SandboxRefund)
class SandboxRefundAdmin(ReadOnlyModelAdmin):
    list_display = ["reference", "idempotency_key", "charge", "amount", "created_at"]
    search_fields = ["reference", "idempotency_key", "charge__reference"]
    list_select_related = ["charge"]


@admin.register(SandboxFaultConfig)
class SandboxFaultConfigAdmin(ReadOnlyModelAdmin):
    list_display = [
        "latency_ms",
        "timeout_rate",
        "lost_response_rate",
        "error_rate",
        "risk_reject_rate",
        "seed",
        "updated_at",
    ]
